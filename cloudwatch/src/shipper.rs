//! The pipeline: a blocking reader thread turns lines into batches; the sender keeps up
//! to `max_in_flight` PutLogEvents calls going, retries each until accepted, and moves the
//! checkpoint past a batch only when it and every earlier batch were accepted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::batch::BatchBuilder;
use crate::checkpoint::{self, Checkpoint};
use crate::config::ShipperConfig;
use crate::error::ShipperError;
use crate::event::{Event, build_message, parse_timestamp};
use crate::limits::{MAX_EVENT_AGE_MS, MAX_EVENT_FUTURE_MS};
use crate::metrics::{DropReason, Metrics};
use crate::outage::Outages;
use crate::reader::{LineReader, Poll};
use crate::retry::{Backoff, BackoffConfig, FailureCause};
use crate::sink::CloudWatchSink;

/// Ships the flow-log files to CloudWatch Logs.
///
/// # Examples
/// ```no_run
/// # async fn demo() -> Result<(), cloudwatch::ShipperError> {
/// let config = cloudwatch::ShipperConfig::new("/var/log/aws-routed-eni", "prod", "node-1");
/// let shipper = cloudwatch::Shipper::new(config)?;
/// let metrics = shipper.metrics(); // register with the agent's registry
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// shipper.run(shutdown).await
/// # }
/// ```
#[derive(Debug)]
pub struct Shipper {
    config: ShipperConfig,
    metrics: Metrics,
}

/// One batch handed from the reader to the sender.
struct Batch {
    events: Vec<Event>,
    /// The position just past the last line this batch covers (including lines dropped
    /// before sending); `None` when nothing was read.
    end: Option<Checkpoint>,
    bytes: u64,
}

enum Outcome {
    Delivered,
    Abandoned,
}

impl Shipper {
    /// Validates the configuration.
    ///
    /// # Errors
    /// [`ShipperError::InvalidConfig`] naming the bad field.
    pub fn new(config: ShipperConfig) -> Result<Self, ShipperError> {
        config.validate()?;
        Ok(Self {
            config,
            metrics: Metrics::default(),
        })
    }

