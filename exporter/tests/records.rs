//! Flow-record lines through the pipeline: exact JSON with a fixed clock (the verdict
//! line's keys first, then the record's), the compat layout leaving records out, and
//! the accounting identity with records counted.

use std::time::Duration;

use datapath_common::abi::{DIRECTION_INGRESS, FAMILY_IPV4, FlowKey, PROTO_TCP};
use datapath_common::record::{FlowEnd, FlowRecord};
use exporter::clock::WallClock;
use exporter::enrich::{EnrichmentSnapshot, PodInfo, PolicyInfo};
use exporter::{FileSinkConfig, LineFormat, Pipeline, PipelineConfig, Tier, snapshot_handle};

fn config(format: LineFormat) -> PipelineConfig {
    PipelineConfig {
        format,
        sink: FileSinkConfig {
            write_group_bytes: 4096,
            flush_interval: Duration::from_millis(50),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// 10.9.0.1:40000 opened a connection to the pod 10.1.0.2:80 (ingress); 3 packets of
/// 300 bytes went in and 5 of 6,000 came back, from 1 s to 2.5 s monotonic.
fn record(end: FlowEnd) -> FlowRecord {
    let mut pod_addr = [0; 16];
    pod_addr[..4].copy_from_slice(&[10, 1, 0, 2]);
    let mut peer_addr = [0; 16];
    peer_addr[..4].copy_from_slice(&[10, 9, 0, 1]);
    FlowRecord {
        key: FlowKey {
            ifindex: 5,
            family: FAMILY_IPV4,
            protocol: PROTO_TCP,
            pod_port: 80,
            peer_port: 40000,
            pod_addr,
            peer_addr,
            ..FlowKey::default()
        },
        origin_direction: DIRECTION_INGRESS,
        policy_id: 0,
        start_ns: 1_000_000_000,
        end_ns: 2_500_000_000,
        packets: [3, 5],
        bytes: [300, 6000],
        end,
    }
}

#[test]
fn a_record_line_is_a_verdict_line_of_its_initiator_then_the_record_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network-policy-agent.log");
    let mut snap = EnrichmentSnapshot {
        node_name: "node-a".into(),
        ..Default::default()
    };
    snap.pods.insert(
        "10.1.0.2".parse().unwrap(),
        PodInfo {
            name: "web-1".into(),
            namespace: "shop".into(),
            node: "node-a".into(),
            ..Default::default()
        },
    );
    let mut p = Pipeline::new(config(LineFormat::Json), snapshot_handle(snap), &path).unwrap();
    p.set_clock(WallClock::fixed(1_685_462_731_573_000_000));
    p.on_record(&record(FlowEnd::TcpFin));
    p.flush();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        concat!(
            r#"{"level":"info","timestamp":"2023-05-30T16:05:34.073Z","logger":"ebpf-client","msg":"Flow Info: ","#,
            r#""Src IP":"10.9.0.1","Src Port":40000,"Dest IP":"10.1.0.2","Dest Port":80,"Proto":"TCP","Verdict":"ACCEPT","#,
            r#""Direction":"ingress","Src Pod":"","Src Namespace":"","Dest Pod":"web-1","Dest Namespace":"shop","#,
            r#""Policy":"default-allow","Count":3,"Bytes":300,"Node":"node-a","Peer Node":"","Isolated By":"","Tier":"DEFAULT","#,
            r#""Record":"fin","Start":"2023-05-30T16:05:32.573Z","End":"2023-05-30T16:05:34.073Z","#,
            r#""Reverse Count":5,"Reverse Bytes":6000}"#,
            "\n"
        )
    );
    let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(line["Record"], "fin");
    let c = p.counters();
    assert_eq!((c.records_received, c.lines_written), (1, 1));
}

#[test]
fn a_record_of_a_flow_a_cluster_rule_admitted_names_it_and_its_tier_before_the_record_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network-policy-agent.log");
    let mut snap = EnrichmentSnapshot {
        node_name: "node-a".into(),
        ..Default::default()
    };
    snap.policies.insert(
        0x8000_0003,
        PolicyInfo::cluster("baseline-allow-web", Tier::Baseline),
    );
    let mut p = Pipeline::new(config(LineFormat::Json), snapshot_handle(snap), &path).unwrap();
    p.set_clock(WallClock::fixed(1_685_462_731_573_000_000));
    p.on_record(&FlowRecord {
        policy_id: 0x8000_0003,
        ..record(FlowEnd::Idle)
    });
    p.flush();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(concat!(
            r#""Policy":"ClusterNetworkPolicy/baseline-allow-web","Count":3,"Bytes":300,"#,
            r#""Node":"node-a","Peer Node":"","Isolated By":"","Tier":"BASELINE","Record":"idle","#
        )),
        "{text}"
    );
}

#[test]
fn the_compat_layout_leaves_records_out_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network-policy-agent.log");
    let mut p = Pipeline::new(
        config(LineFormat::Compat),
        snapshot_handle(EnrichmentSnapshot::default()),
        &path,
    )
    .unwrap();
    p.on_record(&record(FlowEnd::Open));
    p.on_record(&record(FlowEnd::Idle));
    p.flush();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    let c = p.counters();
    assert_eq!(c.records_received, 2);
    assert_eq!(c.records_skipped_format, 2);
    assert_eq!(
        c.events_received + c.records_received,
        c.lines_written
            + c.lines_lost_no_space
            + c.lines_lost_write_error
            + c.events_filtered_scope
            + c.records_skipped_format
    );
}
