//! PolicyEndpoint input (`networking.k8s.aws/v1alpha1`, the objects the EKS network
//! policy controller derives from each NetworkPolicy): one object ("slice") as a model
//! value, its loader, and the merge of every slice of one policy into ONE
//! `NetworkPolicy` named by the slices' `policyRef`, so rule ids, flow lines and
//! `ebpf policies` name the NetworkPolicy behind them.
//!
//! Facts this relies on (read in aws/aws-network-policy-agent
//! `api/v1alpha1/policyendpoints_types.go`, `controllers/policyendpoints_controller.go`,
//! and aws/amazon-network-policy-controller-k8s `pkg/resolvers/endpoints.go`,
//! `pkg/policyendpoints/manager.go`):
//! - A slice carries `policyRef` (the NetworkPolicy), `podSelector` (copied from it),
//!   `podIsolation` (its `policyTypes`, which the API server always fills in),
//!   `podSelectorEndpoints` (selected pods with `podIP`, `hostIP`, `name`,
//!   `namespace`, only pods that have an address) and `ingress`/`egress` lists of
//!   `{cidr, except, ports}`. A `cidr` may be a bare address (a pod peer).
//! - The controller splits a large policy into several slices (chunks of endpoints
//!   and of selected pods), each with the same `policyRef`, `podSelector` and
//!   `podIsolation`; a policy with nothing resolved still has one slice. It merges
//!   entries of equal CIDR (ports and excepts appended) and writes lists in map
//!   order, so order means nothing: the merge here sorts everything.
//! - An empty peer list (all peers) becomes `0.0.0.0/0` and `::/0`; an empty port
//!   list means every port; a port without number means every port of its protocol;
//!   protocol defaults to TCP. Named ports are resolved by the controller (for an
//!   ingress rule with pod peers, against the selected pods; for egress, against the
//!   peer pod), so slices carry numbers only.
//! - The incumbent agent enforces a slice's pods whose `hostIP` is its node and skips
//!   host-network pods (`podIP == hostIP`); it isolates a direction listed in
//!   `podIsolation`. Here a policy affects exactly the directions of `podIsolation`
//!   (rules of another direction are ignored, as Kubernetes says, where the incumbent
//!   would apply them); with no `podIsolation` at all, the directions that have
//!   entries.
//!
//! A merged policy selects its pods by name (`PolicySpec::subject_pods`): the pods of
//! every slice's `podSelectorEndpoints`; its rules are ipBlock peers, one rule per
//! distinct port list, in a canonical order so that equal inputs give equal policies.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use crate::error::LoadError;
use crate::manifest::Cidr;
use crate::model::{
    Direction, IpBlock, LabelSelector, NetworkPolicy, Operator, Peer, PolicyPort, PolicyRef,
    PolicyRule, PolicySpec, Requirement,
};
pub use crate::slices::SubjectPod;
use crate::slices::{
    Object, Place, PodEndpointManifest, PortKey, PortManifest, network, own_interface_pods,
    port_list, port_of, ports, read_object, retain_subjects_on, subjects,
};

/// The API version of PolicyEndpoint objects.
pub const POLICY_ENDPOINT_API_VERSION: &str = "networking.k8s.aws/v1alpha1";
/// Their kind.
pub const POLICY_ENDPOINT_KIND: &str = "PolicyEndpoint";

/// One resolved peer of a slice: addresses and the ports allowed to or from them
/// (empty: every port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointPeer {
    pub block: IpBlock,
    pub ports: Vec<PolicyPort>,
}

/// One PolicyEndpoint object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyEndpoint {
    /// The object's own namespace and name (`<policy>-<suffix>`).
    pub namespace: String,
    pub name: String,
    /// The NetworkPolicy it was derived from.
    pub policy: PolicyRef,
    pub pod_selector: LabelSelector,
    pub pod_isolation: Vec<Direction>,
    pub subjects: Vec<SubjectPod>,
    pub ingress: Vec<EndpointPeer>,
    pub egress: Vec<EndpointPeer>,
}

