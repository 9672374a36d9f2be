//! CloudWatch shipper throughput from the files to a fast local endpoint (the tests'
//! proxy answering by itself, in a child process so its CPU is not counted), with the real
//! SDK. Prints the floor (reading and parsing the same files without sending) and ends
//! with one JSON line:
//! `{"bench":"cloudwatch","events_per_sec":…,"fill_ratio":…,"requests_per_million":…,"cpu_us_per_event":…}`.
//! `CW_BENCH_EVENTS` sets the number of lines (default 1,000,000). The endpoint must
//! have received every line exactly once, in batches within the API limits, and the
//! bytes the shipper counts must be those the endpoint counted.
//!
//! `NETPOL_BENCH_QUICK=1`: 20,000 lines (unless `CW_BENCH_EVENTS` says otherwise), and
//! the endpoint also records every event so that a digest of the (timestamp, message)
//! pairs it received must equal one of the lines written: byte-exact delivery. No
//! speed figures checked; the JSON line gets `"quick":true`. Runs in seconds even in a
//! debug build (`NETPOL_BENCH_QUICK=1 cargo test -p integration --bench cloudwatch`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cloudwatch::checkpoint::Checkpoint;
use cloudwatch::reader::{LineReader, Poll};
use cloudwatch::testkit::{Proxy, ProxyOptions, test_credentials};
use cloudwatch::{Shipper, ShipperConfig};
use tokio_util::sync::CancellationToken;

const LIVE: &str = "network-policy-agent.log";
const FILES: usize = 5;
const FULL_EVENTS: usize = 1_000_000;
const QUICK_EVENTS: usize = 20_000;

