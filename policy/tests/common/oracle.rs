//! A plain evaluator written straight from the Kubernetes NetworkPolicy API
//! reference, sharing no code with `policy::resolve`: for a connection, find the
//! policies selecting each end, and allow if the end is not isolated in that
//! direction or some rule of some selecting policy admits the peer and port.

use std::net::IpAddr;

use policy::{
    ClusterState, EnforcingMode, LabelSelector, Labels, NetworkPolicy, Operator, Peer, Pod,
    PodPhase, PolicyRule, PortRef, Protocol,
};

use super::Probe;

pub fn selector_matches(sel: &LabelSelector, labels: &Labels) -> bool {
    for (k, v) in &sel.match_labels {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for req in &sel.match_expressions {
        let value = labels.get(&req.key);
        let ok = match req.operator {
            Operator::In => matches!(value, Some(v) if req.values.contains(v)),
            Operator::NotIn => !matches!(value, Some(v) if req.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        };
        if !ok {
            return false;
        }
    }
    true
}

pub fn ns_labels(state: &ClusterState, ns: &str) -> Labels {
    let mut labels = state
        .namespaces
        .get(ns)
        .map(|n| n.labels.clone())
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), ns.into());
    labels
}

/// policyTypes, or the default: Ingress, plus Egress when there are egress rules.
pub fn has_type(p: &NetworkPolicy, ingress: bool) -> bool {
    match &p.spec.policy_types {
        Some(types) => types
            .iter()
            .any(|t| matches!(t, policy::Direction::Ingress) == ingress),
        None => ingress || !p.spec.egress.is_empty(),
    }
}

pub fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

fn peer_matches(
    state: &ClusterState,
    policy_ns: &str,
    peers: &[Peer],
    other: &Pod,
    other_ip: IpAddr,
) -> bool {
    if peers.is_empty() {
        return true;
    }
    let selectable = !other.host_network
        && other.phase != PodPhase::Succeeded
        && other.phase != PodPhase::Failed
        && !other.ips.is_empty();
    peers.iter().any(|peer| match peer {
        Peer::IpBlock(b) => {
            b.cidr.contains(&other_ip) && !b.except.iter().any(|e| e.contains(&other_ip))
        }
        Peer::Pods {
            pod_selector,
            namespace_selector,
        } => {
            if !selectable {
                return false;
            }
            let ns_ok = match namespace_selector {
                None => other.namespace == policy_ns,
                Some(sel) => selector_matches(sel, &ns_labels(state, &other.namespace)),
            };
            let pod_ok = match pod_selector {
                None => true,
                Some(sel) => selector_matches(sel, &other.labels),
            };
            ns_ok && pod_ok
        }
    })
}

fn port_matches(rule: &PolicyRule, destination: &Pod, protocol: u8, port: u16) -> bool {
    if rule.ports.is_empty() {
        return true;
    }
    rule.ports.iter().any(|p| {
        if protocol_number(p.protocol) != protocol {
            return false;
        }
        match &p.port {
            None => true,
            Some(PortRef::Number(n)) => *n <= port && port <= p.end_port.unwrap_or(*n),
            Some(PortRef::Name(name)) => destination.ports.iter().any(|cp| {
                cp.name.as_deref() == Some(name.as_str())
                    && cp.protocol == p.protocol
                    && cp.port == port
            }),
        }
    })
}

/// Does `me`'s side allow the connection? `ingress`: `other` connects to `me`.
pub fn side_allows(
    state: &ClusterState,
    mode: EnforcingMode,
    me: &Pod,
    other: &Pod,
    ingress: bool,
    protocol: u8,
    port: u16,
) -> bool {
    if me.host_network {
        return true;
    }
    let selecting: Vec<&NetworkPolicy> = state
        .policies
        .values()
        .filter(|p| {
            p.namespace == me.namespace
                && has_type(p, ingress)
                && selector_matches(&p.spec.pod_selector, &me.labels)
        })
        .collect();
    if selecting.is_empty() {
        return mode == EnforcingMode::Standard;
    }
    let other_ip = other.ips[0];
    let destination = if ingress { me } else { other };
    selecting.iter().any(|p| {
        let rules = if ingress {
            &p.spec.ingress
        } else {
            &p.spec.egress
        };
        rules.iter().any(|r| {
            peer_matches(state, &p.namespace, &r.peers, other, other_ip)
                && port_matches(r, destination, protocol, port)
        })
    })
}

/// Is the probe's connection allowed under Kubernetes semantics?
pub fn allows(state: &ClusterState, mode: EnforcingMode, probe: &Probe) -> bool {
    if probe.from == probe.to {
        return true;
    }
    let from = &state.pods[&probe.from];
    let to = &state.pods[&probe.to];
    side_allows(state, mode, from, to, false, probe.protocol, probe.port)
        && side_allows(state, mode, to, from, true, probe.protocol, probe.port)
}
