//! Fixture lines for both layouts: exact bytes, so key order, value types and
//! address text are all pinned.

use std::net::Ipv6Addr;

use datapath_common::abi::{
    DIRECTION_EGRESS, DIRECTION_INGRESS, FAMILY_IPV4, FAMILY_IPV6, FlowEvent, PROTO_TCP, PROTO_UDP,
    REASON_DEFAULT_ALLOW, REASON_DEFAULT_DENY, REASON_NO_RULE_MATCHED, REASON_POLICY,
    REASON_SPOOFED_SOURCE, VERDICT_ACCEPT, VERDICT_DENY,
};
use exporter::enrich::{EnrichmentSnapshot, PodInfo, PolicyInfo};
use exporter::{LineFormat, LineFormatter, Tier};

/// 2023-05-30T16:05:32.573Z, the EKS guide's example time.
const GUIDE_MS: i64 = 1_685_462_732_573;

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a);
    out
}

fn v6(text: &str) -> [u8; 16] {
    text.parse::<Ipv6Addr>().unwrap().octets()
}

fn snapshot() -> EnrichmentSnapshot {
    let mut s = EnrichmentSnapshot {
        node_name: "ip-192-168-1-10".into(),
        ..Default::default()
    };
    let pod = |name: &str, ns: &str, node: &str| PodInfo {
        name: name.into(),
        namespace: ns.into(),
        node: node.into(),
        ..Default::default()
    };
    s.pods.insert(
        "192.168.87.155".parse().unwrap(),
        pod("client-7d9f", "default", "ip-192-168-1-10"),
    );
    s.pods.insert(
        "192.168.3.7".parse().unwrap(),
        pod("db-0", "data", "ip-192-168-1-20"),
    );
    s.pods.insert(
        "fd00::155".parse().unwrap(),
        PodInfo {
            isolated_by: ["default/deny-all,default/web".into(), "".into()],
            ..pod("client-7d9f", "default", "ip-192-168-1-10")
        },
    );
    s.policies.insert(12, "data/allow-client".into());
    s.policies.insert(
        ADMIN_RULE_ID,
        PolicyInfo::cluster("deny-egress-to-metadata", Tier::Admin),
    );
    s.policies.insert(
        BASELINE_RULE_ID,
        PolicyInfo::cluster("baseline-allow-dns", Tier::Baseline),
    );
    s
}

/// Cluster rule ids as the policy crate numbers them (from 0x8000_0000).
const ADMIN_RULE_ID: u32 = 0x8000_0000;
const BASELINE_RULE_ID: u32 = 0x8000_0001;

fn line(format: LineFormat, ev: &FlowEvent) -> String {
    let snap = snapshot();
    let mut buf = Vec::new();
    LineFormatter::new(format).append(&mut buf, ev, GUIDE_MS, &snap.resolve(ev));
    String::from_utf8(buf).unwrap()
}

fn guide_event() -> FlowEvent {
    FlowEvent {
        family: FAMILY_IPV4,
        protocol: PROTO_UDP,
        direction: DIRECTION_EGRESS,
        verdict: VERDICT_ACCEPT,
        reason: REASON_DEFAULT_ALLOW,
        src_addr: v4([192, 168, 87, 155]),
        src_port: 38971,
        dst_addr: v4([64, 6, 160, 0]),
        dst_port: 53,
        count: 1,
        bytes: 74,
        ..Default::default()
    }
}

fn denied_v6_fold() -> FlowEvent {
    FlowEvent {
        family: FAMILY_IPV6,
        protocol: PROTO_TCP,
        direction: DIRECTION_INGRESS,
        verdict: VERDICT_DENY,
        reason: REASON_NO_RULE_MATCHED,
        src_addr: v6("2001:db8::64:6:a0:0"),
        src_port: 51000,
        dst_addr: v6("fd00::155"),
        dst_port: 8080,
        count: 5,
        bytes: 400,
        ..Default::default()
    }
}

#[test]
fn json_line_of_the_guide_example_prints_every_octet() {
    assert_eq!(
        line(LineFormat::Json, &guide_event()),
        concat!(
            r#"{"level":"info","timestamp":"2023-05-30T16:05:32.573Z","logger":"ebpf-client","msg":"Flow Info: ","#,
            r#""Src IP":"192.168.87.155","Src Port":38971,"Dest IP":"64.6.160.0","Dest Port":53,"Proto":"UDP","Verdict":"ACCEPT","#,
            r#""Direction":"egress","Src Pod":"client-7d9f","Src Namespace":"default","Dest Pod":"","Dest Namespace":"","#,
            r#""Policy":"default-allow","Count":1,"Bytes":74,"Node":"ip-192-168-1-10","Peer Node":"","Isolated By":"","Tier":"DEFAULT"}"#,
            "\n"
        )
    );
}

