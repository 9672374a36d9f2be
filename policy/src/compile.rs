//! The per-pod work of a resolution: which policies select a pod, each policy rule
//! compiled once into its peer set and ports, and the union of those rules into the
//! pod's LPM entries for one direction. Also answers, for incremental resolution,
//! whether a changed pod may matter to a policy rule.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use datapath_common::{MAX_RULES_PER_LIST, PROTO_ANY, Rule};
use ipnet::IpNet;

use crate::ids::{NODE_LOCAL_POLICY_ID, PolicyIdAllocator, PolicyTable, RuleRef};
use crate::model::{
    ClusterState, Direction, IpBlock, Labels, NetworkPolicy, Peer, Pod, PodRef, PolicyRef,
    PolicyRule, PortRef, Protocol,
};
use crate::prefixes::{PrefixUnion, RuleOrder};
use crate::resolve::{DirectionRules, EnforcingMode, PodState, ResolveOptions, Unenforceable};
use crate::tiers::{Tiers, fold_tiers};

/// Compiled rules by policy and direction, kept across resolutions.
pub(crate) type CompiledCache = HashMap<(PolicyRef, Direction), Arc<Vec<CompiledRule>>>;

/// Lookups built once per resolution.
pub(crate) struct ClusterIndex<'s> {
    state: &'s ClusterState,
    namespace_labels: BTreeMap<&'s str, Labels>,
    /// Pods that may stand in peer sets, by namespace.
    peers_by_ns: BTreeMap<&'s str, Vec<&'s Pod>>,
    policies_by_ns: HashMap<&'s str, Vec<&'s NetworkPolicy>>,
}

