//! The Stars demo of the EKS user guide as cluster states: its pods (with addresses)
//! and the policies in force at each of its five steps, plus who reaches whom on each
//! service port after each step, written from the guide.
#![allow(dead_code)]

use std::collections::BTreeSet;

use policy::ClusterState;

pub const UI: &str = "management-ui/management-ui";
pub const CLIENT: &str = "client/client";
pub const FRONTEND: &str = "stars/frontend";
pub const BACKEND: &str = "stars/backend";
/// Each pod with its service port.
pub const PODS: [(&str, u16); 4] = [(UI, 9001), (CLIENT, 9000), (FRONTEND, 80), (BACKEND, 6379)];

const PODS_YAML: &str = r#"
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
spec: {nodeName: node-a, containers: [{name: ui, image: x, ports: [{containerPort: 9001}]}]}
status: {phase: Running, podIPs: [{ip: 10.0.1.1}, {ip: "fd00::1:1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: stars, labels: {role: backend}}
spec: {nodeName: node-a, containers: [{name: b, image: x, ports: [{containerPort: 6379}]}]}
status: {phase: Running, podIPs: [{ip: 10.0.2.1}, {ip: "fd00::2:1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: stars, labels: {role: frontend}}
spec: {nodeName: node-b, containers: [{name: f, image: x, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIPs: [{ip: 10.0.2.2}, {ip: "fd00::2:2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: client, labels: {role: client}}
spec: {nodeName: node-b, containers: [{name: c, image: x, ports: [{containerPort: 9000}]}]}
status: {phase: Running, podIPs: [{ip: 10.0.3.1}, {ip: "fd00::3:1"}]}
"#;

const DEFAULT_DENY: &str = r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: default-deny, namespace: stars}
spec: {podSelector: {matchLabels: {}}}
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: default-deny, namespace: client}
spec: {podSelector: {matchLabels: {}}}
"#;

const ALLOW_UI: &str = r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {namespace: stars, name: allow-ui}
spec:
  podSelector: {matchLabels: {}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {role: management-ui}}}]}]
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {namespace: client, name: allow-ui}
spec:
  podSelector: {matchLabels: {}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {role: management-ui}}}]}]
"#;

const BACKEND_POLICY: &str = r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {namespace: stars, name: backend-policy}
spec:
  podSelector: {matchLabels: {role: backend}}
  ingress:
    - from: [{podSelector: {matchLabels: {role: frontend}}}]
      ports: [{protocol: TCP, port: 6379}]
"#;

const FRONTEND_POLICY: &str = r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {namespace: stars, name: frontend-policy}
spec:
  podSelector: {matchLabels: {role: frontend}}
  ingress:
    - from: [{namespaceSelector: {matchLabels: {role: client}}}]
      ports: [{protocol: TCP, port: 80}]
"#;

/// The cluster after step `step` (0: no policies ... 4: frontend-policy added).
pub fn state(step: usize) -> ClusterState {
    let policies = [DEFAULT_DENY, ALLOW_UI, BACKEND_POLICY, FRONTEND_POLICY];
    let mut text = PODS_YAML.to_owned();
    for p in &policies[..step] {
        text.push_str("\n---\n");
        text.push_str(p);
    }
    policy::load_str("stars.yaml", &text).expect("the Stars manifests load")
}

/// Who reaches `to` on its service port after `step`, from the guide.
pub fn expected(step: usize, to: &str) -> BTreeSet<&'static str> {
    let all = [UI, CLIENT, FRONTEND, BACKEND];
    let others = |to: &str| {
        all.iter()
            .copied()
            .filter(|p| *p != to)
            .collect::<BTreeSet<_>>()
    };
    let set = |v: &[&'static str]| v.iter().copied().collect::<BTreeSet<_>>();
    match (step, to) {
        (_, UI) => others(UI),
        (0, _) => others(to),
        (1, _) => set(&[]),
        (2, _) => set(&[UI]),
        (3, BACKEND) => set(&[UI, FRONTEND]),
        (3, _) => set(&[UI]),
        (4, BACKEND) => set(&[UI, FRONTEND]),
        (4, FRONTEND) => set(&[UI, CLIENT]),
        (4, CLIENT) => set(&[UI]),
        _ => unreachable!(),
    }
}

pub fn pod_ref(key: &str) -> policy::PodRef {
    let (ns, name) = key.split_once('/').expect("ns/name");
    policy::PodRef::new(ns, name)
}
