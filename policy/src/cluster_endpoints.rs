//! ClusterPolicyEndpoint input (`networking.k8s.aws/v1alpha1`, cluster-scoped: the
//! objects the EKS network policy controller derives from each ClusterNetworkPolicy,
//! with pods and peers already resolved): one object ("slice") as a model value, its
//! loader, and the merge of every slice of one cluster policy into ONE
//! `ClusterNetworkPolicy` named by the slices' `policyRef`, so cluster rule ids, flow
//! lines and `ebpf policies` name the ClusterNetworkPolicy behind them.
//!
//! The schema, as read in aws/aws-network-policy-agent
//! `api/v1alpha1/clusterpolicyendpoints_types.go` (and `policyendpoints_types.go` for
//! the shared `PodEndpoint` and `Port`) and in aws/amazon-network-policy-controller-k8s
//! `config/crd/bases/networking.k8s.aws_clusterpolicyendpoints.yaml` (CRD
//! `clusterpolicyendpoints.networking.k8s.aws`, scope Cluster, short name `cpe`):
//! - `spec.policyRef.name` (required): the ClusterNetworkPolicy the object was derived
//!   from.
//! - `spec.tier` (required): `Admin` or `Baseline`, copied from the policy.
//! - `spec.priority` (required, int32): copied from the policy, whose CRD bounds it to
//!   0-1000 (lower first). The incumbent adds 2000 to Baseline priorities
//!   (`pkg/fwruleprocessor/fw_rule_processor.go`, `BASELINE_TIER_PRIORITY_OFFSET`);
//!   here the tier orders them (`tiers`).
//! - `spec.subject` (required in the controller's CRD, absent from the agent's Go
//!   type): the policy's subject selectors. The incumbent ignores it and so does this
//!   loader: the pods are the resolved `podSelectorEndpoints`.
//! - `spec.podSelectorEndpoints`: the selected pods of every namespace, each
//!   `{podIP, hostIP, name, namespace}` (all four required by the CRD). The incumbent
//!   (`controllers/clusterpolicyendpoints_controller.go`,
//!   `deriveClusterPolicyTargetPods`) enforces those whose `hostIP` is its node.
//! - `spec.ingress` / `spec.egress`: lists of `{cidr, ports, domainName, action}`;
//!   `action` (required) is the rule's `Accept`, `Deny` or `Pass`; `cidr` is a CIDR or
//!   a bare address (a pod peer); `domainName` is an egress FQDN peer (Accept and Pass
//!   only: the controller drops Deny domain rules); `ports` as in PolicyEndpoints
//!   (`protocol` default TCP, `port` absent = every port of the protocol, `endPort`
//!   a range), an empty list every port. There is no `except`: the controller
//!   resolves `networks` CIDRs as they are written.
//! - One entry per (peer, action, ports), deduplicated
//!   (`pkg/resolvers/clusternetworkpolicy_resolver.go`, `mergeClusterEndpointInfo`);
//!   the rules' order and names are not carried: every entry of an object has the
//!   object's priority. The controller splits a large policy into several objects
//!   (`pkg/policyendpoints/clusterpolicyendpoints_chunking.go`), all with the same
//!   `policyRef`, tier and priority; the incumbent reads every object of a policy
//!   together (`getClusterPolicyEndpointsOfParentCNP`).
//!
//! The merge: the pods of every slice (host-network pods, `podIP == hostIP`, left
//! out: they have no interface of their own) are the policy's `subject_pods`; entries
//! are grouped into one rule per (action, port list), with their CIDRs as one
//! `networks` peer and their domain names as one `domainNames` peer, in a canonical
//! order so that equal inputs give equal policies. Rule order is lost in the objects,
//! but it never decided anything: at equal priority Deny comes before Accept before
//! Pass (`ClusterAction::tie_rank`), and rules of equal action agree. Domain names are
//! kept as the `tiers` module treats them for the ClusterNetworkPolicy kind (an Accept
//! leaves them out, a Pass fails closed, reported as a `TierIssue`), where the
//! incumbent skips every entry without a CIDR.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use crate::cluster::{ClusterAction, ClusterNetworkPolicy, ClusterPeer, ClusterRule, Tier};
use crate::cluster_load::MAX_PRIORITY;
use crate::error::LoadError;
use crate::model::{Direction, PodRef, PolicyPort};
use crate::slices::{
    Object, Place, PodEndpointManifest, PortKey, PortManifest, SubjectPod, network,
    own_interface_pods, port_list, port_of, ports, read_object, retain_subjects_on, subjects,
};

