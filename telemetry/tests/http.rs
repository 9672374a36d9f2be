//! The metrics and health listeners over real HTTP on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use telemetry::http::METRICS_CONTENT_TYPE;
use telemetry::{HttpConfig, HttpServers, Metrics, Readiness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let status = resp.split(' ').nth(1).unwrap().parse().unwrap();
    (status, resp)
}

#[tokio::test]
async fn metrics_and_health_answer_over_http() {
    let mut metrics = Metrics::default();
    let served = Counter::<u64>::default();
    metrics
        .registry_mut()
        .register("example_requests", "Requests served", served.clone());
    served.inc_by(7);
    let readiness = Readiness::default();
    let local = "127.0.0.1:0".parse().unwrap();
    let servers = HttpServers::bind(
        &HttpConfig {
            metrics_addr: local,
            health_addr: local,
        },
        Arc::new(metrics),
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
    assert!(
        body.lines().any(|l| l == "example_requests_total 7"),
        "{body}"
    );

    assert_eq!(get(health_addr, "/healthz").await.0, 200);
    assert_eq!(get(health_addr, "/readyz").await.0, 503);
    readiness.set_ready(true);
    assert_eq!(get(health_addr, "/readyz").await.0, 200);
    assert_eq!(get(metrics_addr, "/nothing").await.0, 404);

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
