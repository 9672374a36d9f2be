//! Verdict events: DENY folding, the fold flush, a full fold map, a full ring with
//! exact loss counters, adaptive wake-ups at low and high rates, and the verifier's
//! instruction counts.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use datapath_common::*;
use integration::{frames::Frame, kernel::*};

fn pod() -> IpAddr {
    "10.1.0.2".parse().unwrap()
}

fn peer() -> IpAddr {
    "10.9.0.1".parse().unwrap()
}

fn denied(fx: &mut KernelFixture) -> u32 {
    let pa = fx.ifindex("pa");
    fx.set_pod(pa, &[pod()], STATE_DEFAULT_DENY, STATE_DEFAULT_ALLOW);
    pa
}

fn syn(src_port: u16) -> Vec<u8> {
    Frame::tcp(peer(), src_port, pod(), 80, 0x02).build()
}

#[test]
fn deny_folding_counts_every_packet_in_exactly_one_event() {
    // Long enough that 25 test runs fit in one window on any machine.
    let window = Duration::from_secs(1);
    let window_ns = window.as_nanos() as u64;
    let mut fx = KernelFixture::with_options(
        &["pa"],
        FixtureOptions {
            fold_window: window,
            ..Default::default()
        },
    );
    let pa = denied(&mut fx);
    const N: u64 = 25;
    for _ in 0..N {
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn(40000)), ACT_DROP);
    }
    let last_packet_ns = coarse_now_ns();
    let first = fx.events();
    assert_eq!(
        first.len(),
        1,
        "the first DENY goes out at once, the rest fold"
    );
    assert_eq!(first[0].count, 1);
    let window_start_ns = first[0].timestamp_ns;
    assert!(
        last_packet_ns - window_start_ns < window_ns,
        "the packets were sent within one window"
    );
    assert_eq!(fx.dp().maps().pending_fold_packets(), N - 1);
    // Nothing more arrives: a flush while the window is open sends nothing (checked
    // only when the clock, read after the flush, still says so).
    fx.dp().flush_folds().unwrap();
    if coarse_now_ns() < window_start_ns + window_ns {
        assert!(fx.events().is_empty(), "not due before the window ends");
    }
    // The flush after the window (as the programs' clock reads it) sends the rest.
    wait_for_coarse_clock(window_start_ns + window_ns);
    fx.dp().flush_folds().unwrap();
    let flushed = fx.events();
    assert_eq!(flushed.len(), 1);
    assert_eq!(first[0].count as u64 + flushed[0].count as u64, N);
    // Event times come from the coarse clock: the pending packets may share the
    // first one's tick, never precede it.
    assert!(
        flushed[0].timestamp_ns >= window_start_ns,
        "a fold keeps its first pending packet's time"
    );
    assert!(flushed[0].timestamp_ns <= last_packet_ns);
    assert_eq!(flushed[0].verdict, VERDICT_DENY);
    assert_eq!((flushed[0].src_port, flushed[0].dst_port), (40000, 80));
    let c = fx.counters();
    assert_eq!(
        c.packets[DIRECTION_INGRESS as usize][VERDICT_DENY as usize],
        N
    );
    // After two idle windows the fold is deleted.
    wait_for_coarse_clock(last_packet_ns + 2 * window_ns);
    fx.dp().flush_folds().unwrap();
    assert!(fx.dp().maps().folds().is_empty());
}

#[test]
fn packets_after_the_window_send_their_fold_at_once() {
    let window = Duration::from_secs(1);
    let mut fx = KernelFixture::with_options(
        &["pa"],
        FixtureOptions {
            fold_window: window,
            ..Default::default()
        },
    );
    let pa = denied(&mut fx);
    for _ in 0..5 {
        fx.run(DIRECTION_INGRESS, pa, &syn(40000));
    }
    let first = fx.events();
    let counts: Vec<u32> = first.iter().map(|e| e.count).collect();
    assert_eq!(counts, [1], "the first goes out, 4 fold");
    wait_for_coarse_clock(first[0].timestamp_ns + window.as_nanos() as u64);
    fx.run(DIRECTION_INGRESS, pa, &syn(40000));
    let counts: Vec<u32> = fx.events().iter().map(|e| e.count).collect();
    assert_eq!(
        counts,
        [5],
        "4 pending plus the packet that found the window over"
    );
}

