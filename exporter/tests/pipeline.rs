//! The pipeline end to end on a temp dir: exact lines with a fixed clock, scope,
//! the accounting identities, the flush interval, snapshot swaps, file mode.

mod common;

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{line_id, numbered_event, whole_lines};
use datapath_common::abi::VERDICT_DENY;
use exporter::clock::WallClock;
use exporter::enrich::{EnrichmentSnapshot, PodInfo};
use exporter::{
    FileSinkConfig, FlowScope, KernelCounters, Pipeline, PipelineConfig, snapshot_handle,
};

fn config(scope: FlowScope) -> PipelineConfig {
    PipelineConfig {
        scope,
        sink: FileSinkConfig {
            write_group_bytes: 4096,
            flush_interval: Duration::from_millis(50),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn live_file_is_created_with_its_directory_and_mode_0640_before_any_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/network-policy-agent.log");
    let _p = Pipeline::new(
        config(FlowScope::All),
        snapshot_handle(EnrichmentSnapshot::default()),
        &path,
    )
    .unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 0);
    assert_eq!(meta.mode() & 0o777, 0o640);
}

#[test]
fn lines_carry_the_fixed_clock_time_and_the_pod_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network-policy-agent.log");
    let mut snap = EnrichmentSnapshot {
        node_name: "node-a".into(),
        ..Default::default()
    };
    snap.pods.insert(
        "10.0.0.3".parse().unwrap(),
        PodInfo {
            name: "web-1".into(),
            namespace: "shop".into(),
            node: "node-a".into(),
            ..Default::default()
        },
    );
    let mut p = Pipeline::new(config(FlowScope::All), snapshot_handle(snap), &path).unwrap();
    // 1_000_000_000 ns monotonic + offset = 2023-05-30T16:05:32.573Z
    p.set_clock(WallClock::fixed(1_685_462_731_573_000_000));
    p.on_event(&numbered_event(3));
    p.flush();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        concat!(
            r#"{"level":"info","timestamp":"2023-05-30T16:05:32.573Z","logger":"ebpf-client","msg":"Flow Info: ","#,
            r#""Src IP":"10.0.0.3","Src Port":40000,"Dest IP":"64.6.160.0","Dest Port":443,"Proto":"TCP","Verdict":"DENY","#,
            r#""Direction":"egress","Src Pod":"web-1","Src Namespace":"shop","Dest Pod":"","Dest Namespace":"","#,
            r#""Policy":"no-rule-matched","Count":2,"Bytes":3,"Node":"node-a","Peer Node":"","Isolated By":"","Tier":"NETWORK_POLICY"}"#,
            "\n"
        )
    );
}

#[test]
fn accounting_identities_hold_after_a_flush_under_deny_scope() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network-policy-agent.log");
    let mut p = Pipeline::new(
        config(FlowScope::Deny),
        snapshot_handle(EnrichmentSnapshot::default()),
        &path,
    )
    .unwrap();
    // At least 1000 events, and on until a line waits for the flush (a group may end
    // exactly at a line, leaving none pending).
    let mut n = 0u64;
    while n < 1000 || p.counters().lines_pending == 0 {
        assert!(n < 2000, "some line should wait for the flush");
        p.on_event(&numbered_event(n));
        n += 1;
    }
    p.flush();
    let c = p.counters();
    assert_eq!(c.events_received, n);
    assert_eq!(c.lines_pending, 0);
    assert_eq!(
        c.events_received,
        c.lines_written
            + c.lines_lost_no_space
            + c.lines_lost_write_error
            + c.events_filtered_scope
    );
    // Odd ids are denials.
    assert_eq!(
        (c.lines_written, c.events_filtered_scope),
        (n / 2, n - n / 2)
    );
    let lines = whole_lines(&std::fs::read(&path).unwrap());
    let ids: Vec<u64> = lines.iter().map(|l| line_id(l)).collect();
    assert_eq!(ids, (0..n).filter(|i| i % 2 == 1).collect::<Vec<_>>());
    // Kernel-side identity: packets denied = sum of Count over DENY lines + lost +
    // filtered (no folds pending in this test).
    let count_sum: u64 = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["Verdict"] == "DENY")
        .map(|v| v["Count"].as_u64().unwrap())
        .sum();
    let denied_packets: u64 = (0..n)
        .map(numbered_event)
        .filter(|e| e.verdict == VERDICT_DENY)
        .map(|e| u64::from(e.count))
        .sum();
    assert_eq!(count_sum, c.denied_packets_written);
    assert_eq!(
        denied_packets,
        c.denied_packets_written + c.denied_packets_lost + c.denied_packets_filtered
    );
    assert_eq!(
        p.shared_stats().pipeline.load(),
        c,
        "published counters match"
    );
    assert_eq!(c.bytes_written, std::fs::metadata(&path).unwrap().len());
}

