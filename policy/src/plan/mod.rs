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
//!
//! Modules: `ops` (the writes and a pod's first record), `record` (record fields
//! from a resolution), `sets` (policy sets shared by content), `lists` (rule lists
//! shared by content), `disjoint` (when a direction may change in place).

mod disjoint;
mod lists;
mod ops;
mod record;
mod sets;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use datapath_common::{PodRecord, Rule, policy_key};
use ipnet::IpNet;

pub use self::ops::{MapOp, initial_pod_record};
use self::{
    disjoint::changes_are_disjoint,
    record::{addresses, lookups},
    sets::SharedSet,
};
use crate::model::{Direction, PodRef};
use crate::resolve::{PodState, Resolved, ResolvedPod};

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
    /// Where generations start: above any a previous agent left in pinned records,
    /// so its conntrack entries are re-evaluated under our rules.
    generation_base: u32,
}

/// Ops collected in their three phases.
#[derive(Default)]
struct Phases {
    writes: Vec<MapOp>,
    late_deletes: Vec<MapOp>,
    /// Lists whose reference count may have dropped to zero.
    released: BTreeSet<Vec<Rule>>,
}

fn dir_index(direction: Direction) -> usize {
    match direction {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
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

    /// Generations start above `max_pinned_generation` (the highest a previous agent's
    /// records hold), so every record written differs from every pinned one.
    pub fn with_generations_above(mut self, max_pinned_generation: Option<u32>) -> Self {
        self.generation_base = max_pinned_generation.map_or(0, |g| g.saturating_add(1));
        self
    }

    /// The record for an interface before anything is resolved for its pod (see
    /// [`initial_pod_record`]), in this planner's generations.
    pub fn initial_record(&self, mode: crate::EnforcingMode) -> PodRecord {
        PodRecord {
            generation: self.generation_base,
            ..initial_pod_record(mode)
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
        let (addr_flags, ipv4, ipv6) = addresses(want);
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
                generation: self.generation_base.wrapping_add(1),
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
        let uses_entries = |state: u8| {
            state == PodState::PoliciesApplied.as_u8() || state == PodState::PoliciesAudit.as_u8()
        };
        let in_place = Direction::BOTH.iter().all(|d| {
            let i = dir_index(*d);
            !uses_entries(old_states[i])
                || !states[i].uses_entries()
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
                let leaving = uses_entries(old_states[i]) && !states[i].uses_entries();
                for (net, rules) in old_e.iter().filter(|(n, _)| !new_e.contains_key(*n)) {
                    let (key, prefix_len) =
                        policy_key(set, direction.as_u8(), net.addr(), net.prefix_len());
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planner_starting_after_pinned_ids_never_reuses_them() {
        use crate::resolve::{DirectionRules, ResolvedPod};
        let entries: BTreeMap<IpNet, Vec<Rule>> = [(
            "10.0.0.0/8".parse().unwrap(),
            vec![Rule {
                policy_id: 2,
                port_max: u16::MAX,
                ..Rule::default()
            }],
        )]
        .into();
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
}
