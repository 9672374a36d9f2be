//! Shared helpers for the cross-crate tests and benchmarks: the root/BPF gate, packet
//! builders, and a kernel fixture (a datapath loaded in a test namespace).

pub mod frames;
pub mod gate;
pub mod kernel;
pub mod podnet;
pub mod standin;
