//! From a `ClusterState` to what this node's datapath must hold: for every local pod
//! and direction, its state, its LPM entries (prefix -> rules, each rule tagged with
//! its policy id) and the policies that isolate it, plus the policy-id table.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use datapath_common::{
    MAX_RULES_PER_LIST, PROTO_ANY, Rule, STATE_DEFAULT_ALLOW, STATE_DEFAULT_DENY,
    STATE_POLICIES_APPLIED,
};
use ipnet::IpNet;

use crate::ids::{NODE_LOCAL_POLICY_ID, PolicyIdAllocator, PolicyTable, RuleRef};
use crate::model::{
    ClusterState, Direction, IpBlock, Labels, NetworkPolicy, Peer, Pod, PodRef, PolicyRef, PortRef,
    Protocol,
};
use crate::prefixes::{PrefixUnion, RuleOrder};

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
}

impl PodState {
    /// The ABI byte (`STATE_*`).
    pub const fn as_u8(self) -> u8 {
        match self {
            PodState::DefaultAllow => STATE_DEFAULT_ALLOW,
            PodState::DefaultDeny => STATE_DEFAULT_DENY,
            PodState::PoliciesApplied => STATE_POLICIES_APPLIED,
        }
    }
}

/// One direction of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectionRules {
    pub state: PodState,
    /// Prefix -> the rules the datapath checks for a peer whose longest match it is.
    /// Empty unless `state` is `PoliciesApplied`.
    pub entries: BTreeMap<IpNet, Vec<Rule>>,
    /// The policies selecting the pod in this direction (named on a DENY).
    pub isolating: Vec<PolicyRef>,
}

