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
        push_json_str(buf, &p.name);
        buf.extend_from_slice(b"\",\"Src Namespace\":\"");
        push_json_str(buf, &p.namespace);
    } else {
        buf.extend_from_slice(b"\",\"Src Namespace\":\"");
    }
    buf.extend_from_slice(b"\",\"Dest Pod\":\"");
    if let Some(p) = names.dst {
        push_json_str(buf, &p.name);
        buf.extend_from_slice(b"\",\"Dest Namespace\":\"");
        push_json_str(buf, &p.namespace);
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
