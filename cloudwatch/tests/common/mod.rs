//! Shared fixtures: flow lines with unique ids, file-set writers, a shipper config aimed
//! at a local endpoint, a background shipper handle, and bounded waiting.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cloudwatch::metrics::Metrics;
use cloudwatch::retry::BackoffConfig;
use cloudwatch::{Shipper, ShipperConfig};
use tokio_util::sync::CancellationToken;

pub const LIVE: &str = "network-policy-agent.log";

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of epoch milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // civil_from_days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// A flow line whose `id` field identifies it; timestamps rise 1 ms per id from `base_ms`.
pub fn line(id: usize, base_ms: i64) -> String {
    format!(
        r#"{{"level":"info","timestamp":"{}","logger":"flow","id":{id},"src_ip":"10.0.0.{}","src_port":{},"dst_ip":"10.1.0.1","dst_port":443,"proto":"TCP","verdict":"ACCEPT"}}"#,
        rfc3339_ms(base_ms + id as i64),
        id % 250,
        1024 + id % 60_000
    )
}

/// The id of a line produced by [`line`].
pub fn id_of(message: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(message).expect("shipped message is JSON");
    v["id"].as_u64().expect("id field") as usize
}

/// Appends lines `ids` to `path` in one write.
pub fn append(path: &Path, ids: std::ops::Range<usize>, base_ms: i64) {
    let mut buf = String::new();
    for id in ids {
        buf.push_str(&line(id, base_ms));
        buf.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(buf.as_bytes()).expect("append");
}

/// Rotates the live file the way the file sink does: rename to `<live>.<seq>`, create anew.
pub fn rotate(dir: &Path, seq: u64) -> PathBuf {
    let rotated = dir.join(format!("{LIVE}.{seq:08}"));
    std::fs::rename(dir.join(LIVE), &rotated).expect("rotate");
    std::fs::File::create(dir.join(LIVE)).expect("create live");
    rotated
}

/// Compresses a rotated file in place (`.gz` written, then the plain file removed).
pub fn compress(path: &Path) -> PathBuf {
    let data = std::fs::read(path).expect("read rotated");
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).expect("create gz"),
        flate2::Compression::fast(),
    );
    enc.write_all(&data).expect("gz write");
    enc.finish().expect("gz finish");
    std::fs::remove_file(path).expect("remove plain");
    gz
}

/// A config aimed at a local endpoint, with compressed time.
pub fn config(dir: &Path, endpoint: &str, stream: &str) -> ShipperConfig {
    let mut c = ShipperConfig::new(dir, "test-cluster", "node-a");
    c.endpoint_url = Some(endpoint.to_owned());
    c.region = Some("us-east-1".into());
    c.credentials = Some(cloudwatch::testkit::test_credentials());
    c.log_stream = Some(stream.to_owned());
    c.flush_interval = Duration::from_millis(100);
    c.poll_interval = Duration::from_millis(10);
    c.backoff = BackoffConfig {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
    };
    c.request_timeout = Duration::from_secs(2);
    c.shutdown_grace = Duration::from_secs(5);
    c.checkpoint_fsync = false;
    c
}

/// A shipper running on the test's runtime.
pub struct Running {
    pub metrics: Metrics,
    pub token: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), cloudwatch::ShipperError>>,
}

impl Running {
    pub fn start(config: ShipperConfig) -> Self {
        let shipper = Shipper::new(config).expect("valid config");
        let metrics = shipper.metrics();
        let token = CancellationToken::new();
        let task = tokio::spawn(shipper.run(token.clone()));
        Self {
            metrics,
            token,
            task,
        }
    }

    /// Cancels and waits for the shutdown flush.
    pub async fn stop(self) {
        self.token.cancel();
        let res = tokio::time::timeout(Duration::from_secs(20), self.task).await;
        res.expect("shipper stops within 20 s")
            .expect("task joins")
            .expect("run returns Ok");
    }
}

/// Polls `cond` every 50 ms for at most `limit`; panics with `what` when it never holds.
pub async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
