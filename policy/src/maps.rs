//! An in-memory model of the datapath's policy maps (`POD_SLOTS`, the policy entries,
//! `RULE_LISTS`): applies `MapOp`s with the checks the kernel's ordering relies on,
//! and looks flows up the way the kernel does (longest prefix, then the first
//! admitting rule, then `decide`). Used by tests and by truth-table evaluators.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use datapath_common::{
    Decision, FAMILY_IPV4, FAMILY_IPV6, PodRecord, PolicyKey, RuleList, STATE_DEFAULT_ALLOW,
    decide, first_matching_rule, policy_key,
};
use ipnet::IpNet;

use crate::error::ApplyError;
use crate::model::{Direction, PodRef};
use crate::plan::MapOp;

/// The three policy maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapModel {
    pub pods: BTreeMap<PodRef, PodRecord>,
    /// (key, trie prefix length) -> rule list id.
    pub entries: BTreeMap<(PolicyKey, u32), u32>,
    pub lists: BTreeMap<u32, RuleList>,
    list_refs: HashMap<u32, usize>,
}

impl MapModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply `ops` in order.
    ///
    /// # Errors
    /// The first op that references a missing rule list, deletes a rule list still in
    /// use, or deletes something absent; ops before it stay applied.
    pub fn apply(&mut self, ops: &[MapOp]) -> Result<(), ApplyError> {
        for (index, op) in ops.iter().enumerate() {
            self.apply_one(index, op)?;
        }
        Ok(())
    }

    /// Apply one op; `index` is only used in errors.
    ///
    /// # Errors
    /// As `apply`.
    pub fn apply_one(&mut self, index: usize, op: &MapOp) -> Result<(), ApplyError> {
        match op {
            MapOp::PutRuleList { id, list } => {
                self.lists.insert(*id, **list);
            }
            MapOp::PutEntry {
                key,
                prefix_len,
                list_id,
            } => {
                if !self.lists.contains_key(list_id) {
                    return Err(ApplyError::MissingRuleList {
                        index,
                        list_id: *list_id,
                    });
                }
                *self.list_refs.entry(*list_id).or_default() += 1;
                if let Some(previous) = self.entries.insert((*key, *prefix_len), *list_id) {
                    self.unref(previous);
                }
            }
            MapOp::PutPod { pod, record } => {
                self.pods.insert(pod.clone(), *record);
            }
            MapOp::DeleteEntry { key, prefix_len } => {
                match self.entries.remove(&(*key, *prefix_len)) {
                    Some(previous) => self.unref(previous),
                    None => {
                        return Err(ApplyError::Missing {
                            index,
                            what: format!("entry {key:?}/{prefix_len}"),
                        });
                    }
                }
            }
            MapOp::DeleteRuleList { id } => {
                if self.list_refs.get(id).copied().unwrap_or(0) > 0 {
                    return Err(ApplyError::RuleListInUse {
                        index,
                        list_id: *id,
                    });
                }
                if self.lists.remove(id).is_none() {
                    return Err(ApplyError::Missing {
                        index,
                        what: format!("rule list {id}"),
                    });
                }
            }
            MapOp::DeletePod { pod } => {
                if self.pods.remove(pod).is_none() {
                    return Err(ApplyError::Missing {
                        index,
                        what: format!("pod {pod}"),
                    });
                }
            }
        }
        Ok(())
    }

    fn unref(&mut self, list_id: u32) {
        if let Some(n) = self.list_refs.get_mut(&list_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.list_refs.remove(&list_id);
            }
        }
    }

    /// The rule list of the longest prefix under the pod's policy set holding `peer`,
    /// among the stores the record says the datapath looks in (an entry the record
    /// does not flag is invisible to the kernel, and so here).
    pub fn longest_match(
        &self,
        record: &PodRecord,
        direction: Direction,
        peer: IpAddr,
    ) -> Option<&RuleList> {
        self.longest_match_entry(record, direction, peer)
            .map(|(_, list)| list)
    }

    /// `longest_match` with the peer prefix whose entry matched (what `explain`
    /// reports as the peer).
    pub fn longest_match_entry(
        &self,
        record: &PodRecord,
        direction: Direction,
        peer: IpAddr,
    ) -> Option<(IpNet, &RuleList)> {
        let (max, family) = if peer.is_ipv4() {
            (32, FAMILY_IPV4)
        } else {
            (128, FAMILY_IPV6)
        };
        (0..=max).rev().find_map(|len| {
            if !record.looks_up(direction.as_u8(), family, u32::from(len)) {
                return None;
            }
            let net = IpNet::new(peer, len).ok()?.trunc();
            let key = policy_key(
                record.policy_set,
                direction.as_u8(),
                net.addr(),
                net.prefix_len(),
            );
            self.entries
                .get(&key)
                .and_then(|id| self.lists.get(id))
                .map(|list| (net, list))
        })
    }

    /// The kernel's verdict for a new flow of `pod` in `direction` with `peer`, judged
    /// on `protocol` and destination `port`. A pod without a record has no program
    /// attached: default allow.
    pub fn decide(
        &self,
        pod: &PodRef,
        direction: Direction,
        peer: IpAddr,
        protocol: u8,
        port: u16,
    ) -> Decision {
        let Some(record) = self.pods.get(pod) else {
            return decide(STATE_DEFAULT_ALLOW, None);
        };
        let state = match direction {
            Direction::Ingress => record.ingress_state,
            Direction::Egress => record.egress_state,
        };
        let matched = self
            .longest_match(record, direction, peer)
            .and_then(|list| first_matching_rule(list, protocol, port));
        decide(state, matched)
    }
}
