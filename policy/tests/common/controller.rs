//! A test-side stand-in for the EKS network policy controller: PolicyEndpoint objects
//! (JSON, as the API server would serve them) derived from a cluster's NetworkPolicies
//! the way aws/amazon-network-policy-controller-k8s does it
//! (`pkg/resolvers/endpoints.go`, `pkg/policyendpoints/manager.go`,
//! `pkg/k8s/pod_utils.go`), written from those sources and sharing nothing with the
//! product's PolicyEndpoint reading. Quirks kept on purpose, because the agent has to
//! live with them:
//! - peers are every pod with a `status.podIP`, phase ignored (the controller strips
//!   pods down to names, labels, ports and addresses), so finished pods stay peers;
//!   a host-network pod's `podIP` is its node's address;
//! - an ingress rule with pod peers carries the ports resolved against the policy's
//!   selected pods, concatenated (empty when none resolves: every port); egress pod
//!   peers carry the ports resolved on the peer; named ports never reach CIDR peers;
//! - entries of equal CIDR in one object are combined, ports and excepts appended;
//! - endpoints and selected pods are packed `CHUNK` per object.

use std::collections::BTreeMap;
use std::net::IpAddr;

use policy::{
    ClusterState, Direction, LabelSelector, NetworkPolicy, Peer, Pod, PolicyPort, PortRef, Protocol,
};
use serde_json::{Value, json};

/// Endpoints (and selected pods) per PolicyEndpoint object: small, so that the truth
/// table's policies are split over several objects.
pub const CHUNK: usize = 2;

fn selector_json(s: &LabelSelector) -> Value {
    let expressions: Vec<Value> = s
        .match_expressions
        .iter()
        .map(|r| json!({"key": r.key, "operator": format!("{:?}", r.operator), "values": r.values}))
        .collect();
    json!({"matchLabels": s.match_labels, "matchExpressions": expressions})
}

/// Where the cluster runs a pod: `node_ip` for pods of the test's node, else another.
fn host_ip(pod: &Pod, node: &str, node_ip: IpAddr) -> IpAddr {
    if pod.node_name.as_deref() == Some(node) {
        node_ip
    } else {
        match node_ip {
            IpAddr::V4(_) => "192.168.77.77".parse().expect("address"),
            IpAddr::V6(_) => "fd00:ffff::77".parse().expect("address"),
        }
    }
}

/// `GetPodIP`: the pod's `status.podIP`.
fn pod_ip(pod: &Pod, node: &str, node_ip: IpAddr) -> Option<IpAddr> {
    if pod.host_network {
        return Some(host_ip(pod, node, node_ip));
    }
    pod.ips.first().copied()
}

fn port_json(protocol: Protocol, port: Option<u16>, end: Option<u16>) -> Value {
    let mut v = json!({"protocol": protocol.name()});
    if let Some(p) = port {
        v["port"] = json!(p);
    }
    if let Some(e) = end {
        v["endPort"] = json!(e);
    }
    v
}

/// `getPortList`: each port resolved on `pod` (a name it does not declare is left out).
fn port_list(pod: &Pod, ports: &[PolicyPort]) -> Vec<Value> {
    ports
        .iter()
        .filter_map(|p| match &p.port {
            None => Some(port_json(p.protocol, None, p.end_port)),
            Some(PortRef::Number(n)) => Some(port_json(p.protocol, Some(*n), p.end_port)),
            Some(PortRef::Name(name)) => pod
                .named_port(name, p.protocol)
                .map(|n| port_json(p.protocol, Some(n), p.end_port)),
        })
        .collect()
}

/// `convertToPolicyInfoPortForCIDRs`: named ports dropped.
fn cidr_ports(ports: &[PolicyPort]) -> Vec<Value> {
    ports
        .iter()
        .filter_map(|p| match &p.port {
            None => Some(port_json(p.protocol, None, None)),
            Some(PortRef::Number(n)) => Some(port_json(p.protocol, Some(*n), p.end_port)),
            Some(PortRef::Name(_)) => None,
        })
        .collect()
}

fn endpoint(cidr: String, except: Vec<String>, ports: Vec<Value>) -> Value {
    let mut v = json!({"cidr": cidr});
    if !except.is_empty() {
        v["except"] = json!(except);
    }
    if !ports.is_empty() {
        v["ports"] = json!(ports);
    }
    v
}

struct Controller<'a> {
    state: &'a ClusterState,
    node: &'a str,
    node_ip: IpAddr,
}

