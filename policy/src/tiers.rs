//! Cluster policy tiers resolved for this node's pods, and the tier order applied to
//! one packet. Each local pod and direction gets two LPM tables (Admin and Baseline),
//! built like the NetworkPolicy entries (prefix -> ordered rules) but whose rules
//! carry ids into a `ClusterRuleTable` naming the rule and its action. Ids follow
//! the evaluation order: tier, ascending priority, then Deny before Accept before
//! Pass (equal priorities: Deny wins), then policy name and rule index, so the first
//! rule of a list that admits a packet is the one that decides.
//!
//! The order for one packet (`Tiers::decide`): the pod's own node addresses always
//! pass (kubelet probes); then Admin (Accept allows, Deny drops, Pass skips to the
//! NetworkPolicies); then the NetworkPolicies if any selects the pod in that
//! direction (their decision is final); then Baseline (Pass and no match fall
//! through); then the default (standard allows, strict denies).
//!
//! Peers the datapath cannot match (`domainNames`): in an Accept rule they are left
//! out (the rule keeps its other peers); a Deny or Pass rule holding one fails
//! closed: it denies every destination on its ports. Both are reported as
//! `TierIssue`s naming the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use datapath_common::{
    Decision, PROTO_ANY, REASON_DEFAULT_ALLOW, REASON_DEFAULT_DENY, REASON_NO_RULE_MATCHED,
    REASON_POLICY, RULE_ACCEPT, RULE_DENY, Rule, rule_admits,
};
use ipnet::IpNet;

use crate::cluster::{
    ClusterAction, ClusterNetworkPolicy, ClusterPeer, ClusterRule, ClusterRuleRef, Tier,
};
use crate::ids::NODE_LOCAL_POLICY_ID;
use crate::model::{ClusterState, Direction, Labels, Pod, PodRef, PolicyPort, PortRef};
use crate::prefixes::{PrefixUnion, RuleOrder};
use crate::resolve::{DirectionRules, EnforcingMode, PodState, ResolveOptions, is_local};

/// The first cluster rule id; NetworkPolicy rule ids stay below it.
pub const CLUSTER_RULE_ID_BASE: u32 = 0x8000_0000;

/// What a cluster rule id stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterRuleEntry {
    pub rule: ClusterRuleRef,
    /// The action as written.
    pub written: ClusterAction,
    /// The action enforced: `Deny` for a Deny or Pass rule that fails closed.
    pub action: ClusterAction,
}

impl ClusterRuleEntry {
    pub fn fails_closed(&self) -> bool {
        self.action != self.written
    }
}

/// Cluster rule id -> rule, for the rules of one resolution.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterRuleTable {
    rules: BTreeMap<u32, ClusterRuleEntry>,
}

impl ClusterRuleTable {
    pub fn get(&self, id: u32) -> Option<&ClusterRuleEntry> {
        self.rules.get(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &ClusterRuleEntry)> {
        self.rules.iter().map(|(id, r)| (*id, r))
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The cluster rules of one pod in one direction, per tier: prefix -> rules in
/// evaluation order (each `Rule::policy_id` a cluster rule id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TieredDirection {
    pub admin: BTreeMap<IpNet, Vec<Rule>>,
    pub baseline: BTreeMap<IpNet, Vec<Rule>>,
}

impl TieredDirection {
    pub fn is_empty(&self) -> bool {
        self.admin.is_empty() && self.baseline.is_empty()
    }

    pub fn tier(&self, tier: Tier) -> &BTreeMap<IpNet, Vec<Rule>> {
        match tier {
            Tier::Admin => &self.admin,
            Tier::Baseline => &self.baseline,
        }
    }
}

/// A local pod's cluster rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TieredPod {
    pub ingress: TieredDirection,
    pub egress: TieredDirection,
}

impl TieredPod {
    pub fn direction(&self, direction: Direction) -> &TieredDirection {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// A cluster rule holding peers the datapath cannot match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierIssue {
    pub rule: ClusterRuleRef,
    pub action: ClusterAction,
    /// The unenforceable peers, as written.
    pub peers: Vec<String>,
}

impl fmt::Display for TierIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: domainNames peers ({}) cannot be enforced; ",
            self.rule,
            self.peers.join(", ")
        )?;
        match self.action {
            ClusterAction::Accept => f.write_str("the Accept rule ignores them"),
            ClusterAction::Deny | ClusterAction::Pass => write!(
                f,
                "the {} rule fails closed and denies every destination on its ports",
                self.action
            ),
        }
    }
}

