//! From a `ClusterState` to what this node's datapath must hold: for every local pod
//! and direction, its state, its LPM entries (prefix -> rules, each rule tagged with
//! its policy id) and the policies that isolate it, plus the policy-id table.
//!
//! A `Resolver` keeps what it computed: on the next call it compares the new cluster
//! state with the previous one and recomputes only the local pods a change can
//! affect (pods in a namespace whose policies changed, changed local pods, and local
//! pods whose policies' peer sets may hold a changed pod before or after the change).
//! A namespace change or new options recompute everything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use datapath_common::{
    MAX_RULES_PER_LIST, Rule, STATE_DEFAULT_ALLOW, STATE_DEFAULT_DENY, STATE_POLICIES_APPLIED,
    STATE_POLICIES_AUDIT,
};
use ipnet::IpNet;

use crate::cluster::ClusterNetworkPolicy;
use crate::compile::{ClusterIndex, CompiledCache, PodPass, patch_compiled, policy_may_involve};
use crate::ids::{NODE_LOCAL_POLICY_ID, PolicyIdAllocator, PolicyTable, RuleRef};
use crate::model::{
    ClusterState, Direction, Namespace, NetworkPolicy, Pod, PodPhase, PodRef, PolicyRef,
};
use crate::prefixes::RuleOrder;
use crate::tiers::{Tiers, resolve_tiers};

/// `NETWORK_POLICY_ENFORCING_MODE` as the EKS guide describes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EnforcingMode {
    /// A pod no policy selects is default-allow; a new pod is default-allow until its
    /// policies are programmed.
    #[default]
    Standard,
    /// Every pod starts default-deny and stays deny until policies allow (only its
    /// node's addresses are allowed when no policy selects it).
    Strict,
}

/// What `resolve` needs to know about this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolveOptions {
    pub node_name: String,
    /// The node's own addresses: traffic between a pod and these is always allowed.
    pub node_addresses: Vec<IpAddr>,
    pub mode: EnforcingMode,
}

/// A pod interface's state in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PodState {
    DefaultAllow,
    DefaultDeny,
    PoliciesApplied,
    /// Only audit-mode policies select the pod: their rules are checked, and what
    /// they do not admit passes as AUDIT.
    PoliciesAudit,
}

impl PodState {
    /// The ABI byte (`STATE_*`).
    pub const fn as_u8(self) -> u8 {
        match self {
            PodState::DefaultAllow => STATE_DEFAULT_ALLOW,
            PodState::DefaultDeny => STATE_DEFAULT_DENY,
            PodState::PoliciesApplied => STATE_POLICIES_APPLIED,
            PodState::PoliciesAudit => STATE_POLICIES_AUDIT,
        }
    }

    /// Does the datapath look up the pod's entries in this state?
    pub const fn uses_entries(self) -> bool {
        matches!(self, PodState::PoliciesApplied | PodState::PoliciesAudit)
    }
}

/// One direction of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectionRules {
    pub state: PodState,
    /// Prefix -> the rules the datapath checks for a peer whose longest match it is.
    /// Empty unless `state` uses entries (`PoliciesApplied`, `PoliciesAudit`).
    pub entries: BTreeMap<IpNet, Vec<Rule>>,
    /// The policies selecting the pod in this direction (named on a DENY).
    pub isolating: Vec<PolicyRef>,
}

impl DirectionRules {
    pub(crate) fn allow() -> Self {
        Self {
            state: PodState::DefaultAllow,
            entries: BTreeMap::new(),
            isolating: Vec::new(),
        }
    }
}

/// A pod on this node with what its interface must enforce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedPod {
    pub pod: PodRef,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub interface: Option<String>,
    pub ingress: DirectionRules,
    pub egress: DirectionRules,
}

impl ResolvedPod {
    pub fn direction(&self, direction: Direction) -> &DirectionRules {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// A pod direction whose rules do not fit the datapath; it is denied instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unenforceable {
    pub pod: PodRef,
    pub direction: Direction,
    pub prefix: IpNet,
    /// Rules the prefix would need.
    pub rules: usize,
    /// The first rule that did not fit.
    pub rule: Option<RuleRef>,
}

impl fmt::Display for Unenforceable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pod {} {}: prefix {} needs {} rules, the datapath holds {}; ",
            self.pod, self.direction, self.prefix, self.rules, MAX_RULES_PER_LIST
        )?;
        match &self.rule {
            Some(rule) => write!(f, "{rule} does not fit; ")?,
            None => f.write_str("node-local rule does not fit; ")?,
        }
        f.write_str("denying this direction")
    }
}

/// The outcome of one resolution. Pods that did not change between two resolutions
/// by the same `Resolver` share the same `Arc`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Pods on this node that are not host-network.
    pub pods: BTreeMap<PodRef, Arc<ResolvedPod>>,
    pub table: Arc<PolicyTable>,
    pub unenforceable: Vec<Unenforceable>,
}

