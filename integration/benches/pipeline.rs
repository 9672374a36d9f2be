//! `cargo bench -p integration --bench pipeline`: the real classifier (BPF_PROG_TEST_RUN,
//! folding off, DENY events from 1,000 peer pods over many 5-tuples) feeding the ring,
//! and the agent's own flow-log thread (`agent::flowlog::FlowLogThread`: its poll
//! interval, drain batches and record inbox) running the whole pipeline (decode,
//! enrich, format, write, rotate, gzip) to files on tmpfs. The ring has the product's
//! default size and wake-up threshold (`config::defaults::RING_BUFFER_SIZE`,
//! `agent::daemon::kernel_settings`). Rates rise until a line is lost; a floor that
//! only drains the same ring runs beside it. CPU is the flow-log thread's own
//! (`/proc/self/task/*/schedstat`), the compression thread's is reported apart.
//! Needs root. Ends with one JSON line.
//!
//! Two modes, each a ladder of rates in lines/s:
//! - events only: every line is a verdict event from the ring;
//! - records on (`--flow-records`): per verdict event, [`RECORDS_PER_EVENT`] flow
//!   records as the conntrack sweep makes them, sent the way the agent's
//!   `ConntrackChores` does (one batch per sweep, [`SWEEP_PERIOD`], through a queue of
//!   `agent::flow_records::RECORD_QUEUE_BATCHES` batches into the flow-log thread's
//!   inbox, a full queue dropping and counting the batch); lines = events + records.
//!
//! Each line is accounted for where it can be lost: an event is submitted or counted
//! lost by the kernel (ring full), and drained once; a record batch is queued or
//! counted lost (queue full), and handed to `on_record` once; the pipeline writes a
//! line for each, or counts it lost (disk full, write error). A rate is lossless when
//! all three losses are zero.
//!
//! `NETPOL_BENCH_QUICK=1`: one 1 s step at 20,000 lines/s in each mode and one for the
//! floor (a step's events fit the ring and its record batches the queue, so none may
//! be lost however slowly the reader runs: asserted), a small file size so rotation
//! and compression run, and at the end every line in the live, rotated and gzipped
//! files is counted and parsed (lines and bytes equal to what the pipeline wrote, the
//! record lines equal to the records received; each a DENY or a record of an enriched
//! peer towards the target pod); no search for the highest rate, no speed figures
//! checked; the JSON line gets `"quick":true`. Runs in seconds even in a debug build
//! (`NETPOL_BENCH_QUICK=1 cargo test -p integration --bench pipeline`).

use std::{
    io::{BufRead, BufReader},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{SyncSender, TrySendError, sync_channel},
    },
    time::{Duration, Instant},
};

use agent::{
    flow_records::RECORD_QUEUE_BATCHES,
    flowlog::{DEFAULT_POLL_INTERVAL, FlowLogThread},
};
use datapath::{EventReader, frame_run};
use datapath_common::{
    clock::monotonic_now_ns,
    record::{FlowEnd, FlowRecord},
    *,
};
use exporter::{
    EnrichmentSnapshot, FileSinkConfig, Pipeline, PipelineConfig, PipelineCounters, PodInfo,
    SharedStats, snapshot_handle,
};
use integration::{frames::Frame, kernel::*};

const PEERS: u32 = 1000;
const FRAMES: usize = 4096;
/// Events per TEST_RUN call (one call runs the program this many times on a frame).
const REPEAT: u32 = 32;
/// A ring record: 8 bytes of header and the 80-byte `FlowEvent`.
const RECORD_BYTES: u64 = 8 + size_of::<FlowEvent>() as u64;
/// Flow records per verdict event with records on: one, as when every flow gets one
/// verdict line at its start and one record at its end.
const RECORDS_PER_EVENT: f64 = 1.0;
/// Time between two sweeps' record batches: the sweep period `--flow-record-interval
/// 1s` gives (the default 5 s sends batches five times as large, five times as rarely).
const SWEEP_PERIOD: Duration = Duration::from_secs(1);
/// How long the flow-log thread may take to catch up after a step.
const CATCH_UP: Duration = Duration::from_secs(120);

