//! `explain` agrees with real traffic: the Stars demo on the lab, step by step; at each
//! step `netpol-agent lab probe --json` connects every pod to every other on each
//! service port over TCP in both families, and `netpol-agent explain --json` over the
//! lab's policy directory (what its agent enforces) must give the same verdict for
//! every one of those connections.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use agent::lab::{self, LabState, UpOptions};
use serde_json::Value;

/// The Stars services' ports.
const PORTS: [u16; 4] = [80, 6379, 9000, 9001];
const PODS: [&str; 4] = [
    "management-ui/management-ui",
    "client/client",
    "stars/frontend",
    "stars/backend",
];

/// (from, to, port, family) -> passed.
type Verdicts = BTreeMap<(String, String, u64, String), bool>;

fn netpol(args: &[&str]) -> Value {
    let out = Command::new(common::binary())
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn write_step(dir: &Path, files: &[(&str, &str)]) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        std::fs::remove_file(entry.path()).unwrap();
    }
    std::fs::write(dir.join("pods.yaml"), agent::demo::PODS_YAML).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// What the probes saw: a connection passes when it connected or was refused (the
/// SYN reached the pod); a drop times out.
fn probed(state_dir: &Path) -> Verdicts {
    let ports = PORTS.map(|p| p.to_string()).join(",");
    let v = netpol(&[
        "lab",
        "probe",
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--ports",
        &ports,
        "--protocols",
        "tcp",
        "--timeout",
        "1s",
        "--json",
    ]);
    v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let result = p["result"].as_str().unwrap();
            assert!(matches!(result, "connected" | "refused" | "timeout"), "{p}");
            (
                (
                    p["from"].as_str().unwrap().to_owned(),
                    p["to"].as_str().unwrap().to_owned(),
                    p["port"].as_u64().unwrap(),
                    p["family"].as_str().unwrap().to_owned(),
                ),
                result != "timeout",
            )
        })
        .collect()
}

/// What explain says for the same connections.
fn explained(state_dir: &Path) -> Verdicts {
    let policy_dir = LabState::policy_dir(state_dir);
    let mut out = Verdicts::new();
    for from in PODS {
        let mut args = vec![
            "explain".to_owned(),
            "--policy-dir".to_owned(),
            policy_dir.to_str().unwrap().to_owned(),
            "--from".to_owned(),
            from.to_owned(),
            "--json".to_owned(),
        ];
        for to in PODS.iter().filter(|to| **to != from) {
            for port in PORTS {
                args.push("--to".to_owned());
                args.push(format!("{to}:{port}/TCP"));
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let v = netpol(&args);
        for c in v["connections"].as_array().unwrap() {
            out.insert(
                (
                    c["from"]["pod"].as_str().unwrap().to_owned(),
                    c["to"]["pod"].as_str().unwrap().to_owned(),
                    c["port"].as_u64().unwrap(),
                    c["family"].as_str().unwrap().to_owned(),
                ),
                c["allowed"].as_bool().unwrap(),
            );
        }
    }
    out
}

#[test]
fn explain_agrees_with_real_probes_at_every_stars_step() {
    let lab_dir = common::LabDir::new("explain");
    let manifests = common::manifests("explain", &[]);
    let _remove_manifests = RemoveOnDrop(manifests.clone());
    let mut denied_somewhere = false;
    for (step, (title, files)) in agent::demo::STEPS.iter().enumerate() {
        write_step(&manifests, files);
        if step == 0 {
            lab::up(&UpOptions {
                manifests: manifests.clone(),
                binary: common::binary(),
                state_dir: lab_dir.path().to_path_buf(),
                strict: false,
                deny_fold_window: "1s".into(),
            })
            .expect("lab up");
        } else {
            // Returns when the agent enforces the step.
            lab::apply(lab_dir.path(), &manifests).expect("lab apply");
        }
        let real = probed(lab_dir.path());
        let said = explained(lab_dir.path());
        assert_eq!(
            real.len(),
            12 * PORTS.len() * 2,
            "step {step}: every probe ran"
        );
        assert_eq!(
            said.keys().collect::<Vec<_>>(),
            real.keys().collect::<Vec<_>>(),
            "step {step}: the same connections"
        );
        let disagreements: Vec<String> = real
            .iter()
            .filter(|(k, passed)| said[*k] != **passed)
            .map(|(k, passed)| format!("{k:?}: probe passed={passed}, explain allowed={}", said[k]))
            .collect();
        assert!(
            disagreements.is_empty(),
            "step {} ({title}): explain disagrees with the probes:\n{}",
            step + 1,
            disagreements.join("\n")
        );
        denied_somewhere |= real.values().any(|passed| !passed);
        if step == 0 {
            assert!(real.values().all(|p| *p), "all open before any policy");
        }
    }
    assert!(
        denied_somewhere,
        "the steps deny something, so agreement means something"
    );
}

/// Removes the manifest directory however the test ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
