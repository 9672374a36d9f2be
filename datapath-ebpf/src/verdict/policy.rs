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
        let matched = if key.family == FAMILY_IPV4 {
            let a = &key.peer_addr;
            matching_rule_v4(
                selector_be,
                &[a[0], a[1], a[2], a[3]],
                lookups,
                key.protocol,
                port,
            )
        } else {
            matching_rule_v6(selector_be, &key.peer_addr, lookups, key.protocol, port)
        };
        decide(state, unpack(matched))
    }
}

/// What the rule subprograms return when no rule matches.
const NO_MATCH: i64 = -1;

/// The first rule matching `protocol` and `port` in the list of the longest entry
/// holding an IPv4 peer, packed as `action << 32 | policy_id`, or [`NO_MATCH`].
///
/// A BPF subprogram (one call per new flow, lookup and scan together): inlined, the
/// scan's exits each carried on into both the accept and the deny paths of the
/// caller, past the verifier's instruction limit, and the probes' keys past the
/// stack's.
#[inline(never)]
fn matching_rule_v4(selector_be: u32, addr: &[u8; 4], lookups: u8, protocol: u8, port: u16) -> i64 {
    first_matching_rule_of(longest_v4(selector_be, addr, lookups), protocol, port)
}

/// As [`matching_rule_v4`] for an IPv6 peer.
#[inline(never)]
fn matching_rule_v6(
    selector_be: u32,
    addr: &[u8; 16],
    lookups: u8,
    protocol: u8,
    port: u16,
) -> i64 {
    first_matching_rule_of(longest_v6(selector_be, addr, lookups), protocol, port)
}

/// The first rule of list `list` (or none, for [`NO_LIST`]) matching `protocol` and
/// `port`, packed as the subprograms return it.
#[inline(always)]
fn first_matching_rule_of(list: i64, protocol: u8, port: u16) -> i64 {
    if list == NO_LIST {
        return NO_MATCH;
    }
    // SAFETY: map values stay valid for the duration of the program (RCU).
    match RULE_LISTS.get_ptr(&(list as u32)) {
        Some(list) => match first_matching_rule(unsafe { &*list }, protocol, port) {
            Some(m) => (i64::from(m.action) << 32) | i64::from(m.policy_id),
            None => NO_MATCH,
        },
        None => NO_MATCH,
    }
}

/// The rule match the subprograms packed.
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
