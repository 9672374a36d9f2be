//! What the PolicyEndpoint (`endpoints`) and ClusterPolicyEndpoint
//! (`cluster_endpoints`) slices share: their selected pods, the reading of their
//! header, pods, CIDRs and ports with field-path errors, and the port lists their
//! merges group rules by.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::LoadError;
use crate::model::{PodRef, PolicyPort, PortRef, Protocol};

/// A pod a slice selects, with where it runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubjectPod {
    pub pod: PodRef,
    pub pod_ip: IpAddr,
    /// The node's address (`hostIP`); `None` when the controller left it empty.
    pub host_ip: Option<IpAddr>,
}

/// Keep only the pods hosted on one of `node_addresses` (what one node enforces); an
/// empty `node_addresses` keeps them all.
pub(crate) fn retain_subjects_on(subjects: &mut Vec<SubjectPod>, node_addresses: &[IpAddr]) {
    if node_addresses.is_empty() {
        return;
    }
    subjects.retain(|s| s.host_ip.is_some_and(|h| node_addresses.contains(&h)));
}

/// The pods of `subjects` that have an interface of their own: host-network pods
/// (`podIP == hostIP`) left out.
pub(crate) fn own_interface_pods<'a>(
    subjects: impl IntoIterator<Item = &'a SubjectPod>,
) -> impl Iterator<Item = &'a PodRef> {
    subjects
        .into_iter()
        .filter(|s| s.host_ip != Some(s.pod_ip))
        .map(|s| &s.pod)
}

/// A port's sort key: protocol, first port, last port.
pub(crate) type PortKey = (Protocol, Option<u16>, Option<u16>);

/// `ports` as sorted, deduplicated keys: equal port lists give equal keys.
pub(crate) fn port_list(ports: &[PolicyPort]) -> Vec<PortKey> {
    let mut keys: Vec<PortKey> = ports.iter().map(port_key).collect();
    keys.sort();
    keys.dedup();
    keys
}

fn port_key(p: &PolicyPort) -> PortKey {
    let start = match &p.port {
        Some(PortRef::Number(n)) => Some(*n),
        // Slices never carry names: `port` reads numbers only.
        Some(PortRef::Name(_)) | None => None,
    };
    (p.protocol, start, p.end_port)
}

pub(crate) fn port_of(key: PortKey) -> PolicyPort {
    PolicyPort {
        protocol: key.0,
        port: key.1.map(PortRef::Number),
        end_port: key.2,
    }
}

// --- loading -------------------------------------------------------------------

/// Where a slice comes from, to name it in errors.
pub(crate) struct Place<'a> {
    pub(crate) source_name: &'a str,
}

impl Place<'_> {
    pub(crate) fn field(&self, path: impl Into<String>, message: impl Into<String>) -> LoadError {
        LoadError::Field {
            source_name: self.source_name.to_owned(),
            doc: 1,
            path: path.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<S> {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: MetadataManifest,
    spec: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
struct MetadataManifest {
    name: Option<String>,
    namespace: Option<String>,
}

/// A slice whose `apiVersion`, `kind` and `metadata.name` have been checked.
pub(crate) struct Object<S> {
    pub(crate) name: String,
    /// As written; namespaced and cluster-scoped kinds check it differently.
    pub(crate) namespace: Option<String>,
    pub(crate) spec: Option<S>,
}

/// Read `value` as an object of `api_version` and `kind` (either may be left out)
/// with a name and a spec of type `S`.
pub(crate) fn read_object<S: DeserializeOwned>(
    place: &Place<'_>,
    value: serde_yaml::Value,
    api_version: &str,
    kind: &str,
) -> Result<Object<S>, LoadError> {
    let m: Manifest<S> = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        place.field(path, e.into_inner().to_string())
    })?;
    if let Some(found) = &m.api_version
        && found != api_version
    {
        return Err(place.field("apiVersion", format!("{found:?} is not {api_version}")));
    }
    if let Some(found) = &m.kind
        && found != kind
    {
        return Err(place.field("kind", format!("{found:?} is not {kind}")));
    }
    let name = match m.metadata.name {
        Some(n) if !n.is_empty() => n,
        _ => return Err(place.field("metadata.name", "missing")),
    };
    Ok(Object {
        name,
        namespace: m.metadata.namespace,
        spec: m.spec,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct PodEndpointManifest {
    #[serde(rename = "podIP")]
    pod_ip: IpAddr,
    #[serde(rename = "hostIP", default)]
    host_ip: Option<String>,
    name: String,
    namespace: String,
}

/// `spec.podSelectorEndpoints`, read.
pub(crate) fn subjects(
    place: &Place<'_>,
    list: Option<Vec<PodEndpointManifest>>,
) -> Result<Vec<SubjectPod>, LoadError> {
    list.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, p)| subject(place, &format!("spec.podSelectorEndpoints[{i}]"), p))
        .collect()
}

fn subject(place: &Place<'_>, path: &str, p: PodEndpointManifest) -> Result<SubjectPod, LoadError> {
    if p.name.is_empty() || p.namespace.is_empty() {
        return Err(place.field(path, "needs name and namespace"));
    }
    let host_ip = match p.host_ip.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<IpAddr>().map_err(|_| {
            place.field(
                format!("{path}.hostIP"),
                format!("{text:?} is not an address"),
            )
        })?),
    };
    Ok(SubjectPod {
        pod: PodRef::new(p.namespace, p.name),
        pod_ip: p.pod_ip,
        host_ip,
    })
}

/// A CIDR (host bits cleared), or a bare address as the controller writes pod peers.
pub(crate) fn network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .map(|n| n.trunc())
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PortManifest {
    #[serde(default)]
    protocol: Option<Protocol>,
    #[serde(default)]
    port: Option<i64>,
    #[serde(default)]
    end_port: Option<i64>,
}

/// An entry's `ports` (at `path`), read.
pub(crate) fn ports(
    place: &Place<'_>,
    path: &str,
    list: Option<Vec<PortManifest>>,
) -> Result<Vec<PolicyPort>, LoadError> {
    list.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(j, p)| port(place, &format!("{path}.ports[{j}]"), p))
        .collect()
}

fn port(place: &Place<'_>, path: &str, p: PortManifest) -> Result<PolicyPort, LoadError> {
    let start = p
        .port
        .map(|n| port_number(place, format!("{path}.port"), n))
        .transpose()?;
    let end = p
        .end_port
        .map(|n| port_number(place, format!("{path}.endPort"), n))
        .transpose()?;
    match (start, end) {
        (None, Some(_)) => return Err(place.field(format!("{path}.endPort"), "endPort needs port")),
        (Some(s), Some(e)) if e < s => {
            return Err(place.field(format!("{path}.endPort"), format!("{e} is below port {s}")));
        }
        _ => {}
    }
    Ok(PolicyPort {
        protocol: p.protocol.unwrap_or_default(),
        port: start.map(PortRef::Number),
        end_port: end,
    })
}

fn port_number(place: &Place<'_>, path: String, n: i64) -> Result<u16, LoadError> {
    match u16::try_from(n) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(place.field(path, format!("{n} is not a port number (1-65535)"))),
    }
}