impl Resolved {
    /// Entries over all pods and directions.
    pub fn entry_count(&self) -> usize {
        self.pods
            .values()
            .map(|p| p.ingress.entries.len() + p.egress.entries.len())
            .sum()
    }
}

/// Resolve once with a fresh resolver (see `Resolver` to keep ids and work across
/// calls).
pub fn resolve(state: &ClusterState, options: &ResolveOptions) -> Resolved {
    Resolver::new().resolve(state, options)
}

/// What the previous resolution saw and produced.
#[derive(Debug, Default)]
struct Memory {
    options: ResolveOptions,
    namespaces: BTreeMap<String, Namespace>,
    pods: BTreeMap<PodRef, Pod>,
    policies: BTreeMap<PolicyRef, NetworkPolicy>,
    cluster_policies: BTreeMap<String, ClusterNetworkPolicy>,
    tiers: Tiers,
    compiled: CompiledCache,
    table: Arc<PolicyTable>,
    order: Arc<RuleOrder>,
    results: BTreeMap<PodRef, Arc<ResolvedPod>>,
    unenforceable: BTreeMap<PodRef, Vec<Unenforceable>>,
}

/// Resolves repeatedly, keeping policy ids stable and reusing unaffected results.
#[derive(Debug, Default)]
pub struct Resolver {
    ids: PolicyIdAllocator,
    memory: Option<Memory>,
}

/// Keys whose values differ between two sorted maps (added, removed or changed).
fn changed_keys<'a, K: Ord + Clone, V: PartialEq>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
) -> Vec<K> {
    let mut out = Vec::new();
    let mut a = old.iter().peekable();
    let mut b = new.iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((ka, _)), None) => {
                out.push((*ka).clone());
                a.next();
            }
            (None, Some((kb, _))) => {
                out.push((*kb).clone());
                b.next();
            }
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    out.push((*ka).clone());
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push((*kb).clone());
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        out.push((*ka).clone());
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    out
}

/// A pod this node enforces: on this node, not host-network, and not terminal. A
/// Succeeded or Failed pod keeps its podIP in the API, but its interface is gone and the
/// address may already belong to a new pod; a terminating pod stays Running (and
/// enforced) through its grace period.
pub(crate) fn is_local(pod: &Pod, options: &ResolveOptions) -> bool {
    !pod.host_network
        && pod.node_name.as_deref() == Some(options.node_name.as_str())
        && !matches!(pod.phase, PodPhase::Succeeded | PodPhase::Failed)
}

