//! CloudWatch shipper throughput from the files to a fast local endpoint (the tests'
//! proxy answering by itself, in a child process so its CPU is not counted), with the real
//! SDK. Prints the floor (reading and parsing the same files without sending) and ends
//! with one JSON line:
//! `{"bench":"cloudwatch","events_per_sec":…,"fill_ratio":…,"requests_per_million":…,"cpu_us_per_event":…}`.
//! `CW_BENCH_EVENTS` sets the number of lines (default 1,000,000).

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
fn write_files(dir: &Path, n: usize) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let base = now - 3_600_000;
    let per_file = n.div_ceil(FILES);
    let mut total = 0;
    for f in 0..FILES {
        let mut buf = String::with_capacity(per_file * 300);
        for i in f * per_file..((f + 1) * per_file).min(n) {
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
    total
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

fn proxy_child() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let proxy = Proxy::start(ProxyOptions {
            upstream: None,
            record_events: false,
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
            proxy.records().len(),
            v.len(),
            v.first()
        );
    });
}

fn main() {
    if std::env::args().any(|a| a == "--proxy-child") {
        proxy_child();
        return;
    }
    let n: usize = std::env::var("CW_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = write_files(dir.path(), n);
    eprintln!(
        "cloudwatch bench: {n} lines, {} MB over {FILES} files (first gz)",
        bytes / 1_000_000
    );

    let floor = read_floor(dir.path(), n);
    let floor_us = floor.as_secs_f64() * 1e6 / n as f64;

    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .arg("--proxy-child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn proxy child");
    let mut url = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut url)
        .expect("proxy url");
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
    let _ = child.wait();

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
    println!(
        "{{\"bench\":\"cloudwatch\",\"events_per_sec\":{events_per_sec:.0},\"fill_ratio\":{fill_ratio:.4},\"requests_per_million\":{requests_per_million:.1},\"cpu_us_per_event\":{cpu_us_per_event:.3}}}"
    );
}