impl DirectionRules {
    fn allow() -> Self {
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

    fn direction_mut(&mut self, direction: Direction) -> &mut DirectionRules {
        match direction {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
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

/// The outcome of one resolution.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Pods on this node that are not host-network.
    pub pods: BTreeMap<PodRef, ResolvedPod>,
    pub table: PolicyTable,
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

/// Resolves repeatedly, keeping policy ids stable between calls.
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    ids: PolicyIdAllocator,
}

/// Resolve once with a fresh id allocator (see `Resolver` to keep ids across calls).
pub fn resolve(state: &ClusterState, options: &ResolveOptions) -> Resolved {
    Resolver::new().resolve(state, options)
}

impl Resolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Compute every local pod's rules.
    pub fn resolve(&mut self, state: &ClusterState, options: &ResolveOptions) -> Resolved {
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
        let mut pass = Pass {
            index: ClusterIndex::new(state),
            compiled: HashMap::new(),
            ids: &mut self.ids,
            table: &table,
            order: &order,
            options,
            unenforceable: Vec::new(),
        };
        let mut pods = BTreeMap::new();
        for pod in state.pods.values() {
            if pod.host_network || pod.node_name.as_deref() != Some(options.node_name.as_str()) {
                continue;
            }
            let mut resolved = ResolvedPod {
                pod: pod.key(),
                ipv4: pod.ips.iter().find_map(|ip| match ip {
                    IpAddr::V4(v4) => Some(*v4),
                    IpAddr::V6(_) => None,
                }),
                ipv6: pod.ips.iter().find_map(|ip| match ip {
                    IpAddr::V6(v6) => Some(*v6),
                    IpAddr::V4(_) => None,
                }),
                interface: pod.interface.clone(),
                ingress: DirectionRules::allow(),
                egress: DirectionRules::allow(),
            };
            for direction in Direction::BOTH {
                *resolved.direction_mut(direction) = pass.direction_rules(pod, direction);
            }
            pods.insert(pod.key(), resolved);
        }
        let unenforceable = pass.unenforceable;
        Resolved {
            pods,
            table,
            unenforceable,
        }
    }
}

/// The state of one resolution.
struct Pass<'s, 'a> {
    index: ClusterIndex<'s>,
    /// Policies already compiled for a direction (each is compiled at most once).
    compiled: HashMap<(PolicyRef, Direction), Vec<CompiledRule<'s>>>,
    ids: &'a mut PolicyIdAllocator,
    table: &'a PolicyTable,
    order: &'a RuleOrder,
    options: &'a ResolveOptions,
    unenforceable: Vec<Unenforceable>,
}

impl Pass<'_, '_> {
    fn direction_rules(&mut self, pod: &Pod, direction: Direction) -> DirectionRules {
        let (index, options) = (&self.index, self.options);
        let selecting: Vec<&NetworkPolicy> = index
            .policies_by_ns
            .get(pod.namespace.as_str())
            .map(|ps| {
                ps.iter()
                    .copied()
                    .filter(|p| p.affects(direction) && p.spec.pod_selector.matches(&pod.labels))
                    .collect()
            })
            .unwrap_or_default();
        if selecting.is_empty() && options.mode == EnforcingMode::Standard {
            return DirectionRules::allow();
        }
        let mut union = PrefixUnion::default();
        for policy in &selecting {
            let rules = self
                .compiled
                .entry((policy.key(), direction))
                .or_insert_with(|| compile_policy(index, policy, direction, self.ids));
            for rule in rules.iter() {
                add_rule(&mut union, index, rule, pod, direction);
            }
        }
        let node_local = Rule {
            protocol: PROTO_ANY,
            port_min: 0,
            port_max: u16::MAX,
            policy_id: NODE_LOCAL_POLICY_ID,
            ..Rule::default()
        };
        for addr in &options.node_addresses {
            union.add(IpNet::from(*addr), &[node_local]);
        }
        let entries = union.build(self.order);
        let isolating: Vec<PolicyRef> = selecting.iter().map(|p| p.key()).collect();
        if let Some((prefix, list)) = entries.iter().find(|(_, l)| l.len() > MAX_RULES_PER_LIST) {
            let rule = self.table.rule(list[MAX_RULES_PER_LIST].policy_id).cloned();
            self.unenforceable.push(Unenforceable {
                pod: pod.key(),
                direction,
                prefix: *prefix,
                rules: list.len(),
                rule,
            });
            return DirectionRules {
                state: PodState::DefaultDeny,
                entries: BTreeMap::new(),
                isolating,
            };
        }
        DirectionRules {
            state: PodState::PoliciesApplied,
            entries,
            isolating,
        }
    }
}

/// Lookups built once per resolution.
struct ClusterIndex<'s> {
    namespace_labels: BTreeMap<&'s str, Labels>,
    /// Pods that may stand in peer sets, by namespace.
    peers_by_ns: BTreeMap<&'s str, Vec<&'s Pod>>,
    policies_by_ns: HashMap<&'s str, Vec<&'s NetworkPolicy>>,
}

impl<'s> ClusterIndex<'s> {
    fn new(state: &'s ClusterState) -> Self {
        let mut namespace_labels = BTreeMap::new();
        let mut peers_by_ns: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
        for ns in state.namespaces.keys() {
            namespace_labels.insert(ns.as_str(), state.namespace_labels(ns));
        }
        for pod in state.pods.values() {
            namespace_labels
                .entry(pod.namespace.as_str())
                .or_insert_with(|| state.namespace_labels(&pod.namespace));
            if pod.in_peer_sets() {
                peers_by_ns
                    .entry(pod.namespace.as_str())
                    .or_default()
                    .push(pod);
            }
        }
        let mut policies_by_ns: HashMap<&str, Vec<&NetworkPolicy>> = HashMap::new();
        for p in state.policies.values() {
            policies_by_ns
                .entry(p.namespace.as_str())
                .or_default()
                .push(p);
        }
        Self {
            namespace_labels,
            peers_by_ns,
            policies_by_ns,
        }
    }

    fn all_peers(&self) -> impl Iterator<Item = &'s Pod> + '_ {
        self.peers_by_ns.values().flatten().copied()
    }
}

/// A port of a rule: known now, or a container-port name resolved per destination pod.
#[derive(Clone, Debug)]
enum CompiledPort {
    Fixed { protocol: u8, min: u16, max: u16 },
    Named { protocol: Protocol, name: String },
}

/// One rule with its peer set worked out (independent of the selected pod).
#[derive(Clone, Debug)]
struct CompiledRule<'s> {
    id: u32,
    pods: Vec<&'s Pod>,
    blocks: Vec<IpBlock>,
    ports: Vec<CompiledPort>,
}