/// The cluster tiers of every local pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tiers {
    /// Local pods some cluster policy applies to (others have no cluster rules).
    pub pods: BTreeMap<PodRef, TieredPod>,
    pub table: ClusterRuleTable,
    pub issues: Vec<TierIssue>,
}

/// The step of the tier order that decided a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DecidingTier {
    /// The pod's own node addresses, always allowed.
    NodeLocal,
    Admin,
    NetworkPolicy,
    Baseline,
    /// No tier decided: the enforcing mode's default.
    Default,
}

impl DecidingTier {
    pub const fn as_str(self) -> &'static str {
        match self {
            DecidingTier::NodeLocal => "NodeLocal",
            DecidingTier::Admin => "Admin",
            DecidingTier::NetworkPolicy => "NetworkPolicy",
            DecidingTier::Baseline => "Baseline",
            DecidingTier::Default => "Default",
        }
    }
}

impl fmt::Display for DecidingTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verdict with the tier that reached it. `decision.policy_id` is a cluster rule
/// id for Admin and Baseline, a NetworkPolicy rule id (or node-local) otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierDecision {
    pub decision: Decision,
    pub tier: DecidingTier,
}

/// The rules of the longest prefix of `entries` holding `ip`.
fn longest_match(entries: &BTreeMap<IpNet, Vec<Rule>>, ip: IpAddr) -> Option<&[Rule]> {
    entries
        .iter()
        .filter(|(net, _)| net.contains(&ip))
        .max_by_key(|(net, _)| net.prefix_len())
        .map(|(_, rules)| rules.as_slice())
}

/// Is `rule` a NetworkPolicy rule (or the node-local one), not a folded cluster rule
/// or default?
fn is_network_policy_rule(rule: &Rule) -> bool {
    rule.policy_id != 0 && rule.policy_id < CLUSTER_RULE_ID_BASE
}

/// The id of the first rule the packet matches at its longest prefix.
fn first_match(
    entries: &BTreeMap<IpNet, Vec<Rule>>,
    ip: IpAddr,
    protocol: u8,
    port: u16,
) -> Option<u32> {
    longest_match(entries, ip)?
        .iter()
        .find(|r| rule_admits(r, protocol, port))
        .map(|r| r.policy_id)
}