/// The API version of ClusterPolicyEndpoint objects.
pub const CLUSTER_POLICY_ENDPOINT_API_VERSION: &str = "networking.k8s.aws/v1alpha1";
/// Their kind.
pub const CLUSTER_POLICY_ENDPOINT_KIND: &str = "ClusterPolicyEndpoint";

/// The peer of one entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterEndpointPeer {
    /// `cidr`: a CIDR, or a pod's address as a host prefix.
    Cidr(IpNet),
    /// `domainName` (egress only): an FQDN, `*.` wildcard allowed.
    DomainName(String),
}

/// One entry of `spec.ingress` / `spec.egress`: a peer, the ports (empty: every
/// port) and what the rule it came from does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterEndpointEntry {
    pub action: ClusterAction,
    pub peer: ClusterEndpointPeer,
    pub ports: Vec<PolicyPort>,
}

/// One ClusterPolicyEndpoint object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPolicyEndpoint {
    /// The object's own name (`<policy>-<suffix>`); cluster-scoped, no namespace.
    pub name: String,
    /// The ClusterNetworkPolicy it was derived from (`spec.policyRef.name`).
    pub policy: String,
    pub tier: Tier,
    pub priority: u32,
    pub subjects: Vec<SubjectPod>,
    pub ingress: Vec<ClusterEndpointEntry>,
    pub egress: Vec<ClusterEndpointEntry>,
}

impl ClusterPolicyEndpoint {
    /// Keep only the selected pods hosted on one of `node_addresses` (what one node
    /// enforces); an empty `node_addresses` keeps them all.
    pub fn retain_subjects_on(&mut self, node_addresses: &[IpAddr]) {
        retain_subjects_on(&mut self.subjects, node_addresses);
    }

