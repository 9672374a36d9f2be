//! Conntrack on the packet path: a tracked flow passes (re-judged when the pod's rules
//! changed), a new one is judged and tracked, mid-stream TCP is taken as a reply when
//! the reverse direction would open it, and an ICMP error passes when the flow it
//! quotes is tracked. Every packet of a tracked flow is counted in its entry (packets
//! and bytes by direction: plain adds on the CPU that tracked the flow, atomic adds on
//! any other), and TCP FIN/RST flags are noted, so userspace can report each flow's
//! volume and end.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::{__sk_buff, BPF_NOEXIST},
    helpers::bpf_get_smp_processor_id,
    programs::TcContext,
};
use datapath_common::*;

use super::{
    Judged,
    globals::{coarse_now, counters, ticks},
};
use crate::{
    maps::{CONNTRACK, CT_SCRATCH},
    parse::{self, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

impl Judged<'_> {
    #[inline(always)]
    pub(super) fn tracked_or_new(&self, key: &FlowKey) -> u8 {
        if let Some(ct) = CONNTRACK.get_ptr_mut(key) {
            // SAFETY: LRU map value, valid for this program run; racing writers only
            // store whole u64/u32 fields.
            let ct = unsafe { &mut *ct };
            if ct.generation == self.pod.generation {
                self.count(ct);
                // The clock moves once a tick: read it only when the tick count did.
                let ticks = ticks();
                if ct.last_seen_jiffies != ticks {
                    ct.last_seen_jiffies = ticks;
                    ct.last_seen_ns = coarse_now();
                }
                return VERDICT_ACCEPT;
            }
            // The pod's rules changed: judge the flow again as its first packet was.
            let origin = ct.origin_direction;
            let decision = self.evaluate(origin, key);
            if decision.is_accept() {
                self.count(ct);
                ct.generation = self.pod.generation;
                ct.policy_id = decision.policy_id;
                ct.last_seen_ns = coarse_now();
                ct.last_seen_jiffies = ticks();
                return VERDICT_ACCEPT;
            }
            if CONNTRACK.remove(key).is_ok()
                && let Some(c) = counters()
            {
                c.conntrack_removals += 1;
            }
            return self.refuse(key, decision);
        }
        let p = self.pkt;
        if p.protocol == PROTO_TCP && (p.tcp_flags & TCP_SYN == 0 || p.tcp_flags & TCP_ACK != 0) {
            // Mid-stream TCP without an entry (evicted, or the agent restarted with
            // fresh maps): if the reverse direction would open this flow, it is a reply.
            let reverse = self.direction ^ 1;
            let decision = self.evaluate(reverse, key);
            if decision.is_accept() {
                self.track(key, reverse, decision.policy_id, coarse_now());
                return VERDICT_ACCEPT;
            }
        }
        let decision = self.evaluate(self.direction, key);
        if decision.is_accept() {
            let now = coarse_now();
            self.track(key, self.direction, decision.policy_id, now);
            self.emit(
                key,
                self.direction,
                VERDICT_ACCEPT,
                &decision,
                self.segs,
                self.len,
                now,
            );
            VERDICT_ACCEPT
        } else {
            self.refuse(key, decision)
        }
    }

    /// Adds this packet to a tracked flow's counters and notes TCP FIN/RST. On the
    /// flow's own CPU, the only writer of its `packets` and `bytes`, plain adds (a
    /// locked add costs ~8 ns each, the hit path's largest share); elsewhere atomic
    /// adds into the shared counters.
    #[inline(always)]
    fn count(&self, ct: &mut CtValue) {
        let d = (self.direction & 1) as usize;
        if ct.owner_cpu == this_cpu() {
            ct.packets[d] += self.segs;
            ct.bytes[d] += self.len;
        } else {
            atomic_add(&mut ct.shared_packets[d], self.segs);
            atomic_add(&mut ct.shared_bytes[d], self.len);
        }
        let p = self.pkt;
        if p.protocol == PROTO_TCP && p.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            // A closing flow's end time is its last packet's.
            ct.last_seen_ns = coarse_now();
            ct.last_seen_jiffies = ticks();
            if p.tcp_flags & TCP_RST != 0 {
                ct.rst_seen = 1;
            }
            if p.tcp_flags & TCP_FIN != 0 {
                ct.fin_seen[d] = 1;
            }
        }
    }

    /// Tracks a new flow, this packet its first counted. When another CPU tracked the
    /// same flow at the same instant, its entry stays and this packet is counted as an
    /// insert race instead (the one packet no entry holds).
    #[inline(always)]
    fn track(&self, key: &FlowKey, origin: u8, policy_id: u32, now: u64) {
        let Some(ct) = CT_SCRATCH.get_ptr_mut(0) else {
            return;
        };
        // SAFETY: this CPU's scratch slot; nothing else runs on it meanwhile (TC
        // programs run with preemption disabled).
        let ct = unsafe { &mut *ct };
        let d = (self.direction & 1) as usize;
        let p = self.pkt;
        let tcp_flags = if p.protocol == PROTO_TCP {
            p.tcp_flags
        } else {
            0
        };
        let fin = (tcp_flags & TCP_FIN != 0) as u8;
        ct.last_seen_ns = now;
        ct.last_seen_jiffies = ticks();
        ct._pad = 0;
        ct.generation = self.pod.generation;
        ct.origin_direction = origin;
        ct.rst_seen = (tcp_flags & TCP_RST != 0) as u8;
        ct.fin_seen = by_direction(d, fin);
        ct.policy_id = policy_id;
        ct.owner_cpu = this_cpu();
        ct.start_ns = now;
        store_pair(&mut ct.packets, by_direction(d, self.segs));
        store_pair(&mut ct.bytes, by_direction(d, self.len));
        store_pair(&mut ct.shared_packets, [0; 2]);
        store_pair(&mut ct.shared_bytes, [0; 2]);
        let inserted = CONNTRACK.insert(key, ct, BPF_NOEXIST as u64).is_ok();
        if let Some(c) = counters() {
            if inserted {
                c.conntrack_inserts += 1;
            } else {
                c.conntrack_insert_races += self.segs;
            }
        }
    }

    /// An ICMP error passes when the flow it quotes is tracked on this interface.
    #[inline(always)]
    pub(super) fn quoted_flow_is_tracked(&self) -> bool {
        quoted_flow_tracked(
            self.ctx.skb.skb,
            self.pkt.family,
            self.pkt.l4_offset,
            self.ifindex,
            self.direction,
        ) != 0
    }
}

