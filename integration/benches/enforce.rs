//! `cargo bench -p integration --bench enforce`: the time from writing a change into the
//! policy directory to the kernel maps holding it, through the whole agent (file
//! notification, parse of the changed file, resolve, plan, map writes). A node
//! namespace with 110 pods wired lab-style (host veths named as the VPC CNI names
//! them), a cluster of 5,000 pods and 1,000 NetworkPolicies in 50 namespace files,
//! the daemon running in-process inside the node namespace. 100 single changes (a
//! remote pod's label, a policy's port, a policy deleted and put back), each written
//! atomically with a revision (its modification time); the time is taken when the
//! agent reports that revision applied (its map writes are done by then). Needs root.
//! Ends with one JSON line.
//!
//! Invariants checked in every mode: every change's revision is applied, and after the
//! last change the agent's (incremental) resolution equals a fresh resolution of the
//! directory. `NETPOL_BENCH_QUICK=1`: 5 namespaces, 11 local pods, 12 changes, no
//! speed target (`NETPOL_BENCH_QUICK=1 cargo test -p integration --bench enforce`).

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use enforcer::binding::host_veth_name;
use netlab::{NetNs, prepare_node, unique_name};
use policy::{EnforcingMode, ResolveOptions, Resolver};
use tokio_util::sync::CancellationToken;

const PODS_PER_NAMESPACE: usize = 100;
const APPS: usize = 10;
const TEAMS: usize = 5;
const LOCAL_STRIDE: usize = 45;
const NODE: &str = "node-0";
const TARGET_P99_MS: f64 = 100.0;

struct Scale {
    namespaces: usize,
    local_pods: usize,
    changes: usize,
}

const FULL: Scale = Scale {
    namespaces: 50,
    local_pods: 110,
    changes: 100,
};
const QUICK: Scale = Scale {
    namespaces: 5,
    local_pods: 11,
    changes: 12,
};

/// The generator's model of one namespace: each pod's app label, and each policy's
/// port (`None`: deleted).
struct NamespaceModel {
    apps: Vec<usize>,
    ports: Vec<Option<u16>>,
}

fn ns_name(i: usize) -> String {
    format!("ns-{i:02}")
}

fn is_local(scale: &Scale, i: usize, j: usize) -> bool {
    let g = i * PODS_PER_NAMESPACE + j;
    g.is_multiple_of(LOCAL_STRIDE) && g / LOCAL_STRIDE < scale.local_pods
}

/// Namespace `i` as YAML: the namespace, its 100 pods, its 20 policies.
fn render(scale: &Scale, i: usize, model: &NamespaceModel) -> String {
    let ns = ns_name(i);
    let mut out = String::new();
    let _ = write!(
        out,
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{team: team-{}}}}}\n",
        i % TEAMS
    );
    for (j, app) in model.apps.iter().enumerate() {
        let node = if is_local(scale, i, j) {
            NODE.to_string()
        } else {
            format!("remote-{}", j % 7)
        };
        let tier = if j % 2 == 0 { "front" } else { "back" };
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: pod-{j:02}, namespace: {ns}, labels: {{app: app-{app}, tier: {tier}}}}}\nspec: {{nodeName: {node}, containers: [{{name: c, image: x, ports: [{{name: http, containerPort: 8080}}]}}]}}\nstatus: {{phase: Running, podIP: 10.{i}.{}.{}}}\n",
            j / 250,
            j % 250 + 1
        );
    }
    for (k, port) in model.ports.iter().enumerate() {
        let Some(port) = port else { continue };
        let text = match k {
            0..10 => format!(
                "metadata: {{name: allow-app-{k}, namespace: {ns}}}\nspec:\n  podSelector: {{matchLabels: {{app: app-{k}}}}}\n  ingress:\n    - from: [{{podSelector: {{matchLabels: {{app: app-{}}}}}}}]\n      ports: [{{port: {port}}}]\n",
                (k + 1) % APPS
            ),
            10..15 => format!(
                "metadata: {{name: allow-team-{t}, namespace: {ns}}}\nspec:\n  podSelector: {{matchLabels: {{app: app-{}}}}}\n  ingress:\n    - from: [{{podSelector: {{matchLabels: {{app: app-0, tier: front}}}}, namespaceSelector: {{matchLabels: {{team: team-{}}}}}}}]\n      ports: [{{port: {port}}}]\n",
                2 * (k - 10),
                (i + 1) % TEAMS,
                t = k - 10
            ),
            15..18 => {
                let c = k - 15;
                let target = (i + 1 + c) % scale.namespaces;
                format!(
                    "metadata: {{name: egress-cidr-{c}, namespace: {ns}}}\nspec:\n  podSelector: {{matchLabels: {{app: app-{c}}}}}\n  policyTypes: [Egress]\n  egress:\n    - to: [{{ipBlock: {{cidr: 10.{target}.0.0/16, except: [10.{target}.0.0/28]}}}}]\n      ports: [{{port: {port}}}]\n"
                )
            }
            18 => format!(
                "metadata: {{name: deny-ingress, namespace: {ns}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress]\n"
            ),
            _ => format!(
                "metadata: {{name: dns, namespace: {ns}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n    - to: [{{podSelector: {{matchLabels: {{app: app-9}}}}, namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: ns-00}}}}}}]\n      ports: [{{protocol: UDP, port: {port}}}]\n"
            ),
        };
        let _ = write!(
            out,
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n{text}"
        );
    }
    out
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Writes `text` to `path` atomically with its modification time set to `revision`,
/// staged outside the watched directory as `lab apply` stages its file (see
/// `agent::lab::manifests::stage_text`).
fn write_revision(path: &Path, text: &str, revision: u64) {
    agent::lab::manifests::stage_text(path, text, Some(revision))
        .and_then(agent::lab::manifests::Staged::commit)
        .expect("write change");
}

