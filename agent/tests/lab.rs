//! The lab and the daemon under it: strict versus standard on pod creation, a policy
//! edit taking effect (enforcement and flow-log lines), an agent restart under
//! continuous probes, pod lifecycles (a finished pod whose address a live pod reuses,
//! an interface that appears after the pod), and clean-up that leaves nothing behind.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use agent::lab::{
    self, LabState, UpOptions,
    probe::{Outcome, Protocol, probe_one},
};
use datapath_common::{STATE_DEFAULT_ALLOW, STATE_DEFAULT_DENY, STATE_POLICIES_APPLIED};

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {containers: [{name: c, image: x}]}
"#;

const DENY_WEB: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
"#;

const ALLOW_CLIENT_8080: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: client}}}]
      ports: [{port: 8080}]
"#;

const CLIENT_EGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{}]
"#;

fn up(lab: &common::LabDir, manifests: &std::path::Path, strict: bool) -> LabState {
    lab::up(&UpOptions {
        manifests: manifests.to_path_buf(),
        binary: common::binary(),
        state_dir: lab.path().to_path_buf(),
        strict,
        deny_fold_window: "1s".into(),
    })
    .expect("lab up")
}

fn pod<'a>(state: &'a LabState, key: &str) -> &'a lab::LabPodState {
    state
        .pods
        .iter()
        .find(|p| p.pod.key() == key)
        .expect("pod in lab")
}

fn tcp(state: &LabState, from: &str, to: &str, port: u16) -> Outcome {
    let src = pod(state, from);
    let dst = pod(state, to);
    probe_one(
        &src.netns,
        SocketAddr::new(IpAddr::V4(dst.pod.ipv4), port),
        Protocol::TCP,
        Duration::from_millis(400),
    )
}

