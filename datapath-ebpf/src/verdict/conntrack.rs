//! Conntrack on the packet path: a tracked flow passes (re-judged when the pod's rules
//! changed), a new one is judged and tracked, mid-stream TCP is taken as a reply when
//! the reverse direction would open it, and an ICMP error passes when the flow it
//! quotes is tracked.

use datapath_common::*;

use super::Judged;
use crate::{
    maps::CONNTRACK,
    parse::{self, TCP_ACK, TCP_SYN},
};

impl Judged<'_> {
    #[inline(always)]
    pub(super) fn tracked_or_new(&mut self, key: &FlowKey) -> u8 {
        if let Some(ct) = CONNTRACK.get_ptr_mut(key) {
            // SAFETY: LRU map value, valid for this program run; racing writers only
            // store whole u64/u32 fields.
            let ct = unsafe { &mut *ct };
            if ct.generation == self.pod.generation {
                if self.now.wrapping_sub(ct.last_seen_ns) > 1_000_000_000 {
                    ct.last_seen_ns = self.now;
                }
                return VERDICT_ACCEPT;
            }
            // The pod's rules changed: judge the flow again as its first packet was.
            let origin = ct.origin_direction;
            let decision = self.evaluate(origin, key);
            if decision.is_accept() {
                ct.generation = self.pod.generation;
                ct.policy_id = decision.policy_id;
                ct.last_seen_ns = self.now;
                return VERDICT_ACCEPT;
            }
            let _ = CONNTRACK.remove(key);
            return self.refuse(key, decision);
        }
        let p = self.pkt;
        if p.protocol == PROTO_TCP && (p.tcp_flags & TCP_SYN == 0 || p.tcp_flags & TCP_ACK != 0) {
            // Mid-stream TCP without an entry (evicted, or the agent restarted with
            // fresh maps): if the reverse direction would open this flow, it is a reply.
            let reverse = self.direction ^ 1;
            let decision = self.evaluate(reverse, key);
            if decision.is_accept() {
                self.track(key, reverse, decision.policy_id);
                return VERDICT_ACCEPT;
            }
        }
        let decision = self.evaluate(self.direction, key);
        if decision.is_accept() {
            self.track(key, self.direction, decision.policy_id);
            self.emit(
                key,
                self.direction,
                VERDICT_ACCEPT,
                &decision,
                self.segs,
                self.len,
                self.now,
            );
            VERDICT_ACCEPT
        } else {
            self.refuse(key, decision)
        }
    }

    #[inline(always)]
    fn track(&self, key: &FlowKey, origin: u8, policy_id: u32) {
        let ct = CtValue {
            last_seen_ns: self.now,
            generation: self.pod.generation,
            origin_direction: origin,
            _pad: [0; 3],
            policy_id,
            _pad2: 0,
        };
        let _ = CONNTRACK.insert(key, &ct, 0);
    }

    /// An ICMP error passes when the flow it quotes is tracked on this interface.
    #[inline(always)]
    pub(super) fn quoted_flow_is_tracked(&self) -> bool {
        let Some(q) = parse::parse_quoted(self.ctx, self.pkt.family, self.pkt.l4_offset) else {
            return false;
        };
        // The quoted packet travelled the other way: into the pod for an error the
        // pod sends, out of the pod for an error it receives.
        let quoted_direction = self.direction ^ 1;
        let key = oriented_flow_key(
            self.ifindex,
            self.pkt.family,
            q.protocol,
            quoted_direction,
            &q.src,
            q.src_port,
            &q.dst,
            q.dst_port,
        );
        CONNTRACK.get_ptr(&key).is_some()
    }
}
