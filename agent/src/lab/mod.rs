//! `netpol-agent lab`: a node and pods built as network namespaces in the VPC CNI
//! style (pod `eth0` with a /32 and /128, default route through a link-local gateway,
//! host-side `eni…` veths in a node namespace, never in the root namespace), the agent
//! enforcing inside the node namespace, and servers in each pod. State lives in a
//! directory (default /run/netpol-agent-lab) so `apply`, `probe` and `down` find it.

pub mod manifests;
pub mod probe;
pub mod serve;

use std::{
    io::{Read, Write},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use datapath::PinLayout;
use manifests::LabPod;
use netlab::NetNs;
use serde::{Deserialize, Serialize};

pub const DEFAULT_STATE_DIR: &str = "/run/netpol-agent-lab";
const HEALTH_ADDR: &str = "127.0.0.1:8163";
const METRICS_ADDR: &str = "127.0.0.1:8162";

/// Names of one lab's namespaces and pins, derived from its state directory so that
/// two labs (e.g. parallel tests) never meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNames {
    pub node_netns: String,
    pub pod_prefix: String,
    pub pin_dir: PathBuf,
}

impl LabNames {
    pub fn for_state_dir(dir: &Path) -> Self {
        let tag = &manifests::host_interface_name("lab", &dir.to_string_lossy())[3..8];
        Self {
            node_netns: format!("nplab{tag}-node"),
            pod_prefix: format!("nplab{tag}-p-"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/netpol-lab-{tag}")),
        }
    }

    pub fn pins(&self) -> PinLayout {
        PinLayout::new(&self.pin_dir)
    }

    fn pod_netns(&self, pod: &LabPod) -> String {
        let raw = format!("{}{}-{}", self.pod_prefix, pod.namespace, pod.name);
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }
}

/// Everything `lab up` made, for the commands that follow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub state_dir: PathBuf,
    /// The `netpol-agent` binary the lab runs (agent and pod servers).
    pub binary: PathBuf,
    pub mode: String,
    pub agent_pid: Option<u32>,
    pub pods: Vec<LabPodState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabPodState {
    pub pod: LabPod,
    pub netns: String,
    pub server_pid: Option<u32>,
}

impl LabState {
    pub fn policy_dir(dir: &Path) -> PathBuf {
        dir.join("policies")
    }

    pub fn flow_log(dir: &Path) -> PathBuf {
        dir.join("flows").join("network-policy-agent.log")
    }

    fn file(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// # Errors
    /// No lab is up in `dir`, or its state file is damaged.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = Self::file(dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no lab is up ({} is missing): run `netpol-agent lab up DIR`",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "lab state {} is damaged; `netpol-agent lab down` cleans up",
                path.display()
            )
        })
    }

    fn save(&self) -> Result<()> {
        let path = Self::file(&self.state_dir);
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Pods with the namespace each probe enters.
    pub fn probe_targets(&self) -> Vec<(LabPod, String)> {
        self.pods
            .iter()
            .map(|p| (p.pod.clone(), p.netns.clone()))
            .collect()
    }

    pub fn names(&self) -> LabNames {
        LabNames::for_state_dir(&self.state_dir)
    }
}

/// Starts `args` inside `netns` in its own process group, output to `log`. The child
/// joins only the network namespace (setns before exec), not a new mount namespace as
/// `ip netns exec` would, so bpffs and the lab's files stay visible to it.
fn spawn_in(netns: &str, args: &[String], env: &[(&str, &str)], log: &Path) -> Result<u32> {
    use std::os::{fd::AsRawFd, unix::process::CommandExt};
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let ns_file = std::fs::File::open(format!("/var/run/netns/{netns}"))
        .with_context(|| format!("opening namespace {netns}"))?;
    let ns_fd = ns_file.as_raw_fd();
    let (program, rest) = args.split_first().context("empty command")?;
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: between fork and exec the closure calls only setns(2), which is
    // async-signal-safe, on an fd that stays open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {args:?} in {netns}"))?;
    drop(ns_file);
    Ok(child.id())
}