    fn entries(&self, direction: Direction) -> &[ClusterEndpointEntry] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// The one cluster policy the slices of `policy` stand for (see the module doc);
/// slices of other policies are ignored. Tier and priority are those of the first
/// slice (the controller writes the same in every slice of a policy; while it
/// rewrites them one by one after a change of priority, the first one read wins
/// until the last is rewritten).
///
/// # Examples
/// ```
/// let value = serde_yaml::from_str(r#"
/// apiVersion: networking.k8s.aws/v1alpha1
/// kind: ClusterPolicyEndpoint
/// metadata: {name: deny-metadata-x7k2p}
/// spec:
///   policyRef: {name: deny-metadata}
///   tier: Admin
///   priority: 10
///   podSelectorEndpoints: [{podIP: 10.0.0.5, hostIP: 192.168.0.1, name: web-1, namespace: shop}]
///   egress: [{cidr: 169.254.169.254/32, action: Deny}]
/// "#).unwrap();
/// let slice = policy::load_cluster_policy_endpoint("api", value).unwrap();
/// let merged = policy::cluster_endpoints::merge("deny-metadata", [&slice]).unwrap();
/// assert_eq!(merged.name, "deny-metadata");
/// assert_eq!(merged.egress[0].action, policy::ClusterAction::Deny);
/// ```
pub fn merge<'a>(
    policy: &str,
    slices: impl IntoIterator<Item = &'a ClusterPolicyEndpoint>,
) -> Option<ClusterNetworkPolicy> {
    let slices: Vec<&ClusterPolicyEndpoint> =
        slices.into_iter().filter(|s| s.policy == policy).collect();
    let first = slices.first()?;
    let subject_pods: BTreeSet<PodRef> =
        own_interface_pods(slices.iter().flat_map(|s| &s.subjects))
            .cloned()
            .collect();
    let rules = |direction: Direction| -> Vec<ClusterRule> {
        // (action, port list) -> the peers it applies to.
        type Peers = (BTreeSet<IpNet>, BTreeSet<String>);
        let mut groups: BTreeMap<(u8, ClusterAction, Vec<PortKey>), Peers> = BTreeMap::new();
        for slice in &slices {
            for entry in slice.entries(direction) {
                let group = groups
                    .entry((
                        entry.action.tie_rank(),
                        entry.action,
                        port_list(&entry.ports),
                    ))
                    .or_default();
                match &entry.peer {
                    ClusterEndpointPeer::Cidr(net) => {
                        group.0.insert(*net);
                    }
                    ClusterEndpointPeer::DomainName(name) => {
                        group.1.insert(name.clone());
                    }
                }
            }
        }
        groups
            .into_iter()
            .map(|((_, action, ports), (nets, names))| {
                let mut peers = Vec::new();
                if !nets.is_empty() {
                    peers.push(ClusterPeer::Networks(nets.into_iter().collect()));
                }
                if !names.is_empty() {
                    peers.push(ClusterPeer::DomainNames(names.into_iter().collect()));
                }
                ClusterRule {
                    name: None,
                    action,
                    peers,
                    ports: ports.into_iter().map(port_of).collect(),
                }
            })
            .collect()
    };
    Some(ClusterNetworkPolicy {
        name: policy.to_owned(),
        tier: first.tier,
        priority: first.priority,
        subject: crate::cluster::NamespacedPods::default(),
        subject_pods: Some(subject_pods),
        ingress: rules(Direction::Ingress),
        egress: rules(Direction::Egress),
    })
}

// --- loading -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecManifest {
    policy_ref: PolicyRefManifest,
    tier: Tier,
    priority: i64,
    #[serde(default)]
    pod_selector_endpoints: Option<Vec<PodEndpointManifest>>,
    #[serde(default)]
    ingress: Option<Vec<EntryManifest>>,
    #[serde(default)]
    egress: Option<Vec<EntryManifest>>,
}

