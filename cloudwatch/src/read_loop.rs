//! The shipper's blocking half: reads lines from the checkpoint on, skips blank lines,
//! drops events outside the API's time window, builds batches and hands each to the
//! sender when it is full, when it has waited `flush_interval`, or at shutdown. Every
//! skipped, dropped, truncated or lost line is counted in [`Metrics`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::batch::BatchBuilder;
use crate::checkpoint::Checkpoint;
use crate::config::ShipperConfig;
use crate::event::{Event, build_message, parse_timestamp};
use crate::limits::{MAX_EVENT_AGE_MS, MAX_EVENT_FUTURE_MS};
use crate::metrics::{DropReason, Metrics};
use crate::reader::{LineReader, Poll};
use crate::shipper::wall_ms;

/// The clock and the cancellation flag are read once per `CHECK_EVERY` lines, not per
/// line: the age window is hours wide and shutdown may wait a few microseconds more.
const CHECK_EVERY: u32 = 256;
/// How long to wait before opening or reading the files again after an error.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often the backlog gauge is refreshed while idle.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// One batch handed from the reader to the sender.
pub(crate) struct Batch {
    pub(crate) events: Vec<Event>,
    /// The position just past the last line this batch covers (including lines dropped
    /// before sending); `None` when nothing was read.
    pub(crate) end: Option<Checkpoint>,
    pub(crate) bytes: u64,
}

/// Whether the sender still takes batches.
enum Flow {
    Continue,
    SenderGone,
}

/// Lines read but not sent, counted when the batch that passes them is handed over.
#[derive(Default)]
struct Dropped {
    too_old: u64,
    too_new: u64,
    truncated: u64,
}

/// The read loop's state between two lines.
pub(crate) struct ReadLoop<'a> {
    config: &'a ShipperConfig,
    tx: &'a mpsc::Sender<Batch>,
    metrics: &'a Metrics,
    shutdown: &'a CancellationToken,
    /// Bytes handed to the sender and not yet acknowledged (for the backlog gauge).
    unacked: &'a AtomicU64,
    reader: LineReader,
    builder: BatchBuilder,
    line: Vec<u8>,
    /// Just past the last line read.
    last_pos: Option<Checkpoint>,
    /// Just past the last line handed to the sender.
    sent_pos: Option<Checkpoint>,
    /// When the batch being built got its first event.
    opened_at: Instant,
    /// The last timestamp read (a line without one takes it).
    last_ts: i64,
    /// The wall clock as last read.
    now: i64,
    max_age_ms: i64,
    dropped: Dropped,
    since_check: u32,
    last_backlog: Instant,
}

impl<'a> ReadLoop<'a> {
    /// Reads and hands over batches until `shutdown` is cancelled (then hands over what
    /// was read) or the sender is gone.
    pub(crate) fn run(
        config: &'a ShipperConfig,
        start: Option<Checkpoint>,
        tx: &'a mpsc::Sender<Batch>,
        metrics: &'a Metrics,
        shutdown: &'a CancellationToken,
        unacked: &'a AtomicU64,
    ) {
        let Some(reader) = open(config, start.clone(), shutdown) else {
            return;
        };
        let mut this = Self {
            config,
            tx,
            metrics,
            shutdown,
            unacked,
            reader,
            builder: BatchBuilder::new(config.batch),
            line: Vec::with_capacity(4096),
            last_pos: start.clone(),
            sent_pos: start,
            opened_at: Instant::now(),
            last_ts: wall_ms(),
            now: wall_ms(),
            max_age_ms: max_age_ms(config),
            dropped: Dropped::default(),
            since_check: 0,
            last_backlog: Instant::now(),
        };
        this.read_until_stopped();
    }