#[test]
fn json_line_of_an_ipv4_accept_by_policy_names_the_policy_and_remote_node() {
    let ev = FlowEvent {
        dst_addr: v4([192, 168, 3, 7]),
        dst_port: 5432,
        protocol: PROTO_TCP,
        policy_id: 12,
        reason: REASON_POLICY,
        bytes: 60,
        ..guide_event()
    };
    assert_eq!(
        line(LineFormat::Json, &ev),
        concat!(
            r#"{"level":"info","timestamp":"2023-05-30T16:05:32.573Z","logger":"ebpf-client","msg":"Flow Info: ","#,
            r#""Src IP":"192.168.87.155","Src Port":38971,"Dest IP":"192.168.3.7","Dest Port":5432,"Proto":"TCP","Verdict":"ACCEPT","#,
            r#""Direction":"egress","Src Pod":"client-7d9f","Src Namespace":"default","Dest Pod":"db-0","Dest Namespace":"data","#,
            r#""Policy":"data/allow-client","Count":1,"Bytes":60,"Node":"ip-192-168-1-10","Peer Node":"ip-192-168-1-20","Isolated By":"","Tier":"NETWORK_POLICY"}"#,
            "\n"
        )
    );
}

#[test]
fn json_line_of_a_folded_ipv6_deny_carries_its_count() {
    assert_eq!(
        line(LineFormat::Json, &denied_v6_fold()),
        concat!(
            r#"{"level":"info","timestamp":"2023-05-30T16:05:32.573Z","logger":"ebpf-client","msg":"Flow Info: ","#,
            r#""Src IP":"2001:db8::64:6:a0:0","Src Port":51000,"Dest IP":"fd00::155","Dest Port":8080,"Proto":"TCP","Verdict":"DENY","#,
            r#""Direction":"ingress","Src Pod":"","Src Namespace":"","Dest Pod":"client-7d9f","Dest Namespace":"default","#,
            r#""Policy":"no-rule-matched","Count":5,"Bytes":400,"Node":"ip-192-168-1-10","Peer Node":"","Isolated By":"default/deny-all,default/web","Tier":"NETWORK_POLICY"}"#,
            "\n"
        )
    );
}

