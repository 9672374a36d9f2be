//! Audit mode: a policy (annotation) or a namespace (label) in audit mode lets through
//! what it would deny, reported as AUDIT; enforcing policies and strict mode still drop.

use datapath_common::{VERDICT_ACCEPT, VERDICT_AUDIT, VERDICT_DENY};
use policy::{
    ClusterState, Direction, EnforcingMode, MapModel, ObjectRef, Planner, PodState, ResolveOptions,
    Resolver, load_str,
};

const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node-1}
status: {phase: Running, podIP: 10.0.0.5}
"#;

const DENY_ALL_AUDITED: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: shop, annotations: {netpol-agent.dev/audit: "true"}}
spec: {podSelector: {}}
"#;

const ALLOW_80_AUDITED: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-80, namespace: shop, annotations: {netpol-agent.dev/audit: "true"}}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
"#;

const ALLOW_80_ENFORCED: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-80, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
"#;

fn state(docs: &[&str]) -> ClusterState {
    load_str("audit.yaml", &docs.join("\n---\n")).expect("fixture loads")
}

struct Node {
    resolver: Resolver,
    planner: Planner,
    maps: MapModel,
    options: ResolveOptions,
}

impl Node {
    fn new(mode: EnforcingMode) -> Self {
        Self {
            resolver: Resolver::new(),
            planner: Planner::new(),
            maps: MapModel::new(),
            options: ResolveOptions {
                node_name: "node-1".into(),
                node_addresses: vec![],
                mode,
            },
        }
    }

    /// Applies `state` and returns web's ingress verdict for TCP from 10.9.9.9 to `port`.
    fn web_ingress(&mut self, state: &ClusterState, port: u16) -> (u8, Vec<String>) {
        let resolved = self.resolver.resolve(state, &self.options);
        let ops = self.planner.plan(&resolved);
        self.maps.apply(&ops).expect("plan applies");
        let web = ObjectRef::new("shop", "web");
        let isolating = resolved.pods[&web]
            .ingress
            .isolating
            .iter()
            .map(ToString::to_string)
            .collect();
        let decision = self.maps.decide(
            &web,
            Direction::Ingress,
            "10.9.9.9".parse().unwrap(),
            6,
            port,
        );
        (decision.verdict, isolating)
    }
}

#[test]
fn an_audited_policy_passes_what_it_would_deny_and_names_itself() {
    let mut node = Node::new(EnforcingMode::Standard);
    let s = state(&[PODS, DENY_ALL_AUDITED]);
    let (verdict, isolating) = node.web_ingress(&s, 80);
    assert_eq!(verdict, VERDICT_AUDIT);
    assert_eq!(isolating, ["shop/deny-all"]);
    let resolved = Resolver::new().resolve(&s, &node.options);
    assert_eq!(
        resolved.pods[&ObjectRef::new("shop", "web")].ingress.state,
        PodState::PoliciesAudit
    );
}

#[test]
fn an_audited_allow_rule_accepts_and_the_rest_is_audit() {
    let mut node = Node::new(EnforcingMode::Standard);
    let s = state(&[PODS, ALLOW_80_AUDITED]);
    assert_eq!(node.web_ingress(&s, 80).0, VERDICT_ACCEPT);
    assert_eq!(node.web_ingress(&s, 81).0, VERDICT_AUDIT);
}

#[test]
fn an_enforcing_policy_decides_even_beside_an_audited_one() {
    let mut node = Node::new(EnforcingMode::Standard);
    // The audited deny-all adds nothing; the enforced allow-80 decides alone.
    let s = state(&[PODS, DENY_ALL_AUDITED, ALLOW_80_ENFORCED]);
    assert_eq!(node.web_ingress(&s, 80).0, VERDICT_ACCEPT);
    let (verdict, isolating) = node.web_ingress(&s, 81);
    assert_eq!(
        verdict, VERDICT_DENY,
        "an enforcing policy's deny is a DENY"
    );
    assert_eq!(isolating, ["shop/allow-80"]);
}

#[test]
fn an_audited_allow_never_opens_what_an_enforcing_policy_denies() {
    let mut node = Node::new(EnforcingMode::Standard);
    let enforced_deny_all = DENY_ALL_AUDITED.replace(
        "annotations: {netpol-agent.dev/audit: \"true\"}",
        "annotations: {}",
    );
    let s = state(&[PODS, &enforced_deny_all, ALLOW_80_AUDITED]);
    assert_eq!(node.web_ingress(&s, 80).0, VERDICT_DENY);
}

#[test]
fn strict_mode_keeps_its_default_deny_under_audit_policies() {
    let mut node = Node::new(EnforcingMode::Strict);
    let s = state(&[PODS, DENY_ALL_AUDITED]);
    assert_eq!(node.web_ingress(&s, 80).0, VERDICT_DENY);
}

#[test]
fn a_namespace_label_audits_its_policies_and_removing_it_enforces() {
    let mut node = Node::new(EnforcingMode::Standard);
    let enforced_deny_all = DENY_ALL_AUDITED.replace(
        "annotations: {netpol-agent.dev/audit: \"true\"}",
        "annotations: {}",
    );
    let labelled = PODS.replace(
        "labels: {team: a}",
        "labels: {team: a, netpol-agent.dev/audit: \"true\"}",
    );
    let audited = state(&[&labelled, &enforced_deny_all]);
    assert_eq!(node.web_ingress(&audited, 80).0, VERDICT_AUDIT);
    // The same node, incrementally: the label goes, the policy enforces.
    let enforced = state(&[PODS, &enforced_deny_all]);
    assert_eq!(node.web_ingress(&enforced, 80).0, VERDICT_DENY);
    // And back.
    assert_eq!(node.web_ingress(&audited, 80).0, VERDICT_AUDIT);
}

#[test]
fn switching_a_policy_annotation_off_and_on_is_an_ordinary_update() {
    let mut node = Node::new(EnforcingMode::Standard);
    let audited = state(&[PODS, ALLOW_80_AUDITED]);
    let enforced = state(&[PODS, ALLOW_80_ENFORCED]);
    assert_eq!(node.web_ingress(&audited, 81).0, VERDICT_AUDIT);
    assert_eq!(node.web_ingress(&enforced, 81).0, VERDICT_DENY);
    assert_eq!(node.web_ingress(&enforced, 80).0, VERDICT_ACCEPT);
    assert_eq!(node.web_ingress(&audited, 81).0, VERDICT_AUDIT);
}

#[test]
fn an_audit_annotation_that_is_not_a_boolean_is_refused_naming_the_field() {
    let bad = DENY_ALL_AUDITED.replace("\"true\"", "\"yes\"");
    let err = load_str("audit.yaml", &[PODS, &bad].join("\n---\n"))
        .expect_err("a bad switch is refused")
        .to_string();
    assert!(
        err.contains("netpol-agent.dev/audit") && err.contains("yes"),
        "{err}"
    );
}