/// FNV-1a over an event's timestamp and message.
fn event_hash(timestamp_ms: i64, message: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in timestamp_ms.to_le_bytes().iter().chain(message) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What the endpoint saw, as the proxy child reports it on stdout when it stops.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Seen {
    requests: usize,
    accepted_events: u64,
    api_bytes: u64,
    violations: usize,
    /// Wrapping sum of `event_hash` over every accepted event (order-free), when recording.
    digest: Option<u64>,
}

/// The lines written: count, bytes, and the digest the endpoint must end up with.
struct Written {
    bytes: u64,
    /// Message bytes as the API counts them (line without newline, plus 26).
    api_bytes: u64,
    digest: u64,
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is valid.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The agent's own timestamp text (`YYYY-MM-DDTHH:MM:SS.mmmZ`).
fn timestamp(ms: i64) -> String {
    let mut formatter = exporter::timefmt::TimestampFormatter::default();
    String::from_utf8_lossy(formatter.format(ms)).into_owned()
}

/// Writes `n` realistic flow lines over rotated files (the first one compressed) and the live file.
fn write_files(dir: &Path, n: usize) -> Written {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let base = now - 3_600_000;
    let per_file = n.div_ceil(FILES);
    let mut total = 0;
    let mut api_bytes = 0;
    let mut digest = 0u64;
    for f in 0..FILES {
        let mut buf = String::with_capacity(per_file * 300);
        for i in f * per_file..((f + 1) * per_file).min(n) {
            let start = buf.len();
            buf.push_str(&format!(
                r#"{{"level":"info","timestamp":"{}","logger":"flow","node":"ip-10-0-1-23.ec2.internal","src_ip":"10.0.{}.{}","src_port":{},"dst_ip":"172.20.{}.10","dst_port":443,"proto":"TCP","verdict":"{}","direction":"egress","src_pod":"default/web-{}","policy":"default/allow-web"}}"#,
                timestamp(base + (i / 300) as i64),
                i % 200,
                i % 250,
                1024 + i % 60_000,
                i % 100,
                if i % 7 == 0 { "DENY" } else { "ACCEPT" },
                i % 50
            ));
            let line = &buf.as_bytes()[start..];
            let ts = cloudwatch::event::parse_timestamp(line).expect("line has a timestamp");
            digest = digest.wrapping_add(event_hash(ts, line));
            api_bytes += line.len() as u64 + 26;
            buf.push('\n');
        }
        total += buf.len() as u64;
        let name = if f + 1 == FILES {
            LIVE.to_owned()
        } else {
            format!("{LIVE}.{:08}", f + 1)
        };
        let path = dir.join(&name);
        if f == 0 {
            let gz = std::fs::File::create(dir.join(format!("{name}.gz"))).expect("create gz");
            let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::fast());
            enc.write_all(buf.as_bytes()).expect("gz");
            enc.finish().expect("gz finish");
        } else {
            std::fs::write(&path, buf).expect("write");
        }
    }
    Written {
        bytes: total,
        api_bytes,
        digest,
    }
}

/// The floor: read and parse every line without sending (CPU per event).
fn read_floor(dir: &Path, n: usize) -> Duration {
    let start = cpu_time();
    let mut reader = LineReader::open(dir, LIVE, None::<Checkpoint>).expect("open");
    let mut buf = Vec::new();
    let mut count = 0;
    let mut stamps = 0i64;
    while let Poll::Line(_) = reader.next_line(&mut buf).expect("read") {
        stamps = stamps.wrapping_add(cloudwatch::event::parse_timestamp(&buf).unwrap_or(0));
        count += 1;
    }
    assert_eq!(count, n, "floor read every line ({stamps})");
    cpu_time() - start
}

fn proxy_child(record: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let proxy = Proxy::start(ProxyOptions {
            upstream: None,
            record_events: record,
        })
        .await
        .expect("proxy");
        println!("{}", proxy.url());
        std::io::stdout().flush().expect("flush");
        // Serve until the parent closes our stdin.
        let _ =
            tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
        let records = proxy.records();
        let service: Vec<f64> = records
            .iter()
            .filter_map(|r| r.done_at.map(|d| (d - r.at).as_secs_f64() * 1e3))
            .collect();
        if let (Some(first), Some(last)) = (records.first(), records.last()) {
            eprintln!(
                "proxy: mean service {:.2} ms after the body was read; arrivals over {:.2} s",
                service.iter().sum::<f64>() / service.len().max(1) as f64,
                (last.at - first.at).as_secs_f64()
            );
        }
        let v = proxy.violations();
        eprintln!(
            "proxy: {} requests, {} limit violations {:?}",
            records.len(),
            v.len(),
            v.first()
        );
        let accepted = || records.iter().filter(|r| r.accepted);
        let seen = Seen {
            requests: records.len(),
            accepted_events: accepted().map(|r| r.event_count as u64).sum(),
            api_bytes: accepted().map(|r| r.api_bytes as u64).sum(),
            violations: v.len(),
            digest: record.then(|| {
                accepted().flat_map(|r| &r.events).fold(0u64, |d, (ts, m)| {
                    d.wrapping_add(event_hash(*ts, m.as_bytes()))
                })
            }),
        };
        println!("{}", serde_json::to_string(&seen).expect("summary"));
        std::io::stdout().flush().expect("flush");
    });
}

