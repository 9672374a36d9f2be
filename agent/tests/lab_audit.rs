//! Audit mode with real traffic in the lab: a namespace in audit mode passes what its
//! deny policy would drop and logs AUDIT lines naming that policy; switching audit off
//! (an ordinary policy update) enforces as soon as `lab apply` returns, and the DENY
//! lines name the same policy; a policy annotated for audit passes again.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use agent::lab::{
    self, LabState, UpOptions,
    probe::{Outcome, Protocol, probe_one},
};

const AUDITED_NAMESPACE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {netpol-agent.dev/audit: "true"}}
"#;

const ENFORCED_NAMESPACE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
"#;

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

fn tcp(state: &LabState, port: u16) -> Outcome {
    let find = |key: &str| {
        state
            .pods
            .iter()
            .find(|p| p.pod.key() == key)
            .expect("pod in lab")
    };
    let (client, web) = (find("shop/client"), find("shop/web"));
    probe_one(
        &client.netns,
        SocketAddr::new(IpAddr::V4(web.pod.ipv4), port),
        Protocol::TCP,
        Duration::from_millis(400),
    )
}

/// Waits for a flow line from client to web port `port` with `verdict`, and returns it.
fn wait_for_line(lab: &common::LabDir, verdict: &str, port: u16) -> serde_json::Value {
    let flow_log = LabState::flow_log(lab.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&flow_log).unwrap_or_default();
        let line = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| {
                v["Verdict"] == verdict
                    && v["Dest Pod"] == "web"
                    && v["Src Pod"] == "client"
                    && v["Dest Port"] == port
            });
        if let Some(line) = line {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no {verdict} line for port {port} reached the file:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_audited_namespace_passes_and_logs_then_enforces_when_audit_is_switched_off() {
    let lab = common::LabDir::new("audit");
    let dir = common::manifests(
        "audit",
        &[
            ("ns.yaml", AUDITED_NAMESPACE),
            ("pods.yaml", PODS),
            ("deny.yaml", DENY_WEB),
        ],
    );
    let state = lab::up(&UpOptions {
        manifests: dir.clone(),
        binary: common::binary(),
        state_dir: lab.path().to_path_buf(),
        strict: false,
        deny_fold_window: "1s".into(),
    })
    .expect("lab up");
    assert_eq!(
        tcp(&state, 8080),
        Outcome::Connected,
        "audit mode: the deny policy does not drop"
    );
    let audit = wait_for_line(&lab, "AUDIT", 8080);
    assert_eq!(audit["Isolated By"], "shop/deny-web", "{audit}");
    assert_eq!(audit["Policy"], "no-rule-matched", "{audit}");
    assert_eq!(audit["Direction"], "ingress", "{audit}");

    std::fs::write(dir.join("ns.yaml"), ENFORCED_NAMESPACE).unwrap();
    lab::apply(lab.path(), &dir).unwrap();
    assert_eq!(
        tcp(&state, 8081),
        Outcome::Timeout,
        "enforced as soon as apply returns"
    );
    let deny = wait_for_line(&lab, "DENY", 8081);
    assert_eq!(deny["Isolated By"], "shop/deny-web", "{deny}");

    // The policy's own annotation puts it back in audit mode.
    let annotated = DENY_WEB.replace(
        "metadata: {name: deny-web, namespace: shop}",
        "metadata: {name: deny-web, namespace: shop, annotations: {netpol-agent.dev/audit: \"true\"}}",
    );
    std::fs::write(dir.join("deny.yaml"), annotated).unwrap();
    lab::apply(lab.path(), &dir).unwrap();
    assert_eq!(
        tcp(&state, 8082),
        Outcome::Refused,
        "the annotation audits: the SYN reaches web, where nothing listens on 8082"
    );
    let audit = wait_for_line(&lab, "AUDIT", 8082);
    assert_eq!(audit["Isolated By"], "shop/deny-web", "{audit}");
    let _ = std::fs::remove_dir_all(&dir);
}
