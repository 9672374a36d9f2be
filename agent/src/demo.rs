//! `netpol-agent demo`: the Stars demo of the EKS user guide on the local lab, step by
//! step: all open → default-deny in stars and client → allow-ui in both →
//! backend-policy → frontend-policy. After each step it probes who reaches whom on each
//! service's port and shows the flow-log lines the step produced.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};

use crate::lab::{
    self, LabState, UpOptions,
    probe::{Family, Probe, Protocol},
};

/// The pods of the demo: (namespace, name, service port).
pub const PODS: [(&str, &str, u16); 4] = [
    ("management-ui", "management-ui", 9001),
    ("client", "client", 9000),
    ("stars", "frontend", 80),
    ("stars", "backend", 6379),
];

/// The demo's namespaces and pods (the lab gives them addresses).
pub const PODS_YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: stars}
---
apiVersion: v1
kind: Namespace
metadata: {name: management-ui, labels: {role: management-ui}}
---
apiVersion: v1
kind: Namespace
metadata: {name: client, labels: {role: client}}
---
apiVersion: v1
kind: Pod
metadata: {name: management-ui, namespace: management-ui, labels: {role: management-ui}}
spec: {containers: [{name: management-ui, image: calico/star-collect:v0.1.0, ports: [{containerPort: 9001}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: stars, labels: {role: backend}}
spec: {containers: [{name: backend, image: calico/star-probe:v0.1.0, ports: [{containerPort: 6379}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: stars, labels: {role: frontend}}
spec: {containers: [{name: frontend, image: calico/star-probe:v0.1.0, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: client, labels: {role: client}}
spec: {containers: [{name: client, image: calico/star-probe:v0.1.0, ports: [{containerPort: 9000}]}]}
"#;

const DEFAULT_DENY: &str = r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: default-deny, namespace: stars}
spec:
  podSelector:
    matchLabels: {}
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: default-deny, namespace: client}
spec:
  podSelector:
    matchLabels: {}
"#;

const ALLOW_UI: &str = r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {namespace: stars, name: allow-ui}
spec:
  podSelector:
    matchLabels: {}
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              role: management-ui
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {namespace: client, name: allow-ui}
spec:
  podSelector:
    matchLabels: {}
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              role: management-ui
"#;

const BACKEND_POLICY: &str = r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {namespace: stars, name: backend-policy}
spec:
  podSelector:
    matchLabels:
      role: backend
  ingress:
    - from:
        - podSelector:
            matchLabels:
              role: frontend
      ports:
        - protocol: TCP
          port: 6379
"#;

const FRONTEND_POLICY: &str = r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {namespace: stars, name: frontend-policy}
spec:
  podSelector:
    matchLabels:
      role: frontend
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              role: client
      ports:
        - protocol: TCP
          port: 80
"#;

/// The steps: a title and the policy files in force.
pub const STEPS: [(&str, &[(&str, &str)]); 5] = [
    ("all open: no policies", &[]),
    (
        "default-deny in the stars and client namespaces",
        &[("default-deny.yaml", DEFAULT_DENY)],
    ),
    (
        "allow-ui: the management UI may reach stars and client",
        &[
            ("default-deny.yaml", DEFAULT_DENY),
            ("allow-ui.yaml", ALLOW_UI),
        ],
    ),
    (
        "backend-policy: frontend → backend on TCP 6379",
        &[
            ("default-deny.yaml", DEFAULT_DENY),
            ("allow-ui.yaml", ALLOW_UI),
            ("backend-policy.yaml", BACKEND_POLICY),
        ],
    ),
    (
        "frontend-policy: client → frontend on TCP 80",
        &[
            ("default-deny.yaml", DEFAULT_DENY),
            ("allow-ui.yaml", ALLOW_UI),
            ("backend-policy.yaml", BACKEND_POLICY),
            ("frontend-policy.yaml", FRONTEND_POLICY),
        ],
    ),
];

/// What one step showed.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub title: String,
    pub probes: Vec<Probe>,
    pub flow_lines: Vec<String>,
}

fn write_step(dir: &Path, files: &[(&str, &str)]) -> Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        std::fs::remove_file(entry.path())?;
    }
    std::fs::write(dir.join("pods.yaml"), PODS_YAML)?;
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// Probes from every demo pod to every other on the destination's service port, over
/// TCP in both families.
fn probe_step(state: &LabState, timeout: Duration) -> Vec<Probe> {
    let targets = state.probe_targets();
    let mut jobs = Vec::new();
    for (dst, _) in &targets {
        let Some((_, _, port)) = PODS
            .iter()
            .find(|(ns, n, _)| dst.namespace == *ns && dst.name == *n)
        else {
            continue;
        };
        for (src, netns) in targets.iter().filter(|(s, _)| s.key() != dst.key()) {
            for family in [Family::IPv4, Family::IPv6] {
                jobs.push((
                    src.key(),
                    netns.clone(),
                    dst.clone(),
                    family,
                    Protocol::TCP,
                    *port,
                ));
            }
        }
    }
    let mut probes = lab::probe::run_jobs(jobs, timeout);
    probes.sort_by(|a, b| {
        (&a.from, &a.to, a.port, a.family as u8).cmp(&(&b.from, &b.to, b.port, b.family as u8))
    });
    probes
}

/// Runs the whole demo, cleaning up afterwards (also on failure).
///
/// # Errors
/// The lab could not be built, or a step failed.
pub fn run(
    binary: &Path,
    state_dir: &Path,
    mut on_step: impl FnMut(usize, &StepReport),
) -> Result<Vec<StepReport>> {
    let manifests = tempdir(state_dir)?;
    write_step(&manifests, STEPS[0].1)?;
    let opts = UpOptions {
        manifests: manifests.clone(),
        binary: binary.to_path_buf(),
        state_dir: state_dir.to_path_buf(),
        strict: false,
        deny_fold_window: "1s".into(),
    };
    let result = (|| -> Result<Vec<StepReport>> {
        let mut state = lab::up(&opts).context("building the lab")?;
        let flow_log = LabState::flow_log(state_dir);
        let mut offset = 0u64;
        let mut reports = Vec::new();
        for (i, (title, files)) in STEPS.iter().enumerate() {
            write_step(&manifests, files)?;
            if i > 0 {
                state = lab::apply(state_dir, &manifests)?;
                // The agent reads the directory every 200 ms and applies at once.
                std::thread::sleep(Duration::from_millis(1200));
            }
            let probes = probe_step(&state, Duration::from_millis(800));
            // Lines reach the file within the 1 s flush interval.
            std::thread::sleep(Duration::from_millis(1300));
            let (lines, next) = read_new_lines(&flow_log, offset);
            offset = next;
            let report = StepReport {
                title: (*title).to_string(),
                probes,
                flow_lines: lines,
            };
            on_step(i, &report);
            reports.push(report);
        }
        Ok(reports)
    })();
    let cleanup = lab::down(state_dir);
    let _ = std::fs::remove_dir_all(&manifests);
    let reports = result?;
    cleanup?;
    Ok(reports)
}

fn tempdir(state_dir: &Path) -> Result<PathBuf> {
    let tag = LabState::policy_dir(state_dir)
        .to_string_lossy()
        .replace('/', "_");
    let dir = std::env::temp_dir().join(format!("netpol-demo{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Whole lines appended to `path` since `offset`.
pub fn read_new_lines(path: &Path, offset: u64) -> (Vec<String>, u64) {
    let Ok(bytes) = std::fs::read(path) else {
        return (Vec::new(), offset);
    };
    let start = (offset as usize).min(bytes.len());
    let end = bytes[start..]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(start, |i| start + i + 1);
    let text = String::from_utf8_lossy(&bytes[start..end]);
    (text.lines().map(str::to_string).collect(), end as u64)
}

/// The report for people: the reachability per service port and the step's lines.
pub fn render(i: usize, report: &StepReport) -> String {
    let mut out = format!("\n=== step {}: {} ===\n", i + 1, report.title);
    let mut rows: Vec<String> = Vec::new();
    for (ns, name, port) in PODS {
        let to = format!("{ns}/{name}");
        let reached: Vec<String> = report
            .probes
            .iter()
            .filter(|p| p.to == to && p.connected && p.family == Family::IPv4)
            .map(|p| p.from.clone())
            .collect();
        let v6_agrees = report
            .probes
            .iter()
            .filter(|p| p.to == to && p.family == Family::IPv6)
            .all(|p6| {
                report.probes.iter().any(|p4| {
                    p4.family == Family::IPv4
                        && p4.from == p6.from
                        && p4.to == p6.to
                        && p4.connected == p6.connected
                })
            });
        rows.push(format!(
            "  {to:>28}:{port:<5} reached by: {}{}",
            if reached.is_empty() {
                "nobody".to_string()
            } else {
                reached.join(", ")
            },
            if v6_agrees { "" } else { "  (IPv6 differs!)" }
        ));
    }
    out.push_str(&rows.join("\n"));
    let denies: Vec<&String> = report
        .flow_lines
        .iter()
        .filter(|l| l.contains(r#""Verdict":"DENY""#))
        .collect();
    let accepts: Vec<&String> = report
        .flow_lines
        .iter()
        .filter(|l| l.contains(r#""Verdict":"ACCEPT""#))
        .collect();
    out.push_str(&format!(
        "\n  flow-log lines this step: {} ({} ACCEPT, {} DENY); a few of each:\n",
        report.flow_lines.len(),
        accepts.len(),
        denies.len()
    ));
    for line in denies.iter().take(3).chain(accepts.iter().take(3)) {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

pub fn default_state_dir() -> PathBuf {
    PathBuf::from(lab::DEFAULT_STATE_DIR)
}
