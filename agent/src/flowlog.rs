//! The flow-log thread: drains the kernel's event ring into the pipeline (decode,
//! enrich, format, write) and flushes on the flush interval. It waits on the ring with
//! a short poll, since the kernel wakes readers only past a fill threshold. Flow
//! records from the conntrack sweep, when on, arrive through an inbox drained on the
//! same loop, so one thread writes the file.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use datapath::EventReader;
use exporter::Pipeline;

use crate::flow_records::RecordInbox;

/// How long the reader sleeps at most before looking at the ring again.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Events handed to the pipeline between two flush checks.
const DRAIN_BATCH: usize = 4096;

pub struct FlowLogThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(EventReader, Pipeline)>>,
}

impl FlowLogThread {
    /// Starts the thread; it owns the reader and the pipeline until [`Self::stop`].
    pub fn spawn(reader: EventReader, pipeline: Pipeline, poll: Duration) -> std::io::Result<Self> {
        Self::spawn_with_records(reader, pipeline, poll, None)
    }

    /// As [`Self::spawn`], also writing the flow records that arrive in `records`.
    pub fn spawn_with_records(
        mut reader: EventReader,
        mut pipeline: Pipeline,
        poll: Duration,
        records: Option<RecordInbox>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("flow-log".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    if let Err(e) = reader.wait(poll) {
                        tracing::warn!(error = %e, "waiting on the event ring failed");
                        std::thread::sleep(poll);
                    }
                    while reader.drain(DRAIN_BATCH, |e| pipeline.on_event(e)) == DRAIN_BATCH {
                        pipeline.flush_due(Instant::now());
                    }
                    take_records(records.as_ref(), &mut pipeline);
                    pipeline.flush_due(Instant::now());
                }
                reader.drain(usize::MAX, |e| pipeline.on_event(e));
                take_records(records.as_ref(), &mut pipeline);
                pipeline.flush();
                (reader, pipeline)
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    /// Drains what is left, flushes the file and hands the parts back.
    pub fn stop(mut self) -> Option<(EventReader, Pipeline)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok())
    }
}

/// Hands every record batch waiting in `inbox` to the pipeline.
fn take_records(inbox: Option<&RecordInbox>, pipeline: &mut Pipeline) {
    let Some(inbox) = inbox else { return };
    while let Ok(batch) = inbox.try_recv() {
        for record in &batch {
            pipeline.on_record(record);
        }
    }
}

impl Drop for FlowLogThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
