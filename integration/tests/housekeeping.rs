//! The housekeeping handle: the periodic chores run on pins opened again, never on the
//! loaded datapath the enforcer owns, and see exactly what the programs did.

use std::{net::IpAddr, time::Duration};

use datapath_common::*;
use integration::{frames::Frame, kernel::*};

#[test]
fn a_housekeeper_of_its_own_flushes_folds_reads_counters_and_sweeps_conntrack() {
    let window = Duration::from_secs(1);
    let mut fx = KernelFixture::with_options(
        &["pa"],
        FixtureOptions {
            fold_window: window,
            ..Default::default()
        },
    );
    let pod: IpAddr = "10.1.0.2".parse().unwrap();
    let peer: IpAddr = "10.9.0.1".parse().unwrap();
    let pa = fx.ifindex("pa");
    fx.set_pod(pa, &[pod], STATE_DEFAULT_DENY, STATE_DEFAULT_ALLOW);
    let mut housekeeper = fx.dp().housekeeper().expect("open the pins again");
    let denied = Frame::tcp(peer, 40000, pod, 80, 0x02).build();
    for _ in 0..5 {
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &denied), ACT_DROP);
    }
    let first = fx.events();
    assert_eq!(first.len(), 1, "one event at once, four packets folded");
    wait_for_coarse_clock(first[0].timestamp_ns + window.as_nanos() as u64);
    assert_eq!(
        housekeeper.flush_folds().expect("flush"),
        1,
        "one fold examined"
    );
    let flushed = fx.events();
    assert_eq!(flushed.len(), 1);
    assert_eq!(
        flushed[0].count, 4,
        "the flush through the pinned program sent the rest"
    );
    let counters = housekeeper.counters().expect("counters");
    assert_eq!(
        counters.packets[DIRECTION_INGRESS as usize][VERDICT_DENY as usize],
        5
    );
    // An accepted flow is tracked; a sweep with no idle allowance removes it.
    fx.set_pod(pa, &[pod], STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
    let allowed = Frame::tcp(peer, 40001, pod, 80, 0x02).build();
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &allowed), ACT_PASS);
    assert_eq!(fx.dp().maps().conntrack().len(), 1);
    wait_for_coarse_clock(coarse_now_ns() + 2_000_000);
    assert_eq!(
        housekeeper.sweep_conntrack(Duration::ZERO).expect("sweep"),
        1
    );
    assert!(fx.dp().maps().conntrack().is_empty());
}
