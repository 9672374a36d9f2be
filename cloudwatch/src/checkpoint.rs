//! The persisted position: which file (device, inode and first-line fingerprint) and how
//! many bytes of its uncompressed content were shipped, plus the keys of the files
//! shipped to their end before it (so none is sent again, whatever happens to the
//! checkpointed file); replaced atomically (temp, fsync, rename, fsync of the directory).
//!
//! Format version 2 adds `dev` and `done` to version 1 (`inode`, `first_line_hash`,
//! `offset`); a version-1 checkpoint loads with `dev` unknown and no `done` list.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::ShipperError;
use crate::files::FileKey;

/// How many finished files a checkpoint remembers (newest kept): more than the rotated
/// files a node keeps with the default settings (8).
pub const MAX_DONE: usize = 64;

/// A position in the file set: everything before `offset` in the file `file` (and every
/// earlier file, `done` among them) was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// The file being read (`dev` 0: unknown, from a version-1 checkpoint).
    pub file: FileKey,
    /// Bytes of uncompressed content shipped, always at a line boundary.
    pub offset: u64,
    /// Files shipped to their end before `file`, oldest first, at most [`MAX_DONE`].
    pub done: Arc<[FileKey]>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    inode: u64,
    first_line_hash: u64,
    offset: u64,
    #[serde(default)]
    dev: u64,
    #[serde(default)]
    done: Vec<FileKey>,
}

const VERSION: u32 = 2;
/// Versions [`load`] reads.
const READABLE: [u32; 2] = [1, 2];

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
        Ok(d) if READABLE.contains(&d.version) => Ok(Some(Checkpoint {
            file: FileKey {
                dev: d.dev,
                inode: d.inode,
                fingerprint: d.first_line_hash,
            },
            offset: d.offset,
            done: d.done.into(),
        })),
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
    let done = &checkpoint.done[checkpoint.done.len().saturating_sub(MAX_DONE)..];
    let body = serde_json::to_vec(&OnDisk {
        version: VERSION,
        inode: checkpoint.file.inode,
        first_line_hash: checkpoint.file.fingerprint,
        offset: checkpoint.offset,
        dev: checkpoint.file.dev,
        done: done.to_vec(),
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
        let key = |inode| FileKey {
            dev: 7,
            inode,
            fingerprint: u64::MAX - inode,
        };
        let cp = Checkpoint {
            file: key(42),
            offset: 1234,
            done: vec![key(40), key(41)].into(),
        };
        store(&path, &cp, true).expect("store");
        assert_eq!(load(&path).expect("load"), Some(cp.clone()));
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
    fn a_version_1_checkpoint_loads_with_unknown_device_and_no_done_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        std::fs::write(
            &path,
            br#"{"version":1,"inode":42,"first_line_hash":99,"offset":1234}"#,
        )
        .expect("write");
        let cp = load(&path).expect("load").expect("a checkpoint");
        assert_eq!(
            cp.file,
            FileKey {
                dev: 0,
                inode: 42,
                fingerprint: 99
            }
        );
        assert_eq!(cp.offset, 1234);
        assert!(cp.done.is_empty());
    }

    #[test]
    fn only_the_newest_done_files_are_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        let done: Vec<FileKey> = (0..MAX_DONE as u64 + 10)
            .map(|i| FileKey {
                dev: 1,
                inode: i,
                fingerprint: i,
            })
            .collect();
        let cp = Checkpoint {
            done: done.clone().into(),
            ..Checkpoint::default()
        };
        store(&path, &cp, false).expect("store");
        let back = load(&path).expect("load").expect("a checkpoint");
        assert_eq!(&back.done[..], &done[10..]);
    }

    #[test]
    fn corrupt_checkpoint_is_ignored_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        std::fs::write(&path, b"{not json").expect("write");
        assert_eq!(load(&path).expect("load"), None);
    }
}
