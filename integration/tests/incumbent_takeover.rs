//! Taking over from the EKS network policy agent (the incumbent), with stand-in
//! programs under its names in a node namespace: our programs enforce before, during
//! and after the take-over (real TCP probes), the stand-in's filters and pins go from
//! interfaces we enforce and stay where we do not, and a node without the incumbent is
//! left as it was.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use datapath::{AttachMode, Datapath, incumbent};
use datapath_common::*;
use integration::{
    podnet::*,
    standin::{StandIn, StandInVerdict, tc_filter_names},
};

const TIMEOUT: Duration = Duration::from_millis(700);
const PORT: u16 = 80;
const DEADLINE: Duration = Duration::from_secs(120);

fn both_filters() -> Vec<String> {
    vec![
        "egress:handle_ingress".to_string(),
        "ingress:handle_egress".to_string(),
    ]
}

fn set_record(net: &PodNet, dp: &mut Datapath, pod: usize, ingress: u8, egress: u8) {
    let record = net.record(pod, ingress, egress, 1);
    dp.maps()
        .put_pod(net.pods[pod].link.host_ifindex, &record)
        .expect("pod record");
}

fn take_over(net: &PodNet, dp: &mut Datapath, standin: &StandIn) -> incumbent::TakeOver {
    let _in_node = net.node.enter().expect("enter node");
    dp.take_over_incumbent(standin.pin_root())
        .expect("take over")
}

fn connects(net: &PodNet, from: usize, to: usize) -> bool {
    let addr = SocketAddr::new(net.pods[to].ipv4, PORT);
    tcp_connect(net, from, addr, TIMEOUT).is_some()
}

/// Waits (generously) until `condition` holds.
fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pod 0 is denied ingress by us and passed by the stand-in; pod 1 is allowed by us
/// and dropped by the stand-in; pod 2 is the client, without a stand-in.
#[test]
fn takeover_removes_the_incumbents_filters_and_pins_while_ours_enforce() {
    let net = PodNet::new(3, AttachMode::Tcx);
    let mut dp = net.load();
    set_record(&net, &mut dp, 0, STATE_DEFAULT_DENY, STATE_DEFAULT_ALLOW);
    set_record(&net, &mut dp, 1, STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
    set_record(&net, &mut dp, 2, STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
    let standin = StandIn::new();
    standin.attach(&net.node, &net.pods[0].link.host_if, StandInVerdict::Pass);
    standin.attach(&net.node, &net.pods[1].link.host_if, StandInVerdict::Drop);
    standin.pin_map("global_aws_conntrack_map");
    standin.pin_map("global_policy_events");
    let _servers = [
        Servers::start(&net, 0, &[PORT], &[]),
        Servers::start(&net, 1, &[PORT], &[]),
    ];
    for pod in [0, 1] {
        assert_eq!(
            tc_filter_names(&net.node, &net.pods[pod].link.host_if),
            both_filters()
        );
    }

    // Before: ours denies what the stand-in passes; the stand-in drops what ours allows.
    assert!(!connects(&net, 2, 0), "pod 0 is denied by our program");
    assert!(!connects(&net, 2, 1), "the stand-in drops traffic to pod 1");

    // During: a prober keeps connecting to the denied pod while the take-over runs.
    let attempts = AtomicUsize::new(0);
    let passed = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let report = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if connects(&net, 2, 0) {
                    passed.fetch_add(1, Ordering::Relaxed);
                }
                attempts.fetch_add(1, Ordering::Relaxed);
            }
        });
        wait_until("the prober has run once", || {
            attempts.load(Ordering::Relaxed) >= 1
        });
        let report = take_over(&net, &mut dp, &standin);
        let after = attempts.load(Ordering::Relaxed);
        wait_until("the prober has run twice more", || {
            attempts.load(Ordering::Relaxed) >= after + 2
        });
        stop.store(true, Ordering::Relaxed);
        report
    });
    assert_eq!(
        passed.load(Ordering::Relaxed),
        0,
        "a connection to the denied pod passed during the take-over ({} attempts)",
        attempts.load(Ordering::Relaxed)
    );

    let mut expected_interfaces = vec![
        net.pods[0].link.host_if.clone(),
        net.pods[1].link.host_if.clone(),
    ];
    expected_interfaces.sort();
    assert_eq!(report.interfaces_taken_over, expected_interfaces);
    assert_eq!(report.filters_removed, 4);
    assert_eq!(report.pins_removed, 6, "four programs and two maps");
    assert!(report.failures.is_empty() && report.interfaces_left.is_empty());
    for pod in [0, 1, 2] {
        assert_eq!(
            tc_filter_names(&net.node, &net.pods[pod].link.host_if),
            Vec::<String>::new()
        );
    }
    assert!(
        !standin.pin_root().exists(),
        "the incumbent's pins are gone"
    );

    // After: ours still denies pod 0, and nothing drops what ours allows to pod 1.
    assert!(
        !connects(&net, 2, 0),
        "pod 0 is still denied by our program"
    );
    assert!(
        connects(&net, 2, 1),
        "pod 1 is reachable once the stand-in is gone"
    );
    drop(dp);
}