impl Controller<'_> {
    fn pods_in<'s>(
        &'s self,
        namespace: &'s str,
        selector: Option<&'s LabelSelector>,
    ) -> impl Iterator<Item = &'s Pod> + 's {
        self.state
            .pods
            .values()
            .filter(move |p| p.namespace == namespace)
            .filter(move |p| selector.is_none_or(|s| s.matches(&p.labels)))
    }

    fn rules(&self, policy: &NetworkPolicy, direction: Direction) -> Vec<Value> {
        let mut out = Vec::new();
        for rule in policy.rules(direction) {
            if rule.peers.is_empty() {
                let list = cidr_ports(&rule.ports);
                if rule.ports.is_empty() || !list.is_empty() {
                    for all in ["0.0.0.0/0", "::/0"] {
                        out.push(endpoint(all.to_owned(), Vec::new(), list.clone()));
                    }
                }
                continue;
            }
            for peer in &rule.peers {
                match peer {
                    Peer::IpBlock(block) => {
                        let list = cidr_ports(&rule.ports);
                        if !rule.ports.is_empty() && list.is_empty() {
                            continue;
                        }
                        let except = block.except.iter().map(ToString::to_string).collect();
                        out.push(endpoint(block.cidr.to_string(), except, list));
                    }
                    Peer::Pods {
                        pod_selector,
                        namespace_selector,
                    } => {
                        let namespaces: Vec<String> = match namespace_selector {
                            Some(sel) => self
                                .state
                                .namespaces
                                .keys()
                                .filter(|ns| sel.matches(&self.state.namespace_labels(ns)))
                                .cloned()
                                .collect(),
                            None => vec![policy.namespace.clone()],
                        };
                        let ingress_ports: Vec<Value> = if direction == Direction::Ingress {
                            self.pods_in(&policy.namespace, Some(&policy.spec.pod_selector))
                                .flat_map(|target| port_list(target, &rule.ports))
                                .collect()
                        } else {
                            Vec::new()
                        };
                        for ns in &namespaces {
                            for pod in self.pods_in(ns, pod_selector.as_ref()) {
                                let Some(ip) = pod_ip(pod, self.node, self.node_ip) else {
                                    continue;
                                };
                                let own = port_list(pod, &rule.ports);
                                if rule.ports.len() != own.len() && own.is_empty() {
                                    continue;
                                }
                                let ports = match direction {
                                    Direction::Ingress => ingress_ports.clone(),
                                    Direction::Egress => own,
                                };
                                out.push(endpoint(ip.to_string(), Vec::new(), ports));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn selected(&self, policy: &NetworkPolicy) -> Vec<Value> {
        self.pods_in(&policy.namespace, Some(&policy.spec.pod_selector))
            .filter_map(|pod| {
                let ip = pod_ip(pod, self.node, self.node_ip)?;
                Some(json!({
                    "podIP": ip.to_string(),
                    "hostIP": host_ip(pod, self.node, self.node_ip).to_string(),
                    "name": pod.name,
                    "namespace": pod.namespace,
                }))
            })
            .collect()
    }
}

/// `combineRulesEndpoints`: one entry per CIDR, ports and excepts appended.
fn combine(entries: &[Value]) -> Vec<Value> {
    let mut by_cidr: BTreeMap<String, Value> = BTreeMap::new();
    for e in entries {
        let cidr = e["cidr"].as_str().expect("cidr").to_owned();
        match by_cidr.get_mut(&cidr) {
            None => {
                by_cidr.insert(cidr, e.clone());
            }
            Some(existing) => {
                for field in ["ports", "except"] {
                    if let Some(more) = e.get(field).and_then(Value::as_array) {
                        let mut list = existing
                            .get(field)
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        list.extend(more.iter().cloned());
                        existing[field] = json!(list);
                    }
                }
            }
        }
    }
    // The controller writes a Go map's values: in no particular order.
    by_cidr.into_values().rev().collect()
}

fn chunk(list: &[Value], i: usize) -> Vec<Value> {
    list.iter().skip(i * CHUNK).take(CHUNK).cloned().collect()
}

/// The PolicyEndpoint objects of every NetworkPolicy of `state`, for an agent on
/// `node` whose address is `node_ip`.
pub fn policy_endpoints(state: &ClusterState, node: &str, node_ip: IpAddr) -> Vec<Value> {
    let controller = Controller {
        state,
        node,
        node_ip,
    };
    let mut out = Vec::new();
    for policy in state.policies.values() {
        // The API server's defaulting of policyTypes, which the controller copies.
        let isolation: Vec<&str> = match &policy.spec.policy_types {
            Some(types) => types.iter().map(|d| d.as_str()).collect(),
            None if policy.spec.egress.is_empty() => vec!["ingress"],
            None => vec!["ingress", "egress"],
        }
        .into_iter()
        .map(|d| if d == "ingress" { "Ingress" } else { "Egress" })
        .collect();
        let ingress = controller.rules(policy, Direction::Ingress);
        let egress = controller.rules(policy, Direction::Egress);
        let pods = controller.selected(policy);
        let objects = [ingress.len(), egress.len(), pods.len()]
            .into_iter()
            .map(|n| n.div_ceil(CHUNK))
            .max()
            .unwrap_or(0)
            .max(1);
        for i in 0..objects {
            out.push(json!({
                "apiVersion": "networking.k8s.aws/v1alpha1",
                "kind": "PolicyEndpoint",
                "metadata": {
                    "name": format!("{}-{i:05}", policy.name),
                    "namespace": policy.namespace,
                },
                "spec": {
                    "policyRef": {"name": policy.name, "namespace": policy.namespace},
                    "podSelector": selector_json(&policy.spec.pod_selector),
                    "podIsolation": isolation,
                    "podSelectorEndpoints": chunk(&pods, i),
                    "ingress": combine(&chunk(&ingress, i)),
                    "egress": combine(&chunk(&egress, i)),
                },
            }));
        }
    }
    out
}

/// `state` with its NetworkPolicies replaced by what an agent on `node` reads from
/// their PolicyEndpoints (through the product's loader and merge; subjects of other
/// nodes dropped as the source drops them).
pub fn via_policy_endpoints(state: &ClusterState, node: &str, node_ip: IpAddr) -> ClusterState {
    let mut slices: BTreeMap<policy::PolicyRef, Vec<policy::PolicyEndpoint>> = BTreeMap::new();
    for object in policy_endpoints(state, node, node_ip) {
        let value = serde_yaml::to_value(&object).expect("JSON to YAML value");
        let mut slice = policy::load_policy_endpoint("controller", value)
            .unwrap_or_else(|e| panic!("derived object {object} does not load: {e}"));
        slice.retain_subjects_on(&[node_ip]);
        slices.entry(slice.policy.clone()).or_default().push(slice);
    }
    let mut out = state.clone();
    out.policies = slices
        .iter()
        .map(|(key, list)| (key.clone(), policy::endpoints::merge(key, list)))
        .collect();
    out
}
