//! A cluster-wide policy scenario shared by `lab_cluster.rs` (real traffic) and
//! `explain_cluster.rs` (explain and lint without a lab): ClusterNetworkPolicies of
//! both tiers over NetworkPolicies, one connection per tier behaviour.
//!
//! - `admin-deny-to-secure` (Admin 10): egress from every pod to namespace `secure` is
//!   denied, although `alpha/client-egress-anywhere` allows the client's egress.
//! - `admin-pass-passns` (Admin 5): ingress to namespace `passns` is handed over to
//!   its NetworkPolicy `passns/web-deny-ingress`, which denies; the later
//!   `admin-accept-passns` (Admin 20) never decides (lint: shadowed).
//! - `baseline-deny-lonely` (Baseline 10): alpha cannot reach `open/lonely`, which no
//!   NetworkPolicy selects; `baseline-accept-open` (Baseline 20) does not open
//!   `open/guarded`, which `open/guarded-deny-ingress` isolates.
//! - `admin-accept-dns` (Admin 1): UDP 53 to kube-system's DNS pod from every pod,
//!   even `secure/db` whose NetworkPolicy denies all its egress.

#![allow(dead_code, reason = "each test file uses part of the scenario")]

pub const NAMESPACES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: alpha, labels: {team: alpha}}
---
apiVersion: v1
kind: Namespace
metadata: {name: secure, labels: {zone: secure}}
---
apiVersion: v1
kind: Namespace
metadata: {name: passns, labels: {handover: "true"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: open, labels: {zone: open}}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system, labels: {role: system}}
"#;

/// Pods with the addresses the API would report (the lab wires them so).
pub const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: alpha, labels: {app: client}}
spec: {containers: [{name: c, image: x}]}
status: {phase: Running, podIPs: [{ip: 10.244.77.2}, {ip: "fd00:244::77:2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: secure, labels: {app: db}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIPs: [{ip: 10.244.77.3}, {ip: "fd00:244::77:3"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: passns, labels: {app: web}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIPs: [{ip: 10.244.77.4}, {ip: "fd00:244::77:4"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: lonely, namespace: open, labels: {app: lonely}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIPs: [{ip: 10.244.77.5}, {ip: "fd00:244::77:5"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: guarded, namespace: open, labels: {app: guarded}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIPs: [{ip: 10.244.77.6}, {ip: "fd00:244::77:6"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 53, protocol: UDP}]}]}
status: {phase: Running, podIPs: [{ip: 10.244.77.7}, {ip: "fd00:244::77:7"}]}
"#;

pub const NETWORK_POLICIES: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress-anywhere, namespace: alpha}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-no-egress, namespace: secure}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-deny-ingress, namespace: passns}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: guarded-deny-ingress, namespace: open}
spec:
  podSelector: {matchLabels: {app: guarded}}
  policyTypes: [Ingress]
"#;

pub const ADMIN_DENY_TO_SECURE: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: admin-deny-to-secure}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  egress:
  - name: no-secure
    action: Deny
    to: [{namespaces: {matchLabels: {zone: secure}}}]
"#;

pub const ADMIN_PASS: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: admin-pass-passns}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {matchLabels: {handover: "true"}}}
  ingress:
  - name: hand-over
    action: Pass
    from: [{namespaces: {}}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: admin-accept-passns}
spec:
  tier: Admin
  priority: 20
  subject: {namespaces: {matchLabels: {handover: "true"}}}
  ingress:
  - action: Accept
    from: [{namespaces: {}}]
"#;

pub const ADMIN_ACCEPT_DNS: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: admin-accept-dns}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {}}
  egress:
  - name: dns
    action: Accept
    to:
    - pods:
        namespaceSelector: {matchLabels: {role: system}}
        podSelector: {matchLabels: {k8s-app: kube-dns}}
    ports: [{portNumber: {protocol: UDP, port: 53}}]
"#;

pub const BASELINE_DENY_LONELY: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: baseline-deny-lonely}
spec:
  tier: Baseline
  priority: 10
  subject:
    pods:
      namespaceSelector: {matchLabels: {zone: open}}
      podSelector: {matchLabels: {app: lonely}}
  ingress:
  - name: not-from-alpha
    action: Deny
    from: [{namespaces: {matchLabels: {team: alpha}}}]
"#;

/// `baseline-deny-lonely` turned into an Accept (the lab test's second change).
pub fn baseline_lonely_accepts() -> String {
    BASELINE_DENY_LONELY.replace("action: Deny", "action: Accept")
}

