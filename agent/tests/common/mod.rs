//! Shared by the agent's tests: a lab in a state directory of its own, removed on drop.

use std::path::{Path, PathBuf};

use agent::lab;

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netpol-agent"))
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the lab tests need root (network namespaces, BPF): run scripts/test.sh"
    );
}

/// A state directory whose lab is torn down on drop.
pub struct LabDir {
    pub dir: PathBuf,
}

impl LabDir {
    pub fn new(name: &str) -> Self {
        require_root();
        let dir = PathBuf::from(format!("/tmp/netpol-labtest-{name}-{}", std::process::id()));
        let _ = lab::down(&dir);
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LabDir {
    fn drop(&mut self) {
        if let Err(e) = lab::down(&self.dir) {
            eprintln!("lab test clean-up: {e}");
        }
    }
}

/// Writes `files` into a fresh manifest directory inside the test's temp area.
#[allow(
    dead_code,
    reason = "shared by the test files; not every one writes manifests"
)]
pub fn manifests(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = PathBuf::from(format!(
        "/tmp/netpol-labtest-manifests-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}
