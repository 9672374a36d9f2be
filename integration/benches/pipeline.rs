//! `cargo bench -p integration --bench pipeline`: the real classifier (BPF_PROG_TEST_RUN,
//! folding off, DENY events from 1,000 peer pods over many 5-tuples) feeding the ring,
//! and the whole pipeline (decode, enrich, format, write, rotate, gzip) draining it to
//! files on tmpfs. Rates rise until an event is lost; a floor that only drains the same
//! ring runs beside it. CPU is the pipeline thread's own (CLOCK_THREAD_CPUTIME_ID), the
//! compression thread's is reported apart. Every step's events are accounted for
//! (each repeat emits one event: submitted + lost = produced, drained = submitted, and
//! the pipeline writes a line for each). Needs root. Ends with one JSON line.
//!
//! `NETPOL_BENCH_QUICK=1`: one 1 s step at 20,000 events/s for the pipeline and one
//! for the floor (a step's events fit the ring, so none may be lost however slowly the
//! reader runs: asserted), a small file size so rotation and compression run, and at
//! the end every line in the live, rotated and gzipped files is counted and parsed
//! (lines and bytes equal to what the pipeline wrote, each a DENY of an enriched peer
//! towards the target pod); no search for the highest rate, no speed figures checked;
//! the JSON line gets `"quick":true`. Runs in seconds even in a debug build
//! (`NETPOL_BENCH_QUICK=1 cargo test -p integration --bench pipeline`).

