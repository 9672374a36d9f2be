//! The capability gate for tests that need root and BPF: under CI it fails loudly,
//! never skips; elsewhere it fails too, with the reason, since a skipped kernel test
//! proves nothing.

/// Panics with a clear reason unless the process is root and bpffs is mounted.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        panic!(
            "this test needs root (BPF, network namespaces); run the suite as root: scripts/test.sh"
        );
    }
    if !std::path::Path::new("/sys/fs/bpf").is_dir() {
        panic!("bpffs is not mounted on /sys/fs/bpf: run scripts/setup.sh");
    }
}
