//! The live file: created with mode 0640, appended to in groups of whole lines, each
//! group's space reserved (`fallocate` with `FALLOC_FL_KEEP_SIZE`) before its single
//! `write(2)`, so a full disk refuses the group before any byte lands and the file
//! never holds a partial line. The file is never truncated.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// File mode of flow-log files.
pub const FILE_MODE: u32 = 0o640;

/// Why a group was not (fully) written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFailure {
    /// ENOSPC or EDQUOT on reservation or write.
    NoSpace,
    /// Any other error.
    Io(ErrorKind),
}

/// What a group write achieved: `written` bytes from the start of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupWrite {
    pub written: usize,
    pub failure: Option<WriteFailure>,
}

/// An open flow-log file and its size.
#[derive(Debug)]
pub struct LiveFile {
    file: File,
    size: u64,
    reserve: bool,
}

impl LiveFile {
    /// Opens `path` for appending, creating it with mode 0640 when missing.
    ///
    /// # Errors
    /// The open, chmod or stat fails.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(path)?;
        // The umask may have removed bits; set the mode exactly.
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        let size = file.metadata()?.len();
        Ok(Self {
            file,
            size,
            reserve: true,
        })
    }

    /// Bytes in the file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether space reservation is in use (false once the file system refused it).
    pub fn reserves_space(&self) -> bool {
        self.reserve
    }

    /// Reserves space for `group` and appends it with one `write(2)` (more only after
    /// a short write).
    pub fn write_group(&mut self, group: &[u8]) -> GroupWrite {
        if group.is_empty() {
            return GroupWrite {
                written: 0,
                failure: None,
            };
        }
        if self.reserve {
            // Re-read the size: an outside truncation (an operator, a copytruncate
            // tool) must not make the reservation miss the real end of the file.
            if let Ok(meta) = self.file.metadata() {
                self.size = meta.len();
            }
            match self.reserve_space(group.len()) {
                Ok(()) => {}
                Err(e) if is_no_space(&e) => {
                    return GroupWrite {
                        written: 0,
                        failure: Some(WriteFailure::NoSpace),
                    };
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => {
                    tracing::warn!(
                        error = %e,
                        "file system cannot reserve space: a full disk may leave a partial flow line"
                    );
                    self.reserve = false;
                }
                Err(e) => {
                    return GroupWrite {
                        written: 0,
                        failure: Some(WriteFailure::Io(e.kind())),
                    };
                }
            }
        }
        let mut written = 0;
        while written < group.len() {
            match self.file.write(&group[written..]) {
                Ok(0) => {
                    self.size += written as u64;
                    return GroupWrite {
                        written,
                        failure: Some(WriteFailure::Io(ErrorKind::WriteZero)),
                    };
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.size += written as u64;
                    let failure = if is_no_space(&e) {
                        WriteFailure::NoSpace
                    } else {
                        WriteFailure::Io(e.kind())
                    };
                    return GroupWrite {
                        written,
                        failure: Some(failure),
                    };
                }
            }
        }
        self.size += written as u64;
        GroupWrite {
            written,
            failure: None,
        }
    }

    fn reserve_space(&self, len: usize) -> io::Result<()> {
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(self.size), libc::off_t::try_from(len))
        else {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        };
        // SAFETY: fallocate only reads its integer arguments; the fd is owned by
        // `self.file` and open for writing. KEEP_SIZE allocates blocks past the end
        // without changing the size readers see.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn creates_the_file_with_mode_0640_and_appends_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        let mut f = LiveFile::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        let w = f.write_group(b"a\nb\n");
        assert_eq!(
            w,
            GroupWrite {
                written: 4,
                failure: None
            }
        );
        drop(f);
        let mut f = LiveFile::open(&path).unwrap();
        assert_eq!(f.size(), 4);
        f.write_group(b"c\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"a\nb\nc\n");
        assert_eq!(f.size(), 6);
    }
}
