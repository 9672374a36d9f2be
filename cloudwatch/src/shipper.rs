//! The pipeline: a blocking reader thread turns lines into batches ([`crate::read_loop`]); the sender keeps up
//! to `max_in_flight` PutLogEvents calls going, retries each until accepted, and moves the
//! checkpoint past a batch only when it and every earlier batch were accepted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, Checkpoint};
use crate::config::ShipperConfig;
use crate::error::ShipperError;
use crate::event::Event;
use crate::metrics::{DropReason, Metrics};
use crate::outage::Outages;
use crate::read_loop::{Batch, ReadLoop};
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
                ReadLoop::run(&config, start, &tx, &metrics, &shutdown, &unacked)
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

/// The wall clock in milliseconds since the Unix epoch (CloudWatch event times).
pub(crate) fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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