#[derive(Debug, Deserialize)]
struct PolicyRefManifest {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryManifest {
    action: ClusterAction,
    #[serde(default)]
    cidr: Option<String>,
    #[serde(default)]
    domain_name: Option<String>,
    #[serde(default)]
    ports: Option<Vec<PortManifest>>,
    /// Not in the schema; refused rather than ignored if a controller ever sends it.
    #[serde(default)]
    except: Option<serde_yaml::Value>,
}

/// Read one ClusterPolicyEndpoint object (as the API server serves it, or as YAML).
/// `source_name` names it in errors.
///
/// # Errors
/// A missing or invalid field, named by its path (`spec.egress[2].cidr`,
/// `spec.tier`), a namespace (the kind is cluster-scoped), or an object of another
/// kind.
///
/// # Examples
/// ```
/// let value = serde_yaml::from_str(r#"
/// kind: ClusterPolicyEndpoint
/// metadata: {name: p-abcde}
/// spec: {policyRef: {name: p}, tier: Baseline, priority: 2000}
/// "#).unwrap();
/// let error = policy::load_cluster_policy_endpoint("api", value).unwrap_err();
/// assert!(error.to_string().contains("spec.priority"));
/// ```
pub fn load_cluster_policy_endpoint(
    source_name: &str,
    value: serde_yaml::Value,
) -> Result<ClusterPolicyEndpoint, LoadError> {
    let place = Place { source_name };
    let object: Object<SpecManifest> = read_object(
        &place,
        value,
        CLUSTER_POLICY_ENDPOINT_API_VERSION,
        CLUSTER_POLICY_ENDPOINT_KIND,
    )?;
    if object.namespace.is_some_and(|n| !n.is_empty()) {
        return Err(place.field(
            "metadata.namespace",
            "a ClusterPolicyEndpoint is cluster-scoped and takes no namespace",
        ));
    }
    let spec = object.spec.ok_or_else(|| place.field("spec", "missing"))?;
    if spec.policy_ref.name.is_empty() {
        return Err(place.field("spec.policyRef.name", "missing"));
    }
    let priority = u32::try_from(spec.priority)
        .ok()
        .filter(|p| *p <= MAX_PRIORITY)
        .ok_or_else(|| {
            place.field(
                "spec.priority",
                format!("{} is not a priority (0-{MAX_PRIORITY})", spec.priority),
            )
        })?;
    let subjects = subjects(&place, spec.pod_selector_endpoints)?;
    Ok(ClusterPolicyEndpoint {
        name: object.name,
        policy: spec.policy_ref.name,
        tier: spec.tier,
        priority,
        subjects,
        ingress: entries(&place, Direction::Ingress, spec.ingress.unwrap_or_default())?,
        egress: entries(&place, Direction::Egress, spec.egress.unwrap_or_default())?,
    })
}

fn entries(
    place: &Place<'_>,
    direction: Direction,
    list: Vec<EntryManifest>,
) -> Result<Vec<ClusterEndpointEntry>, LoadError> {
    let path = match direction {
        Direction::Ingress => "spec.ingress",
        Direction::Egress => "spec.egress",
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, e) in list.into_iter().enumerate() {
        let at = format!("{path}[{i}]");
        if e.except.as_ref().is_some_and(|x| !x.is_null()) {
            return Err(place.field(
                format!("{at}.except"),
                "not part of the ClusterPolicyEndpoint schema; refused rather than ignored",
            ));
        }
        let cidr = e.cidr.filter(|c| !c.is_empty());
        let domain = e.domain_name.filter(|d| !d.is_empty());
        let peer = match (cidr, domain) {
            (Some(text), None) => ClusterEndpointPeer::Cidr(network(&text).ok_or_else(|| {
                place.field(
                    format!("{at}.cidr"),
                    format!("{text:?} is neither a CIDR nor an address"),
                )
            })?),
            (None, Some(name)) if direction == Direction::Egress => {
                ClusterEndpointPeer::DomainName(name)
            }
            (None, Some(_)) => {
                return Err(place.field(
                    format!("{at}.domainName"),
                    "domain names are egress peers only",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(place.field(at, "cidr and domainName are mutually exclusive"));
            }
            (None, None) => return Err(place.field(at, "needs a cidr or a domainName")),
        };
        out.push(ClusterEndpointEntry {
            action: e.action,
            peer,
            ports: ports(place, &at, e.ports)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn slice(yaml: &str) -> ClusterPolicyEndpoint {
        load_cluster_policy_endpoint("test", serde_yaml::from_str(yaml).expect("YAML"))
            .expect("loads")
    }

    fn load_err(yaml: &str) -> String {
        load_cluster_policy_endpoint("test", serde_yaml::from_str(yaml).expect("YAML"))
            .expect_err("refused")
            .to_string()
    }

    const A: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterPolicyEndpoint
metadata: {name: guard-aaaaa}
spec:
  policyRef: {name: guard}
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  podSelectorEndpoints:
    - {podIP: 10.0.0.5, hostIP: 192.168.0.1, name: web-1, namespace: shop}
    - {podIP: 192.168.0.2, hostIP: 192.168.0.2, name: hostnet, namespace: kube-system}
  ingress:
    - {cidr: 10.0.1.7, action: Accept, ports: [{port: 80, protocol: TCP}]}
    - {cidr: 10.0.0.0/8, action: Deny}
  egress:
    - {cidr: 169.254.169.254/32, action: Deny}
    - {domainName: "*.example.com", action: Accept, ports: [{port: 443}]}
"#;

    const B: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterPolicyEndpoint
metadata: {name: guard-bbbbb}
spec:
  policyRef: {name: guard}
  tier: Admin
  priority: 10
  podSelectorEndpoints:
    - {podIP: 10.0.3.6, hostIP: 192.168.0.9, name: db-0, namespace: db}
  ingress:
    - {cidr: 10.0.1.8, action: Accept, ports: [{port: 80}]}
    - {cidr: 10.0.2.0/24, action: Pass, ports: [{protocol: UDP}]}
"#;

    #[test]
    fn slices_of_one_policy_merge_into_one_cluster_policy_named_by_policy_ref() {
        let (a, b) = (slice(A), slice(B));
        let merged = merge("guard", [&a, &b]).expect("a policy");
        assert_eq!(merged.name, "guard");
        assert_eq!((merged.tier, merged.priority), (Tier::Admin, 10));
        assert_eq!(
            merged.subject_pods,
            Some([PodRef::new("db", "db-0"), PodRef::new("shop", "web-1")].into()),
            "pods of every namespace by name, the host-network pod left out"
        );
        // Deny first, then Accept, then Pass; one rule per (action, ports).
        let actions: Vec<ClusterAction> = merged.ingress.iter().map(|r| r.action).collect();
        assert_eq!(
            actions,
            [
                ClusterAction::Deny,
                ClusterAction::Accept,
                ClusterAction::Pass
            ]
        );
        let accept = &merged.ingress[1];
        assert_eq!(
            accept.peers,
            [ClusterPeer::Networks(vec![
                "10.0.1.7/32".parse().unwrap(),
                "10.0.1.8/32".parse().unwrap()
            ])],
            "TCP/80 peers of both slices share a rule"
        );
        assert_eq!(merged.ingress[0].ports, [], "every port");
        assert_eq!(
            merged.ingress[2].ports,
            [PolicyPort {
                protocol: Protocol::Udp,
                port: None,
                end_port: None
            }]
        );
        assert_eq!(merged.egress.len(), 2);
        assert_eq!(
            merged.egress[1].peers,
            [ClusterPeer::DomainNames(vec!["*.example.com".into()])]
        );
        // Order of slices and entries does not matter.
        assert_eq!(merge("guard", [&b, &a]), Some(merged.clone()));
        let mut shuffled = a.clone();
        shuffled.ingress.reverse();
        assert_eq!(merge("guard", [&b, &shuffled]), Some(merged));
        assert_eq!(merge("other", [&a, &b]), None, "no slice of that policy");
    }

    #[test]
    fn merged_policy_selects_its_pods_by_name_whatever_their_labels() {
        let merged = merge("guard", [&slice(A)]).expect("a policy");
        let pod = |namespace: &str, name: &str| crate::model::Pod {
            namespace: namespace.into(),
            name: name.into(),
            labels: Default::default(),
            ips: Vec::new(),
            node_name: None,
            host_network: false,
            phase: crate::model::PodPhase::Running,
            ports: Vec::new(),
            interface: None,
        };
        let labels = Default::default();
        assert!(merged.selects(&pod("shop", "web-1"), &labels));
        assert!(!merged.selects(&pod("shop", "web-2"), &labels));
        assert!(!merged.selects(&pod("other", "web-1"), &labels));
    }

    #[test]
    fn subjects_on_other_nodes_are_dropped_when_the_node_is_known() {
        let mut b = slice(B);
        b.retain_subjects_on(&["192.168.0.1".parse().unwrap()]);
        assert!(b.subjects.is_empty());
        let mut b = slice(B);
        b.retain_subjects_on(&["192.168.0.9".parse().unwrap()]);
        assert_eq!(b.subjects.len(), 1);
        let mut all = slice(A);
        all.retain_subjects_on(&[]);
        assert_eq!(all.subjects.len(), 2);
    }

    #[test]
    fn bad_fields_are_refused_with_their_path() {
        for (from, to, want) in [
            ("cidr: 10.0.1.8,", "cidr: nonsense,", "spec.ingress[0].cidr"),
            ("action: Accept", "action: Allow", "spec.ingress[0].action"),
            ("tier: Admin", "tier: Developer", "spec.tier"),
            ("priority: 10", "priority: 1001", "spec.priority"),
            ("priority: 10", "priority: -1", "spec.priority"),
            ("  priority: 10\n", "", "spec: missing field `priority`"),
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
                "{port: 80}",
                "{port: 80, protocol: ICMP}",
                "spec.ingress[0].ports[0].protocol",
            ),
            (
                "hostIP: 192.168.0.9",
                "hostIP: x",
                "spec.podSelectorEndpoints[0].hostIP",
            ),
            (
                "podIP: 10.0.3.6",
                "podIP: y",
                "spec.podSelectorEndpoints[0].podIP",
            ),
            ("{name: guard}", "{name: ''}", "spec.policyRef.name"),
            (
                "{name: guard-bbbbb}",
                "{name: guard-bbbbb, namespace: shop}",
                "metadata.namespace",
            ),
            ("{name: guard-bbbbb}", "{}", "metadata.name"),
            (
                "kind: ClusterPolicyEndpoint",
                "kind: PolicyEndpoint",
                "kind",
            ),
            (
                "cidr: 10.0.1.8,",
                "cidr: 10.0.1.8, except: [10.0.1.8/32],",
                "spec.ingress[0].except",
            ),
            (
                "cidr: 10.0.1.8,",
                "domainName: example.com,",
                "spec.ingress[0].domainName",
            ),
            ("cidr: 10.0.1.8,", "", "spec.ingress[0]: needs a cidr"),
        ] {
            let text = B.replace(from, to);
            assert_ne!(text, B, "{from} not in fixture");
            let error = load_err(&text);
            assert!(error.contains(want), "{want}: {error}");
            assert!(error.starts_with("test doc 1"), "{error}");
        }
    }

    #[test]
    fn a_cidr_with_host_bits_is_read_as_its_network() {
        let text = B.replace("cidr: 10.0.2.0/24", "cidr: 10.0.2.9/24");
        assert_eq!(
            slice(&text).ingress[1].peer,
            ClusterEndpointPeer::Cidr("10.0.2.0/24".parse().unwrap())
        );
    }

    /// The cluster of the equivalence test: web-1 (shop, node-1) and two peers.
    const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop}
spec: {nodeName: node-1}
status: {phase: Running, podIP: 10.0.0.5}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: team-a}
spec: {nodeName: node-2}
status: {phase: Running, podIP: 10.0.1.7}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: team-b}
spec: {nodeName: node-2}
status: {phase: Running, podIP: 10.0.2.9}
"#;

    /// A ClusterNetworkPolicy over PODS. At equal priority Deny comes first, then
    /// Accept, then Pass; a Pass skips the later Admin policy `catch-all`, so each of
    /// the three rules decides some probes.
    const CNP: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: shop}}}
  ingress:
    - {action: Pass, from: [{namespaces: {matchLabels: {team: a}}}]}
    - {action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {}}}], ports: [{portNumber: {port: 80}}]}
    - {action: Accept, from: [{namespaces: {}}], ports: [{portNumber: {port: 443}}]}
  egress:
    - {action: Accept, to: [{networks: [10.0.0.0/8]}], ports: [{portNumber: {protocol: UDP, port: 53}}]}
    - {action: Deny, to: [{networks: [0.0.0.0/0]}]}