impl PolicyEndpoint {
    /// The object's identity.
    pub fn key(&self) -> crate::model::ObjectRef {
        crate::model::ObjectRef::new(self.namespace.clone(), self.name.clone())
    }

    /// Keep only the selected pods hosted on one of `node_addresses` (what one node
    /// enforces); an empty `node_addresses` keeps them all.
    pub fn retain_subjects_on(&mut self, node_addresses: &[IpAddr]) {
        retain_subjects_on(&mut self.subjects, node_addresses);
    }

    fn rules(&self, direction: Direction) -> &[EndpointPeer] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// The one policy the slices of `policy` stand for (see the module doc). Slices of
/// other policies are ignored.
pub fn merge<'a>(
    policy: &PolicyRef,
    slices: impl IntoIterator<Item = &'a PolicyEndpoint>,
) -> NetworkPolicy {
    let slices: Vec<&PolicyEndpoint> = slices.into_iter().filter(|s| &s.policy == policy).collect();
    let subject_pods: BTreeSet<String> =
        own_interface_pods(slices.iter().flat_map(|s| &s.subjects))
            .filter(|pod| pod.namespace == policy.namespace)
            .map(|pod| pod.name.clone())
            .collect();
    let mut isolation: BTreeSet<Direction> = slices
        .iter()
        .flat_map(|s| s.pod_isolation.iter().copied())
        .collect();
    if isolation.is_empty() {
        isolation = Direction::BOTH
            .into_iter()
            .filter(|d| slices.iter().any(|s| !s.rules(*d).is_empty()))
            .collect();
    }
    let rules = |direction: Direction| -> Vec<PolicyRule> {
        // Port list -> the blocks allowed on it.
        let mut groups: BTreeMap<Vec<PortKey>, BTreeSet<(IpNet, Vec<IpNet>)>> = BTreeMap::new();
        for slice in &slices {
            for peer in slice.rules(direction) {
                let mut except = peer.block.except.clone();
                except.sort();
                except.dedup();
                groups
                    .entry(port_list(&peer.ports))
                    .or_default()
                    .insert((peer.block.cidr, except));
            }
        }
        groups
            .into_iter()
            .map(|(ports, blocks)| PolicyRule {
                peers: blocks
                    .into_iter()
                    .map(|(cidr, except)| Peer::IpBlock(IpBlock { cidr, except }))
                    .collect(),
                ports: ports.into_iter().map(port_of).collect(),
            })
            .collect()
    };
    NetworkPolicy {
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
        spec: PolicySpec {
            pod_selector: slices
                .first()
                .map(|s| s.pod_selector.clone())
                .unwrap_or_default(),
            subject_pods: Some(subject_pods),
            ingress: rules(Direction::Ingress),
            egress: rules(Direction::Egress),
            policy_types: Some(isolation.into_iter().collect()),
            ..PolicySpec::default()
        },
    }
}

