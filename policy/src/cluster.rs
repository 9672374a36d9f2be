//! Cluster-wide policy tiers as the AWS ClusterNetworkPolicy kind
//! (`networking.k8s.aws/v1alpha1`) states them: a tier (Admin or Baseline), a
//! priority, the pods it applies to, and ordered rules that Accept, Deny or Pass.
//! The same model holds a policy read from ClusterPolicyEndpoints
//! (`cluster_endpoints`), which names its pods (`subject_pods`) in place of selectors.

use std::collections::BTreeSet;
use std::fmt;

use ipnet::IpNet;

use crate::model::{Direction, LabelSelector, Labels, Pod, PodRef, PolicyPort};

/// Where a cluster policy sits relative to namespace NetworkPolicies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
pub enum Tier {
    /// Before NetworkPolicies: Accept and Deny decide, Pass hands over to them.
    Admin,
    /// After NetworkPolicies, only for pods no NetworkPolicy selects in the direction.
    Baseline,
}

impl Tier {
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Admin => "Admin",
            Tier::Baseline => "Baseline",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a matching cluster rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
pub enum ClusterAction {
    Accept,
    Deny,
    Pass,
}

impl ClusterAction {
    /// Rank among rules of equal priority: Deny first, then Accept, then Pass (at a
    /// tie, Deny wins, as the incumbent chose).
    pub const fn tie_rank(self) -> u8 {
        match self {
            ClusterAction::Deny => 0,
            ClusterAction::Accept => 1,
            ClusterAction::Pass => 2,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ClusterAction::Accept => "Accept",
            ClusterAction::Deny => "Deny",
            ClusterAction::Pass => "Pass",
        }
    }
}

impl fmt::Display for ClusterAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Pods chosen by a namespace selector and a pod selector (both must match).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacedPods {
    pub namespace_selector: LabelSelector,
    pub pod_selector: LabelSelector,
}

impl NamespacedPods {
    /// Every pod of the namespaces `namespace_selector` picks.
    pub fn in_namespaces(namespace_selector: LabelSelector) -> Self {
        Self {
            namespace_selector,
            pod_selector: LabelSelector::everything(),
        }
    }

    pub fn matches(&self, pod: &Pod, namespace_labels: &Labels) -> bool {
        self.namespace_selector.matches(namespace_labels) && self.pod_selector.matches(&pod.labels)
    }
}

/// One entry of a cluster rule's `from` / `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterPeer {
    /// `namespaces` (pod selector empty) or `pods`.
    Pods(NamespacedPods),
    /// `networks` (egress only in the kind): CIDRs. Also the resolved addresses of a
    /// ClusterPolicyEndpoint, in both directions.
    Networks(Vec<IpNet>),
    /// `domainNames` (egress only): the datapath cannot match names.
    DomainNames(Vec<String>),
}

impl ClusterPeer {
    pub fn is_enforceable(&self) -> bool {
        !matches!(self, ClusterPeer::DomainNames(_))
    }
}

/// One ingress or egress rule. `ports` empty means every port of every protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterRule {
    /// The rule's optional `name`.
    pub name: Option<String>,
    pub action: ClusterAction,
    /// Never empty (the loader refuses an empty `from` / `to`).
    pub peers: Vec<ClusterPeer>,
    pub ports: Vec<PolicyPort>,
}

/// A ClusterNetworkPolicy (cluster-scoped: a name, no namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNetworkPolicy {
    pub name: String,
    pub tier: Tier,
    /// 0-1000; lower is tried first.
    pub priority: u32,
    pub subject: NamespacedPods,
    /// An explicit set of selected pods in place of `subject`: a policy read from
    /// ClusterPolicyEndpoints, whose controller already chose the pods
    /// (`podSelectorEndpoints`). `None` for a ClusterNetworkPolicy.
    pub subject_pods: Option<BTreeSet<PodRef>>,
    pub ingress: Vec<ClusterRule>,
    pub egress: Vec<ClusterRule>,
}

impl ClusterNetworkPolicy {
    /// Does the policy apply to `pod`, whose namespace has `namespace_labels`? By
    /// `subject_pods` when set, else by `subject`.
    pub fn selects(&self, pod: &Pod, namespace_labels: &Labels) -> bool {
        match &self.subject_pods {
            Some(pods) => pods.contains(&pod.key()),
            None => self.subject.matches(pod, namespace_labels),
        }
    }

    pub fn rules(&self, direction: Direction) -> &[ClusterRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// One rule of one cluster policy, with what orders and names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterRuleRef {
    pub tier: Tier,
    pub priority: u32,
    pub policy: String,
    pub direction: Direction,
    pub rule_index: usize,
    pub rule_name: Option<String>,
}

impl fmt::Display for ClusterRuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ClusterNetworkPolicy {} (priority {}) {} rule {}",
            self.tier, self.policy, self.priority, self.direction, self.rule_index
        )?;
        if let Some(name) = &self.rule_name {
            write!(f, " ({name:?})")?;
        }
        Ok(())
    }
}