#[test]
fn full_fold_map_sends_events_unfolded_and_counts_them() {
    let mut fx = KernelFixture::with_options(
        &["pa"],
        FixtureOptions {
            fold_window: Duration::from_secs(10),
            fold_entries: 4,
            ..Default::default()
        },
    );
    let pa = denied(&mut fx);
    for flow in 0..6u16 {
        for _ in 0..3 {
            fx.run(DIRECTION_INGRESS, pa, &syn(41000 + flow));
        }
    }
    let events = fx.events();
    let folded = events.iter().filter(|e| e.src_port < 41004).count();
    let unfolded = events.iter().filter(|e| e.src_port >= 41004).count();
    assert_eq!(folded, 4, "one immediate event per folded flow");
    assert_eq!(unfolded, 6, "flows without a fold slot send every packet");
    assert_eq!(fx.counters().events_unfolded_fold_full, 6);
    let pending = fx.dp().maps().pending_fold_packets();
    let sent: u64 = events.iter().map(|e| e.count as u64).sum();
    assert_eq!(sent + pending, 18);
}

#[test]
fn full_ring_counts_exactly_the_events_not_delivered() {
    let mut fx = KernelFixture::with_options(
        &["pa"],
        FixtureOptions {
            ring_bytes: 4096,
            ..Default::default()
        },
    );
    let pa = denied(&mut fx);
    const SENT: u64 = 100;
    for flow in 0..SENT as u16 {
        fx.run(DIRECTION_INGRESS, pa, &syn(30000 + flow));
    }
    let delivered = fx.events();
    let c = fx.counters();
    assert!(c.events_lost > 0, "a 4 KiB ring cannot hold 100 events");
    assert_eq!(c.events_submitted, delivered.len() as u64);
    assert_eq!(c.events_submitted + c.events_lost, SENT);
    assert_eq!(
        c.denied_packets_lost, c.events_lost,
        "each lost DENY carried one packet"
    );
    // The ring drains and takes events again.
    fx.run(DIRECTION_INGRESS, pa, &syn(50000));
    assert_eq!(fx.events().len(), 1);
}

/// Events a reader thread saw, with when it saw them.
type Seen = Arc<Mutex<Vec<(Instant, FlowEvent)>>>;

/// Runs a reader the way the pipeline does: wait up to `poll`, then drain.
fn spawn_reader(
    fx: &mut KernelFixture,
    poll: Duration,
    want: usize,
) -> (std::thread::JoinHandle<()>, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let mut reader = fx.reader.take().expect("reader");
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline && seen2.lock().unwrap().len() < want {
            reader.wait(poll).unwrap();
            reader.drain(usize::MAX, |e| {
                seen2.lock().unwrap().push((Instant::now(), *e))
            });
        }
    });
    (handle, seen)
}

#[test]
fn low_rate_events_are_not_stranded_by_adaptive_wakeups() {
    let mut fx = KernelFixture::with_options(
        &["pa"],
        FixtureOptions {
            wakeup_threshold_bytes: datapath::DEFAULT_WAKEUP_THRESHOLD_BYTES,
            ..Default::default()
        },
    );
    let pa = denied(&mut fx);
    let poll = Duration::from_millis(100);
    let (handle, seen) = spawn_reader(&mut fx, poll, 3);
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(150));
        let sent_at = Instant::now();
        fx.run(DIRECTION_INGRESS, pa, &syn(20000 + i));
        // Stranded would mean never (the ring holds far less than the threshold);
        // a generous bound keeps a slow machine from failing the test.
        while seen.lock().unwrap().len() <= i as usize {
            assert!(
                sent_at.elapsed() < Duration::from_secs(20),
                "event {i} stranded well past the poll interval"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    handle.join().unwrap();
    assert_eq!(
        fx.counters().wakeups_forced,
        0,
        "low rates never force a wake-up"
    );
}

#[test]
fn passing_the_threshold_wakes_a_sleeping_reader() {
    let threshold = 8 * 88;
    let mut fx = KernelFixture::with_options(
        &["pa"],
        FixtureOptions {
            wakeup_threshold_bytes: threshold,
            ..Default::default()
        },
    );
    let pa = denied(&mut fx);
    let poll = Duration::from_secs(90);
    let (handle, seen) = spawn_reader(&mut fx, poll, 8);
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    for i in 0..8 {
        fx.run(DIRECTION_INGRESS, pa, &syn(21000 + i));
    }
    handle.join().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 8);
    assert!(
        seen[7].0.duration_since(start) < poll / 3,
        "woken by the threshold, not the poll timeout"
    );
    assert_eq!(
        fx.counters().wakeups_forced,
        1,
        "one wake-up when pending data crosses the threshold"
    );
}

