//! Cluster-wide policy tiers (ClusterNetworkPolicy, Admin and Baseline) with real
//! traffic in the lab: the scenario of `common/cluster_scenario.rs` (an Admin Deny
//! over a NetworkPolicy's allow, an Admin Pass handing over to a NetworkPolicy that
//! denies, a Baseline Deny for a pod no NetworkPolicy selects and a Baseline Accept
//! that does not open an isolated pod, an Admin Accept for DNS). Each connection's
//! outcome, its flow-log line, and `netpol-agent explain` on the lab's policy
//! directory must agree; then two cluster policies change (one removed, one turned
//! from Deny to Accept) and the change is in force when `lab apply` returns.

mod common;

#[path = "common/cluster_scenario.rs"]
mod scenario;

use std::{
    net::{IpAddr, SocketAddr},
    process::Command,
    time::{Duration, Instant},
};

use agent::lab::{
    self, LabState, UpOptions,
    probe::{Outcome, Protocol, probe_one},
};
use scenario::Expect;
use serde_json::Value;

fn pod<'s>(state: &'s LabState, key: &str) -> &'s lab::LabPodState {
    state
        .pods
        .iter()
        .find(|p| p.pod.key() == key)
        .unwrap_or_else(|| panic!("pod {key} in the lab"))
}

/// One real connection of `e` over IPv4.
fn probe(state: &LabState, e: &Expect) -> Outcome {
    let (from, to) = (pod(state, e.from), pod(state, e.to));
    let protocol = match e.protocol {
        "TCP" => Protocol::TCP,
        _ => Protocol::UDP,
    };
    probe_one(
        &from.netns,
        SocketAddr::new(IpAddr::V4(to.pod.ipv4), e.port),
        protocol,
        Duration::from_secs(1),
    )
}

fn passed(outcome: Outcome) -> bool {
    assert_ne!(outcome, Outcome::Unsupported, "the probe ran");
    outcome != Outcome::Timeout
}

/// Waits for the flow-log line of `e` in its deciding direction with `verdict`.
fn wait_for_line(lab: &common::LabDir, e: &Expect, verdict: &str) -> Value {
    let flow_log = LabState::flow_log(lab.path());
    let (src_ns, src) = e.from.split_once('/').unwrap();
    let (dst_ns, dst) = e.to.split_once('/').unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = std::fs::read_to_string(&flow_log).unwrap_or_default();
        let line = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| {
                v["Verdict"] == verdict
                    && v["Direction"] == e.direction
                    && v["Src Pod"] == src
                    && v["Src Namespace"] == src_ns
                    && v["Dest Pod"] == dst
                    && v["Dest Namespace"] == dst_ns
                    && v["Dest Port"] == e.port
                    && v["Proto"] == e.protocol
            });
        if let Some(line) = line {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no {verdict} {} line for {e:?} reached the flow log:\n{text}",
            e.direction
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The flow log's spelling of a tier explain names (`Tier` key).
fn log_tier(tier: &str) -> &'static str {
    match tier {
        "Admin" => "ADMIN",
        "NetworkPolicy" => "NETWORK_POLICY",
        "Baseline" => "BASELINE",
        "Default" => "DEFAULT",
        other => panic!("no tier {other}"),
    }
}

/// What the line says about who decided.
fn check_line(line: &Value, e: &Expect) {
    match (e.cluster_policy, e.isolated_by) {
        (Some(name), _) => {
            assert_eq!(
                line["Policy"],
                format!("ClusterNetworkPolicy/{name}"),
                "{e:?}: {line}"
            );
            assert_eq!(line["Isolated By"], "", "{e:?}: {line}");
        }
        (None, Some(isolating)) => {
            assert_eq!(line["Policy"], "no-rule-matched", "{e:?}: {line}");
            assert_eq!(line["Isolated By"], isolating, "{e:?}: {line}");
        }
        (None, None) => assert_eq!(line["Policy"], "default-allow", "{e:?}: {line}"),
    }
    assert_eq!(line["Tier"], log_tier(e.tier), "{e:?}: {line}");
}

/// `netpol-agent explain --json` on the lab's policy directory for `e` (IPv4).
fn explain(lab: &common::LabDir, e: &Expect) -> Value {
    let out = Command::new(common::binary())
        .args([
            "explain",
            "--policy-dir",
            LabState::policy_dir(lab.path()).to_str().unwrap(),
            "--from",
            e.from,
            "--to",
            &format!("{}:{}/{}", e.to, e.port, e.protocol),
            "--json",
        ])
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "explain {e:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["family"] == "IPv4")
        .cloned()
        .expect("an IPv4 connection")
}

/// Real traffic, the flow log and explain agree with `e`.
fn check(lab: &common::LabDir, state: &LabState, e: &Expect) {
    let outcome = probe(state, e);
    assert_eq!(passed(outcome), e.allowed, "{e:?}: the probe {outcome:?}");
    let verdict = if e.allowed { "ACCEPT" } else { "DENY" };
    let line = wait_for_line(lab, e, verdict);
    check_line(&line, e);
    let said = explain(lab, e);
    assert_eq!(said["allowed"], e.allowed, "{e:?}: explain says {said}");
    let side = &said[e.direction];
    assert_eq!(side["tier"], e.tier, "{e:?}: explain says {said}");
    assert_eq!(
        side["cluster_rule"]["policy"].as_str(),
        e.cluster_policy,
        "{e:?}: explain says {said}"
    );
}

