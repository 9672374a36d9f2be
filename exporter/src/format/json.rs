//! The default line: one JSON object whose first keys are exactly those of the EKS
//! guide's example (`level` … `Verdict`, same names, order and value types), followed
//! by ours (`Direction` … `Isolated By`, then `Tier`); a flow record's line adds its
//! own keys after those (`Record` … `Reverse Bytes`). See the crate README for every
//! key.

use datapath_common::abi::FlowEvent;
use datapath_common::record::FlowRecord;

use super::write::{push_ip, push_json_str, push_u64};
use crate::enrich::Resolved;
use crate::labels;
use crate::timefmt::TIMESTAMP_LEN;

/// The `logger` value of the EKS guide's example.
pub const LOGGER: &str = "ebpf-client";
/// The `msg` value of the EKS guide's example.
pub const MSG: &str = "Flow Info: ";

/// Appends one JSON line for `ev`.
#[inline]
pub fn append_line(
    buf: &mut Vec<u8>,
    ev: &FlowEvent,
    ts: &[u8; TIMESTAMP_LEN],
    names: &Resolved<'_>,
) {
    append_keys(buf, ev, u64::from(ev.count.max(1)), ts, names);
    buf.extend_from_slice(b"\"}\n");
}

/// Appends one JSON line for a flow record: the keys of a verdict line for `ev` (the
/// record as an event of its first direction, [`FlowRecord::as_event`]), then the
/// record's (`Record`, `Start`, `End`, `Reverse Count`, `Reverse Bytes`).
#[inline]
pub fn append_record_line(
    buf: &mut Vec<u8>,
    record: &FlowRecord,
    ev: &FlowEvent,
    start: &[u8; TIMESTAMP_LEN],
    end: &[u8; TIMESTAMP_LEN],
    names: &Resolved<'_>,
) {
    append_keys(buf, ev, record.forward().0, end, names);
    buf.extend_from_slice(b"\",\"Record\":\"");
    buf.extend_from_slice(record.end.label().as_bytes());
    buf.extend_from_slice(b"\",\"Start\":\"");
    buf.extend_from_slice(start);
    buf.extend_from_slice(b"\",\"End\":\"");
    buf.extend_from_slice(end);
    let (packets, bytes) = record.reverse();
    buf.extend_from_slice(b"\",\"Reverse Count\":");
    push_u64(buf, packets);
    buf.extend_from_slice(b",\"Reverse Bytes\":");
    push_u64(buf, bytes);
    buf.extend_from_slice(b"}\n");
}

