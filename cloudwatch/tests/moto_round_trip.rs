//! Round trips through a real local CloudWatch Logs endpoint (moto) with the real SDK:
//! group and stream created on demand, lines read back in order and byte for byte,
//! across rotated, compressed and live files, and a restart appending to the same stream.

mod common;

use std::time::Duration;

use cloudwatch::testkit::{Moto, read_stream, sdk_client};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_round_trip_through_moto_in_order_with_bodies_equal_to_the_file_lines() {
    let moto = Moto::start().expect("moto_server starts (run `eval \"$(scripts/setup.sh)\"`)");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = now_ms() - 60_000;
    let live = dir.path().join(LIVE);
    // Three rotated generations (one compressed) and a live file: 1,200 lines.
    append(&live, 0..300, base);
    compress(&rotate(dir.path(), 1));
    append(&live, 300..600, base);
    rotate(dir.path(), 2);
    append(&live, 600..900, base);
    append(&live, 900..1200, base);

    let cfg = config(
        dir.path(),
        &moto.url(),
        "aws-network-policy-agent-audit-node-a",
    );
    let group = cfg.group_name();
    let running = Running::start(cfg.clone());
    let m = running.metrics.clone();
    wait_for("1,200 events accepted", Duration::from_secs(60), || {
        m.events.get() >= 1200
    })
    .await;

    // Lines written while it runs, across a rotation of the live file, arrive too.
    append(&live, 1200..1300, base);
    rotate(dir.path(), 3);
    append(&live, 1300..1400, base);
    wait_for("1,400 events accepted", Duration::from_secs(60), || {
        m.events.get() >= 1400
    })
    .await;
    running.stop().await;

    let client = sdk_client(&moto.url()).await;
    let streams = client
        .describe_log_streams()
        .log_group_name(&group)
        .send()
        .await
        .expect("the group exists");
    let names: Vec<_> = streams
        .log_streams()
        .iter()
        .filter_map(|s| s.log_stream_name())
        .collect();
    assert_eq!(names, ["aws-network-policy-agent-audit-node-a"]);

    let got = read_stream(&client, &group, "aws-network-policy-agent-audit-node-a")
        .await
        .expect("read back");
    let want: Vec<(i64, String)> = (0..1400)
        .map(|i| (base + i as i64, line(i, base)))
        .collect();
    assert_eq!(got.len(), want.len(), "every line exactly once");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "event {i} differs");
    }
    assert_eq!(m.dropped_total(), 0);
    assert!(m.batches.get() >= 1);
    assert!(m.last_success_unix_seconds.get() > 0);

    let cp = cloudwatch::checkpoint::load(&cfg.checkpoint_path())
        .expect("load")
        .expect("checkpoint written");
    assert_eq!(
        cp.offset,
        std::fs::metadata(&live).expect("live").len(),
        "checkpoint at the end of the live file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_appends_to_the_same_stream_without_resending_what_was_accepted() {
    let moto = Moto::start().expect("moto_server starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = now_ms() - 60_000;
    let live = dir.path().join(LIVE);
    append(&live, 0..200, base);
    let mut cfg = config(dir.path(), &moto.url(), "unused");
    cfg.log_stream = None; // the documented per-node name
    let stream = cfg.stream_name();
    assert_eq!(stream, "aws-network-policy-agent-audit-node-a");

    let first = Running::start(cfg.clone());
    let m = first.metrics.clone();
    wait_for("200 accepted", Duration::from_secs(60), || {
        m.events.get() >= 200
    })
    .await;
    first.stop().await;

    append(&live, 200..300, base);
    compress(&rotate(dir.path(), 1));
    append(&live, 300..350, base);
    let second = Running::start(cfg.clone());
    let m2 = second.metrics.clone();
    wait_for("150 more accepted", Duration::from_secs(60), || {
        m2.events.get() >= 150
    })
    .await;
    second.stop().await;
    assert_eq!(m2.events.get(), 150, "the restart sent only the new lines");

    let client = sdk_client(&moto.url()).await;
    let got = read_stream(&client, &cfg.group_name(), &stream)
        .await
        .expect("read back");
    let ids: Vec<usize> = got.iter().map(|(_, msg)| id_of(msg)).collect();
    assert_eq!(ids, (0..350).collect::<Vec<_>>());
}
