//! In-crate micro-benchmark (run with
//! `cargo run --release -p exporter --example throughput`):
//! formats and writes events varied over many 5-tuples and pods to a file on tmpfs
//! (`/dev/shm`), rotating and compressing, and prints the pipeline thread's CPU per
//! event beside a floor (the same loop without formatting or writing).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use datapath_common::abi::{
    DIRECTION_EGRESS, DIRECTION_INGRESS, FAMILY_IPV4, FlowEvent, PROTO_TCP, PROTO_UDP,
    REASON_POLICY, VERDICT_ACCEPT, VERDICT_DENY,
};
use exporter::enrich::{EnrichmentSnapshot, PodInfo};
use exporter::{FileSinkConfig, Pipeline, PipelineConfig, snapshot_handle};

const PODS: u32 = 10_000;
const EVENTS: u64 = 2_000_000;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is supported.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of this process's threads whose name starts with `prefix`, from
/// `/proc/self/task/*/stat` (utime + stime, in clock ticks of 10 ms).
fn threads_cpu_ms(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3; utime 14, stime 15.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        total += ticks * 10;
    }
    total
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn pod_ip(i: u32) -> [u8; 4] {
    [10, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8]
}

fn events() -> Vec<FlowEvent> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..4096)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut src = [0; 16];
            let mut dst = [0; 16];
            src[..4].copy_from_slice(&pod_ip((x % u64::from(PODS)) as u32));
            // One in four peers is outside the cluster.
            if x >> 40 & 3 == 0 {
                dst[..4].copy_from_slice(&[64, 6, 160, (x >> 20) as u8]);
            } else {
                dst[..4].copy_from_slice(&pod_ip(((x >> 24) % u64::from(PODS)) as u32));
            }
            FlowEvent {
                timestamp_ns: 1_000_000 * i,
                bytes: 60 + (x >> 50),
                count: 1,
                policy_id: (x % 50) as u32,
                family: FAMILY_IPV4,
                protocol: if x & 1 == 0 { PROTO_TCP } else { PROTO_UDP },
                direction: if x & 2 == 0 {
                    DIRECTION_INGRESS
                } else {
                    DIRECTION_EGRESS
                },
                verdict: if x & 4 == 0 {
                    VERDICT_ACCEPT
                } else {
                    VERDICT_DENY
                },
                reason: REASON_POLICY,
                src_addr: src,
                dst_addr: dst,
                src_port: (x >> 8) as u16,
                dst_port: 443,
                ..Default::default()
            }
        })
        .collect()
}

fn snapshot() -> EnrichmentSnapshot {
    let mut s = EnrichmentSnapshot {
        node_name: "ip-10-0-0-1.eu-west-1.compute.internal".into(),
        ..Default::default()
    };
    for i in 0..PODS {
        let [a, b, c, d] = pod_ip(i);
        s.pods.insert(
            IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            PodInfo {
                name: format!("deployment-{i}-7d9f8c6b5-x2k4q").into(),
                namespace: format!("team-{}", i % 40).into(),
                node: format!("ip-10-0-0-{}.eu-west-1.compute.internal", i % 50).into(),
                ..Default::default()
            },
        );
    }
    for id in 1..50 {
        s.policies
            .insert(id, format!("team-{id}/allow-frontend-{id}").into());
    }
    s
}

