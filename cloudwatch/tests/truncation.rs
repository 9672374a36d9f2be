//! The whole shipper (reader, batches, checkpoint) against the self-answering proxy when
//! the live file is cut in place (copytruncate) while it runs and while it is stopped, or
//! holds blank lines: every line accepted exactly once, losses counted.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use cloudwatch::metrics::LossReason;
use cloudwatch::testkit::{Proxy, ProxyOptions};
use common::*;

async fn self_answering() -> Proxy {
    Proxy::start(ProxyOptions {
        upstream: None,
        record_events: true,
    })
    .await
    .expect("proxy")
}

/// How many times each id was accepted.
fn accepted_ids(proxy: &Proxy) -> HashMap<usize, usize> {
    let mut seen = HashMap::new();
    for r in proxy.records().iter().filter(|r| r.accepted) {
        for (_, msg) in &r.events {
            *seen.entry(id_of(msg)).or_insert(0) += 1;
        }
    }
    seen
}

fn truncate(path: &std::path::Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .set_len(0)
        .expect("truncate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_mid_run_and_across_a_restart_sends_every_line_once() {
    let proxy = self_answering().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    let base = now_ms() - 60_000;
    append(&live, 0..500, base);
    rotate(dir.path(), 1);
    append(&live, 500..600, base);
    let cfg = config(dir.path(), &proxy.url(), "s");

    let running = Running::start(cfg.clone());
    let m = running.metrics.clone();
    wait_for("600 events", Duration::from_secs(30), || {
        m.events.get() >= 600
    })
    .await;
    // copytruncate while running: the new content outgrows the old offset at once.
    truncate(&live);
    append(&live, 1000..1400, base);
    wait_for("1,000 events", Duration::from_secs(30), || {
        m.events.get() >= 1000
    })
    .await;
    running.stop().await;
    assert_eq!(m.lines_lost(LossReason::Truncated).get(), 0);

    // copytruncate while stopped.
    truncate(&live);
    append(&live, 2000..2300, base);
    let running = Running::start(cfg);
    let m2 = running.metrics.clone();
    wait_for("300 more events", Duration::from_secs(30), || {
        m2.events.get() >= 300
    })
    .await;
    // Files are read in order, the live file last: once its last line is accepted,
    // any older file sent again would already have been seen.
    wait_for("the live file's last line", Duration::from_secs(30), || {
        accepted_ids(&proxy).contains_key(&2299)
    })
    .await;
    running.stop().await;

    let seen = accepted_ids(&proxy);
    let want: Vec<usize> = (0..600).chain(1000..1400).chain(2000..2300).collect();
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
    let mut got: Vec<usize> = seen.keys().copied().collect();
    got.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(m2.events.get(), 300, "nothing of the first run sent again");
    assert_eq!(m2.lost_files.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_lines_are_skipped_and_counted_never_sent() {
    let proxy = self_answering().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    let base = now_ms() - 1000;
    let mut f = std::fs::File::create(&live).expect("create");
    write!(
        f,
        "{}\n\n{}\n \t\n\r\n{}\n",
        line(0, base),
        line(1, base),
        line(2, base)
    )
    .expect("write");
    let running = Running::start(config(dir.path(), &proxy.url(), "s"));
    let m = running.metrics.clone();
    wait_for("3 events", Duration::from_secs(30), || m.events.get() >= 3).await;
    running.stop().await;
    assert_eq!(m.blank_lines.get(), 3);
    let messages: Vec<String> = proxy
        .records()
        .iter()
        .flat_map(|r| r.events.iter().map(|(_, msg)| msg.clone()))
        .collect();
    assert!(
        messages.iter().all(|m| !m.trim().is_empty()),
        "{messages:?}"
    );
    assert_eq!(messages.len(), 3);
    assert!(proxy.violations().is_empty(), "{:?}", proxy.violations());
}