"#;

    /// A later Admin policy, read as the kind in both states.
    const CATCH_ALL: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: catch-all}
spec:
  tier: Admin
  priority: 20
  subject: {namespaces: {}}
  ingress:
    - {action: Deny, from: [{namespaces: {}}]}
"#;

    /// CNP as the controller resolves it (entries in no particular order).
    const CPE: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterPolicyEndpoint
metadata: {name: guard-x1y2z}
spec:
  policyRef: {name: guard}
  tier: Admin
  priority: 10
  podSelectorEndpoints: [{podIP: 10.0.0.5, hostIP: 192.168.0.1, name: web-1, namespace: shop}]
  ingress:
    - {cidr: 10.0.2.9, action: Accept, ports: [{port: 443, protocol: TCP}]}
    - {cidr: 10.0.1.7, action: Pass}
    - {cidr: 10.0.0.5, action: Deny, ports: [{port: 80, protocol: TCP}]}
    - {cidr: 10.0.1.7, action: Deny, ports: [{port: 80, protocol: TCP}]}
    - {cidr: 10.0.2.9, action: Deny, ports: [{port: 80, protocol: TCP}]}
    - {cidr: 10.0.0.5, action: Accept, ports: [{port: 443, protocol: TCP}]}
    - {cidr: 10.0.1.7, action: Accept, ports: [{port: 443, protocol: TCP}]}
  egress:
    - {cidr: 0.0.0.0/0, action: Deny}
    - {cidr: 10.0.0.0/8, action: Accept, ports: [{port: 53, protocol: UDP}]}