fn main() {
    let evs = events();
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let config = PipelineConfig {
        sink: FileSinkConfig {
            max_file_bytes: 64 * 1024 * 1024,
            min_file_age: Duration::ZERO,
            compress: true,
            compress_grace: Duration::from_millis(500),
            max_backups: 4,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut p = Pipeline::new(
        config,
        snapshot_handle(snapshot()),
        dir.path().join("network-policy-agent.log"),
    )
    .unwrap();

    // Floor: the same loop, only touching each event.
    let (cpu0, wall0) = (thread_cpu_ns(), Instant::now());
    let mut sink = 0u64;
    for i in 0..EVENTS {
        let ev = std::hint::black_box(&evs[(i & 4095) as usize]);
        sink = sink.wrapping_add(ev.bytes ^ u64::from(ev.src_port));
    }
    std::hint::black_box(sink);
    let floor_cpu = thread_cpu_ns() - cpu0;
    let floor_wall = wall0.elapsed();

    // Formatting and enrichment alone, into a buffer cleared like a write group.
    let snap = snapshot();
    let mut formatter = exporter::LineFormatter::new(exporter::LineFormat::Json);
    let mut buf = Vec::with_capacity(300 * 1024);
    let clock = exporter::clock::WallClock::system(Duration::from_secs(1));
    let cpu_f0 = thread_cpu_ns();
    for i in 0..EVENTS {
        let ev = &evs[(i & 4095) as usize];
        formatter.append(
            &mut buf,
            ev,
            clock.unix_ms(ev.timestamp_ns),
            &snap.resolve(ev),
        );
        if buf.len() >= 256 * 1024 {
            buf.clear();
        }
    }
    std::hint::black_box(&buf);
    let format_cpu = (thread_cpu_ns() - cpu_f0) as f64 / EVENTS as f64;

    let (cpu0, wall0) = (thread_cpu_ns(), Instant::now());
    let mut last_flush = Instant::now();
    for i in 0..EVENTS {
        p.on_event(&evs[(i & 4095) as usize]);
        if i & 1023 == 0 {
            let now = Instant::now();
            if now - last_flush > Duration::from_millis(50) {
                p.flush_due(now);
                last_flush = now;
            }
        }
    }
    p.flush();
    let cpu = thread_cpu_ns() - cpu0;
    let wall = wall0.elapsed();
    let c = p.counters();
    assert_eq!(c.lines_written, EVENTS);
    // Let the housekeeping thread compress what is due (grace 500 ms), then read its CPU.
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.shared_stats().housekeeping.load().files_compressed + 1 < c.rotations.min(4)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(700));
    let hk = p.shared_stats().housekeeping.load();
    let gzip_ms = threads_cpu_ms("flowlog-houseke");
    println!(
        "housekeeping: {} files of ~64 MiB compressed, {} pruned, {gzip_ms} ms CPU: {:.0} ns per line compressed",
        hk.files_compressed,
        hk.files_pruned,
        gzip_ms as f64 * 1e6
            / (hk.files_compressed.max(1) as f64 * 64.0 * 1024.0 * 1024.0
                / (c.bytes_written as f64 / EVENTS as f64)),
    );
    let cpu_ns = cpu as f64 / EVENTS as f64;
    println!(
        "pipeline: {cpu_ns:.0} ns CPU/event, {:.0} ns wall/event, {:.2} M events/s on one thread, {:.0} bytes/line, {} rotations; of which format+enrich alone {format_cpu:.0} ns; floor {:.1} ns CPU/event ({:.1} ns wall); RSS {:.1} MiB",
        wall.as_nanos() as f64 / EVENTS as f64,
        EVENTS as f64 / wall.as_secs_f64() / 1e6,
        c.bytes_written as f64 / EVENTS as f64,
        c.rotations,
        floor_cpu as f64 / EVENTS as f64,
        floor_wall.as_nanos() as f64 / EVENTS as f64,
        rss_mib(),
    );
    println!(
        "{{\"bench\":\"exporter_micro\",\"events\":{EVENTS},\"cpu_ns_per_event\":{cpu_ns:.0},\"events_per_sec_one_thread\":{:.0},\"format_only_cpu_ns_per_event\":{format_cpu:.0},\"floor_cpu_ns_per_event\":{:.1},\"rotations\":{},\"rss_mib\":{:.1}}}",
        EVENTS as f64 / wall.as_secs_f64(),
        floor_cpu as f64 / EVENTS as f64,
        c.rotations,
        rss_mib()
    );
}
