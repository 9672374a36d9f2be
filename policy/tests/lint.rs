//! `lint` on the Stars demo (clean in standard mode, DNS blocked everywhere in strict
//! mode) and on one crafted case per caution, each also shown to go away when fixed.

mod stars;

use policy::lint::{Caution, Warning, lint};
use policy::{ClusterState, EnforcingMode, ObjectRef};

fn load(text: &str) -> ClusterState {
    policy::load_str("lint.yaml", text).expect("loads")
}

fn of(warnings: &[Warning], caution: Caution) -> Vec<&Warning> {
    warnings.iter().filter(|w| w.caution == caution).collect()
}

fn keys(refs: &[ObjectRef]) -> Vec<String> {
    refs.iter().map(ToString::to_string).collect()
}

#[test]
fn stars_is_clean_in_standard_mode_at_every_step() {
    for step in 0..5 {
        let warnings = lint(&stars::state(step), EnforcingMode::Standard);
        assert!(warnings.is_empty(), "step {step}: {warnings:#?}");
    }
}

#[test]
fn strict_mode_warns_that_no_pod_reaches_dns_or_imds() {
    let warnings = lint(&stars::state(4), EnforcingMode::Strict);
    let dns = of(&warnings, Caution::DnsBlocked);
    assert_eq!(dns.len(), 1, "{warnings:#?}");
    assert_eq!(
        keys(&dns[0].pods),
        [stars::CLIENT, stars::UI, stars::BACKEND, stars::FRONTEND]
    );
    assert!(
        dns[0].policies.is_empty(),
        "strict mode's default deny alone"
    );
    assert!(
        dns[0].message.contains("UDP 53 and TCP 53"),
        "{}",
        dns[0].message
    );
    assert!(dns[0].message.contains("strict mode"), "{}", dns[0].message);
    assert!(dns[0].message.contains("assumed"), "{}", dns[0].message);
    let imds = of(&warnings, Caution::ImdsBlocked);
    assert_eq!(imds.len(), 1);
    assert_eq!(imds[0].pods.len(), 4);
    assert!(
        imds[0].message.starts_with("169.254.169.254:80"),
        "{}",
        imds[0].message
    );
    // Pod Identity: one warning per family the pods have.
    assert_eq!(of(&warnings, Caution::PodIdentityBlocked).len(), 2);
}

const SHOP: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: w, image: x, ports: [{name: http, containerPort: 8080}]}]}
status: {phase: Running, podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: worker, namespace: shop, labels: {app: worker}}
status: {phase: Running, podIP: 10.1.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns-1, namespace: kube-system, labels: {k8s-app: kube-dns}}
status: {phase: Running, podIP: 10.1.9.53}
"#;

fn shop_with(policies: &str) -> ClusterState {
    load(&format!("{SHOP}\n---\n{policies}"))
}

const EGRESS_DENY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-deny, namespace: shop}
spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Egress]}
"#;

#[test]
fn egress_isolation_blocks_imds_pod_identity_and_dns_and_names_the_policy() {
    let warnings = lint(&shop_with(EGRESS_DENY), EnforcingMode::Standard);
    for caution in [
        Caution::ImdsBlocked,
        Caution::PodIdentityBlocked,
        Caution::DnsBlocked,
    ] {
        let found = of(&warnings, caution);
        assert_eq!(found.len(), 1, "{caution:?}: {warnings:#?}");
        assert_eq!(keys(&found[0].policies), ["shop/egress-deny"]);
        assert_eq!(
            keys(&found[0].pods),
            ["shop/web"],
            "the worker is not isolated"
        );
        assert!(found[0].message.contains("shop/egress-deny"));
    }
    assert!(
        !of(&warnings, Caution::DnsBlocked)[0]
            .message
            .contains("assumed")
    );
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
}

const EGRESS_FIXED: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-deny, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 169.254.169.254/32}}, {ipBlock: {cidr: 169.254.170.23/32}}]
      ports: [{port: 80}]
    - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
      ports: [{port: 53, protocol: UDP}]
"#;

#[test]
fn allowing_the_endpoints_clears_the_warnings_and_half_of_dns_is_named() {
    let warnings = lint(&shop_with(EGRESS_FIXED), EnforcingMode::Standard);
    assert!(
        of(&warnings, Caution::ImdsBlocked).is_empty(),
        "{warnings:#?}"
    );
    assert!(of(&warnings, Caution::PodIdentityBlocked).is_empty());
    let dns = of(&warnings, Caution::DnsBlocked);
    assert_eq!(dns.len(), 1);
    assert!(dns[0].message.contains("on TCP 53:"), "{}", dns[0].message);
    assert!(!dns[0].message.contains("UDP 53"), "{}", dns[0].message);
}