    fn read_until_stopped(&mut self) {
        loop {
            if self.since_check == 0 && self.shutdown.is_cancelled() {
                self.hand_over_rest();
                return;
            }
            self.count_lost();
            let flow = match self.reader.next_line(&mut self.line) {
                Ok(Poll::Line(pos)) => self.on_line(pos),
                Ok(Poll::Idle) => self.on_idle(),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the flow-log files failed; retrying");
                    sleep_or_cancel(self.shutdown, RETRY_AFTER);
                    Flow::Continue
                }
            };
            if let Flow::SenderGone = flow {
                return;
            }
        }
    }

    /// At shutdown: what was read and not handed over yet goes to the sender.
    fn hand_over_rest(&mut self) {
        if (!self.builder.is_empty() || self.last_pos != self.sent_pos)
            && let Flow::SenderGone = self.hand_over()
        {
            tracing::debug!("sender gone before the last batch");
        }
    }

    /// Files and lines the reader lost (rotated away or truncated before being read).
    fn count_lost(&mut self) {
        let lost = self.reader.take_lost_files();
        if lost > 0 {
            self.metrics.lost_files.inc_by(lost);
        }
        for (reason, n) in self.reader.take_lost_lines() {
            if n > 0 {
                self.metrics.lines_lost(reason).inc_by(n);
            }
        }
    }

    fn on_line(&mut self, pos: Checkpoint) -> Flow {
        if self.line.iter().all(u8::is_ascii_whitespace) {
            // PutLogEvents refuses an empty message (minimum length 1) and a
            // whitespace-only one carries nothing: skipped, counted.
            self.metrics.blank_lines.inc();
            self.last_pos = Some(pos);
            return Flow::Continue;
        }
        if let Some(event) = self.event_of_line()
            && let Flow::SenderGone = self.push(event)
        {
            return Flow::SenderGone;
        }
        self.last_pos = Some(pos);
        self.since_check += 1;
        if self.since_check < CHECK_EVERY {
            return Flow::Continue;
        }
        self.since_check = 0;
        self.now = wall_ms();
        if !self.builder.is_empty() && self.opened_at.elapsed() >= self.config.flush_interval {
            return self.hand_over_and_mark();
        }
        Flow::Continue
    }

    /// The event of the current line, or `None` (counted) when its timestamp is
    /// outside what PutLogEvents accepts.
    fn event_of_line(&mut self) -> Option<Event> {
        let ts = parse_timestamp(&self.line).unwrap_or(self.last_ts);
        self.last_ts = ts;
        if ts < self.now - self.max_age_ms {
            self.dropped.too_old += 1;
            return None;
        }
        if ts > self.now + MAX_EVENT_FUTURE_MS {
            self.dropped.too_new += 1;
            return None;
        }
        let msg = build_message(
            &self.line,
            self.config.message_format,
            &self.config.node_name,
        );
        self.dropped.truncated += u64::from(msg.truncated);
        Some(Event {
            timestamp_ms: ts,
            message: msg.text,
        })
    }

    /// Adds `event` to the batch, handing the batch over first when it does not fit.
    fn push(&mut self, event: Event) -> Flow {
        if !self.builder.fits(&event)
            && let Flow::SenderGone = self.hand_over_and_mark()
        {
            return Flow::SenderGone;
        }
        if self.builder.is_empty() {
            self.opened_at = Instant::now();
        }
        self.builder.push(event);
        Flow::Continue
    }

    /// Nothing new to read: hand over a batch that waited long enough (or the position
    /// of lines read and all dropped), refresh the backlog gauge, and wait.
    fn on_idle(&mut self) -> Flow {
        self.since_check = 0;
        self.now = wall_ms();
        let due = if self.builder.is_empty() {
            self.last_pos != self.sent_pos
        } else {
            self.opened_at.elapsed() >= self.config.flush_interval
        };
        if due && let Flow::SenderGone = self.hand_over_and_mark() {
            return Flow::SenderGone;
        }
        if self.last_backlog.elapsed() >= BACKLOG_EVERY {
            self.last_backlog = Instant::now();
            self.report_backlog();
        }
        sleep_or_cancel(
            self.shutdown,
            self.idle_wait().max(Duration::from_millis(1)),
        );
        Flow::Continue
    }

    /// Unread file bytes plus bytes handed over and not yet acknowledged.
    fn report_backlog(&self) {
        let backlog = self.reader.unread_bytes() + self.unacked.load(Ordering::Relaxed);
        self.metrics
            .backlog_bytes
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
    }

    /// How long to sleep when idle: the poll interval, or less when an open batch
    /// comes due sooner.
    fn idle_wait(&self) -> Duration {
        if self.builder.is_empty() {
            self.config.poll_interval
        } else {
            self.config.poll_interval.min(
                self.config
                    .flush_interval
                    .saturating_sub(self.opened_at.elapsed()),
            )
        }
    }

    /// Hands the batch over and remembers how far the sender has been given lines.
    fn hand_over_and_mark(&mut self) -> Flow {
        let flow = self.hand_over();
        if let Flow::Continue = flow {
            self.sent_pos = self.last_pos.clone();
        }
        flow
    }

    /// Sends the batch (possibly empty: it still carries the position past dropped
    /// lines) and counts the lines dropped since the last one.
    fn hand_over(&mut self) -> Flow {
        let dropped = std::mem::take(&mut self.dropped);
        self.metrics
            .record_drop(DropReason::TooOld, dropped.too_old);
        self.metrics
            .record_drop(DropReason::TooNew, dropped.too_new);
        self.metrics.truncated.inc_by(dropped.truncated);
        let bytes = self.builder.bytes() as u64;
        let batch = Batch {
            events: self.builder.take(),
            end: self.last_pos.clone(),
            bytes,
        };
        self.unacked.fetch_add(bytes, Ordering::Relaxed);
        if self.tx.blocking_send(batch).is_ok() {
            Flow::Continue
        } else {
            Flow::SenderGone
        }
    }
}

/// Opens the files at `start`, retrying every second; `None` when cancelled first.
fn open(
    config: &ShipperConfig,
    start: Option<Checkpoint>,
    shutdown: &CancellationToken,
) -> Option<LineReader> {
    loop {
        match LineReader::open(&config.dir, &config.live_name, start.clone()) {
            Ok(r) => return Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the flow-log files yet; retrying");
                if sleep_or_cancel(shutdown, RETRY_AFTER) {
                    return None;
                }
            }
        }
    }
}

/// The oldest event age to send: the API's limit, or the group's retention if shorter.
fn max_age_ms(config: &ShipperConfig) -> i64 {
    config.retention_days.map_or(MAX_EVENT_AGE_MS, |d| {
        (i64::from(d) * 86_400_000).min(MAX_EVENT_AGE_MS)
    })
}

/// Sleeps in small steps; true when cancelled.
fn sleep_or_cancel(shutdown: &CancellationToken, total: Duration) -> bool {
    let step = Duration::from_millis(50);
    let end = Instant::now() + total;
    loop {
        if shutdown.is_cancelled() {
            return true;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(step));
    }
}