/// 1 when the flow an ICMP error quotes is tracked on `ifindex`, else 0.
///
/// A BPF subprogram, off the common paths: parsing the quoted IPv6 addresses spills
/// every byte, and inlined those slots deepened the classifiers' own frames past
/// what the policy subprograms leave of the 512-byte stack.
#[inline(never)]
fn quoted_flow_tracked(
    skb: *mut __sk_buff,
    family: u8,
    l4_offset: usize,
    ifindex: u32,
    direction: u8,
) -> u64 {
    let ctx = TcContext::new(skb);
    let Some(q) = parse::parse_quoted(&ctx, family, l4_offset) else {
        return 0;
    };
    // The quoted packet travelled the other way: into the pod for an error the pod
    // sends, out of the pod for an error it receives.
    let key = oriented_flow_key(
        ifindex,
        family,
        q.protocol,
        direction ^ 1,
        &q.src,
        q.src_port,
        &q.dst,
        q.dst_port,
    );
    CONNTRACK.get_ptr(&key).is_some() as u64
}

/// `value` in slot `d` (0 or 1), zero in the other, without a branch.
#[inline(always)]
fn by_direction<T: Copy + core::ops::Mul<Output = T> + From<u8>>(d: usize, value: T) -> [T; 2] {
    let second = T::from(d as u8);
    let first = T::from(1 - d as u8);
    [value * first, value * second]
}

/// Two plain 8-byte stores: LLVM merges neighbouring zero stores into a call to the
/// byte-loop BPF `memset`, which volatile stores it may not merge.
#[inline(always)]
fn store_pair(dst: &mut [u64; 2], value: [u64; 2]) {
    // SAFETY: both elements are valid, aligned places in `dst`.
    unsafe {
        core::ptr::write_volatile(&mut dst[0], value[0]);
        core::ptr::write_volatile(&mut dst[1], value[1]);
    }
}

/// The CPU this program runs on (the verifier inlines the helper: a per-CPU load).
#[inline(always)]
fn this_cpu() -> u32 {
    // SAFETY: a plain helper call with no arguments.
    unsafe { bpf_get_smp_processor_id() }
}

/// Atomic add (BPF `lock xadd`): other CPUs may count into the same entry.
#[inline(always)]
fn atomic_add(v: &mut u64, n: u64) {
    // SAFETY: the u64 is 8-byte aligned inside the map value (offsets asserted in
    // datapath-common) and lives for the program run.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(v, n) };
}