    /// The shipper's counters (shared with the running shipper).
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Ships until `shutdown` is cancelled, then sends what was read (for at most
    /// `shutdown_grace`) and persists the checkpoint. Remote failures never end it.
    ///
    /// # Errors
    /// When no region can be resolved, or a task of the shipper died.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ShipperError> {
        let sink = CloudWatchSink::connect(&self.config).await?;
        tracing::info!(group = sink.group(), stream = sink.stream(), dir = %self.config.dir.display(), "shipping flow logs to CloudWatch Logs");
        let config = self.config;
        let metrics = self.metrics;
        let cp_path = config.checkpoint_path();
        let start = checkpoint::load(&cp_path)?;
        let unacked = Arc::new(AtomicU64::new(0));

        let (tx, rx) = mpsc::channel::<Batch>(config.max_in_flight);
        let reader = {
            let (config, metrics, shutdown, unacked, start) = (
                config.clone(),
                metrics.clone(),
                shutdown.clone(),
                unacked.clone(),
                start.clone(),
            );
            tokio::task::spawn_blocking(move || {
                read_loop(&config, start, &tx, &metrics, &shutdown, &unacked)
            })
        };
        let (cp_tx, cp_rx) = watch::channel(start);
        let writer = tokio::spawn(checkpoint_writer(
            cp_path.clone(),
            config.checkpoint_fsync,
            cp_rx,
        ));

        send_loop(
            Arc::new(sink),
            rx,
            &config,
            &metrics,
            &shutdown,
            &cp_tx,
            &unacked,
        )
        .await;

        let last = cp_tx.borrow().clone();
        drop(cp_tx);
        let writer_res = writer.await;
        if let Some(cp) = last {
            let (path, fsync) = (cp_path.clone(), config.checkpoint_fsync);
            match tokio::task::spawn_blocking(move || checkpoint::store(&path, &cp, fsync)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "could not persist the CloudWatch checkpoint at shutdown")
                }
                Err(e) => tracing::error!(error = %e, "checkpoint task failed at shutdown"),
            }
        }
        let reader_res = reader.await;
        writer_res.map_err(|e| ShipperError::Task {
            task: "checkpoint writer",
            detail: e.to_string(),
        })?;
        reader_res.map_err(|e| ShipperError::Task {
            task: "reader",
            detail: e.to_string(),
        })?;
        tracing::info!("CloudWatch shipper stopped");
        Ok(())
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The blocking half: reads lines, filters, builds batches, hands them to the sender.
fn read_loop(
    config: &ShipperConfig,
    start: Option<Checkpoint>,
    tx: &mpsc::Sender<Batch>,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    unacked: &AtomicU64,
) {
    let max_age_ms = config.retention_days.map_or(MAX_EVENT_AGE_MS, |d| {
        (i64::from(d) * 86_400_000).min(MAX_EVENT_AGE_MS)
    });
    let mut reader = loop {
        match LineReader::open(&config.dir, &config.live_name, start.clone()) {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the flow-log files yet; retrying");
                if sleep_or_cancel(shutdown, Duration::from_secs(1)) {
                    return;
                }
            }
        }
    };
    let mut builder = BatchBuilder::new(config.batch);
    let mut line = Vec::with_capacity(4096);
    let mut last_pos: Option<Checkpoint> = start.clone();
    let mut sent_pos: Option<Checkpoint> = start;
    let mut opened_at = Instant::now();
    let mut last_ts = wall_ms();
    let (mut too_old, mut too_new, mut truncated) = (0u64, 0u64, 0u64);
    let mut since_check = 0u32;
    let mut last_backlog = Instant::now();

    let hand_over = |builder: &mut BatchBuilder,
                     last_pos: Option<Checkpoint>,
                     too_old: &mut u64,
                     too_new: &mut u64,
                     truncated: &mut u64|
     -> bool {
        metrics.record_drop(DropReason::TooOld, std::mem::take(too_old));
        metrics.record_drop(DropReason::TooNew, std::mem::take(too_new));
        metrics.truncated.inc_by(std::mem::take(truncated));
        let bytes = builder.bytes() as u64;
        let batch = Batch {
            events: builder.take(),
            end: last_pos,
            bytes,
        };
        unacked.fetch_add(bytes, Ordering::Relaxed);
        tx.blocking_send(batch).is_ok()
    };

    // The clock and the cancellation flag are read once per CHECK_EVERY lines, not per
    // line: the age window is hours wide and shutdown may wait a few microseconds more.
    const CHECK_EVERY: u32 = 256;
    let mut now = wall_ms();
    loop {
        if since_check == 0 && shutdown.is_cancelled() {
            if (!builder.is_empty() || last_pos != sent_pos)
                && !hand_over(
                    &mut builder,
                    last_pos.clone(),
                    &mut too_old,
                    &mut too_new,
                    &mut truncated,
                )
            {
                tracing::debug!("sender gone before the last batch");
            }
            return;
        }
        let lost = reader.take_lost_files();
        if lost > 0 {
            metrics.lost_files.inc_by(lost);
        }
        for (reason, n) in reader.take_lost_lines() {
            if n > 0 {
                metrics.lines_lost(reason).inc_by(n);
            }
        }
        match reader.next_line(&mut line) {
            Ok(Poll::Line(pos)) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    // PutLogEvents refuses an empty message (minimum length 1) and a
                    // whitespace-only one carries nothing: skipped, counted.
                    metrics.blank_lines.inc();
                    last_pos = Some(pos);
                    continue;
                }
                let ts = parse_timestamp(&line).unwrap_or(last_ts);
                last_ts = ts;
                if ts < now - max_age_ms {
                    too_old += 1;
                } else if ts > now + MAX_EVENT_FUTURE_MS {
                    too_new += 1;
                } else {
                    let msg = build_message(&line, config.message_format, &config.node_name);
                    truncated += u64::from(msg.truncated);
                    let event = Event {
                        timestamp_ms: ts,
                        message: msg.text,
                    };
                    if !builder.fits(&event) {
                        if !hand_over(
                            &mut builder,
                            last_pos.clone(),
                            &mut too_old,
                            &mut too_new,
                            &mut truncated,
                        ) {
                            return;
                        }
                        sent_pos = last_pos.clone();
                    }
                    if builder.is_empty() {
                        opened_at = Instant::now();
                    }
                    builder.push(event);
                }
                last_pos = Some(pos);
                since_check += 1;
                if since_check >= CHECK_EVERY {
                    since_check = 0;
                    now = wall_ms();
                    if !builder.is_empty() && opened_at.elapsed() >= config.flush_interval {
                        if !hand_over(
                            &mut builder,
                            last_pos.clone(),
                            &mut too_old,
                            &mut too_new,
                            &mut truncated,
                        ) {
                            return;
                        }
                        sent_pos = last_pos.clone();
                    }
                }
            }
            Ok(Poll::Idle) => {
                since_check = 0;
                now = wall_ms();
                let due = if builder.is_empty() {
                    last_pos != sent_pos
                } else {
                    opened_at.elapsed() >= config.flush_interval
                };
                if due {
                    if !hand_over(
                        &mut builder,
                        last_pos.clone(),
                        &mut too_old,
                        &mut too_new,
                        &mut truncated,
                    ) {
                        return;
                    }
                    sent_pos = last_pos.clone();
                }
                if last_backlog.elapsed() >= Duration::from_secs(1) {
                    last_backlog = Instant::now();
                    let backlog = reader.unread_bytes() + unacked.load(Ordering::Relaxed);
                    metrics
                        .backlog_bytes
                        .set(i64::try_from(backlog).unwrap_or(i64::MAX));
                }
                let wait = if builder.is_empty() {
                    config.poll_interval
                } else {
                    config
                        .poll_interval
                        .min(config.flush_interval.saturating_sub(opened_at.elapsed()))
                };
                if sleep_or_cancel(shutdown, wait.max(Duration::from_millis(1))) {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the flow-log files failed; retrying");
                if sleep_or_cancel(shutdown, Duration::from_secs(1)) {
                    continue;
                }
            }
        }
    }
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

