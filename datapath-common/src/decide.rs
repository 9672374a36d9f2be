//! The verdict decision, written once: the kernel programs call these functions on
//! every new flow and host tests call the very same code. Everything here is
//! `#[inline(always)]` and loop-bounded so the BPF verifier accepts it.

use crate::abi::*;

/// A verdict with what decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: u8,
    /// The deciding policy, or 0 when `reason` says why none decided.
    pub policy_id: u32,
    pub reason: u8,
}

impl Decision {
    #[inline(always)]
    pub const fn accept(policy_id: u32, reason: u8) -> Self {
        Self {
            verdict: VERDICT_ACCEPT,
            policy_id,
            reason,
        }
    }

    #[inline(always)]
    pub const fn deny(policy_id: u32, reason: u8) -> Self {
        Self {
            verdict: VERDICT_DENY,
            policy_id,
            reason,
        }
    }

    /// Passes, reported as AUDIT: what audit-mode policies would have dropped.
    #[inline(always)]
    pub const fn audit(policy_id: u32, reason: u8) -> Self {
        Self {
            verdict: VERDICT_AUDIT,
            policy_id,
            reason,
        }
    }

    #[inline(always)]
    pub const fn is_accept(&self) -> bool {
        self.verdict == VERDICT_ACCEPT
    }

    /// Does the packet pass (ACCEPT or AUDIT)?
    #[inline(always)]
    pub const fn passes(&self) -> bool {
        self.verdict != VERDICT_DENY
    }
}

/// Does `rule` admit a packet of `protocol` to destination port `port`?
/// Protocols without ports (ICMP) carry port 0, so only port-less rules admit them.
#[inline(always)]
pub fn rule_admits(rule: &Rule, protocol: u8, port: u16) -> bool {
    (rule.protocol == PROTO_ANY || rule.protocol == protocol)
        && rule.port_min <= port
        && port <= rule.port_max
}

/// The rule that decides a packet: its policy id and its `RULE_*` action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleMatch {
    pub policy_id: u32,
    pub action: u8,
}

/// The first rule in `list` that admits the packet's protocol and port: it decides
/// (its `action`, `RULE_ACCEPT` or `RULE_DENY`).
#[inline(always)]
pub fn first_matching_rule(list: &RuleList, protocol: u8, port: u16) -> Option<RuleMatch> {
    let len = list.len as usize;
    let mut i = 0;
    while i < MAX_RULES_PER_LIST {
        if i >= len {
            break;
        }
        let rule = &list.rules[i];
        if rule_admits(rule, protocol, port) {
            return Some(RuleMatch {
                policy_id: rule.policy_id,
                action: rule.action,
            });
        }
        i += 1;
    }
    None
}

/// The verdict for a new flow given the pod's state in that direction and the rule
/// that decided it (if the longest matching prefix had one). A rule of policy id 0
/// stands for the enforcing mode's default: an allow is reported as default allow, a
/// deny as strict mode reports a pod no rule admits (no rule matched).
#[inline(always)]
pub fn decide(state: u8, matched: Option<RuleMatch>) -> Decision {
    if state == STATE_DEFAULT_ALLOW {
        return Decision::accept(0, REASON_DEFAULT_ALLOW);
    }
    // One test for both rule-checking states, and the verdict by arithmetic: a branch
    // on audit here would double the verifier's walk of everything after the decision.
    if state & !STATE_AUDIT_BIT != STATE_POLICIES_APPLIED {
        return Decision::deny(0, REASON_DEFAULT_DENY);
    }
    if let Some(m) = matched {
        let by_default = m.policy_id == 0;
        return if m.action == RULE_DENY {
            Decision::deny(
                m.policy_id,
                if by_default {
                    REASON_NO_RULE_MATCHED
                } else {
                    REASON_POLICY
                },
            )
        } else {
            Decision::accept(
                m.policy_id,
                if by_default {
                    REASON_DEFAULT_ALLOW
                } else {
                    REASON_POLICY
                },
            )
        };
    }
    Decision {
        // DENY for STATE_POLICIES_APPLIED, AUDIT for STATE_POLICIES_AUDIT.
        verdict: (state & STATE_AUDIT_BIT) << 1,
        policy_id: 0,
        reason: REASON_NO_RULE_MATCHED,
    }
}

/// The bit that makes `STATE_POLICIES_APPLIED` into `STATE_POLICIES_AUDIT`.
pub const STATE_AUDIT_BIT: u8 = 1;
const _: () = assert!(STATE_POLICIES_AUDIT == STATE_POLICIES_APPLIED | STATE_AUDIT_BIT);
const _: () = assert!(STATE_POLICIES_APPLIED & STATE_AUDIT_BIT == 0);
const _: () =
    assert!(VERDICT_DENY == 0 && VERDICT_ACCEPT == 1 && VERDICT_AUDIT == STATE_AUDIT_BIT << 1);
