//! Reads whole lines in order across the file set, from a checkpoint: rotated files
//! ascending by sequence, then the live file, which it follows as it grows and across its
//! rotation (recognised by device and inode). Compressed files are read transparently.
//!
//! Files are recognised by [`FileKey`] (device, inode, first-line fingerprint), never by
//! name or offset alone. A file truncated in place (copytruncate, `: > file`), seen as a
//! size below the read offset or a changed fingerprint, is read again from its start;
//! files the checkpoint lists as done are never read again. What could not be read is
//! counted by [`LossReason`] as a lower bound: lines written and then overwritten
//! between two looks at a file leave no trace and cannot be counted.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::{Checkpoint, MAX_DONE};
use crate::error::ShipperError;
use crate::files::{self, Entry, FileKey};
use crate::metrics::LossReason;

/// What [`LineReader::next_line`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// A whole line is in the caller's buffer; the position is just past it.
    Line(Checkpoint),
    /// Nothing to read now: the live file has no new whole line (or does not exist).
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ident {
    dev: u64,
    inode: u64,
    hash: Option<u64>,
}

impl Ident {
    fn key(self) -> Option<FileKey> {
        Some(FileKey {
            dev: self.dev,
            inode: self.inode,
            fingerprint: self.hash?,
        })
    }
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
    /// The live file had no new line at the last call: check it for truncation first.
    idle: bool,
}

