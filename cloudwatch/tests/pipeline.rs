//! The shipper against the proxy answering by itself (no moto): batches filled exactly to
//! the count and byte limits, truncation, the age window, invalid batches split then
//! dropped, rejectedLogEventsInfo counted, requests in flight, flush interval, shutdown
//! flush and the incumbent's message format.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use cloudwatch::MessageFormat;
use cloudwatch::limits::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_MESSAGE_BYTES, TRUNCATION_MARKER};
use cloudwatch::metrics::DropReason;
use cloudwatch::testkit::{Fault, Proxy, ProxyOptions};
use common::*;

async fn self_answering() -> Proxy {
    Proxy::start(ProxyOptions {
        upstream: None,
        record_events: true,
    })
    .await
    .expect("proxy")
}

fn write_lines(path: &std::path::Path, lines: impl Iterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    let mut buf = String::new();
    for l in lines {
        buf.push_str(&l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).expect("write");
}

fn short_line(id: usize, ts: i64) -> String {
    format!(r#"{{"timestamp":"{}","id":{id}}}"#, rfc3339_ms(ts))
}

/// The test configuration with a flush interval long enough that only the limits cut
/// batches while the file is read (the common 100 ms one cut them mid-file on a
/// loaded machine); the last, partial batch still goes within seconds.
fn full_batches_config(dir: &std::path::Path, endpoint: &str) -> cloudwatch::ShipperConfig {
    let mut cfg = config(dir, endpoint, "s");
    cfg.flush_interval = Duration::from_secs(5);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_fill_exactly_to_the_count_limit() {
    let proxy = self_answering().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = now_ms() - 60_000;
    write_lines(
        &dir.path().join(LIVE),
        (0..25_000).map(|i| short_line(i, base)),
    );
    let running = Running::start(full_batches_config(dir.path(), &proxy.url()));
    let m = running.metrics.clone();
    wait_for("25,000 events", Duration::from_secs(60), || {
        m.events.get() >= 25_000
    })
    .await;
    running.stop().await;
    // Requests run concurrently, so put them in file order before comparing.
    let mut records = proxy.records();
    records.sort_by_key(|r| id_of(&r.events[0].1));
    let counts: Vec<usize> = records.iter().map(|r| r.event_count).collect();
    assert_eq!(counts, [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 5_000]);
    assert!(proxy.violations().is_empty(), "{:?}", proxy.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_fill_exactly_to_the_byte_limit_counting_26_bytes_per_event() {
    let proxy = self_answering().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = now_ms() - 60_000;
    let pad = "p".repeat(960);
    write_lines(
        &dir.path().join(LIVE),
        (10_000..13_000).map(|i| {
            format!(
                r#"{{"timestamp":"{}","id":{i},"pad":"{pad}"}}"#,
                rfc3339_ms(base)
            )
        }),
    );
    let running = Running::start(full_batches_config(dir.path(), &proxy.url()));
    let m = running.metrics.clone();
    wait_for("3,000 events", Duration::from_secs(60), || {
        m.events.get() >= 3_000
    })
    .await;
    running.stop().await;
    let mut records = proxy.records();
    records.sort_by_key(|r| id_of(&r.events[0].1));
    let event_bytes = records[0].api_bytes / records[0].event_count;
    for r in &records[..records.len() - 1] {
        assert!(
            r.api_bytes <= MAX_BATCH_BYTES,
            "request {} over the limit",
            r.index
        );
        assert!(
            r.api_bytes + event_bytes > MAX_BATCH_BYTES,
            "request {} not full: {} bytes",
            r.index,
            r.api_bytes
        );
    }
    assert!(proxy.violations().is_empty(), "{:?}", proxy.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_line_is_truncated_with_a_marker_and_counted() {
    let proxy = self_answering().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let huge = format!(
        r#"{{"timestamp":"{}","id":0,"pad":"{}"}}"#,
        rfc3339_ms(now_ms()),
        "x".repeat(300_000)
    );
    write_lines(
        &dir.path().join(LIVE),
        [huge, short_line(1, now_ms())].into_iter(),
    );
    let running = Running::start(config(dir.path(), &proxy.url(), "s"));
    let m = running.metrics.clone();
    wait_for("2 events", Duration::from_secs(30), || m.events.get() >= 2).await;
    running.stop().await;
    let events: Vec<_> = proxy.records().into_iter().flat_map(|r| r.events).collect();
    assert_eq!(events[0].1.len(), MAX_MESSAGE_BYTES);
    assert!(events[0].1.ends_with(TRUNCATION_MARKER));
    assert_eq!(m.truncated.get(), 1);
    assert!(proxy.violations().is_empty(), "{:?}", proxy.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_outside_the_age_window_are_counted_not_sent_and_the_checkpoint_passes_them() {
    let proxy = self_answering().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_ms();
    let day = 86_400_000;
    write_lines(
        &dir.path().join(LIVE),
        [
            short_line(0, now - 15 * day),
            short_line(1, now - 1000),
            short_line(2, now + 3 * 3_600_000),
            short_line(3, now - 900),
        ]
        .into_iter(),
    );
    let cfg = config(dir.path(), &proxy.url(), "s");
    let running = Running::start(cfg.clone());
    let m = running.metrics.clone();
    wait_for("2 events", Duration::from_secs(30), || m.events.get() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    let ids: Vec<usize> = proxy
        .records()
        .iter()
        .flat_map(|r| {
            r.events
                .iter()
                .map(|(_, msg)| id_of(msg))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ids, [1, 3]);
    assert_eq!(m.dropped(DropReason::TooOld).get(), 1);
    assert_eq!(m.dropped(DropReason::TooNew).get(), 1);
    let cp = cloudwatch::checkpoint::load(&cfg.checkpoint_path())
        .expect("load")
        .expect("written");
    assert_eq!(
        cp.offset,
        std::fs::metadata(dir.path().join(LIVE))
            .expect("stat")
            .len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_batch_is_split_and_a_single_invalid_event_dropped_never_resent_as_is() {
    let proxy = self_answering().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = now_ms() - 1000;
    write_lines(
        &dir.path().join(LIVE),
        (0..4).map(|i| short_line(i, base + i as i64)),
    );
    proxy.push_faults([Fault::Invalid, Fault::Invalid, Fault::Invalid]);
    let running = Running::start(config(dir.path(), &proxy.url(), "s"));
    let m = running.metrics.clone();
    wait_for("3 events accepted", Duration::from_secs(30), || {
        m.events.get() >= 3
    })
    .await;
    running.stop().await;
    let sizes: Vec<usize> = proxy.records().iter().map(|r| r.event_count).collect();
    assert_eq!(
        sizes,
        [4, 2, 1, 1, 2],
        "4 refused, its first half refused, its first event refused and dropped"
    );
    assert_eq!(m.dropped(DropReason::InvalidParameter).get(), 1);
    assert_eq!(m.events.get(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_log_events_info_is_counted_by_reason() {
    let proxy = self_answering().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = now_ms() - 1000;
    write_lines(
        &dir.path().join(LIVE),
        (0..5).map(|i| short_line(i, base + i as i64)),
    );
    proxy.push_faults([Fault::RejectEnds]);
    let running = Running::start(config(dir.path(), &proxy.url(), "s"));
    let m = running.metrics.clone();
    wait_for("5 events", Duration::from_secs(30), || m.events.get() >= 5).await;
    running.stop().await;
    assert_eq!(m.dropped(DropReason::RejectedTooOld).get(), 1);
    assert_eq!(m.dropped(DropReason::RejectedTooNew).get(), 1);
    assert_eq!(proxy.records().len(), 1, "an accepted call is not resent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_requests_are_in_flight_when_there_is_backlog() {
    let proxy = self_answering().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = now_ms() - 60_000;
    write_lines(
        &dir.path().join(LIVE),
        (0..2_000).map(|i| short_line(i, base + i as i64)),
    );
    proxy.push_faults(std::iter::repeat_n(
        Fault::Slow(Duration::from_millis(200)),
        100,
    ));
    let mut cfg = config(dir.path(), &proxy.url(), "s");
    cfg.batch.max_events = 100;
    let running = Running::start(cfg);
    let m = running.metrics.clone();
    wait_for("2,000 events", Duration::from_secs(60), || {
        m.events.get() >= 2_000
    })
    .await;
    running.stop().await;
    let records = proxy.records();
    let max_overlap = records
        .iter()
        .map(|a| {
            records
                .iter()
                .filter(|b| b.at <= a.at && b.done_at.is_some_and(|d| d > a.at))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        max_overlap >= 2,
        "at most {max_overlap} request(s) in flight"
    );
    assert!(max_overlap <= 4, "more than max_in_flight: {max_overlap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flush_interval_bounds_latency_at_a_low_rate() {
    let proxy = self_answering().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    std::fs::File::create(&live).expect("live");
    let mut cfg = config(dir.path(), &proxy.url(), "s");
    cfg.flush_interval = Duration::from_millis(400);
    let running = Running::start(cfg);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let written = Instant::now();
    write_lines(&live, std::iter::once(short_line(0, now_ms())));
    wait_for("the line", Duration::from_secs(10), || {
        !proxy.records().is_empty()
    })
    .await;
    let latency = written.elapsed();
    running.stop().await;
    assert!(
        latency >= Duration::from_millis(350),
        "sent before the interval: {latency:?}"
    );
    assert!(latency < Duration::from_secs(5), "too slow: {latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_the_partial_batch_and_persists_the_checkpoint() {
    let proxy = self_answering().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    write_lines(&live, (0..10).map(|i| short_line(i, now_ms())));
    let mut cfg = config(dir.path(), &proxy.url(), "s");
    cfg.flush_interval = Duration::from_secs(600);
    let running = Running::start(cfg.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        proxy.records().is_empty(),
        "held by the long flush interval"
    );
    running.stop().await;
    assert_eq!(
        proxy.records().iter().map(|r| r.event_count).sum::<usize>(),
        10
    );
    let cp = cloudwatch::checkpoint::load(&cfg.checkpoint_path())
        .expect("load")
        .expect("written");
    assert_eq!(cp.offset, std::fs::metadata(&live).expect("stat").len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incumbent_format_is_sent_when_chosen() {
    let proxy = self_answering().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = now_ms() - 1000;
    append(&dir.path().join(LIVE), 7..8, base);
    let mut cfg = config(dir.path(), &proxy.url(), "s");
    cfg.message_format = MessageFormat::Incumbent;
    let running = Running::start(cfg);
    let m = running.metrics.clone();
    wait_for("1 event", Duration::from_secs(30), || m.events.get() >= 1).await;
    running.stop().await;
    let msg = proxy.records()[0].events[0].1.clone();
    assert_eq!(
        msg,
        "Node: node-a;SIP: 10.0.0.7;SPORT: 1031;DIP: 10.1.0.1;DPORT: 443;PROTOCOL: TCP;PolicyVerdict: ACCEPT"
    );
}
