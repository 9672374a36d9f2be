//! Background thread that owns rotated files once the writer has renamed them:
//! gzips each one after the grace period (to `<name>.gz.tmp`, then renamed to
//! `<name>.gz`, then the original removed) and prunes rotated files beyond the backup
//! count or the maximum age. At start-up it adopts uncompressed rotated files left by
//! an earlier run.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufReader, BufWriter};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::config::FileSinkConfig;
use super::names::{GZ_SUFFIX, list_shipping_order, parse_rotated_name, split_live_path};
use super::writer::FILE_MODE;
use crate::stats::SharedStats;

/// Nice value of the housekeeping thread: compression can wait (its files are
/// written already), so on a busy node it yields the CPU to the thread that drains
/// the kernel ring, whose lateness loses events.
pub const HOUSEKEEPING_NICE: i32 = 10;

/// Longest sleep between checks when nothing is due.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Pruning by age also runs this often when nothing rotates.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

enum Msg {
    Rotated(PathBuf),
    Shutdown,
}

/// Handle to the housekeeping thread; dropping it stops the thread (pending
/// compressions are picked up by the next start).
#[derive(Debug)]
pub struct Housekeeper {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Housekeeper {
    /// Starts the thread for the rotated files of `live_path`.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn start(
        live_path: &Path,
        config: &FileSinkConfig,
        stats: Arc<SharedStats>,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let mut state = State {
            live_path: live_path.to_path_buf(),
            config: config.clone(),
            stats,
            pending: VecDeque::new(),
        };
        state.adopt_leftovers();
        let thread = std::thread::Builder::new()
            .name("flowlog-housekeeping".into())
            .spawn(move || state.run(&rx))?;
        Ok(Self {
            tx,
            thread: Some(thread),
        })
    }

    /// Hands a freshly rotated file over.
    pub fn rotated(&self, path: PathBuf) {
        // The thread only stops on Shutdown, so a send failure means it panicked;
        // the file stays uncompressed and the next start adopts it.
        let _ = self.tx.send(Msg::Rotated(path));
    }
}

impl Drop for Housekeeper {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    live_path: PathBuf,
    config: FileSinkConfig,
    stats: Arc<SharedStats>,
    /// Uncompressed rotated files and when they become due.
    pending: VecDeque<(PathBuf, Instant)>,
}

impl State {
    fn adopt_leftovers(&mut self) {
        self.remove_stale_temporaries();
        if !self.config.compress {
            return;
        }
        let due = Instant::now() + self.config.compress_grace;
        if let Ok(files) = list_shipping_order(&self.live_path) {
            for f in files {
                if f.rotated.is_some_and(|r| !r.compressed) {
                    self.pending.push_back((f.path, due));
                }
            }
        }
    }

