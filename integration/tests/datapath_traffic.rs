//! Real traffic: pods in network namespaces wired VPC-CNI style, the programs on
//! their host-side veths (TCX, and clsact through netlink), TCP and UDP connections
//! allowed and denied as the entries say, and events that match the connections.
//! Then a restart that re-adopts the pins while probes run, and fragmented UDP.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use datapath::{AttachMode, Datapath};
use datapath_common::*;
use integration::{kernel::event_addrs, kernel::rule, podnet::*};

const SERVER_SET: u32 = 2;
const TIMEOUT: Duration = Duration::from_millis(700);

/// Pod 0 is the client (default allow); pod 1 the server, isolated on ingress with
/// TCP 8080 and UDP 9090 allowed from pod 0 (policy ids 101 and 102).
fn program_policy(net: &PodNet, dp: &mut Datapath) {
    let client = net.record(0, STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW, 1);
    let mut server = net.record(1, STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW, SERVER_SET);
    server.note_entry(DIRECTION_INGRESS, FAMILY_IPV4, 32);
    server.note_entry(DIRECTION_INGRESS, FAMILY_IPV6, 128);
    let maps = dp.maps();
    maps.put_pod(net.pods[0].link.host_ifindex, &client)
        .unwrap();
    maps.put_pod(net.pods[1].link.host_ifindex, &server)
        .unwrap();
    let rules = [
        rule(PROTO_TCP, 8080, 8080, 101),
        rule(PROTO_UDP, 9090, 9090, 102),
    ];
    maps.put_rule_list(1, &rules).unwrap();
    for (addr, bits) in [(net.pods[0].ipv4, 32), (net.pods[0].ipv6, 128)] {
        let (key, len) = datapath_common::policy_key(SERVER_SET, DIRECTION_INGRESS, addr, bits);
        maps.put_entry(&key, len, 1).unwrap();
    }
}

fn drain(reader: &mut datapath::EventReader) -> Vec<FlowEvent> {
    let mut out = Vec::new();
    reader.drain(usize::MAX, |e| out.push(*e));
    out
}

fn find(events: &[FlowEvent], ifindex: u32, src: SocketAddr, dst: SocketAddr) -> Option<FlowEvent> {
    events
        .iter()
        .find(|e| {
            let (s, d) = event_addrs(e);
            e.ifindex == ifindex
                && s == src.ip()
                && d == dst.ip()
                && e.src_port == src.port()
                && e.dst_port == dst.port()
        })
        .copied()
}

fn traffic_is_enforced_and_reported(mode: AttachMode) {
    let net = PodNet::new(2, mode);
    let mut dp = net.load();
    program_policy(&net, &mut dp);
    let mut reader = dp.take_event_reader().unwrap();
    let _servers = Servers::start(&net, 1, &[8080, 8081], &[9090, 9091]);
    let server_if = net.pods[1].link.host_ifindex;
    let client_if = net.pods[0].link.host_ifindex;
    for server_ip in [net.pods[1].ipv4, net.pods[1].ipv6] {
        let allowed_tcp = SocketAddr::new(server_ip, 8080);
        let (local, _stream) =
            tcp_connect(&net, 0, allowed_tcp, TIMEOUT).expect("TCP 8080 is allowed");
        let denied_tcp = SocketAddr::new(server_ip, 8081);
        assert!(
            tcp_connect(&net, 0, denied_tcp, TIMEOUT).is_none(),
            "TCP 8081 is denied"
        );
        let (udp_local, ok) = udp_echo(&net, 0, SocketAddr::new(server_ip, 9090), TIMEOUT);
        assert!(ok, "UDP 9090 is allowed and its reply comes back");
        let (udp_denied_local, ok) = udp_echo(&net, 0, SocketAddr::new(server_ip, 9091), TIMEOUT);
        assert!(!ok, "UDP 9091 is denied");

        let events = drain(&mut reader);
        let e = find(&events, server_if, local, allowed_tcp)
            .expect("ACCEPT event for the TCP connection");
        assert_eq!(
            (e.verdict, e.policy_id, e.direction, e.protocol),
            (VERDICT_ACCEPT, 101, DIRECTION_INGRESS, PROTO_TCP)
        );
        let e = find(&events, client_if, local, allowed_tcp)
            .expect("egress ACCEPT on the client's interface");
        assert_eq!(
            (e.verdict, e.reason, e.direction),
            (VERDICT_ACCEPT, REASON_DEFAULT_ALLOW, DIRECTION_EGRESS)
        );
        let denied: Vec<_> = events
            .iter()
            .filter(|e| {
                e.ifindex == server_if
                    && e.verdict == VERDICT_DENY
                    && e.dst_port == 8081
                    && event_addrs(e).1 == server_ip
            })
            .collect();
        assert!(!denied.is_empty(), "DENY event for TCP 8081");
        assert!(
            denied
                .iter()
                .all(|e| e.reason == REASON_NO_RULE_MATCHED && e.src_port != 0)
        );
        let e = find(
            &events,
            server_if,
            udp_local,
            SocketAddr::new(server_ip, 9090),
        )
        .expect("UDP ACCEPT");
        assert_eq!((e.verdict, e.policy_id), (VERDICT_ACCEPT, 102));
        let e = find(
            &events,
            server_if,
            udp_denied_local,
            SocketAddr::new(server_ip, 9091),
        )
        .expect("UDP DENY");
        assert_eq!(e.verdict, VERDICT_DENY);
        // Replies rode conntrack: no TCP or UDP event leaves the server's interface
        // (the pod's own IPv6 housekeeping, e.g. MLD reports, may).
        let replies: Vec<_> = events
            .iter()
            .filter(|e| {
                e.ifindex == server_if
                    && e.direction == DIRECTION_EGRESS
                    && matches!(e.protocol, PROTO_TCP | PROTO_UDP)
            })
            .collect();
        assert!(replies.is_empty(), "{replies:?}");
    }
}