fn applied_revision(metrics: SocketAddr) -> Option<u64> {
    let mut s = TcpStream::connect_timeout(&metrics, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("network_policy_applied_revision ")?
            .trim()
            .parse()
            .ok()
    })
}

fn wait_applied(metrics: SocketAddr, revision: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while applied_revision(metrics).is_none_or(|r| r < revision) {
        assert!(
            Instant::now() < deadline,
            "revision {revision} never applied"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the enforce bench needs root");
    let quick = std::env::var("NETPOL_BENCH_QUICK").is_ok_and(|v| v == "1");
    let scale = if quick { QUICK } else { FULL };

    // The node and its pods, lab-style.
    let node = NetNs::create(&unique_name("npn")).expect("node namespace");
    prepare_node(&node).expect("node sysctls");
    let mut pod_namespaces = Vec::new();
    for i in 0..scale.namespaces {
        for j in 0..PODS_PER_NAMESPACE {
            if is_local(&scale, i, j) {
                let ns = NetNs::create(&unique_name("npp")).expect("pod namespace");
                let host_if = host_veth_name("eni", &ns_name(i), &format!("pod-{j:02}"), 0);
                netlab::create_link(&node, &ns, &host_if).expect("pod link");
                pod_namespaces.push(ns);
            }
        }
    }
    assert_eq!(pod_namespaces.len(), scale.local_pods);

    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    let mut models: Vec<NamespaceModel> = (0..scale.namespaces)
        .map(|_| NamespaceModel {
            apps: (0..PODS_PER_NAMESPACE).map(|j| j % APPS).collect(),
            ports: (0..20)
                .map(|k| Some(if k == 19 { 53 } else { 8080 }))
                .collect(),
        })
        .collect();
    let file = |i: usize| dir.join(format!("{}.yaml", ns_name(i)));
    for (i, model) in models.iter().enumerate() {
        std::fs::write(file(i), render(&scale, i, model)).unwrap();
    }

    // The agent, in the node namespace (its threads inherit it).
    let pins = PathBuf::from(format!("/sys/fs/bpf/{}", unique_name("netpol-enforce-")));
    let local = config::BindAddr {
        host: Some([127, 0, 0, 1].into()),
        port: 0,
    };
    let config = config::AgentConfig {
        enable_network_policy: true,
        log_file: work.path().join("flows").join("network-policy-agent.log"),
        metrics_bind_addr: local,
        health_probe_bind_addr: local,
        node_name: Some(NODE.into()),
        policy_dir: Some(dir.clone()),
        bpffs_pin_dir: pins.clone(),
        conntrack_cache_table_size: 32768,
        ..config::AgentConfig::default()
    };
    let shutdown = CancellationToken::new();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let node_name = node.name().to_string();
    let stop = shutdown.clone();
    let daemon = std::thread::spawn(move || {
        let _in_node = netlab::enter_by_name(&node_name).expect("enter node");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let run = tokio::spawn(agent::daemon::run(config, stop, Some(tx), None));
            let running = rx.await.expect("the daemon starts");
            started_tx
                .send((running.metrics_addr, running.enforcer.clone()))
                .unwrap();
            run.await.expect("daemon task").expect("daemon");
        });
    });
    let (metrics_addr, enforcer) = started_rx.recv().expect("daemon running");
    // Probes of the metrics endpoint come from the node namespace too.
    let _in_node = node.enter().expect("enter node");
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(300);
    while applied_revision(metrics_addr).is_none_or(|r| r == 0) {
        assert!(
            Instant::now() < deadline,
            "the first state was never applied"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let first_apply = started.elapsed();
    let unbound = enforcer.lock().unwrap().unbound_pods();
    assert!(unbound.is_empty(), "every local pod bound: {unbound:?}");

    let mut samples = Vec::new();
    for change in 0..scale.changes {
        let i = (change * 7 + 1) % scale.namespaces;
        let model = &mut models[i];
        match change % 3 {
            // A pod's label: moves it between peer sets of other pods.
            0 => {
                let j = (change * 13 + 3) % PODS_PER_NAMESPACE;
                model.apps[j] = (model.apps[j] + 1) % APPS;
            }
            // A policy's port.
            1 => {
                let k = change % 10;
                model.ports[k] = model.ports[k].map(|p| if p == 8080 { 8081 } else { 8080 });
            }
            // A policy deleted, or put back.
            _ => {
                let k = 10 + change % 5;
                model.ports[k] = match model.ports[k] {
                    Some(_) => None,
                    None => Some(8080),
                };
            }
        }
        let text = render(&scale, i, model);
        let revision = now_ns().max(applied_revision(metrics_addr).unwrap_or(0) + 1);
        let written = Instant::now();
        write_revision(&file(i), &text, revision);
        wait_applied(metrics_addr, revision);
        samples.push(written.elapsed().as_secs_f64() * 1000.0);
    }

    // Incremental equals from scratch.
    let fresh = Resolver::new().resolve(
        &policy::load_dir(&dir).expect("the directory loads"),
        &ResolveOptions {
            node_name: NODE.into(),
            node_addresses: agent::daemon::resolve_options(&config::AgentConfig::default())
                .node_addresses,
            mode: EnforcingMode::Standard,
        },
    );
    {
        let e = enforcer.lock().unwrap();
        let last = e.last_resolution().expect("a resolution");
        assert_eq!(last.pods.len(), fresh.pods.len());
        for (pod, resolved) in &fresh.pods {
            let ours = &last.pods[pod];
            assert_eq!(
                ours.ingress.entries.len(),
                resolved.ingress.entries.len(),
                "{pod}"
            );
            assert_eq!(
                ours.egress.entries.len(),
                resolved.egress.entries.len(),
                "{pod}"
            );
            assert_eq!(ours.ingress.state, resolved.ingress.state, "{pod}");
            assert_eq!(ours.egress.state, resolved.egress.state, "{pod}");
        }
    }

    shutdown.cancel();
    drop(enforcer);
    daemon.join().expect("daemon thread");
    let _ = std::fs::remove_dir_all(&pins);
    let _ = std::fs::remove_file(agent::guard::run_file(&pins, "lock"));
    let _ = std::fs::remove_file(agent::guard::run_file(&pins, "policies.json"));
    drop(pod_namespaces);

    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&sorted, 50.0), percentile(&sorted, 99.0));
    let pods = scale.namespaces * PODS_PER_NAMESPACE;
    println!(
        "{} local pods, {pods} pods, {} policies: first apply {:.0} ms; {} changes, write -> maps p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        scale.local_pods,
        scale.namespaces * 20,
        first_apply.as_secs_f64() * 1000.0,
        samples.len(),
        sorted[sorted.len() - 1]
    );
    if !quick {
        println!(
            "target: p99_ms <= {TARGET_P99_MS} ({})",
            p99 <= TARGET_P99_MS
        );
    }
    println!(
        "{{\"bench\":\"enforce\",\"pods\":{pods},\"local_pods\":{},\"changes\":{},\"p50_ms\":{p50:.1},\"p99_ms\":{p99:.1}{}}}",
        scale.local_pods,
        samples.len(),
        if quick { ",\"quick\":true" } else { "" }
    );
}