#[test]
fn an_interface_we_do_not_enforce_keeps_the_incumbents_filters_and_its_pins() {
    let net = PodNet::new(3, AttachMode::Tcx);
    let mut dp = net.load();
    // Pod 1 has no record of ours: our program is attached but enforces nothing there.
    set_record(&net, &mut dp, 0, STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
    set_record(&net, &mut dp, 2, STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
    let standin = StandIn::new();
    standin.attach(&net.node, &net.pods[0].link.host_if, StandInVerdict::Drop);
    standin.attach(&net.node, &net.pods[1].link.host_if, StandInVerdict::Drop);
    standin.pin_map("global_aws_conntrack_map");
    let _servers = [
        Servers::start(&net, 0, &[PORT], &[]),
        Servers::start(&net, 1, &[PORT], &[]),
    ];
    assert!(!connects(&net, 2, 0) && !connects(&net, 2, 1));

    let report = take_over(&net, &mut dp, &standin);

    assert_eq!(
        report.interfaces_taken_over,
        vec![net.pods[0].link.host_if.clone()]
    );
    assert_eq!(
        report.interfaces_left,
        vec![net.pods[1].link.host_if.clone()]
    );
    assert_eq!((report.filters_removed, report.pins_removed), (2, 0));
    assert_eq!(report.pins_kept, 5, "four programs and one map are kept");
    assert_eq!(
        tc_filter_names(&net.node, &net.pods[0].link.host_if),
        Vec::<String>::new()
    );
    assert_eq!(
        tc_filter_names(&net.node, &net.pods[1].link.host_if),
        both_filters()
    );
    assert_eq!(
        incumbent::scan_pins(standin.pin_root()).unwrap().len(),
        5,
        "the pins stay while a filter of the incumbent does"
    );
    assert!(connects(&net, 2, 0), "pod 0 is ours now");
    assert!(
        !connects(&net, 2, 1),
        "pod 1 is still enforced by the incumbent's filter"
    );

    // Once ours enforces pod 1 too, a second take-over finishes the job.
    set_record(&net, &mut dp, 1, STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
    let report = take_over(&net, &mut dp, &standin);
    assert_eq!(
        report.interfaces_taken_over,
        vec![net.pods[1].link.host_if.clone()]
    );
    assert_eq!((report.filters_removed, report.pins_removed), (2, 5));
    assert!(!standin.pin_root().exists());
    assert!(connects(&net, 2, 1), "pod 1 is ours now");
    drop(dp);
}

/// Our own clsact filters (netlink attach) are bpf filters too: they are not the
/// incumbent's, and a node without it is left exactly as it was.
#[test]
fn a_node_without_the_incumbent_is_untouched() {
    let net = PodNet::new(2, AttachMode::Netlink);
    let mut dp = net.load();
    set_record(&net, &mut dp, 0, STATE_DEFAULT_DENY, STATE_DEFAULT_ALLOW);
    set_record(&net, &mut dp, 1, STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
    let _servers = Servers::start(&net, 0, &[PORT], &[]);
    let filters_of = |pod: usize| {
        net.node
            .exec(
                "tc",
                &[
                    "filter",
                    "show",
                    "dev",
                    &net.pods[pod].link.host_if,
                    "ingress",
                ],
            )
            .unwrap()
            + &net
                .node
                .exec(
                    "tc",
                    &[
                        "filter",
                        "show",
                        "dev",
                        &net.pods[pod].link.host_if,
                        "egress",
                    ],
                )
                .unwrap()
    };
    let before: Vec<String> = (0..2).map(filters_of).collect();
    assert!(
        before
            .iter()
            .all(|f| f.contains("pod_ingress") && f.contains("pod_egress")),
        "our netlink filters are attached: {before:?}"
    );
    assert!(!connects(&net, 1, 0), "pod 0 is denied");
    // No incumbent: an absent pin root, and one that exists but is empty.
    let standin = StandIn::new();
    let absent = standin.pin_root().join("absent");

    for root in [absent.as_path(), standin.pin_root()] {
        let found = {
            let _in_node = net.node.enter().expect("enter node");
            incumbent::scan(root).expect("scan")
        };
        assert!(found.filters.is_empty(), "{:?}", found.filters);
        assert!(found.pins.is_empty());
        let report = {
            let _in_node = net.node.enter().expect("enter node");
            dp.take_over_incumbent(root).expect("take over")
        };
        assert_eq!(report, incumbent::TakeOver::default());
    }
    assert!(!absent.exists(), "no pin directory is made");
    assert!(
        standin.pin_root().join("programs").is_dir(),
        "an empty incumbent directory is not touched"
    );
    let after: Vec<String> = (0..2).map(filters_of).collect();
    assert_eq!(after, before, "our filters are untouched");
    assert!(!connects(&net, 1, 0), "pod 0 is still denied");
    drop(dp);
}
