//! The fixed words a flow line uses for the ABI's numeric codes: verdicts,
//! directions, protocols, tiers and the labels of verdicts no policy decided.
//! Every value written here is documented in the crate README.

use datapath_common::abi::{
    DIRECTION_INGRESS, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
    REASON_DEFAULT_ALLOW, REASON_DEFAULT_DENY, REASON_FRAGMENT_UNTRACKED, REASON_NO_RULE_MATCHED,
    REASON_POLICY, REASON_SPOOFED_SOURCE, VERDICT_ACCEPT, VERDICT_AUDIT,
};

/// `ACCEPT`, `AUDIT` (passed; audit-mode policies would have dropped it), or `DENY`
/// for anything else.
pub fn verdict(code: u8) -> &'static str {
    match code {
        VERDICT_ACCEPT => "ACCEPT",
        VERDICT_AUDIT => "AUDIT",
        _ => "DENY",
    }
}

/// `ingress` (into the pod) or `egress` (out of the pod).
pub fn direction(code: u8) -> &'static str {
    if code == DIRECTION_INGRESS {
        "ingress"
    } else {
        "egress"
    }
}

/// Protocol names as the incumbent writes them; `UNKNOWN` for other numbers.
pub fn protocol(code: u8) -> &'static str {
    match code {
        PROTO_TCP => "TCP",
        PROTO_UDP => "UDP",
        PROTO_ICMP => "ICMP",
        PROTO_ICMPV6 => "ICMPv6",
        PROTO_SCTP => "SCTP",
        _ => "UNKNOWN",
    }
}

/// The `Policy` value of an event whose `policy_id` is 0: why no policy decided.
/// These labels never contain `/`, so they never collide with a `namespace/name`.
pub fn reason(code: u8) -> &'static str {
    match code {
        REASON_POLICY => "unknown-policy",
        REASON_DEFAULT_ALLOW => "default-allow",
        REASON_NO_RULE_MATCHED => "no-rule-matched",
        REASON_DEFAULT_DENY => "default-deny",
        REASON_SPOOFED_SOURCE => "spoofed-source",
        REASON_FRAGMENT_UNTRACKED => "fragment-untracked",
        _ => "unknown-reason",
    }
}

/// The incumbent's `Tier` word for the compatibility format:
/// `NETWORK_POLICY` when a NetworkPolicy rule decided, or when the pod is isolated by
/// policies and none of their rules matched; `DEFAULT` when the pod's default state
/// decided (not isolated, or default-deny); `ERROR` when the packet was refused for a
/// datapath reason (spoofed source, untracked fragment) or the reason is unknown.
pub fn tier(policy_id: u32, reason_code: u8) -> &'static str {
    if policy_id != 0 {
        return "NETWORK_POLICY";
    }
    match reason_code {
        REASON_POLICY | REASON_NO_RULE_MATCHED => "NETWORK_POLICY",
        REASON_DEFAULT_ALLOW | REASON_DEFAULT_DENY => "DEFAULT",
        _ => "ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_deciding_layer() {
        let rows = [
            (7, REASON_POLICY, "NETWORK_POLICY"),
            (0, REASON_NO_RULE_MATCHED, "NETWORK_POLICY"),
            (0, REASON_DEFAULT_ALLOW, "DEFAULT"),
            (0, REASON_DEFAULT_DENY, "DEFAULT"),
            (0, REASON_SPOOFED_SOURCE, "ERROR"),
            (0, REASON_FRAGMENT_UNTRACKED, "ERROR"),
            (0, 200, "ERROR"),
        ];
        for (id, reason_code, want) in rows {
            assert_eq!(
                tier(id, reason_code),
                want,
                "policy {id} reason {reason_code}"
            );
        }
    }

    #[test]
    fn reason_labels_never_look_like_policy_names() {
        for code in 0..=255u8 {
            assert!(!reason(code).contains('/'));
        }
    }

    #[test]
    fn unknown_protocol_numbers_print_unknown() {
        assert_eq!(protocol(PROTO_UDP), "UDP");
        assert_eq!(protocol(47), "UNKNOWN");
    }
}
