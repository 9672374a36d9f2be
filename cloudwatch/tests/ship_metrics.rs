//! `cloudwatch-ship` serves the agent's `/metrics`, `/healthz` and `/readyz` (the same
//! `telemetry` listeners) on the addresses its flags give; scraped while it ships.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cloudwatch::testkit::{Proxy, ProxyOptions};
use common::*;

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `(status line, body)` of a plain HTTP/1.1 GET; `None` while nothing listens.
fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_shipper_serves_metrics_and_health() {
    let proxy = Proxy::start(ProxyOptions {
        upstream: None,
        record_events: false,
    })
    .await
    .expect("proxy");
    let dir = tempfile::tempdir().expect("tempdir");
    append(&dir.path().join(LIVE), 0..25, now_ms() - 1000);
    let (mport, hport) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_cloudwatch-ship"))
        .args(["--metrics-bind-addr", &format!("127.0.0.1:{mport}")])
        .arg(format!("--health-probe-bind-addr=127.0.0.1:{hport}"))
        .env("CW_DIR", dir.path())
        .env("CW_ENDPOINT", proxy.url())
        .env("CW_REGION", "us-east-1")
        .env("CLUSTER_NAME", "metrics-test")
        .env("MY_NODE_NAME", "node-m")
        .env("CW_FLUSH_MS", "100")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cloudwatch-ship");
    let _guard = ChildGuard(child);
    let mut last = String::new();
    wait_for("25 events in /metrics", Duration::from_secs(30), || {
        if let Some((_, body)) = get(mport, "/metrics") {
            last = body;
        }
        last.contains("cloudwatch_events_total 25")
    })
    .await;
    assert!(
        last.contains("cloudwatch_lines_lost_total{reason=\"truncated\"} 0"),
        "{last}"
    );
    assert!(
        !last.contains("network_policy_"),
        "no pipeline metrics: {last}"
    );
    let (status, body) = get(hport, "/healthz").expect("healthz");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "ok");
    let (status, _) = get(hport, "/readyz").expect("readyz");
    assert!(status.contains("200"), "{status}");
}
