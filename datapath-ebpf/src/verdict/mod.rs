//! The per-packet decision: which pod, neighbour discovery, anti-spoofing, then the
//! fragment, ICMP-error and conntrack paths, and the per-direction counters. Each path
//! lives in its own module below; all of them inline into the two classifiers.

mod conntrack;
mod events;
mod folds;
mod fragments;
mod globals;
mod lookup;
mod policy;

use aya_ebpf::{bindings::TC_ACT_SHOT, programs::TcContext};
use datapath_common::*;

pub use self::folds::flush_folds;
use self::globals::{counters, pod_record};
use crate::parse::{self, FRAG_FIRST, FRAG_LATER, Packet};

/// Continue the chain (`TCX_NEXT`, which clsact reads as `TC_ACT_UNSPEC`).
pub const TCX_NEXT: i32 = -1;
const DROP: i32 = TC_ACT_SHOT;
/// The longest frame that is certainly not GSO (1500-byte MTU plus Ethernet and VLAN).
const MAX_NON_GSO_FRAME: u64 = 1518;

/// Judge one packet in `direction` (as seen from the pod).
#[inline(always)]
pub fn judge(ctx: &TcContext, direction: u8) -> i32 {
    // SAFETY: ctx.skb.skb is the live __sk_buff the program was called with.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(pod) = pod_record(ifindex) else {
        return TCX_NEXT;
    };
    let Some(pkt) = parse::parse(ctx) else {
        return TCX_NEXT;
    };
    let len = ctx.len() as u64;
    // Only a packet longer than one Ethernet frame can be a GSO aggregate; reading
    // gso_segs costs dependent loads from the skb's shared info, so small packets skip it.
    let segs = if len > MAX_NON_GSO_FRAME {
        // SAFETY: as above.
        let gso_segs = unsafe { (*ctx.skb.skb).gso_segs };
        if gso_segs > 1 { gso_segs as u64 } else { 1 }
    } else {
        1
    };
    let judged = Judged {
        ctx,
        pod,
        pkt: &pkt,
        direction,
        ifindex,
        segs,
        len,
    };
    let verdict = judged.run();
    // Without branches on the verdict: each would double the verifier's walk.
    let passes = verdict_passes(verdict);
    if let Some(c) = counters() {
        let d = (direction & 1) as usize;
        c.packets[d][passes as usize] += segs;
        c.bytes[d][passes as usize] += len;
        c.audited_packets[d] += segs * u64::from(verdict_is_audit(verdict));
    }
    if passes != 0 { TCX_NEXT } else { DROP }
}

/// One packet being judged: what every path below needs to know about it.
struct Judged<'a> {
    ctx: &'a TcContext,
    pod: &'a PodRecord,
    pkt: &'a Packet,
    direction: u8,
    ifindex: u32,
    segs: u64,
    len: u64,
}

impl Judged<'_> {
    #[inline(always)]
    fn run(&self) -> u8 {
        let pkt = self.pkt;
        if pkt.protocol == PROTO_ICMPV6 && is_icmpv6_neighbour_discovery(pkt.icmp_type) {
            return VERDICT_ACCEPT;
        }
        let key = self.flow_key();
        if self.direction == DIRECTION_EGRESS
            && !source_belongs_to_pod(self.pod, pkt.family, &pkt.src)
        {
            if let Some(c) = counters() {
                c.spoofed_packets += self.segs;
            }
            return self.refuse(&key, Decision::deny(0, REASON_SPOOFED_SOURCE));
        }
        if pkt.frag == FRAG_LATER {
            return self.later_fragment();
        }
        if pkt.icmp_error && self.quoted_flow_is_tracked() {
            return VERDICT_ACCEPT;
        }
        let verdict = self.tracked_or_new(&key);
        if pkt.frag == FRAG_FIRST {
            self.remember_first_fragment(verdict);
        }
        verdict
    }

    /// The packet's flow key, oriented from the pod.
    #[inline(always)]
    fn flow_key(&self) -> FlowKey {
        let p = self.pkt;
        oriented_flow_key(
            self.ifindex,
            p.family,
            p.protocol,
            self.direction,
            &p.src,
            p.src_port,
            &p.dst,
            p.dst_port,
        )
    }
}
