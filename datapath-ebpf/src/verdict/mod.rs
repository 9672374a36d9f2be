//! The per-packet decision: pod record, anti-spoofing, fragments, ICMP errors,
//! conntrack, policy lookup, counters, and the verdict events (DENYs folded).

use core::intrinsics::{AtomicOrdering, atomic_xadd, atomic_xchg};

use aya_ebpf::{
    bindings::{
        __sk_buff, BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
        TC_ACT_SHOT,
    },
    helpers::bpf_ktime_get_coarse_ns,
    maps::{HashMap, LpmTrie, lpm_trie::Key},
    programs::TcContext,
};
use datapath_common::*;

use crate::{
    maps::{
        CONNTRACK, COUNTERS, EVENTS, FOLDS, FRAGMENTS, POD_INDEX, POD_SLOTS, POLICY_HASH_V4,
        POLICY_HASH_V6, POLICY_V4, POLICY_V6, RULE_LISTS, SETTINGS,
    },
    parse::{self, FRAG_FIRST, FRAG_LATER, Packet, TCP_ACK, TCP_SYN},
};

/// Continue the chain (`TCX_NEXT`, which clsact reads as `TC_ACT_UNSPEC`).
pub const TCX_NEXT: i32 = -1;
const DROP: i32 = TC_ACT_SHOT;
/// Bytes one event takes in the ring: 8-byte record header plus the event.
const RING_RECORD_BYTES: u64 = 8 + core::mem::size_of::<FlowEvent>() as u64;
/// The longest frame that is certainly not GSO (1500-byte MTU plus Ethernet and VLAN).
const MAX_NON_GSO_FRAME: u64 = 1518;
/// Fold keys one `fold_flush` run reads.
const FLUSH_BATCH: usize = 32;

#[inline(always)]
fn counters() -> Option<&'static mut Counters> {
    // SAFETY: a per-CPU slot: no other program touches it while this one runs
    // (TC programs run with preemption disabled).
    COUNTERS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// CLOCK_MONOTONIC at tick resolution. Conntrack idleness, fold windows and event
/// timestamps all need no better, and the precise clock costs ~30 ns more per read
/// (a third of a new flow's whole evaluation).
#[inline(always)]
fn coarse_now() -> u64 {
    // SAFETY: a plain helper call with no arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
fn settings() -> Settings {
    SETTINGS.get(0).copied().unwrap_or_default()
}

/// The record of the pod behind `ifindex`, if we manage it. Both ways end in one
/// pointer into `POD_SLOTS`, so the verifier tracks a single kind of record.
#[inline(always)]
fn pod_record(ifindex: u32) -> Option<&'static PodRecord> {
    let slot = if ifindex < DIRECT_POD_SLOTS {
        ifindex
    } else {
        // SAFETY: a plain read of a u32 map value.
        *unsafe { POD_INDEX.get(&ifindex) }?
    };
    // SAFETY: map values stay valid for the duration of the program (RCU).
    let record = unsafe { &*POD_SLOTS.get_ptr(slot)? };
    (record.ifindex == ifindex).then_some(record)
}

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
    let mut judged = Judged {
        ctx,
        pod,
        pkt: &pkt,
        direction,
        ifindex,
        segs,
        len,
        now: 0,
    };
    let verdict = judged.run();
    if let Some(c) = counters() {
        let d = (direction & 1) as usize;
        let v = (verdict & 1) as usize;
        c.packets[d][v] += segs;
        c.bytes[d][v] += len;
    }
    if verdict == VERDICT_ACCEPT {
        TCX_NEXT
    } else {
        DROP
    }
}

struct Judged<'a> {
    ctx: &'a TcContext,
    pod: &'a PodRecord,
    pkt: &'a Packet,
    direction: u8,
    ifindex: u32,
    segs: u64,
    len: u64,
    now: u64,
}

