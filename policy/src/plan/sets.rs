//! Policy sets shared by content: pods with equal entries point at one set, found by
//! the hash of its entries; a set is written when its first pod joins and its entries
//! deleted when its last pod leaves; a set changed in place is re-keyed to its new
//! content. Set ids wrap within `1..=MAX_POLICY_SET`, skipping live ones.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datapath_common::{MAX_POLICY_SET, policy_key};

use super::{MapOp, Phases, Planner, Programmed};
use crate::model::Direction;
use crate::resolve::{Resolved, ResolvedPod};

/// A policy set and the pods pointing at it.
#[derive(Debug)]
pub(super) struct SharedSet {
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

impl Planner {
    /// The set holding exactly `want`'s entries.
    pub(super) fn find_set(&self, want: &ResolvedPod) -> Option<u32> {
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
    pub(super) fn all_users_want(&self, id: u32, want: &ResolvedPod, resolved: &Resolved) -> bool {
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

    pub(super) fn users_of(&self, id: u32) -> usize {
        self.sets.get(&id).map_or(0, |s| s.users)
    }

    /// The set for `want`'s entries, one more pod using it; a new set (its entries
    /// written) when no pod has these entries yet.
    pub(super) fn join_set(&mut self, want: &Arc<ResolvedPod>, phases: &mut Phases) -> u32 {
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
    pub(super) fn leave_set(&mut self, old: &Programmed, phases: &mut Phases) {
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
    pub(super) fn rekey_set(&mut self, id: u32, want: &Arc<ResolvedPod>) {
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
                let (key, prefix_len) = policy_key(
                    old.record.policy_set,
                    direction.as_u8(),
                    net.addr(),
                    net.prefix_len(),
                );
                phases
                    .late_deletes
                    .push(MapOp::DeleteEntry { key, prefix_len });
                self.release(rules, phases);
            }
        }
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