/// Options of `lab up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub manifests: PathBuf,
    /// The `netpol-agent` binary to run (the CLI passes its own path).
    pub binary: PathBuf,
    pub state_dir: PathBuf,
    pub strict: bool,
    pub deny_fold_window: String,
}

/// Builds the lab. On failure everything made so far is removed again.
///
/// # Errors
/// Bad manifests (file, document and field named), a lab already up, or a failed step.
pub fn up(opts: &UpOptions) -> Result<LabState> {
    if LabState::file(&opts.state_dir).exists() {
        bail!(
            "a lab is already up in {}: run `netpol-agent lab down` first",
            opts.state_dir.display()
        );
    }
    let docs = manifests::read_documents(&opts.manifests)?;
    let pods = manifests::plan_pods(&docs, &[])?;
    std::fs::create_dir_all(LabState::policy_dir(&opts.state_dir))?;
    std::fs::create_dir_all(
        LabState::flow_log(&opts.state_dir)
            .parent()
            .expect("flows dir"),
    )?;
    let names = LabNames::for_state_dir(&opts.state_dir);
    let mut state = LabState {
        state_dir: opts.state_dir.clone(),
        binary: opts.binary.clone(),
        mode: if opts.strict {
            "strict".into()
        } else {
            "standard".into()
        },
        agent_pid: None,
        pods: pods
            .iter()
            .map(|p| LabPodState {
                pod: p.clone(),
                netns: names.pod_netns(p),
                server_pid: None,
            })
            .collect(),
    };
    state.save()?;
    match build(&mut state, &docs, opts) {
        Ok(()) => Ok(state),
        Err(e) => {
            // The state directory goes with `down`; keep the agent's last words.
            let log = std::fs::read_to_string(opts.state_dir.join("agent.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let _ = down(&opts.state_dir);
            if tail.is_empty() {
                Err(e)
            } else {
                Err(e.context(format!(
                    "lab agent log (last lines):\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )))
            }
        }
    }
}

fn build(state: &mut LabState, docs: &[serde_yaml::Value], opts: &UpOptions) -> Result<()> {
    let names = state.names();
    // Namespaces persist past this command; `down` (also run on failure) removes them.
    let node = NetNs::create(&names.node_netns)
        .context("creating the node namespace (is another lab up?)")?
        .persist();
    netlab::prepare_node(&node)?;
    let mut links = Vec::new();
    for p in state.pods.iter().filter(|p| !p.pod.wire_late) {
        let ns = NetNs::create(&p.netns)?.persist();
        links.push(netlab::create_link(&node, &ns, &p.pod.host_if)?);
    }
    let pods: Vec<LabPod> = state.pods.iter().map(|p| p.pod.clone()).collect();
    manifests::write_documents(
        &LabState::policy_dir(&state.state_dir).join("cluster.yaml"),
        &manifests::agent_documents(docs, &pods),
        None,
    )?;
    start_agent(state, opts)?;
    wait_ready(&names.node_netns, AGENT_DEADLINE)?;
    let late: Vec<&LabPodState> = state.pods.iter().filter(|p| p.pod.wire_late).collect();
    if !late.is_empty() {
        wait_unbound(&names.node_netns, late.len())?;
        for p in late {
            let ns = NetNs::create(&p.netns)?.persist();
            links.push(netlab::create_link(&node, &ns, &p.pod.host_if)?);
        }
    }
    // Links and pods in the same order from here on.
    state.pods.sort_by_key(|p| p.pod.wire_late);
    let deadline = Instant::now() + AGENT_DEADLINE;
    for link in &links {
        wait_programmed(&names, link, deadline)?;
    }
    // Every pod interface has its record (default-deny in strict mode) before the pod
    // has an address, so no packet passes unenforced.
    for (p, link) in state.pods.iter().zip(&links) {
        netlab::assign_addresses(
            &node,
            &NetNs::open(&p.netns),
            link,
            Some(p.pod.ipv4),
            Some(p.pod.ipv6),
        )?;
    }
    start_servers(state)?;
    state.save()
}

fn start_agent(state: &mut LabState, opts: &UpOptions) -> Result<()> {
    let dir = &state.state_dir;
    let names = state.names();
    let args: Vec<String> = vec![
        state.binary.to_string_lossy().into_owned(),
        "run".into(),
        "--enable-network-policy".into(),
        "--enable-policy-event-logs".into(),
        format!("--policy-dir={}", LabState::policy_dir(dir).display()),
        format!("--log-file={}", LabState::flow_log(dir).display()),
        format!("--bpffs-pin-dir={}", names.pin_dir.display()),
        format!("--metrics-bind-addr={METRICS_ADDR}"),
        format!("--health-probe-bind-addr={HEALTH_ADDR}"),
        format!("--node-name={}", manifests::LAB_NODE),
        format!("--deny-fold-window={}", opts.deny_fold_window),
        format!("--veth-prefix={}", manifests::LAB_VETH_PREFIX),
        "--log-level=info".into(),
    ];
    let mode = state.mode.clone();
    let pid = spawn_in(
        &names.node_netns,
        &args,
        &[("NETWORK_POLICY_ENFORCING_MODE", &mode)],
        &dir.join("agent.log"),
    )?;
    state.agent_pid = Some(pid);
    state.save()
}

/// Waits until the agent in the node namespace reports ready.
fn wait_ready(node_netns: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if http_get_in(node_netns, HEALTH_ADDR, "/readyz").is_some_and(|(status, _)| status == 200)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the lab agent did not become ready within {timeout:?}")
}

/// Waits until the agent has programmed `link` (its pod record is in the maps).
fn wait_programmed(names: &LabNames, link: &netlab::PodLink, deadline: Instant) -> Result<()> {
    while !datapath::pinned_pod_records(&names.pins())?
        .iter()
        .any(|(i, _)| *i == link.host_ifindex)
    {
        if Instant::now() > deadline {
            bail!("the agent did not program {} in time", link.host_if);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// How long the lab waits for the agent (start-up, binding, enforcing what `lab apply`
/// wrote) before it gives up saying why. Every wait returns as soon as its condition
/// holds; the bound only has to hold on a slow, loaded machine, where loading the
/// datapath alone has taken 26 s.
const AGENT_DEADLINE: Duration = Duration::from_secs(180);

/// How long `lab apply` waits for the agent to enforce what it wrote.
const APPLY_TIMEOUT: Duration = AGENT_DEADLINE;

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A gauge or counter of the lab agent's `/metrics` (no labels).
fn agent_metric(node_netns: &str, name: &str) -> Option<u64> {
    let (_, body) = http_get_in(node_netns, METRICS_ADDR, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| {
            let v = v.trim();
            v.parse::<u64>()
                .ok()
                .or_else(|| v.parse::<f64>().ok().map(|f| f as u64))
        })
}

/// Waits until the agent has applied `revision` or a newer one: the change is in force.
///
/// # Errors
/// Not within [`APPLY_TIMEOUT`]: the error says what the agent last applied.
fn wait_applied(state_dir: &Path, node_netns: &str, revision: u64) -> Result<()> {
    let deadline = Instant::now() + APPLY_TIMEOUT;
    loop {
        let applied = agent_metric(node_netns, "network_policy_applied_revision");
        if applied.is_some_and(|a| a >= revision) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the lab agent did not apply the change within {APPLY_TIMEOUT:?} (applied revision {applied:?}, want {revision} or later); see {}",
                state_dir.join("agent.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the agent reports at least `count` pods without an interface (it has
/// seen pods the lab wires late).
fn wait_unbound(node_netns: &str, count: usize) -> Result<()> {
    let deadline = Instant::now() + AGENT_DEADLINE;
    loop {
        let unbound = agent_metric(node_netns, "network_policy_pods_unbound");
        if unbound.is_some_and(|n| n as usize >= count) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the agent did not report {count} pods waiting for their interface (saw {unbound:?})"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.1 GET from inside `netns`: (status, body).
pub fn http_get_in(netns: &str, addr: &str, path: &str) -> Option<(u16, String)> {
    let (netns, addr, path) = (netns.to_string(), addr.to_string(), path.to_string());
    std::thread::spawn(move || {
        let _in = netlab::enter_by_name(&netns).ok()?;
        let mut s =
            std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500))
                .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        Some((status, body))
    })
    .join()
    .ok()
    .flatten()
}

fn start_servers(state: &mut LabState) -> Result<()> {
    let exe = state.binary.to_string_lossy().into_owned();
    for p in &mut state.pods {
        let mut args = vec![exe.clone(), "lab".into(), "serve".into()];
        for (proto, port) in &p.pod.ports {
            args.push(format!("--listen={}/{port}", proto.to_ascii_lowercase()));
        }
        let log = state.state_dir.join(format!("server-{}.log", p.netns));
        p.server_pid = Some(spawn_in(&p.netns, &args, &[], &log)?);
    }
    // Servers bind at once; give them a moment before the first probe.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

/// Replaces the policies (NetworkPolicies and ClusterNetworkPolicies) and labels (and
/// adds or removes pods) while the lab is up, and returns when the agent enforces the
/// change (its applied revision is at least the one written). With the agent stopped (`stop_agent`) the change is written and enforced
/// when the agent resumes.
///
/// # Errors
/// Bad manifests (nothing is changed then), a failed step, or the agent not enforcing
/// the change within a minute.
pub fn apply(state_dir: &Path, manifests_dir: &Path) -> Result<LabState> {
    let mut state = LabState::load(state_dir)?;
    let docs = manifests::read_documents(manifests_dir)?;
    let previous: Vec<LabPod> = state.pods.iter().map(|p| p.pod.clone()).collect();
    let pods = manifests::plan_pods(&docs, &previous)?;
    let names = state.names();
    let node = NetNs::open(&names.node_netns);
    // Pods that left: stop their servers and remove their namespaces.
    let keep: Vec<String> = pods.iter().map(LabPod::key).collect();
    let (stay, gone): (Vec<_>, Vec<_>) = state
        .pods
        .drain(..)
        .partition(|p| keep.contains(&p.pod.key()));
    for p in gone {
        if let Some(pid) = p.server_pid {
            terminate(pid);
        }
        netlab::ip(None, &["netns", "del", &p.netns])?;
    }
    state.pods = stay;
    // New pods: wired without addresses first; the agent programs them, then they get
    // their addresses and servers.
    let added: Vec<&LabPod> = pods
        .iter()
        .filter(|p| !previous.iter().any(|q| q.key() == p.key()))
        .collect();
    let mut new_links = Vec::new();
    for pod in added.iter().filter(|p| !p.wire_late) {
        let netns = names.pod_netns(pod);
        let ns = NetNs::create(&netns)?.persist();
        let link = netlab::create_link(&node, &ns, &pod.host_if)?;
        new_links.push(((*pod).clone(), netns, link));
    }
    // A revision newer than anything the agent applied, so "applied at least this"
    // means this change is in force.
    let applied = agent_metric(&names.node_netns, "network_policy_applied_revision").unwrap_or(0);
    let revision = now_ns().max(applied.saturating_add(1));
    manifests::write_documents(
        &LabState::policy_dir(state_dir).join("cluster.yaml"),
        &manifests::agent_documents(&docs, &pods),
        Some(revision),
    )?;
    let late: Vec<&LabPod> = added.iter().copied().filter(|p| p.wire_late).collect();
    if !late.is_empty() {
        wait_unbound(&names.node_netns, late.len())?;
        for pod in late {
            let netns = names.pod_netns(pod);
            let ns = NetNs::create(&netns)?.persist();
            let link = netlab::create_link(&node, &ns, &pod.host_if)?;
            new_links.push((pod.clone(), netns, link));
        }
    }
    if state.agent_pid.is_some() {
        wait_applied(state_dir, &names.node_netns, revision)?;
    }
    let deadline = Instant::now() + AGENT_DEADLINE;
    for (pod, netns, link) in new_links {
        wait_programmed(&names, &link, deadline).with_context(|| format!("pod {}", pod.key()))?;
        netlab::assign_addresses(
            &node,
            &NetNs::open(&netns),
            &link,
            Some(pod.ipv4),
            Some(pod.ipv6),
        )?;
        state.pods.push(LabPodState {
            pod,
            netns,
            server_pid: None,
        });
    }
    let unstarted: Vec<usize> = state
        .pods
        .iter()
        .enumerate()
        .filter(|(_, p)| p.server_pid.is_none())
        .map(|(i, _)| i)
        .collect();
    if !unstarted.is_empty() {
        let mut sub = LabState {
            pods: unstarted.iter().map(|i| state.pods[*i].clone()).collect(),
            ..state.clone()
        };
        start_servers(&mut sub)?;
        for (i, p) in unstarted.into_iter().zip(sub.pods) {
            state.pods[i] = p;
        }
    }
    state.save()?;
    Ok(state)
}

/// Stops the lab's agent with SIGTERM and starts a new one on the same pins: the new
/// agent re-adopts the pinned programs and maps, so enforcement never stops.
///
/// # Errors
/// No lab is up, or the new agent did not become ready.
pub fn restart_agent(state_dir: &Path, deny_fold_window: &str) -> Result<LabState> {
    stop_agent(state_dir)?;
    resume_agent(state_dir, deny_fold_window)
}

/// Stops the lab's agent (SIGTERM); enforcement stays pinned in the kernel.
///
/// # Errors
/// No lab is up.
pub fn stop_agent(state_dir: &Path) -> Result<()> {
    let mut state = LabState::load(state_dir)?;
    if let Some(pid) = state.agent_pid.take() {
        terminate(pid);
    }
    state.save()
}

/// Starts the lab's agent again on the same pins and waits until it is ready.
///
/// # Errors
/// No lab is up, or the agent did not become ready.
pub fn resume_agent(state_dir: &Path, deny_fold_window: &str) -> Result<LabState> {
    let mut state = LabState::load(state_dir)?;
    let opts = UpOptions {
        manifests: PathBuf::new(),
        binary: state.binary.clone(),
        state_dir: state_dir.to_path_buf(),
        strict: state.mode == "strict",
        deny_fold_window: deny_fold_window.to_string(),
    };
    let log = state_dir.join("agent.log");
    if log.exists() {
        std::fs::rename(&log, state_dir.join("agent.previous.log"))?;
    }
    start_agent(&mut state, &opts)?;
    wait_ready(&state.names().node_netns, Duration::from_secs(20))?;
    Ok(state)
}

fn terminate(pid: u32) {
    // SAFETY: kill(2) on a pid this lab started (recorded in its state file).
    unsafe { libc::kill(-(pid as i32), libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
        if std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if Path::new(&format!("/proc/{pid}")).exists() {
        // SAFETY: as above.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    }
}

/// Removes everything a lab made, even after a failure midway: processes from the
/// state file, every namespace with the lab's prefix, its pins and its state directory.
///
/// # Errors
/// Steps that failed (each is still attempted).
pub fn down(state_dir: &Path) -> Result<()> {
    let mut problems = Vec::new();
    if let Ok(state) = LabState::load(state_dir) {
        for pid in state
            .pods
            .iter()
            .filter_map(|p| p.server_pid)
            .chain(state.agent_pid)
        {
            terminate(pid);
        }
    }
    let names = LabNames::for_state_dir(state_dir);
    let listed = netlab::ip(None, &["netns", "list"]).unwrap_or_default();
    for name in listed.lines().filter_map(|l| l.split_whitespace().next()) {
        if (name.starts_with(&names.pod_prefix) || name == names.node_netns)
            && let Err(e) = netlab::ip(None, &["netns", "del", name])
        {
            problems.push(format!("namespace {name}: {e}"));
        }
    }
    for suffix in ["lock", "policies.json"] {
        let _ = std::fs::remove_file(crate::guard::run_file(&names.pin_dir, suffix));
    }
    if names.pin_dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&names.pin_dir)
    {
        problems.push(format!("pins {}: {e}", names.pin_dir.display()));
    }
    if state_dir.exists()
        && let Err(e) = std::fs::remove_dir_all(state_dir)
    {
        problems.push(format!("state {}: {e}", state_dir.display()));
    }
    if !problems.is_empty() {
        bail!(
            "lab down left some things behind:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// A pod's IPv4 address by "namespace/name" (for the demo's checks).
pub fn ipv4_of(state: &LabState, key: &str) -> Option<Ipv4Addr> {
    state
        .pods
        .iter()
        .find(|p| p.pod.key() == key)
        .map(|p| p.pod.ipv4)
}
