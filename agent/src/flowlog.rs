//! The flow-log thread: drains the kernel's event ring into the pipeline (decode,
//! enrich, format, write) and flushes on the flush interval. It waits on the ring with
//! a short poll, since the kernel wakes readers only past a fill threshold. Flow
//! records from the conntrack sweep, when on, arrive through an inbox drained on the
//! same loop, so one thread writes the file. A sweep's batch can hold a great many
//! records; they are taken in chunks alternating with ring batches, so a large batch
//! never keeps the reader from the ring long enough for it to fill.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use datapath::EventReader;
use datapath_common::record::FlowRecord;
use exporter::Pipeline;

use crate::flow_records::RecordInbox;

/// How long the reader sleeps at most before looking at the ring again.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Events handed to the pipeline between two flush checks.
const DRAIN_BATCH: usize = 4096;
/// Records handed to the pipeline between two ring batches.
const RECORD_CHUNK: usize = 4096;

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
                let mut records = RecordFeed::new(records);
                while !stop_flag.load(Ordering::Relaxed) {
                    if let Err(e) = reader.wait(poll) {
                        tracing::warn!(error = %e, "waiting on the event ring failed");
                        std::thread::sleep(poll);
                    }
                    // Ring batches and record chunks in turn until both run dry.
                    loop {
                        let events = reader.drain(DRAIN_BATCH, |e| pipeline.on_event(e));
                        let taken = records.take(RECORD_CHUNK, &mut pipeline);
                        if events < DRAIN_BATCH && taken < RECORD_CHUNK {
                            break;
                        }
                        pipeline.flush_due(Instant::now());
                    }
                    pipeline.flush_due(Instant::now());
                }
                reader.drain(usize::MAX, |e| pipeline.on_event(e));
                records.take(usize::MAX, &mut pipeline);
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

/// The record inbox and the batch being written.
struct RecordFeed {
    inbox: Option<RecordInbox>,
    batch: Vec<FlowRecord>,
    /// Records of `batch` already handed on.
    done: usize,
}

impl RecordFeed {
    fn new(inbox: Option<RecordInbox>) -> Self {
        Self {
            inbox,
            batch: Vec::new(),
            done: 0,
        }
    }

    /// Hands up to `max` waiting records to the pipeline, in arrival order; returns
    /// how many.
    fn take(&mut self, max: usize, pipeline: &mut Pipeline) -> usize {
        let Some(inbox) = &self.inbox else { return 0 };
        let mut taken = 0;
        while taken < max {
            if self.done == self.batch.len() {
                match inbox.try_recv() {
                    Ok(batch) => {
                        self.batch = batch;
                        self.done = 0;
                    }
                    Err(_) => {
                        // Free a large batch's memory rather than keep it until the next.
                        self.batch = Vec::new();
                        self.done = 0;
                        break;
                    }
                }
                continue;
            }
            let end = self.batch.len().min(self.done + (max - taken));
            for record in &self.batch[self.done..end] {
                pipeline.on_record(record);
            }
            taken += end - self.done;
            self.done = end;
        }
        taken
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use datapath_common::{
        abi::{FAMILY_IPV4, FlowKey},
        record::FlowEnd,
    };
    use exporter::{EnrichmentSnapshot, PipelineConfig, snapshot_handle};

    use super::*;

    fn record(n: u16) -> FlowRecord {
        let mut key = FlowKey {
            family: FAMILY_IPV4,
            protocol: 6,
            pod_port: 80,
            peer_port: n,
            ..FlowKey::default()
        };
        key.pod_addr[..4].copy_from_slice(&[10, 1, 0, 2]);
        key.peer_addr[..4].copy_from_slice(&[10, 9, 0, 1]);
        FlowRecord {
            key,
            origin_direction: 0,
            policy_id: 0,
            start_ns: 1_000_000_000,
            end_ns: 2_000_000_000,
            packets: [1, 1],
            bytes: [100, 100],
            end: FlowEnd::Idle,
        }
    }

    #[test]
    fn a_large_record_batch_is_taken_in_chunks_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network-policy-agent.log");
        let mut pipeline = Pipeline::new(
            PipelineConfig::default(),
            snapshot_handle(EnrichmentSnapshot::default()),
            &path,
        )
        .unwrap();
        let (tx, inbox) = sync_channel(4);
        tx.send((0..10_000).map(record).collect()).unwrap();
        tx.send((10_000..10_010).map(record).collect()).unwrap();
        let mut feed = RecordFeed::new(Some(inbox));
        let mut taken = Vec::new();
        loop {
            let n = feed.take(RECORD_CHUNK, &mut pipeline);
            taken.push(n);
            assert_eq!(
                pipeline.counters().records_received,
                taken.iter().sum::<usize>() as u64
            );
            if n < RECORD_CHUNK {
                break;
            }
        }
        assert_eq!(taken, [4096, 4096, 1818]);
        assert_eq!(feed.take(RECORD_CHUNK, &mut pipeline), 0, "nothing left");
        pipeline.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let ports: Vec<u64> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["Src Port"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(ports, (0..10_010).collect::<Vec<u64>>(), "arrival order");
    }

    #[test]
    fn without_an_inbox_no_record_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let mut pipeline = Pipeline::new(
            PipelineConfig::default(),
            snapshot_handle(EnrichmentSnapshot::default()),
            dir.path().join("network-policy-agent.log"),
        )
        .unwrap();
        assert_eq!(RecordFeed::new(None).take(usize::MAX, &mut pipeline), 0);
    }
}
