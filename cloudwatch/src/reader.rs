//! Reads whole lines in order across the file set, from a checkpoint: rotated files
//! ascending by sequence, then the live file, which it follows as it grows and across its
//! rotation (recognised by inode). Compressed files are read transparently.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::error::ShipperError;
use crate::files::{self, Entry};

/// What [`LineReader::next_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// A whole line is in the caller's buffer; the position is just past it.
    Line(Checkpoint),
    /// Nothing to read now: the live file has no new whole line (or does not exist).
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ident {
    inode: u64,
    hash: Option<u64>,
}

struct Current {
    /// `None` while this is the live file.
    seq: Option<u64>,
    ident: Ident,
    reader: BufReader<Box<dyn Read + Send>>,
    /// A handle for `fstat` (plain files only), to measure what is left.
    stat: Option<File>,
    offset: u64,
    pending: Vec<u8>,
    /// For the live file: the highest rotated sequence present when it was opened.
    live_after: Option<u64>,
}

/// Reads lines in file order from a position; never blocks on a growing file.
pub struct LineReader {
    dir: PathBuf,
    live: String,
    live_path: PathBuf,
    current: Option<Current>,
    /// Every rotated file with a sequence up to this one was read to its end.
    done_through: Option<u64>,
    /// The file read last, so that it is not read again under its rotated name.
    finished: Option<Ident>,
    lost_files: u64,
}

const READ_BUFFER: usize = 256 * 1024;
/// Bounds the transitions one call may make (files vanishing in a loop).
const MAX_TRANSITIONS_PER_CALL: usize = 1024;

impl LineReader {
    /// Opens the set at `checkpoint`, or at the oldest file when there is none. A
    /// checkpointed file that is no longer on disk is counted in [`Self::take_lost_files`].
    ///
    /// # Errors
    /// When the directory cannot be listed or the checkpointed file cannot be read.
    pub fn open(
        dir: &Path,
        live: &str,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Self, ShipperError> {
        let mut reader = Self {
            dir: dir.to_owned(),
            live: live.to_owned(),
            live_path: dir.join(live),
            current: None,
            done_through: None,
            finished: None,
            lost_files: 0,
        };
        let Some(cp) = checkpoint else {
            return Ok(reader);
        };
        let entries = reader.list()?;
        let mut before: Option<u64> = None;
        for entry in &entries {
            if reader.matches(
                entry,
                Ident {
                    inode: cp.inode,
                    hash: Some(cp.first_line_hash),
                },
            )? {
                let mut cur = reader
                    .open_entry(entry)
                    .map_err(|e| ShipperError::io("open", &entry.path, e))?;
                cur.ident.hash = Some(cp.first_line_hash);
                skip_to(&mut cur, cp.offset)
                    .map_err(|e| ShipperError::io("seek", &entry.path, e))?;
                if entry.seq.is_none() {
                    cur.live_after = before;
                }
                reader.done_through = before;
                reader.current = Some(cur);
                return Ok(reader);
            }
            before = entry.seq.or(before);
        }
        tracing::warn!(
            dir = %dir.display(),
            inode = cp.inode,
            offset = cp.offset,
            "the checkpointed file is no longer on disk: lines between it and the oldest retained file are lost"
        );
        reader.lost_files += 1;
        Ok(reader)
    }

    /// Files that vanished before they were read, since the last call.
    pub fn take_lost_files(&mut self) -> u64 {
        std::mem::take(&mut self.lost_files)
    }

    /// Reads the next whole line (without its newline) into `line`, replacing its content.
    ///
    /// # Errors
    /// On I/O errors other than a file vanishing between listing and opening.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> Result<Poll, ShipperError> {
        for _ in 0..MAX_TRANSITIONS_PER_CALL {
            let Some(cur) = self.current.as_mut() else {
                if !self.advance()? {
                    return Ok(Poll::Idle);
                }
                continue;
            };
            cur.reader
                .read_until(b'\n', &mut cur.pending)
                .map_err(|e| ShipperError::io("read", &self.dir, e))?;
            if cur.pending.last() == Some(&b'\n') {
                return Ok(Poll::Line(self.emit(line)));
            }
            if cur.seq.is_none() {
                match std::fs::metadata(&self.live_path) {
                    Ok(m) if m.ino() == cur.ident.inode => return Ok(Poll::Idle),
                    _ => {}
                }
                // Rotated away: the writer has moved on; what is left is final.
                cur.reader
                    .read_until(b'\n', &mut cur.pending)
                    .map_err(|e| ShipperError::io("read", &self.dir, e))?;
                if !cur.pending.is_empty() {
                    return Ok(Poll::Line(self.emit(line)));
                }
                self.finish_live()?;
            } else {
                if !cur.pending.is_empty() {
                    return Ok(Poll::Line(self.emit(line)));
                }
                self.done_through = cur.seq.max(self.done_through);
                self.finished = Some(cur.ident);
                self.current = None;
            }
        }
        Ok(Poll::Idle)
    }