fn main() {
    if std::env::args().any(|a| a == "--proxy-child") {
        proxy_child(std::env::args().any(|a| a == "--record"));
        return;
    }
    let quick = std::env::var("NETPOL_BENCH_QUICK").is_ok_and(|v| v == "1");
    let n: usize = std::env::var("CW_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { QUICK_EVENTS } else { FULL_EVENTS });
    let dir = tempfile::tempdir().expect("tempdir");
    let written = write_files(dir.path(), n);
    let bytes = written.bytes;
    eprintln!(
        "cloudwatch bench: {n} lines, {} MB over {FILES} files (first gz)",
        bytes / 1_000_000
    );

    let floor = read_floor(dir.path(), n);
    let floor_us = floor.as_secs_f64() * 1e6 / n as f64;

    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .arg("--proxy-child")
        .args(quick.then_some("--record"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn proxy child");
    let mut child_out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut url = String::new();
    child_out.read_line(&mut url).expect("proxy url");
    let url = url.trim().to_owned();

    let mut cfg = ShipperConfig::new(dir.path(), "bench", "node-bench");
    cfg.endpoint_url = Some(url);
    cfg.region = Some("us-east-1".into());
    cfg.credentials = Some(test_credentials());
    // All lines are on disk before the start, so batches fill by size; a short flush
    // interval only stops the last partial batch from waiting the default 5 s.
    cfg.flush_interval = Duration::from_millis(50);
    let shipper = Shipper::new(cfg).expect("config");
    let metrics = shipper.metrics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let token = CancellationToken::new();
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let task = rt.spawn(shipper.run(token.clone()));
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first_accept: Option<(Instant, u64)> = None;
    while metrics.events.get() < n as u64 {
        assert!(Instant::now() < deadline, "bench did not finish in 600 s");
        if first_accept.is_none() && metrics.batches.get() > 0 {
            first_accept = Some((Instant::now(), metrics.events.get()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let wall = t0.elapsed();
    let (first_at, first_events) = first_accept.unwrap_or((t0, 0));
    let steady = (n as u64 - first_events) as f64 / first_at.elapsed().as_secs_f64();
    eprintln!(
        "start-up (SDK config, first request) {:.0} ms; steady state after the first accepted batch {steady:.0} events/s",
        (first_at - t0).as_secs_f64() * 1e3
    );
    let cpu = cpu_time() - cpu0;
    token.cancel();
    rt.block_on(task).expect("join").expect("run");
    drop(child.stdin.take());
    let mut summary = String::new();
    child_out.read_line(&mut summary).expect("proxy summary");
    let status = child.wait().expect("proxy child");
    assert!(status.success(), "proxy child: {status}");
    let seen: Seen = serde_json::from_str(&summary).expect("proxy summary line");

    // Every line reached the endpoint exactly once, within the API limits, and the
    // shipper counted what the endpoint counted.
    assert_eq!(seen.violations, 0, "batches within the API limits");
    assert_eq!(metrics.events.get(), n as u64, "shipper: every line once");
    assert_eq!(seen.accepted_events, n as u64, "endpoint: every line once");
    assert_eq!(
        seen.requests as u64,
        metrics.batches.get(),
        "no request retried"
    );
    assert_eq!(
        (metrics.bytes.get(), seen.api_bytes),
        (written.api_bytes, written.api_bytes),
        "bytes as the API counts them"
    );
    assert_eq!(metrics.truncated.get(), 0);
    assert_eq!(metrics.lost_files.get(), 0);
    if let Some(digest) = seen.digest {
        assert_eq!(
            digest, written.digest,
            "the endpoint got the lines byte for byte"
        );
        eprintln!("byte-exact: the endpoint's events match the {n} lines written");
    }

    let batches = metrics.batches.get() as f64;
    let events_per_sec = n as f64 / wall.as_secs_f64();
    let fill_ratio = metrics.bytes.get() as f64 / batches / 1_048_576.0;
    let requests_per_million = batches / n as f64 * 1e6;
    let cpu_us_per_event = cpu.as_secs_f64() * 1e6 / n as f64;
    eprintln!(
        "floor (read + timestamp parse only): {floor_us:.3} us/event; shipper {cpu_us_per_event:.3} us/event = {:.1}x the floor; {} batches in {:.2} s; incumbent: 1 request per event (fill ~{:.6})",
        cpu_us_per_event / floor_us,
        batches,
        wall.as_secs_f64(),
        (bytes as f64 / n as f64) / 1_048_576.0
    );
    if quick {
        eprintln!("quick mode: speed not checked");
    }
    println!(
        "{{\"bench\":\"cloudwatch\",\"events_per_sec\":{events_per_sec:.0},\"fill_ratio\":{fill_ratio:.4},\"requests_per_million\":{requests_per_million:.1},\"cpu_us_per_event\":{cpu_us_per_event:.3}{}}}",
        if quick { ",\"quick\":true" } else { "" }
    );
}