#[test]
fn scope_none_writes_nothing_but_counts_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network-policy-agent.log");
    let mut p = Pipeline::new(
        config(FlowScope::None),
        snapshot_handle(EnrichmentSnapshot::default()),
        &path,
    )
    .unwrap();
    for id in 0..10 {
        p.on_event(&numbered_event(id));
    }
    p.flush();
    let c = p.counters();
    assert_eq!(
        (c.events_received, c.events_filtered_scope, c.lines_written),
        (10, 10, 0)
    );
    assert_eq!((c.events_accept, c.events_deny), (5, 5));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_pending_line_reaches_the_file_once_the_flush_interval_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network-policy-agent.log");
    let mut p = Pipeline::new(
        config(FlowScope::All),
        snapshot_handle(EnrichmentSnapshot::default()),
        &path,
    )
    .unwrap();
    p.on_event(&numbered_event(1));
    p.flush_due(Instant::now());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "not yet due");
    std::thread::sleep(Duration::from_millis(60));
    p.flush_due(Instant::now());
    let lines = whole_lines(&std::fs::read(&path).unwrap());
    assert_eq!(lines.len(), 1);
    assert_eq!(line_id(&lines[0]), 1);
}

#[test]
fn a_swapped_snapshot_names_the_next_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network-policy-agent.log");
    let handle = snapshot_handle(EnrichmentSnapshot::default());
    let mut p = Pipeline::new(config(FlowScope::All), Arc::clone(&handle), &path).unwrap();
    p.on_event(&numbered_event(2));
    let mut next = EnrichmentSnapshot::default();
    next.pods.insert(
        "10.0.0.4".parse().unwrap(),
        PodInfo {
            name: "api-0".into(),
            namespace: "prod".into(),
            node: "n".into(),
            ..Default::default()
        },
    );
    handle.store(Arc::new(next));
    p.on_event(&numbered_event(4));
    p.flush();
    let lines = whole_lines(&std::fs::read(&path).unwrap());
    assert!(lines[0].contains(r#""Src Pod":"","#), "{}", lines[0]);
    assert!(
        lines[1].contains(r#""Src Pod":"api-0","Src Namespace":"prod""#),
        "{}",
        lines[1]
    );
}

#[test]
fn kernel_counters_are_published_for_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network-policy-agent.log");
    let mut p = Pipeline::new(
        config(FlowScope::All),
        snapshot_handle(EnrichmentSnapshot::default()),
        &path,
    )
    .unwrap();
    let k = KernelCounters {
        drop_packets: [1, 2],
        events_lost_ring: 3,
        ..Default::default()
    };
    p.observe_kernel_counters(&k);
    assert_eq!(p.shared_stats().kernel.load(), k);
}

#[test]
fn invalid_settings_and_paths_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad = PipelineConfig {
        sink: FileSinkConfig {
            max_file_bytes: 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let err = Pipeline::new(
        bad,
        snapshot_handle(EnrichmentSnapshot::default()),
        dir.path().join("f.log"),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        exporter::ExporterError::InvalidSinkConfig {
            field: "max_file_bytes",
            ..
        }
    ));
    let err = Pipeline::new(
        config(FlowScope::All),
        snapshot_handle(EnrichmentSnapshot::default()),
        "/",
    )
    .unwrap_err();
    assert!(
        matches!(err, exporter::ExporterError::NoFileName { .. }),
        "{err}"
    );
    // A regular file where the directory should be.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let err = Pipeline::new(
        config(FlowScope::All),
        snapshot_handle(EnrichmentSnapshot::default()),
        blocker.join("f.log"),
    )
    .unwrap_err();
    assert!(matches!(err, exporter::ExporterError::Io { .. }), "{err}");
}

#[test]
fn compat_format_is_wired_through_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network-policy-agent.log");
    let mut cfg = config(FlowScope::All);
    cfg.format = exporter::LineFormat::Compat;
    let mut p = Pipeline::new(cfg, snapshot_handle(EnrichmentSnapshot::default()), &path).unwrap();
    p.set_clock(WallClock::fixed(1_685_462_731_573_000_000));
    p.on_event(&numbered_event(1));
    p.flush();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        concat!(
            r#"{"level":"info","ts":"2023-05-30T16:05:32.573Z","logger":"ebpf-client","#,
            r#""msg":"Flow Info: Src IP: 10.0.0.1 Src Port: 40000 Dest IP: 64.6.160.0 Dest Port: 443 Proto TCP Verdict DENY Direction egress, Tier NETWORK_POLICY"}"#,
            "\n"
        )
    );
}
