//! `netpol-agent explain` and `netpol-agent lint` run as a user runs them: on the Stars
//! demo's manifests (the demo's own policy files, pods given addresses) and on crafted
//! directories; JSON and text output, exit codes, and errors that name the input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The demo's pods with the addresses the API would report.
const STARS_PODS: &str = r#"
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
spec: {containers: [{name: ui, image: x, ports: [{containerPort: 9001}]}]}
status: {phase: Running, podIPs: [{ip: 10.0.1.1}, {ip: "fd00::1:1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: stars, labels: {role: backend}}
spec: {containers: [{name: b, image: x, ports: [{containerPort: 6379}]}]}
status: {phase: Running, podIPs: [{ip: 10.0.2.1}, {ip: "fd00::2:1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: stars, labels: {role: frontend}}
spec: {containers: [{name: f, image: x, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIPs: [{ip: 10.0.2.2}, {ip: "fd00::2:2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: client, labels: {role: client}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 9000}]}]}
status: {phase: Running, podIPs: [{ip: 10.0.3.1}, {ip: "fd00::3:1"}]}
"#;

/// A fresh directory holding `files`, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str, files: &[(&str, &str)]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("netpol-explain-lint-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Stars demo after its last step: the demo's own policy files.
fn stars_final(tag: &str) -> Dir {
    let (_, files) = agent::demo::STEPS[4];
    let mut all = vec![("pods.yaml", STARS_PODS)];
    all.extend_from_slice(files);
    Dir::new(tag, &all)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netpol-agent"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the binary runs")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON object ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn explain_json_on_the_stars_demo_gives_the_verdict_and_the_reasons() {
    let dir = stars_final("stars-1");
    let policy_dir = dir.path().to_str().unwrap();
    let out = run(&[
        "explain",
        "--policy-dir",
        policy_dir,
        "--from",
        "client/client",
        "--to",
        "stars/frontend:80/TCP",
        "--json",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["allowed"], true);
    assert_eq!(v["mode"], "standard");
    let connections = v["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 2, "IPv4 and IPv6");
    let c = &connections[0];
    assert_eq!(c["family"], "IPv4");
    assert_eq!(c["from"]["ip"], "10.0.3.1");
    assert_eq!(c["egress"]["reason"], "default-allow");
    assert_eq!(c["ingress"]["reason"], "allowed-by-rule");
    assert_eq!(
        c["ingress"]["allowed_by"]["policy"],
        "stars/frontend-policy"
    );
    assert_eq!(c["ingress"]["allowed_by"]["rule"], 0);
    assert_eq!(c["ingress"]["allowed_by"]["peer"], "from[0]");
    assert_eq!(c["ingress"]["selected_by"][0]["mode"], "enforce");

    // Denied: the isolating policies are named; several --to in one object.
    let out = run(&[
        "explain",
        "--policy-dir",
        policy_dir,
        "--from",
        "client/client",
        "--to",
        "stars/backend",
        "--to",
        "stars/frontend:80",
        "--json",
    ]);
    let v = json_of(&out);
    assert_eq!(v["allowed"], false, "client -> backend is denied");
    let denied: Vec<&Value> = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["allowed"] == false)
        .collect();
    assert_eq!(
        denied.len(),
        2,
        "backend:6379 (its declared port) in both families"
    );
    for c in denied {
        assert_eq!(c["port"], 6379);
        assert_eq!(c["ingress"]["reason"], "no-rule-matched");
        let isolated: Vec<&str> = c["ingress"]["isolated_by"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(
            isolated,
            [
                "stars/allow-ui",
                "stars/backend-policy",
                "stars/default-deny"
            ]
        );
    }
}

#[test]
fn explain_text_reads_per_direction_and_takes_addresses() {
    let dir = stars_final("stars-2");
    let out = run(&[
        "explain",
        "--policy-dir",
        dir.path().to_str().unwrap(),
        "--from",
        "203.0.113.7",
        "--to",
        "10.0.2.1:6379/TCP",
        "--to",
        "10.0.2.2",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("203.0.113.7 -> stars/backend (10.0.2.1) TCP 6379: DENIED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("egress of (not a pod): allowed: no pod behind this address"),
        "{stdout}"
    );
    assert!(
        stdout.contains("isolated by: stars/allow-ui (enforce), stars/backend-policy (enforce), stars/default-deny (enforce)"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("overall: denied (standard mode)"),
        "{stdout}"
    );
    // An address without a port stands for its pod: the pod's declared port.
    assert!(
        stdout.contains("203.0.113.7 -> stars/frontend (10.0.2.2) TCP 80: DENIED"),
        "{stdout}"
    );
    let out = run(&[
        "explain",
        "--policy-dir",
        dir.path().to_str().unwrap(),
        "--from",
        "fd00::3:1",
        "--to",
        "[fd00::2:2]:80",
    ]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("client/client (fd00::3:1) -> stars/frontend (fd00::2:2) TCP 80: ALLOWED"),
        "{stdout}"
    );
    assert!(stdout.contains("overall: allowed"), "{stdout}");
    // An IPv4 source and an IPv6 destination share no family.
    assert!(
        !run(&[
            "explain",
            "--policy-dir",
            dir.path().to_str().unwrap(),
            "--from",
            "203.0.113.7",
            "--to",
            "[fd00::2:2]:80"
        ])
        .status
        .success()
    );
}

#[test]
fn explain_errors_name_the_input() {
    let dir = stars_final("stars-3");
    let policy_dir = dir.path().to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--from", "client/nope", "--to", "stars/frontend:80"],
            "pod client/nope: not in the cluster state",
        ),
        (
            &["--from", "client/client", "--to", "stars/frontend:80/icmp"],
            "\"stars/frontend:80/icmp\": protocol \"icmp\"",
        ),
        (
            &["--from", "client/client:80", "--to", "stars/frontend"],
            "--from",
        ),
        (
            &["--from", "client/client", "--to", "198.51.100.1"],
            "\"198.51.100.1\": an address needs a port",
        ),
        (
            &["--from", "client", "--to", "stars/frontend"],
            "\"client\"",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["explain", "--policy-dir", policy_dir];
        all.extend_from_slice(args);
        let out = run(&all);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let out = run(&[
        "explain",
        "--policy-dir",
        "/nonexistent/netpol-policies",
        "--from",
        "a/b",
        "--to",
        "c/d",
    ]);
    assert!(text(&out).1.contains("/nonexistent/netpol-policies"));
    let out = run(&["lint", "--kubeconfig", "/nonexistent/netpol-kubeconfig"]);
    assert_eq!(out.status.code(), Some(2), "not 1, which means warnings");
    assert!(
        text(&out)
            .1
            .contains("--kubeconfig /nonexistent/netpol-kubeconfig"),
        "{:?}",
        text(&out)
    );
    let out = run(&["explain", "--from", "a/b", "--to", "c/d"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("--policy-dir"), "{:?}", text(&out));
}

#[test]
fn a_bad_document_is_skipped_and_named_as_the_agent_does() {
    let dir = Dir::new(
        "bad-doc",
        &[
            ("pods.yaml", STARS_PODS),
            (
                "broken.yaml",
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: broken, namespace: stars}\nspec: {podSelector: 7}\n",
            ),
        ],
    );
    let out = run(&[
        "explain",
        "--policy-dir",
        dir.path().to_str().unwrap(),
        "--from",
        "client/client",
        "--to",
        "stars/backend",
        "--json",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        json_of(&out)["allowed"],
        true,
        "the broken policy is not in force"
    );
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("broken.yaml doc 1") && stderr.contains("skipped"),
        "{stderr}"
    );
}

#[test]
fn lint_is_clean_on_the_stars_demo_and_warns_in_strict_mode() {
    let dir = stars_final("stars-4");
    let policy_dir = dir.path().to_str().unwrap();
    let out = run(&["lint", "--policy-dir", policy_dir]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("no warnings (standard mode)"));

    let out = run(&[
        "lint",
        "--policy-dir",
        policy_dir,
        "--mode",
        "strict",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let v = json_of(&out);
    let codes: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"dns-blocked"), "{codes:?}");
    assert!(codes.contains(&"imds-blocked"), "{codes:?}");
    assert_eq!(v["count"], codes.len());
    let out = run(&["lint", "--policy-dir", policy_dir, "--mode", "lenient"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        text(&out)
            .1
            .contains("\"lenient\": expected standard or strict")
    );
}

const EGRESS_LOCKDOWN: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {containers: [{name: a, image: x, ports: [{name: http, containerPort: 8080}]}]}
status: {phase: Running, podIP: 10.4.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns-a, namespace: kube-system, labels: {k8s-app: kube-dns}}
status: {phase: Running, podIP: 10.4.9.53}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Egress]
  egress:
    - to: [{namespaceSelector: {}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
      ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ghost, namespace: shop}
spec: {podSelector: {matchLabels: {app: gone}}}
"#;

#[test]
fn lint_names_the_policy_and_pods_of_each_caution_and_exits_1() {
    let dir = Dir::new("lockdown", &[("shop.yaml", EGRESS_LOCKDOWN)]);
    let out = run(&[
        "lint",
        "--policy-dir",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let v = json_of(&out);
    let warnings = v["warnings"].as_array().unwrap();
    let find = |code: &str| {
        warnings
            .iter()
            .find(|w| w["code"] == code)
            .unwrap_or_else(|| panic!("{code} in {warnings:#?}"))
    };
    for code in ["imds-blocked", "pod-identity-blocked"] {
        let w = find(code);
        assert_eq!(w["policies"], serde_json::json!(["shop/api-egress"]));
        assert_eq!(w["pods"], serde_json::json!(["shop/api"]));
    }
    assert_eq!(
        find("selects-no-pod")["policies"],
        serde_json::json!(["shop/ghost"])
    );
    assert!(
        warnings.iter().all(|w| w["code"] != "dns-blocked"),
        "DNS is allowed: {warnings:#?}"
    );
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    let out = run(&["lint", "--policy-dir", dir.path().to_str().unwrap()]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("warning[imds-blocked]: 169.254.169.254:80 (the EC2 instance metadata service (IMDS)) is blocked by the isolation of shop/api-egress for pods shop/api"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("3 warning(s) (standard mode)"),
        "{stdout}"
    );
}
