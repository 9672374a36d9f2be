//! The flow-log pipeline's metrics as a scrape shows them: what the pipeline wrote and
//! the kernel's drop counters, registered into a registry and encoded as text (the
//! HTTP listeners that serve it are the `telemetry` crate's, tested there).

use std::sync::Arc;

use exporter::{KernelCounters, SharedStats};
use prometheus_client::registry::Registry;

fn scrape(stats: Arc<SharedStats>) -> String {
    let mut registry = Registry::default();
    exporter::metrics::register(&mut registry, stats);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

fn assert_lines(text: &str, lines: &[String]) {
    for line in lines {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn a_scrape_shows_what_the_pipeline_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = exporter::Pipeline::new(
        exporter::PipelineConfig::default(),
        exporter::snapshot_handle(exporter::EnrichmentSnapshot::default()),
        dir.path().join("network-policy-agent.log"),
    )
    .unwrap();
    for id in 0..10u64 {
        p.on_event(&datapath_common::abi::FlowEvent {
            verdict: (id % 2) as u8,
            family: datapath_common::abi::FAMILY_IPV4,
            ..Default::default()
        });
    }
    p.flush();
    let bytes = std::fs::metadata(dir.path().join("network-policy-agent.log"))
        .unwrap()
        .len();
    assert_lines(
        &scrape(p.shared_stats()),
        &[
            "network_policy_flow_log_lines_written_total 10".to_owned(),
            format!("network_policy_flow_log_bytes_written_total {bytes}"),
            "network_policy_flow_events_total{verdict=\"ACCEPT\"} 5".to_owned(),
            "network_policy_flow_events_total{verdict=\"DENY\"} 5".to_owned(),
            "network_policy_flow_log_lines_pending 0.0".to_owned(),
        ],
    );
}

#[test]
fn the_incumbent_drop_counters_show_by_direction() {
    let stats = Arc::new(SharedStats::default());
    stats.kernel.store(&KernelCounters {
        drop_packets: [11, 22],
        drop_bytes: [1100, 2200],
        ..Default::default()
    });
    let lines = [
        "network_policy_drop_count_total{direction=\"ingress\"} 11",
        "network_policy_drop_count_total{direction=\"egress\"} 22",
        "network_policy_drop_bytes_total{direction=\"ingress\"} 1100",
        "network_policy_drop_bytes_total{direction=\"egress\"} 2200",
        "network_policy_flow_events_total{verdict=\"ACCEPT\"} 0",
        "network_policy_flow_events_lost_total{stage=\"disk_full\"} 0",
        "network_policy_flow_log_lines_written_total 0",
        "network_policy_flow_log_bytes_written_total 0",
        "network_policy_flow_log_rotations_total 0",
        "network_policy_flow_log_lag_seconds 0.0",
    ];
    assert_lines(&scrape(stats), &lines.map(str::to_owned));
}