pub const BASELINE_ACCEPT_OPEN: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: baseline-accept-open}
spec:
  tier: Baseline
  priority: 20
  subject: {namespaces: {matchLabels: {zone: open}}}
  ingress:
  - action: Accept
    from: [{namespaces: {matchLabels: {team: alpha}}}]
"#;

/// The scenario's files, in the order a directory lists them.
pub fn files() -> Vec<(&'static str, String)> {
    vec![
        ("00-namespaces.yaml", NAMESPACES.to_owned()),
        ("01-pods.yaml", PODS.to_owned()),
        ("02-netpol.yaml", NETWORK_POLICIES.to_owned()),
        (
            "10-admin-deny-to-secure.yaml",
            ADMIN_DENY_TO_SECURE.to_owned(),
        ),
        ("11-admin-pass.yaml", ADMIN_PASS.to_owned()),
        ("12-admin-accept-dns.yaml", ADMIN_ACCEPT_DNS.to_owned()),
        (
            "20-baseline-deny-lonely.yaml",
            BASELINE_DENY_LONELY.to_owned(),
        ),
        (
            "21-baseline-accept-open.yaml",
            BASELINE_ACCEPT_OPEN.to_owned(),
        ),
    ]
}

/// One connection of the scenario and what must happen to it.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    pub from: &'static str,
    pub to: &'static str,
    /// "TCP" or "UDP".
    pub protocol: &'static str,
    pub port: u16,
    pub allowed: bool,
    /// The tier deciding, in the direction that decides ("egress" of `from` or
    /// "ingress" of `to`).
    pub direction: &'static str,
    pub tier: &'static str,
    /// The cluster policy that decides, if one does.
    pub cluster_policy: Option<&'static str>,
    /// The NetworkPolicy isolating the pod, when a NetworkPolicy denies.
    pub isolated_by: Option<&'static str>,
}

/// The scenario's connections with every policy in place.
pub const EXPECTED: [Expect; 8] = [
    Expect {
        from: "alpha/client",
        to: "secure/db",
        protocol: "TCP",
        port: 80,
        allowed: false,
        direction: "egress",
        tier: "Admin",
        cluster_policy: Some("admin-deny-to-secure"),
        isolated_by: None,
    },
    Expect {
        from: "alpha/client",
        to: "passns/web",
        protocol: "TCP",
        port: 80,
        allowed: false,
        direction: "ingress",
        tier: "NetworkPolicy",
        cluster_policy: None,
        isolated_by: Some("passns/web-deny-ingress"),
    },
    Expect {
        from: "alpha/client",
        to: "open/lonely",
        protocol: "TCP",
        port: 80,
        allowed: false,
        direction: "ingress",
        tier: "Baseline",
        cluster_policy: Some("baseline-deny-lonely"),
        isolated_by: None,
    },
    Expect {
        from: "alpha/client",
        to: "open/guarded",
        protocol: "TCP",
        port: 80,
        allowed: false,
        direction: "ingress",
        tier: "NetworkPolicy",
        cluster_policy: None,
        isolated_by: Some("open/guarded-deny-ingress"),
    },
    Expect {
        from: "secure/db",
        to: "kube-system/dns",
        protocol: "UDP",
        port: 53,
        allowed: true,
        direction: "egress",
        tier: "Admin",
        cluster_policy: Some("admin-accept-dns"),
        isolated_by: None,
    },
    Expect {
        from: "secure/db",
        to: "kube-system/dns",
        protocol: "UDP",
        port: 80,
        allowed: false,
        direction: "egress",
        tier: "NetworkPolicy",
        cluster_policy: None,
        isolated_by: Some("secure/db-no-egress"),
    },
    Expect {
        from: "alpha/client",
        to: "kube-system/dns",
        protocol: "UDP",
        port: 53,
        allowed: true,
        direction: "egress",
        tier: "Admin",
        cluster_policy: Some("admin-accept-dns"),
        isolated_by: None,
    },
    // A control: lonely is reachable from outside alpha (the Baseline rules name
    // alpha only), so its denial above is the Baseline rule's.
    Expect {
        from: "passns/web",
        to: "open/lonely",
        protocol: "TCP",
        port: 80,
        allowed: true,
        direction: "ingress",
        tier: "Default",
        cluster_policy: None,
        isolated_by: None,
    },
];
