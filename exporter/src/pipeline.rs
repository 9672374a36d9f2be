//! The synchronous hot path the datapath's ring-reader thread drives: scope filter,
//! time conversion, enrichment and formatting into one reusable buffer per event;
//! whole-line groups written to the [`FileSink`] when the buffer fills or the flush
//! interval passes; counters published to [`SharedStats`] at each write.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::Cache;
use datapath_common::abi::{FlowEvent, VERDICT_ACCEPT, VERDICT_AUDIT};
use datapath_common::clock::monotonic_now_ns;
use datapath_common::record::FlowRecord;

use crate::clock::WallClock;
use crate::enrich::{EnrichmentSnapshot, SnapshotHandle};
use crate::error::ExporterError;
use crate::format::{FlowScope, LineFormat, LineFormatter};
use crate::sink::{FileSink, FileSinkConfig, WriteFailure};
use crate::stats::{KernelCounters, PipelineCounters, SharedStats};
use crate::telemetry::LossWatch;

/// How often the monotonic/realtime clock pair is re-read.
pub const DEFAULT_CLOCK_REPAIR_INTERVAL: Duration = Duration::from_secs(1);
/// How often a moved loss counter is reported in the operational log.
pub const DEFAULT_LOSS_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Pipeline settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    pub format: LineFormat,
    pub scope: FlowScope,
    pub sink: FileSinkConfig,
    pub clock_repair_interval: Duration,
    pub loss_warning_interval: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            format: LineFormat::Json,
            scope: FlowScope::All,
            sink: FileSinkConfig::default(),
            clock_repair_interval: DEFAULT_CLOCK_REPAIR_INTERVAL,
            loss_warning_interval: DEFAULT_LOSS_WARNING_INTERVAL,
        }
    }
}

/// The flow-log pipeline. Not `Sync`: one thread owns it.
pub struct Pipeline {
    formatter: LineFormatter,
    scope: FlowScope,
    clock: WallClock,
    snapshot: Cache<SnapshotHandle, Arc<EnrichmentSnapshot>>,
    buf: Vec<u8>,
    /// End offset in `buf` and denied packets of each pending line.
    line_ends: Vec<(usize, u64)>,
    first_pending_at: Option<Instant>,
    last_event_ns: u64,
    group_bytes: usize,
    flush_interval: Duration,
    sink: FileSink,
    counters: PipelineCounters,
    stats: Arc<SharedStats>,
    loss_watch: LossWatch,
    /// The failure of the last write group, to log transitions only.
    failing: Option<WriteFailure>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("sink", &self.sink)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Opens the file sink at `path` (creating directory and live file) and starts
    /// its housekeeping thread.
    ///
    /// # Errors
    /// Invalid sink settings or a failing file-system call.
    ///
    /// # Examples
    /// ```no_run
    /// use exporter::{EnrichmentSnapshot, snapshot_handle};
    /// use exporter::pipeline::{Pipeline, PipelineConfig};
    /// let snapshot = snapshot_handle(EnrichmentSnapshot::default());
    /// let mut p = Pipeline::new(PipelineConfig::default(), snapshot, "/var/log/aws-routed-eni/network-policy-agent.log")?;
    /// # let events: Vec<datapath_common::abi::FlowEvent> = Vec::new();
    /// for ev in &events { p.on_event(ev); }
    /// p.flush_due(std::time::Instant::now());
    /// # Ok::<(), exporter::ExporterError>(())
    /// ```
    pub fn new(
        config: PipelineConfig,
        snapshot: SnapshotHandle,
        path: impl Into<PathBuf>,
    ) -> Result<Self, ExporterError> {
        Self::with_stats(config, snapshot, path, Arc::new(SharedStats::default()))
    }