impl Tiers {
    /// The verdict for a new flow of `pod` in `direction` with `peer`, given the pod's
    /// NetworkPolicy rules `np` for that direction (from `Resolver::resolve`).
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &self,
        pod: &PodRef,
        direction: Direction,
        np: &DirectionRules,
        options: &ResolveOptions,
        peer: IpAddr,
        protocol: u8,
        port: u16,
    ) -> TierDecision {
        let decided = |decision, tier| TierDecision { decision, tier };
        if options.node_addresses.contains(&peer) {
            return decided(
                Decision::accept(NODE_LOCAL_POLICY_ID, REASON_POLICY),
                DecidingTier::NodeLocal,
            );
        }
        let empty = TieredDirection::default();
        let tiered = self
            .pods
            .get(pod)
            .map_or(&empty, |p| p.direction(direction));
        let action = |id: u32| self.table.get(id).map_or(ClusterAction::Deny, |e| e.action);
        if let Some(id) = first_match(&tiered.admin, peer, protocol, port) {
            match action(id) {
                ClusterAction::Accept => {
                    return decided(Decision::accept(id, REASON_POLICY), DecidingTier::Admin);
                }
                ClusterAction::Deny => {
                    return decided(Decision::deny(id, REASON_POLICY), DecidingTier::Admin);
                }
                ClusterAction::Pass => {}
            }
        }
        if !np.isolating.is_empty() {
            let decision = if !np.state.uses_entries() {
                Decision::deny(0, REASON_DEFAULT_DENY)
            } else if let Some(id) = longest_match(&np.entries, peer).and_then(|rules| {
                // The pod's entries hold its cluster rules too (`fold_tiers`): only
                // NetworkPolicy rules decide here.
                rules
                    .iter()
                    .find(|r| is_network_policy_rule(r) && rule_admits(r, protocol, port))
                    .map(|r| r.policy_id)
            }) {
                Decision::accept(id, REASON_POLICY)
            } else if np.state == PodState::PoliciesAudit {
                Decision::audit(0, REASON_NO_RULE_MATCHED)
            } else {
                Decision::deny(0, REASON_NO_RULE_MATCHED)
            };
            return decided(decision, DecidingTier::NetworkPolicy);
        }
        if let Some(id) = first_match(&tiered.baseline, peer, protocol, port) {
            match action(id) {
                ClusterAction::Accept => {
                    return decided(Decision::accept(id, REASON_POLICY), DecidingTier::Baseline);
                }
                ClusterAction::Deny => {
                    return decided(Decision::deny(id, REASON_POLICY), DecidingTier::Baseline);
                }
                ClusterAction::Pass => {}
            }
        }
        let decision = match options.mode {
            EnforcingMode::Standard => Decision::accept(0, REASON_DEFAULT_ALLOW),
            // As the datapath reports strict mode's deny of a pod no policy selects.
            EnforcingMode::Strict => Decision::deny(0, REASON_NO_RULE_MATCHED),
        };
        decided(decision, DecidingTier::Default)
    }

    /// A short text for a decision's deciding rule: the cluster rule for Admin and
    /// Baseline, `None` otherwise.
    pub fn describe(&self, decision: &TierDecision) -> Option<String> {
        match decision.tier {
            DecidingTier::Admin | DecidingTier::Baseline => {
                Some(self.table.get(decision.decision.policy_id).map_or_else(
                    || format!("unknown cluster rule id {}", decision.decision.policy_id),
                    |e| e.rule.to_string(),
                ))
            }
            _ => None,
        }
    }
}

/// One cluster rule in evaluation order, with its id.
struct OrderedRule<'s> {
    id: u32,
    policy: &'s ClusterNetworkPolicy,
    direction: Direction,
    rule: &'s ClusterRule,
    action: ClusterAction,
}

/// Every cluster rule of `state`, numbered in evaluation order.
fn ordered_rules(state: &ClusterState) -> (Vec<OrderedRule<'_>>, ClusterRuleTable, Vec<TierIssue>) {
    let mut all = Vec::new();
    let mut issues = Vec::new();
    for policy in state.cluster_policies.values() {
        for direction in Direction::BOTH {
            for (rule_index, rule) in policy.rules(direction).iter().enumerate() {
                let reference = ClusterRuleRef {
                    tier: policy.tier,
                    priority: policy.priority,
                    policy: policy.name.clone(),
                    direction,
                    rule_index,
                    rule_name: rule.name.clone(),
                };
                let unenforceable: Vec<String> = rule
                    .peers
                    .iter()
                    .filter_map(|p| match p {
                        ClusterPeer::DomainNames(names) => Some(names.join(", ")),
                        _ => None,
                    })
                    .collect();
                let action = if unenforceable.is_empty() {
                    rule.action
                } else {
                    issues.push(TierIssue {
                        rule: reference.clone(),
                        action: rule.action,
                        peers: unenforceable,
                    });
                    match rule.action {
                        ClusterAction::Accept => ClusterAction::Accept,
                        ClusterAction::Deny | ClusterAction::Pass => ClusterAction::Deny,
                    }
                };
                all.push((reference, rule, policy, action));
            }
        }
    }
    all.sort_by(|a, b| {
        (
            a.0.tier,
            a.0.priority,
            a.3.tie_rank(),
            &a.0.policy,
            a.0.direction,
            a.0.rule_index,
        )
            .cmp(&(
                b.0.tier,
                b.0.priority,
                b.3.tie_rank(),
                &b.0.policy,
                b.0.direction,
                b.0.rule_index,
            ))
    });
    let mut table = ClusterRuleTable::default();
    let mut out = Vec::with_capacity(all.len());
    for (i, (reference, rule, policy, action)) in all.into_iter().enumerate() {
        let id = CLUSTER_RULE_ID_BASE + u32::try_from(i).unwrap_or(u32::MAX - CLUSTER_RULE_ID_BASE);
        let direction = reference.direction;
        table.rules.insert(
            id,
            ClusterRuleEntry {
                rule: reference,
                written: rule.action,
                action,
            },
        );
        out.push(OrderedRule {
            id,
            policy,
            direction,
            rule,
            action,
        });
    }
    (out, table, issues)
}