type InFlight = (JoinHandle<Outcome>, Option<Checkpoint>, u64);

async fn front(inflight: &mut VecDeque<InFlight>) -> Result<Outcome, tokio::task::JoinError> {
    match inflight.front_mut() {
        Some((handle, _, _)) => handle.await,
        None => std::future::pending().await,
    }
}

/// The async half: keeps calls in flight and commits accepted positions in file order.
async fn send_loop(
    sink: Arc<CloudWatchSink>,
    mut rx: mpsc::Receiver<Batch>,
    config: &ShipperConfig,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    cp_tx: &watch::Sender<Option<Checkpoint>>,
    unacked: &AtomicU64,
) {
    let abandon = CancellationToken::new();
    let outages = Arc::new(Outages::default());
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    let mut reader_done = false;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if reader_done && inflight.is_empty() {
            break;
        }
        metrics.in_flight.set(inflight.len() as i64);
        let can_take = !reader_done && inflight.len() < config.max_in_flight;
        let grace_end = deadline.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            biased;
            done = front(&mut inflight) => {
                let Some((_, end, bytes)) = inflight.pop_front() else { continue };
                match done {
                    Ok(Outcome::Delivered) => {
                        unacked.fetch_sub(bytes, Ordering::Relaxed);
                        metrics.backlog_bytes.dec_by(i64::try_from(bytes).unwrap_or(0));
                        if end.is_some() {
                            cp_tx.send_replace(end);
                        }
                    }
                    Ok(Outcome::Abandoned) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "a CloudWatch delivery task died; its lines are sent again by the next run");
                        break;
                    }
                }
            }
            batch = rx.recv(), if can_take => match batch {
                Some(batch) if batch.events.is_empty() => {
                    let handle = tokio::spawn(async { Outcome::Delivered });
                    inflight.push_back((handle, batch.end, batch.bytes));
                }
                Some(batch) => {
                    let task = deliver(sink.clone(), batch.events, metrics.clone(), config.backoff, abandon.clone(), outages.clone());
                    inflight.push_back((tokio::spawn(task), batch.end, batch.bytes));
                }
                None => reader_done = true,
            },
            () = shutdown.cancelled(), if deadline.is_none() => {
                deadline = Some(tokio::time::Instant::now() + config.shutdown_grace);
            }
            () = tokio::time::sleep_until(grace_end), if deadline.is_some() => {
                tracing::warn!(in_flight = inflight.len(), "shutdown grace over: unsent lines stay on disk for the next run");
                break;
            }
        }
    }
    abandon.cancel();
    for (handle, _, _) in inflight {
        handle.abort();
    }
    metrics.in_flight.set(0);
}