impl Judged<'_> {
    #[inline(always)]
    fn run(&mut self) -> u8 {
        let pkt = self.pkt;
        if pkt.protocol == PROTO_ICMPV6 && is_icmpv6_neighbour_discovery(pkt.icmp_type) {
            return VERDICT_ACCEPT;
        }
        self.now = coarse_now();
        let key = self.flow_key();
        if self.direction == DIRECTION_EGRESS
            && !source_belongs_to_pod(self.pod, pkt.family, &pkt.src)
        {
            if let Some(c) = counters() {
                c.spoofed_packets += self.segs;
            }
            return self.deny(&key, Decision::deny(0, REASON_SPOOFED_SOURCE));
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

    #[inline(always)]
    fn tracked_or_new(&mut self, key: &FlowKey) -> u8 {
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
            return self.deny(key, decision);
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
            self.deny(key, decision)
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

    /// The policy decision for a new flow of `key` opened in `direction`.
    #[inline(always)]
    fn evaluate(&self, direction: u8, key: &FlowKey) -> Decision {
        let state = if direction == DIRECTION_INGRESS {
            self.pod.ingress_state
        } else {
            self.pod.egress_state
        };
        if state != STATE_POLICIES_APPLIED {
            return decide(state, None);
        }
        let selector_be = policy_selector(self.pod.policy_set, direction).to_be();
        let port = policy_port(direction, key.pod_port, key.peer_port);
        let lookups = self.pod.lookups[(direction & 1) as usize][family_index(key.family)];
        let found = if key.family == FAMILY_IPV4 {
            let a = &key.peer_addr;
            longest_v4(selector_be, &[a[0], a[1], a[2], a[3]], lookups)
        } else {
            longest_v6(selector_be, &key.peer_addr, lookups)
        };
        let list_id = if found == NO_LIST {
            None
        } else {
            Some(found as u32)
        };
        let admitted = match list_id {
            // SAFETY: map values stay valid for the duration of the program (RCU).
            Some(list_id) => match RULE_LISTS.get_ptr(&list_id) {
                Some(list) => first_admitting_rule(unsafe { &*list }, key.protocol, port),
                None => None,
            },
            None => None,
        };
        decide(state, admitted)
    }

    /// An ICMP error passes when the flow it quotes is tracked on this interface.
    #[inline(always)]
    fn quoted_flow_is_tracked(&self) -> bool {
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

    #[inline(always)]
    fn frag_key(&self) -> FragKey {
        FragKey {
            family: self.pkt.family,
            protocol: self.pkt.protocol,
            _pad: [0; 2],
            id: self.pkt.frag_id,
            src: self.pkt.src,
            dst: self.pkt.dst,
        }
    }

    #[inline(always)]
    fn remember_first_fragment(&self, verdict: u8) {
        let v = FragValue {
            src_port: self.pkt.src_port,
            dst_port: self.pkt.dst_port,
            verdict,
            _pad: [0; 3],
        };
        let _ = FRAGMENTS.insert(&self.frag_key(), &v, 0);
    }

    /// Later fragments follow their first fragment's verdict; without one they drop.
    #[inline(always)]
    fn later_fragment(&mut self) -> u8 {
        let Some(first) = FRAGMENTS.get_ptr(&self.frag_key()) else {
            if let Some(c) = counters() {
                c.fragments_untracked += self.segs;
            }
            let key = self.flow_key();
            return self.deny(&key, Decision::deny(0, REASON_FRAGMENT_UNTRACKED));
        };
        // SAFETY: map values stay valid for the duration of the program (RCU).
        let first = unsafe { *first };
        if first.verdict == VERDICT_ACCEPT {
            return VERDICT_ACCEPT;
        }
        let p = self.pkt;
        let key = oriented_flow_key(
            self.ifindex,
            p.family,
            p.protocol,
            self.direction,
            &p.src,
            first.src_port,
            &p.dst,
            first.dst_port,
        );
        let decision = self.evaluate(self.direction, &key);
        self.deny(&key, decision)
    }

    /// Drop the packet and account for it in exactly one event (now or folded).
    #[inline(always)]
    fn deny(&self, key: &FlowKey, decision: Decision) -> u8 {
        let window = settings().fold_window_ns;
        if window == 0 {
            self.emit(
                key,
                self.direction,
                VERDICT_DENY,
                &decision,
                self.segs,
                self.len,
                self.now,
            );
            return VERDICT_DENY;
        }
        let mut fold_key = *key;
        fold_key.direction = self.direction;
        match FOLDS.get_ptr_mut(&fold_key) {
            Some(fold) => {
                // SAFETY: map value valid for this run; counts change only through
                // atomic adds and exchanges.
                let fold = unsafe { &mut *fold };
                fold.last_packet_ns = self.now;
                match fold_step(window, fold.window_start_ns, self.now) {
                    FoldStep::Accumulate => {
                        if fold.first_pending_ns == 0 {
                            fold.first_pending_ns = self.now;
                        }
                        atomic_add(&mut fold.pending_packets, self.segs);
                        atomic_add(&mut fold.pending_bytes, self.len);
                    }
                    FoldStep::Emit => {
                        let taken = atomic_take(&mut fold.pending_packets);
                        let taken_bytes = atomic_take(&mut fold.pending_bytes);
                        let first = if taken > 0 && fold.first_pending_ns != 0 {
                            fold.first_pending_ns
                        } else {
                            self.now
                        };
                        fold.first_pending_ns = 0;
                        fold.window_start_ns = self.now;
                        self.emit(
                            key,
                            self.direction,
                            VERDICT_DENY,
                            &decision,
                            taken + self.segs,
                            taken_bytes + self.len,
                            first,
                        );
                    }
                }
            }
            None => {
                let fold = FoldValue {
                    window_start_ns: self.now,
                    first_pending_ns: 0,
                    last_packet_ns: self.now,
                    pending_packets: 0,
                    pending_bytes: 0,
                    policy_id: decision.policy_id,
                    reason: decision.reason,
                    _pad: [0; 3],
                };
                if FOLDS.insert(&fold_key, &fold, BPF_NOEXIST as u64).is_err()
                    && let Some(c) = counters()
                {
                    c.events_unfolded_fold_full += 1;
                }
                self.emit(
                    key,
                    self.direction,
                    VERDICT_DENY,
                    &decision,
                    self.segs,
                    self.len,
                    self.now,
                );
            }
        }
        VERDICT_DENY
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn emit(
        &self,
        key: &FlowKey,
        direction: u8,
        verdict: u8,
        decision: &Decision,
        count: u64,
        bytes: u64,
        time: u64,
    ) {
        let mut k = *key;
        k.direction = direction;
        emit_event(
            &settings(),
            &k,
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

/// The rule list of the longest entry holding an IPv4 peer, or [`NO_LIST`].
///
/// A BPF subprogram rather than inlined: each inlined copy of the unrolled probes
/// keeps its own keys on the stack, and four copies pass the 512-byte limit.
#[inline(never)]
fn longest_v4(selector_be: u32, addr: &[u8; 4], lookups: u8) -> i64 {
    longest(
        &POLICY_HASH_V4,
        &POLICY_V4,
        &HASHED_LENGTHS[0],
        selector_be,
        addr,
        lookups,
    )
}

/// As [`longest_v4`] for an IPv6 peer.
#[inline(never)]
fn longest_v6(selector_be: u32, addr: &[u8; 16], lookups: u8) -> i64 {
    longest(
        &POLICY_HASH_V6,
        &POLICY_V6,
        &HASHED_LENGTHS[1],
        selector_be,
        addr,
        lookups,
    )
}

/// The longest match in one family: the hashed `lengths` the pod uses, longest
/// first (the first hit is the longest hashed match), then the trie if the pod has
/// entries there, whose match wins only when longer.
#[inline(always)]
fn longest<const N: usize>(
    hash: &HashMap<HashedKey<N>, u32>,
    trie: &LpmTrie<TrieKey<N>, TrieEntry>,
    lengths: &[u8; 5],
    selector_be: u32,
    addr: &[u8; N],
    lookups: u8,
) -> i64 {
    let mut best: Option<(u32, u32)> = None;
    // One key, masked further for each probe (the lengths only shrink): a key per
    // unrolled probe would not fit the stack.
    let mut key = HashedKey {
        selector_be,
        prefix_len: 0,
        _pad: [0; 3],
        addr: *addr,
    };
    for (slot, &len) in lengths.iter().enumerate() {
        clear_past_prefix(&mut key.addr, len);
        if lookups & (1 << slot) == 0 {
            continue;
        }
        key.prefix_len = len;
        if let Some(list) = hash.get_ptr(&key) {
            // SAFETY: map values stay valid for the duration of the program (RCU).
            best = Some((unsafe { *list }, len as u32));
            break;
        }
    }
    if lookups & LOOKUP_TRIE != 0 {
        let key = Key::new(
            POLICY_SELECTOR_BITS + 8 * N as u32,
            TrieKey {
                selector_be,
                addr: *addr,
            },
        );
        if let Some(e) = trie.get(&key) {
            best = longer(best, e);
        }
    }
    best.map_or(NO_LIST, |(list, _)| list as i64)
}

/// What the longest-match subprograms return when nothing matches (plain integers
/// cross a BPF-to-BPF call in a register; an `Option` might not).
const NO_LIST: i64 = -1;

/// The trie's match replaces a hashed one only when its prefix is longer.
#[inline(always)]
fn longer(best: Option<(u32, u32)>, trie: &TrieEntry) -> Option<(u32, u32)> {
    match best {
        Some((_, len)) if len >= trie.prefix_len => best,
        _ => Some((trie.list_id, trie.prefix_len)),
    }
}

/// Atomic add (BPF `lock xadd`): other CPUs may count into the same fold.
#[inline(always)]
fn atomic_add(v: &mut u64, n: u64) {
    // SAFETY: the u64 is 8-byte aligned inside the map value (offset asserted in
    // datapath-common) and lives for the program run.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(v, n) };
}

/// Atomic exchange with 0 (BPF_XCHG): takes a count without losing a racing add.
#[inline(always)]
fn atomic_take(v: &mut u64) -> u64 {
    // SAFETY: as for atomic_add.
    unsafe { atomic_xchg::<u64, { AtomicOrdering::Relaxed }>(v, 0) }
}

/// Sends one event for `key` (whose `direction` says which way its packets went).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn emit_event(
    s: &Settings,
    key: &FlowKey,
    verdict: u8,
    policy_id: u32,
    reason: u8,
    count: u64,
    bytes: u64,
    packet_len: u32,
    time: u64,
) {
    let Some(c) = counters() else { return };
    if !scope_admits(s.event_scope, verdict) {
        c.events_filtered_scope += 1;
        return;
    }
    let flags = if s.wakeup_threshold_bytes == 0 {
        0
    } else {
        let pending = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
        if pending < s.wakeup_threshold_bytes
            && pending + RING_RECORD_BYTES >= s.wakeup_threshold_bytes
        {
            c.wakeups_forced += 1;
            BPF_RB_FORCE_WAKEUP as u64
        } else {
            BPF_RB_NO_WAKEUP as u64
        }
    };
    let Some(mut entry) = EVENTS.reserve::<FlowEvent>(0) else {
        c.events_lost += 1;
        if verdict == VERDICT_DENY {
            c.denied_packets_lost += count;
        }
        return;
    };
    let (src, src_port, dst, dst_port) = flow_endpoints(key);
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
        direction: key.direction,
        verdict,
        reason,
        _pad: [0; 7],
    });
    entry.submit(flags);
    c.events_submitted += 1;
}

/// See `fold_flush` in main.rs.
#[inline(always)]
pub fn flush_folds(ctx: &TcContext) -> i32 {
    let window = settings().fold_window_ns;
    let now = coarse_now();
    let mut read = 0;
    for i in 0..FLUSH_BATCH {
        if !flush_fold(
            ctx.skb.skb,
            (i * core::mem::size_of::<FlowKey>()) as u32,
            window,
            now,
        ) {
            break;
        }
        read += 1;
    }
    read
}

/// Flushes the fold whose key is at `offset` of the packet data; false when there
/// is no key there. A BPF subprogram: its branches end at its return, so the
/// verifier's work grows with the batch size instead of multiplying per key.
#[inline(never)]
fn flush_fold(skb: *mut __sk_buff, offset: u32, window: u64, now: u64) -> bool {
    let ctx = TcContext::new(skb);
    let Ok(key) = ctx.load::<FlowKey>(offset as usize) else {
        return false;
    };
    let Some(fold) = FOLDS.get_ptr_mut(&key) else {
        return true;
    };
    // SAFETY: map value valid for this run; counts change only atomically.
    let fold = unsafe { &mut *fold };
    if !fold_due(window, fold.window_start_ns, now) {
        return true;
    }
    let taken = atomic_take(&mut fold.pending_packets);
    if taken > 0 {
        let bytes = atomic_take(&mut fold.pending_bytes);
        let first = fold.first_pending_ns;
        fold.first_pending_ns = 0;
        emit_event(
            &settings(),
            &key,
            VERDICT_DENY,
            fold.policy_id,
            fold.reason,
            taken,
            bytes,
            0,
            first,
        );
    } else if fold_expired(window, fold.last_packet_ns, now) {
        let _ = FOLDS.remove(&key);
    }
    true
}
