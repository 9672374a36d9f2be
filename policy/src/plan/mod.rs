//! From successive `Resolved` results to the ordered map writes that move the
//! datapath from what is programmed to what is wanted, so that no packet ever sees a
//! state that neither the old nor the new policy would produce.
//!
//! Per changed pod, one of two strategies:
//! - in place (the common, cheap case): every direction that stays `PoliciesApplied`
//!   changes only prefixes that do not nest inside each other, so each peer address is
//!   affected by at most one write, which is atomic. Order: new rule lists, entry puts
//!   and deletes, then the pod record with a bumped generation (so conntrack
//!   re-evaluates against the finished entries), then entries of directions that left
//!   `PoliciesApplied`, and last the rule lists nothing uses any more.
//! - fresh policy set: otherwise all entries are written under a new policy-set id,
//!   the pod record flips to it, and the old set's entries are deleted.
//!
//! Pods with equal entries share one policy set (the pods of one workload usually
//! do), so the maps hold each distinct set of entries once. A pod whose new entries
//! some set already holds flips to that set; a shared set changes in place only when
//! all its pods move to the same new entries in one plan; the last pod leaving a set
//! deletes its entries.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use datapath_common::{
    FAMILY_IPV4, FAMILY_IPV6, MAX_POLICY_SET, MAX_RULES_PER_LIST, POD_HAS_IPV4, POD_HAS_IPV6,
    PodRecord, PolicyKey, Rule, RuleList, STATE_DEFAULT_ALLOW, STATE_DEFAULT_DENY,
};
use ipnet::IpNet;

use crate::model::{Direction, PodRef};
use crate::resolve::{EnforcingMode, PodState, Resolved, ResolvedPod};

/// One write to the datapath's maps. `prefix_len` is the peer prefix's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    PutRuleList {
        id: u32,
        list: Box<RuleList>,
    },
    PutEntry {
        key: PolicyKey,
        prefix_len: u32,
        list_id: u32,
    },
    PutPod {
        pod: PodRef,
        record: PodRecord,
    },
    DeleteEntry {
        key: PolicyKey,
        prefix_len: u32,
    },
    DeleteRuleList {
        id: u32,
    },
    DeletePod {
        pod: PodRef,
    },
}

/// The policy entry key and peer prefix length for `net` under `policy_set`.
pub fn policy_key(policy_set: u32, direction: Direction, net: IpNet) -> (PolicyKey, u32) {
    let mut addr = [0u8; 16];
    let family = match net.trunc() {
        IpNet::V4(n) => {
            addr[..4].copy_from_slice(&n.addr().octets());
            FAMILY_IPV4
        }
        IpNet::V6(n) => {
            addr.copy_from_slice(&n.addr().octets());
            FAMILY_IPV6
        }
    };
    let key = PolicyKey {
        policy_set_be: policy_set.to_be(),
        direction: direction.as_u8(),
        family,
        _pad: [0; 2],
        addr,
    };
    (key, u32::from(net.prefix_len()))
}

/// The record to write for a pod's interface before anything is resolved for it (it
/// may not have an address yet): default-allow in standard mode, default-deny in
/// strict mode.
pub fn initial_pod_record(mode: EnforcingMode) -> PodRecord {
    let state = match mode {
        EnforcingMode::Standard => STATE_DEFAULT_ALLOW,
        EnforcingMode::Strict => STATE_DEFAULT_DENY,
    };
    PodRecord {
        ingress_state: state,
        egress_state: state,
        ..PodRecord::default()
    }
}

/// What the planner believes a pod has in the maps.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Programmed {
    record: PodRecord,
    /// The resolution programmed: its entries are what the maps hold.
    source: Arc<ResolvedPod>,
}

impl Programmed {
    fn entries(&self, direction: Direction) -> &BTreeMap<IpNet, Vec<Rule>> {
        &self.source.direction(direction).entries
    }
}

