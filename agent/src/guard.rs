//! One agent per node: refuses to start when a second copy of itself (same pin
//! directory) or another process writing the same flow-log file (the incumbent's
//! default path) is running. Port clashes are caught when the servers bind.

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};

/// Held for the agent's lifetime: an exclusive lock keyed by the pin directory.
#[derive(Debug)]
pub struct InstanceGuard {
    _lock: File,
    path: PathBuf,
}

const LOCK_DIR: &str = "/run/netpol-agent";

/// A file beside the lock that belongs to the agent using `pin_dir` (e.g. the policy
/// id table the inspection commands read).
pub fn run_file(pin_dir: &Path, suffix: &str) -> PathBuf {
    let key: String = pin_dir
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    PathBuf::from(LOCK_DIR).join(format!("{key}.{suffix}"))
}

impl InstanceGuard {
    /// # Errors
    /// Another agent holds the lock, or another process has `log_file` open.
    pub fn acquire(pin_dir: &Path, log_file: &Path) -> Result<Self> {
        std::fs::create_dir_all(LOCK_DIR)?;
        let path = run_file(pin_dir, "lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        // SAFETY: a valid fd; flock has no memory-safety preconditions.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another netpol-agent already holds this node (lock {} held by pid {}); stop it first",
                path.display(),
                holder.trim()
            );
        }
        if let Some(pid) = other_writer(log_file) {
            bail!(
                "process {pid} already has the flow-log file {} open (the incumbent aws-network-policy-agent, or another agent): refusing to share it",
                log_file.display()
            );
        }
        std::fs::write(&path, std::process::id().to_string())?;
        Ok(Self { _lock: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A process other than us with `file` open.
fn other_writer(file: &Path) -> Option<u32> {
    let target = std::fs::canonicalize(file).ok()?;
    let me = std::process::id();
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|p| p == target) {
                return Some(pid);
            }
        }
    }
    None
}