    /// As [`Pipeline::new`], publishing into `stats` (e.g. the one a [`crate::Metrics`]
    /// already serves, so metrics exist before and without a pipeline).
    ///
    /// # Errors
    /// Invalid sink settings or a failing file-system call.
    pub fn with_stats(
        config: PipelineConfig,
        snapshot: SnapshotHandle,
        path: impl Into<PathBuf>,
        stats: Arc<SharedStats>,
    ) -> Result<Self, ExporterError> {
        let path = path.into();
        let group_bytes = config.sink.write_group_bytes;
        let flush_interval = config.sink.flush_interval;
        let sink = FileSink::open(&path, config.sink, Arc::clone(&stats))?;
        Ok(Self {
            formatter: LineFormatter::new(config.format),
            scope: config.scope,
            clock: WallClock::system(config.clock_repair_interval),
            snapshot: Cache::new(snapshot),
            // Room for a full group plus one long line, so the buffer never regrows.
            buf: Vec::with_capacity(group_bytes + 4096),
            line_ends: Vec::with_capacity(group_bytes / 64 + 1),
            first_pending_at: None,
            last_event_ns: 0,
            group_bytes,
            flush_interval,
            sink,
            counters: PipelineCounters::default(),
            stats,
            loss_watch: LossWatch::new(config.loss_warning_interval),
            failing: None,
        })
    }

    /// Replaces the wall clock (tests use [`WallClock::fixed`] for exact timestamps).
    pub fn set_clock(&mut self, clock: WallClock) {
        self.clock = clock;
    }

    /// The counters shared with the metrics endpoint.
    pub fn shared_stats(&self) -> Arc<SharedStats> {
        Arc::clone(&self.stats)
    }

    /// This thread's counters, including lines still pending.
    pub fn counters(&self) -> PipelineCounters {
        let mut c = self.counters;
        c.lines_pending = self.line_ends.len() as u64;
        c
    }

    /// The file sink (its path, size, rotation state).
    pub fn sink(&self) -> &FileSink {
        &self.sink
    }

    /// Records the kernel's latest counters for metrics and loss warnings.
    pub fn observe_kernel_counters(&mut self, kernel: &KernelCounters) {
        self.stats.kernel.store(kernel);
    }

    /// Handles one event: counted, filtered by scope, formatted into the pending
    /// group; the group is written once it reaches the group size.
    #[inline]
    pub fn on_event(&mut self, ev: &FlowEvent) {
        let c = &mut self.counters;
        c.events_received += 1;
        let denied_packets = match ev.verdict {
            VERDICT_ACCEPT => {
                c.events_accept += 1;
                0
            }
            VERDICT_AUDIT => {
                c.events_audit += 1;
                0
            }
            _ => {
                c.events_deny += 1;
                u64::from(ev.count.max(1))
            }
        };
        if !self.scope.admits(ev.verdict) {
            c.events_filtered_scope += 1;
            c.denied_packets_filtered += denied_packets;
            return;
        }
        let snapshot = self.snapshot.load();
        let names = snapshot.resolve(ev);
        let unix_ms = self.clock.unix_ms(ev.timestamp_ns);
        self.formatter.append(&mut self.buf, ev, unix_ms, &names);
        self.line_ends.push((self.buf.len(), denied_packets));
        self.last_event_ns = ev.timestamp_ns;
        if self.first_pending_at.is_none() {
            self.first_pending_at = Some(Instant::now());
        }
        if self.buf.len() >= self.group_bytes {
            self.write_pending(Instant::now());
        }
    }

    /// Handles one flow record: formatted into the pending group like an event's line
    /// (the flow scope does not apply: records have their own switch), or counted as
    /// skipped in a layout without record lines.
    pub fn on_record(&mut self, record: &FlowRecord) {
        self.counters.records_received += 1;
        let ev = record.as_event();
        let snapshot = self.snapshot.load();
        let names = snapshot.resolve(&ev);
        let times = (
            self.clock.unix_ms(record.start_ns),
            self.clock.unix_ms(record.end_ns),
        );
        if !self
            .formatter
            .append_record(&mut self.buf, record, &ev, times, &names)
        {
            self.counters.records_skipped_format += 1;
            return;
        }
        self.line_ends.push((self.buf.len(), 0));
        if self.first_pending_at.is_none() {
            self.first_pending_at = Some(Instant::now());
        }
        if self.buf.len() >= self.group_bytes {
            self.write_pending(Instant::now());
        }
    }

