//! Shared test fixtures: the conformance-style cluster (namespaces x, y, z; pods a, b,
//! c), the probe set, the connectivity matrix read from the in-memory datapath maps,
//! and (in `oracle`) a plain evaluator written from the Kubernetes API reference.
#![allow(dead_code)]

pub mod controller;
pub mod oracle;

use std::fmt::Write as _;
use std::net::IpAddr;

use datapath_common::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use policy::{
    ClusterState, ContainerPort, Direction, EnforcingMode, MapModel, Namespace, ObjectRef, Pod,
    PodPhase, Protocol, ResolveOptions,
};

pub const NODE: &str = "node-1";
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
pub const PORTS: [u16; 2] = [80, 81];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

fn ns_index(ns: &str) -> u16 {
    NAMESPACES
        .iter()
        .position(|n| *n == ns)
        .map_or(9, |i| i as u16 + 1)
}

fn pod_index(pod: &str) -> u16 {
    PODS.iter()
        .position(|n| *n == pod)
        .map_or(9, |i| i as u16 + 1)
}

impl Family {
    pub fn pod_ip(self, ns: &str, pod: &str) -> IpAddr {
        let (i, j) = (ns_index(ns), pod_index(pod));
        match self {
            Family::V4 => IpAddr::from([10, 0, i as u8, j as u8]),
            Family::V6 => IpAddr::from([0xfd00, 0, 0, 0, 0, 0, i, j]),
        }
    }

    pub fn node_ip(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::from([192, 168, 0, 1]),
            Family::V6 => IpAddr::from([0xfd00, 0xffff, 0, 0, 0, 0, 0, 1]),
        }
    }

    /// Replace address tokens in a manifest: `NET_<NS>` (the namespace's pod range),
    /// `HOST_<NS>_<POD>`, `ALL_PODS`, `EVERYWHERE`, each as a quoted string.
    pub fn render(self, text: &str) -> String {
        let mut out = text.to_owned();
        for ns in NAMESPACES {
            for pod in PODS {
                let token = format!("HOST_{}_{}", ns.to_uppercase(), pod.to_uppercase());
                let host = match self.pod_ip(ns, pod) {
                    IpAddr::V4(a) => format!("\"{a}/32\""),
                    IpAddr::V6(a) => format!("\"{a}/128\""),
                };
                out = out.replace(&token, &host);
            }
            let net = match self {
                Family::V4 => format!("\"10.0.{}.0/24\"", ns_index(ns)),
                Family::V6 => format!("\"fd00::{}:0/112\"", ns_index(ns)),
            };
            out = out.replace(&format!("NET_{}", ns.to_uppercase()), &net);
        }
        let (all, everywhere) = match self {
            Family::V4 => ("\"10.0.0.0/16\"", "\"0.0.0.0/0\""),
            Family::V6 => ("\"fd00::/96\"", "\"::/0\""),
        };
        out.replace("ALL_PODS", all)
            .replace("EVERYWHERE", everywhere)
    }
}

/// Namespaces x, y, z (label `ns=<name>`), pods a, b, c in each (label `pod=<name>`),
/// all on `NODE`, each declaring `serve-<port>-<proto>` for ports 80 and 81.
pub fn cluster(family: Family) -> ClusterState {
    let mut state = ClusterState::default();
    for ns in NAMESPACES {
        state.upsert_namespace(Namespace {
            name: ns.into(),
            labels: [("ns".to_owned(), ns.to_owned())].into(),
        });
        for pod in PODS {
            let mut ports = Vec::new();
            for port in PORTS {
                for (protocol, suffix) in [
                    (Protocol::Tcp, "tcp"),
                    (Protocol::Udp, "udp"),
                    (Protocol::Sctp, "sctp"),
                ] {
                    ports.push(ContainerPort {
                        name: Some(format!("serve-{port}-{suffix}")),
                        port,
                        protocol,
                    });
                }
            }
            state.upsert_pod(Pod {
                namespace: ns.into(),
                name: pod.into(),
                labels: [("pod".to_owned(), pod.to_owned())].into(),
                ips: vec![family.pod_ip(ns, pod)],
                node_name: Some(NODE.into()),
                host_network: false,
                phase: PodPhase::Running,
                ports,
                interface: None,
            });
        }
    }
    state
}

pub fn options(family: Family, mode: EnforcingMode) -> ResolveOptions {
    ResolveOptions {
        node_name: NODE.into(),
        node_addresses: vec![family.node_ip()],
        mode,
    }
}

pub fn all_pods() -> Vec<ObjectRef> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| ObjectRef::new(*ns, *p)))
        .collect()
}

pub const PROTOCOLS: [(u8, &str); 3] =
    [(PROTO_TCP, "TCP"), (PROTO_UDP, "UDP"), (PROTO_SCTP, "SCTP")];

/// One probe: from a pod to a pod, on a protocol and destination port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    pub from: ObjectRef,
    pub to: ObjectRef,
    pub protocol: u8,
    pub port: u16,
}

/// Every probe between pods that have an address (probes to self included).
pub fn probes(state: &ClusterState) -> Vec<Probe> {
    let mut out = Vec::new();
    for from in all_pods() {
        for to in all_pods() {
            let (Some(f), Some(t)) = (state.pods.get(&from), state.pods.get(&to)) else {
                continue;
            };
            if f.ips.is_empty() || t.ips.is_empty() {
                continue;
            }
            for (protocol, _) in PROTOCOLS {
                for port in PORTS {
                    out.push(Probe {
                        from: from.clone(),
                        to: to.clone(),
                        protocol,
                        port,
                    });
                }
            }
        }
    }
    out
}

/// The datapath's answer: egress of the source and ingress of the destination, each
/// looked up in the maps as the kernel does. Traffic to itself never leaves the pod.
pub fn datapath_allows(maps: &MapModel, state: &ClusterState, probe: &Probe) -> bool {
    if probe.from == probe.to {
        return true;
    }
    let src_ip = state.pods[&probe.from].ips[0];
    let dst_ip = state.pods[&probe.to].ips[0];
    maps.decide(
        &probe.from,
        Direction::Egress,
        dst_ip,
        probe.protocol,
        probe.port,
    )
    .is_accept()
        && maps
            .decide(
                &probe.to,
                Direction::Ingress,
                src_ip,
                probe.protocol,
                probe.port,
            )
            .is_accept()
}

/// A 9x9 grid (rows: source x/a..z/c, columns: destination) of `1` (allowed) and
/// `.` (blocked) for one protocol and port.
pub fn grid(allows: impl Fn(&Probe) -> bool, protocol: u8, port: u16) -> String {
    let mut out = String::new();
    for from in all_pods() {
        let _ = write!(out, "{}{} ", from.namespace, from.name);
        for to in all_pods() {
            let probe = Probe {
                from: from.clone(),
                to,
                protocol,
                port,
            };
            out.push(if allows(&probe) { '1' } else { '.' });
        }
        out.push('\n');
    }
    out
}

/// Parse a literal grid written as rows `xa 111......` (whitespace in the cells
/// ignored) into the same form `grid` produces.
pub fn literal(rows: &str) -> String {
    let mut out = String::new();
    for line in rows.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (label, cells) = line.split_once(' ').unwrap_or((line, ""));
        let cells: String = cells.chars().filter(|c| !c.is_whitespace()).collect();
        let _ = writeln!(out, "{label} {cells}");
    }
    out
}