/// `Rule::action` of a Pass rule, in the per-tier lists only: `fold_tiers` expands
/// Pass rules, so the datapath sees only `RULE_ACCEPT` and `RULE_DENY`.
const RULE_PASS: u8 = 2;
/// The action bits of `Rule::action` in the per-tier lists.
const RULE_ACTION_MASK: u8 = 0x3;
/// `Rule::action` flag of an Admin rule, in the per-tier lists only.
const RULE_ADMIN: u8 = 0x80;

/// The `Rule::action` byte of a cluster rule in its tier's list.
fn action_byte(tier: Tier, action: ClusterAction) -> u8 {
    let code = match action {
        ClusterAction::Accept => RULE_ACCEPT,
        ClusterAction::Deny => RULE_DENY,
        ClusterAction::Pass => RULE_PASS,
    };
    match tier {
        Tier::Admin => code | RULE_ADMIN,
        Tier::Baseline => code,
    }
}

/// The datapath rules of `ports` for destination `dest` (named ports resolved on it).
fn port_rules(id: u32, action: u8, ports: &[PolicyPort], dest: &Pod) -> Vec<Rule> {
    let rule = |protocol, port_min, port_max| Rule {
        protocol,
        port_min,
        port_max,
        policy_id: id,
        action,
        ..Rule::default()
    };
    if ports.is_empty() {
        return vec![rule(PROTO_ANY, 0, u16::MAX)];
    }
    ports
        .iter()
        .filter_map(|p| match &p.port {
            None => Some(rule(p.protocol.number(), 0, u16::MAX)),
            Some(PortRef::Number(n)) => {
                Some(rule(p.protocol.number(), *n, p.end_port.unwrap_or(*n)))
            }
            Some(PortRef::Name(name)) => dest
                .named_port(name, p.protocol)
                .map(|n| rule(p.protocol.number(), n, n)),
        })
        .collect()
}

fn has_named_port(ports: &[PolicyPort]) -> bool {
    ports
        .iter()
        .any(|p| matches!(p.port, Some(PortRef::Name(_))))
}

