//! `netpol-agent explain` and `netpol-agent lint` with cluster policies
//! (ClusterNetworkPolicy, Admin and Baseline tiers), run as a user runs them on the
//! scenario of `common/cluster_scenario.rs` and on crafted directories: explain names
//! the deciding tier and cluster rule and walks the tier order (an Admin Pass shows);
//! lint reports rules with `domainNames` peers, shadowed rules, cluster policies that
//! apply to no pod, and names cluster rules that block DNS.

#[path = "common/cluster_scenario.rs"]
mod scenario;

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

/// A fresh directory holding `files`, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str, files: &[(&str, String)]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "netpol-explain-cluster-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Self(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scenario_dir(tag: &str) -> Dir {
    Dir::new(tag, &scenario::files())
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

fn explain_json(dir: &Dir, from: &str, to: &str) -> Value {
    let out = run(&[
        "explain",
        "--policy-dir",
        dir.path(),
        "--from",
        from,
        "--to",
        to,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&out)
}

fn lint_json(dir: &Dir) -> Value {
    let out = run(&["lint", "--policy-dir", dir.path(), "--json"]);
    let v = json_of(&out);
    let expected_code = if v["count"] == 0 { 0 } else { 1 };
    assert_eq!(out.status.code(), Some(expected_code), "{v}");
    v
}

fn warnings_of<'v>(v: &'v Value, code: &str) -> Vec<&'v Value> {
    v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["code"] == code)
        .collect()
}

