//! Flow records as userspace reports them from conntrack: one flow's packets and
//! bytes both ways over an interval, and why the record was made (the flow is still
//! open, or how it ended). Pure data and the pure rule deciding a flow's end, so
//! host tests check the same logic the agent's sweep runs.

use crate::abi::{
    CtValue, FlowEvent, FlowKey, REASON_DEFAULT_ALLOW, REASON_POLICY, VERDICT_ACCEPT,
};
use crate::decide::flow_endpoints;

/// Why a record was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowEnd {
    /// The flow is still open: a periodic record of what passed since the last one.
    Open,
    /// TCP FIN passed both ways.
    TcpFin,
    /// TCP RST passed (either way).
    TcpRst,
    /// No packet for longer than the conntrack idle period.
    Idle,
}

impl FlowEnd {
    /// The word flow lines carry (`Record` key).
    pub const fn label(self) -> &'static str {
        match self {
            FlowEnd::Open => "open",
            FlowEnd::TcpFin => "fin",
            FlowEnd::TcpRst => "rst",
            FlowEnd::Idle => "idle",
        }
    }

    /// Is this the flow's last record?
    pub const fn is_final(self) -> bool {
        !matches!(self, FlowEnd::Open)
    }
}

/// Has the flow in `ct` ended at `now_ns` (CLOCK_MONOTONIC), and how: a TCP close is
/// taken first (it says more than the idleness that follows it), then idleness
/// longer than `idle_ns`.
pub const fn flow_end(ct: &CtValue, now_ns: u64, idle_ns: u64) -> Option<FlowEnd> {
    if ct.rst_seen != 0 {
        Some(FlowEnd::TcpRst)
    } else if ct.tcp_closed() {
        Some(FlowEnd::TcpFin)
    } else if now_ns.saturating_sub(ct.last_seen_ns) > idle_ns {
        Some(FlowEnd::Idle)
    } else {
        None
    }
}

/// One record: a flow's packets and bytes both ways from `start_ns` to `end_ns`
/// (CLOCK_MONOTONIC, the datapath's coarse clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// The conntrack key (oriented from the pod, `direction` 0).
    pub key: FlowKey,
    /// The direction of the flow's first packet: its initiator is the record's source.
    pub origin_direction: u8,
    /// The policy that admitted the flow, 0 when the pod was not isolated.
    pub policy_id: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Wire packets and frame bytes in this record, by direction as seen from the pod.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub end: FlowEnd,
}

impl FlowRecord {
    /// Packets and bytes from the initiator to the responder.
    pub fn forward(&self) -> (u64, u64) {
        let d = (self.origin_direction & 1) as usize;
        (self.packets[d], self.bytes[d])
    }

    /// Packets and bytes from the responder back to the initiator.
    pub fn reverse(&self) -> (u64, u64) {
        let d = ((self.origin_direction ^ 1) & 1) as usize;
        (self.packets[d], self.bytes[d])
    }

    /// The record as a verdict event of its flow's first direction: source and
    /// destination are initiator and responder, `count`/`bytes` the forward share,
    /// `timestamp_ns` the record's end, ACCEPT by the admitting policy.
    pub fn as_event(&self) -> FlowEvent {
        let mut key = self.key;
        key.direction = self.origin_direction;
        let (src, src_port, dst, dst_port) = flow_endpoints(&key);
        let (packets, bytes) = self.forward();
        FlowEvent {
            timestamp_ns: self.end_ns,
            bytes,
            count: packets.min(u64::from(u32::MAX)) as u32,
            ifindex: key.ifindex,
            policy_id: self.policy_id,
            packet_len: 0,
            src_addr: *src,
            dst_addr: *dst,
            src_port,
            dst_port,
            family: key.family,
            protocol: key.protocol,
            direction: self.origin_direction,
            verdict: VERDICT_ACCEPT,
            reason: if self.policy_id == 0 {
                REASON_DEFAULT_ALLOW
            } else {
                REASON_POLICY
            },
            _pad8: 0,
            _pad16: 0,
            _pad32: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{DIRECTION_EGRESS, DIRECTION_INGRESS, FAMILY_IPV4, PROTO_TCP};

    fn ct(last_seen_ns: u64) -> CtValue {
        CtValue {
            last_seen_ns,
            ..CtValue::default()
        }
    }

    #[test]
    fn a_flow_ends_by_rst_then_fin_both_ways_then_idleness() {
        let idle = 10;
        assert_eq!(flow_end(&ct(100), 105, idle), None);
        assert_eq!(flow_end(&ct(100), 111, idle), Some(FlowEnd::Idle));
        let mut one_fin = ct(100);
        one_fin.fin_seen = [1, 0];
        assert_eq!(flow_end(&one_fin, 105, idle), None, "half closed is open");
        let mut fins = one_fin;
        fins.fin_seen = [1, 1];
        assert_eq!(flow_end(&fins, 105, idle), Some(FlowEnd::TcpFin));
        assert_eq!(flow_end(&fins, 500, idle), Some(FlowEnd::TcpFin));
        let mut rst = one_fin;
        rst.rst_seen = 1;
        assert_eq!(flow_end(&rst, 105, idle), Some(FlowEnd::TcpRst));
    }

    #[test]
    fn the_initiator_is_the_source_and_forward_is_its_direction() {
        let key = FlowKey {
            ifindex: 7,
            family: FAMILY_IPV4,
            protocol: PROTO_TCP,
            pod_port: 80,
            peer_port: 40000,
            pod_addr: [10, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            peer_addr: [10, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..FlowKey::default()
        };
        let record = FlowRecord {
            key,
            origin_direction: DIRECTION_INGRESS,
            policy_id: 0,
            start_ns: 1,
            end_ns: 2,
            packets: [3, 5],
            bytes: [300, 5000],
            end: FlowEnd::TcpFin,
        };
        assert_eq!(record.forward(), (3, 300));
        assert_eq!(record.reverse(), (5, 5000));
        let ev = record.as_event();
        assert_eq!((ev.src_addr, ev.src_port), (key.peer_addr, 40000));
        assert_eq!((ev.dst_addr, ev.dst_port), (key.pod_addr, 80));
        assert_eq!((ev.count, ev.bytes, ev.timestamp_ns), (3, 300, 2));
        assert_eq!(ev.reason, REASON_DEFAULT_ALLOW);
        let out = FlowRecord {
            origin_direction: DIRECTION_EGRESS,
            policy_id: 4,
            ..record
        };
        assert_eq!(out.forward(), (5, 5000));
        let ev = out.as_event();
        assert_eq!((ev.src_addr, ev.src_port), (key.pod_addr, 80));
        assert_eq!((ev.policy_id, ev.reason), (4, REASON_POLICY));
    }
}
