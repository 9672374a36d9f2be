//! The daemon with the CloudWatch shipper on: flow-log lines on disk reach a real
//! local CloudWatch Logs endpoint (moto) through the real SDK, in the group and stream
//! the EKS guide names, and the shipper's metrics are on the agent's /metrics.

use std::time::{Duration, Instant};

use cloudwatch::testkit::{Moto, read_stream, sdk_client};
use tokio_util::sync::CancellationToken;

fn line(i: usize) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let ms = now.as_millis() as i64 - 1000 + i as i64;
    let mut formatter = exporter::timefmt::TimestampFormatter::default();
    let t = String::from_utf8_lossy(formatter.format(ms)).into_owned();
    format!(
        r#"{{"level":"info","timestamp":"{t}","logger":"ebpf-client","msg":"Flow Info: ","Src IP":"10.0.0.{i}","Src Port":1000,"Dest IP":"10.0.1.1","Dest Port":80,"Proto":"TCP","Verdict":"DENY","Direction":"ingress","Src Pod":"","Src Namespace":"","Dest Pod":"","Dest Namespace":"","Policy":"no-rule-matched","Count":1,"Bytes":60,"Node":"node-cw","Peer Node":""}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_lines_reach_cloudwatch_and_shipper_metrics_are_served() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "needs root (BPF): run scripts/test.sh");
    let moto = Moto::start().expect("moto_server (installed by scripts/setup.sh)");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("network-policy-agent.log");
    let lines: Vec<String> = (0..5).map(line).collect();
    std::fs::write(
        &log,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let pins =
        std::path::PathBuf::from(format!("/sys/fs/bpf/netpol-cw-test-{}", std::process::id()));

    // Credentials through the default chain, as on a node.
    // SAFETY: this test binary has one test; nothing else reads the environment now.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    }
    let config = config::AgentConfig {
        enable_network_policy: true,
        enable_policy_event_logs: true,
        enable_cloudwatch_logs: true,
        log_file: log.clone(),
        // Port 0 (any free port) is not a valid setting, so set the fields directly.
        metrics_bind_addr: config::BindAddr {
            host: Some([127, 0, 0, 1].into()),
            port: 0,
        },
        health_probe_bind_addr: config::BindAddr {
            host: Some([127, 0, 0, 1].into()),
            port: 0,
        },
        cluster_name: Some("cw-test".into()),
        node_name: Some("node-cw".into()),
        cloudwatch_region: Some("us-east-1".into()),
        cloudwatch_endpoint: Some(moto.url()),
        cloudwatch_flush_interval: Duration::from_millis(200),
        policy_dir: Some(policies),
        bpffs_pin_dir: pins.clone(),
        conntrack_cache_table_size: 32768,
        ..config::AgentConfig::default()
    };
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let daemon = tokio::spawn(agent::daemon::run(config, shutdown.clone(), Some(tx), None));
    let running = rx.await.expect("the daemon starts");

    let client = sdk_client(&moto.url()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let got = read_stream(
            &client,
            "/aws/eks/cw-test/cluster",
            "aws-network-policy-agent-audit-node-cw",
        )
        .await
        .unwrap_or_default();
        if got.len() >= lines.len() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let bodies: Vec<&str> = stored.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        bodies,
        lines.iter().map(String::as_str).collect::<Vec<_>>(),
        "the file's lines, in order"
    );

    let metrics = http_get(running.metrics_addr, "/metrics").await;
    assert!(
        metrics.contains("network_policy_drop_count_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cloudwatch_"),
        "the shipper's metrics are on the agent's endpoint"
    );

    shutdown.cancel();
    daemon.await.unwrap().expect("clean shutdown");
    let _ = std::fs::remove_dir_all(&pins);
    let _ = std::fs::remove_file(agent::guard::run_file(&pins, "lock"));
    let _ = std::fs::remove_file(agent::guard::run_file(&pins, "policies.json"));
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
