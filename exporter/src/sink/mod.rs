//! The rotating flow-log file sink, split as a Vector sink is: [`config`] (validated
//! at start), [`names`] (the rotated-name contract), [`writer`] (the live file and
//! its reserved, whole-line writes), rotation here (rename-then-create, never before
//! the minimum file age), and [`housekeeping`] (delayed gzip and pruning on a
//! background thread).

pub mod config;
pub mod housekeeping;
pub mod names;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use config::{
    DEFAULT_FLOW_LOG_PATH, FLUENT_BIT_REFRESH_INTERVAL, FileSinkConfig,
    ensure_operational_log_apart, min_file_age_warning, warn_if_min_file_age_below_tailer_refresh,
};
pub use names::{
    RotatedName, ShippingFile, list_shipping_order, parse_rotated_name, rotated_file_name,
};
pub use writer::{GroupWrite, WriteFailure};

use crate::error::ExporterError;
use crate::stats::SharedStats;
use housekeeping::Housekeeper;
use names::{highest_seq, split_live_path};
use writer::LiveFile;

/// The live flow-log file plus its rotation state.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    /// `.<live name>.new`: where the next live file is created before the rename.
    staging_path: PathBuf,
    live_name: String,
    config: FileSinkConfig,
    file: LiveFile,
    opened_at: Instant,
    next_seq: u64,
    rotations: u64,
    rotation_errors: u64,
    /// After a failed rotation, the next attempt waits until then.
    retry_after: Option<Instant>,
    housekeeper: Housekeeper,
}

/// Wait after a failed rotation before trying again (one warning per attempt).
pub const ROTATION_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(10);

impl FileSink {
    /// Validates `config`, creates the directory if missing, opens (or creates) the
    /// live file at `path` and starts the housekeeping thread.
    ///
    /// # Errors
    /// Invalid settings, a path without a file name, or a failing file-system call.
    pub fn open(
        path: &Path,
        config: FileSinkConfig,
        stats: Arc<SharedStats>,
    ) -> Result<Self, ExporterError> {
        config.validate()?;
        let (dir, live_name) =
            split_live_path(path).map_err(|_| ExporterError::NoFileName { path: path.into() })?;
        std::fs::create_dir_all(dir)
            .map_err(|e| ExporterError::io("creating directory", dir, e))?;
        let next_seq =
            highest_seq(path).map_err(|e| ExporterError::io("scanning directory", dir, e))? + 1;
        let file = LiveFile::open(path).map_err(|e| ExporterError::io("opening", path, e))?;
        let staging_path = dir.join(format!(".{live_name}.new"));
        let housekeeper = Housekeeper::start(path, &config, stats)
            .map_err(|e| ExporterError::io("starting housekeeping for", path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            staging_path,
            live_name: live_name.to_owned(),
            config,
            file,
            opened_at: Instant::now(),
            next_seq,
            rotations: 0,
            rotation_errors: 0,
            retry_after: None,
            housekeeper,
        })
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the live file.
    pub fn live_size(&self) -> u64 {
        self.file.size()
    }

    /// Rotations done and failed since start.
    pub fn rotation_counts(&self) -> (u64, u64) {
        (self.rotations, self.rotation_errors)
    }

    /// The sequence number the next rotation will use.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether the live file is due for rotation: at or past the size limit and at
    /// least the minimum age old.
    pub fn rotation_due(&self, now: Instant) -> bool {
        self.file.size() >= self.config.max_file_bytes
            && now.saturating_duration_since(self.opened_at) >= self.config.min_file_age
    }

    /// Rotates when due: the next live file is created under a staging name first
    /// (so a failure leaves the current file in place), then the live file is renamed
    /// to `<live>.<seq>` and the staged file renamed to the live name.
    ///
    /// Returns whether a rotation happened.
    ///
    /// # Errors
    /// A file-system call failed; the sink keeps writing to the current file.
    pub fn maybe_rotate(&mut self, now: Instant) -> Result<bool, ExporterError> {
        if !self.rotation_due(now) || self.retry_after.is_some_and(|t| now < t) {
            return Ok(false);
        }
        match self.rotate(now) {
            Ok(()) => {
                self.rotations += 1;
                self.retry_after = None;
                Ok(true)
            }
            Err(e) => {
                self.rotation_errors += 1;
                self.retry_after = Some(now + ROTATION_RETRY_DELAY);
                Err(e)
            }
        }
    }

    fn rotate(&mut self, now: Instant) -> Result<(), ExporterError> {
        let dir = self.staging_path.parent().unwrap_or(Path::new("."));
        // A leftover from a crash between create and rename is empty or holds
        // nothing we wrote after it; start it fresh.
        if self.staging_path.exists() {
            std::fs::remove_file(&self.staging_path).map_err(|e| {
                ExporterError::io("removing stale staging file", &self.staging_path, e)
            })?;
        }
        let next = LiveFile::open(&self.staging_path)
            .map_err(|e| ExporterError::io("creating", &self.staging_path, e))?;
        let mut rotated = dir.join(rotated_file_name(&self.live_name, self.next_seq, false));
        while rotated.exists()
            || dir
                .join(rotated_file_name(&self.live_name, self.next_seq, true))
                .exists()
        {
            self.next_seq += 1;
            rotated = dir.join(rotated_file_name(&self.live_name, self.next_seq, false));
        }
        std::fs::rename(&self.path, &rotated)
            .map_err(|e| ExporterError::io("renaming", &self.path, e))?;
        if let Err(e) = std::fs::rename(&self.staging_path, &self.path) {
            // Put the live file back under its name; the current file stays in use.
            let _ = std::fs::rename(&rotated, &self.path);
            let _ = std::fs::remove_file(&self.staging_path);
            return Err(ExporterError::io("renaming", &self.staging_path, e));
        }
        self.next_seq += 1;
        self.file = next;
        self.opened_at = now;
        self.housekeeper.rotated(rotated);
        Ok(())
    }

    /// Appends one group of whole lines with one reserved write.
    pub fn write_group(&mut self, group: &[u8]) -> GroupWrite {
        self.file.write_group(group)
    }
}
