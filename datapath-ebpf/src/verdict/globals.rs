//! Reads of the programs' shared state that every path needs: the per-CPU counters,
//! the settings userspace wrote, the coarse clock and the tick count, and the pod record of an interface.

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};
use datapath_common::{Counters, DIRECT_POD_SLOTS, PodRecord, Settings};

use crate::maps::{COUNTERS, POD_INDEX, POD_SLOTS, SETTINGS};

#[inline(always)]
pub(super) fn counters() -> Option<&'static mut Counters> {
    // SAFETY: a per-CPU slot: no other program touches it while this one runs
    // (TC programs run with preemption disabled).
    COUNTERS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// The kernel's tick count: the verifier inlines the helper into one load, so a
/// conntrack hit can tell whether the clock moved on without reading it.
#[inline(always)]
pub(super) fn ticks() -> u32 {
    // SAFETY: a plain helper call with no arguments.
    unsafe { bpf_jiffies64() as u32 }
}

/// CLOCK_MONOTONIC at tick resolution. Conntrack idleness, fold windows and event
/// timestamps all need no better, and the precise clock costs ~30 ns more per read
/// (a third of a new flow's whole evaluation).
#[inline(always)]
pub(super) fn coarse_now() -> u64 {
    // SAFETY: a plain helper call with no arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The settings userspace wrote, read in place: a copy would take 24 bytes of a stack
/// the deepest paths fill to the limit. (An array's slot 0 always exists; `None` only
/// satisfies the verifier.)
#[inline(always)]
pub(super) fn settings() -> Option<&'static Settings> {
    SETTINGS.get(0)
}

/// The DENY/AUDIT fold window, 0 when folding is off.
#[inline(always)]
pub(super) fn fold_window_ns() -> u64 {
    settings().map_or(0, |s| s.fold_window_ns)
}

/// The record of the pod behind `ifindex`, if we manage it. Both ways end in one
/// pointer into `POD_SLOTS`, so the verifier tracks a single kind of record.
#[inline(always)]
pub(super) fn pod_record(ifindex: u32) -> Option<&'static PodRecord> {
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