#[test]
fn tcx_attached_programs_enforce_real_tcp_and_udp() {
    traffic_is_enforced_and_reported(AttachMode::Tcx);
}

#[test]
fn netlink_attached_programs_enforce_real_tcp_and_udp() {
    traffic_is_enforced_and_reported(AttachMode::Netlink);
}

#[test]
fn oversized_udp_datagrams_are_fragmented_and_follow_their_first_fragment() {
    let net = PodNet::new(2, AttachMode::Tcx);
    let mut dp = net.load();
    program_policy(&net, &mut dp);
    let _servers = Servers::start(&net, 1, &[], &[9090, 9091]);
    for server_ip in [net.pods[1].ipv4, net.pods[1].ipv6] {
        let (_, ok) = udp_echo_len(&net, 0, SocketAddr::new(server_ip, 9090), TIMEOUT, 4000);

        assert!(
            ok,
            "a 4000-byte datagram to an allowed port arrives whole ({server_ip})"
        );
        let (_, ok) = udp_echo_len(&net, 0, SocketAddr::new(server_ip, 9091), TIMEOUT, 4000);
        assert!(
            !ok,
            "a 4000-byte datagram to a denied port does not ({server_ip})"
        );
    }
    assert_eq!(dp.maps().counters().unwrap().fragments_untracked, 0);
}

