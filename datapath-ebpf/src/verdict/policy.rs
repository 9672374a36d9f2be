//! The policy decision for a new flow: the pod's state in that direction, the longest
//! entry holding the peer, and the first rule of its list admitting protocol and port.

use datapath_common::*;

use super::{
    Judged,
    lookup::{NO_LIST, longest_v4, longest_v6},
};
use crate::maps::RULE_LISTS;

impl Judged<'_> {
    /// The policy decision for a new flow of `key` opened in `direction`.
    #[inline(always)]
    pub(super) fn evaluate(&self, direction: u8, key: &FlowKey) -> Decision {
        let state = if direction == DIRECTION_INGRESS {
            self.pod.ingress_state
        } else {
            self.pod.egress_state
        };
        if state != STATE_POLICIES_APPLIED && state != STATE_POLICIES_AUDIT {
            return decide(state, None);
        }
        let selector_be = policy_selector(self.pod.policy_set, direction).to_be();
        let port = policy_port(direction, key.pod_port, key.peer_port);
        let lookups = self.pod.lookups[(direction & 1) as usize][family_index(key.family)];
        let found = if key.family == FAMILY_IPV4 {
            let a = &key.peer_addr;
            longest_v4(selector_be, &[a[0], a[1], a[2], a[3]], lookups)
        } else {
            longest_v6(selector_be, &key.peer_addr, lookups)
        };
        let list_id = if found == NO_LIST {
            None
        } else {
            Some(found as u32)
        };
        let admitted = match list_id {
            // SAFETY: map values stay valid for the duration of the program (RCU).
            Some(list_id) => match RULE_LISTS.get_ptr(&list_id) {
                Some(list) => first_admitting_rule(unsafe { &*list }, key.protocol, port),
                None => None,
            },
            None => None,
        };
        decide(state, admitted)
    }
}
