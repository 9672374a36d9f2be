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

/// The layer of the tier order that decided a verdict: the `Tier` key of a JSON line
/// and the `Tier` word of a compatibility line (the incumbent's five words).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Tier {
    /// A ClusterNetworkPolicy rule of the Admin tier (before NetworkPolicies).
    Admin,
    /// A NetworkPolicy rule, or the pod is isolated by NetworkPolicies and none of
    /// their rules matched.
    #[default]
    NetworkPolicy,
    /// A ClusterNetworkPolicy rule of the Baseline tier (for pods no NetworkPolicy
    /// selects in the direction).
    Baseline,
    /// The pod's default state: not isolated (allow) or default-deny.
    Default,
    /// Refused for a datapath reason (spoofed source, untracked fragment) or an
    /// unknown reason.
    Error,
}

impl Tier {
    /// Every tier, in the tier order.
    pub const ALL: [Tier; 5] = [
        Tier::Admin,
        Tier::NetworkPolicy,
        Tier::Baseline,
        Tier::Default,
        Tier::Error,
    ];

    /// `ADMIN`, `NETWORK_POLICY`, `BASELINE`, `DEFAULT` or `ERROR`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Admin => "ADMIN",
            Tier::NetworkPolicy => "NETWORK_POLICY",
            Tier::Baseline => "BASELINE",
            Tier::Default => "DEFAULT",
            Tier::Error => "ERROR",
        }
    }
}

/// The tier of a verdict. `rule` is the tier of the rule that decided, as the
/// enrichment snapshot names it (`None` when no rule decided, policy id 0); without
/// one the reason tells: `NETWORK_POLICY` when the pod is isolated by policies and
/// none of their rules matched, `DEFAULT` when the pod's default state decided (not
/// isolated, or default-deny), `ERROR` for a datapath reason (spoofed source,
/// untracked fragment) or an unknown reason.
#[inline]
pub fn tier(rule: Option<Tier>, reason_code: u8) -> Tier {
    if let Some(tier) = rule {
        return tier;
    }
    match reason_code {
        REASON_POLICY | REASON_NO_RULE_MATCHED => Tier::NetworkPolicy,
        REASON_DEFAULT_ALLOW | REASON_DEFAULT_DENY => Tier::Default,
        _ => Tier::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_deciding_layer() {
        let rows = [
            (Some(Tier::NetworkPolicy), REASON_POLICY, "NETWORK_POLICY"),
            (Some(Tier::Admin), REASON_POLICY, "ADMIN"),
            (Some(Tier::Baseline), REASON_POLICY, "BASELINE"),
            (None, REASON_POLICY, "NETWORK_POLICY"),
            (None, REASON_NO_RULE_MATCHED, "NETWORK_POLICY"),
            (None, REASON_DEFAULT_ALLOW, "DEFAULT"),
            (None, REASON_DEFAULT_DENY, "DEFAULT"),
            (None, REASON_SPOOFED_SOURCE, "ERROR"),
            (None, REASON_FRAGMENT_UNTRACKED, "ERROR"),
            (None, 200, "ERROR"),
        ];
        for (rule, reason_code, want) in rows {
            assert_eq!(
                tier(rule, reason_code).as_str(),
                want,
                "rule tier {rule:?} reason {reason_code}"
            );
        }
    }

    #[test]
    fn tier_words_are_the_incumbents_five() {
        let words: Vec<&str> = Tier::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            words,
            ["ADMIN", "NETWORK_POLICY", "BASELINE", "DEFAULT", "ERROR"]
        );
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