const _: () = assert!(FOLD_DIRECTION_AUDIT == VERDICT_AUDIT);

/// 1 when a packet with `verdict` passes (ACCEPT, AUDIT), 0 when it is dropped; no
/// branch, so the verifier walks one path for all three.
#[inline(always)]
pub const fn verdict_passes(verdict: u8) -> u8 {
    (verdict | (verdict >> 1)) & 1
}

/// 1 for AUDIT, 0 for ACCEPT and DENY; no branch.
#[inline(always)]
pub const fn verdict_is_audit(verdict: u8) -> u8 {
    verdict >> 1
}

/// The destination port a policy in `direction` judges: the pod's own port for
/// traffic into it, the peer's port for traffic out of it.
#[inline(always)]
pub const fn policy_port(direction: u8, pod_port: u16, peer_port: u16) -> u16 {
    if direction == DIRECTION_INGRESS {
        pod_port
    } else {
        peer_port
    }
}

/// ICMPv6 link control always passes and is never reported: neighbour discovery
/// (router/neighbour solicitation and advertisement, redirect: 133-137), without which
/// no IPv6 traffic works, and multicast listener discovery (MLD queries, reports and
/// done: 130-132, MLDv2 reports: 143), which every interface sends when it comes up.
#[inline(always)]
pub const fn is_icmpv6_neighbour_discovery(icmp_type: u8) -> bool {
    matches!(icmp_type, 130..=137 | 143)
}

/// ICMP errors that quote the packet that caused them.
#[inline(always)]
pub const fn is_icmp_error(family: u8, icmp_type: u8) -> bool {
    if family == FAMILY_IPV4 {
        // destination unreachable, time exceeded, parameter problem
        matches!(icmp_type, 3 | 11 | 12)
    } else {
        // destination unreachable, packet too big, time exceeded, parameter problem
        matches!(icmp_type, 1..=4)
    }
}

/// ICMP echo request or reply, whose identifier stands in for both ports.
#[inline(always)]
pub const fn is_icmp_echo(family: u8, icmp_type: u8) -> bool {
    if family == FAMILY_IPV4 {
        matches!(icmp_type, 0 | 8)
    } else {
        matches!(icmp_type, 128 | 129)
    }
}

/// IPv6 link-local sources (fe80::/10) are the pod's own even though the pod record
/// does not list them.
#[inline(always)]
pub const fn is_ipv6_link_local(addr: &[u8; 16]) -> bool {
    addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80
}

/// Is `src` one of the pod's addresses in `family`? Link-local IPv6 sources are the
/// pod's own even though the record does not list them.
#[inline(always)]
pub fn source_belongs_to_pod(pod: &PodRecord, family: u8, src: &[u8; 16]) -> bool {
    if family == FAMILY_IPV4 {
        pod.addr_flags & POD_HAS_IPV4 != 0
            && src[0] == pod.ipv4[0]
            && src[1] == pod.ipv4[1]
            && src[2] == pod.ipv4[2]
            && src[3] == pod.ipv4[3]
    } else {
        is_ipv6_link_local(src) || (pod.addr_flags & POD_HAS_IPV6 != 0 && *src == pod.ipv6)
    }
}

/// What to do with a DENY given the fold entry of its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoldStep {
    /// Send an event now, carrying this packet plus whatever was pending.
    Emit,
    /// Count the packet into the pending total; the flush sends it later.
    Accumulate,
}

/// Inside the window packets accumulate; the first packet after it sends at once.
#[inline(always)]
pub const fn fold_step(window_ns: u64, window_start_ns: u64, now_ns: u64) -> FoldStep {
    if now_ns.wrapping_sub(window_start_ns) < window_ns {
        FoldStep::Accumulate
    } else {
        FoldStep::Emit
    }
}

/// Should the flush send a fold's pending count now? Once its window has passed.
#[inline(always)]
pub const fn fold_due(window_ns: u64, window_start_ns: u64, now_ns: u64) -> bool {
    now_ns.wrapping_sub(window_start_ns) >= window_ns
}

/// A fold idle for two windows with nothing pending can go.
#[inline(always)]
pub const fn fold_expired(window_ns: u64, last_packet_ns: u64, now_ns: u64) -> bool {
    now_ns.wrapping_sub(last_packet_ns) >= window_ns.saturating_mul(2)
}

/// Does the event scope let an event with `verdict` through?
#[inline(always)]
pub const fn scope_admits(scope: u8, verdict: u8) -> bool {
    match scope {
        EVENT_SCOPE_ALL => true,
        EVENT_SCOPE_DENY => verdict != VERDICT_ACCEPT,
        _ => false,
    }
}