    /// Bytes on disk not read yet (compressed files count their compressed size).
    pub fn unread_bytes(&self) -> u64 {
        let mut total = 0;
        if let Some(cur) = &self.current
            && let Some(f) = &cur.stat
            && let Ok(m) = f.metadata()
        {
            total += m.len().saturating_sub(cur.offset);
        }
        let Ok(entries) = self.list() else {
            return total;
        };
        let current_seq = self.current.as_ref().map(|c| c.seq);
        for e in entries {
            let later = match (e.seq, current_seq) {
                (_, Some(None)) => false,
                (None, _) => true,
                (Some(s), Some(Some(c))) => s > c,
                (Some(s), None) => self.done_through.is_none_or(|d| s > d),
            };
            if later && let Ok(m) = std::fs::metadata(&e.path) {
                total += m.len();
            }
        }
        total
    }

    fn list(&self) -> Result<Vec<Entry>, ShipperError> {
        files::list(&self.dir, &self.live).map_err(|e| ShipperError::io("list", &self.dir, e))
    }

    fn emit(&mut self, out: &mut Vec<u8>) -> Checkpoint {
        let Some(cur) = self.current.as_mut() else {
            return Checkpoint {
                inode: 0,
                first_line_hash: 0,
                offset: 0,
            };
        };
        let start = cur.offset;
        out.clear();
        std::mem::swap(out, &mut cur.pending);
        cur.offset += out.len() as u64;
        if out.last() == Some(&b'\n') {
            out.pop();
        }
        if start == 0 && cur.ident.hash.is_none() {
            cur.ident.hash = Some(files::fnv1a(out));
        }
        Checkpoint {
            inode: cur.ident.inode,
            first_line_hash: cur.ident.hash.unwrap_or(0),
            offset: cur.offset,
        }
    }

    /// True when `entry` is the file `ident` names: same inode and first line for a plain
    /// file, same first line for a compressed one.
    fn matches(&self, entry: &Entry, ident: Ident) -> Result<bool, ShipperError> {
        let hash_of = |e: &Entry| match files::first_line_hash(&e.path, e.compressed) {
            Ok(h) => Ok(h),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(ShipperError::io("read", &e.path, err)),
        };
        if entry.compressed {
            return Ok(ident.hash.is_some() && hash_of(entry)? == ident.hash);
        }
        let inode = match std::fs::metadata(&entry.path) {
            Ok(m) => m.ino(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(ShipperError::io("stat", &entry.path, e)),
        };
        Ok(inode == ident.inode && (ident.hash.is_none() || hash_of(entry)? == ident.hash))
    }

    fn open_entry(&self, entry: &Entry) -> std::io::Result<Current> {
        let (reader, inode) = files::open(&entry.path, entry.compressed)?;
        let stat = if entry.compressed {
            None
        } else {
            File::open(&entry.path).ok()
        };
        Ok(Current {
            seq: entry.seq,
            ident: Ident { inode, hash: None },
            reader: BufReader::with_capacity(READ_BUFFER, reader),
            stat,
            offset: 0,
            pending: Vec::new(),
            live_after: None,
        })
    }

    /// The live file we were reading was rotated away and read to its end: find its
    /// rotated name so that everything up to it counts as done.
    fn finish_live(&mut self) -> Result<(), ShipperError> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        let entries = self.list()?;
        let mut done = cur.live_after;
        for e in entries
            .iter()
            .filter(|e| e.seq.is_some() && e.seq > cur.live_after)
        {
            if self.matches(e, cur.ident)? {
                done = e.seq;
                break;
            }
        }
        self.done_through = done.max(self.done_through);
        self.finished = Some(cur.ident);
        Ok(())
    }