#[test]
fn json_lines_parse_with_the_guide_value_types() {
    for ev in [guide_event(), denied_v6_fold()] {
        let text = line(LineFormat::Json, &ev);
        assert!(text.ends_with('\n') && !text[..text.len() - 1].contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in [
            "level",
            "timestamp",
            "logger",
            "msg",
            "Src IP",
            "Dest IP",
            "Proto",
            "Verdict",
            "Direction",
            "Src Pod",
            "Src Namespace",
            "Dest Pod",
            "Dest Namespace",
            "Policy",
            "Node",
            "Peer Node",
            "Isolated By",
            "Tier",
        ] {
            assert!(v[key].is_string(), "{key} should be a string in {text}");
        }
        for key in ["Src Port", "Dest Port", "Count", "Bytes"] {
            assert!(v[key].is_u64(), "{key} should be a number in {text}");
        }
    }
}

#[test]
fn compat_line_for_ipv4_uses_the_v4_punctuation() {
    let ev = FlowEvent {
        verdict: VERDICT_DENY,
        reason: REASON_SPOOFED_SOURCE,
        ..guide_event()
    };
    assert_eq!(
        line(LineFormat::Compat, &ev),
        concat!(
            r#"{"level":"info","ts":"2023-05-30T16:05:32.573Z","logger":"ebpf-client","#,
            r#""msg":"Flow Info: Src IP: 192.168.87.155 Src Port: 38971 Dest IP: 64.6.160.0 Dest Port: 53 Proto UDP Verdict DENY Direction egress, Tier ERROR"}"#,
            "\n"
        )
    );
}

#[test]
fn compat_line_for_an_ipv4_accept_is_debug_with_the_default_tier() {
    assert_eq!(
        line(LineFormat::Compat, &guide_event()),
        concat!(
            r#"{"level":"debug","ts":"2023-05-30T16:05:32.573Z","logger":"ebpf-client","#,
            r#""msg":"Flow Info: Src IP: 192.168.87.155 Src Port: 38971 Dest IP: 64.6.160.0 Dest Port: 53 Proto UDP Verdict ACCEPT Direction egress, Tier DEFAULT"}"#,
            "\n"
        )
    );
}

#[test]
fn compat_line_for_ipv6_uses_the_v6_punctuation() {
    assert_eq!(
        line(LineFormat::Compat, &denied_v6_fold()),
        concat!(
            r#"{"level":"info","ts":"2023-05-30T16:05:32.573Z","logger":"ebpf-client","#,
            r#""msg":"Flow Info: Src IP: 2001:db8::64:6:a0:0 Src Port: 51000 Dest IP: fd00::155 Dest Port: 8080 Proto: TCP Verdict: DENY Direction: ingress Tier: NETWORK_POLICY"}"#,
            "\n"
        )
    );
}

/// One row of the tier table: an event's policy id, reason and verdict, and what its
/// line says.
struct TierRow {
    what: &'static str,
    policy_id: u32,
    reason: u8,
    verdict: u8,
    policy: &'static str,
    tier: &'static str,
    compat_tier: &'static str,
}

const TIER_ROWS: [TierRow; 8] = [
    TierRow {
        what: "NetworkPolicy rule allowed",
        policy_id: 12,
        reason: REASON_POLICY,
        verdict: VERDICT_ACCEPT,
        policy: "data/allow-client",
        tier: "NETWORK_POLICY",
        compat_tier: "NETWORK_POLICY",
    },
    TierRow {
        what: "Admin rule denied",
        policy_id: ADMIN_RULE_ID,
        reason: REASON_POLICY,
        verdict: VERDICT_DENY,
        policy: "ClusterNetworkPolicy/deny-egress-to-metadata",
        tier: "ADMIN",
        compat_tier: "ADMIN",
    },
    TierRow {
        what: "Baseline rule allowed",
        policy_id: BASELINE_RULE_ID,
        reason: REASON_POLICY,
        verdict: VERDICT_ACCEPT,
        policy: "ClusterNetworkPolicy/baseline-allow-dns",
        tier: "BASELINE",
        compat_tier: "BASELINE",
    },
    TierRow {
        what: "isolated, no rule matched",
        policy_id: 0,
        reason: REASON_NO_RULE_MATCHED,
        verdict: VERDICT_DENY,
        policy: "no-rule-matched",
        tier: "NETWORK_POLICY",
        compat_tier: "NETWORK_POLICY",
    },
    TierRow {
        what: "not isolated",
        policy_id: 0,
        reason: REASON_DEFAULT_ALLOW,
        verdict: VERDICT_ACCEPT,
        policy: "default-allow",
        tier: "DEFAULT",
        compat_tier: "DEFAULT",
    },
    TierRow {
        what: "default-deny",
        policy_id: 0,
        reason: REASON_DEFAULT_DENY,
        verdict: VERDICT_DENY,
        policy: "default-deny",
        tier: "DEFAULT",
        compat_tier: "DEFAULT",
    },
    TierRow {
        what: "spoofed source",
        policy_id: 0,
        reason: REASON_SPOOFED_SOURCE,
        verdict: VERDICT_DENY,
        policy: "spoofed-source",
        tier: "ERROR",
        compat_tier: "ERROR",
    },
    TierRow {
        what: "id not in the snapshot",
        policy_id: 0x8000_0007,
        reason: REASON_POLICY,
        verdict: VERDICT_DENY,
        policy: "unknown-policy",
        tier: "NETWORK_POLICY",
        compat_tier: "NETWORK_POLICY",
    },
];

fn tier_event(row: &TierRow) -> FlowEvent {
    FlowEvent {
        policy_id: row.policy_id,
        reason: row.reason,
        verdict: row.verdict,
        ..guide_event()
    }
}

#[test]
fn json_line_ends_with_the_deciding_tier_right_after_isolated_by() {
    for row in &TIER_ROWS {
        let text = line(LineFormat::Json, &tier_event(row));
        let tail = format!("\"Isolated By\":\"\",\"Tier\":\"{}\"}}\n", row.tier);
        assert!(text.ends_with(&tail), "{}: {text}", row.what);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["Policy"], row.policy, "{}: {text}", row.what);
        assert_eq!(v["Tier"], row.tier, "{}: {text}", row.what);
    }
}

#[test]
fn compat_line_names_the_same_tier_in_its_tier_word() {
    for row in &TIER_ROWS {
        let text = line(LineFormat::Compat, &tier_event(row));
        let tail = format!(", Tier {}\"}}\n", row.compat_tier);
        assert!(text.ends_with(&tail), "{}: {text}", row.what);
        assert!(!text.contains("\"Tier\""), "no Tier key in compat: {text}");
    }
}

#[test]
fn a_cluster_rule_deny_names_no_isolating_network_policy() {
    // fd00::155 is isolated by two NetworkPolicies on ingress (see `snapshot`).
    let mut ev = FlowEvent {
        policy_id: ADMIN_RULE_ID,
        reason: REASON_POLICY,
        ..denied_v6_fold()
    };
    let admin = line(LineFormat::Json, &ev);
    assert!(
        admin.ends_with("\"Isolated By\":\"\",\"Tier\":\"ADMIN\"}\n"),
        "an Admin deny is final, no NetworkPolicy rule would admit the packet: {admin}"
    );
    ev.policy_id = 0;
    ev.reason = REASON_NO_RULE_MATCHED;
    let np = line(LineFormat::Json, &ev);
    assert!(
        np.ends_with(
            "\"Isolated By\":\"default/deny-all,default/web\",\"Tier\":\"NETWORK_POLICY\"}\n"
        ),
        "{np}"
    );
}