/// Reads lines in file order from a position; never blocks on a growing file.
pub struct LineReader {
    dir: PathBuf,
    live: String,
    live_path: PathBuf,
    current: Option<Current>,
    /// Every rotated file with a sequence up to this one was read to its end.
    done_through: Option<u64>,
    /// Files read to their end (oldest first, at most [`MAX_DONE`]): never read again.
    done: Vec<FileKey>,
    /// `done` as carried by each position emitted.
    done_shared: Arc<[FileKey]>,
    lost_files: u64,
    lost_lines: [u64; LossReason::ALL.len()],
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
            done: Vec::new(),
            done_shared: Arc::from(Vec::new()),
            lost_files: 0,
            lost_lines: [0; LossReason::ALL.len()],
        };
        let Some(cp) = checkpoint else {
            return Ok(reader);
        };
        reader.done = cp.done.to_vec();
        let entries = reader.list()?;
        let mut probes = Vec::with_capacity(entries.len());
        for entry in &entries {
            probes.push(probe(entry)?);
        }
        // The checkpointed file itself, then the same plain file cut in place.
        let exact = entries.iter().zip(&probes).position(|(entry, p)| {
            p.is_some_and(|p| {
                p.hash
                    .is_some_and(|h| cp.file.names(p.dev, p.inode, h, entry.compressed))
            })
        });
        let cut = exact.is_none().then(|| {
            entries.iter().zip(&probes).position(|(e, p)| {
                !e.compressed
                    && p.is_some_and(|p| {
                        p.inode == cp.file.inode && (cp.file.dev == 0 || p.dev == cp.file.dev)
                    })
            })
        });
        if let Some(i) = exact.or(cut.flatten()) {
            let entry = &entries[i];
            let mut cur = reader
                .open_entry(entry)
                .map_err(|e| ShipperError::io("open", &entry.path, e))?;
            let len = cur
                .stat
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.len());
            if exact.is_some() && len.is_none_or(|l| l >= cp.offset) {
                cur.ident.hash = Some(cp.file.fingerprint);
                skip_to(&mut cur, cp.offset)
                    .map_err(|e| ShipperError::io("seek", &entry.path, e))?;
            } else {
                tracing::warn!(
                    path = %entry.path.display(),
                    offset = cp.offset,
                    size = len,
                    "the checkpointed flow-log file was truncated in place while the shipper was stopped: reading its new content from the start; lines written after the checkpoint and before the truncation, if any, cannot be counted"
                );
            }
            let before = entries[..i].iter().filter_map(|e| e.seq).max();
            if entry.seq.is_none() {
                cur.live_after = before;
            }
            // Everything before the checkpointed file is done (this also migrates a
            // version-1 checkpoint, which had no list).
            for p in &probes[..i] {
                if let Some(key) = p.and_then(Probe::key) {
                    reader.push_done(key);
                }
            }
            reader.done_through = before;
            reader.current = Some(cur);
            reader.share_done();
            return Ok(reader);
        }
        reader.share_done();
        tracing::warn!(
            dir = %dir.display(),
            inode = cp.file.inode,
            offset = cp.offset,
            done_files = reader.done.len(),
            "the checkpointed file is no longer on disk (replaced or deleted): its unread lines are lost; files the checkpoint lists as shipped are skipped"
        );
        reader.lost_files += 1;
        Ok(reader)
    }

    /// Files that vanished before they were read, since the last call.
    pub fn take_lost_files(&mut self) -> u64 {
        std::mem::take(&mut self.lost_files)
    }

    /// Lines known lost since the last call, by reason (a lower bound).
    pub fn take_lost_lines(&mut self) -> [(LossReason, u64); LossReason::ALL.len()] {
        let counts = std::mem::take(&mut self.lost_lines);
        let mut out = [(LossReason::Truncated, 0); LossReason::ALL.len()];
        for (i, reason) in LossReason::ALL.into_iter().enumerate() {
            out[i] = (reason, counts[i]);
        }
        out
    }

    fn lose_lines(&mut self, reason: LossReason, n: u64) {
        self.lost_lines[reason.index()] += n;
    }

    fn push_done(&mut self, key: FileKey) {
        if !self.done.contains(&key) {
            self.done.push(key);
        }
        if self.done.len() > MAX_DONE {
            let extra = self.done.len() - MAX_DONE;
            self.done.drain(..extra);
        }
    }

    fn share_done(&mut self) {
        self.done_shared = Arc::from(self.done.as_slice());
    }

    fn finished(&mut self, ident: Ident) {
        if let Some(key) = ident.key() {
            self.push_done(key);
            self.share_done();
        }
    }

    /// The live file we follow was cut in place (copytruncate, `: > file`): its size
    /// fell below what we read, or its first line changed. Reads it again from the start.
    fn check_truncation(&mut self) -> Result<(), ShipperError> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        let Some(f) = &cur.stat else { return Ok(()) };
        let io = |e| ShipperError::io("stat", &self.live_path, e);
        let len = f.metadata().map_err(io)?.len();
        let read = cur.offset + cur.pending.len() as u64;
        let shrunk = len < read;
        let changed = !shrunk
            && cur.offset > 0
            && cur.ident.hash.is_some()
            && files::first_line_hash_at(f).map_err(io)? != cur.ident.hash;
        if !shrunk && !changed {
            return Ok(());
        }
        // Only a line we held in part is known lost: whatever was written after our
        // last look and cut before this one left no trace.
        let lost = u64::from(!cur.pending.is_empty());
        tracing::warn!(
            path = %self.live_path.display(),
            offset = cur.offset,
            size = len,
            lost_lines = lost,
            "flow-log file truncated in place: reading its new content from the start (lines written and cut between two looks cannot be counted)"
        );
        let mut file = f
            .try_clone()
            .map_err(|e| ShipperError::io("reopen", &self.live_path, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| ShipperError::io("seek", &self.live_path, e))?;
        cur.reader = BufReader::with_capacity(READ_BUFFER, Box::new(file));
        cur.offset = 0;
        cur.pending.clear();
        cur.ident.hash = None;
        self.lose_lines(LossReason::Truncated, lost);
        Ok(())
    }

    /// Reads the next whole line (without its newline) into `line`, replacing its content.
    ///
    /// # Errors
    /// On I/O errors other than a file vanishing between listing and opening.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> Result<Poll, ShipperError> {
        for _ in 0..MAX_TRANSITIONS_PER_CALL {
            if self.current.as_ref().is_some_and(|c| c.idle) {
                self.check_truncation()?;
            }
            let Some(cur) = self.current.as_mut() else {
                if !self.advance()? {
                    return Ok(Poll::Idle);
                }
                continue;
            };
            cur.idle = false;
            cur.reader
                .read_until(b'\n', &mut cur.pending)
                .map_err(|e| ShipperError::io("read", &self.dir, e))?;
            if cur.pending.last() == Some(&b'\n') {
                return Ok(Poll::Line(self.emit(line)));
            }
            if cur.seq.is_none() {
                match std::fs::metadata(&self.live_path) {
                    Ok(m) if m.ino() == cur.ident.inode && m.dev() == cur.ident.dev => {
                        cur.idle = true;
                        return Ok(Poll::Idle);
                    }
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
                let ident = cur.ident;
                self.current = None;
                self.finished(ident);
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
            return Checkpoint::default();
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
            file: FileKey {
                dev: cur.ident.dev,
                inode: cur.ident.inode,
                fingerprint: cur.ident.hash.unwrap_or(0),
            },
            offset: cur.offset,
            done: self.done_shared.clone(),
        }
    }

    /// True when `entry` is the file `ident` names: same device, inode and first line
    /// for a plain file, same first line for a compressed one.
    fn matches(entry: &Entry, ident: Ident) -> Result<bool, ShipperError> {
        let Some(p) = probe(entry)? else {
            return Ok(false);
        };
        if entry.compressed {
            return Ok(ident.hash.is_some() && p.hash == ident.hash);
        }
        Ok(p.inode == ident.inode
            && p.dev == ident.dev
            && (ident.hash.is_none() || p.hash == ident.hash))
    }

    /// True when `entry` is among the files already read to their end.
    fn is_done(&self, entry: &Entry) -> Result<bool, ShipperError> {
        if self.done.is_empty() {
            return Ok(false);
        }
        let Some(key) = probe(entry)?.and_then(|p| p.key()) else {
            return Ok(false);
        };
        Ok(self
            .done
            .iter()
            .any(|d| d.names(key.dev, key.inode, key.fingerprint, entry.compressed)))
    }

    fn open_entry(&self, entry: &Entry) -> std::io::Result<Current> {
        let (reader, inode, dev) = files::open(&entry.path, entry.compressed)?;
        let stat = if entry.compressed {
            None
        } else {
            File::open(&entry.path).ok()
        };
        Ok(Current {
            seq: entry.seq,
            ident: Ident {
                dev,
                inode,
                hash: None,
            },
            reader: BufReader::with_capacity(READ_BUFFER, reader),
            stat,
            offset: 0,
            pending: Vec::new(),
            live_after: None,
            idle: false,
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
            if Self::matches(e, cur.ident)? {
                done = e.seq;
                break;
            }
        }
        self.done_through = done.max(self.done_through);
        self.finished(cur.ident);
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
            self.lose_lines(LossReason::RotatedOut, missing);
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
                    self.lose_lines(LossReason::RotatedOut, 1);
                    self.done_through = entry.seq.max(self.done_through);
                    continue;
                }
                Err(e) => return Err(ShipperError::io("open", &entry.path, e)),
            };
            match entry.seq {
                Some(seq) => {
                    if self.is_done(entry)? {
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

/// What an entry is on disk now: device, inode (of the compressed file, for a `.gz`)
/// and first-line fingerprint; `None` when it vanished.
#[derive(Debug, Clone, Copy)]
struct Probe {
    dev: u64,
    inode: u64,
    hash: Option<u64>,
}

impl Probe {
    fn key(self) -> Option<FileKey> {
        Some(FileKey {
            dev: self.dev,
            inode: self.inode,
            fingerprint: self.hash?,
        })
    }
}

fn probe(entry: &Entry) -> Result<Option<Probe>, ShipperError> {
    let meta = match std::fs::metadata(&entry.path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ShipperError::io("stat", &entry.path, e)),
    };
    let hash = match files::first_line_hash(&entry.path, entry.compressed) {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A damaged or unfinished `.gz` has no fingerprint; reading it reports the error.
        Err(_) if entry.compressed => None,
        Err(e) => return Err(ShipperError::io("read", &entry.path, e)),
    };
    Ok(Some(Probe {
        dev: meta.dev(),
        inode: meta.ino(),
        hash,
    }))
}