#[test]
fn explain_names_the_deciding_tier_and_cluster_rule_of_each_scenario_connection() {
    let dir = scenario_dir("tiers");
    for e in &scenario::EXPECTED {
        let v = explain_json(&dir, e.from, &format!("{}:{}/{}", e.to, e.port, e.protocol));
        let connections = v["connections"].as_array().unwrap();
        assert_eq!(connections.len(), 2, "both families: {v}");
        for c in connections {
            assert_eq!(c["allowed"], e.allowed, "{e:?}: {c}");
            let side = &c[e.direction];
            assert_eq!(side["allowed"], e.allowed, "{e:?}: {c}");
            assert_eq!(side["tier"], e.tier, "{e:?}: {c}");
            assert_eq!(
                side["cluster_rule"]["policy"].as_str(),
                e.cluster_policy,
                "{e:?}: {c}"
            );
            let isolated: Vec<&str> = side["isolated_by"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            assert_eq!(
                isolated,
                e.isolated_by.into_iter().collect::<Vec<_>>(),
                "{e:?}: a cluster rule's decision names no isolating NetworkPolicy: {c}"
            );
            // Every direction walks the tiers while cluster policies exist.
            assert!(!side["tiers"].as_array().unwrap().is_empty(), "{c}");
        }
    }
}

#[test]
fn explain_walks_an_admin_pass_to_the_network_policy_that_decides() {
    let dir = scenario_dir("pass");
    let v = explain_json(&dir, "alpha/client", "passns/web:80/TCP");
    let ingress = &v["connections"][0]["ingress"];
    assert_eq!(ingress["reason"], "no-rule-matched", "{ingress}");
    let walk = ingress["tiers"].as_array().unwrap();
    assert_eq!(walk.len(), 2, "{ingress}");
    assert_eq!(walk[0]["tier"], "Admin");
    assert_eq!(walk[0]["outcome"], "matched");
    assert_eq!(walk[0]["rule"]["policy"], "admin-pass-passns");
    assert_eq!(walk[0]["rule"]["action"], "Pass");
    assert_eq!(walk[0]["rule"]["name"], "hand-over");
    assert_eq!(walk[1]["tier"], "NetworkPolicy");
    assert_eq!(walk[1]["outcome"], "selected");

    let out = run(&[
        "explain",
        "--policy-dir",
        dir.path(),
        "--from",
        "alpha/client",
        "--to",
        "passns/web:80",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "tiers: Admin: Pass by Admin ClusterNetworkPolicy admin-pass-passns (priority 5) ingress rule 0 (\"hand-over\") -> NetworkPolicy: policies select the pod and decide; decided by NetworkPolicy"
        ),
        "{text}"
    );
    assert!(
        text.contains("isolated by: passns/web-deny-ingress"),
        "{text}"
    );

    // A Baseline Deny: the walk goes through every tier up to Baseline.
    let out = run(&[
        "explain",
        "--policy-dir",
        dir.path(),
        "--from",
        "alpha/client",
        "--to",
        "open/lonely:80",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "ingress of open/lonely: DENIED: Deny by Baseline ClusterNetworkPolicy baseline-deny-lonely (priority 10) ingress rule 0 (\"not-from-alpha\")"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "tiers: Admin: no rule matches -> NetworkPolicy: no policy selects the pod -> Baseline: Deny by"
        ),
        "{text}"
    );
}

#[test]
fn explain_without_cluster_policies_has_no_tier_walk() {
    let files: Vec<(&str, String)> = scenario::files()
        .into_iter()
        .filter(|(name, _)| name.starts_with("0"))
        .collect();
    let dir = Dir::new("no-cluster", &files);
    let v = explain_json(&dir, "alpha/client", "open/lonely:80/TCP");
    let c = &v["connections"][0];
    assert_eq!(c["allowed"], true, "{c}");
    assert_eq!(c["ingress"]["tier"], "Default", "{c}");
    assert_eq!(c["ingress"]["reason"], "default-allow", "{c}");
    assert_eq!(c["ingress"]["tiers"], serde_json::json!([]), "{c}");
    assert_eq!(c["egress"]["tier"], "NetworkPolicy", "{c}");
    assert_eq!(c["egress"]["reason"], "allowed-by-rule", "{c}");
}

#[test]
fn lint_on_the_scenario_reports_the_shadowed_admin_accept_and_only_real_blocks() {
    let dir = scenario_dir("lint");
    let v = lint_json(&dir);
    let shadowed = warnings_of(&v, "cluster-rule-shadowed");
    assert_eq!(shadowed.len(), 1, "{v}");
    let message = shadowed[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "Admin ClusterNetworkPolicy admin-accept-passns (priority 20) ingress rule 0 (Accept) is shadowed by Admin ClusterNetworkPolicy admin-pass-passns (priority 5) ingress rule 0 (\"hand-over\") (Pass)"
        ),
        "{message}"
    );
    assert_eq!(shadowed[0]["pods"], serde_json::json!(["passns/web"]));
    assert!(warnings_of(&v, "cluster-selects-no-pod").is_empty(), "{v}");
    assert!(
        warnings_of(&v, "cluster-unenforceable-peer").is_empty(),
        "{v}"
    );
    // DNS: the Admin Accept lets secure/db reach it on UDP 53; its NetworkPolicy
    // still blocks TCP 53.
    let dns = warnings_of(&v, "dns-blocked");
    assert_eq!(dns.len(), 1, "{v}");
    assert_eq!(dns[0]["pods"], serde_json::json!(["secure/db"]));
    let message = dns[0]["message"].as_str().unwrap();
    assert!(message.contains("on TCP 53:"), "{message}");
    assert!(message.contains("secure/db-no-egress"), "{message}");
    assert_eq!(dns[0]["cluster_policies"], serde_json::json!([]));
}

const TWO_PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {team: app}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: app, labels: {app: a}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIPs: [{ip: 10.1.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 53, protocol: UDP}]}]}
status: {phase: Running, podIPs: [{ip: 10.1.0.53}]}
"#;

