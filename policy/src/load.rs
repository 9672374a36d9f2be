//! Reads Kubernetes-style YAML (several documents per file, or a directory of
//! `*.yaml`/`*.yml` files in name order) into a validated `ClusterState`. Errors name
//! the file, the 1-based document index and the field path.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::error::LoadError;
use crate::manifest::{
    Header, IpBlockManifest, Metadata, NamespaceManifest, PeerManifest, PodManifest,
    PolicyManifest, PortManifest, SelectorManifest,
};
use crate::model::{
    ClusterState, ContainerPort, INTERFACE_ANNOTATION, IpBlock, LabelSelector, Namespace,
    NetworkPolicy, Operator, Peer, Pod, PolicyPort, PolicyRule, PolicySpec, PortRef, Requirement,
};

/// Load every `*.yaml` / `*.yml` file of `dir` (not recursive), in name order.
///
/// # Errors
/// The first unreadable file or invalid document, named by path and document index.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<ClusterState, LoadError> {
    let dir = dir.as_ref();
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut state = ClusterState::default();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        load_into(&mut state, &path.display().to_string(), &text)?;
    }
    Ok(state)
}

/// One document of a text, loaded on its own.
#[derive(Debug)]
pub struct DocumentLoad {
    /// 1-based index in its text.
    pub index: usize,
    /// The objects the document holds, or why it is refused.
    pub result: Result<ClusterState, LoadError>,
    /// A Pod or NetworkPolicy without `metadata.namespace`: it went to `default`, as
    /// kubectl does.
    pub defaulted_namespace: bool,
}

/// Every document of `text`, each loaded on its own, so one bad document never hides
/// the others (as the API server refuses one object and takes the rest). After a YAML
/// syntax error the rest of the text cannot be split into documents: that error is the
/// last entry.
pub fn load_documents(source_name: &str, text: &str) -> Vec<DocumentLoad> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc = Doc {
            source_name,
            index: i + 1,
        };
        let value = match serde_yaml::Value::deserialize(document) {
            Ok(v) => v,
            Err(e) => {
                out.push(DocumentLoad {
                    index: doc.index,
                    result: Err(LoadError::Syntax {
                        source_name: source_name.to_owned(),
                        doc: doc.index,
                        message: e.to_string(),
                    }),
                    defaulted_namespace: false,
                });
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        let defaulted_namespace = matches!(
            value.get("kind").and_then(serde_yaml::Value::as_str),
            Some("Pod" | "NetworkPolicy")
        ) && value
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .is_none();
        let mut state = ClusterState::default();
        let result = load_document(&mut state, &doc, value).map(|()| state);
        out.push(DocumentLoad {
            index: doc.index,
            result,
            defaulted_namespace,
        });
    }
    out
}

/// Load the YAML documents of one text; `source_name` is used in errors.
///
/// # Errors
/// The first invalid document, by index and field path.
///
/// # Examples
/// ```
/// let state = policy::load::load_str("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n").unwrap();
/// assert!(state.namespaces.contains_key("x"));
/// ```
pub fn load_str(source_name: &str, text: &str) -> Result<ClusterState, LoadError> {
    let mut state = ClusterState::default();
    load_into(&mut state, source_name, text)?;
    Ok(state)
}

/// Add the documents of `text` to `state`.
///
/// # Errors
/// As `load_str`; also an object already present in `state`.
pub fn load_into(state: &mut ClusterState, source_name: &str, text: &str) -> Result<(), LoadError> {
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc = Doc {
            source_name,
            index: i + 1,
        };
        let value = serde_yaml::Value::deserialize(document).map_err(|e| LoadError::Syntax {
            source_name: source_name.to_owned(),
            doc: doc.index,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        load_document(state, &doc, value)?;
    }
    Ok(())
}

/// Add one already-parsed document (a Namespace, Pod, NetworkPolicy or List) to
/// `state`, as `load_into` does for each document of a text; for sources that
/// receive objects rather than text (the Kubernetes API).
///
/// # Errors
/// As `load_into`; errors name `source_name` and document 1.
pub fn load_value_into(
    state: &mut ClusterState,
    source_name: &str,
    value: serde_yaml::Value,
) -> Result<(), LoadError> {
    load_document(
        state,
        &Doc {
            source_name,
            index: 1,
        },
        value,
    )
}

/// Where a document came from, for error messages.
pub(crate) struct Doc<'a> {
    source_name: &'a str,
    index: usize,
}