/// Adds one rule's contributions for `pod` in its direction to `union`.
fn add_cluster_rule(
    union: &mut PrefixUnion,
    state: &ClusterState,
    namespace_labels: &BTreeMap<String, Labels>,
    pod: &Pod,
    ordered: &OrderedRule<'_>,
) {
    let rule = ordered.rule;
    let ingress = ordered.direction == Direction::Ingress;
    let action = action_byte(ordered.policy.tier, ordered.action);
    let port_rules = |ports: &[PolicyPort], dest: &Pod| port_rules(ordered.id, action, ports, dest);
    let peer_pods = || state.pods.values().filter(|p| p.in_peer_sets());
    let labels_of = |p: &Pod| {
        namespace_labels
            .get(&p.namespace)
            .cloned()
            .unwrap_or_default()
    };
    let add_pod = |union: &mut PrefixUnion, peer: &Pod| {
        let dest = if ingress { pod } else { peer };
        let rules = port_rules(&rule.ports, dest);
        if !rules.is_empty() {
            for ip in &peer.ips {
                union.add(IpNet::from(*ip), &rules);
            }
        }
    };
    let add_network = |union: &mut PrefixUnion, net: IpNet| {
        if ingress || !has_named_port(&rule.ports) {
            let rules = port_rules(&rule.ports, pod);
            if !rules.is_empty() {
                union.add(net, &rules);
            }
            return;
        }
        let fixed: Vec<PolicyPort> = rule
            .ports
            .iter()
            .filter(|p| !matches!(p.port, Some(PortRef::Name(_))))
            .cloned()
            .collect();
        if !fixed.is_empty() {
            union.add(net, &port_rules(&fixed, pod));
        }
        for dest in peer_pods() {
            for ip in dest.ips.iter().filter(|ip| net.contains(*ip)) {
                let rules = port_rules(&rule.ports, dest);
                if !rules.is_empty() {
                    union.add(IpNet::from(*ip), &rules);
                }
            }
        }
    };
    let fails_closed = ordered.action != rule.action
        || (ordered.action != ClusterAction::Accept
            && rule.peers.iter().any(|p| !p.is_enforceable()));
    if fails_closed {
        for everything in ["0.0.0.0/0", "::/0"] {
            add_network(union, everything.parse().unwrap_or_else(|_| unreachable!()));
        }
        return;
    }
    for peer in &rule.peers {
        match peer {
            ClusterPeer::Pods(selection) => {
                for candidate in peer_pods() {
                    if selection.matches(candidate, &labels_of(candidate)) {
                        add_pod(union, candidate);
                    }
                }
            }
            ClusterPeer::Networks(nets) => {
                for net in nets {
                    add_network(union, *net);
                }
            }
            ClusterPeer::DomainNames(_) => {}
        }
    }
}

/// Resolve every cluster policy for the pods this node enforces.
pub fn resolve_tiers(state: &ClusterState, options: &ResolveOptions) -> Tiers {
    let (ordered, table, issues) = ordered_rules(state);
    let mut pods = BTreeMap::new();
    if ordered.is_empty() {
        return Tiers {
            pods,
            table,
            issues,
        };
    }
    let namespace_labels: BTreeMap<String, Labels> = state
        .pods
        .values()
        .map(|p| p.namespace.clone())
        .chain(state.namespaces.keys().cloned())
        .map(|ns| {
            let labels = state.namespace_labels(&ns);
            (ns, labels)
        })
        .collect();
    let order = RuleOrder::default();
    for pod in state.pods.values().filter(|p| is_local(p, options)) {
        let labels = namespace_labels
            .get(&pod.namespace)
            .cloned()
            .unwrap_or_default();
        let mut tiered = TieredPod::default();
        for direction in Direction::BOTH {
            let mut admin = PrefixUnion::default();
            let mut baseline = PrefixUnion::default();
            for rule in ordered
                .iter()
                .filter(|r| r.direction == direction && r.policy.selects(pod, &labels))
            {
                let union = match rule.policy.tier {
                    Tier::Admin => &mut admin,
                    Tier::Baseline => &mut baseline,
                };
                add_cluster_rule(union, state, &namespace_labels, pod, rule);
            }
            let out = match direction {
                Direction::Ingress => &mut tiered.ingress,
                Direction::Egress => &mut tiered.egress,
            };
            out.admin = admin.build(&order);
            out.baseline = baseline.build(&order);
        }
        if !tiered.ingress.is_empty() || !tiered.egress.is_empty() {
            pods.insert(pod.key(), tiered);
        }
    }
    Tiers {
        pods,
        table,
        issues,
    }
}

/// The rules of the longest prefix of `entries` holding all of `x`.
fn covering(entries: &BTreeMap<IpNet, Vec<Rule>>, x: IpNet) -> &[Rule] {
    (0..=x.prefix_len())
        .rev()
        .find_map(|len| {
            let candidate = IpNet::new(x.addr(), len).ok()?.trunc();
            entries.get(&candidate)
        })
        .map_or(&[], Vec::as_slice)
}

/// Drops rules no packet reaches: those an earlier rule covers (protocol and ports).
fn prune(list: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::with_capacity(list.len());
    for r in list {
        let shadowed = out.iter().any(|e| {
            (e.protocol == PROTO_ANY || e.protocol == r.protocol)
                && e.port_min <= r.port_min
                && r.port_max <= e.port_max
        });
        if !shadowed {
            out.push(r);
        }
    }
    out
}

