//! Policy ids: the `u32` a datapath rule carries so a verdict names the policy rule
//! that decided it. Ids stay the same across resolutions while the rule exists.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::cluster::ClusterRuleRef;
use crate::model::{Direction, PolicyRef};

/// No policy decided (default allow, default deny, no rule matched).
pub const NO_POLICY_ID: u32 = 0;
/// The allow-all rule for the pod's own node addresses (kubelet probes).
pub const NODE_LOCAL_POLICY_ID: u32 = 1;
/// The name `describe` gives `NODE_LOCAL_POLICY_ID`.
pub const NODE_LOCAL_NAME: &str = "node-local";
/// The first id handed to a policy rule.
pub const FIRST_RULE_POLICY_ID: u32 = 2;

/// One ingress or egress rule of one NetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleRef {
    pub policy: PolicyRef,
    pub direction: Direction,
    pub rule_index: usize,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} rule {}",
            self.policy, self.direction, self.rule_index
        )
    }
}

/// What a policy id stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyIdTarget<'a> {
    None,
    NodeLocal,
    Rule(&'a RuleRef),
}

/// Policy id -> rule, for the rules of the current resolution: NetworkPolicy rules,
/// and cluster policy rules (ids from `tiers::CLUSTER_RULE_ID_BASE`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyTable {
    rules: BTreeMap<u32, RuleRef>,
    cluster: BTreeMap<u32, ClusterRuleRef>,
}

impl PolicyTable {
    pub fn get(&self, id: u32) -> Option<PolicyIdTarget<'_>> {
        match id {
            NO_POLICY_ID => Some(PolicyIdTarget::None),
            NODE_LOCAL_POLICY_ID => Some(PolicyIdTarget::NodeLocal),
            _ => self.rules.get(&id).map(PolicyIdTarget::Rule),
        }
    }

    /// The rule behind `id`, if it is a policy rule.
    pub fn rule(&self, id: u32) -> Option<&RuleRef> {
        self.rules.get(&id)
    }

    /// A short text for flow-log lines: `x/allow-web ingress rule 0`, a cluster rule
    /// (`Admin ClusterNetworkPolicy deny-x (priority 10) ingress rule 0`),
    /// `node-local`, `none`, or `unknown policy id N`.
    pub fn describe(&self, id: u32) -> String {
        if let Some(rule) = self.cluster.get(&id) {
            return rule.to_string();
        }
        match self.get(id) {
            Some(PolicyIdTarget::None) => "none".to_owned(),
            Some(PolicyIdTarget::NodeLocal) => NODE_LOCAL_NAME.to_owned(),
            Some(PolicyIdTarget::Rule(r)) => r.to_string(),
            None => format!("unknown policy id {id}"),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &RuleRef)> {
        self.rules.iter().map(|(id, r)| (*id, r))
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(crate) fn insert(&mut self, id: u32, rule: RuleRef) {
        self.rules.insert(id, rule);
    }

    /// The cluster policy rule behind `id`, if it is one.
    pub fn cluster_rule(&self, id: u32) -> Option<&ClusterRuleRef> {
        self.cluster.get(&id)
    }

    /// Every cluster policy rule, by ascending id.
    pub fn cluster_rules(&self) -> impl Iterator<Item = (u32, &ClusterRuleRef)> {
        self.cluster.iter().map(|(id, r)| (*id, r))
    }

    pub(crate) fn set_cluster_rules(
        &mut self,
        rules: impl IntoIterator<Item = (u32, ClusterRuleRef)>,
    ) {
        self.cluster = rules.into_iter().collect();
    }
}

/// Hands out ids; kept across resolutions so an unchanged rule keeps its id. Ids of
/// rules that disappear are not reused (an event in flight still names the old rule).
#[derive(Clone, Debug)]
pub(crate) struct PolicyIdAllocator {
    ids: HashMap<RuleRef, u32>,
    next: u32,
}

impl Default for PolicyIdAllocator {
    fn default() -> Self {
        Self {
            ids: HashMap::new(),
            next: FIRST_RULE_POLICY_ID,
        }
    }
}

impl PolicyIdAllocator {
    pub(crate) fn id(&mut self, rule: &RuleRef) -> u32 {
        if let Some(id) = self.ids.get(rule) {
            return *id;
        }
        let id = self.next;
        self.next = self.next.checked_add(1).unwrap_or(FIRST_RULE_POLICY_ID);
        self.ids.insert(rule.clone(), id);
        id
    }

    /// Forget rules not in `live`.
    pub(crate) fn retain(&mut self, live: &PolicyTable) {
        self.ids.retain(|_, id| live.rules.contains_key(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectRef;

    fn rule(name: &str, i: usize) -> RuleRef {
        RuleRef {
            policy: ObjectRef::new("x", name),
            direction: Direction::Ingress,
            rule_index: i,
        }
    }

    #[test]
    fn ids_are_stable_and_never_reserved() {
        let mut alloc = PolicyIdAllocator::default();
        let a = alloc.id(&rule("a", 0));
        let b = alloc.id(&rule("a", 1));
        assert!(a >= FIRST_RULE_POLICY_ID && b != a);
        assert_eq!(alloc.id(&rule("a", 0)), a);
        let mut live = PolicyTable::default();
        live.insert(b, rule("a", 1));
        alloc.retain(&live);
        assert_eq!(alloc.id(&rule("a", 1)), b);
        let again = alloc.id(&rule("a", 0));
        assert!(again != a && again != b, "a forgotten rule gets a fresh id");
    }

    #[test]
    fn describe_names_reserved_and_rule_ids() {
        let mut t = PolicyTable::default();
        t.insert(7, rule("allow-web", 2));
        assert_eq!(t.describe(7), "x/allow-web ingress rule 2");
        assert_eq!(t.describe(NODE_LOCAL_POLICY_ID), "node-local");
        assert_eq!(t.describe(NO_POLICY_ID), "none");
        assert_eq!(t.describe(99), "unknown policy id 99");
    }
}
