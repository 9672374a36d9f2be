//! Shared helpers for the cross-crate tests and benchmarks: namespaces, veths, packet builders.