/// Every key of a verdict line (`Count` given apart: a record's may exceed `u32` or
/// be 0), leaving the last string value open.
#[inline]
fn append_keys(
    buf: &mut Vec<u8>,
    ev: &FlowEvent,
    count: u64,
    ts: &[u8; TIMESTAMP_LEN],
    names: &Resolved<'_>,
) {
    buf.extend_from_slice(b"{\"level\":\"info\",\"timestamp\":\"");
    buf.extend_from_slice(ts);
    buf.extend_from_slice(b"\",\"logger\":\"ebpf-client\",\"msg\":\"Flow Info: \",\"Src IP\":\"");
    push_ip(buf, ev.family, &ev.src_addr);
    buf.extend_from_slice(b"\",\"Src Port\":");
    push_u64(buf, u64::from(ev.src_port));
    buf.extend_from_slice(b",\"Dest IP\":\"");
    push_ip(buf, ev.family, &ev.dst_addr);
    buf.extend_from_slice(b"\",\"Dest Port\":");
    push_u64(buf, u64::from(ev.dst_port));
    buf.extend_from_slice(b",\"Proto\":\"");
    buf.extend_from_slice(labels::protocol(ev.protocol).as_bytes());
    buf.extend_from_slice(b"\",\"Verdict\":\"");
    buf.extend_from_slice(labels::verdict(ev.verdict).as_bytes());
    buf.extend_from_slice(b"\",\"Direction\":\"");
    buf.extend_from_slice(labels::direction(ev.direction).as_bytes());
    buf.extend_from_slice(b"\",\"Src Pod\":\"");
    if let Some(p) = names.src {
        buf.extend_from_slice(p.name.escaped().as_bytes());
        buf.extend_from_slice(b"\",\"Src Namespace\":\"");
        buf.extend_from_slice(p.namespace.escaped().as_bytes());
    } else {
        buf.extend_from_slice(b"\",\"Src Namespace\":\"");
    }
    buf.extend_from_slice(b"\",\"Dest Pod\":\"");
    if let Some(p) = names.dst {
        buf.extend_from_slice(p.name.escaped().as_bytes());
        buf.extend_from_slice(b"\",\"Dest Namespace\":\"");
        buf.extend_from_slice(p.namespace.escaped().as_bytes());
    } else {
        buf.extend_from_slice(b"\",\"Dest Namespace\":\"");
    }
    buf.extend_from_slice(b"\",\"Policy\":\"");
    push_json_str(buf, names.policy);
    buf.extend_from_slice(b"\",\"Count\":");
    push_u64(buf, count);
    buf.extend_from_slice(b",\"Bytes\":");
    push_u64(buf, ev.bytes);
    buf.extend_from_slice(b",\"Node\":\"");
    push_json_str(buf, names.node);
    buf.extend_from_slice(b"\",\"Peer Node\":\"");
    push_json_str(buf, names.peer_node);
    buf.extend_from_slice(b"\",\"Isolated By\":\"");
    push_json_str(buf, names.isolated_by);
    buf.extend_from_slice(b"\",\"Tier\":\"");
    buf.extend_from_slice(names.tier.as_str().as_bytes());
}

#[cfg(test)]
mod tests {
    //! Every byte of verdict and record lines against a reference built with the
    //! standard library's formatting (`Display` of integers and addresses) and a
    //! character-by-character JSON escape, over many varied events and names.

    use std::fmt::Write as _;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use datapath_common::abi::{
        DIRECTION_EGRESS, DIRECTION_INGRESS, FAMILY_IPV4, FAMILY_IPV6, FlowKey, PROTO_TCP,
        PROTO_UDP, REASON_NO_RULE_MATCHED, REASON_POLICY, VERDICT_ACCEPT, VERDICT_DENY,
    };
    use datapath_common::record::FlowEnd;

    use super::*;
    use crate::enrich::{EnrichmentSnapshot, PodInfo, PolicyInfo, event_addr};
    use crate::labels::Tier;

