//! Verdict events into the `EVENTS` ring: the event scope filter, wake-ups forced when
//! pending data crosses the threshold, and every loss counted (with the denied packets
//! it carried).

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use datapath_common::*;

use super::{
    Judged,
    globals::{counters, settings},
};
use crate::maps::EVENTS;

/// Bytes one event takes in the ring: 8-byte record header plus the event.
const RING_RECORD_BYTES: u64 = 8 + core::mem::size_of::<FlowEvent>() as u64;

impl Judged<'_> {
    /// Sends one event for this packet's flow `key`, its packets going `direction`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn emit(
        &self,
        key: &FlowKey,
        direction: u8,
        verdict: u8,
        decision: &Decision,
        count: u64,
        bytes: u64,
        time: u64,
    ) {
        emit_event(
            key,
            direction,
            verdict,
            decision.policy_id,
            decision.reason,
            count,
            bytes,
            self.len as u32,
            time,
        );
    }
}

/// Sends one event for the flow of `key`, its packets going `direction` (the key's own
/// `direction` is not read: no copy of the key to set it).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn emit_event(
    key: &FlowKey,
    direction: u8,
    verdict: u8,
    policy_id: u32,
    reason: u8,
    count: u64,
    bytes: u64,
    packet_len: u32,
    time: u64,
) {
    let Some(c) = counters() else { return };
    let (scope, threshold) =
        settings().map_or((0, 0), |s| (s.event_scope, s.wakeup_threshold_bytes));
    if !scope_admits(scope, verdict) {
        c.events_filtered_scope += 1;
        return;
    }
    let flags = if threshold == 0 {
        0
    } else {
        let pending = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
        if pending < threshold && pending + RING_RECORD_BYTES >= threshold {
            c.wakeups_forced += 1;
            BPF_RB_FORCE_WAKEUP as u64
        } else {
            BPF_RB_NO_WAKEUP as u64
        }
    };
    let Some(mut entry) = EVENTS.reserve::<FlowEvent>(0) else {
        c.events_lost += 1;
        c.denied_packets_lost += count * u64::from(verdict_passes(verdict) ^ 1);
        c.audited_packets_lost += count * u64::from(verdict_is_audit(verdict));
        return;
    };
    let (src, src_port, dst, dst_port) = flow_endpoints_going(key, direction);
    entry.write(FlowEvent {
        timestamp_ns: time,
        bytes,
        count: count as u32,
        ifindex: key.ifindex,
        policy_id,
        packet_len,
        src_addr: *src,
        dst_addr: *dst,
        src_port,
        dst_port,
        family: key.family,
        protocol: key.protocol,
        direction,
        verdict,
        reason,
        _pad8: 0,
        _pad16: 0,
        _pad32: 0,
    });
    entry.submit(flags);
    c.events_submitted += 1;
}
