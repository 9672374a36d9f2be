//! The ABI shared by the kernel programs (`datapath-ebpf`) and userspace (`datapath`):
//! `#[repr(C)]` map keys, values and the ring-buffer event, with compile-time size and
//! offset checks, plus the verdict decision written once as pure functions that both
//! the kernel and host tests call; with the `user` feature, the kernel's clocks as
//! userspace reads them ([`clock`]); flow records built from conntrack ([`record`]).
#![no_std]

pub mod abi;
#[cfg(feature = "user")]
pub mod clock;
pub mod decide;
pub mod record;

pub use abi::*;
pub use decide::*;