/// `rule` restricted to the packets `within` matches (protocol and ports), if any.
fn intersect(rule: &Rule, within: &Rule) -> Option<Rule> {
    let protocol = if within.protocol == PROTO_ANY {
        rule.protocol
    } else if rule.protocol == PROTO_ANY || rule.protocol == within.protocol {
        within.protocol
    } else {
        return None;
    };
    let port_min = rule.port_min.max(within.port_min);
    let port_max = rule.port_max.min(within.port_max);
    (port_min <= port_max).then_some(Rule {
        protocol,
        port_min,
        port_max,
        ..*rule
    })
}

/// One pod direction's NetworkPolicy entries (`np`, the node-local rule included)
/// with its cluster tiers folded in, so the datapath's one lookup and first-match scan
/// applies the whole tier order with rules that only accept or deny. Each prefix's
/// list: node-local, the Admin rules, then the rules after the Admin tier (the
/// NetworkPolicy rules; where no NetworkPolicy selects the pod (`np_selects` false),
/// Baseline rules instead, a Baseline Pass becoming the mode's default of policy id
/// 0, and in standard mode a last allow-everything rule of policy id 0: the default
/// allow the pod's state no longer gives). An Admin Pass rule is replaced by the
/// rules after the Admin tier restricted to what it matches, then a deny of policy id
/// 0 for the rest of it (no rule matched), so no later Admin rule sees its packets.
pub(crate) fn fold_tiers(
    np: &BTreeMap<IpNet, Vec<Rule>>,
    tiered: &TieredDirection,
    np_selects: bool,
    mode: EnforcingMode,
) -> BTreeMap<IpNet, Vec<Rule>> {
    let no_rules = BTreeMap::new();
    let baseline = if np_selects {
        &no_rules
    } else {
        &tiered.baseline
    };
    let default_action = match mode {
        EnforcingMode::Standard => RULE_ACCEPT,
        EnforcingMode::Strict => RULE_DENY,
    };
    let catch_all = !np_selects && mode == EnforcingMode::Standard;
    let mut prefixes: BTreeSet<IpNet> = np
        .keys()
        .chain(tiered.admin.keys())
        .chain(baseline.keys())
        .copied()
        .collect();
    if catch_all {
        prefixes.extend(
            ["0.0.0.0/0", "::/0"].map(|n| n.parse::<IpNet>().unwrap_or_else(|_| unreachable!())),
        );
    }
    let mut out = BTreeMap::new();
    for x in prefixes {
        let np_list = covering(np, x);
        let is_node_local = |r: &&Rule| r.policy_id == NODE_LOCAL_POLICY_ID;
        let mut after_admin: Vec<Rule> = np_list
            .iter()
            .filter(|r| !is_node_local(r))
            .copied()
            .collect();
        after_admin.extend(covering(baseline, x).iter().map(|r| {
            if r.action & RULE_ACTION_MASK == RULE_PASS {
                Rule {
                    action: default_action,
                    policy_id: 0,
                    ..*r
                }
            } else {
                *r
            }
        }));
        if catch_all {
            after_admin.push(Rule {
                protocol: PROTO_ANY,
                port_min: 0,
                port_max: u16::MAX,
                action: RULE_ACCEPT,
                policy_id: 0,
                ..Rule::default()
            });
        }
        let mut list: Vec<Rule> = np_list.iter().filter(is_node_local).copied().collect();
        for admin in covering(&tiered.admin, x) {
            if admin.action & RULE_ACTION_MASK == RULE_PASS {
                list.extend(after_admin.iter().filter_map(|r| intersect(r, admin)));
                list.push(Rule {
                    action: RULE_DENY,
                    policy_id: 0,
                    ..*admin
                });
            } else {
                list.push(Rule {
                    action: admin.action & RULE_ACTION_MASK,
                    ..*admin
                });
            }
        }
        list.extend(after_admin);
        out.insert(x, prune(list));
    }
    out
}
