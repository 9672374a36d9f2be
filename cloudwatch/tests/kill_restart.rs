//! `kill -9` of the standalone shipper mid-stream, then a restart: nothing is lost, and
//! the only duplicates are lines of batches that were in flight (sent, not yet committed
//! to the checkpoint) at the kill.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cloudwatch::testkit::{Fault, Moto, Proxy, ProxyOptions, read_stream, sdk_client};
use common::*;

const MAX_IN_FLIGHT: usize = 4;
const LINES: usize = 3000;

/// Kills the child on drop if the test fails midway.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_shipper(dir: &std::path::Path, endpoint: &str) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_cloudwatch-ship"))
        .env("CW_DIR", dir)
        .env("CW_ENDPOINT", endpoint)
        .env("CW_REGION", "us-east-1")
        .env("CLUSTER_NAME", "kill-test")
        .env("MY_NODE_NAME", "node-k")
        .env("CW_MAX_EVENTS", "50")
        .env("CW_FLUSH_MS", "100")
        .env("CW_MAX_IN_FLIGHT", MAX_IN_FLIGHT.to_string())
        .env("CW_BACKOFF_BASE_MS", "20")
        .env("CW_BACKOFF_CAP_MS", "200")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "cloudwatch=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cloudwatch-ship");
    ChildGuard(child)
}

fn accepted_ids(proxy: &Proxy) -> HashSet<usize> {
    proxy
        .records()
        .iter()
        .filter(|r| r.accepted)
        .flat_map(|r| r.events.iter().map(|(_, m)| id_of(m)).collect::<Vec<_>>())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_nothing_and_duplicates_only_in_flight_batches() {
    let moto = Moto::start().expect("moto_server starts");
    let proxy = Proxy::start(ProxyOptions {
        upstream: Some(moto.addr()),
        record_events: true,
    })
    .await
    .expect("proxy");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = now_ms() - 600_000;
    let live = dir.path().join(LIVE);
    append(&live, 0..LINES, base);
    // Every answer is slow, so several requests are always in flight.
    proxy.push_faults(std::iter::repeat_n(
        Fault::Slow(Duration::from_millis(150)),
        10_000,
    ));

    let mut first = spawn_shipper(dir.path(), &proxy.url());
    wait_for("15 batches answered", Duration::from_secs(60), || {
        proxy
            .records()
            .iter()
            .filter(|r| r.accepted && r.answered)
            .count()
            >= 15
    })
    .await;
    first.0.kill().expect("SIGKILL"); // std's kill is SIGKILL
    first.0.wait().expect("reap");
    // Let forwards already under way reach moto and be recorded: on a loaded machine
    // moto may take longer than any fixed pause, so wait until none is open.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let settle_deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < settle_deadline
        && proxy.records().iter().any(|r| r.done_at.is_none())
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at_kill = proxy.records();
    let shipped_before_kill = accepted_ids(&proxy);
    assert!(shipped_before_kill.len() < LINES, "killed mid-stream");

    let cp_path = cloudwatch::checkpoint::default_path(dir.path(), LIVE);
    let cp = cloudwatch::checkpoint::load(&cp_path)
        .expect("load")
        .expect("a checkpoint was persisted before the kill");
    let content = std::fs::read(&live).expect("read live");
    let committed_lines = content[..cp.offset as usize]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    assert!(committed_lines > 0);

    proxy.clear_faults();
    let second = spawn_shipper(dir.path(), &proxy.url());
    wait_for("every line accepted", Duration::from_secs(60), || {
        accepted_ids(&proxy).len() == LINES
    })
    .await;
    let pid = second.0.id() as libc::pid_t;
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut second = second;
    let status = second.0.wait().expect("reap");
    assert!(status.success(), "graceful stop after SIGTERM: {status:?}");

    let client = sdk_client(&moto.url()).await;
    let stored = read_stream(
        &client,
        "/aws/eks/kill-test/cluster",
        "aws-network-policy-agent-audit-node-k",
    )
    .await
    .expect("read back");
    let mut count: HashMap<usize, usize> = HashMap::new();
    for (_, msg) in &stored {
        assert_eq!(msg, &line(id_of(msg), base), "body equals the file line");
        *count.entry(id_of(msg)).or_default() += 1;
    }
    for id in 0..LINES {
        assert!(count.contains_key(&id), "line {id} lost");
    }
    let duplicated: Vec<usize> = count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    for id in &duplicated {
        assert!(
            *id >= committed_lines,
            "line {id} was committed before the kill yet sent again"
        );
        assert!(
            shipped_before_kill.contains(id),
            "line {id} duplicated without having been accepted before the kill"
        );
    }
    // The duplicated lines belong to batches in flight at the kill: sent, and not yet
    // covered by the persisted checkpoint (answered ones whose checkpoint write had not
    // landed count too; on a loaded machine there can be a few more of those than the
    // request window). Every such batch lies wholly past the checkpoint, and no batch
    // the checkpoint covered is sent again.
    let dup_set: HashSet<usize> = duplicated.iter().copied().collect();
    let dup_batches: Vec<_> = at_kill
        .iter()
        .filter(|r| r.accepted && r.events.iter().any(|(_, m)| dup_set.contains(&id_of(m))))
        .collect();
    let uncommitted_at_kill = at_kill
        .iter()
        .filter(|r| r.accepted && r.events.iter().all(|(_, m)| id_of(m) >= committed_lines))
        .count();
    for batch in &dup_batches {
        assert!(
            batch
                .events
                .iter()
                .all(|(_, m)| id_of(m) >= committed_lines),
            "a duplicated batch reaches back before the checkpoint"
        );
    }
    let dup_batches = dup_batches.len();
    assert!(
        dup_batches <= uncommitted_at_kill,
        "{dup_batches} batches duplicated, only {uncommitted_at_kill} were in flight past the checkpoint"
    );
    assert!(
        uncommitted_at_kill <= 4 * MAX_IN_FLIGHT,
        "the checkpoint lagged {uncommitted_at_kill} accepted batches behind"
    );
    let dup_lines: usize = count.values().map(|n| n - 1).sum();
    eprintln!(
        "kill -9: {committed_lines} lines committed at the kill, {dup_lines} duplicated lines in {dup_batches} batches"
    );
}
