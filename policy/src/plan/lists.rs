//! Rule lists shared by content: each distinct list is written once and counted by the
//! entries using it; a list whose count drops to zero is deleted after every write
//! that could still point at it, and its id is reused.

use datapath_common::{MAX_RULES_PER_LIST, Rule, RuleList, policy_key};
use ipnet::IpNet;

use super::{MapOp, Phases, Planner};
use crate::model::Direction;

impl Planner {
    pub(super) fn release(&mut self, rules: &[Rule], phases: &mut Phases) {
        if let Some(slot) = self.lists.get_mut(rules) {
            slot.1 = slot.1.saturating_sub(1);
            if slot.1 == 0 {
                phases.released.insert(rules.to_vec());
            }
        }
    }

    pub(super) fn put_entry(
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
        let (key, prefix_len) = policy_key(set, direction.as_u8(), net.addr(), net.prefix_len());
        writes.push(MapOp::PutEntry {
            key,
            prefix_len,
            list_id,
        });
    }
}