impl Doc<'_> {
    pub(crate) fn field(&self, path: impl Into<String>, message: impl Into<String>) -> LoadError {
        LoadError::Field {
            source_name: self.source_name.to_owned(),
            doc: self.index,
            path: path.into(),
            message: message.into(),
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        value: serde_yaml::Value,
    ) -> Result<T, LoadError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            self.field(path, e.into_inner().to_string())
        })
    }

    fn duplicate(&self, kind: &'static str, object: String) -> LoadError {
        LoadError::Duplicate {
            source_name: self.source_name.to_owned(),
            doc: self.index,
            kind,
            object,
        }
    }
}

fn load_document(
    state: &mut ClusterState,
    doc: &Doc<'_>,
    value: serde_yaml::Value,
) -> Result<(), LoadError> {
    if !value.is_mapping() {
        return Err(doc.field(".", "a document must be a mapping with apiVersion and kind"));
    }
    let header: Header = doc.parse(value.clone())?;
    let api_version = header
        .api_version
        .ok_or_else(|| doc.field("apiVersion", "missing"))?;
    let kind = header.kind.ok_or_else(|| doc.field("kind", "missing"))?;
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            let ns = namespace(doc, doc.parse(value)?)?;
            if state.namespaces.contains_key(&ns.name) {
                return Err(doc.duplicate("Namespace", ns.name));
            }
            state.upsert_namespace(ns);
        }
        ("v1", "Pod") => {
            let pod = pod(doc, doc.parse(value)?)?;
            if state.pods.contains_key(&pod.key()) {
                return Err(doc.duplicate("Pod", pod.key().to_string()));
            }
            state.upsert_pod(pod);
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            let policy = policy(doc, doc.parse(value)?)?;
            if state.policies.contains_key(&policy.key()) {
                return Err(doc.duplicate("NetworkPolicy", policy.key().to_string()));
            }
            state.upsert_policy(policy);
        }
        (
            crate::cluster_load::CLUSTER_POLICY_API_VERSION,
            crate::cluster_load::CLUSTER_POLICY_KIND,
        ) => {
            let policy = crate::cluster_load::cluster_policy(doc, doc.parse(value)?)?;
            if state.cluster_policies.contains_key(&policy.name) {
                return Err(doc.duplicate("ClusterNetworkPolicy", policy.name));
            }
            state.upsert_cluster_policy(policy);
        }
        ("v1", "List") => {
            let items = match value.get("items") {
                Some(serde_yaml::Value::Sequence(items)) => items.clone(),
                _ => return Err(doc.field("items", "a List needs a sequence of items")),
            };
            for item in items {
                load_document(state, doc, item)?;
            }
        }
        _ => {
            return Err(LoadError::UnsupportedKind {
                source_name: doc.source_name.to_owned(),
                doc: doc.index,
                api_version,
                kind,
            });
        }
    }
    Ok(())
}

pub(crate) fn object_name(doc: &Doc<'_>, meta: &Metadata) -> Result<String, LoadError> {
    match meta.name.as_deref() {
        Some(name) if !name.is_empty() => Ok(name.to_owned()),
        _ => Err(doc.field("metadata.name", "missing")),
    }
}

fn namespace(doc: &Doc<'_>, m: NamespaceManifest) -> Result<Namespace, LoadError> {
    Ok(Namespace {
        name: object_name(doc, &m.metadata)?,
        labels: m.metadata.labels,
    })
}