#[test]
fn verifier_instruction_counts_are_printed() {
    let fx = KernelFixture::new(&["pa"]);
    for name in [
        program_names::POD_INGRESS,
        program_names::POD_EGRESS,
        program_names::FOLD_FLUSH,
        program_names::NOOP,
    ] {
        let info = fx
            .dp
            .as_ref()
            .unwrap()
            .program(name)
            .unwrap()
            .info()
            .unwrap();
        let verified = info.verified_instruction_count().unwrap_or(0);
        let translated = info.size_translated().unwrap_or(0);
        println!(
            "verifier: {name}: {verified} instructions verified, {translated} bytes translated"
        );
        // Headroom under the verifier's 1M limit: a change that doubles the walk (a
        // branch on a new verdict value after the decision did) fails here first.
        assert!(verified > 0 && verified < 600_000, "{name}: {verified}");
    }
}

#[test]
fn audit_passes_what_no_rule_admits_folds_it_apart_and_counts_it() {
    let window = Duration::from_secs(1);
    let window_ns = window.as_nanos() as u64;
    let mut fx = KernelFixture::with_options(
        &["pa"],
        FixtureOptions {
            fold_window: window,
            ..Default::default()
        },
    );
    let pa = fx.ifindex("pa");
    fx.set_pod(pa, &[pod()], STATE_POLICIES_AUDIT, STATE_DEFAULT_ALLOW);
    fx.set_policy_set(pa, 7);
    fx.put_entry(
        7,
        DIRECTION_INGRESS,
        "10.9.0.0/16",
        &[rule(PROTO_TCP, 443, 443, 21)],
    );
    // Admitted by the audit policy's rule: an ordinary ACCEPT, tracked.
    let admitted = Frame::tcp(peer(), 40001, pod(), 443, 0x02).build();
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &admitted), ACT_PASS);
    let accepted = fx.events();
    assert_eq!(accepted.len(), 1);
    assert_eq!(
        (accepted[0].verdict, accepted[0].policy_id),
        (VERDICT_ACCEPT, 21)
    );
    // Not admitted: every packet passes, reported as AUDIT and folded like a DENY.
    const N: u64 = 10;
    for _ in 0..N {
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn(40000)), ACT_PASS);
    }
    let first = fx.events();
    assert_eq!(
        first.len(),
        1,
        "the first AUDIT goes out at once, the rest fold"
    );
    assert_eq!(
        (first[0].verdict, first[0].reason, first[0].direction),
        (VERDICT_AUDIT, REASON_NO_RULE_MATCHED, DIRECTION_INGRESS)
    );
    let tracked: Vec<u16> = fx
        .dp()
        .maps()
        .conntrack()
        .iter()
        .map(|e| e.key.peer_port)
        .collect();
    assert_eq!(
        tracked,
        [40001],
        "an audited flow is never tracked, the admitted one is"
    );
    wait_for_coarse_clock(first[0].timestamp_ns + window_ns);
    fx.dp().flush_folds().unwrap();
    let flushed = fx.events();
    assert_eq!(flushed.len(), 1);
    assert_eq!(
        flushed[0].verdict, VERDICT_AUDIT,
        "the flush keeps the fold's verdict"
    );
    assert_eq!(
        flushed[0].direction, DIRECTION_INGRESS,
        "and the real direction"
    );
    assert_eq!(first[0].count as u64 + flushed[0].count as u64, N);
    let c = fx.counters();
    let ingress = DIRECTION_INGRESS as usize;
    assert_eq!(c.audited_packets[ingress], N);
    assert_eq!(
        c.packets[ingress][VERDICT_ACCEPT as usize],
        N + 1,
        "audited packets passed"
    );
    assert_eq!(c.packets[ingress][VERDICT_DENY as usize], 0);
    // The same flow after audit is switched off (a new generation): a DENY, in a fold of
    // its own.
    fx.set_pod(pa, &[pod()], STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
    fx.set_policy_set(pa, 7);
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn(40000)), ACT_DROP);
    let denied = fx.events();
    assert_eq!(denied.len(), 1);
    assert_eq!((denied[0].verdict, denied[0].count), (VERDICT_DENY, 1));
}