fn compile_policy<'s>(
    index: &ClusterIndex<'s>,
    policy: &NetworkPolicy,
    direction: Direction,
    ids: &mut PolicyIdAllocator,
) -> Vec<CompiledRule<'s>> {
    policy
        .rules(direction)
        .iter()
        .enumerate()
        .map(|(rule_index, rule)| {
            let id = ids.id(&RuleRef {
                policy: policy.key(),
                direction,
                rule_index,
            });
            let mut pods: Vec<&Pod> = Vec::new();
            let mut blocks = Vec::new();
            if rule.peers.is_empty() {
                for cidr in ["0.0.0.0/0", "::/0"] {
                    if let Ok(cidr) = cidr.parse() {
                        blocks.push(IpBlock {
                            cidr,
                            except: Vec::new(),
                        });
                    }
                }
            }
            for peer in &rule.peers {
                match peer {
                    Peer::IpBlock(block) => blocks.push(block.clone()),
                    Peer::Pods {
                        pod_selector,
                        namespace_selector,
                    } => {
                        let namespaces: Vec<&str> = match namespace_selector {
                            Some(sel) => index
                                .namespace_labels
                                .iter()
                                .filter(|(_, labels)| sel.matches(labels))
                                .map(|(ns, _)| *ns)
                                .collect(),
                            None => vec![policy.namespace.as_str()],
                        };
                        for ns in namespaces {
                            for p in index.peers_by_ns.get(ns).into_iter().flatten() {
                                if pod_selector.as_ref().is_none_or(|s| s.matches(&p.labels)) {
                                    pods.push(p);
                                }
                            }
                        }
                    }
                }
            }
            pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            pods.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
            let ports = if rule.ports.is_empty() {
                vec![CompiledPort::Fixed {
                    protocol: PROTO_ANY,
                    min: 0,
                    max: u16::MAX,
                }]
            } else {
                rule.ports
                    .iter()
                    .map(|p| match &p.port {
                        None => CompiledPort::Fixed {
                            protocol: p.protocol.number(),
                            min: 0,
                            max: u16::MAX,
                        },
                        Some(PortRef::Number(n)) => CompiledPort::Fixed {
                            protocol: p.protocol.number(),
                            min: *n,
                            max: p.end_port.unwrap_or(*n),
                        },
                        Some(PortRef::Name(name)) => CompiledPort::Named {
                            protocol: p.protocol,
                            name: name.clone(),
                        },
                    })
                    .collect()
            };
            CompiledRule {
                id,
                pods,
                blocks,
                ports,
            }
        })
        .collect()
}

fn datapath_rule(id: u32, protocol: u8, min: u16, max: u16) -> Rule {
    Rule {
        protocol,
        port_min: min,
        port_max: max,
        policy_id: id,
        ..Rule::default()
    }
}

/// The rules of `rule`'s ports whose destination is `dest`: fixed ports, plus named
/// ports `dest` declares.
fn rules_for_destination(rule: &CompiledRule<'_>, dest: &Pod) -> Vec<Rule> {
    rule.ports
        .iter()
        .filter_map(|p| match p {
            CompiledPort::Fixed { protocol, min, max } => {
                Some(datapath_rule(rule.id, *protocol, *min, *max))
            }
            CompiledPort::Named { protocol, name } => dest
                .named_port(name, *protocol)
                .map(|n| datapath_rule(rule.id, protocol.number(), n, n)),
        })
        .collect()
}

fn add_rule(
    union: &mut PrefixUnion,
    index: &ClusterIndex<'_>,
    rule: &CompiledRule<'_>,
    pod: &Pod,
    direction: Direction,
) {
    let has_named = rule
        .ports
        .iter()
        .any(|p| matches!(p, CompiledPort::Named { .. }));
    if direction == Direction::Ingress || !has_named {
        // The destination is `pod` itself (ingress) or named ports play no part.
        let rules = rules_for_destination(rule, pod);
        if rules.is_empty() {
            return;
        }
        for peer in &rule.pods {
            for ip in &peer.ips {
                union.add(IpNet::from(*ip), &rules);
            }
        }
        for block in &rule.blocks {
            union.add_with_except(block.cidr, &block.except, &rules);
        }
        return;
    }
    // Egress with named ports: the destination pod decides what the name means.
    let fixed: Vec<Rule> = rule
        .ports
        .iter()
        .filter_map(|p| match p {
            CompiledPort::Fixed { protocol, min, max } => {
                Some(datapath_rule(rule.id, *protocol, *min, *max))
            }
            CompiledPort::Named { .. } => None,
        })
        .collect();
    for block in &rule.blocks {
        if !fixed.is_empty() {
            union.add_with_except(block.cidr, &block.except, &fixed);
        }
        for dest in index.all_peers() {
            for ip in &dest.ips {
                let inside =
                    block.cidr.contains(ip) && !block.except.iter().any(|e| e.contains(ip));
                if inside {
                    let rules = rules_for_destination(rule, dest);
                    if !rules.is_empty() {
                        union.add(IpNet::from(*ip), &rules);
                    }
                }
            }
        }
    }
    for dest in &rule.pods {
        let rules = rules_for_destination(rule, dest);
        if rules.is_empty() {
            continue;
        }
        for ip in &dest.ips {
            union.add(IpNet::from(*ip), &rules);
        }
    }
}