fn pod(doc: &Doc<'_>, m: PodManifest) -> Result<Pod, LoadError> {
    let name = object_name(doc, &m.metadata)?;
    let mut ips: Vec<IpAddr> = m.status.pod_ips.iter().map(|p| p.ip).collect();
    if let Some(ip) = m.status.pod_ip
        && !ips.contains(&ip)
    {
        ips.insert(0, ip);
    }
    for family_v4 in [true, false] {
        if ips.iter().filter(|ip| ip.is_ipv4() == family_v4).count() > 1 {
            return Err(doc.field("status.podIPs", "at most one address per family"));
        }
    }
    let mut ports = Vec::new();
    for (ci, c) in m.spec.containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().enumerate() {
            if let Some(n) = &p.name
                && !crate::manifest::is_valid_port_name(n)
            {
                return Err(doc.field(
                    format!("spec.containers[{ci}].ports[{pi}].name"),
                    format!("{n:?} is not a valid port name"),
                ));
            }
            ports.push(ContainerPort {
                name: p.name.clone(),
                port: p.container_port.0,
                protocol: p.protocol,
            });
        }
    }
    Ok(Pod {
        namespace: m
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        name,
        labels: m.metadata.labels,
        ips,
        node_name: m.spec.node_name,
        host_network: m.spec.host_network,
        phase: m.status.phase.unwrap_or_default(),
        ports,
        interface: m.metadata.annotations.get(INTERFACE_ANNOTATION).cloned(),
    })
}

fn policy(doc: &Doc<'_>, m: PolicyManifest) -> Result<NetworkPolicy, LoadError> {
    let name = object_name(doc, &m.metadata)?;
    let spec = m.spec;
    let ingress = spec
        .ingress
        .into_iter()
        .enumerate()
        .map(|(i, r)| rule(doc, &format!("spec.ingress[{i}]"), "from", r.from, r.ports))
        .collect::<Result<_, _>>()?;
    let egress = spec
        .egress
        .into_iter()
        .enumerate()
        .map(|(i, r)| rule(doc, &format!("spec.egress[{i}]"), "to", r.to, r.ports))
        .collect::<Result<_, _>>()?;
    if let Some(types) = &spec.policy_types {
        for (i, t) in types.iter().enumerate() {
            if types[..i].contains(t) {
                return Err(doc.field(
                    format!("spec.policyTypes[{i}]"),
                    format!("{t:?} is listed twice"),
                ));
            }
        }
    }
    Ok(NetworkPolicy {
        namespace: m
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        name,
        spec: PolicySpec {
            pod_selector: selector(doc, "spec.podSelector", spec.pod_selector)?,
            subject_pods: None,
            ingress,
            egress,
            policy_types: spec.policy_types,
            audit: audit_switch(doc, &m.metadata.annotations)?,
        },
    })
}

/// The audit annotation: absent or `"false"` is off, `"true"` on, anything else an error.
fn audit_switch(
    doc: &Doc<'_>,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<bool, LoadError> {
    match annotations.get(crate::model::AUDIT_KEY).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(doc.field(
            format!("metadata.annotations[{}]", crate::model::AUDIT_KEY),
            format!("{other:?} is neither \"true\" nor \"false\""),
        )),
    }
}

fn rule(
    doc: &Doc<'_>,
    path: &str,
    peers_field: &str,
    peers: Vec<PeerManifest>,
    ports: Vec<PortManifest>,
) -> Result<PolicyRule, LoadError> {
    let peers = peers
        .into_iter()
        .enumerate()
        .map(|(i, p)| peer(doc, &format!("{path}.{peers_field}[{i}]"), p))
        .collect::<Result<_, _>>()?;
    let ports = ports
        .into_iter()
        .enumerate()
        .map(|(i, p)| port(doc, &format!("{path}.ports[{i}]"), p))
        .collect::<Result<_, _>>()?;
    Ok(PolicyRule { peers, ports })
}