    /// Removes `<live>.<seq>.gz.tmp` files a crash left mid-compression.
    fn remove_stale_temporaries(&self) {
        let Ok((dir, live_name)) = split_live_path(&self.live_path) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name
                .strip_suffix(".tmp")
                .and_then(|n| parse_rotated_name(live_name, n))
                .is_some_and(|r| r.compressed)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn run(mut self, rx: &Receiver<Msg>) {
        lower_priority();
        self.prune();
        let mut last_prune = Instant::now();
        loop {
            if last_prune.elapsed() >= PRUNE_EVERY {
                self.prune();
                last_prune = Instant::now();
            }
            let now = Instant::now();
            let wait = self.pending.front().map_or(IDLE_TICK, |(_, due)| {
                due.saturating_duration_since(now).min(IDLE_TICK)
            });
            match rx.recv_timeout(wait) {
                Ok(Msg::Rotated(path)) => {
                    if self.config.compress {
                        self.pending
                            .push_back((path, Instant::now() + self.config.compress_grace));
                    }
                    self.prune();
                }
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            while let Some((path, due)) = self.pending.front() {
                if *due > Instant::now() {
                    break;
                }
                let path = path.clone();
                self.pending.pop_front();
                self.compress(&path);
            }
        }
    }

    fn compress(&self, path: &Path) {
        let mut gz = path.as_os_str().to_owned();
        gz.push(GZ_SUFFIX);
        let gz = PathBuf::from(gz);
        let mut tmp = gz.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let result = gzip_file(path, &tmp)
            .and_then(|()| std::fs::rename(&tmp, &gz))
            .and_then(|()| std::fs::remove_file(path));
        match result {
            Ok(()) => {
                self.stats
                    .housekeeping
                    .files_compressed
                    .fetch_add(1, Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && !path.exists() => {
                // Pruned (or removed by an operator) before its turn.
                let _ = std::fs::remove_file(&tmp);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.stats
                    .housekeeping
                    .compression_errors
                    .fetch_add(1, Relaxed);
                tracing::warn!(path = %path.display(), error = %e, "compressing a rotated flow-log file failed; it stays uncompressed");
            }
        }
    }

    fn prune(&mut self) {
        let Ok(files) = list_shipping_order(&self.live_path) else {
            return;
        };
        let rotated: Vec<PathBuf> = files
            .into_iter()
            .filter(|f| f.rotated.is_some())
            .map(|f| f.path)
            .collect();
        let excess = rotated.len().saturating_sub(self.config.max_backups);
        let now = SystemTime::now();
        for (i, path) in rotated.iter().enumerate() {
            let too_old = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > self.config.max_age);
            if i < excess || too_old {
                self.remove_rotated(path);
            }
        }
    }

    fn remove_rotated(&mut self, path: &Path) {
        let mut gz = path.as_os_str().to_owned();
        gz.push(GZ_SUFFIX);
        let gz = PathBuf::from(gz);
        // Remove both forms of this sequence number: a file mid-compression too.
        self.pending.retain(|(p, _)| p != path);
        let mut removed = false;
        for p in [path, gz.as_path()] {
            if std::fs::remove_file(p).is_ok() {
                removed = true;
            }
        }
        if removed {
            self.stats.housekeeping.files_pruned.fetch_add(1, Relaxed);
        }
    }
}

/// Lowers the calling thread's scheduling priority to [`HOUSEKEEPING_NICE`] (Linux
/// keeps a nice value per thread); a refusal only leaves it at the process's.
fn lower_priority() {
    // SAFETY: setpriority takes plain integers; `who` 0 is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, HOUSEKEEPING_NICE) };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "could not lower the housekeeping thread's priority");
    }
}

fn gzip_file(src: &Path, dst: &Path) -> io::Result<()> {
    let src_file = File::open(src)?;
    let modified = src_file.metadata()?.modified()?;
    let mut input = BufReader::with_capacity(256 * 1024, src_file);
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(dst)?;
    out.set_permissions(Permissions::from_mode(FILE_MODE))?;
    let mut enc = GzEncoder::new(
        BufWriter::with_capacity(256 * 1024, out),
        Compression::fast(),
    );
    io::copy(&mut input, &mut enc)?;
    let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
    // Keep the rotation time, so pruning by age counts from it, not from compression.
    out.set_modified(modified)?;
    out.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nice values of this process's housekeeping threads (`/proc/self/task/*/stat`).
    fn housekeeping_nice_values() -> Vec<i32> {
        let mut values = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() != "flowlog-houseke" {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after the parenthesised name start at field 3 (state); nice is 19.
            let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
            if let Some(nice) = after.split_whitespace().nth(16) {
                values.push(nice.parse().unwrap());
            }
        }
        values
    }

    #[test]
    fn the_housekeeping_thread_runs_below_the_ring_readers_priority() {
        let dir = tempfile::tempdir().unwrap();
        let keeper = Housekeeper::start(
            &dir.path().join("network-policy-agent.log"),
            &FileSinkConfig::default(),
            Arc::new(SharedStats::default()),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let values = housekeeping_nice_values();
            if !values.is_empty() && values.iter().all(|&n| n == HOUSEKEEPING_NICE) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "housekeeping threads' nice values: {values:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(keeper);
    }
}
