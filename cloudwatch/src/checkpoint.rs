//! The persisted position: which file (inode plus first-line hash) and how many bytes of
//! its uncompressed content were shipped; replaced atomically (temp, fsync, rename, fsync
//! of the directory).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ShipperError;

/// A position in the file set: everything before `offset` in the file recognised by
/// `inode` and `first_line_hash` (and everything in earlier files) was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Inode of the plain file (a `.gz` of it is recognised by the hash alone).
    pub inode: u64,
    /// FNV-1a of the file's first line, without its newline.
    pub first_line_hash: u64,
    /// Bytes of uncompressed content shipped, always at a line boundary.
    pub offset: u64,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    #[serde(flatten)]
    checkpoint: Checkpoint,
}

const VERSION: u32 = 1;

/// The default checkpoint path: `<dir>/.<live>.cloudwatch-checkpoint`.
pub fn default_path(dir: &Path, live: &str) -> PathBuf {
    dir.join(format!(".{live}.cloudwatch-checkpoint"))
}

/// Reads the checkpoint; `None` when there is none. An unreadable or unknown one is
/// reported and ignored: shipping then starts from the oldest file (duplicates, not loss).
pub fn load(path: &Path) -> Result<Option<Checkpoint>, ShipperError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ShipperError::io("read", path, e)),
    };
    match serde_json::from_slice::<OnDisk>(&bytes) {
        Ok(d) if d.version == VERSION => Ok(Some(d.checkpoint)),
        Ok(d) => {
            tracing::warn!(path = %path.display(), version = d.version, "unknown checkpoint version; shipping from the oldest file");
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable checkpoint; shipping from the oldest file");
            Ok(None)
        }
    }
}

/// Replaces the checkpoint atomically and durably.
pub fn store(path: &Path, checkpoint: &Checkpoint, fsync: bool) -> Result<(), ShipperError> {
    let body = serde_json::to_vec(&OnDisk {
        version: VERSION,
        checkpoint: *checkpoint,
    })
    .map_err(|source| ShipperError::CheckpointEncode {
        path: path.to_owned(),
        source,
    })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(|e| ShipperError::io("create", &tmp, e))?;
    f.write_all(&body)
        .map_err(|e| ShipperError::io("write", &tmp, e))?;
    if fsync {
        f.sync_all()
            .map_err(|e| ShipperError::io("fsync", &tmp, e))?;
    }
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| ShipperError::io("rename", path, e))?;
    if fsync && let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ShipperError::io("fsync", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_checkpoint_loads_back_equal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = default_path(dir.path(), "network-policy-agent.log");
        assert_eq!(load(&path).expect("load"), None);
        let cp = Checkpoint {
            inode: 42,
            first_line_hash: u64::MAX - 1,
            offset: 1234,
        };
        store(&path, &cp, true).expect("store");
        assert_eq!(load(&path).expect("load"), Some(cp));
        let next = Checkpoint { offset: 2000, ..cp };
        store(&path, &next, true).expect("store");
        assert_eq!(load(&path).expect("load"), Some(next));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp file left behind: {names:?}");
    }

    #[test]
    fn corrupt_checkpoint_is_ignored_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        std::fs::write(&path, b"{not json").expect("write");
        assert_eq!(load(&path).expect("load"), None);
    }
}