    fn escape(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
                c => out.push(c),
            }
        }
        out
    }

    fn ip_text(family: u8, bytes: &[u8; 16]) -> String {
        match event_addr(family, bytes) {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => a.to_string(),
        }
    }

    /// The keys of a verdict line up to the open `Tier` value, by the reference.
    fn reference_keys(ev: &FlowEvent, count: u64, ts: &str, names: &Resolved<'_>) -> String {
        let pod = |p: Option<&PodInfo>| {
            p.map_or((String::new(), String::new()), |p| {
                (escape(&p.name), escape(&p.namespace))
            })
        };
        let (src_pod, src_ns) = pod(names.src);
        let (dst_pod, dst_ns) = pod(names.dst);
        format!(
            concat!(
                r#"{{"level":"info","timestamp":"{}","logger":"ebpf-client","msg":"Flow Info: ","#,
                r#""Src IP":"{}","Src Port":{},"Dest IP":"{}","Dest Port":{},"Proto":"{}","#,
                r#""Verdict":"{}","Direction":"{}","Src Pod":"{}","Src Namespace":"{}","#,
                r#""Dest Pod":"{}","Dest Namespace":"{}","Policy":"{}","Count":{},"Bytes":{},"#,
                r#""Node":"{}","Peer Node":"{}","Isolated By":"{}","Tier":"{}"#
            ),
            ts,
            ip_text(ev.family, &ev.src_addr),
            ev.src_port,
            ip_text(ev.family, &ev.dst_addr),
            ev.dst_port,
            labels::protocol(ev.protocol),
            labels::verdict(ev.verdict),
            labels::direction(ev.direction),
            src_pod,
            src_ns,
            dst_pod,
            dst_ns,
            escape(names.policy),
            count,
            ev.bytes,
            escape(names.node),
            escape(names.peer_node),
            escape(names.isolated_by),
            names.tier.as_str(),
        )
    }

    fn snapshot() -> EnrichmentSnapshot {
        let mut s = EnrichmentSnapshot {
            node_name: "node-\"a\"".into(),
            ..Default::default()
        };
        let names = [
            ("web-7d9f8c6b5-x2k4q", "shop"),
            ("we\"b", "sh\\op"),
            ("tab\there\nnl\r\u{1}\u{1f}", "ns-\u{7f}-é-日本"),
            ("", ""),
            (
                "a-very-long-deployment-name-0123456789abcdefghij-7d9f8c6b5-x2k4q",
                "team-12",
            ),
        ];
        for i in 0..64u8 {
            let (name, ns) = names[usize::from(i) % names.len()];
            let info = PodInfo {
                name: format!("{name}{i}").into(),
                namespace: ns.into(),
                node: if i % 3 == 0 { "node-\"a\"" } else { "node-b\\" }.into(),
                isolated_by: ["ns/in-a,ns/\"in-b\"".into(), "ns/out".into()],
            };
            s.pods
                .insert(IpAddr::V4(Ipv4Addr::new(10, 0, i / 16, i)), info.clone());
            s.pods.insert(
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(i))),
                info,
            );
        }
        s.policies.insert(1, "shop/allow-\"web\"".into());
        s.policies
            .insert(2, PolicyInfo::cluster("deny-imds", Tier::Admin));
        s
    }

    /// Varied events: both families, known and unknown addresses, every verdict and
    /// direction, ports, counts and bytes over their whole range.
    fn events() -> Vec<FlowEvent> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let edge_u64 = [
            0,
            1,
            9,
            10,
            99,
            100,
            999,
            1000,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        let edge_u16 = [0, 1, 9, 10, 99, 100, 9999, 10000, 65535];
        (0..4000)
            .map(|i| {
                let r = next();
                let family = if r & 1 == 0 { FAMILY_IPV4 } else { FAMILY_IPV6 };
                let mut addr = || {
                    let r = next();
                    let mut a = [0u8; 16];
                    if family == FAMILY_IPV4 {
                        a[..4].copy_from_slice(&if r & 3 == 0 {
                            (r >> 8).to_le_bytes()[..4].try_into().unwrap()
                        } else {
                            [10, 0, (r >> 8) as u8 % 4, (r >> 16) as u8 % 64]
                        });
                        // Bytes past the fourth must not show.
                        a[4..].fill(0xaa);
                    } else if r & 3 == 0 {
                        a.copy_from_slice(&((u128::from(r) * 0x1_0000_0001) << 5).to_be_bytes());
                    } else {
                        a = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, (r >> 8) as u16 % 64).octets();
                    }
                    a
                };
                let (src_addr, dst_addr) = (addr(), addr());
                let r2 = next();
                FlowEvent {
                    family,
                    src_addr,
                    dst_addr,
                    src_port: if i % 7 == 0 {
                        edge_u16[(r2 % 9) as usize]
                    } else {
                        r2 as u16
                    },
                    dst_port: edge_u16[(r2 >> 8) as usize % 9],
                    protocol: if r2 & 0x10000 == 0 {
                        PROTO_TCP
                    } else {
                        PROTO_UDP
                    },
                    direction: if r2 & 0x20000 == 0 {
                        DIRECTION_INGRESS
                    } else {
                        DIRECTION_EGRESS
                    },
                    verdict: if r2 & 0x40000 == 0 {
                        VERDICT_ACCEPT
                    } else {
                        VERDICT_DENY
                    },
                    reason: if r2 & 0x80000 == 0 {
                        REASON_POLICY
                    } else {
                        REASON_NO_RULE_MATCHED
                    },
                    policy_id: (r2 >> 20) as u32 % 4,
                    count: if i % 5 == 0 {
                        u32::MAX
                    } else {
                        (r2 >> 24) as u32 % 3
                    },
                    bytes: if i % 3 == 0 {
                        edge_u64[(r2 >> 32) as usize % 10]
                    } else {
                        r2 >> (r2 & 63)
                    },
                    ..Default::default()
                }
            })
            .collect()
    }

    #[test]
    fn verdict_lines_equal_the_reference_byte_for_byte() {
        let snap = snapshot();
        let ts = *b"2023-05-30T16:05:32.573Z";
        let mut buf = Vec::new();
        for ev in events() {
            let names = snap.resolve(&ev);
            buf.clear();
            append_line(&mut buf, &ev, &ts, &names);
            let want = reference_keys(
                &ev,
                u64::from(ev.count.max(1)),
                "2023-05-30T16:05:32.573Z",
                &names,
            ) + "\"}\n";
            assert_eq!(String::from_utf8(buf.clone()).unwrap(), want, "{ev:?}");
        }
    }

    #[test]
    fn record_lines_equal_the_reference_byte_for_byte() {
        let snap = snapshot();
        let start = *b"2023-05-30T16:05:31.001Z";
        let end = *b"2023-05-30T16:05:32.573Z";
        let ends = [
            FlowEnd::Open,
            FlowEnd::TcpFin,
            FlowEnd::TcpRst,
            FlowEnd::Idle,
        ];
        let mut buf = Vec::new();
        for (i, ev) in events().into_iter().enumerate() {
            let record = FlowRecord {
                key: FlowKey {
                    family: ev.family,
                    protocol: ev.protocol,
                    pod_port: ev.src_port,
                    peer_port: ev.dst_port,
                    pod_addr: ev.src_addr,
                    peer_addr: ev.dst_addr,
                    ..Default::default()
                },
                origin_direction: ev.direction,
                policy_id: ev.policy_id,
                start_ns: 1,
                end_ns: 2,
                packets: [u64::from(ev.count), ev.bytes / 3],
                bytes: [ev.bytes, (i as u64).wrapping_mul(0x9e37_79b9)],
                end: ends[i % 4],
            };
            let rev = record.as_event();
            let names = snap.resolve(&rev);
            buf.clear();
            append_record_line(&mut buf, &record, &rev, &start, &end, &names);
            let (packets, bytes) = record.reverse();
            let want = format!(
                concat!(
                    "{}",
                    r#"","Record":"{}","Start":"2023-05-30T16:05:31.001Z","#,
                    r#""End":"2023-05-30T16:05:32.573Z","Reverse Count":{},"Reverse Bytes":{}}}"#,
                    "\n"
                ),
                reference_keys(&rev, record.forward().0, "2023-05-30T16:05:32.573Z", &names),
                record.end.label(),
                packets,
                bytes,
            );
            assert_eq!(String::from_utf8(buf.clone()).unwrap(), want, "{record:?}");
        }
    }

    #[test]
    fn names_needing_escapes_are_escaped_once_when_built() {
        let plain = crate::enrich::JsonText::from("web-1");
        assert_eq!(plain.escaped(), "web-1");
        let odd = crate::enrich::JsonText::from("a\"b\\c\n\u{1}é");
        assert_eq!(&*odd, "a\"b\\c\n\u{1}é");
        assert_eq!(odd.escaped(), "a\\\"b\\\\c\\n\\u0001é");
        assert_eq!(
            odd,
            crate::enrich::JsonText::from(String::from("a\"b\\c\n\u{1}é"))
        );
    }
}
