//! Conntrack chores of the daemon's housekeeping: the sweep that ends flows and, with
//! `--flow-records`, hands their records to the flow-log thread through a bounded
//! queue (a full queue drops the batch and counts every record in it); the conntrack
//! and record counts published for metrics.

use std::{
    sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    time::{Duration, Instant},
};

use config::AgentConfig;
use datapath::{DatapathMaps, FlowSweeper, RecordOptions};
use datapath_common::{clock::monotonic_now_ns, record::FlowRecord};
use exporter::{ConntrackCounters, SharedStats};

/// Sweep batches waiting for the flow-log thread (one batch per sweep).
pub const RECORD_QUEUE_BATCHES: usize = 64;
/// With records on, how often conntrack is swept at most, so a closed TCP flow's
/// record comes within this long (idle flows still end after the cleanup period).
pub const RECORD_SWEEP_PERIOD: Duration = Duration::from_secs(5);

/// The flow-log thread's end of the record queue.
pub type RecordInbox = Receiver<Vec<FlowRecord>>;

/// The record options `config` asks for.
pub fn record_options(config: &AgentConfig) -> RecordOptions {
    RecordOptions {
        enabled: config.flow_records,
        interval: config.flow_record_interval,
    }
}

/// The sweep, its schedule and where its records go.
#[derive(Debug)]
pub struct ConntrackChores {
    sweeper: FlowSweeper,
    records: Option<SyncSender<Vec<FlowRecord>>>,
    /// Idleness that ends a flow (`--conntrack-cache-cleanup-period`).
    idle: Duration,
    period: Duration,
    last: Option<Instant>,
    totals: ConntrackCounters,
}

impl ConntrackChores {
    /// Chores for `options`, ending flows idle for `idle`; with records on, the inbox
    /// the flow-log thread drains.
    pub fn new(options: RecordOptions, idle: Duration) -> (Self, Option<RecordInbox>) {
        let (records, inbox) = if options.enabled {
            let (tx, rx) = sync_channel(RECORD_QUEUE_BATCHES);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let mut period = idle;
        if options.enabled {
            period = period.min(RECORD_SWEEP_PERIOD);
            if !options.interval.is_zero() {
                period = period.min(options.interval);
            }
        }
        let chores = Self {
            sweeper: FlowSweeper::new(options),
            records,
            idle,
            period,
            last: None,
            totals: ConntrackCounters::default(),
        };
        (chores, inbox)
    }

    /// Time between sweeps.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Is a sweep due at `now` (the first one is due a period after start)?
    pub fn due(&mut self, now: Instant) -> bool {
        let last = *self.last.get_or_insert(now);
        now.saturating_duration_since(last) >= self.period
    }

    /// Sweeps now: records queued, counts published into `stats`.
    pub fn run(&mut self, maps: &mut DatapathMaps, stats: &SharedStats) {
        self.last = Some(Instant::now());
        let mut records = Vec::new();
        let swept = self
            .sweeper
            .sweep(maps, monotonic_now_ns(), self.idle, &mut records);
        let made = records.len() as u64;
        self.totals.records_made += made;
        if let Some(tx) = &self.records
            && !records.is_empty()
        {
            match tx.try_send(records) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.totals.records_lost_queue += made;
                    tracing::warn!(
                        records = made,
                        "flow-record queue full: records dropped and counted"
                    );
                }
            }
        }
        match swept {
            Ok(counts) => {
                self.totals.conntrack_entries = counts.live;
                self.totals.conntrack_ended = counts.removed_total;
                self.totals.conntrack_evicted = counts.evicted_total;
                if counts.removed > 0 {
                    tracing::debug!(
                        ended = counts.removed,
                        live = counts.live,
                        "conntrack sweep"
                    );
                }
            }
            Err(err) => tracing::warn!(error = %err, "conntrack sweep failed"),
        }
        match maps.counters() {
            Ok(c) => {
                self.totals.conntrack_inserts = c.conntrack_inserts;
                self.totals.conntrack_removed_kernel = c.conntrack_removals;
                self.totals.conntrack_insert_race_packets = c.conntrack_insert_races;
            }
            Err(err) => tracing::warn!(error = %err, "reading kernel counters failed"),
        }
        stats.conntrack.store(&self.totals);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(enabled: bool, interval: u64) -> RecordOptions {
        RecordOptions {
            enabled,
            interval: Duration::from_secs(interval),
        }
    }

    #[test]
    fn records_off_sweeps_on_the_cleanup_period_and_opens_no_queue() {
        let (chores, inbox) = ConntrackChores::new(options(false, 60), Duration::from_secs(300));
        assert_eq!(chores.period(), Duration::from_secs(300));
        assert!(inbox.is_none());
    }

    #[test]
    fn records_on_sweep_at_least_every_record_period_and_interval() {
        let idle = Duration::from_secs(300);
        let (chores, inbox) = ConntrackChores::new(options(true, 60), idle);
        assert_eq!(chores.period(), RECORD_SWEEP_PERIOD);
        assert!(inbox.is_some());
        let (chores, _) = ConntrackChores::new(options(true, 2), idle);
        assert_eq!(chores.period(), Duration::from_secs(2));
        let (chores, _) = ConntrackChores::new(options(true, 0), Duration::from_secs(1));
        assert_eq!(chores.period(), Duration::from_secs(1));
    }

    #[test]
    fn the_first_sweep_is_due_a_period_after_start() {
        let (mut chores, _) = ConntrackChores::new(options(false, 0), Duration::from_secs(10));
        let start = Instant::now();
        assert!(!chores.due(start));
        assert!(!chores.due(start + Duration::from_secs(9)));
        assert!(chores.due(start + Duration::from_secs(10)));
    }
}