/// Sizes of one mode.
struct Scale {
    quick: bool,
    /// How long each rate is held.
    step: Duration,
    /// Lines/s tried with events only, in order, until one loses a line.
    rates: &'static [f64],
    /// Lines/s (events and records) tried with records on.
    record_rates: &'static [f64],
    /// Rates tried for the floor.
    floor_rates: &'static [f64],
}

const FULL: Scale = Scale {
    quick: false,
    step: Duration::from_secs(3),
    rates: &[
        250_000.0,
        500_000.0,
        750_000.0,
        1_000_000.0,
        1_250_000.0,
        1_500_000.0,
        2_000_000.0,
        3_000_000.0,
    ],
    record_rates: &[
        500_000.0,
        750_000.0,
        1_000_000.0,
        1_250_000.0,
        1_500_000.0,
        2_000_000.0,
        3_000_000.0,
    ],
    floor_rates: &[1_000_000.0, 2_000_000.0, 3_000_000.0],
};

const QUICK: Scale = Scale {
    quick: true,
    step: Duration::from_secs(1),
    rates: &[20_000.0],
    record_rates: &[20_000.0],
    floor_rates: &[20_000.0],
};

/// Removes the output directory on drop (also when a check panics).
struct OutDir(PathBuf);

impl Drop for OutDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every flow line in `dir` (live, rotated and gzipped files): lines, bytes
/// uncompressed, and how many are record lines. Each line must be a DENY, or a
/// record (ACCEPT with a `Record` key), from an enriched peer to the target.
fn count_lines(dir: &Path) -> (u64, u64, u64) {
    let (mut lines, mut bytes, mut records) = (0u64, 0u64, 0u64);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("network-policy-agent.log") && !name.ends_with(".tmp"),
            "unexpected file {name}"
        );
        let file = std::fs::File::open(&path).unwrap();
        let mut reader: Box<dyn BufRead> = if name.ends_with(".gz") {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).unwrap();
            if n == 0 {
                break;
            }
            assert!(line.ends_with('\n'), "{name}: whole lines only");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            match v.get("Record").and_then(|r| r.as_str()) {
                Some(end) => {
                    assert!(
                        ["open", "fin", "rst", "idle"].contains(&end),
                        "{name}: {line}"
                    );
                    assert_eq!(v["Verdict"], "ACCEPT", "{name}: {line}");
                    assert_eq!(v["Reverse Count"], 5, "{name}: {line}");
                    records += 1;
                }
                None => assert_eq!(v["Verdict"], "DENY", "{name}: {line}"),
            }
            assert_eq!(v["Dest Pod"], "target", "{name}: {line}");
            assert!(
                v["Src Pod"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("peer-")),
                "{name}: {line}"
            );
            lines += 1;
            bytes += n as u64;
        }
    }
    (lines, bytes, records)
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time (nanosecond schedstat) of this process's threads whose name starts with
/// `prefix`.
fn threads_cpu(prefix: &str) -> Duration {
    threads_schedstat(prefix).0
}

/// Time on the CPU and time runnable but waiting for one (schedstat, nanoseconds) of
/// this process's threads whose name starts with `prefix`.
fn threads_schedstat(prefix: &str) -> (Duration, Duration) {
    let (mut run, mut wait) = (0u64, 0u64);
    for t in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        let mut fields = stat
            .split_whitespace()
            .map(|ns| ns.parse::<u64>().unwrap_or(0));
        run += fields.next().unwrap_or(0);
        wait += fields.next().unwrap_or(0);
    }
    (Duration::from_nanos(run), Duration::from_nanos(wait))
}

/// The machine's one-minute load average (other work competes for the two cores).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

enum Sink {
    Pipeline(Box<Pipeline>),
    Floor,
}

