//! Named network namespaces (`ip netns add`) with a guard that deletes them, and a
//! per-thread entry guard that returns the thread to the namespace it came from.

use std::{
    fs::File,
    os::fd::AsRawFd,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::{NetlabError, ip, run};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix><pid>x<n>`, short enough for
/// interface names when `prefix` is.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    keep: bool,
}

impl NetNs {
    /// Creates `name` with its loopback up.
    ///
    /// # Errors
    /// `ip netns add` failed (e.g. the name exists).
    pub fn create(name: &str) -> Result<Self, NetlabError> {
        ip(None, &["netns", "add", name])?;
        let ns = Self {
            name: name.to_string(),
            keep: false,
        };
        ip(Some(name), &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A handle on an existing namespace (e.g. one a previous `lab up` made) that
    /// does not delete it on drop.
    pub fn open(name: &str) -> Self {
        Self {
            name: name.to_string(),
            keep: true,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaves the namespace in place when the handle drops (the lab outlives the
    /// command that built it).
    pub fn persist(mut self) -> Self {
        self.keep = true;
        self
    }

    /// `ip -n <ns> args…`.
    ///
    /// # Errors
    /// As [`ip`].
    pub fn ip(&self, args: &[&str]) -> Result<String, NetlabError> {
        ip(Some(&self.name), args)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    ///
    /// # Errors
    /// As [`run`].
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, NetlabError> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Sets a sysctl inside the namespace.
    ///
    /// # Errors
    /// As [`run`].
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), NetlabError> {
        self.exec("sysctl", &["-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }

    /// The ifindex of `interface` inside this namespace.
    ///
    /// # Errors
    /// [`NetlabError::Interface`] when it does not exist.
    pub fn ifindex(&self, interface: &str) -> Result<u32, NetlabError> {
        let path = format!("/sys/class/net/{interface}/ifindex");
        self.exec("cat", &[&path])?
            .trim()
            .parse()
            .map_err(|_| NetlabError::Interface {
                name: interface.into(),
                namespace: self.name.clone(),
            })
    }

    /// Moves the calling thread into this namespace until the guard drops.
    ///
    /// # Errors
    /// The namespace file cannot be opened or setns(2) failed.
    pub fn enter(&self) -> Result<NsEntered, NetlabError> {
        enter_by_name(&self.name)
    }
}

/// Moves the calling thread into the named namespace (without owning it) until the
/// guard drops.
///
/// # Errors
/// The namespace file cannot be opened or setns(2) failed.
pub fn enter_by_name(name: &str) -> Result<NsEntered, NetlabError> {
    let err = |source| NetlabError::Namespace {
        name: name.to_string(),
        source,
    };
    let original = File::open("/proc/thread-self/ns/net").map_err(err)?;
    let target = File::open(format!("/var/run/netns/{name}")).map_err(err)?;
    setns(&target).map_err(err)?;
    Ok(NsEntered { original })
}

fn setns(file: &File) -> std::io::Result<()> {
    // SAFETY: a valid namespace fd; setns only changes this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Deleting is best effort: a failure here must not turn a passing test into
        // a double panic; the before-stop checks list leftover namespaces.
        if let Err(e) = ip(None, &["netns", "del", &self.name]) {
            eprintln!("netlab: could not delete namespace {}: {e}", self.name);
        }
    }
}

/// While alive, the thread is in another namespace; drop returns it.
#[derive(Debug)]
pub struct NsEntered {
    original: File,
}

impl Drop for NsEntered {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.original) {
            eprintln!("netlab: could not return to the original namespace: {e}");
        }
    }
}
