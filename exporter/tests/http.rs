//! The metrics and health endpoints scraped over real HTTP on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use exporter::http::METRICS_CONTENT_TYPE;
use exporter::{HttpConfig, HttpServers, KernelCounters, Metrics, Readiness, SharedStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let status = resp.split(' ').nth(1).unwrap().parse().unwrap();
    (status, resp)
}

#[tokio::test]
async fn a_scrape_shows_what_the_pipeline_wrote() {
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
    let local = "127.0.0.1:0".parse().unwrap();
    let servers = HttpServers::bind(
        &HttpConfig {
            metrics_addr: local,
            health_addr: local,
        },
        Arc::new(Metrics::new(p.shared_stats())),
        Readiness::default(),
    )
    .await
    .unwrap();
    let addr = servers.metrics_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(servers.serve(async {
        let _ = stop_rx.await;
    }));
    let (_, body) = get(addr, "/metrics").await;
    for line in [
        "network_policy_flow_log_lines_written_total 10".to_owned(),
        format!("network_policy_flow_log_bytes_written_total {bytes}"),
        "network_policy_flow_events_total{verdict=\"ACCEPT\"} 5".to_owned(),
        "network_policy_flow_events_total{verdict=\"DENY\"} 5".to_owned(),
        "network_policy_flow_log_lines_pending 0.0".to_owned(),
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn metrics_and_health_answer_over_http() {
    let stats = Arc::new(SharedStats::default());
    stats.kernel.store(&KernelCounters {
        drop_packets: [11, 22],
        drop_bytes: [1100, 2200],
        ..Default::default()
    });
    let readiness = Readiness::default();
    let local = "127.0.0.1:0".parse().unwrap();
    let servers = HttpServers::bind(
        &HttpConfig {
            metrics_addr: local,
            health_addr: local,
        },
        Arc::new(Metrics::new(Arc::clone(&stats))),
        readiness.clone(),
    )
    .await
    .unwrap();
    let (metrics_addr, health_addr) = (servers.metrics_addr(), servers.health_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(servers.serve(async {
        let _ = stop_rx.await;
    }));

    let (status, body) = get(metrics_addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!("content-type: {METRICS_CONTENT_TYPE}")),
        "{body}"
    );
    for line in [
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
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }

    assert_eq!(get(health_addr, "/healthz").await.0, 200);
    assert_eq!(get(health_addr, "/readyz").await.0, 503);
    readiness.set_ready(true);
    assert_eq!(get(health_addr, "/readyz").await.0, 200);
    assert_eq!(get(metrics_addr, "/nothing").await.0, 404);

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