/// Delivers one batch: retries until accepted, creates the destination when missing,
/// splits a batch the service calls invalid and drops a single invalid event.
async fn deliver(
    sink: Arc<CloudWatchSink>,
    events: Vec<Event>,
    metrics: Metrics,
    backoff: BackoffConfig,
    abandon: CancellationToken,
    outages: Arc<Outages>,
) -> Outcome {
    let mut stack = vec![events];
    while let Some(chunk) = stack.pop() {
        let mut backoff = Backoff::new(backoff);
        let mut created = false;
        let mut attempts = 0u32;
        let mut detail = String::new();
        loop {
            attempts += 1;
            let res = tokio::select! {
                r = sink.put(&chunk) => r,
                () = abandon.cancelled() => return Outcome::Abandoned,
            };
            let cause = match res {
                Ok(rejected) => {
                    if let Some(report) = outages.success(Instant::now()) {
                        outages.log(&report, "PutLogEvents", "");
                    }
                    metrics.batches.inc();
                    metrics.events.inc_by(chunk.len() as u64);
                    metrics
                        .bytes
                        .inc_by(chunk.iter().map(|e| e.size() as u64).sum());
                    metrics.last_success_unix_seconds.set(wall_ms() / 1000);
                    metrics.record_drop(DropReason::RejectedTooOld, rejected.too_old);
                    metrics.record_drop(DropReason::RejectedTooNew, rejected.too_new);
                    metrics.record_drop(DropReason::RejectedExpired, rejected.expired);
                    break;
                }
                Err(e) => {
                    detail.clone_from(&e.detail);
                    match e.cause {
                        FailureCause::InvalidParameter => {
                            metrics.retries(e.cause).inc();
                            if chunk.len() > 1 {
                                tracing::warn!(events = chunk.len(), error = %e.detail, "CloudWatch refused a batch as invalid: splitting it");
                                let mut first = chunk;
                                let second = first.split_off(first.len() / 2);
                                stack.push(second);
                                stack.push(first);
                            } else {
                                tracing::warn!(error = %e.detail, "CloudWatch refused an event as invalid: dropped");
                                metrics.record_drop(DropReason::InvalidParameter, 1);
                            }
                            break;
                        }
                        FailureCause::NotFound if !created => {
                            created = true;
                            metrics.retries(e.cause).inc();
                            match sink.create_destination().await {
                                Ok(()) => continue,
                                Err(ce) => ce.cause,
                            }
                        }
                        FailureCause::Credentials => {
                            tracing::error!(operation = e.operation, error = %e.detail, "CloudWatch Logs refused our credentials; backing off");
                            e.cause
                        }
                        FailureCause::Other => {
                            tracing::error!(operation = e.operation, error = %e.detail, "CloudWatch Logs call failed; backing off");
                            e.cause
                        }
                        cause => cause,
                    }
                }
            };
            if cause.is_retried_as_is() {
                let lines = if attempts == 1 { chunk.len() as u64 } else { 0 };
                if let Some(report) = outages.failure(Instant::now(), cause, lines) {
                    outages.log(&report, "PutLogEvents", &detail);
                }
            }
            tracing::debug!(
                cause = cause.as_str(),
                attempts,
                "CloudWatch Logs call failed; retrying"
            );
            if cause == FailureCause::NotFound {
                created = false;
            }
            metrics.retries(cause).inc();
            let delay = backoff.next_delay(cause, rand::random::<f64>());
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = abandon.cancelled() => return Outcome::Abandoned,
            }
        }
    }
    Outcome::Delivered
}

/// Writes each new checkpoint (coalescing updates that arrive while a write is running).
async fn checkpoint_writer(
    path: std::path::PathBuf,
    fsync: bool,
    mut rx: watch::Receiver<Option<Checkpoint>>,
) {
    let mut written = rx.borrow_and_update().clone();
    while rx.changed().await.is_ok() {
        let cp = rx.borrow_and_update().clone();
        if cp == written {
            continue;
        }
        let Some(c) = cp.clone() else { continue };
        let p = path.clone();
        match tokio::task::spawn_blocking(move || checkpoint::store(&p, &c, fsync)).await {
            Ok(Ok(())) => written = cp,
            Ok(Err(e)) => tracing::warn!(error = %e, "could not persist the CloudWatch checkpoint"),
            Err(e) => tracing::warn!(error = %e, "checkpoint write task failed"),
        }
    }
}