/// The `PodRecord::lookups` flags for a pod's entries, `[ingress, egress]`.
fn lookups(entries: [&BTreeMap<IpNet, Vec<Rule>>; 2]) -> [[u8; 2]; 2] {
    let mut record = PodRecord::default();
    for direction in Direction::BOTH {
        for net in entries[dir_index(direction)].keys() {
            let family = if net.addr().is_ipv4() {
                FAMILY_IPV4
            } else {
                FAMILY_IPV6
            };
            record.note_entry(direction.as_u8(), family, u32::from(net.prefix_len()));
        }
    }
    record.lookups
}

fn dir_index(direction: Direction) -> usize {
    match direction {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

/// Remembers what is programmed and plans the writes to reach a new resolution.
#[derive(Debug, Default)]
pub struct Planner {
    pods: BTreeMap<PodRef, Programmed>,
    /// Rule list content -> (id, number of entries using it).
    lists: HashMap<Vec<Rule>, (u32, usize)>,
    next_list_id: u32,
    free_list_ids: Vec<u32>,
    live_sets: HashSet<u32>,
    next_set: u32,
    /// Policy sets by id: pods with equal entries share one.
    sets: HashMap<u32, SharedSet>,
    /// Set ids by the hash of their entries.
    sets_by_content: HashMap<u64, Vec<u32>>,
}

/// A policy set and the pods pointing at it.
#[derive(Debug)]
struct SharedSet {
    users: usize,
    /// `content_hash` of `content`.
    hash: u64,
    /// A resolution whose entries are the set's.
    content: Arc<ResolvedPod>,
}

fn content_hash(pod: &ResolvedPod) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    pod.ingress.entries.hash(&mut h);
    pod.egress.entries.hash(&mut h);
    h.finish()
}

fn same_content(a: &ResolvedPod, b: &ResolvedPod) -> bool {
    a.ingress.entries == b.ingress.entries && a.egress.entries == b.egress.entries
}

/// Ops collected in their three phases.
#[derive(Default)]
struct Phases {
    writes: Vec<MapOp>,
    late_deletes: Vec<MapOp>,
    /// Lists whose reference count may have dropped to zero.
    released: BTreeSet<Vec<Rule>>,
}

impl Planner {
    pub fn new() -> Self {
        Self {
            next_list_id: 1,
            next_set: 1,
            ..Self::default()
        }
    }

    /// A planner for maps a previous agent left pinned: its policy-set and rule-list
    /// ids start above the highest ones found there, so nothing it writes can land in
    /// a set or list that still holds stale entries.
    pub fn starting_after(max_policy_set: u32, max_list_id: u32) -> Self {
        Self {
            next_list_id: max_list_id.saturating_add(1).max(1),
            next_set: max_policy_set.saturating_add(1).max(1),
            ..Self::default()
        }
    }

    /// Pods the planner has programmed.
    pub fn programmed_pods(&self) -> impl Iterator<Item = (&PodRef, &PodRecord)> {
        self.pods.iter().map(|(p, prog)| (p, &prog.record))
    }

    /// The record the planner last wrote for `pod`, if it programmed the pod.
    pub fn record_of(&self, pod: &PodRef) -> Option<&PodRecord> {
        self.pods.get(pod).map(|p| &p.record)
    }

    /// Distinct rule lists currently programmed.
    pub fn rule_list_count(&self) -> usize {
        self.lists.len()
    }

    /// The ordered ops that move the maps from the last planned state to `resolved`.
    pub fn plan(&mut self, resolved: &Resolved) -> Vec<MapOp> {
        let mut phases = Phases::default();
        let gone: Vec<PodRef> = self
            .pods
            .keys()
            .filter(|p| !resolved.pods.contains_key(*p))
            .cloned()
            .collect();
        for pod in gone {
            if let Some(old) = self.pods.remove(&pod) {
                phases.late_deletes.push(MapOp::DeletePod { pod });
                self.leave_set(&old, &mut phases);
            }
        }
        for (pod, want) in &resolved.pods {
            self.plan_pod(pod, want, resolved, &mut phases);
        }
        let mut ops = phases.writes;
        ops.extend(phases.late_deletes);
        for content in phases.released {
            if let Some((id, 0)) = self.lists.get(&content).copied() {
                self.lists.remove(&content);
                self.free_list_ids.push(id);
                ops.push(MapOp::DeleteRuleList { id });
            }
        }
        ops
    }

    fn plan_pod(
        &mut self,
        pod: &PodRef,
        want: &Arc<ResolvedPod>,
        resolved: &Resolved,
        phases: &mut Phases,
    ) {
        let want_entries = [&want.ingress.entries, &want.egress.entries];
        let mut addr_flags = 0;
        let mut ipv4 = [0u8; 4];
        let mut ipv6 = [0u8; 16];
        if let Some(v4) = want.ipv4 {
            addr_flags |= POD_HAS_IPV4;
            ipv4 = v4.octets();
        }
        if let Some(v6) = want.ipv6 {
            addr_flags |= POD_HAS_IPV6;
            ipv6 = v6.octets();
        }
        let states = [want.ingress.state, want.egress.state];
        if self
            .pods
            .get(pod)
            .is_some_and(|old| Arc::ptr_eq(&old.source, want))
        {
            return;
        }
        let Some(old) = self.pods.get(pod).cloned() else {
            let set = self.join_set(want, phases);
            let record = PodRecord {
                policy_set: set,
                generation: 1,
                ingress_state: states[0].as_u8(),
                egress_state: states[1].as_u8(),
                addr_flags,
                _pad: 0,
                ipv4,
                ipv6,
                lookups: lookups(want_entries),
                // The datapath stamps the interface when it writes the record.
                ifindex: 0,
            };
            phases.writes.push(MapOp::PutPod {
                pod: pod.clone(),
                record,
            });
            let source = Arc::clone(want);
            self.pods.insert(pod.clone(), Programmed { record, source });
            return;
        };
        let mut record = old.record;
        record.ingress_state = states[0].as_u8();
        record.egress_state = states[1].as_u8();
        record.addr_flags = addr_flags;
        record.ipv4 = ipv4;
        record.ipv6 = ipv6;
        record.lookups = lookups(want_entries);
        let old_entries = [
            old.entries(Direction::Ingress),
            old.entries(Direction::Egress),
        ];
        let same_entries = old_entries[0] == want_entries[0] && old_entries[1] == want_entries[1];
        if same_entries && record == old.record {
            self.pods.insert(
                pod.clone(),
                Programmed {
                    record,
                    source: Arc::clone(want),
                },
            );
            return;
        }
        record.generation = old.record.generation.wrapping_add(1);
        let old_states = [old.record.ingress_state, old.record.egress_state];
        let applied = PodState::PoliciesApplied.as_u8();
        let in_place = Direction::BOTH.iter().all(|d| {
            let i = dir_index(*d);
            old_states[i] != applied
                || states[i] != PodState::PoliciesApplied
                || changes_are_disjoint(old_entries[i], want_entries[i])
        });
        // A shared set changes in place only when all its pods move to the same new
        // entries in this plan (the pods of one workload, usually).
        let shared = !same_entries
            && self.users_of(old.record.policy_set) > 1
            && !self.all_users_want(old.record.policy_set, want, resolved);
        let existing = if same_entries {
            None
        } else {
            self.find_set(want)
        };
        if existing == Some(old.record.policy_set) {
            // Our set was changed in place earlier in this plan, for all its pods.
            phases.writes.push(MapOp::PutPod {
                pod: pod.clone(),
                record,
            });
        } else if let Some(set) = existing {
            // Another pod's set already holds exactly these entries: flip to it.
            self.join_set(want, phases);
            record.policy_set = set;
            phases.writes.push(MapOp::PutPod {
                pod: pod.clone(),
                record,
            });
            self.leave_set(&old, phases);
        } else if in_place && !shared {
            let set = old.record.policy_set;
            for direction in Direction::BOTH {
                let i = dir_index(direction);
                let (old_e, new_e) = (old_entries[i], want_entries[i]);
                for (net, rules) in new_e {
                    if old_e.get(net) != Some(rules) {
                        self.put_entry(set, direction, *net, rules, &mut phases.writes);
                        if let Some(previous) = old_e.get(net) {
                            self.release(previous, phases);
                        }
                    }
                }
                let leaving = old_states[i] == applied && states[i] != PodState::PoliciesApplied;
                for (net, rules) in old_e.iter().filter(|(n, _)| !new_e.contains_key(*n)) {
                    let (key, prefix_len) = policy_key(set, direction, *net);
                    let op = MapOp::DeleteEntry { key, prefix_len };
                    if leaving {
                        phases.late_deletes.push(op)
                    } else {
                        phases.writes.push(op)
                    }
                    self.release(rules, phases);
                }
            }
            phases.writes.push(MapOp::PutPod {
                pod: pod.clone(),
                record,
            });
            self.rekey_set(set, want);
        } else {
            record.policy_set = self.join_set(want, phases);
            phases.writes.push(MapOp::PutPod {
                pod: pod.clone(),
                record,
            });
            self.leave_set(&old, phases);
        }
        let source = Arc::clone(want);
        self.pods.insert(pod.clone(), Programmed { record, source });
    }

    /// The set holding exactly `want`'s entries.
    fn find_set(&self, want: &ResolvedPod) -> Option<u32> {
        self.sets_by_content
            .get(&content_hash(want))?
            .iter()
            .copied()
            .find(|id| {
                self.sets
                    .get(id)
                    .is_some_and(|s| same_content(&s.content, want))
            })
    }

    /// Do all pods on set `id` want `want`'s entries in `resolved`?
    fn all_users_want(&self, id: u32, want: &ResolvedPod, resolved: &Resolved) -> bool {
        let hash = content_hash(want);
        self.pods
            .iter()
            .filter(|(_, p)| p.record.policy_set == id)
            .all(|(pod, _)| {
                resolved
                    .pods
                    .get(pod)
                    .is_some_and(|w| content_hash(w) == hash && same_content(w, want))
            })
    }

    fn users_of(&self, id: u32) -> usize {
        self.sets.get(&id).map_or(0, |s| s.users)
    }

    /// The set for `want`'s entries, one more pod using it; a new set (its entries
    /// written) when no pod has these entries yet.
    fn join_set(&mut self, want: &Arc<ResolvedPod>, phases: &mut Phases) -> u32 {
        if let Some(id) = self.find_set(want) {
            if let Some(set) = self.sets.get_mut(&id) {
                set.users += 1;
            }
            return id;
        }
        let id = self.fresh_set();
        for direction in Direction::BOTH {
            for (net, rules) in &want.direction(direction).entries {
                self.put_entry(id, direction, *net, rules, &mut phases.writes);
            }
        }
        let hash = content_hash(want);
        self.sets.insert(
            id,
            SharedSet {
                users: 1,
                hash,
                content: Arc::clone(want),
            },
        );
        self.sets_by_content.entry(hash).or_default().push(id);
        id
    }

    /// One pod less on `old`'s set; the last one out deletes its entries.
    fn leave_set(&mut self, old: &Programmed, phases: &mut Phases) {
        let id = old.record.policy_set;
        let Some(set) = self.sets.get_mut(&id) else {
            return;
        };
        set.users -= 1;
        if set.users > 0 {
            return;
        }
        let hash = set.hash;
        self.sets.remove(&id);
        self.forget_content(id, hash);
        self.delete_all_entries(old, phases);
        self.live_sets.remove(&id);
    }

    /// A set changed in place now holds `want`'s entries.
    fn rekey_set(&mut self, id: u32, want: &Arc<ResolvedPod>) {
        let hash = content_hash(want);
        let Some(set) = self.sets.get_mut(&id) else {
            return;
        };
        let old_hash = std::mem::replace(&mut set.hash, hash);
        set.content = Arc::clone(want);
        self.forget_content(id, old_hash);
        self.sets_by_content.entry(hash).or_default().push(id);
    }

    fn forget_content(&mut self, id: u32, hash: u64) {
        if let Some(ids) = self.sets_by_content.get_mut(&hash) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.sets_by_content.remove(&hash);
            }
        }
    }

    fn delete_all_entries(&mut self, old: &Programmed, phases: &mut Phases) {
        for direction in Direction::BOTH {
            for (net, rules) in old.entries(direction) {
                let (key, prefix_len) = policy_key(old.record.policy_set, direction, *net);
                phases
                    .late_deletes
                    .push(MapOp::DeleteEntry { key, prefix_len });
                self.release(rules, phases);
            }
        }
    }

    fn release(&mut self, rules: &[Rule], phases: &mut Phases) {
        if let Some(slot) = self.lists.get_mut(rules) {
            slot.1 = slot.1.saturating_sub(1);
            if slot.1 == 0 {
                phases.released.insert(rules.to_vec());
            }
        }
    }

    fn put_entry(
        &mut self,
        set: u32,
        direction: Direction,
        net: IpNet,
        rules: &[Rule],
        writes: &mut Vec<MapOp>,
    ) {
        let list_id = match self.lists.get_mut(rules) {
            Some(slot) => {
                slot.1 += 1;
                slot.0
            }
            None => {
                let id = self.free_list_ids.pop().unwrap_or_else(|| {
                    let id = self.next_list_id;
                    self.next_list_id += 1;
                    id
                });
                let mut list = RuleList {
                    len: rules.len().min(MAX_RULES_PER_LIST) as u32,
                    ..RuleList::default()
                };
                for (slot, rule) in list.rules.iter_mut().zip(rules) {
                    *slot = *rule;
                }
                writes.push(MapOp::PutRuleList {
                    id,
                    list: Box::new(list),
                });
                self.lists.insert(rules.to_vec(), (id, 1));
                id
            }
        };
        let (key, prefix_len) = policy_key(set, direction, net);
        writes.push(MapOp::PutEntry {
            key,
            prefix_len,
            list_id,
        });
    }

    /// The next unused policy-set id, wrapping within `1..=MAX_POLICY_SET`.
    fn fresh_set(&mut self) -> u32 {
        loop {
            let set = self.next_set;
            self.next_set = if set >= MAX_POLICY_SET { 1 } else { set + 1 };
            if (1..=MAX_POLICY_SET).contains(&set) && self.live_sets.insert(set) {
                return set;
            }
        }
    }
}