const DOMAIN_RULES: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: no-example}
spec:
  tier: Admin
  priority: 30
  subject: {namespaces: {matchLabels: {team: app}}}
  egress:
  - name: block-example
    action: Deny
    to: [{domainNames: ["example.com"]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: allow-aws}
spec:
  tier: Baseline
  priority: 30
  subject: {namespaces: {matchLabels: {team: app}}}
  egress:
  - action: Accept
    to: [{domainNames: ["*.amazonaws.com"]}, {networks: [10.9.0.0/16]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: for-nobody}
spec:
  tier: Baseline
  priority: 40
  subject: {namespaces: {matchLabels: {team: nobody}}}
  ingress:
  - action: Deny
    from: [{namespaces: {}}]
"#;

#[test]
fn lint_names_cluster_rules_with_domain_names_and_policies_that_apply_to_no_pod() {
    let dir = Dir::new(
        "domains",
        &[
            ("pods.yaml", TWO_PODS.to_owned()),
            ("cluster.yaml", DOMAIN_RULES.to_owned()),
        ],
    );
    let v = lint_json(&dir);
    let unenforceable = warnings_of(&v, "cluster-unenforceable-peer");
    assert_eq!(unenforceable.len(), 2, "{v}");
    let messages: Vec<&str> = unenforceable
        .iter()
        .map(|w| w["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains(
            "Admin ClusterNetworkPolicy no-example (priority 30) egress rule 0 (\"block-example\"): domainNames peers (example.com) cannot be enforced; the Deny rule fails closed"
        )),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("allow-aws")
            && m.contains("*.amazonaws.com")
            && m.contains("the Accept rule ignores them")),
        "{messages:?}"
    );
    for w in &unenforceable {
        assert_eq!(w["pods"], serde_json::json!(["app/a"]), "{w}");
    }
    let nobody = warnings_of(&v, "cluster-selects-no-pod");
    assert_eq!(nobody.len(), 1, "{v}");
    assert_eq!(
        nobody[0]["cluster_policies"],
        serde_json::json!(["for-nobody"])
    );
    // The failing-closed Deny blocks DNS too, and lint names it.
    let dns = warnings_of(&v, "dns-blocked");
    assert_eq!(dns.len(), 1, "{v}");
    assert_eq!(dns[0]["pods"], serde_json::json!(["app/a"]));
    assert_eq!(
        dns[0]["cluster_policies"],
        serde_json::json!(["no-example"])
    );
    assert!(
        dns[0]["message"].as_str().unwrap().contains(
            "denied by Admin ClusterNetworkPolicy no-example (priority 30) egress rule 0"
        ),
        "{}",
        dns[0]["message"]
    );
    // explain says so for the same connection.
    let e = explain_json(&dir, "app/a", "kube-system/dns:53/UDP");
    let egress = &e["connections"][0]["egress"];
    assert_eq!(egress["reason"], "admin-deny", "{egress}");
    assert_eq!(egress["cluster_rule"]["written"], "Deny", "{egress}");

    // Fixed: the Deny names addresses instead, the empty policy is removed; only the
    // Accept's note stays.
    let fixed = DOMAIN_RULES
        .replace(
            "to: [{domainNames: [\"example.com\"]}]",
            "to: [{networks: [203.0.113.0/24]}]",
        )
        .replace(
            "  subject: {namespaces: {matchLabels: {team: nobody}}}",
            "  subject: {namespaces: {matchLabels: {team: app}}}",
        );
    std::fs::write(dir.0.join("cluster.yaml"), fixed).unwrap();
    let v = lint_json(&dir);
    assert_eq!(
        warnings_of(&v, "cluster-unenforceable-peer").len(),
        1,
        "{v}"
    );
    assert!(warnings_of(&v, "cluster-selects-no-pod").is_empty(), "{v}");
    assert!(warnings_of(&v, "dns-blocked").is_empty(), "{v}");
}

#[test]
fn a_rule_on_other_ports_is_not_shadowed() {
    let rules = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: first}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  ingress:
  - action: Deny
    from: [{namespaces: {matchLabels: {team: app}}}]
    ports: [{portNumber: {protocol: TCP, port: 80}}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: second}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  ingress:
  - action: Accept
    from: [{namespaces: {matchLabels: {team: app}}}]
    ports: [{portNumber: {protocol: TCP, port: 81}}]
"#;
    let dir = Dir::new(
        "ports",
        &[
            ("pods.yaml", TWO_PODS.to_owned()),
            ("cluster.yaml", rules.to_owned()),
        ],
    );
    let v = lint_json(&dir);
    assert!(warnings_of(&v, "cluster-rule-shadowed").is_empty(), "{v}");
    // The same port: the Accept never decides (Deny first at equal priority).
    std::fs::write(
        dir.0.join("cluster.yaml"),
        rules.replace("port: 81", "port: 80"),
    )
    .unwrap();
    let v = lint_json(&dir);
    let shadowed = warnings_of(&v, "cluster-rule-shadowed");
    assert_eq!(shadowed.len(), 1, "{v}");
    let message = shadowed[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Admin ClusterNetworkPolicy second (priority 10) ingress rule 0 (Accept) is shadowed by Admin ClusterNetworkPolicy first (priority 10) ingress rule 0 (Deny)"),
        "{message}"
    );
    assert!(
        message.contains("at equal priority Deny is tried before Accept"),
        "{message}"
    );
}
