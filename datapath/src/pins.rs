//! Where our pins live on bpffs: `<root>/v<ABI>/{maps,progs,links}`. The ABI version
//! in the path means a newer agent with a different map layout never opens an older
//! map as its own.

use std::path::{Path, PathBuf};

use datapath_common::ABI_VERSION;

use crate::DatapathError;

/// Default root of our pins.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/netpol-agent";

#[derive(Clone, Debug)]
pub struct PinLayout {
    root: PathBuf,
}

impl PinLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn version_dir(&self) -> PathBuf {
        self.root.join(format!("v{ABI_VERSION}"))
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.version_dir().join("maps")
    }

    pub fn progs_dir(&self) -> PathBuf {
        self.version_dir().join("progs")
    }

    pub fn links_dir(&self) -> PathBuf {
        self.version_dir().join("links")
    }

    /// The pinned TCX link of one program on one interface.
    pub fn link_path(&self, ifindex: u32, program: &str) -> PathBuf {
        self.links_dir().join(format!("if{ifindex}-{program}"))
    }

    /// Parses a link pin name back into (ifindex, program).
    pub fn parse_link_name(name: &str) -> Option<(u32, &str)> {
        let rest = name.strip_prefix("if")?;
        let (index, program) = rest.split_once('-')?;
        Some((index.parse().ok()?, program))
    }

    /// The directories of other ABI versions under the root (pins an agent of another
    /// version left), sorted.
    pub fn other_version_dirs(&self) -> Vec<PathBuf> {
        let ours = format!("v{ABI_VERSION}");
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name != ours
                    && name
                        .strip_prefix('v')
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|e| e.path())
            .collect();
        dirs.sort();
        dirs
    }

    /// Checks that the root is on bpffs and creates our directories.
    ///
    /// # Errors
    /// [`DatapathError::BpffsMissing`] when no bpffs holds the root's parent,
    /// [`DatapathError::PinDir`] when a directory cannot be made.
    pub fn prepare(&self) -> Result<(), DatapathError> {
        let mount = self.root.parent().unwrap_or(Path::new("/"));
        if !is_bpffs(mount) {
            return Err(DatapathError::BpffsMissing {
                path: mount.to_path_buf(),
            });
        }
        for dir in [self.maps_dir(), self.progs_dir(), self.links_dir()] {
            std::fs::create_dir_all(&dir).map_err(|source| DatapathError::PinDir {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

impl Default for PinLayout {
    fn default() -> Self {
        Self::new(DEFAULT_PIN_ROOT)
    }
}

/// BPF_FS_MAGIC from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

pub(crate) fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stat: libc::statfs = unsafe_zeroed_statfs();
    // SAFETY: c_path is NUL-terminated and stat is a valid out-pointer.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    rc == 0 && stat.f_type == BPF_FS_MAGIC
}

fn unsafe_zeroed_statfs() -> libc::statfs {
    // SAFETY: statfs is a plain C struct for which all-zero bytes are valid.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_round_trip() {
        let layout = PinLayout::new("/sys/fs/bpf/x");
        let path = layout.link_path(42, "pod_ingress");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(PinLayout::parse_link_name(name), Some((42, "pod_ingress")));
        assert_eq!(PinLayout::parse_link_name("bogus"), None);
        assert!(path.starts_with(format!("/sys/fs/bpf/x/v{ABI_VERSION}/links")));
    }
}