#[test]
fn strict_mode_denies_new_pods_until_policies_allow_and_standard_allows() {
    for strict in [false, true] {
        let lab = common::LabDir::new(if strict { "strict" } else { "standard" });
        let dir = common::manifests(
            if strict { "strict" } else { "standard" },
            &[("pods.yaml", PODS)],
        );
        let state = up(&lab, &dir, strict);
        let records = datapath::pinned_pod_records(&state.names().pins()).unwrap();
        assert_eq!(records.len(), 2);
        // Strict: default-deny, or isolated with only the node-local rule; never open.
        let open = |state: u8| state == STATE_DEFAULT_ALLOW;
        for (_, r) in &records {
            if strict {
                assert!(!open(r.ingress_state) && !open(r.egress_state), "{r:?}");
                assert!(
                    r.ingress_state == STATE_DEFAULT_DENY
                        || r.ingress_state == STATE_POLICIES_APPLIED
                );
            } else {
                assert!(open(r.ingress_state) && open(r.egress_state), "{r:?}");
            }
        }
        let outcome = tcp(&state, "shop/client", "shop/web", 8080);
        if strict {
            assert_eq!(
                outcome,
                Outcome::Timeout,
                "strict: a pod no policy selects stays denied"
            );
            // Policies that allow open exactly that: the web pod's ingress alone is not
            // enough, the client's egress is denied too until a policy opens it.
            std::fs::write(dir.join("allow.yaml"), ALLOW_CLIENT_8080).unwrap();
            lab::apply(lab.path(), &dir).unwrap();
            assert_eq!(
                tcp(&state, "shop/client", "shop/web", 8080),
                Outcome::Timeout,
                "strict: the client's egress is still closed"
            );
            std::fs::write(dir.join("egress.yaml"), CLIENT_EGRESS).unwrap();
            lab::apply(lab.path(), &dir).unwrap();
            // `lab apply` returns when the change is in force.
            assert_eq!(
                tcp(&state, "shop/client", "shop/web", 8080),
                Outcome::Connected,
                "allowed by policy as soon as apply returns"
            );
        } else {
            assert_eq!(outcome, Outcome::Connected);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn editing_a_policy_changes_enforcement_and_flow_lines() {
    let lab = common::LabDir::new("edit");
    let dir = common::manifests("edit", &[("pods.yaml", PODS)]);
    let state = up(&lab, &dir, false);
    assert_eq!(
        tcp(&state, "shop/client", "shop/web", 8080),
        Outcome::Connected
    );
    std::fs::write(dir.join("deny.yaml"), DENY_WEB).unwrap();
    let edited = Instant::now();
    lab::apply(lab.path(), &dir).unwrap();
    eprintln!("lab apply returned {:?} after the edit", edited.elapsed());
    // `lab apply` returns when the change is in force: the very next probe sees it.
    assert_eq!(
        tcp(&state, "shop/client", "shop/web", 8080),
        Outcome::Timeout,
        "denied as soon as apply returns"
    );
    // And deleting every policy opens it again at once.
    std::fs::remove_file(dir.join("deny.yaml")).unwrap();
    lab::apply(lab.path(), &dir).unwrap();
    assert_eq!(
        tcp(&state, "shop/client", "shop/web", 8080),
        Outcome::Connected,
        "open as soon as apply returns"
    );
    std::fs::write(dir.join("deny.yaml"), DENY_WEB).unwrap();
    lab::apply(lab.path(), &dir).unwrap();
    assert_eq!(
        tcp(&state, "shop/client", "shop/web", 8080),
        Outcome::Timeout
    );
    let flow_log = LabState::flow_log(lab.path());
    let web_ip = pod(&state, "shop/web").pod.ipv4.to_string();
    let denied_at = Instant::now();
    loop {
        let text = std::fs::read_to_string(&flow_log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| {
                v["Verdict"] == "DENY"
                    && v["Dest IP"] == web_ip.as_str()
                    && v["Dest Port"] == 8080
                    && v["Dest Pod"] == "web"
                    && v["Src Pod"] == "client"
            });
        if found {
            break;
        }
        assert!(
            denied_at.elapsed() < Duration::from_secs(60),
            "the DENY line never reached the file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn restarting_the_agent_under_probes_keeps_every_verdict() {
    let lab = common::LabDir::new("restart");
    let dir = common::manifests(
        "restart",
        &[("pods.yaml", PODS), ("allow.yaml", ALLOW_CLIENT_8080)],
    );
    let state = Arc::new(up(&lab, &dir, false));
    assert_eq!(
        tcp(&state, "shop/client", "shop/web", 8080),
        Outcome::Connected
    );
    assert_eq!(tcp(&state, "shop/client", "shop/web", 80), Outcome::Timeout);
    let stop = Arc::new(AtomicBool::new(false));
    let (allowed_failed, denied_passed, rounds) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let prober = {
        let (state, stop, af, dp, rounds) = (
            state.clone(),
            stop.clone(),
            allowed_failed.clone(),
            denied_passed.clone(),
            rounds.clone(),
        );
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if tcp(&state, "shop/client", "shop/web", 8080) != Outcome::Connected {
                    af.fetch_add(1, Ordering::Relaxed);
                }
                if tcp(&state, "shop/client", "shop/web", 80) != Outcome::Timeout {
                    dp.fetch_add(1, Ordering::Relaxed);
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..2 {
        lab::restart_agent(lab.path(), "1s").expect("restart");
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    assert!(
        rounds.load(Ordering::Relaxed) >= 3,
        "probes ran across the restarts"
    );
    assert_eq!(
        allowed_failed.load(Ordering::Relaxed),
        0,
        "no allowed connection dropped"
    );
    assert_eq!(
        denied_passed.load(Ordering::Relaxed),
        0,
        "no denied connection let through"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_policy_deleted_while_the_agent_was_down_leaves_nothing_behind() {
    let lab = common::LabDir::new("stale");
    let dir = common::manifests("stale", &[("pods.yaml", PODS), ("deny.yaml", DENY_WEB)]);
    let state = up(&lab, &dir, false);
    assert_eq!(
        tcp(&state, "shop/client", "shop/web", 8080),
        Outcome::Timeout
    );
    let pins = state.names().pins();
    let before = datapath::DatapathMaps::open_pinned(&pins).unwrap();
    let old_sets: std::collections::BTreeSet<u32> =
        before.pods().iter().map(|(_, r)| r.policy_set).collect();
    drop(before);
    lab::stop_agent(lab.path()).unwrap();
    // Still enforced while the agent is away.
    assert_eq!(
        tcp(&state, "shop/client", "shop/web", 8080),
        Outcome::Timeout
    );
    std::fs::remove_file(dir.join("deny.yaml")).unwrap();
    lab::apply(lab.path(), &dir).unwrap();
    lab::resume_agent(lab.path(), "1s").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while tcp(&state, "shop/client", "shop/web", 8080) != Outcome::Connected {
        assert!(
            Instant::now() < deadline,
            "the deleted policy stops applying after the restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = datapath::DatapathMaps::open_pinned(&pins).unwrap();
    let sets: std::collections::BTreeSet<u32> =
        after.pods().iter().map(|(_, r)| r.policy_set).collect();
    assert!(
        sets.is_disjoint(&old_sets),
        "new policy sets, never an old id reused: {sets:?} vs {old_sets:?}"
    );
    let entries = after.entries();
    assert!(
        entries
            .iter()
            .all(|(k, _, _)| sets.contains(&u32::from_be(k.policy_set_be))),
        "no entry of an old set is left: {entries:?}"
    );
    assert!(
        after
            .rule_lists()
            .iter()
            .all(|(id, _)| entries.iter().any(|(_, _, l)| l == id)),
        "no unused rule list is left"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn leftovers(state_dir: &std::path::Path, pids: &[u32]) -> Vec<String> {
    let names = lab::LabNames::for_state_dir(state_dir);
    let mut found = Vec::new();
    let netns = netlab::ip(None, &["netns", "list"]).unwrap_or_default();
    for n in netns.lines().filter_map(|l| l.split_whitespace().next()) {
        if n == names.node_netns || n.starts_with(&names.pod_prefix) {
            found.push(format!("namespace {n}"));
        }
    }
    if names.pin_dir.exists() {
        found.push(format!("pins {}", names.pin_dir.display()));
    }
    if state_dir.exists() {
        found.push(format!("state {}", state_dir.display()));
    }
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if !stat.is_empty() && !stat.contains(") Z ") {
            found.push(format!("process {pid}"));
        }
    }
    let links = netlab::ip(None, &["-o", "link", "show"]).unwrap_or_default();
    for l in links.lines() {
        if state_dir_ifnames(state_dir)
            .iter()
            .any(|n| l.contains(n.as_str()))
        {
            found.push(format!("root-namespace link: {l}"));
        }
    }
    found
}

fn state_dir_ifnames(_state_dir: &std::path::Path) -> Vec<String> {
    ["shop/web", "shop/client"]
        .iter()
        .map(|k| {
            let (ns, name) = k.split_once('/').unwrap();
            lab::manifests::host_interface_name(ns, name)
        })
        .collect()
}

#[test]
fn lab_down_leaves_nothing_behind_even_after_failures() {
    let lab = common::LabDir::new("down");
    let dir = common::manifests("down", &[("pods.yaml", PODS), ("deny.yaml", DENY_WEB)]);
    let state = up(&lab, &dir, false);
    let pids: Vec<u32> = state
        .pods
        .iter()
        .filter_map(|p| p.server_pid)
        .chain(state.agent_pid)
        .collect();
    assert_eq!(pids.len(), 3);
    // A probe that fails (denied, times out) changes nothing about clean-up.
    assert_eq!(
        tcp(&state, "shop/client", "shop/web", 8080),
        Outcome::Timeout
    );
    lab::down(lab.path()).expect("down");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(leftovers(lab.path(), &pids), Vec::<String>::new());

    // A build that fails midway (its node namespace name is taken) cleans up too.
    let names = lab::LabNames::for_state_dir(lab.path());
    let squatter = netlab::NetNs::create(&names.node_netns).unwrap().persist();
    let err = lab::up(&UpOptions {
        manifests: dir.clone(),
        binary: common::binary(),
        state_dir: lab.path().to_path_buf(),
        strict: false,
        deny_fold_window: "1s".into(),
    })
    .expect_err("the node namespace exists");
    assert!(format!("{err:#}").contains("node namespace"), "{err:#}");
    drop(squatter);
    assert_eq!(leftovers(lab.path(), &[]), Vec::<String>::new());

    // Broken manifests fail before anything is made, naming the file and field.
    std::fs::write(dir.join("broken.yaml"), "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b, namespace: shop}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: Web_Port}]}]\n").unwrap();
    let err = lab::up(&UpOptions {
        manifests: dir.clone(),
        binary: common::binary(),
        state_dir: lab.path().to_path_buf(),
        strict: false,
        deny_fold_window: "1s".into(),
    })
    .expect_err("broken manifest");
    let text = format!("{err:#}");
    assert!(
        text.contains("broken.yaml") && text.contains("port"),
        "{text}"
    );
    assert_eq!(leftovers(lab.path(), &[]), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

const LIFECYCLE_PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, image: x, ports: [{containerPort: 8080}]}]}
status: {podIP: 10.244.7.7}
---
apiVersion: v1
kind: Pod
metadata: {name: web-old, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, image: x, ports: [{containerPort: 8080}]}]}
status: {phase: Succeeded, podIP: 10.244.7.7}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {containers: [{name: c, image: x}]}
"#;

const LATE_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-late
  namespace: shop
  labels: {app: web}
  annotations: {lab.netpol-agent.dev/wire: late}
spec: {containers: [{name: web, image: x, ports: [{containerPort: 8080}]}]}
"#;

#[test]
fn lab_stages_finished_pods_reused_addresses_and_late_interfaces() {
    let lab = common::LabDir::new("lifecycle");
    let dir = common::manifests(
        "lifecycle",
        &[
            ("pods.yaml", LIFECYCLE_PODS),
            ("allow.yaml", ALLOW_CLIENT_8080),
        ],
    );
    // A finished pod holds the address the live web pod now has.
    let state = up(&lab, &dir, false);
    assert_eq!(state.pods.len(), 2, "the finished pod is not wired");
    let enforced = |state: &LabState, web: &str, what: &str| {
        assert_eq!(
            tcp(state, "shop/client", web, 8080),
            Outcome::Connected,
            "{what}: 8080 allowed"
        );
        assert_eq!(
            tcp(state, "shop/client", web, 80),
            Outcome::Timeout,
            "{what}: 80 denied"
        );
    };
    enforced(&state, "shop/web", "address reused");
    // The finished pod is deleted, and port 81 opened in the same change (seeing 81
    // open tells that the agent has applied it): the live pod keeps its rules.
    std::fs::write(dir.join("pods.yaml"), PODS_WITHOUT_OLD).unwrap();
    std::fs::write(dir.join("allow81.yaml"), ALLOW_CLIENT_81).unwrap();
    let state = lab::apply(lab.path(), &dir).unwrap();
    assert_eq!(
        tcp(&state, "shop/client", "shop/web", 81),
        Outcome::Connected,
        "the change is in force when apply returns"
    );
    enforced(&state, "shop/web", "old pod deleted");
    // A pod the agent sees before its interface exists: bound once the interface appears.
    std::fs::write(dir.join("late.yaml"), LATE_POD).unwrap();
    let state = lab::apply(lab.path(), &dir).expect("the late pod is programmed");
    enforced(&state, "shop/web-late", "late interface");
    enforced(&state, "shop/web", "late interface, web");
    let _ = std::fs::remove_dir_all(&dir);
}

const ALLOW_CLIENT_81: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client-81, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: client}}}]
      ports: [{port: 81}]
"#;

const PODS_WITHOUT_OLD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, image: x, ports: [{containerPort: 8080}]}]}
status: {podIP: 10.244.7.7}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {containers: [{name: c, image: x}]}
"#;