impl Resolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Compute every local pod's rules, reusing what the last call computed for pods
    /// the changes since cannot affect.
    pub fn resolve(&mut self, state: &ClusterState, options: &ResolveOptions) -> Resolved {
        let reusable = self
            .memory
            .as_ref()
            .is_some_and(|m| m.options == *options && m.namespaces == state.namespaces);
        let mut memory = match self.memory.take() {
            Some(m) if reusable => m,
            _ => Memory {
                options: options.clone(),
                namespaces: state.namespaces.clone(),
                ..Memory::default()
            },
        };
        let first =
            memory.pods.is_empty() && memory.policies.is_empty() && memory.results.is_empty();
        let mut dirty: BTreeSet<PodRef> = BTreeSet::new();
        let mut dirty_namespaces: BTreeSet<String> = BTreeSet::new();

        let changed_policies = changed_keys(&memory.policies, &state.policies);
        for key in &changed_policies {
            memory.compiled.retain(|(p, _), _| p != key);
            dirty_namespaces.insert(key.namespace.clone());
            match state.policies.get(key) {
                Some(p) => memory.policies.insert(key.clone(), p.clone()),
                None => memory.policies.remove(key),
            };
        }
        let cluster_changed = memory.cluster_policies != state.cluster_policies;
        // Cluster tiers are recomputed whole while any cluster policy exists (a pod
        // change may move it in or out of their peer sets); local pods whose tiers
        // changed are recomputed.
        let tiers = if cluster_changed || !state.cluster_policies.is_empty() {
            resolve_tiers(state, options)
        } else {
            Tiers::default()
        };
        if tiers.pods != memory.tiers.pods {
            let keys: BTreeSet<&PodRef> =
                tiers.pods.keys().chain(memory.tiers.pods.keys()).collect();
            for key in keys {
                if tiers.pods.get(key) != memory.tiers.pods.get(key) {
                    dirty.insert(key.clone());
                }
            }
        }
        if !changed_policies.is_empty() || first || tiers.table != memory.tiers.table {
            let (mut table, order) = self.policy_table(state);
            table.set_cluster_rules(tiers.table.iter().map(|(id, e)| (id, e.rule.clone())));
            memory.table = Arc::new(table);
            memory.order = Arc::new(order);
        }
        if cluster_changed {
            memory.cluster_policies = state.cluster_policies.clone();
        }
        memory.tiers = tiers;

        for key in changed_keys(&memory.pods, &state.pods) {
            let old = memory.pods.remove(&key);
            let new = state.pods.get(&key);
            for version in old.iter().chain(new) {
                if is_local(version, options) {
                    dirty.insert(key.clone());
                }
                let ns_labels = state.namespace_labels(&version.namespace);
                for (local, result) in &memory.results {
                    let involved = Direction::BOTH.iter().any(|d| {
                        result.direction(*d).isolating.iter().any(|p| {
                            state.policies.get(p).is_none_or(|policy| {
                                policy_may_involve(policy, *d, version, &ns_labels)
                            })
                        })
                    });
                    if involved {
                        dirty.insert(local.clone());
                    }
                }
            }
            patch_compiled(&mut memory.compiled, state, &key, new);
            if let Some(new) = new {
                memory.pods.insert(key, new.clone());
            }
        }

        // Drop results of pods that are gone or no longer local.
        memory
            .results
            .retain(|key, _| state.pods.get(key).is_some_and(|p| is_local(p, options)));
        memory
            .unenforceable
            .retain(|key, _| memory.results.contains_key(key) || dirty.contains(key));
        for pod in state.pods.values() {
            if is_local(pod, options)
                && (first
                    || dirty_namespaces.contains(&pod.namespace)
                    || !memory.results.contains_key(&pod.key()))
            {
                dirty.insert(pod.key());
            }
        }
        dirty.retain(|key| state.pods.get(key).is_some_and(|p| is_local(p, options)));

        if !dirty.is_empty() {
            let index = ClusterIndex::new(state);
            let mut pass = PodPass {
                index: &index,
                compiled: &mut memory.compiled,
                ids: &mut self.ids,
                table: &memory.table,
                order: &memory.order,
                options,
                tiers: &memory.tiers,
            };
            for key in &dirty {
                let Some(pod) = state.pods.get(key) else {
                    continue;
                };
                let (ingress, ingress_report) = pass.direction_rules(pod, Direction::Ingress);
                let (egress, egress_report) = pass.direction_rules(pod, Direction::Egress);
                let resolved = ResolvedPod {
                    pod: key.clone(),
                    ipv4: pod.ips.iter().find_map(|ip| match ip {
                        IpAddr::V4(v4) => Some(*v4),
                        IpAddr::V6(_) => None,
                    }),
                    ipv6: pod.ips.iter().find_map(|ip| match ip {
                        IpAddr::V6(v6) => Some(*v6),
                        IpAddr::V4(_) => None,
                    }),
                    interface: pod.interface.clone(),
                    ingress,
                    egress,
                };
                // Keep the old Arc when nothing changed, so the planner skips the pod at once.
                let unchanged = memory.results.get(key).is_some_and(|old| **old == resolved);
                if !unchanged {
                    memory.results.insert(key.clone(), Arc::new(resolved));
                }
                let reports: Vec<Unenforceable> =
                    ingress_report.into_iter().chain(egress_report).collect();
                if reports.is_empty() {
                    memory.unenforceable.remove(key);
                } else {
                    memory.unenforceable.insert(key.clone(), reports);
                }
            }
        }
        let out = Resolved {
            pods: memory.results.clone(),
            table: Arc::clone(&memory.table),
            unenforceable: memory.unenforceable.values().flatten().cloned().collect(),
        };
        self.memory = Some(memory);
        out
    }

    /// Ids for every rule of every policy, and the order rules take in a list.
    fn policy_table(&mut self, state: &ClusterState) -> (PolicyTable, RuleOrder) {
        let mut table = PolicyTable::default();
        for policy in state.policies.values() {
            for direction in Direction::BOTH {
                for rule_index in 0..policy.rules(direction).len() {
                    let rule = RuleRef {
                        policy: policy.key(),
                        direction,
                        rule_index,
                    };
                    table.insert(self.ids.id(&rule), rule);
                }
            }
        }
        self.ids.retain(&table);
        let mut by_rule: Vec<(&RuleRef, u32)> = table.iter().map(|(id, r)| (r, id)).collect();
        by_rule.sort();
        let order = RuleOrder::new(
            std::iter::once(NODE_LOCAL_POLICY_ID).chain(by_rule.into_iter().map(|(_, id)| id)),
        );
        (table, order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_finds_added_removed_and_modified() {
        let old: BTreeMap<u32, &str> = [(1, "a"), (2, "b"), (4, "d")].into();
        let new: BTreeMap<u32, &str> = [(1, "a"), (2, "B"), (3, "c")].into();
        assert_eq!(changed_keys(&old, &new), vec![2, 3, 4]);
        assert!(changed_keys(&new, &new).is_empty());
    }
}
