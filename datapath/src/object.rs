//! The eBPF object, compiled from `datapath-ebpf` by build.rs and embedded here.

/// The ELF bytes of the kernel programs, 8-byte aligned as the ELF parser wants.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/datapath"));
