//! The kernel side of the datapath: TC classifiers on the host-side veth of every pod.
//! `pod_ingress` (TC egress of the host veth) judges packets going into the pod,
//! `pod_egress` (TC ingress of the host veth) packets leaving it. One program serves
//! every pod: per-pod state lives in maps keyed by ifindex. Allowed packets continue
//! the chain (`TCX_NEXT`); denied ones are dropped. Every new-flow verdict becomes a
//! `FlowEvent` in the `EVENTS` ring buffer, denies folded per window.
#![no_std]
#![no_main]
// Atomic add/exchange on map values: the BPF target has no CAS, so core's atomic
// types lack these methods; the intrinsics lower to BPF's native atomics.
#![feature(core_intrinsics)]
#![allow(internal_features)]
// Map keys and values go by reference on purpose: passing them by value lets LLVM copy
// them in ways that multiply the verifier's states (fold_flush then hits the 1M limit).
#![allow(clippy::needless_borrows_for_generic_args)]

mod maps;
mod parse;
mod verdict;

use aya_ebpf::{macros::classifier, programs::TcContext};
use datapath_common::{DIRECTION_EGRESS, DIRECTION_INGRESS};

/// Packets going into the pod (attached to the host veth's TC egress).
#[classifier]
pub fn pod_ingress(ctx: TcContext) -> i32 {
    verdict::judge(&ctx, DIRECTION_INGRESS)
}

/// Packets leaving the pod (attached to the host veth's TC ingress).
#[classifier]
pub fn pod_egress(ctx: TcContext) -> i32 {
    verdict::judge(&ctx, DIRECTION_EGRESS)
}

/// Sends the pending counts of the DENY folds whose keys userspace passes as packet
/// data (an array of `FlowKey`), deleting folds idle for two windows. Run through
/// BPF_PROG_TEST_RUN on a timer; returns how many keys it read.
#[classifier]
pub fn fold_flush(ctx: TcContext) -> i32 {
    verdict::flush_folds(&ctx)
}

/// The floor the benchmarks subtract: a classifier that does nothing.
#[classifier]
pub fn noop(_ctx: TcContext) -> i32 {
    verdict::TCX_NEXT
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