/// Every pod to every other on TCP 80 in both families: the probes and explain agree.
fn matrix_agrees_with_explain(lab: &common::LabDir, state: &LabState) {
    let spec = lab::probe::ProbeSpec {
        ports: vec![80],
        protocols: vec![Protocol::TCP],
        families: vec![lab::probe::Family::IPv4, lab::probe::Family::IPv6],
        timeout: Duration::from_secs(1),
    };
    let probes = lab::probe::probe_all(&state.probe_targets(), &spec);
    let n = state.pods.len();
    assert_eq!(probes.len(), n * (n - 1) * 2, "every probe ran");
    let mut disagreements = Vec::new();
    let mut denied = 0;
    for from in state.pods.iter().map(|p| p.pod.key()) {
        let mut args = vec![
            "explain".to_owned(),
            "--policy-dir".to_owned(),
            LabState::policy_dir(lab.path())
                .to_str()
                .unwrap()
                .to_owned(),
            "--from".to_owned(),
            from.clone(),
            "--json".to_owned(),
        ];
        for to in state
            .pods
            .iter()
            .map(|p| p.pod.key())
            .filter(|k| *k != from)
        {
            args.extend(["--to".to_owned(), format!("{to}:80/TCP")]);
        }
        let out = Command::new(common::binary())
            .args(&args)
            .output()
            .expect("the binary runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        for c in v["connections"].as_array().unwrap() {
            let family = c["family"].as_str().unwrap();
            let to = c["to"]["pod"].as_str().unwrap();
            let probe = probes
                .iter()
                .find(|p| p.from == from && p.to == to && format!("{:?}", p.family) == family)
                .unwrap_or_else(|| panic!("a probe {from} -> {to} {family}"));
            let real = passed(probe.result);
            denied += usize::from(!real);
            if c["allowed"] != real {
                disagreements.push(format!(
                    "{from} -> {to} {family}: probe {:?}, explain {c}",
                    probe.result
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "explain disagrees with the probes:\n{}",
        disagreements.join("\n")
    );
    assert!(
        denied > 0,
        "the matrix holds denials, so agreement means something"
    );
}

fn lab_up(lab: &common::LabDir, manifests: &std::path::Path) -> LabState {
    lab::up(&UpOptions {
        manifests: manifests.to_path_buf(),
        binary: common::binary(),
        state_dir: lab.path().to_path_buf(),
        strict: false,
        deny_fold_window: "1s".into(),
    })
    .expect("lab up")
}

#[test]
fn cluster_tiers_decide_real_traffic_and_a_change_is_in_force_when_apply_returns() {
    let lab = common::LabDir::new("cluster");
    let files = scenario::files();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let manifests = common::manifests("cluster", &files);
    let _remove = RemoveOnDrop(manifests.clone());
    let state = lab_up(&lab, &manifests);
    for e in &scenario::EXPECTED {
        check(&lab, &state, e);
    }
    matrix_agrees_with_explain(&lab, &state);

    // lint on what the lab's agent enforces: the Admin Accept after the Pass never
    // decides.
    let out = Command::new(common::binary())
        .args([
            "lint",
            "--policy-dir",
            LabState::policy_dir(lab.path()).to_str().unwrap(),
            "--json",
        ])
        .output()
        .expect("the binary runs");
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let shadowed: Vec<&Value> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["code"] == "cluster-rule-shadowed")
        .collect();
    assert_eq!(shadowed.len(), 1, "{v}");
    assert_eq!(
        shadowed[0]["cluster_policies"],
        serde_json::json!(["admin-accept-passns", "admin-pass-passns"]),
        "{v}"
    );

    // The Admin Deny goes, the Baseline Deny becomes an Accept: in force on return.
    std::fs::remove_file(manifests.join("10-admin-deny-to-secure.yaml")).unwrap();
    std::fs::write(
        manifests.join("20-baseline-deny-lonely.yaml"),
        scenario::baseline_lonely_accepts(),
    )
    .unwrap();
    let state = lab::apply(lab.path(), &manifests).expect("lab apply");
    let to_db = Expect {
        port: 81,
        allowed: true,
        tier: "NetworkPolicy",
        cluster_policy: None,
        isolated_by: None,
        ..scenario::EXPECTED[0]
    };
    let outcome = probe(&state, &to_db);
    assert!(
        passed(outcome),
        "the Admin Deny is gone when apply returns: {outcome:?}"
    );
    let line = wait_for_line(&lab, &to_db, "ACCEPT");
    assert_eq!(
        line["Policy"], "alpha/client-egress-anywhere",
        "the NetworkPolicy now decides: {line}"
    );
    assert_eq!(line["Tier"], "NETWORK_POLICY", "{line}");
    let said = explain(&lab, &to_db);
    assert_eq!(said["allowed"], true, "{said}");
    assert_eq!(said["egress"]["tier"], "NetworkPolicy", "{said}");

    let to_lonely = Expect {
        port: 81,
        allowed: true,
        cluster_policy: Some("baseline-deny-lonely"),
        ..scenario::EXPECTED[2]
    };
    let outcome = probe(&state, &to_lonely);
    assert!(
        passed(outcome),
        "the Baseline rule accepts when apply returns: {outcome:?}"
    );
    let line = wait_for_line(&lab, &to_lonely, "ACCEPT");
    check_line(&line, &to_lonely);
    let said = explain(&lab, &to_lonely);
    assert_eq!(said["allowed"], true, "{said}");
    assert_eq!(said["ingress"]["reason"], "baseline-accept", "{said}");

    // What did not change still holds.
    for e in &scenario::EXPECTED[1..2] {
        let again = Expect { port: 81, ..*e };
        assert_eq!(passed(probe(&state, &again)), again.allowed, "{again:?}");
    }
    matrix_agrees_with_explain(&lab, &state);
}

/// Removes the manifest directory however the test ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
