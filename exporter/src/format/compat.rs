//! The incumbent v1.3 layout, for consumers that parse its `msg` text:
//! `{"level":…,"ts":…,"logger":"ebpf-client","msg":"Flow Info: Src IP: … Src Port: … Dest IP: … Dest Port: … Proto … Verdict … Direction …, Tier …"}`.
//! IPv4 lines use `Proto X Verdict Y Direction Z, Tier T`; IPv6 lines use
//! `Proto: X Verdict: Y Direction: Z Tier: T`, as the incumbent does. Unlike the
//! incumbent, addresses keep every octet (`64.6.160.0`). `level` is `info` for DENY
//! (and AUDIT, a verdict the incumbent does not have) and `debug` for ACCEPT, as the
//! incumbent logs them. `Tier` is the incumbent's word for the deciding layer
//! (`ADMIN`, `NETWORK_POLICY`, `BASELINE`, `DEFAULT`, `ERROR`), as the JSON line's
//! `Tier` key. No pod, policy or count: use the JSON layout for those.

use datapath_common::abi::{FAMILY_IPV4, FlowEvent, VERDICT_ACCEPT};

use super::write::{push_ip, push_u64};
use crate::labels::{self, Tier};
use crate::timefmt::TIMESTAMP_LEN;

/// Appends one compatibility line for `ev`, decided in `tier`.
#[inline]
pub fn append_line(buf: &mut Vec<u8>, ev: &FlowEvent, ts: &[u8; TIMESTAMP_LEN], tier: Tier) {
    let head: &[u8] = if ev.verdict == VERDICT_ACCEPT {
        b"{\"level\":\"debug\",\"ts\":\""
    } else {
        b"{\"level\":\"info\",\"ts\":\""
    };
    buf.extend_from_slice(head);
    buf.extend_from_slice(ts);
    buf.extend_from_slice(b"\",\"logger\":\"ebpf-client\",\"msg\":\"Flow Info: Src IP: ");
    push_ip(buf, ev.family, &ev.src_addr);
    buf.extend_from_slice(b" Src Port: ");
    push_u64(buf, u64::from(ev.src_port));
    buf.extend_from_slice(b" Dest IP: ");
    push_ip(buf, ev.family, &ev.dst_addr);
    buf.extend_from_slice(b" Dest Port: ");
    push_u64(buf, u64::from(ev.dst_port));
    let v6 = ev.family != FAMILY_IPV4;
    buf.extend_from_slice(pick(v6, b" Proto: ", b" Proto "));
    buf.extend_from_slice(labels::protocol(ev.protocol).as_bytes());
    buf.extend_from_slice(pick(v6, b" Verdict: ", b" Verdict "));
    buf.extend_from_slice(labels::verdict(ev.verdict).as_bytes());
    buf.extend_from_slice(pick(v6, b" Direction: ", b" Direction "));
    buf.extend_from_slice(labels::direction(ev.direction).as_bytes());
    buf.extend_from_slice(pick(v6, b" Tier: ", b", Tier "));
    buf.extend_from_slice(tier.as_str().as_bytes());
    buf.extend_from_slice(b"\"}\n");
}

#[inline]
fn pick(v6: bool, if_v6: &'static [u8], if_v4: &'static [u8]) -> &'static [u8] {
    if v6 { if_v6 } else { if_v4 }
}
