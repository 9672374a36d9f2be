//! The policy decision for a new flow: the pod's state in that direction, the longest
//! entry holding the peer, and the first rule of its list admitting protocol and port,
//! whose action (accept or deny) decides.

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
        // Both rule-checking states in one test (see `decide`).
        if state & !STATE_AUDIT_BIT != STATE_POLICIES_APPLIED {
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
        let matched = if found == NO_LIST {
            None
        } else {
            unpack(first_matching_rule_of(found as u32, key.protocol, port))
        };
        decide(state, matched)
    }
}

/// What [`first_matching_rule_of`] returns when no rule matches.
const NO_MATCH: i64 = -1;

/// The first rule of list `list_id` matching `protocol` and `port`, packed as
/// `action << 32 | policy_id`, or [`NO_MATCH`].
///
/// A BPF subprogram rather than inlined: the scan has one exit per rule, and inlined,
/// each exit carried on into both the accept and the deny paths of the caller, past
/// the verifier's instruction limit.
#[inline(never)]
fn first_matching_rule_of(list_id: u32, protocol: u8, port: u16) -> i64 {
    // SAFETY: map values stay valid for the duration of the program (RCU).
    match RULE_LISTS.get_ptr(&list_id) {
        Some(list) => match first_matching_rule(unsafe { &*list }, protocol, port) {
            Some(m) => (i64::from(m.action) << 32) | i64::from(m.policy_id),
            None => NO_MATCH,
        },
        None => NO_MATCH,
    }
}

/// The rule match [`first_matching_rule_of`] packed.
#[inline(always)]
fn unpack(packed: i64) -> Option<RuleMatch> {
    if packed < 0 {
        return None;
    }
    Some(RuleMatch {
        policy_id: packed as u32,
        action: (packed >> 32) as u8,
    })
}