const DNS_INGRESS_DENY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: lock-down, namespace: kube-system}
spec: {podSelector: {}}
"#;

#[test]
fn a_policy_isolating_coredns_blocks_dns_for_every_pod() {
    let warnings = lint(&shop_with(DNS_INGRESS_DENY), EnforcingMode::Standard);
    let dns = of(&warnings, Caution::DnsBlocked);
    assert_eq!(dns.len(), 1, "{warnings:#?}");
    assert_eq!(keys(&dns[0].policies), ["kube-system/lock-down"]);
    assert_eq!(keys(&dns[0].pods), ["shop/web", "shop/worker"]);
}

const HOST_NETWORK: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: node-exporter, namespace: monitoring, labels: {app: exporter}}
spec: {hostNetwork: true}
status: {phase: Running, podIP: 192.168.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: scraper, namespace: monitoring, labels: {app: scraper}}
status: {phase: Running, podIP: 10.2.0.1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: protect-exporter, namespace: monitoring}
spec: {podSelector: {matchLabels: {app: exporter}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: protect-scraper, namespace: monitoring}
spec: {podSelector: {matchLabels: {app: scraper}}, ingress: [{}]}
"#;

#[test]
fn a_policy_selecting_host_network_pods_is_named_with_them() {
    let warnings = lint(&load(HOST_NETWORK), EnforcingMode::Standard);
    let found = of(&warnings, Caution::HostNetworkSelected);
    assert_eq!(found.len(), 1, "{warnings:#?}");
    assert_eq!(keys(&found[0].policies), ["monitoring/protect-exporter"]);
    assert_eq!(keys(&found[0].pods), ["monitoring/node-exporter"]);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
}

const SELECTS_NOTHING: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: typo, namespace: shop}
spec: {podSelector: {matchLabels: {app: wbe}}}
"#;

#[test]
fn a_policy_selecting_no_pod_is_reported() {
    let warnings = lint(&shop_with(SELECTS_NOTHING), EnforcingMode::Standard);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0].caution, Caution::SelectsNoPod);
    assert_eq!(keys(&warnings[0].policies), ["shop/typo"]);
    let fixed = SELECTS_NOTHING.replace("wbe", "web");
    assert!(lint(&shop_with(&fixed), EnforcingMode::Standard).is_empty());
}

const IP_BLOCK: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: by-address, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from: [{ipBlock: {cidr: 0.0.0.0/0}}, {ipBlock: {cidr: 10.1.0.0/16, except: [10.1.9.0/24]}}]
"#;

#[test]
fn an_ip_block_holding_pod_addresses_is_reported_and_anywhere_is_not() {
    let warnings = lint(&shop_with(IP_BLOCK), EnforcingMode::Standard);
    let found = of(&warnings, Caution::IpBlockCoversPods);
    assert_eq!(found.len(), 1, "{warnings:#?}");
    assert!(
        found[0].message.contains("ingress rule 0 from[1]"),
        "{}",
        found[0].message
    );
    assert_eq!(
        keys(&found[0].pods),
        ["shop/web", "shop/worker"],
        "CoreDNS sits in the except hole"
    );
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
}

const NAMED_PORTS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: named, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: http}, {port: https}]}]
  egress: [{ports: [{port: metrics}, {port: http}]}]
"#;

#[test]
fn a_named_port_no_pod_declares_is_reported_per_rule_and_direction() {
    let warnings = lint(&shop_with(NAMED_PORTS), EnforcingMode::Standard);
    let found = of(&warnings, Caution::NamedPortUndeclared);
    let messages: Vec<&str> = found.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(found.len(), 2, "{messages:#?}");
    assert!(
        messages[0].contains("ingress rule 0: port \"https\""),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("egress rule 0: port \"metrics\""),
        "{messages:?}"
    );
    assert_eq!(keys(&found[0].pods), ["shop/web"]);
}

#[test]
fn an_audit_mode_egress_policy_warns_what_it_will_block_once_enforced() {
    let audited = EGRESS_DENY.replace(
        "metadata: {name: egress-deny, namespace: shop}",
        "metadata: {name: egress-deny, namespace: shop, annotations: {netpol-agent.dev/audit: \"true\"}}",
    );
    let warnings = lint(&shop_with(&audited), EnforcingMode::Standard);
    let imds = of(&warnings, Caution::ImdsBlocked);
    assert_eq!(imds.len(), 1, "{warnings:#?}");
    assert_eq!(keys(&imds[0].policies), ["shop/egress-deny"]);
    assert!(
        imds[0].message.contains("audit mode: it passes now"),
        "{}",
        imds[0].message
    );
    assert_eq!(of(&warnings, Caution::DnsBlocked).len(), 1);
}