/// Do the prefixes that differ between `old` and `new` (added, removed or with other
/// rules) avoid nesting in one another? Then each address sees at most one change.
fn changes_are_disjoint(
    old: &BTreeMap<IpNet, Vec<Rule>>,
    new: &BTreeMap<IpNet, Vec<Rule>>,
) -> bool {
    let changed: Vec<IpNet> = old
        .iter()
        .filter(|(n, r)| new.get(*n) != Some(*r))
        .map(|(n, _)| *n)
        .chain(new.keys().filter(|n| !old.contains_key(*n)).copied())
        .collect();
    if changed.len() <= 1 {
        return true;
    }
    let mut by_family: [Vec<IpNet>; 2] = [Vec::new(), Vec::new()];
    for n in changed {
        by_family[usize::from(matches!(n.addr(), IpAddr::V6(_)))].push(n);
    }
    by_family.iter_mut().all(|nets| {
        // Sorted by address then length, a nesting pair shows up as a prefix that
        // contains the next one.
        nets.sort_by_key(|n| (n.network(), n.prefix_len()));
        let mut widest: Option<IpNet> = None;
        for n in nets.iter() {
            if let Some(w) = widest
                && w.contains(n)
            {
                return false;
            }
            if widest.is_none_or(|w| !w.contains(n)) {
                widest = Some(*n);
            }
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(id: u32) -> Vec<Rule> {
        vec![Rule {
            policy_id: id,
            port_max: u16::MAX,
            ..Rule::default()
        }]
    }

    fn map(items: &[(&str, u32)]) -> BTreeMap<IpNet, Vec<Rule>> {
        items
            .iter()
            .map(|(n, id)| (n.parse().unwrap(), rules(*id)))
            .collect()
    }

    #[test]
    fn disjoint_changes_allow_in_place_updates_and_nested_ones_do_not() {
        let old = map(&[("10.0.0.0/8", 2), ("10.0.0.1/32", 2)]);
        assert!(changes_are_disjoint(
            &old,
            &map(&[
                ("10.0.0.0/8", 2),
                ("10.0.0.1/32", 2),
                ("10.0.0.2/32", 3),
                ("11.0.0.1/32", 3)
            ])
        ));
        assert!(!changes_are_disjoint(
            &old,
            &map(&[("10.0.0.0/8", 3), ("10.0.0.1/32", 3)])
        ));
        assert!(!changes_are_disjoint(
            &old,
            &map(&[("10.0.0.0/8", 2), ("10.0.0.0/16", 3), ("10.0.0.1/32", 3)])
        ));
        assert!(changes_are_disjoint(&old, &map(&[("10.0.0.0/8", 2)])));
    }

    #[test]
    fn policy_key_is_big_endian_set_and_family_tagged() {
        let (key, len) = policy_key(
            0x0102_0304,
            Direction::Egress,
            "10.1.0.0/16".parse().unwrap(),
        );
        assert_eq!(key.policy_set_be.to_ne_bytes(), [1, 2, 3, 4]);
        assert_eq!(key.family, FAMILY_IPV4);
        assert_eq!(key.direction, datapath_common::DIRECTION_EGRESS);
        assert_eq!(&key.addr[..4], &[10, 1, 0, 0]);
        assert_eq!(len, 16);
    }

    #[test]
    fn a_planner_starting_after_pinned_ids_never_reuses_them() {
        use crate::resolve::{DirectionRules, ResolvedPod};
        let entries: BTreeMap<IpNet, Vec<Rule>> = map(&[("10.0.0.0/8", 2)]);
        let pod = ResolvedPod {
            pod: PodRef::new("x", "a"),
            ipv4: None,
            ipv6: None,
            interface: None,
            ingress: DirectionRules {
                state: PodState::PoliciesApplied,
                entries,
                isolating: Vec::new(),
            },
            egress: DirectionRules {
                state: PodState::DefaultAllow,
                entries: BTreeMap::new(),
                isolating: Vec::new(),
            },
        };
        let mut resolved = Resolved::default();
        resolved.pods.insert(pod.pod.clone(), Arc::new(pod));
        let ops = Planner::starting_after(41, 7).plan(&resolved);
        let list_ids: Vec<u32> = ops
            .iter()
            .filter_map(|op| match op {
                MapOp::PutRuleList { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(list_ids, vec![8]);
        let sets: Vec<u32> = ops
            .iter()
            .filter_map(|op| match op {
                MapOp::PutPod { record, .. } => Some(record.policy_set),
                _ => None,
            })
            .collect();
        assert_eq!(sets, vec![42]);
    }

    #[test]
    fn strict_mode_initial_record_denies_both_directions() {
        let r = initial_pod_record(EnforcingMode::Strict);
        assert_eq!(
            (r.ingress_state, r.egress_state),
            (STATE_DEFAULT_DENY, STATE_DEFAULT_DENY)
        );
        let r = initial_pod_record(EnforcingMode::Standard);
        assert_eq!(
            (r.ingress_state, r.egress_state),
            (STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW)
        );
    }
}