fn peer(doc: &Doc<'_>, path: &str, p: PeerManifest) -> Result<Peer, LoadError> {
    match (p.pod_selector, p.namespace_selector, p.ip_block) {
        (None, None, None) => Err(doc.field(
            path,
            "a peer needs podSelector, namespaceSelector or ipBlock",
        )),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => Err(doc.field(
            path,
            "ipBlock cannot be combined with podSelector or namespaceSelector",
        )),
        (None, None, Some(block)) => Ok(Peer::IpBlock(ip_block(
            doc,
            &format!("{path}.ipBlock"),
            block,
        )?)),
        (pods, namespaces, None) => Ok(Peer::Pods {
            pod_selector: pods
                .map(|s| selector(doc, &format!("{path}.podSelector"), s))
                .transpose()?,
            namespace_selector: namespaces
                .map(|s| selector(doc, &format!("{path}.namespaceSelector"), s))
                .transpose()?,
        }),
    }
}

fn ip_block(doc: &Doc<'_>, path: &str, b: IpBlockManifest) -> Result<IpBlock, LoadError> {
    let cidr = b.cidr.0;
    for (i, e) in b.except.iter().enumerate() {
        let e = e.0;
        let inside = match (cidr, e) {
            (ipnet::IpNet::V4(c), ipnet::IpNet::V4(x)) => {
                c.contains(&x) && x.prefix_len() > c.prefix_len()
            }
            (ipnet::IpNet::V6(c), ipnet::IpNet::V6(x)) => {
                c.contains(&x) && x.prefix_len() > c.prefix_len()
            }
            _ => false,
        };
        if !inside {
            return Err(doc.field(
                format!("{path}.except[{i}]"),
                format!("{e} is not strictly inside cidr {cidr}"),
            ));
        }
    }
    Ok(IpBlock {
        cidr,
        except: b.except.into_iter().map(|c| c.0).collect(),
    })
}

fn port(doc: &Doc<'_>, path: &str, p: PortManifest) -> Result<PolicyPort, LoadError> {
    if let Some(end) = p.end_port {
        match &p.port {
            Some(PortRef::Number(start)) if *start <= end.0 => {}
            Some(PortRef::Number(start)) => {
                return Err(doc.field(
                    format!("{path}.endPort"),
                    format!("{} is below port {start}", end.0),
                ));
            }
            Some(PortRef::Name(_)) => {
                return Err(doc.field(format!("{path}.endPort"), "endPort needs a numeric port"));
            }
            None => return Err(doc.field(format!("{path}.endPort"), "endPort needs port")),
        }
    }
    Ok(PolicyPort {
        protocol: p.protocol,
        port: p.port,
        end_port: p.end_port.map(|e| e.0),
    })
}

pub(crate) fn selector(
    doc: &Doc<'_>,
    path: &str,
    s: SelectorManifest,
) -> Result<LabelSelector, LoadError> {
    let mut match_expressions = Vec::new();
    for (i, r) in s.match_expressions.into_iter().enumerate() {
        let needs_values = matches!(r.operator, Operator::In | Operator::NotIn);
        if needs_values && r.values.is_empty() {
            return Err(doc.field(
                format!("{path}.matchExpressions[{i}].values"),
                format!("{:?} needs at least one value", r.operator),
            ));
        }
        if !needs_values && !r.values.is_empty() {
            return Err(doc.field(
                format!("{path}.matchExpressions[{i}].values"),
                format!("{:?} takes no values", r.operator),
            ));
        }
        if r.key.is_empty() {
            return Err(doc.field(format!("{path}.matchExpressions[{i}].key"), "empty key"));
        }
        match_expressions.push(Requirement {
            key: r.key,
            operator: r.operator,
            values: r.values,
        });
    }
    Ok(LabelSelector {
        match_labels: s.match_labels,
        match_expressions,
    })
}
