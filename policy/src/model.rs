//! The cluster as the resolver sees it: namespaces, pods and NetworkPolicies
//! (networking.k8s.io/v1, the full spec), already validated by `load` or built by
//! the agent, plus label-selector matching.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// The label every namespace carries automatically (Kubernetes >= 1.21).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The pod annotation naming the host-side interface in the local lab.
pub const INTERFACE_ANNOTATION: &str = "netpol-agent.dev/interface";

/// A namespaced object's identity (`namespace/name`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A pod, by namespace and name.
pub type PodRef = ObjectRef;
/// A NetworkPolicy, by namespace and name.
pub type PolicyRef = ObjectRef;

/// Traffic direction seen from the selected pod; also a NetworkPolicy `policyType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// The ABI byte (`DIRECTION_INGRESS` / `DIRECTION_EGRESS`).
    pub const fn as_u8(self) -> u8 {
        match self {
            Direction::Ingress => datapath_common::DIRECTION_INGRESS,
            Direction::Egress => datapath_common::DIRECTION_EGRESS,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The L4 protocols a NetworkPolicy port names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// The name as manifests and flow lines write it: `TCP`, `UDP`, `SCTP`.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// The IP protocol number the datapath compares.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => datapath_common::PROTO_TCP,
            Protocol::Udp => datapath_common::PROTO_UDP,
            Protocol::Sctp => datapath_common::PROTO_SCTP,
        }
    }
}

/// A label selector requirement operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// A label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub match_labels: Labels,
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector `{}`, which selects every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector of `matchLabels` only.
    pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            match_labels: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// Do all `matchLabels` pairs and all `matchExpressions` hold for `labels`?
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

/// A pod's lifecycle phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub enum PodPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// A declared container port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

/// A pod as far as network policy cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// Addresses from `status.podIPs` (or `status.podIP`), at most one per family used.
    pub ips: Vec<IpAddr>,
    pub node_name: Option<String>,
    pub host_network: bool,
    pub phase: PodPhase,
    pub ports: Vec<ContainerPort>,
    /// Host-side interface from the `netpol-agent.dev/interface` annotation (lab only).
    pub interface: Option<String>,
}

impl Pod {
    pub fn key(&self) -> PodRef {
        ObjectRef::new(self.namespace.clone(), self.name.clone())
    }

    /// May this pod's addresses stand in a peer set? Not for host-network pods, pods
    /// that finished (their addresses get reused) or pods without an address.
    pub fn in_peer_sets(&self) -> bool {
        !self.host_network
            && !matches!(self.phase, PodPhase::Succeeded | PodPhase::Failed)
            && !self.ips.is_empty()
    }

    /// The number of the container port named `name` with `protocol`, if declared.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.protocol == protocol && p.name.as_deref() == Some(name))
            .map(|p| p.port)
    }
}

/// A namespace and its labels (without the automatic name label, added on lookup).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

/// A CIDR with the sub-ranges it excludes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpBlock {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

/// One entry of `from` / `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Pods chosen by selectors. With only `pod_selector`, pods of the policy's own
    /// namespace; with only `namespace_selector`, every pod of the selected namespaces;
    /// with both, pods matching both.
    Pods {
        pod_selector: Option<LabelSelector>,
        namespace_selector: Option<LabelSelector>,
    },
    IpBlock(IpBlock),
}

/// A port given by number or by container-port name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// One entry of `ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyPort {
    pub protocol: Protocol,
    /// `None` means every port of `protocol`.
    pub port: Option<PortRef>,
    /// Inclusive end of a numeric range starting at `port`.
    pub end_port: Option<u16>,
}

/// One ingress or egress rule. An empty `peers` means every peer; an empty `ports`
/// means every port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyRule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PolicyPort>,
}

/// `spec` of a NetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySpec {
    /// Selects the policy's pods, unless `subject_pods` is set.
    pub pod_selector: LabelSelector,
    /// An explicit set of selected pods, by name within the policy's namespace, in
    /// place of `pod_selector`: a policy read from PolicyEndpoints, whose controller
    /// already chose the pods (`podSelectorEndpoints`). `None` for a NetworkPolicy.
    pub subject_pods: Option<BTreeSet<String>>,
    pub ingress: Vec<PolicyRule>,
    pub egress: Vec<PolicyRule>,
    /// As written; `None` takes the Kubernetes default (see `affects`).
    pub policy_types: Option<Vec<Direction>>,
    /// Audit mode ([`AUDIT_KEY`] annotation `"true"` on the policy): what the policy
    /// would deny passes and is reported as AUDIT.
    pub audit: bool,
}

/// Audit mode's switch: as an annotation on a NetworkPolicy, or as a label on a
/// Namespace (every policy of the namespace), with the value `"true"`.
pub const AUDIT_KEY: &str = "netpol-agent.dev/audit";

/// A networking.k8s.io/v1 NetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub spec: PolicySpec,
}

impl NetworkPolicy {
    pub fn key(&self) -> PolicyRef {
        ObjectRef::new(self.namespace.clone(), self.name.clone())
    }

    /// Does the policy isolate its pods in `direction`? Without `policyTypes`, every
    /// policy affects ingress and a policy with egress rules also affects egress.
    pub fn affects(&self, direction: Direction) -> bool {
        match &self.spec.policy_types {
            Some(types) => types.contains(&direction),
            None => match direction {
                Direction::Ingress => true,
                Direction::Egress => !self.spec.egress.is_empty(),
            },
        }
    }

    /// Does the policy select `pod`? Only pods of its own namespace, chosen by
    /// `spec.subject_pods` when set, else by `spec.pod_selector`.
    pub fn selects(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace
            && match &self.spec.subject_pods {
                Some(names) => names.contains(&pod.name),
                None => self.spec.pod_selector.matches(&pod.labels),
            }
    }

