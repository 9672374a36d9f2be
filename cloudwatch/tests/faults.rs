//! The shipper behind a fault-injecting proxy in front of moto: throttling bursts, 500
//! and 503, slow answers, resets before and after forwarding, hung answers past the
//! client timeout, and a long outage (time compressed). Afterwards every line is stored at
//! least once, duplicates come only from requests whose answer never reached the client,
//! accepted requests follow file order (up to the in-flight window) and every batch met
//! the API limits.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use cloudwatch::retry::FailureCause;
use cloudwatch::testkit::{Fault, Moto, Proxy, ProxyOptions, PutRecord, read_stream, sdk_client};
use common::*;

const MAX_IN_FLIGHT: usize = 4;

/// Every record's events are one run of consecutive ids in file order.
fn assert_contiguous(records: &[PutRecord]) {
    for r in records.iter().filter(|r| r.event_count > 0) {
        let ids: Vec<usize> = r.events.iter().map(|(_, m)| id_of(m)).collect();
        assert!(
            ids.windows(2).all(|w| w[1] == w[0] + 1),
            "request {} is not a run of consecutive lines: {ids:?}",
            r.index
        );
    }
}

/// Accepted requests follow file order, except that up to `MAX_IN_FLIGHT - 1` later
/// batches may be accepted while an earlier one is being retried.
fn assert_accepted_in_file_order(records: &[PutRecord]) {
    let mut firsts: Vec<usize> = records
        .iter()
        .filter(|r| r.event_count > 0)
        .map(|r| id_of(&r.events[0].1))
        .collect();
    firsts.sort_unstable();
    firsts.dedup();
    let ordinal: HashMap<usize, usize> = firsts.iter().enumerate().map(|(i, f)| (*f, i)).collect();
    let mut accepted = vec![false; firsts.len()];
    for r in records.iter().filter(|r| r.accepted && r.event_count > 0) {
        let k = ordinal[&id_of(&r.events[0].1)];
        let must_be_done = k.saturating_sub(MAX_IN_FLIGHT - 1);
        if let Some(missing) = (0..must_be_done).find(|&j| !accepted[j]) {
            panic!(
                "request {} (batch {k}) accepted before batch {missing}, outside the in-flight window",
                r.index
            );
        }
        accepted[k] = true;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_arrives_despite_faults_and_duplicates_only_come_from_unanswered_requests() {
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

    let mut cfg = config(dir.path(), &proxy.url(), "node-a");
    cfg.batch.max_events = 50;
    cfg.max_in_flight = MAX_IN_FLIGHT;
    cfg.request_timeout = Duration::from_secs(1);
    let group = cfg.group_name();

    // Phase 0: the group and stream are created on demand (moto answers
    // ResourceNotFound first).
    append(&live, 0..100, base);
    let running = Running::start(cfg.clone());
    let m = running.metrics.clone();
    wait_for("phase 0 shipped", Duration::from_secs(60), || {
        m.events.get() >= 100
    })
    .await;
    let calls = proxy.other_calls();
    assert!(
        calls.iter().any(|c| c == "CreateLogGroup") && calls.iter().any(|c| c == "CreateLogStream"),
        "{calls:?}"
    );

    // Phase 1: a scripted mix of every fault on the next PutLogEvents calls.
    proxy.push_faults([
        Fault::Throttle,
        Fault::Throttle,
        Fault::Throttle,
        Fault::Throttle,
        Fault::Status(500),
        Fault::Status(503),
        Fault::Slow(Duration::from_millis(300)),
        Fault::ResetBefore,
        Fault::ResetAfter,
        Fault::Hang(Duration::from_millis(1500)),
        Fault::Throttle,
        Fault::ResetAfter,
        Fault::Status(503),
        Fault::Slow(Duration::from_millis(100)),
        Fault::ResetAfter,
        Fault::Hang(Duration::from_millis(1500)),
    ]);
    append(&live, 100..1000, base);
    wait_for("phase 1 shipped", Duration::from_secs(60), || {
        m.events.get() >= 1000 && proxy.pending_faults() == 0
    })
    .await;

    // Phase 2: a long outage (503 then connection resets), lines keep coming and the live
    // file rotates meanwhile.
    proxy.outage(Duration::from_millis(1500), Fault::Status(503));
    append(&live, 1000..1300, base);
    tokio::time::sleep(Duration::from_millis(700)).await;
    rotate(dir.path(), 1);
    append(&live, 1300..1600, base);
    tokio::time::sleep(Duration::from_millis(900)).await;
    proxy.outage(Duration::from_millis(1500), Fault::ResetBefore);
    append(&live, 1600..2000, base);
    wait_for("phase 2 shipped", Duration::from_secs(60), || {
        let ids = proxy
            .records()
            .iter()
            .filter(|r| r.accepted)
            .flat_map(|r| r.events.iter().map(|(_, m)| id_of(m)).collect::<Vec<_>>())
            .collect::<std::collections::HashSet<_>>();
        ids.len() == 2000
    })
    .await;
    running.stop().await;

    let records = proxy.records();
    assert!(
        proxy.violations().is_empty(),
        "limit violations: {:?}",
        proxy.violations()
    );
    assert!(
        !proxy.other_calls().iter().any(|c| c == "DescribeLogGroups"),
        "never DescribeLogGroups"
    );
    for cause in [
        FailureCause::Throttled,
        FailureCause::Server,
        FailureCause::Connection,
        FailureCause::Timeout,
    ] {
        assert!(m.retries(cause).get() > 0, "no retry counted for {cause:?}");
    }
    let outage_hits = records
        .iter()
        .filter(|r| matches!(r.fault, Some(Fault::Status(503)) | Some(Fault::ResetBefore)))
        .count();
    assert!(
        outage_hits >= 5,
        "the outage was felt by several attempts: {outage_hits}"
    );

    // What CloudWatch holds is exactly what the accepted requests carried.
    let client = sdk_client(&moto.url()).await;
    let stored = read_stream(&client, &group, "node-a")
        .await
        .expect("read back");
    let mut stored_count: HashMap<usize, usize> = HashMap::new();
    for (_, msg) in &stored {
        *stored_count.entry(id_of(msg)).or_default() += 1;
    }
    let mut accepted_count: HashMap<usize, usize> = HashMap::new();
    let mut answered_count: HashMap<usize, usize> = HashMap::new();
    for r in records.iter().filter(|r| r.accepted) {
        for (_, msg) in &r.events {
            *accepted_count.entry(id_of(msg)).or_default() += 1;
            if r.answered {
                *answered_count.entry(id_of(msg)).or_default() += 1;
            }
        }
    }
    assert_eq!(
        stored_count, accepted_count,
        "the store holds exactly the accepted requests"
    );
    for id in 0..2000 {
        let n = stored_count.get(&id).copied().unwrap_or(0);
        assert!(n >= 1, "line {id} missing");
        let answered = answered_count.get(&id).copied().unwrap_or(0);
        assert!(
            answered <= 1,
            "line {id} was accepted with a delivered answer {answered} times"
        );
    }
    let duplicated: usize = stored_count.values().map(|n| n - 1).sum();
    let unanswered_accepted = records.iter().filter(|r| r.accepted && !r.answered).count();
    let summary: Vec<_> = records
        .iter()
        .filter(|r| r.fault.is_some())
        .map(|r| (r.index, r.fault, r.reached_endpoint, r.accepted, r.answered))
        .collect();
    assert!(
        unanswered_accepted >= 3,
        "resets after forwarding and hangs were accepted upstream: {summary:?}"
    );
    assert!(
        duplicated > 0,
        "the unanswered accepted requests were resent, so some lines are duplicated"
    );

    // Bodies equal the file lines.
    for (_, msg) in &stored {
        assert_eq!(msg, &line(id_of(msg), base));
    }
    assert_contiguous(&records);
    assert_accepted_in_file_order(&records);
    // After de-duplication the stream reads in file order.
    let mut seen = std::collections::HashSet::new();
    let order: Vec<usize> = stored
        .iter()
        .map(|(_, m)| id_of(m))
        .filter(|id| seen.insert(*id))
        .collect();
    assert_eq!(order, (0..2000).collect::<Vec<_>>());
}