/// The key of the flow a packet `src:src_port → dst:dst_port` belongs to, seen on a
/// pod's interface in `direction` (into the pod: the pod is the destination).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn oriented_flow_key(
    ifindex: u32,
    family: u8,
    protocol: u8,
    direction: u8,
    src: &[u8; 16],
    src_port: u16,
    dst: &[u8; 16],
    dst_port: u16,
) -> FlowKey {
    let into_pod = direction == DIRECTION_INGRESS;
    FlowKey {
        ifindex,
        family,
        protocol,
        pod_port: if into_pod { dst_port } else { src_port },
        peer_port: if into_pod { src_port } else { dst_port },
        direction: 0,
        _pad: 0,
        pod_addr: if into_pod { *dst } else { *src },
        peer_addr: if into_pod { *src } else { *dst },
    }
}

/// Source and destination (address, port) of packets in `key.direction` of a flow.
#[inline(always)]
pub fn flow_endpoints(key: &FlowKey) -> (&[u8; 16], u16, &[u8; 16], u16) {
    flow_endpoints_going(key, key.direction)
}

/// Source and destination (address, port) of packets going `direction` in the flow of
/// `key` (whose own `direction` is not read).
#[inline(always)]
pub fn flow_endpoints_going(key: &FlowKey, direction: u8) -> (&[u8; 16], u16, &[u8; 16], u16) {
    if direction == DIRECTION_INGRESS {
        (&key.peer_addr, key.peer_port, &key.pod_addr, key.pod_port)
    } else {
        (&key.pod_addr, key.pod_port, &key.peer_addr, key.peer_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: u8, port_min: u16, port_max: u16, policy_id: u32) -> Rule {
        Rule {
            protocol,
            port_min,
            port_max,
            policy_id,
            ..Rule::default()
        }
    }

    fn with_action(action: u8, rule: Rule) -> Rule {
        Rule { action, ..rule }
    }

    /// The policy id of the first rule that decides, whatever its action.
    fn first_admitting_rule(list: &RuleList, protocol: u8, port: u16) -> Option<u32> {
        first_matching_rule(list, protocol, port).map(|m| m.policy_id)
    }

    fn accepted(policy_id: u32) -> Option<RuleMatch> {
        Some(RuleMatch {
            policy_id,
            action: RULE_ACCEPT,
        })
    }

    fn list(rules: &[Rule]) -> RuleList {
        let mut l = RuleList::default();
        l.rules[..rules.len()].copy_from_slice(rules);
        l.len = rules.len() as u32;
        l
    }

    #[test]
    fn first_admitting_rule_checks_protocol_and_port_range() {
        let l = list(&[rule(PROTO_TCP, 80, 81, 7), rule(PROTO_ANY, 0, u16::MAX, 9)]);
        assert_eq!(first_admitting_rule(&l, PROTO_TCP, 80), Some(7));
        assert_eq!(first_admitting_rule(&l, PROTO_TCP, 82), Some(9));
        assert_eq!(first_admitting_rule(&l, PROTO_UDP, 80), Some(9));
        let tcp_only = list(&[rule(PROTO_TCP, 80, 80, 7)]);
        assert_eq!(first_admitting_rule(&tcp_only, PROTO_UDP, 80), None);
        assert_eq!(first_admitting_rule(&tcp_only, PROTO_ICMP, 0), None);
    }

    #[test]
    fn rules_past_len_are_ignored() {
        let mut l = list(&[rule(PROTO_TCP, 80, 80, 7)]);
        l.rules[1] = rule(PROTO_ANY, 0, u16::MAX, 9);
        assert_eq!(first_admitting_rule(&l, PROTO_UDP, 53), None);
    }

    #[test]
    fn full_list_of_max_rules_is_searched_to_the_end() {
        let mut l = RuleList {
            len: MAX_RULES_PER_LIST as u32,
            ..RuleList::default()
        };
        for (i, r) in l.rules.iter_mut().enumerate() {
            *r = rule(PROTO_UDP, 1000 + i as u16, 1000 + i as u16, i as u32 + 1);
        }
        assert_eq!(first_admitting_rule(&l, PROTO_UDP, 1063), Some(64));
        assert_eq!(first_admitting_rule(&l, PROTO_UDP, 1064), None);
    }

    #[test]
    fn the_first_matching_rule_decides_with_its_action() {
        let admin_deny_web = with_action(RULE_DENY, rule(PROTO_TCP, 80, 80, 20));
        let np_allow = rule(PROTO_TCP, 0, u16::MAX, 7);
        let l = list(&[admin_deny_web, np_allow]);
        let deny = |policy_id| {
            Some(RuleMatch {
                policy_id,
                action: RULE_DENY,
            })
        };
        assert_eq!(first_matching_rule(&l, PROTO_TCP, 80), deny(20));
        assert_eq!(first_matching_rule(&l, PROTO_TCP, 443), accepted(7));
        assert_eq!(first_matching_rule(&l, PROTO_UDP, 80), None);
        assert_eq!(
            decide(STATE_POLICIES_APPLIED, deny(20)),
            Decision::deny(20, REASON_POLICY)
        );
        // An audit-mode pod still drops what an Admin rule denies.
        assert_eq!(
            decide(STATE_POLICIES_AUDIT, deny(20)),
            Decision::deny(20, REASON_POLICY)
        );
        // Policy id 0: the mode's default, folded into the list.
        assert_eq!(
            decide(STATE_POLICIES_APPLIED, accepted(0)),
            Decision::accept(0, REASON_DEFAULT_ALLOW)
        );
        assert_eq!(
            decide(STATE_POLICIES_APPLIED, deny(0)),
            Decision::deny(0, REASON_NO_RULE_MATCHED)
        );
    }

    #[test]
    fn decide_follows_pod_state() {
        assert_eq!(
            decide(STATE_DEFAULT_ALLOW, None),
            Decision::accept(0, REASON_DEFAULT_ALLOW)
        );
        assert_eq!(
            decide(STATE_DEFAULT_DENY, accepted(3)),
            Decision::deny(0, REASON_DEFAULT_DENY)
        );
        assert_eq!(
            decide(STATE_POLICIES_APPLIED, accepted(3)),
            Decision::accept(3, REASON_POLICY)
        );
        assert_eq!(
            decide(STATE_POLICIES_APPLIED, None),
            Decision::deny(0, REASON_NO_RULE_MATCHED)
        );
    }

    #[test]
    fn anti_spoofing_accepts_only_pod_addresses_and_v6_link_local() {
        let pod = PodRecord {
            addr_flags: POD_HAS_IPV4,
            ipv4: [10, 1, 0, 5],
            ..PodRecord::default()
        };
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[10, 1, 0, 5]);
        assert!(source_belongs_to_pod(&pod, FAMILY_IPV4, &v4));
        v4[3] = 6;
        assert!(!source_belongs_to_pod(&pod, FAMILY_IPV4, &v4));
        let mut ll = [0u8; 16];
        ll[0] = 0xfe;
        ll[1] = 0x80;
        assert!(source_belongs_to_pod(&pod, FAMILY_IPV6, &ll));
        assert!(!source_belongs_to_pod(&pod, FAMILY_IPV6, &[0x20; 16]));
    }

    #[test]
    fn fold_window_accumulates_then_emits() {
        assert_eq!(fold_step(1000, 5000, 5999), FoldStep::Accumulate);
        assert_eq!(fold_step(1000, 5000, 6000), FoldStep::Emit);
        assert!(!fold_due(1000, 5000, 5999));
        assert!(fold_due(1000, 5000, 6000));
        assert!(fold_expired(1000, 5000, 7000));
        assert!(!fold_expired(1000, 5000, 6999));
    }

    #[test]
    fn event_scope_filters_by_verdict() {
        assert!(scope_admits(EVENT_SCOPE_ALL, VERDICT_ACCEPT));
        assert!(!scope_admits(EVENT_SCOPE_DENY, VERDICT_ACCEPT));
        assert!(scope_admits(EVENT_SCOPE_DENY, VERDICT_DENY));
        assert!(!scope_admits(EVENT_SCOPE_NONE, VERDICT_DENY));
    }

    #[test]
    fn both_directions_of_a_flow_share_one_key() {
        let (pod, peer) = ([1u8; 16], [2u8; 16]);
        let out = oriented_flow_key(
            7,
            FAMILY_IPV4,
            PROTO_TCP,
            DIRECTION_EGRESS,
            &pod,
            4000,
            &peer,
            80,
        );
        let back = oriented_flow_key(
            7,
            FAMILY_IPV4,
            PROTO_TCP,
            DIRECTION_INGRESS,
            &peer,
            80,
            &pod,
            4000,
        );
        assert_eq!(out, back);
        assert_eq!((out.pod_port, out.peer_port, out.pod_addr), (4000, 80, pod));
        let mut ingress = out;
        ingress.direction = DIRECTION_INGRESS;
        assert_eq!(flow_endpoints(&ingress), (&peer, 80, &pod, 4000));
    }

    #[test]
    fn policy_port_is_the_destination_of_the_direction() {
        assert_eq!(policy_port(DIRECTION_INGRESS, 80, 40000), 80);
        assert_eq!(policy_port(DIRECTION_EGRESS, 40000, 53), 53);
    }
}