/// One step's accounting.
#[derive(Default)]
struct Outcome {
    events_produced: u64,
    /// Events the pipeline received (or the floor drained).
    events_consumed: u64,
    /// Events the kernel counted lost (ring full).
    events_lost_ring: u64,
    records_produced: u64,
    records_consumed: u64,
    /// Records in batches the full queue refused.
    records_lost_queue: u64,
    /// Lines the pipeline counted lost (disk full, write error).
    lines_lost_pipeline: u64,
    lines_written: u64,
    secs: f64,
    cpu: Duration,
    /// Time the flow-log thread was runnable but waited for a CPU (other load).
    runqueue_wait: Duration,
}

impl Outcome {
    fn lines_produced(&self) -> u64 {
        self.events_produced + self.records_produced
    }

    fn lines_consumed(&self) -> u64 {
        self.events_consumed + self.records_consumed
    }

    fn lost(&self) -> u64 {
        self.events_lost_ring + self.records_lost_queue + self.lines_lost_pipeline
    }
}

/// Records as a conntrack sweep reports flows between the peers and the target pod
/// (the peer opened each), every kind of end; times are set when a batch is made.
fn record_templates(pa: u32, pod: IpAddr, peers: &[IpAddr]) -> Vec<FlowRecord> {
    let ends = [
        FlowEnd::Open,
        FlowEnd::TcpFin,
        FlowEnd::TcpRst,
        FlowEnd::Idle,
    ];
    (0..FRAMES)
        .map(|i| {
            let IpAddr::V4(pod) = pod else { unreachable!() };
            let IpAddr::V4(peer) = peers[i % peers.len()] else {
                unreachable!()
            };
            let mut pod_addr = [0u8; 16];
            pod_addr[..4].copy_from_slice(&pod.octets());
            let mut peer_addr = [0u8; 16];
            peer_addr[..4].copy_from_slice(&peer.octets());
            // Forward (peer to pod) is the ingress direction as seen from the pod.
            let (mut packets, mut bytes) = ([5u64; 2], [6000u64; 2]);
            packets[usize::from(DIRECTION_INGRESS)] = 3;
            bytes[usize::from(DIRECTION_INGRESS)] = 300;
            FlowRecord {
                key: FlowKey {
                    ifindex: pa,
                    family: FAMILY_IPV4,
                    protocol: 6,
                    pod_port: 80,
                    peer_port: 20_000 + i as u16,
                    direction: 0,
                    _pad: 0,
                    pod_addr,
                    peer_addr,
                },
                origin_direction: DIRECTION_INGRESS,
                policy_id: 0,
                start_ns: 0,
                end_ns: 0,
                packets,
                bytes,
                end: ends[i % ends.len()],
            }
        })
        .collect()
}

/// The sweep's side of a records-on step: one batch every [`SWEEP_PERIOD`] holding
/// the records due at `rate` since the last, and one at the end of the step; returns
/// (records queued, records in batches the full queue refused).
fn sweep_records(
    tx: SyncSender<Vec<FlowRecord>>,
    templates: &[FlowRecord],
    rate: f64,
    start: Instant,
    step: Duration,
) -> (u64, u64) {
    let (mut made, mut queued, mut lost) = (0u64, 0u64, 0u64);
    let mut next = 0usize;
    let mut sweep = 1u32;
    loop {
        let at = (SWEEP_PERIOD * sweep).min(step);
        if let Some(wait) = at.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let due = (at.as_secs_f64() * rate) as u64;
        let now = monotonic_now_ns();
        let batch: Vec<FlowRecord> = (made..due)
            .map(|i| {
                let mut r = templates[next % templates.len()];
                next += 1;
                // Flows of up to a minute: starts in earlier seconds than ends.
                r.end_ns = now - (i % 997) * 1_000_000;
                r.start_ns = r.end_ns - (i % 60) * 1_000_000_000 - 7_000_000;
                r
            })
            .collect();
        let n = batch.len() as u64;
        made = due;
        if n > 0 {
            match tx.try_send(batch) {
                Ok(()) => queued += n,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => lost += n,
            }
        }
        if at >= step {
            return (queued, lost);
        }
        sweep += 1;
    }
}