// --- loading -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecManifest {
    policy_ref: PolicyRefManifest,
    pod_selector: Option<SelectorManifest>,
    #[serde(default)]
    pod_isolation: Option<Vec<Direction>>,
    #[serde(default)]
    pod_selector_endpoints: Option<Vec<PodEndpointManifest>>,
    #[serde(default)]
    ingress: Option<Vec<EndpointManifest>>,
    #[serde(default)]
    egress: Option<Vec<EndpointManifest>>,
    /// Set on the slices of admin policies, which this agent does not enforce.
    #[serde(default)]
    is_global: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct PolicyRefManifest {
    name: String,
    namespace: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SelectorManifest {
    #[serde(default)]
    match_labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    match_expressions: Option<Vec<RequirementManifest>>,
}

#[derive(Debug, Deserialize)]
struct RequirementManifest {
    key: String,
    operator: Operator,
    #[serde(default)]
    values: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointManifest {
    #[serde(default)]
    cidr: Option<String>,
    #[serde(default)]
    except: Option<Vec<Cidr>>,
    #[serde(default)]
    ports: Option<Vec<PortManifest>>,
    /// Allow or Deny on admin-policy slices; empty on NetworkPolicy slices.
    #[serde(default)]
    action: Option<String>,
    /// An FQDN egress rule (no `cidr`); not enforced here, as the incumbent skips it.
    #[serde(default)]
    domain_name: Option<String>,
}

/// Read one PolicyEndpoint object (as the API server serves it, or as YAML).
/// `source_name` names it in errors.
///
/// # Errors
/// A missing or invalid field, named by its path (`spec.ingress[2].cidr`), or an
/// object of another kind or an admin-policy slice (`spec.isGlobal`, an `action`).
///
/// # Examples
/// ```
/// let value = serde_yaml::from_str(r#"
/// apiVersion: networking.k8s.aws/v1alpha1
/// kind: PolicyEndpoint
/// metadata: {name: web-abcde, namespace: shop}
/// spec:
///   policyRef: {name: web, namespace: shop}
///   podIsolation: [Ingress]
///   podSelectorEndpoints: [{podIP: 10.0.0.5, hostIP: 192.168.0.1, name: web-1, namespace: shop}]
///   ingress: [{cidr: 10.0.1.7, ports: [{port: 80}]}]
/// "#).unwrap();
/// let slice = policy::endpoints::load_policy_endpoint("api", value).unwrap();
/// let merged = policy::endpoints::merge(&slice.policy, [&slice]);
/// assert_eq!(merged.key().to_string(), "shop/web");
/// ```
pub fn load_policy_endpoint(
    source_name: &str,
    value: serde_yaml::Value,
) -> Result<PolicyEndpoint, LoadError> {
    let place = Place { source_name };
    let object: Object<SpecManifest> = read_object(
        &place,
        value,
        POLICY_ENDPOINT_API_VERSION,
        POLICY_ENDPOINT_KIND,
    )?;
    let namespace = object
        .namespace
        .filter(|n| !n.is_empty())
        .ok_or_else(|| place.field("metadata.namespace", "missing"))?;
    let spec = object.spec.ok_or_else(|| place.field("spec", "missing"))?;
    if spec.is_global == Some(true) {
        return Err(place.field(
            "spec.isGlobal",
            "a slice of an admin network policy; only NetworkPolicy slices are enforced",
        ));
    }
    if spec.policy_ref.name.is_empty() || spec.policy_ref.namespace.is_empty() {
        return Err(place.field("spec.policyRef", "needs name and namespace"));
    }
    let pod_isolation = spec.pod_isolation.unwrap_or_default();
    for (i, d) in pod_isolation.iter().enumerate() {
        if pod_isolation[..i].contains(d) {
            return Err(place.field(
                format!("spec.podIsolation[{i}]"),
                format!("{d:?} is listed twice"),
            ));
        }
    }
    let subjects = subjects(&place, spec.pod_selector_endpoints)?;
    Ok(PolicyEndpoint {
        namespace,
        name: object.name,
        policy: PolicyRef::new(spec.policy_ref.namespace, spec.policy_ref.name),
        pod_selector: selector(spec.pod_selector.unwrap_or_default()),
        pod_isolation,
        subjects,
        ingress: endpoints(&place, "spec.ingress", spec.ingress.unwrap_or_default())?,
        egress: endpoints(&place, "spec.egress", spec.egress.unwrap_or_default())?,
    })
}

fn selector(s: SelectorManifest) -> LabelSelector {
    LabelSelector {
        match_labels: s.match_labels.unwrap_or_default(),
        match_expressions: s
            .match_expressions
            .unwrap_or_default()
            .into_iter()
            .map(|r| Requirement {
                key: r.key,
                operator: r.operator,
                values: r.values.unwrap_or_default(),
            })
            .collect(),
    }
}

fn endpoints(
    place: &Place<'_>,
    path: &str,
    list: Vec<EndpointManifest>,
) -> Result<Vec<EndpointPeer>, LoadError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, e) in list.into_iter().enumerate() {
        let at = format!("{path}[{i}]");
        if let Some(action) = e.action.as_deref()
            && !action.is_empty()
            && action != "Allow"
        {
            return Err(place.field(
                format!("{at}.action"),
                format!("{action:?}: only allow rules (NetworkPolicy slices) are enforced"),
            ));
        }
        let cidr = match e.cidr.as_deref() {
            None | Some("") if e.domain_name.is_some() => continue,
            None | Some("") => return Err(place.field(format!("{at}.cidr"), "missing")),
            Some(text) => network(text).ok_or_else(|| {
                place.field(
                    format!("{at}.cidr"),
                    format!("{text:?} is neither a CIDR nor an address"),
                )
            })?,
        };
        let except: Vec<IpNet> = e
            .except
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.0)
            .collect();
        for (j, x) in except.iter().enumerate() {
            let inside = match (cidr, x) {
                (IpNet::V4(c), IpNet::V4(x)) => c.contains(x) && x.prefix_len() > c.prefix_len(),
                (IpNet::V6(c), IpNet::V6(x)) => c.contains(x) && x.prefix_len() > c.prefix_len(),
                _ => false,
            };
            if !inside {
                return Err(place.field(
                    format!("{at}.except[{j}]"),
                    format!("{x} is not strictly inside cidr {cidr}"),
                ));
            }
        }
        out.push(EndpointPeer {
            block: IpBlock { cidr, except },
            ports: ports(place, &at, e.ports)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn slice(yaml: &str) -> PolicyEndpoint {
        load_policy_endpoint("test", serde_yaml::from_str(yaml).expect("YAML")).expect("loads")
    }

    fn load_err(yaml: &str) -> String {
        load_policy_endpoint("test", serde_yaml::from_str(yaml).expect("YAML"))
            .expect_err("refused")
            .to_string()
    }

    const A: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: PolicyEndpoint
metadata: {name: web-aaaaa, namespace: shop}
spec:
  policyRef: {name: web, namespace: shop}
  podSelector: {matchLabels: {app: web}}
  podIsolation: [Ingress, Egress]
  podSelectorEndpoints:
    - {podIP: 10.0.0.5, hostIP: 192.168.0.1, name: web-1, namespace: shop}
    - {podIP: 192.168.0.2, hostIP: 192.168.0.2, name: hostnet, namespace: shop}
  ingress:
    - {cidr: 10.0.1.7, ports: [{port: 80, protocol: TCP}]}
    - {cidr: 0.0.0.0/0, except: [10.0.0.0/8], ports: [{protocol: UDP}]}
  egress:
    - {cidr: "::/0"}
"#;

    const B: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: PolicyEndpoint
metadata: {name: web-bbbbb, namespace: shop}
spec:
  policyRef: {name: web, namespace: shop}
  podSelector: {matchLabels: {app: web}}
  podIsolation: [Ingress, Egress]
  podSelectorEndpoints:
    - {podIP: 10.0.0.6, hostIP: 192.168.0.9, name: web-2, namespace: shop}
  ingress:
    - {cidr: 10.0.1.8, ports: [{port: 80}]}
"#;

    #[test]
    fn slices_of_one_policy_merge_into_one_policy_named_by_policy_ref() {
        let (a, b) = (slice(A), slice(B));
        let policy = PolicyRef::new("shop", "web");
        let merged = merge(&policy, [&a, &b]);
        assert_eq!(merged.key(), policy);
        assert_eq!(
            merged.spec.subject_pods,
            Some(["web-1".to_owned(), "web-2".to_owned()].into()),
            "host-network pod left out"
        );
        assert_eq!(
            merged.spec.policy_types,
            Some(vec![Direction::Ingress, Direction::Egress])
        );
        // One rule per distinct port list; both slices' TCP/80 peers share one.
        assert_eq!(merged.spec.ingress.len(), 2);
        let tcp80 = merged
            .spec
            .ingress
            .iter()
            .find(|r| r.ports.len() == 1 && r.ports[0].protocol == Protocol::Tcp)
            .expect("tcp 80 rule");
        assert_eq!(tcp80.peers.len(), 2);
        assert_eq!(merged.spec.egress.len(), 1);
        assert!(merged.spec.egress[0].ports.is_empty(), "every port");
        // Order of slices and entries does not matter.
        assert_eq!(merge(&policy, [&b, &a]), merged);
        let mut shuffled = a.clone();
        shuffled.ingress.reverse();
        assert_eq!(merge(&policy, [&b, &shuffled]), merged);
    }

    #[test]
    fn subjects_on_other_nodes_are_dropped_when_the_node_is_known() {
        let mut a = slice(A);
        a.retain_subjects_on(&["192.168.0.9".parse().unwrap()]);
        assert!(a.subjects.is_empty());
        let mut b = slice(B);
        b.retain_subjects_on(&["192.168.0.9".parse().unwrap()]);
        assert_eq!(b.subjects.len(), 1);
        let mut all = slice(A);
        all.retain_subjects_on(&[]);
        assert_eq!(all.subjects.len(), 2);
    }

    #[test]
    fn without_pod_isolation_the_directions_with_entries_are_isolated() {
        let text = B.replace("  podIsolation: [Ingress, Egress]\n", "");
        let merged = merge(&PolicyRef::new("shop", "web"), [&slice(&text)]);
        assert_eq!(merged.spec.policy_types, Some(vec![Direction::Ingress]));
    }

    #[test]
    fn bad_fields_are_refused_with_their_path() {
        for (from, to, want) in [
            ("cidr: 10.0.1.8,", "cidr: nonsense,", "spec.ingress[0].cidr"),
            ("{port: 80}", "{port: 0}", "spec.ingress[0].ports[0].port"),
            (
                "{port: 80}",
                "{endPort: 90}",
                "spec.ingress[0].ports[0].endPort",
            ),
            (
                "{port: 80}",
                "{port: 80, endPort: 70}",
                "70 is below port 80",
            ),
            (
                "hostIP: 192.168.0.9",
                "hostIP: x",
                "spec.podSelectorEndpoints[0].hostIP",
            ),
            (
                "podIP: 10.0.0.6",
                "podIP: y",
                "spec.podSelectorEndpoints[0].podIP",
            ),
            (
                "{port: 80}",
                "{port: 80, protocol: ICMP}",
                "spec.ingress[0].ports[0].protocol",
            ),
            (
                "name: web, namespace",
                "name: '', namespace",
                "spec.policyRef",
            ),
            ("kind: PolicyEndpoint", "kind: NetworkPolicy", "kind"),
            (
                "cidr: 10.0.1.8,",
                "cidr: 10.0.1.8, except: [10.0.2.0/24],",
                "not strictly inside",
            ),
            (
                "cidr: 10.0.1.8,",
                "action: Deny, cidr: 10.0.1.8,",
                "spec.ingress[0].action",
            ),
        ] {
            let text = B.replace(from, to);
            assert_ne!(text, B, "{from} not in fixture");
            let error = load_err(&text);
            assert!(error.contains(want), "{want}: {error}");
            assert!(error.starts_with("test doc 1"), "{error}");
        }
    }

    #[test]
    fn a_domain_name_entry_without_cidr_is_skipped() {
        let text = B.replace("- {cidr: 10.0.1.8, ", "- {domainName: example.com, ");
        assert!(slice(&text).ingress.is_empty());
    }
}