    pub fn rules(&self, direction: Direction) -> &[PolicyRule] {
        match direction {
            Direction::Ingress => &self.spec.ingress,
            Direction::Egress => &self.spec.egress,
        }
    }
}

/// Everything the resolver reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub namespaces: BTreeMap<String, Namespace>,
    pub pods: BTreeMap<PodRef, Pod>,
    pub policies: BTreeMap<PolicyRef, NetworkPolicy>,
    /// Cluster-wide policies (Admin and Baseline tiers), by name.
    pub cluster_policies: BTreeMap<String, crate::cluster::ClusterNetworkPolicy>,
    /// The source's revision of this state, for "applied at least this" checks: the
    /// policy directory's newest modification time in nanoseconds; 0 when the source
    /// has none.
    pub revision: u64,
}

impl ClusterState {
    /// Adds every object of `other`, or none: an object `self` already holds is a
    /// duplicate, named in the error.
    ///
    /// # Errors
    /// The first duplicate, as "Kind name".
    pub fn merge_from(&mut self, other: &ClusterState) -> Result<(), String> {
        if let Some(name) = other
            .namespaces
            .keys()
            .find(|k| self.namespaces.contains_key(*k))
        {
            return Err(format!("Namespace {name}"));
        }
        if let Some(pod) = other.pods.keys().find(|k| self.pods.contains_key(*k)) {
            return Err(format!("Pod {pod}"));
        }
        if let Some(policy) = other
            .policies
            .keys()
            .find(|k| self.policies.contains_key(*k))
        {
            return Err(format!("NetworkPolicy {policy}"));
        }
        if let Some(name) = other
            .cluster_policies
            .keys()
            .find(|k| self.cluster_policies.contains_key(*k))
        {
            return Err(format!("ClusterNetworkPolicy {name}"));
        }
        for namespace in other.namespaces.values() {
            self.upsert_namespace(namespace.clone());
        }
        for pod in other.pods.values() {
            self.upsert_pod(pod.clone());
        }
        for policy in other.policies.values() {
            self.upsert_policy(policy.clone());
        }
        for policy in other.cluster_policies.values() {
            self.upsert_cluster_policy(policy.clone());
        }
        Ok(())
    }

    /// A namespace's labels including `kubernetes.io/metadata.name`. A namespace that
    /// was never declared still has its automatic label.
    pub fn namespace_labels(&self, namespace: &str) -> Labels {
        let mut labels = self
            .namespaces
            .get(namespace)
            .map(|n| n.labels.clone())
            .unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned());
        labels
    }

    pub fn upsert_namespace(&mut self, namespace: Namespace) {
        self.namespaces.insert(namespace.name.clone(), namespace);
    }

    pub fn upsert_pod(&mut self, pod: Pod) {
        self.pods.insert(pod.key(), pod);
    }

    pub fn remove_pod(&mut self, pod: &PodRef) -> Option<Pod> {
        self.pods.remove(pod)
    }

    pub fn upsert_policy(&mut self, policy: NetworkPolicy) {
        self.policies.insert(policy.key(), policy);
    }

    pub fn remove_policy(&mut self, policy: &PolicyRef) -> Option<NetworkPolicy> {
        self.policies.remove(policy)
    }

    pub fn upsert_cluster_policy(&mut self, policy: crate::cluster::ClusterNetworkPolicy) {
        self.cluster_policies.insert(policy.name.clone(), policy);
    }

    pub fn remove_cluster_policy(
        &mut self,
        name: &str,
    ) -> Option<crate::cluster::ClusterNetworkPolicy> {
        self.cluster_policies.remove(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn requirement_operators_follow_kubernetes() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let req = |key: &str, operator, values: &[&str]| Requirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        };
        assert!(req("app", Operator::In, &["web", "db"]).matches(&l));
        assert!(!req("app", Operator::In, &["db"]).matches(&l));
        assert!(!req("missing", Operator::In, &["web"]).matches(&l));
        assert!(req("app", Operator::NotIn, &["db"]).matches(&l));
        assert!(req("missing", Operator::NotIn, &["db"]).matches(&l));
        assert!(!req("app", Operator::NotIn, &["web"]).matches(&l));
        assert!(req("tier", Operator::Exists, &[]).matches(&l));
        assert!(!req("tier", Operator::DoesNotExist, &[]).matches(&l));
        assert!(req("other", Operator::DoesNotExist, &[]).matches(&l));
    }

    #[test]
    fn empty_selector_matches_everything_and_match_labels_need_all_pairs() {
        assert!(LabelSelector::everything().matches(&Labels::new()));
        let sel = LabelSelector::labels([("app", "web"), ("tier", "front")]);
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "front"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("app", "web")])));
    }

    #[test]
    fn undeclared_namespace_still_has_its_name_label() {
        let state = ClusterState::default();
        assert_eq!(
            state
                .namespace_labels("x")
                .get(NAMESPACE_NAME_LABEL)
                .map(String::as_str),
            Some("x")
        );
    }

    #[test]
    fn policy_types_default_to_ingress_plus_egress_when_egress_rules_exist() {
        let mut p = NetworkPolicy {
            namespace: "x".into(),
            name: "p".into(),
            spec: PolicySpec::default(),
        };
        assert!(p.affects(Direction::Ingress));
        assert!(!p.affects(Direction::Egress));
        p.spec.egress.push(PolicyRule::default());
        assert!(p.affects(Direction::Egress));
        p.spec.policy_types = Some(vec![Direction::Egress]);
        assert!(!p.affects(Direction::Ingress));
    }
}
