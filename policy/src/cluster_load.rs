//! Reads the AWS ClusterNetworkPolicy kind (`networking.k8s.aws/v1alpha1`) into a
//! `cluster::ClusterNetworkPolicy`; errors name the field path, as `load` does.

use serde::Deserialize;

use crate::cluster::{
    ClusterAction, ClusterNetworkPolicy, ClusterPeer, ClusterRule, NamespacedPods, Tier,
};
use crate::error::LoadError;
use crate::load::{Doc, object_name, selector};
use crate::manifest::{Cidr, Metadata, PortNumber, SelectorManifest, is_valid_port_name};
use crate::model::{PolicyPort, PortRef, Protocol};

/// The API group and version of the kind.
pub const CLUSTER_POLICY_API_VERSION: &str = "networking.k8s.aws/v1alpha1";
/// The kind's name.
pub const CLUSTER_POLICY_KIND: &str = "ClusterNetworkPolicy";
/// The highest priority the CRD accepts.
pub const MAX_PRIORITY: u32 = 1000;

#[derive(Debug, Deserialize)]
pub(crate) struct ClusterPolicyManifest {
    #[serde(default)]
    metadata: Metadata,
    spec: Option<SpecManifest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecManifest {
    tier: Tier,
    priority: i64,
    subject: SubjectManifest,
    #[serde(default)]
    ingress: Vec<IngressManifest>,
    #[serde(default)]
    egress: Vec<EgressManifest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NamespacedPodManifest {
    #[serde(default)]
    namespace_selector: SelectorManifest,
    #[serde(default)]
    pod_selector: SelectorManifest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectManifest {
    namespaces: Option<SelectorManifest>,
    pods: Option<NamespacedPodManifest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngressManifest {
    name: Option<String>,
    action: ClusterAction,
    #[serde(default)]
    from: Vec<SubjectManifest>,
    ports: Option<Vec<PortManifest>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EgressPeerManifest {
    namespaces: Option<SelectorManifest>,
    pods: Option<NamespacedPodManifest>,
    networks: Option<Vec<Cidr>>,
    domain_names: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressManifest {
    name: Option<String>,
    action: ClusterAction,
    #[serde(default)]
    to: Vec<EgressPeerManifest>,
    ports: Option<Vec<PortManifest>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PortManifest {
    port_number: Option<PortNumberManifest>,
    port_range: Option<PortRangeManifest>,
    named_port: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortNumberManifest {
    #[serde(default)]
    protocol: Protocol,
    port: PortNumber,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortRangeManifest {
    #[serde(default)]
    protocol: Protocol,
    start: PortNumber,
    end: PortNumber,
}

/// Validate a parsed ClusterNetworkPolicy document.
pub(crate) fn cluster_policy(
    doc: &Doc<'_>,
    m: ClusterPolicyManifest,
) -> Result<ClusterNetworkPolicy, LoadError> {
    let name = object_name(doc, &m.metadata)?;
    if m.metadata.namespace.is_some() {
        return Err(doc.field(
            "metadata.namespace",
            "a ClusterNetworkPolicy is cluster-scoped and takes no namespace",
        ));
    }
    let spec = m.spec.ok_or_else(|| doc.field("spec", "missing"))?;
    let priority = u32::try_from(spec.priority)
        .ok()
        .filter(|p| *p <= MAX_PRIORITY)
        .ok_or_else(|| {
            doc.field(
                "spec.priority",
                format!("{} is not a priority (0-{MAX_PRIORITY})", spec.priority),
            )
        })?;
    let subject = match (spec.subject.namespaces, spec.subject.pods) {
        (Some(ns), None) => {
            NamespacedPods::in_namespaces(selector(doc, "spec.subject.namespaces", ns)?)
        }
        (None, Some(pods)) => namespaced_pods(doc, "spec.subject.pods", pods)?,
        _ => {
            return Err(doc.field(
                "spec.subject",
                "exactly one of namespaces and pods must be set",
            ));
        }
    };
    let mut ingress = Vec::new();
    for (i, r) in spec.ingress.into_iter().enumerate() {
        let path = format!("spec.ingress[{i}]");
        if r.from.is_empty() {
            return Err(doc.field(format!("{path}.from"), "needs at least one peer"));
        }
        let mut peers = Vec::new();
        for (j, p) in r.from.into_iter().enumerate() {
            let peer_path = format!("{path}.from[{j}]");
            let peer = match (p.namespaces, p.pods) {
                (Some(ns), None) => NamespacedPods::in_namespaces(selector(
                    doc,
                    &format!("{peer_path}.namespaces"),
                    ns,
                )?),
                (None, Some(pods)) => namespaced_pods(doc, &format!("{peer_path}.pods"), pods)?,
                _ => {
                    return Err(
                        doc.field(peer_path, "exactly one of namespaces and pods must be set")
                    );
                }
            };
            peers.push(ClusterPeer::Pods(peer));
        }
        ingress.push(ClusterRule {
            name: r.name,
            action: r.action,
            peers,
            ports: ports(doc, &path, r.ports)?,
        });
    }
    let mut egress = Vec::new();
    for (i, r) in spec.egress.into_iter().enumerate() {
        let path = format!("spec.egress[{i}]");
        if r.to.is_empty() {
            return Err(doc.field(format!("{path}.to"), "needs at least one peer"));
        }
        let mut peers = Vec::new();
        for (j, p) in r.to.into_iter().enumerate() {
            let peer_path = format!("{path}.to[{j}]");
            let set = usize::from(p.namespaces.is_some())
                + usize::from(p.pods.is_some())
                + usize::from(p.networks.is_some())
                + usize::from(p.domain_names.is_some());
            if set != 1 {
                return Err(doc.field(
                    peer_path,
                    "exactly one of namespaces, pods, networks and domainNames must be set",
                ));
            }
            let peer = if let Some(ns) = p.namespaces {
                ClusterPeer::Pods(NamespacedPods::in_namespaces(selector(
                    doc,
                    &format!("{peer_path}.namespaces"),
                    ns,
                )?))
            } else if let Some(pods) = p.pods {
                ClusterPeer::Pods(namespaced_pods(doc, &format!("{peer_path}.pods"), pods)?)
            } else if let Some(networks) = p.networks {
                if networks.is_empty() {
                    return Err(doc.field(format!("{peer_path}.networks"), "needs a CIDR"));
                }
                ClusterPeer::Networks(networks.into_iter().map(|c| c.0).collect())
            } else {
                let names = p.domain_names.unwrap_or_default();
                if names.is_empty() {
                    return Err(doc.field(format!("{peer_path}.domainNames"), "needs a name"));
                }
                ClusterPeer::DomainNames(names)
            };
            peers.push(peer);
        }
        egress.push(ClusterRule {
            name: r.name,
            action: r.action,
            peers,
            ports: ports(doc, &path, r.ports)?,
        });
    }
    Ok(ClusterNetworkPolicy {
        name,
        tier: spec.tier,
        priority,
        subject,
        subject_pods: None,
        ingress,
        egress,
    })
}

fn namespaced_pods(
    doc: &Doc<'_>,
    path: &str,
    m: NamespacedPodManifest,
) -> Result<NamespacedPods, LoadError> {
    Ok(NamespacedPods {
        namespace_selector: selector(
            doc,
            &format!("{path}.namespaceSelector"),
            m.namespace_selector,
        )?,
        pod_selector: selector(doc, &format!("{path}.podSelector"), m.pod_selector)?,
    })
}

/// A rule's `ports`: absent means every port; present, it needs an entry.
fn ports(
    doc: &Doc<'_>,
    rule_path: &str,
    m: Option<Vec<PortManifest>>,
) -> Result<Vec<PolicyPort>, LoadError> {
    let Some(list) = m else {
        return Ok(Vec::new());
    };
    if list.is_empty() {
        return Err(doc.field(
            format!("{rule_path}.ports"),
            "needs at least one port (leave ports out for every port)",
        ));
    }
    let mut out = Vec::new();
    for (i, p) in list.into_iter().enumerate() {
        let path = format!("{rule_path}.ports[{i}]");
        match (p.port_number, p.port_range, p.named_port) {
            (Some(n), None, None) => out.push(PolicyPort {
                protocol: n.protocol,
                port: Some(PortRef::Number(n.port.0)),
                end_port: None,
            }),
            (None, Some(r), None) => {
                if r.start.0 >= r.end.0 {
                    return Err(doc.field(
                        format!("{path}.portRange"),
                        format!("start {} must be below end {}", r.start.0, r.end.0),
                    ));
                }
                out.push(PolicyPort {
                    protocol: r.protocol,
                    port: Some(PortRef::Number(r.start.0)),
                    end_port: Some(r.end.0),
                });
            }
            (None, None, Some(name)) => {
                if !is_valid_port_name(&name) {
                    return Err(doc.field(
                        format!("{path}.namedPort"),
                        format!("{name:?} is not a valid port name"),
                    ));
                }
                // A named port matches the container port of that name, whatever
                // its protocol.
                for protocol in Protocol::ALL {
                    out.push(PolicyPort {
                        protocol,
                        port: Some(PortRef::Name(name.clone())),
                        end_port: None,
                    });
                }
            }
            _ => {
                return Err(doc.field(
                    path,
                    "exactly one of portNumber, portRange and namedPort must be set",
                ));
            }
        }
    }
    Ok(out)
}
