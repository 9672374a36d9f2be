//! DENY and AUDIT folding: a refused flow sends one event per fold window, with the
//! packets and bytes refused since the last one (AUDIT folds apart from DENY ones); `fold_flush` sends what is pending in folds that
//! went quiet and deletes folds idle for two windows.

use core::intrinsics::{AtomicOrdering, atomic_xadd, atomic_xchg};

use aya_ebpf::{
    bindings::{__sk_buff, BPF_NOEXIST},
    programs::TcContext,
};
use datapath_common::*;

use super::{
    Judged,
    events::emit_event,
    globals::{coarse_now, counters, fold_window_ns, ticks},
};
use crate::maps::FOLDS;

/// Fold keys one `fold_flush` run reads.
const FLUSH_BATCH: usize = 32;

impl Judged<'_> {
    /// A packet the decision refuses (DENY: dropped; AUDIT: passed): account for it
    /// in exactly one event (now or folded). Returns the decision's verdict.
    #[inline(always)]
    pub(super) fn refuse(&self, key: &FlowKey, decision: Decision) -> u8 {
        let verdict = decision.verdict;
        let window = fold_window_ns();
        if window == 0 {
            self.emit(
                key,
                self.direction,
                verdict,
                &decision,
                self.segs,
                self.len,
                coarse_now(),
            );
            return verdict;
        }
        let mut fold_key = *key;
        // FOLD_DIRECTION_AUDIT is VERDICT_AUDIT's bit: no branch on the verdict.
        fold_key.direction = self.direction | (verdict & FOLD_DIRECTION_AUDIT);
        match FOLDS.get_ptr_mut(&fold_key) {
            Some(fold) => {
                // SAFETY: map value valid for this run; counts change only through
                // atomic adds and exchanges.
                let fold = unsafe { &mut *fold };
                // The clock moves once a tick: within the tick of the fold's last
                // packet, its time is this packet's too.
                let ticks = ticks();
                let now = if fold.last_packet_jiffies == ticks {
                    fold.last_packet_ns
                } else {
                    let now = coarse_now();
                    fold.last_packet_ns = now;
                    fold.last_packet_jiffies = ticks;
                    now
                };
                match fold_step(window, fold.window_start_ns, now) {
                    FoldStep::Accumulate => {
                        if fold.first_pending_ns == 0 {
                            fold.first_pending_ns = now;
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
                            now
                        };
                        fold.first_pending_ns = 0;
                        fold.window_start_ns = now;
                        self.emit(
                            key,
                            self.direction,
                            verdict,
                            &decision,
                            taken + self.segs,
                            taken_bytes + self.len,
                            first,
                        );
                    }
                }
            }
            None => {
                let now = coarse_now();
                let fold = FoldValue {
                    window_start_ns: now,
                    first_pending_ns: 0,
                    last_packet_ns: now,
                    pending_packets: 0,
                    pending_bytes: 0,
                    policy_id: decision.policy_id,
                    reason: decision.reason,
                    verdict,
                    _pad: [0; 2],
                    last_packet_jiffies: ticks(),
                    _pad2: 0,
                };
                if FOLDS.insert(&fold_key, &fold, BPF_NOEXIST as u64).is_err()
                    && let Some(c) = counters()
                {
                    c.events_unfolded_fold_full += 1;
                }
                self.emit(
                    key,
                    self.direction,
                    verdict,
                    &decision,
                    self.segs,
                    self.len,
                    now,
                );
            }
        }
        verdict
    }
}

/// See `fold_flush` in main.rs.
#[inline(always)]
pub fn flush_folds(ctx: &TcContext) -> i32 {
    let window = fold_window_ns();
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
            &key,
            key.direction & !FOLD_DIRECTION_AUDIT,
            fold.verdict,
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