    /// Rotated files carry a counter that rises by one: a jump from the last file read
    /// means files were deleted before they were read.
    fn count_gap(&mut self, next: Option<u64>) {
        if let (Some(next), Some(done)) = (next, self.done_through)
            && next > done + 1
        {
            let missing = next - done - 1;
            tracing::warn!(
                dir = %self.dir.display(),
                first_missing = done + 1,
                missing,
                "flow-log files rotated out before they were shipped: their lines are lost"
            );
            self.lost_files += missing;
        }
    }

    /// Opens the next file after `done_through`; false when there is none yet.
    fn advance(&mut self) -> Result<bool, ShipperError> {
        for _ in 0..MAX_TRANSITIONS_PER_CALL {
            let entries = self.list()?;
            let next = entries
                .iter()
                .find(|e| e.seq.is_none() || self.done_through.is_none_or(|d| e.seq > Some(d)));
            let Some(entry) = next else {
                return Ok(false);
            };
            let mut cur = match self.open_entry(entry) {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if entry.seq.is_none() {
                        return Ok(false);
                    }
                    let gz = PathBuf::from(format!("{}.gz", entry.path.display()));
                    if !entry.compressed && gz.exists() {
                        continue; // compressed meanwhile: list again
                    }
                    tracing::warn!(path = %entry.path.display(), "flow-log file rotated out before it was shipped: its lines are lost");
                    self.count_gap(entry.seq);
                    self.lost_files += 1;
                    self.done_through = entry.seq.max(self.done_through);
                    continue;
                }
                Err(e) => return Err(ShipperError::io("open", &entry.path, e)),
            };
            match entry.seq {
                Some(seq) => {
                    if let Some(fin) = self.finished
                        && self.matches(entry, fin)?
                    {
                        self.done_through = Some(seq).max(self.done_through);
                        continue;
                    }
                    self.count_gap(entry.seq);
                    self.current = Some(cur);
                    return Ok(true);
                }
                None => {
                    let newest = entries.iter().filter_map(|e| e.seq).max();
                    cur.live_after = newest.max(self.done_through);
                    let again = self.list()?;
                    if again
                        .iter()
                        .any(|e| e.seq.is_some() && e.seq > cur.live_after)
                    {
                        continue; // rotated between listing and opening: decide again
                    }
                    self.current = Some(cur);
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

fn skip_to(cur: &mut Current, offset: u64) -> std::io::Result<()> {
    if let Some(f) = &cur.stat {
        let len = f.metadata()?.len();
        let target = offset.min(len);
        // Plain files: read through a positioned duplicate (the boxed reader cannot seek).
        let mut file = f.try_clone()?;
        file.seek(SeekFrom::Start(target))?;
        cur.reader = BufReader::with_capacity(READ_BUFFER, Box::new(file));
        cur.offset = target;
    } else {
        let skipped = std::io::copy(&mut (&mut cur.reader).take(offset), &mut std::io::sink())?;
        cur.offset = skipped;
    }
    Ok(())
}