use std::{
    io::{BufRead, BufReader},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use datapath::{EventReader, frame_run};
use datapath_common::*;
use exporter::{
    EnrichmentSnapshot, FileSinkConfig, Pipeline, PipelineConfig, PodInfo, snapshot_handle,
};
use integration::{frames::Frame, kernel::*};

const PEERS: u32 = 1000;
const FRAMES: usize = 4096;
/// Events per TEST_RUN call (one call runs the program this many times on a frame).
const REPEAT: u32 = 32;
const RING_BYTES: u32 = 8 << 20;
/// A ring record: 8 bytes of header and the 80-byte `FlowEvent`.
const RECORD_BYTES: u64 = 8 + size_of::<FlowEvent>() as u64;

/// Sizes of one mode.
struct Scale {
    quick: bool,
    /// How long each rate is held.
    step: Duration,
    /// Rates tried through the pipeline, in order, until one loses an event.
    rates: &'static [f64],
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
    floor_rates: &[1_000_000.0, 2_000_000.0, 3_000_000.0],
};

const QUICK: Scale = Scale {
    quick: true,
    step: Duration::from_secs(1),
    rates: &[20_000.0],
    floor_rates: &[20_000.0],
};

/// Removes the output directory on drop (also when a check panics).
struct OutDir(PathBuf);

impl Drop for OutDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every flow line in `dir` (live, rotated and gzipped files), with the bytes they
/// hold uncompressed; each line must be a DENY from an enriched peer to the target.
fn count_lines(dir: &Path) -> (u64, u64) {
    let (mut lines, mut bytes) = (0u64, 0u64);
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
            assert_eq!(v["Verdict"], "DENY", "{name}: {line}");
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
    (lines, bytes)
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

/// CPU time of this process's threads whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> Duration {
    let ticks = 100.0; // USER_HZ
    let mut total = 0.0;
    for t in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        if f.len() > 12 {
            total +=
                (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / ticks;
        }
    }
    Duration::from_secs_f64(total)
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

struct Outcome {
    produced: u64,
    consumed: u64,
    lost: u64,
    secs: f64,
    cpu: Duration,
}

/// Produces at `rate` events/s for `step` while a thread drains into `sink`. Checks
/// that every event is accounted for.
fn run_step(
    fx: &mut KernelFixture,
    frames: &[Vec<u8>],
    pa: u32,
    rate: f64,
    step: Duration,
    sink: Sink,
) -> (Outcome, Sink, EventReader) {
    let mut reader = fx.reader.take().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let consumer = std::thread::Builder::new()
        .name("bench-pipeline".into())
        .spawn(move || {
            let mut sink = sink;
            let cpu0 = thread_cpu();
            let mut consumed = 0u64;
            loop {
                let stopping = stop2.load(Ordering::Relaxed);
                reader.wait(Duration::from_millis(20)).unwrap();
                let n = match &mut sink {
                    Sink::Pipeline(p) => {
                        let n = reader.drain(usize::MAX, |e| p.on_event(e));
                        p.flush_due(Instant::now());
                        n
                    }
                    Sink::Floor => reader.drain(usize::MAX, |e| {
                        std::hint::black_box(e);
                    }),
                };
                consumed += n as u64;
                if stopping && n == 0 {
                    break;
                }
            }
            if let Sink::Pipeline(p) = &mut sink {
                p.flush();
            }
            (consumed, thread_cpu() - cpu0, sink, reader)
        })
        .unwrap();
    let before = fx.counters();
    let prog = fx
        .dp
        .as_ref()
        .unwrap()
        .program(program_names::POD_INGRESS)
        .unwrap();
    let start = Instant::now();
    let mut produced = 0u64;
    let mut i = 0;
    while start.elapsed() < step {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        if produced >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let r = frame_run::run_frame(prog, &frames[i % frames.len()], pa, 1, REPEAT).unwrap();
        assert_eq!(r.action, ACT_DROP, "the pod denies ingress");
        produced += REPEAT as u64;
        i += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (consumed, cpu, sink, reader) = consumer.join().unwrap();
    let after = fx.counters();
    let lost = after.events_lost - before.events_lost;
    let submitted = after.events_submitted - before.events_submitted;
    assert_eq!(
        submitted + lost,
        produced,
        "one event per repeat, submitted or counted lost"
    );
    assert_eq!(
        consumed, submitted,
        "the reader drained every submitted event"
    );
    (
        Outcome {
            produced,
            consumed,
            lost,
            secs,
            cpu,
        },
        sink,
        reader,
    )
}

fn main() {
    let sc = if std::env::var("NETPOL_BENCH_QUICK").is_ok_and(|v| v == "1") {
        QUICK
    } else {
        FULL
    };
    if sc.quick {
        // A whole step fits the ring: no event may be lost, whatever the build's speed.
        for rate in sc.rates.iter().chain(sc.floor_rates) {
            let most = rate * sc.step.as_secs_f64() + f64::from(REPEAT);
            assert!(most * RECORD_BYTES as f64 <= f64::from(RING_BYTES));
        }
    }
    let mut fx = KernelFixture::with_options(
        &["pa"],
        FixtureOptions {
            ring_bytes: RING_BYTES,
            wakeup_threshold_bytes: datapath::DEFAULT_WAKEUP_THRESHOLD_BYTES,
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
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut sink = Sink::Pipeline(Box::new(pipeline));
    let mut best = None::<(f64, f64)>;
    let mut floor_best = 0.0f64;
    let mut first_lossy_rate = None::<f64>;
    let mut last_cpu_per_event = 0.0;
    let gzip_before = threads_cpu("flowlog-houseke");
    let mut pipeline_events = 0u64;
    for &rate in sc.rates {
        let (o, s, reader) = run_step(&mut fx, &frames, pa, rate, sc.step, sink);
        sink = s;
        fx.reader = Some(reader);
        let achieved = o.produced as f64 / o.secs;
        let cpu_per_event = o.cpu.as_secs_f64() * 1e6 / o.consumed.max(1) as f64;
        pipeline_events += o.consumed;
        println!(
            "pipeline: target {:>9.0}/s achieved {:>9.0}/s consumed {:>9} lost {:>7}  pipeline CPU {:.3} us/event  rss {:.1} MiB",
            rate,
            achieved,
            o.consumed,
            o.lost,
            cpu_per_event,
            rss_mib()
        );
        results.lock().unwrap().push((rate, achieved, o.lost));
        if let Sink::Pipeline(p) = &sink {
            let c = p.counters();
            assert_eq!(
                c.events_received, pipeline_events,
                "the pipeline got every event"
            );
            assert_eq!(
                (
                    c.lines_written,
                    c.lines_pending,
                    c.lines_lost_no_space,
                    c.lines_lost_write_error
                ),
                (pipeline_events, 0, 0, 0),
                "a line written for every event"
            );
        }
        if sc.quick {
            assert_eq!(o.lost, 0, "the ring holds a whole quick step");
        }
        if o.lost > 0 {
            first_lossy_rate = Some(rate);
            break;
        }
        best = Some((achieved, cpu_per_event));
        last_cpu_per_event = cpu_per_event;
        if achieved < rate * 0.9 {
            println!("  (the producer, BPF_PROG_TEST_RUN on the other core, cannot go faster)");
            break;
        }
    }
    let gzip_cpu = threads_cpu("flowlog-houseke") - gzip_before;
    let written = match &sink {
        Sink::Pipeline(p) => p.counters(),
        Sink::Floor => unreachable!(),
    };
    // Dropping the pipeline flushes and stops its housekeeping thread (joined).
    drop(sink);
    let rotated = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    if sc.quick {
        let (lines, bytes) = count_lines(&dir);
        assert_eq!(
            (lines, bytes),
            (written.lines_written, written.bytes_written),
            "the files hold exactly the lines and bytes written"
        );
        println!(
            "files: {lines} lines, {bytes} bytes over {rotated} files ({} rotations), as written",
            written.rotations
        );
    }
    // The floor: the same ring drained without formatting or writing.
    let mut floor_sink = Sink::Floor;
    for &rate in sc.floor_rates {
        let (o, s, reader) = run_step(&mut fx, &frames, pa, rate, sc.step, floor_sink);
        floor_sink = s;
        fx.reader = Some(reader);
        let achieved = o.produced as f64 / o.secs;
        println!(
            "floor:    target {:>9.0}/s achieved {:>9.0}/s lost {:>7}  CPU {:.3} us/event",
            rate,
            achieved,
            o.lost,
            o.cpu.as_secs_f64() * 1e6 / o.consumed.max(1) as f64
        );
        if sc.quick {
            assert_eq!(o.lost, 0, "the ring holds a whole quick step");
        }
        if o.lost > 0 {
            break;
        }
        floor_best = floor_best.max(achieved);
        if achieved < rate * 0.9 {
            break;
        }
    }
    println!(
        "rotation and compression: {} files in the directory; compression thread CPU {:.3} us per event written ({:.1} s total), kept apart from the pipeline figure",
        rotated,
        gzip_cpu.as_secs_f64() * 1e6 / pipeline_events.max(1) as f64,
        gzip_cpu.as_secs_f64()
    );
    drop(out);
    let (events_per_sec, cpu) = best.unwrap_or((0.0, last_cpu_per_event));
    if sc.quick {
        println!("quick mode: one step each, no search for the highest rate; speed not checked");
    }
    println!(
        "{{\"bench\":\"pipeline\",\"events_per_sec\":{:.0},\"floor_events_per_sec\":{:.0},\"cpu_us_per_event\":{:.3},\"lost\":0,\"rss_mib\":{:.1},\"first_lossy_rate\":{},\"ring_mib\":{}{}}}",
        events_per_sec,
        floor_best,
        cpu,
        rss_mib(),
        first_lossy_rate.map_or("null".to_string(), |r| format!("{r:.0}")),
        RING_BYTES >> 20,
        if sc.quick { ",\"quick\":true" } else { "" }
    );
}