#[test]
fn restart_re_adopts_pins_without_an_enforcement_gap() {
    let net = PodNet::new(2, AttachMode::Tcx);
    let mut dp = net.load();
    program_policy(&net, &mut dp);
    let _servers = Servers::start(&net, 1, &[8080, 8081], &[9090]);
    let server_ip: IpAddr = net.pods[1].ipv4;
    let (_, mut stream) = (0..3)
        .find_map(|_| tcp_connect(&net, 0, SocketAddr::new(server_ip, 8080), TIMEOUT))
        .expect("allowed");

    let stop = Arc::new(AtomicBool::new(false));
    let allowed_failures = Arc::new(AtomicU64::new(0));
    let denied_successes = Arc::new(AtomicU64::new(0));
    let probes = Arc::new(AtomicU64::new(0));
    let net = Arc::new(net);
    let prober = {
        let (net, stop, af, ds, probes) = (
            net.clone(),
            stop.clone(),
            allowed_failures.clone(),
            denied_successes.clone(),
            probes.clone(),
        );
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) && rounds < 400 {
                if !udp_echo(&net, 0, SocketAddr::new(server_ip, 9090), TIMEOUT).1 {
                    af.fetch_add(1, Ordering::Relaxed);
                }
                if tcp_connect(
                    &net,
                    0,
                    SocketAddr::new(server_ip, 8081),
                    Duration::from_millis(100),
                )
                .is_some()
                {
                    ds.fetch_add(1, Ordering::Relaxed);
                }
                probes.fetch_add(1, Ordering::Relaxed);
                rounds += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        drop(dp);
        std::thread::sleep(Duration::from_millis(100));
        dp = net.load();
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    use std::io::{Read, Write};
    stream.write_all(b"still here\n").unwrap();
    let mut buf = [0u8; 11];
    stream
        .read_exact(&mut buf)
        .expect("the established connection survived three restarts");
    assert_eq!(&buf, b"still here\n");
    assert!(
        probes.load(Ordering::Relaxed) > 5,
        "probes ran during the restarts"
    );
    assert_eq!(
        allowed_failures.load(Ordering::Relaxed),
        0,
        "no allowed probe failed"
    );
    assert_eq!(
        denied_successes.load(Ordering::Relaxed),
        0,
        "no denied probe got through"
    );
    assert_eq!(
        dp.attached_ifindexes().len(),
        2,
        "both interfaces re-adopted"
    );
}

#[test]
fn pins_of_vanished_interfaces_are_removed_on_restart() {
    let net = PodNet::new(2, AttachMode::Tcx);
    let dp = net.load();
    let gone = net.pods[1].link.host_ifindex;
    let pins = dp.pins().clone();
    drop(dp);
    let link_pins = |ifindex: u32| {
        [program_names::POD_INGRESS, program_names::POD_EGRESS]
            .iter()
            .filter(|p| pins.link_path(ifindex, p).exists())
            .count()
    };
    assert_eq!(
        link_pins(gone),
        2,
        "links stay pinned while the agent is away"
    );
    net.node
        .ip(&["link", "del", &net.pods[1].link.host_if])
        .unwrap();
    let dp = net.load_adopting_only();
    assert_eq!(link_pins(gone), 0, "the vanished interface's pins are gone");
    assert_eq!(link_pins(net.pods[0].link.host_ifindex), 2);
    assert_eq!(dp.attached_ifindexes(), vec![net.pods[0].link.host_ifindex]);
}

/// Programs attached to a TCX hook of `interface` in the node namespace.
fn tcx_programs(net: &PodNet, interface: &str, hook: aya::programs::TcAttachType) -> usize {
    let _in_node = net.node.enter().expect("enter node");
    aya::programs::SchedClassifier::query_tcx(interface, hook)
        .expect("query tcx")
        .1
        .len()
}

#[test]
fn an_upgrade_keeps_the_older_programs_enforcing_until_they_are_retired() {
    use aya::programs::TcAttachType;
    let net = PodNet::new(2, AttachMode::Tcx);
    let mut dp = net.load();
    program_policy(&net, &mut dp);
    let _servers = Servers::start(&net, 1, &[8080, 8081], &[]);
    let allowed = SocketAddr::new(net.pods[1].ipv4, 8080);
    let denied = SocketAddr::new(net.pods[1].ipv4, 8081);
    let server_if = net.pods[1].link.host_if.clone();
    let enforced = |what: &str| {
        assert!(
            tcp_connect(&net, 0, allowed, TIMEOUT).is_some(),
            "{what}: TCP 8080 allowed"
        );
        assert!(
            tcp_connect(&net, 0, denied, TIMEOUT).is_none(),
            "{what}: TCP 8081 denied"
        );
    };
    enforced("before the upgrade");
    drop(dp);
    // The pins become an older agent's: its version directory under another number.
    let layout = datapath::PinLayout::new(&net.pins);
    let older = net.pins.join(format!("v{}", ABI_VERSION - 1));
    std::fs::rename(layout.version_dir(), &older).expect("rename the version directory");

    // The new agent starts with empty maps and attaches beside the older links.
    let mut dp = net.load();
    assert_eq!(tcx_programs(&net, &server_if, TcAttachType::Egress), 2);
    enforced("new programs attached, their maps still empty");
    program_policy(&net, &mut dp);
    enforced("both versions enforcing");
    assert_eq!(
        dp.retire_other_versions().unwrap(),
        4,
        "two links on each of two pods"
    );
    assert!(!older.exists(), "the older version's pins are gone");
    assert_eq!(tcx_programs(&net, &server_if, TcAttachType::Egress), 1);
    assert_eq!(tcx_programs(&net, &server_if, TcAttachType::Ingress), 1);
    enforced("after retiring the older version");
}