/// Waits until the pipeline has received `events` events and `records` records in
/// total (published at each flush check), so the thread's CPU is read after it did
/// the step's whole work.
fn wait_received(stats: &SharedStats, events: u64, records: u64) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let c = stats.pipeline.load();
        if c.events_received >= events && c.records_received >= records {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the flow-log thread did not catch up: {} of {events} events, {} of {records} records",
            c.events_received,
            c.records_received
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Produces events at `event_rate` and records at `record_rate` (per second) for
/// `step` while the agent's flow-log thread (or the floor) drains them into `sink`.
/// Checks that every event and record is accounted for.
#[allow(clippy::too_many_arguments)]
fn run_step(
    fx: &mut KernelFixture,
    frames: &[Vec<u8>],
    templates: &[FlowRecord],
    pa: u32,
    event_rate: f64,
    record_rate: f64,
    step: Duration,
    sink: Sink,
) -> (Outcome, Sink, EventReader) {
    let mut reader = fx.reader.take().unwrap();
    let mut o = Outcome::default();
    let before = fx.counters();
    let prog = fx
        .dp
        .as_ref()
        .unwrap()
        .program(program_names::POD_INGRESS)
        .unwrap();
    // The consumer: the agent's flow-log thread, or the floor's drain-only loop.
    let stop = Arc::new(AtomicBool::new(false));
    let (flow_log, floor, counters_before, stats, sweep_tx) = match sink {
        Sink::Pipeline(p) => {
            let counters_before = p.counters();
            let stats = p.shared_stats();
            let (tx, inbox) = sync_channel::<Vec<FlowRecord>>(RECORD_QUEUE_BATCHES);
            // As the daemon: an inbox only with records on.
            let inbox = (record_rate > 0.0).then_some(inbox);
            let t = FlowLogThread::spawn_with_records(reader, *p, DEFAULT_POLL_INTERVAL, inbox)
                .unwrap();
            (Some(t), None, counters_before, Some(stats), Some(tx))
        }
        Sink::Floor => {
            let stop2 = stop.clone();
            let h = std::thread::Builder::new()
                .name("bench-floor".into())
                .spawn(move || {
                    let cpu0 = thread_cpu();
                    let mut consumed = 0u64;
                    loop {
                        let stopping = stop2.load(Ordering::Relaxed);
                        reader.wait(DEFAULT_POLL_INTERVAL).unwrap();
                        let n = reader.drain(usize::MAX, |e| {
                            std::hint::black_box(e);
                        });
                        consumed += n as u64;
                        if stopping && n == 0 {
                            break;
                        }
                    }
                    (consumed, thread_cpu() - cpu0, reader)
                })
                .unwrap();
            (None, Some(h), PipelineCounters::default(), None, None)
        }
    };
    let start = Instant::now();
    let sweeper = match sweep_tx {
        Some(tx) if record_rate > 0.0 => {
            let templates = templates.to_vec();
            Some(
                std::thread::Builder::new()
                    .name("bench-sweep".into())
                    .spawn(move || sweep_records(tx, &templates, record_rate, start, step))
                    .unwrap(),
            )
        }
        _ => None,
    };
    let mut i = 0;
    while start.elapsed() < step {
        let due = (start.elapsed().as_secs_f64() * event_rate) as u64;
        if o.events_produced >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let r = frame_run::run_frame(prog, &frames[i % frames.len()], pa, 1, REPEAT).unwrap();
        assert_eq!(r.action, ACT_DROP, "the pod denies ingress");
        o.events_produced += REPEAT as u64;
        i += 1;
    }
    // The step's length: its last records are those due at `step`, whenever the
    // sweep thread finishes building their batch.
    o.secs = start.elapsed().as_secs_f64();
    if let Some(h) = sweeper {
        (o.records_produced, o.records_lost_queue) = h.join().unwrap();
        o.records_produced += o.records_lost_queue;
    }
    let after = fx.counters();
    o.events_lost_ring = after.events_lost - before.events_lost;
    let submitted = after.events_submitted - before.events_submitted;
    assert_eq!(
        submitted + o.events_lost_ring,
        o.events_produced,
        "one event per repeat, submitted or counted lost"
    );
    let records_queued = o.records_produced - o.records_lost_queue;
    let (sink, reader) = match (flow_log, floor) {
        (Some(t), _) => {
            wait_received(
                stats.as_ref().unwrap(),
                counters_before.events_received + submitted,
                counters_before.records_received + records_queued,
            );
            (o.cpu, o.runqueue_wait) = threads_schedstat("flow-log");
            let (reader, p) = t.stop().expect("the flow-log thread ends");
            let c = p.counters();
            o.events_consumed = c.events_received - counters_before.events_received;
            o.records_consumed = c.records_received - counters_before.records_received;
            o.lines_written = c.lines_written - counters_before.lines_written;
            o.lines_lost_pipeline = (c.lines_lost_no_space + c.lines_lost_write_error)
                - (counters_before.lines_lost_no_space + counters_before.lines_lost_write_error);
            assert_eq!(c.lines_pending, 0, "stopping flushes every line");
            assert_eq!(
                o.lines_written + o.lines_lost_pipeline,
                o.lines_consumed(),
                "a line written or counted lost for every event and record"
            );
            (Sink::Pipeline(Box::new(p)), reader)
        }
        (None, Some(h)) => {
            stop.store(true, Ordering::Relaxed);
            let (consumed, cpu, reader) = h.join().unwrap();
            o.events_consumed = consumed;
            o.cpu = cpu;
            (Sink::Floor, reader)
        }
        (None, None) => unreachable!(),
    };
    assert_eq!(
        o.events_consumed, submitted,
        "the reader drained every submitted event"
    );
    assert_eq!(
        o.records_consumed, records_queued,
        "the pipeline got every queued record"
    );
    (o, sink, reader)
}

/// The best lossless step of a ladder: (lines/s, CPU us per line), and the first
/// lossy rate.
#[derive(Default)]
struct Ladder {
    best: Option<(f64, f64)>,
    first_lossy_rate: Option<f64>,
    lines: u64,
}

fn main() {
    let sc = if std::env::var("NETPOL_BENCH_QUICK").is_ok_and(|v| v == "1") {
        QUICK
    } else {
        FULL
    };
    // The product's ring and wake-up threshold.
    let agent_config = config::AgentConfig::default();
    let ring_bytes = agent_config.ring_buffer_size;
    assert_eq!(ring_bytes, config::defaults::RING_BUFFER_SIZE);
    let wakeup_threshold_bytes =
        agent::daemon::kernel_settings(&agent_config).wakeup_threshold_bytes;
    if sc.quick {
        // A whole step fits the ring: no event may be lost, whatever the build's speed.
        for rate in sc.rates.iter().chain(sc.floor_rates) {
            let most = rate * sc.step.as_secs_f64() + f64::from(REPEAT);
            assert!(most * RECORD_BYTES as f64 <= f64::from(ring_bytes));
        }
        // And its record batches fit the queue.
        assert!(
            sc.step.as_secs_f64() / SWEEP_PERIOD.as_secs_f64() + 1.0 <= RECORD_QUEUE_BATCHES as f64
        );
    }
    let mut fx = KernelFixture::with_options(
        &["pa"],
        FixtureOptions {
            ring_bytes,
            wakeup_threshold_bytes,
            ..Default::default()
        },
    );
    let pa = fx.ifindex("pa");
    let pod: IpAddr = "10.1.0.2".parse().unwrap();
    fx.set_pod(pa, &[pod], STATE_DEFAULT_DENY, STATE_DEFAULT_ALLOW);
    let peers: Vec<IpAddr> = (0..PEERS)
        .map(|i| IpAddr::from([10, 30, (i / 250) as u8, (i % 250) as u8 + 1]))
        .collect();
    let frames: Vec<Vec<u8>> = (0..FRAMES)
        .map(|i| {
            Frame::tcp(
                peers[i % peers.len()],
                1024 + i as u16,
                pod,
                80 + (i % 7) as u16,
                0x02,
            )
            .build()
        })
        .collect();
    let templates = record_templates(pa, pod, &peers);
    let mut snapshot = EnrichmentSnapshot {
        node_name: "bench-node".into(),
        ..Default::default()
    };
    for (i, ip) in peers.iter().enumerate() {
        snapshot.pods.insert(
            *ip,
            PodInfo {
                name: format!("peer-{i}").into(),
                namespace: format!("ns-{}", i % 20).into(),
                node: "other-node".into(),
                ..Default::default()
            },
        );
    }
    snapshot.pods.insert(
        pod,
        PodInfo {
            name: "target".into(),
            namespace: "bench".into(),
            node: "bench-node".into(),
            ..Default::default()
        },
    );
    let out = OutDir(PathBuf::from(format!(
        "/dev/shm/netpol-pipeline-bench-{}",
        std::process::id()
    )));
    let dir = out.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let config = PipelineConfig {
        sink: if sc.quick {
            // Files of 1 MiB, none pruned: every line stays countable.
            FileSinkConfig {
                max_file_bytes: 1 << 20,
                max_backups: 1000,
                min_file_age: Duration::from_millis(100),
                compress_grace: Duration::from_millis(100),
                ..FileSinkConfig::default()
            }
        } else {
            FileSinkConfig {
                max_file_bytes: 128 << 20,
                max_backups: 2,
                min_file_age: Duration::from_secs(1),
                compress_grace: Duration::from_secs(1),
                ..FileSinkConfig::default()
            }
        },
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(
        config,
        snapshot_handle(snapshot),
        dir.join("network-policy-agent.log"),
    )
    .unwrap();
    let mut sink = Sink::Pipeline(Box::new(pipeline));
    let gzip_before = threads_cpu("flowlog-houseke");
    let mut ladders = [Ladder::default(), Ladder::default()];
    for (records_on, ladder) in [false, true].into_iter().zip(&mut ladders) {
        let (rates, name) = if records_on {
            (sc.record_rates, "records")
        } else {
            (sc.rates, "events ")
        };
        for &rate in rates {
            let (event_rate, record_rate) = if records_on {
                (
                    rate / (1.0 + RECORDS_PER_EVENT),
                    rate * RECORDS_PER_EVENT / (1.0 + RECORDS_PER_EVENT),
                )
            } else {
                (rate, 0.0)
            };
            let (o, s, reader) = run_step(
                &mut fx,
                &frames,
                &templates,
                pa,
                event_rate,
                record_rate,
                sc.step,
                sink,
            );
            sink = s;
            fx.reader = Some(reader);
            let achieved = o.lines_produced() as f64 / o.secs;
            let cpu_per_line = o.cpu.as_secs_f64() * 1e6 / o.lines_consumed().max(1) as f64;
            ladder.lines += o.lines_written;
            println!(
                "{name}: target {:>9.0} lines/s achieved {:>9.0}/s  events {:>8} records {:>8}  lost: ring {:>6} queue {:>7} file {}  flow-log CPU {:.3} us/line, waited for a CPU {:.0} ms  load {}  rss {:.1} MiB",
                rate,
                achieved,
                o.events_consumed,
                o.records_consumed,
                o.events_lost_ring,
                o.records_lost_queue,
                o.lines_lost_pipeline,
                cpu_per_line,
                o.runqueue_wait.as_secs_f64() * 1e3,
                load_average(),
                rss_mib()
            );
            if sc.quick {
                assert_eq!(o.lost(), 0, "the ring and queue hold a whole quick step");
                assert_eq!(o.records_consumed > 0, records_on);
            }
            if o.lost() > 0 {
                ladder.first_lossy_rate = Some(rate);
                break;
            }
            ladder.best = Some((achieved, cpu_per_line));
            if achieved < rate * 0.9 {
                println!("  (the producer, BPF_PROG_TEST_RUN on the other core, cannot go faster)");
                break;
            }
        }
    }
    let gzip_cpu = threads_cpu("flowlog-houseke") - gzip_before;
    let written = match &sink {
        Sink::Pipeline(p) => p.counters(),
        Sink::Floor => unreachable!(),
    };
    assert_eq!(
        written.lines_written,
        ladders[0].lines + ladders[1].lines,
        "every line written is in a step's count"
    );
    // Dropping the pipeline flushes and stops its housekeeping thread (joined).
    drop(sink);
    let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    if sc.quick {
        let (lines, bytes, records) = count_lines(&dir);
        assert_eq!(
            (lines, bytes, records),
            (
                written.lines_written,
                written.bytes_written,
                written.records_received
            ),
            "the files hold exactly the lines, bytes and records written"
        );
        println!(
            "files: {lines} lines ({records} records), {bytes} bytes over {files} files ({} rotations), as written",
            written.rotations
        );
    }
    // The floor: the same ring drained without formatting or writing.
    let mut floor_sink = Sink::Floor;
    let mut floor_best = 0.0f64;
    for &rate in sc.floor_rates {
        let (o, s, reader) = run_step(
            &mut fx, &frames, &templates, pa, rate, 0.0, sc.step, floor_sink,
        );
        floor_sink = s;
        fx.reader = Some(reader);
        let achieved = o.events_produced as f64 / o.secs;
        println!(
            "floor:   target {:>9.0}/s achieved {:>9.0}/s lost {:>7}  CPU {:.3} us/event",
            rate,
            achieved,
            o.lost(),
            o.cpu.as_secs_f64() * 1e6 / o.events_consumed.max(1) as f64
        );
        if sc.quick {
            assert_eq!(o.lost(), 0, "the ring holds a whole quick step");
        }
        if o.lost() > 0 {
            break;
        }
        floor_best = floor_best.max(achieved);
        if achieved < rate * 0.9 {
            break;
        }
    }
    let all_lines = written.lines_written.max(1);
    println!(
        "rotation and compression: {} files in the directory; compression thread CPU {:.3} us per line written ({:.1} s total), kept apart from the pipeline figure",
        files,
        gzip_cpu.as_secs_f64() * 1e6 / all_lines as f64,
        gzip_cpu.as_secs_f64()
    );
    drop(out);
    if sc.quick {
        println!("quick mode: one step each, no search for the highest rate; speed not checked");
    }
    let [events, records] = &ladders;
    let (events_per_sec, cpu) = events.best.unwrap_or((0.0, 0.0));
    let (record_lines_per_sec, record_cpu) = records.best.unwrap_or((0.0, 0.0));
    let rate_text = |r: Option<f64>| r.map_or("null".to_string(), |r| format!("{r:.0}"));
    println!(
        "lossless maximum: events only {events_per_sec:.0} lines/s ({cpu:.3} us/line); records on {record_lines_per_sec:.0} lines/s ({record_cpu:.3} us/line)"
    );
    println!(
        "{{\"bench\":\"pipeline\",\"events_per_sec\":{:.0},\"floor_events_per_sec\":{:.0},\"cpu_us_per_event\":{:.3},\"lost\":0,\"rss_mib\":{:.1},\"first_lossy_rate\":{},\"records_on_lines_per_sec\":{:.0},\"records_on_cpu_us_per_line\":{:.3},\"records_on_first_lossy_rate\":{},\"records_per_event\":{},\"ring_mib\":{}{}}}",
        events_per_sec,
        floor_best,
        cpu,
        rss_mib(),
        rate_text(events.first_lossy_rate),
        record_lines_per_sec,
        record_cpu,
        rate_text(records.first_lossy_rate),
        RECORDS_PER_EVENT,
        ring_bytes >> 20,
        if sc.quick { ",\"quick\":true" } else { "" }
    );
}