"#;

    #[test]
    fn a_policy_read_from_its_objects_decides_as_the_policy_itself() {
        use crate::{EnforcingMode, MapModel, Planner, ResolveOptions, Resolver, load_str};
        let options = ResolveOptions {
            node_name: "node-1".into(),
            node_addresses: vec![],
            mode: EnforcingMode::Standard,
        };
        let maps = |state: &crate::ClusterState| {
            let ops = Planner::new().plan(&Resolver::new().resolve(state, &options));
            let mut maps = MapModel::new();
            maps.apply(&ops).expect("ops apply");
            maps
        };
        let direct = load_str("cnp.yaml", &format!("{PODS}---{CNP}---{CATCH_ALL}")).expect("loads");
        let mut via_objects =
            load_str("pods.yaml", &format!("{PODS}---{CATCH_ALL}")).expect("loads");
        via_objects.upsert_cluster_policy(merge("guard", [&slice(CPE)]).expect("a policy"));
        let (direct_maps, object_maps) = (maps(&direct), maps(&via_objects));
        let web = PodRef::new("shop", "web-1");
        let mut checked = 0;
        let mut denied = 0;
        for direction in Direction::BOTH {
            for peer in ["10.0.0.5", "10.0.1.7", "10.0.2.9", "10.9.9.9", "8.8.8.8"] {
                for protocol in [Protocol::Tcp, Protocol::Udp] {
                    for port in [53, 80, 443] {
                        let peer: IpAddr = peer.parse().unwrap();
                        let want =
                            direct_maps.decide(&web, direction, peer, protocol.number(), port);
                        let got =
                            object_maps.decide(&web, direction, peer, protocol.number(), port);
                        assert_eq!(
                            got.is_accept(),
                            want.is_accept(),
                            "{direction:?} {peer} {protocol:?}/{port}"
                        );
                        checked += 1;
                        denied += usize::from(!want.is_accept());
                    }
                }
            }
        }
        assert_eq!(checked, 60);
        assert!(
            denied > 0 && denied < checked,
            "the probes see both verdicts ({denied} of {checked} denied)"
        );
        // Each rule decides: Pass lets 10.0.1.7 past catch-all, Deny and Accept win
        // on their ports.
        let ingress = |peer: &str, protocol: Protocol, port| {
            object_maps
                .decide(
                    &web,
                    Direction::Ingress,
                    peer.parse().unwrap(),
                    protocol.number(),
                    port,
                )
                .is_accept()
        };
        assert!(ingress("10.0.1.7", Protocol::Udp, 53), "passed");
        assert!(
            !ingress("10.0.2.9", Protocol::Udp, 53),
            "caught by catch-all"
        );
        assert!(!ingress("10.0.1.7", Protocol::Tcp, 80), "denied");
        assert!(ingress("10.0.2.9", Protocol::Tcp, 443), "accepted");
    }
}