    /// Periodic work; call at least every 100 ms (e.g. on each ring poll timeout):
    /// writes pending lines older than the flush interval, rotates when due,
    /// re-pairs the clocks, publishes counters and warns when a loss counter moved.
    pub fn flush_due(&mut self, now: Instant) {
        self.clock.maybe_repair(now);
        let due = self
            .first_pending_at
            .is_some_and(|t| now.saturating_duration_since(t) >= self.flush_interval);
        if due {
            self.write_pending(now);
        } else if self.line_ends.is_empty() {
            self.rotate_if_due(now);
        }
        self.publish();
        self.loss_watch
            .check(now, &self.counters, &self.stats.kernel.load());
    }

    /// Writes every pending line now and publishes the counters.
    pub fn flush(&mut self) {
        self.write_pending(Instant::now());
        self.publish();
    }

    fn rotate_if_due(&mut self, now: Instant) {
        if let Err(e) = self.sink.maybe_rotate(now) {
            tracing::warn!(error = %e, "flow-log rotation failed; writing on to the current file");
        }
        let (rotations, errors) = self.sink.rotation_counts();
        self.counters.rotations = rotations;
        self.counters.rotation_errors = errors;
    }

    fn write_pending(&mut self, now: Instant) {
        if self.line_ends.is_empty() {
            return;
        }
        self.rotate_if_due(now);
        let result = self.sink.write_group(&self.buf);
        let c = &mut self.counters;
        match result.failure {
            None => {
                c.lines_written += self.line_ends.len() as u64;
                c.bytes_written += self.buf.len() as u64;
                c.denied_packets_written += self.line_ends.iter().map(|(_, d)| d).sum::<u64>();
                let lag = monotonic_now_ns().saturating_sub(self.last_event_ns);
                self.stats
                    .lag_ns
                    .store(lag, std::sync::atomic::Ordering::Relaxed);
            }
            Some(failure) => {
                let whole = self
                    .line_ends
                    .partition_point(|(end, _)| *end <= result.written);
                let (done, lost) = self.line_ends.split_at(whole);
                c.lines_written += done.len() as u64;
                c.bytes_written += done.last().map_or(0, |(end, _)| *end as u64);
                c.denied_packets_written += done.iter().map(|(_, d)| d).sum::<u64>();
                c.denied_packets_lost += lost.iter().map(|(_, d)| d).sum::<u64>();
                match failure {
                    WriteFailure::NoSpace => c.lines_lost_no_space += lost.len() as u64,
                    WriteFailure::Io(_) => c.lines_lost_write_error += lost.len() as u64,
                }
            }
        }
        self.log_transition(result.failure);
        self.buf.clear();
        self.line_ends.clear();
        self.first_pending_at = None;
    }

    /// One operational-log line when writes start failing (or fail differently) and
    /// one when they succeed again; the loss counts follow in the periodic warning.
    fn log_transition(&mut self, now: Option<WriteFailure>) {
        if now == self.failing {
            return;
        }
        let path = self.sink.path().display();
        match now {
            Some(WriteFailure::NoSpace) => {
                tracing::warn!(path = %path, "flow-log disk full: dropping whole lines and counting them until space returns");
            }
            Some(WriteFailure::Io(kind)) => {
                tracing::warn!(path = %path, error = %kind, "flow-log write failing: dropping whole lines and counting them");
            }
            None => tracing::info!(path = %path, "flow-log writes resumed"),
        }
        self.failing = now;
    }

    fn publish(&self) {
        self.stats.pipeline.store(&self.counters());
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.flush();
    }
}