impl<'s> ClusterIndex<'s> {
    pub(crate) fn new(state: &'s ClusterState) -> Self {
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
            state,
            namespace_labels,
            peers_by_ns,
            policies_by_ns,
        }
    }

    fn all_peers(&self) -> impl Iterator<Item = &'s Pod> + '_ {
        self.peers_by_ns.values().flatten().copied()
    }

    /// Is `policy` in audit mode (its annotation, or its namespace's label)?
    pub(crate) fn in_audit_mode(&self, policy: &NetworkPolicy) -> bool {
        policy.spec.audit
            || self
                .namespace_labels
                .get(policy.namespace.as_str())
                .and_then(|labels| labels.get(crate::model::AUDIT_KEY))
                .is_some_and(|v| v == "true")
    }

    /// The policies of `pod`'s namespace that select it in `direction`.
    pub(crate) fn selecting(&self, pod: &Pod, direction: Direction) -> Vec<&'s NetworkPolicy> {
        self.policies_by_ns
            .get(pod.namespace.as_str())
            .map(|ps| {
                ps.iter()
                    .copied()
                    .filter(|p| p.affects(direction) && p.selects(pod))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A port of a rule: known now, or a container-port name resolved per destination pod.
#[derive(Clone, Debug)]
enum CompiledPort {
    Fixed { protocol: u8, min: u16, max: u16 },
    Named { protocol: Protocol, name: String },
}

/// A pod in a rule's peer set.
#[derive(Clone, Debug)]
struct PeerPod {
    pod: PodRef,
    ips: Vec<IpAddr>,
}

/// One rule with its peer set worked out (independent of the selected pod).
#[derive(Clone, Debug)]
pub(crate) struct CompiledRule {
    id: u32,
    peers: Vec<PeerPod>,
    blocks: Vec<IpBlock>,
    ports: Vec<CompiledPort>,
}

fn compile_policy(
    index: &ClusterIndex<'_>,
    policy: &NetworkPolicy,
    direction: Direction,
    ids: &mut PolicyIdAllocator,
) -> Vec<CompiledRule> {
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
                blocks.push(IpBlock {
                    cidr: IpNet::V4(Default::default()),
                    except: Vec::new(),
                });
                blocks.push(IpBlock {
                    cidr: IpNet::V6(Default::default()),
                    except: Vec::new(),
                });
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
            let peers = pods
                .into_iter()
                .map(|p| PeerPod {
                    pod: p.key(),
                    ips: p.ips.clone(),
                })
                .collect();
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
                peers,
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
fn rules_for_destination(rule: &CompiledRule, dest: &Pod) -> Vec<Rule> {
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
    rule: &CompiledRule,
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
        for peer in &rule.peers {
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
    for peer in &rule.peers {
        let Some(dest) = index.state.pods.get(&peer.pod) else {
            continue;
        };
        let rules = rules_for_destination(rule, dest);
        if rules.is_empty() {
            continue;
        }
        for ip in &peer.ips {
            union.add(IpNet::from(*ip), &rules);
        }
    }
}

/// Everything one resolution shares between pods.
pub(crate) struct PodPass<'s, 'a> {
    pub index: &'a ClusterIndex<'s>,
    pub compiled: &'a mut CompiledCache,
    pub ids: &'a mut PolicyIdAllocator,
    pub table: &'a PolicyTable,
    pub order: &'a RuleOrder,
    pub options: &'a ResolveOptions,
    /// This resolution's cluster tiers, folded into the pods' entries.
    pub tiers: &'a Tiers,
}

impl PodPass<'_, '_> {
    /// `pod`'s state, entries and isolating policies in `direction`; an
    /// `Unenforceable` when they do not fit the datapath.
    pub(crate) fn direction_rules(
        &mut self,
        pod: &Pod,
        direction: Direction,
    ) -> (DirectionRules, Option<Unenforceable>) {
        let (enforcing, audit): (Vec<_>, Vec<_>) = self
            .index
            .selecting(pod, direction)
            .into_iter()
            .partition(|p| !self.index.in_audit_mode(p));
        // Audit policies act only where nothing enforcing selects the pod, and never
        // in strict mode, whose default deny is enforcing.
        let audit_only = enforcing.is_empty()
            && !audit.is_empty()
            && self.options.mode == EnforcingMode::Standard;
        let selecting = if audit_only { audit } else { enforcing };
        let tiered = self
            .tiers
            .pods
            .get(&pod.key())
            .map(|t| t.direction(direction))
            .filter(|t| !t.is_empty());
        if selecting.is_empty() && self.options.mode == EnforcingMode::Standard && tiered.is_none()
        {
            return (DirectionRules::allow(), None);
        }
        let mut union = PrefixUnion::default();
        for policy in &selecting {
            let key = (policy.key(), direction);
            let rules = match self.compiled.get(&key) {
                Some(rules) => Arc::clone(rules),
                None => {
                    let rules = Arc::new(compile_policy(self.index, policy, direction, self.ids));
                    self.compiled.insert(key, Arc::clone(&rules));
                    rules
                }
            };
            for rule in rules.iter() {
                add_rule(&mut union, self.index, rule, pod, direction);
            }
        }
        let node_local = datapath_rule(NODE_LOCAL_POLICY_ID, PROTO_ANY, 0, u16::MAX);
        for addr in &self.options.node_addresses {
            union.add(IpNet::from(*addr), &[node_local]);
        }
        let mut entries = union.build(self.order);
        if let Some(tiered) = tiered {
            entries = fold_tiers(&entries, tiered, !selecting.is_empty(), self.options.mode);
        }
        let isolating: Vec<PolicyRef> = selecting.iter().map(|p| p.key()).collect();
        if let Some((prefix, list)) = entries.iter().find(|(_, l)| l.len() > MAX_RULES_PER_LIST) {
            let report = Unenforceable {
                pod: pod.key(),
                direction,
                prefix: *prefix,
                rules: list.len(),
                rule: self.table.rule(list[MAX_RULES_PER_LIST].policy_id).cloned(),
            };
            // Audit never drops: rules it cannot check leave the pod open.
            let denied = DirectionRules {
                state: if audit_only {
                    PodState::DefaultAllow
                } else {
                    PodState::DefaultDeny
                },
                entries: BTreeMap::new(),
                isolating,
            };
            return (denied, Some(report));
        }
        (
            DirectionRules {
                state: if audit_only {
                    PodState::PoliciesAudit
                } else {
                    PodState::PoliciesApplied
                },
                entries,
                isolating,
            },
            None,
        )
    }
}

/// Could `pod` (one version of a changed pod, in a namespace with `ns_labels`) be in
/// the peer set of `rule`, or decide a named port of it? Conservative: true may be
/// a false alarm, false never misses.
pub(crate) fn rule_may_involve(
    policy: &NetworkPolicy,
    direction: Direction,
    rule: &PolicyRule,
    pod: &Pod,
    ns_labels: &Labels,
) -> bool {
    if !pod.in_peer_sets() {
        return false;
    }
    let named = rule
        .ports
        .iter()
        .any(|p| matches!(p.port, Some(PortRef::Name(_))));
    if rule.peers.is_empty() {
        return direction == Direction::Egress && named;
    }
    rule.peers.iter().any(|peer| match peer {
        Peer::IpBlock(block) => {
            direction == Direction::Egress
                && named
                && pod.ips.iter().any(|ip| block.cidr.contains(ip))
        }
        Peer::Pods {
            pod_selector,
            namespace_selector,
        } => {
            let ns_ok = match namespace_selector {
                Some(sel) => sel.matches(ns_labels),
                None => pod.namespace == policy.namespace,
            };
            ns_ok && pod_selector.as_ref().is_none_or(|s| s.matches(&pod.labels))
        }
    })
}

/// Could `pod` matter to any rule of `policy` in `direction`?
pub(crate) fn policy_may_involve(
    policy: &NetworkPolicy,
    direction: Direction,
    pod: &Pod,
    ns_labels: &Labels,
) -> bool {
    policy
        .rules(direction)
        .iter()
        .any(|rule| rule_may_involve(policy, direction, rule, pod, ns_labels))
}

/// Is `pod` (in a namespace with `ns_labels`) selected by a pod peer of `rule`?
fn pod_peer_matches(
    policy: &NetworkPolicy,
    rule: &PolicyRule,
    pod: &Pod,
    ns_labels: &Labels,
) -> bool {
    pod.in_peer_sets()
        && rule.peers.iter().any(|peer| match peer {
            Peer::IpBlock(_) => false,
            Peer::Pods {
                pod_selector,
                namespace_selector,
            } => {
                let ns_ok = match namespace_selector {
                    Some(sel) => sel.matches(ns_labels),
                    None => pod.namespace == policy.namespace,
                };
                ns_ok && pod_selector.as_ref().is_none_or(|s| s.matches(&pod.labels))
            }
        })
}

/// Bring every compiled rule's peer set up to date with one changed pod (`new` is
/// `None` when it is gone), instead of compiling the rules again. Entries of
/// policies that no longer exist are dropped.
pub(crate) fn patch_compiled(
    cache: &mut CompiledCache,
    state: &ClusterState,
    key: &PodRef,
    new: Option<&Pod>,
) {
    let ns_labels = new.map(|n| state.namespace_labels(&n.namespace));
    cache.retain(|(policy_ref, direction), rules| {
        let Some(policy) = state.policies.get(policy_ref) else {
            return false;
        };
        for (i, spec) in policy.rules(*direction).iter().enumerate() {
            if !spec
                .peers
                .iter()
                .any(|peer| matches!(peer, Peer::Pods { .. }))
            {
                continue;
            }
            let Some(current) = rules.get(i) else {
                return false;
            };
            let member = match (new, &ns_labels) {
                (Some(pod), Some(labels)) if pod_peer_matches(policy, spec, pod, labels) => {
                    Some(pod)
                }
                _ => None,
            };
            let at = current.peers.binary_search_by(|p| p.pod.cmp(key));
            match (at, member) {
                (Ok(j), Some(pod)) => {
                    if current.peers[j].ips != pod.ips {
                        Arc::make_mut(rules)[i].peers[j].ips = pod.ips.clone();
                    }
                }
                (Ok(j), None) => {
                    Arc::make_mut(rules)[i].peers.remove(j);
                }
                (Err(j), Some(pod)) => {
                    Arc::make_mut(rules)[i].peers.insert(
                        j,
                        PeerPod {
                            pod: key.clone(),
                            ips: pod.ips.clone(),
                        },
                    );
                }
                (Err(_), None) => {}
            }
        }
        true
    });
}
