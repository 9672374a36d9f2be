//! Every verdict path of the kernel programs, in IPv4 and IPv6, through
//! BPF_PROG_TEST_RUN on the loaded classifiers: each test checks the returned action
//! and the fields of the emitted event.

use std::net::IpAddr;

use datapath_common::*;
use integration::{
    frames::{Frame, TCP_ACK, TCP_SYN, arp_frame},
    kernel::*,
};

/// The addresses one family's tests use.
#[derive(Clone, Copy)]
struct Net {
    pod: IpAddr,
    other_pod: IpAddr,
    peer: IpAddr,
    peer_net: &'static str,
    peer_subnet: &'static str,
    family: u8,
}

const V4: Net = Net {
    pod: IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 0, 2)),
    other_pod: IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 0, 3)),
    peer: IpAddr::V4(std::net::Ipv4Addr::new(10, 9, 1, 7)),
    peer_net: "10.9.0.0/16",
    peer_subnet: "10.9.1.0/24",
    family: FAMILY_IPV4,
};

const V6: Net = Net {
    pod: IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2)),
    other_pod: IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 3)),
    peer: IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 9, 1, 0, 0, 0, 0, 7)),
    peer_net: "fd00:9::/32",
    peer_subnet: "fd00:9:1::/48",
    family: FAMILY_IPV6,
};

const SET: u32 = 7;

fn each_family(test: impl Fn(Net)) {
    for net in [V4, V6] {
        test(net);
    }
}

/// A fixture with one pod on interface "pa" (and "pb" for a second pod).
fn pod_fixture(net: Net, ingress: u8, egress: u8) -> (KernelFixture, u32) {
    let mut fx = KernelFixture::new(&["pa", "pb"]);
    let pa = fx.ifindex("pa");
    fx.set_pod(pa, &[net.pod], ingress, egress);
    fx.set_policy_set(pa, SET);
    (fx, pa)
}

/// A pod whose ingress allows TCP port 80 from the peer's network (policy 11), its
/// egress open.
fn ingress_tcp_80_allowed(net: Net) -> (KernelFixture, u32) {
    let (mut fx, pa) = pod_fixture(net, STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
    fx.put_entry(
        SET,
        DIRECTION_INGRESS,
        net.peer_net,
        &[rule(PROTO_TCP, 80, 80, 11)],
    );
    (fx, pa)
}

fn syn_in(net: Net, port: u16) -> Vec<u8> {
    Frame::tcp(net.peer, 40000, net.pod, port, TCP_SYN).build()
}

fn one_event(fx: &mut KernelFixture) -> FlowEvent {
    let events = fx.events();
    assert_eq!(events.len(), 1, "expected one event, got {events:?}");
    events[0]
}

fn assert_event(e: &FlowEvent, net: Net, direction: u8, verdict: u8, policy_id: u32, reason: u8) {
    assert_eq!(e.family, net.family);
    assert_eq!(e.direction, direction, "direction");
    assert_eq!(e.verdict, verdict, "verdict");
    assert_eq!(e.policy_id, policy_id, "policy id");
    assert_eq!(e.reason, reason, "reason");
    assert_eq!(e.count, 1);
    assert!(e.timestamp_ns > 0);
    assert!(e.packet_len > 0);
}

#[test]
fn default_allow_accepts_and_reports_default_allow() {
    each_family(|net| {
        let (mut fx, pa) = pod_fixture(net, STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn_in(net, 80)), ACT_PASS);
        let e = one_event(&mut fx);
        assert_event(
            &e,
            net,
            DIRECTION_INGRESS,
            VERDICT_ACCEPT,
            0,
            REASON_DEFAULT_ALLOW,
        );
        assert_eq!(event_addrs(&e), (net.peer, net.pod));
        assert_eq!((e.src_port, e.dst_port, e.protocol), (40000, 80, PROTO_TCP));
        assert_eq!(e.ifindex, pa);
    });
}

#[test]
fn default_deny_drops_and_reports_default_deny() {
    each_family(|net| {
        let (mut fx, pa) = pod_fixture(net, STATE_DEFAULT_DENY, STATE_DEFAULT_ALLOW);
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn_in(net, 80)), ACT_DROP);
        let e = one_event(&mut fx);
        assert_event(
            &e,
            net,
            DIRECTION_INGRESS,
            VERDICT_DENY,
            0,
            REASON_DEFAULT_DENY,
        );
    });
}

#[test]
fn allowed_cidr_and_port_accepts_with_its_policy() {
    each_family(|net| {
        let (mut fx, pa) = ingress_tcp_80_allowed(net);
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn_in(net, 80)), ACT_PASS);
        assert_event(
            &one_event(&mut fx),
            net,
            DIRECTION_INGRESS,
            VERDICT_ACCEPT,
            11,
            REASON_POLICY,
        );
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &syn_in(net, 81)),
            ACT_DROP,
            "other port"
        );
        assert_event(
            &one_event(&mut fx),
            net,
            DIRECTION_INGRESS,
            VERDICT_DENY,
            0,
            REASON_NO_RULE_MATCHED,
        );
        let outsider: IpAddr = if net.family == FAMILY_IPV4 {
            "10.10.0.1".parse().unwrap()
        } else {
            "fd00:10::1".parse().unwrap()
        };
        let frame = Frame::tcp(outsider, 40000, net.pod, 80, TCP_SYN).build();
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &frame),
            ACT_DROP,
            "peer outside the CIDR"
        );
    });
}

#[test]
fn port_range_admits_its_ends_only() {
    each_family(|net| {
        let (mut fx, pa) = pod_fixture(net, STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
        fx.put_entry(
            SET,
            DIRECTION_INGRESS,
            net.peer_net,
            &[rule(PROTO_TCP, 8000, 8010, 12)],
        );
        for (port, action) in [
            (7999, ACT_DROP),
            (8000, ACT_PASS),
            (8010, ACT_PASS),
            (8011, ACT_DROP),
        ] {
            let frame = Frame::tcp(net.peer, 40000 + port, net.pod, port, TCP_SYN).build();
            assert_eq!(fx.run(DIRECTION_INGRESS, pa, &frame), action, "port {port}");
        }
        let verdicts: Vec<u8> = fx.events().iter().map(|e| e.verdict).collect();
        assert_eq!(
            verdicts,
            [VERDICT_DENY, VERDICT_ACCEPT, VERDICT_ACCEPT, VERDICT_DENY]
        );
    });
}

#[test]
fn any_port_and_any_protocol_rules() {
    each_family(|net| {
        let (mut fx, pa) = pod_fixture(net, STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
        fx.put_entry(
            SET,
            DIRECTION_INGRESS,
            net.peer_net,
            &[rule(PROTO_UDP, 0, u16::MAX, 13)],
        );
        fx.put_entry(
            SET,
            DIRECTION_INGRESS,
            net.peer_subnet,
            &[
                rule(PROTO_UDP, 0, u16::MAX, 13),
                rule(PROTO_ANY, 0, u16::MAX, 14),
            ],
        );
        let udp = Frame::udp(net.peer, 5000, net.pod, 12345).build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &udp), ACT_PASS, "any port");
        assert_eq!(one_event(&mut fx).policy_id, 13);
        let sctp = Frame::sctp(net.peer, 5000, net.pod, 9).build();
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &sctp),
            ACT_PASS,
            "any protocol"
        );
        let e = one_event(&mut fx);
        assert_eq!((e.policy_id, e.protocol), (14, PROTO_SCTP));
        let echo = Frame::echo(net.peer, net.pod, 77, true).build();
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &echo),
            ACT_PASS,
            "ICMP through an any-protocol rule"
        );
        let other: IpAddr = if net.family == FAMILY_IPV4 {
            "10.9.2.1".parse().unwrap()
        } else {
            "fd00:9:2::1".parse().unwrap()
        };
        let echo = Frame::echo(other, net.pod, 78, true).build();
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &echo),
            ACT_DROP,
            "ICMP is not UDP"
        );
    });
}

#[test]
fn protocol_mismatch_is_denied() {
    each_family(|net| {
        let (mut fx, pa) = pod_fixture(net, STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
        fx.put_entry(
            SET,
            DIRECTION_INGRESS,
            net.peer_net,
            &[rule(PROTO_TCP, 53, 53, 15)],
        );
        let udp = Frame::udp(net.peer, 5000, net.pod, 53).build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &udp), ACT_DROP);
        assert_event(
            &one_event(&mut fx),
            net,
            DIRECTION_INGRESS,
            VERDICT_DENY,
            0,
            REASON_NO_RULE_MATCHED,
        );
    });
}

#[test]
fn except_prefix_removes_only_its_own_rule() {
    each_family(|net| {
        let (mut fx, pa) = pod_fixture(net, STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
        // Policy 21 allows the /16 except the /24; policy 22 allows the whole /16 on 443.
        // The /24 entry keeps policy 22's rule and loses policy 21's.
        fx.put_entry(
            SET,
            DIRECTION_INGRESS,
            net.peer_net,
            &[rule(PROTO_TCP, 80, 80, 21), rule(PROTO_TCP, 443, 443, 22)],
        );
        fx.put_entry(
            SET,
            DIRECTION_INGRESS,
            net.peer_subnet,
            &[rule(PROTO_TCP, 443, 443, 22)],
        );
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &syn_in(net, 80)),
            ACT_DROP,
            "excepted peer on 80"
        );
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &syn_in(net, 443)),
            ACT_PASS,
            "other policy still allows 443"
        );
        let events = fx.events();
        assert_eq!(
            events
                .iter()
                .map(|e| (e.verdict, e.policy_id))
                .collect::<Vec<_>>(),
            [(VERDICT_DENY, 0), (VERDICT_ACCEPT, 22)]
        );
    });
}

#[test]
fn family_is_part_of_the_key() {
    // An IPv6 ::/0 entry must never match an IPv4 peer, and 0.0.0.0/0 no IPv6 peer.
    let mut fx = KernelFixture::new(&["pa"]);
    let pa = fx.ifindex("pa");
    fx.set_pod(
        pa,
        &[V4.pod, V6.pod],
        STATE_POLICIES_APPLIED,
        STATE_DEFAULT_ALLOW,
    );
    fx.set_policy_set(pa, SET);
    fx.put_entry(
        SET,
        DIRECTION_INGRESS,
        "::/0",
        &[rule(PROTO_ANY, 0, u16::MAX, 31)],
    );
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn_in(V4, 80)), ACT_DROP);
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn_in(V6, 80)), ACT_PASS);
    fx.put_entry(
        SET,
        DIRECTION_INGRESS,
        "0.0.0.0/0",
        &[rule(PROTO_ANY, 0, u16::MAX, 32)],
    );
    assert_eq!(
        fx.run(
            DIRECTION_INGRESS,
            pa,
            &Frame::tcp(V4.peer, 1, V4.pod, 81, TCP_SYN).build()
        ),
        ACT_PASS
    );
    let ids: Vec<u32> = fx.events().iter().map(|e| e.policy_id).collect();
    assert_eq!(ids, [0, 31, 32]);
}

#[test]
fn conntrack_hit_needs_no_second_evaluation_or_event() {
    each_family(|net| {
        let (mut fx, pa) = ingress_tcp_80_allowed(net);
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn_in(net, 80)), ACT_PASS);
        assert_eq!(fx.events().len(), 1);
        let data = Frame::tcp(net.peer, 40000, net.pod, 80, TCP_ACK).build();
        for _ in 0..3 {
            assert_eq!(fx.run(DIRECTION_INGRESS, pa, &data), ACT_PASS);
        }
        assert!(fx.events().is_empty(), "conntrack hits emit nothing");
        let c = fx.counters();
        assert_eq!(
            c.packets[DIRECTION_INGRESS as usize][VERDICT_ACCEPT as usize],
            4
        );
        assert_eq!(fx.dp().maps().conntrack().len(), 1);
    });
}

/// The clock, read on a hit only when the tick count moved on: hits within one tick
/// leave the entry's time alone, and once the tick moves a hit brings it forward
/// (what keeps an active flow from idle expiry and dates its record's end).
#[test]
fn a_conntrack_hit_refreshes_the_flow_time_once_the_tick_moves_on() {
    each_family(|net| {
        let (mut fx, pa) = ingress_tcp_80_allowed(net);
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn_in(net, 80)), ACT_PASS);
        let entry = |fx: &mut KernelFixture| fx.dp().maps().conntrack()[0].value;
        let tracked = entry(&mut fx);
        assert!(tracked.last_seen_ns > 0);
        assert_eq!(tracked.last_seen_ns, tracked.start_ns);
        let data = Frame::tcp(net.peer, 40000, net.pod, 80, TCP_ACK).build();
        // Within the tick the first packet saw, a hit changes neither field.
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &data), ACT_PASS);
        let hit = entry(&mut fx);
        if hit.last_seen_jiffies == tracked.last_seen_jiffies {
            assert_eq!(hit.last_seen_ns, tracked.last_seen_ns);
        }
        // Hits go on until one lands in a later tick (a tick is 1-10 ms).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let refreshed = loop {
            assert_eq!(fx.run(DIRECTION_INGRESS, pa, &data), ACT_PASS);
            let e = entry(&mut fx);
            if e.last_seen_ns > tracked.last_seen_ns {
                break e;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no hit refreshed the flow's time in 10 s: {e:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        assert_ne!(refreshed.last_seen_jiffies, tracked.last_seen_jiffies);
        assert_eq!(refreshed.start_ns, tracked.start_ns, "the start stays");
        let now = datapath_common::clock::coarse_monotonic_now_ns();
        assert!(
            refreshed.last_seen_ns <= now,
            "{} is after the clock's {now}",
            refreshed.last_seen_ns
        );
    });
}

#[test]
fn reply_to_an_allowed_flow_passes_an_isolated_direction() {
    each_family(|net| {
        // Egress allowed to the peer on 53/UDP; ingress isolated with no rules.
        let (mut fx, pa) = pod_fixture(net, STATE_POLICIES_APPLIED, STATE_POLICIES_APPLIED);
        fx.put_entry(
            SET,
            DIRECTION_EGRESS,
            net.peer_net,
            &[rule(PROTO_UDP, 53, 53, 41)],
        );
        let query = Frame::udp(net.pod, 33333, net.peer, 53).build();
        assert_eq!(fx.run(DIRECTION_EGRESS, pa, &query), ACT_PASS);
        assert_event(
            &one_event(&mut fx),
            net,
            DIRECTION_EGRESS,
            VERDICT_ACCEPT,
            41,
            REASON_POLICY,
        );
        let answer = Frame::udp(net.peer, 53, net.pod, 33333).build();
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &answer),
            ACT_PASS,
            "reply rides conntrack"
        );
        assert!(fx.events().is_empty());
        let unsolicited = Frame::udp(net.peer, 53, net.pod, 33334).build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &unsolicited), ACT_DROP);
    });
}

#[test]
fn reply_on_another_interface_is_dropped() {
    each_family(|net| {
        let (mut fx, pa) = pod_fixture(net, STATE_POLICIES_APPLIED, STATE_POLICIES_APPLIED);
        let pb = fx.ifindex("pb");
        fx.set_pod(
            pb,
            &[net.pod],
            STATE_POLICIES_APPLIED,
            STATE_POLICIES_APPLIED,
        );
        fx.set_policy_set(pb, SET + 1);
        fx.put_entry(
            SET,
            DIRECTION_EGRESS,
            net.peer_net,
            &[rule(PROTO_UDP, 53, 53, 41)],
        );
        assert_eq!(
            fx.run(
                DIRECTION_EGRESS,
                pa,
                &Frame::udp(net.pod, 33333, net.peer, 53).build()
            ),
            ACT_PASS
        );
        let answer = Frame::udp(net.peer, 53, net.pod, 33333).build();
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pb, &answer),
            ACT_DROP,
            "same tuple, other interface"
        );
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &answer), ACT_PASS);
        let events = fx.events();
        assert_eq!(events.len(), 2);
        assert_eq!((events[1].verdict, events[1].ifindex), (VERDICT_DENY, pb));
    });
}

#[test]
fn generation_change_re_evaluates_established_flows() {
    each_family(|net| {
        let (mut fx, pa) = ingress_tcp_80_allowed(net);
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn_in(net, 80)), ACT_PASS);
        fx.events();
        // The policy is deleted: the new rule set has nothing for the peer.
        fx.set_policy_set(pa, SET + 1);
        fx.bump_generation(pa);
        let data = Frame::tcp(net.peer, 40000, net.pod, 80, TCP_ACK).build();
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &data),
            ACT_DROP,
            "flow allowed only by a deleted policy stops"
        );
        assert_eq!(one_event(&mut fx).verdict, VERDICT_DENY);
    });
}

#[test]
fn evicted_tcp_reply_is_rechecked_as_reverse_of_a_new_flow() {
    each_family(|net| {
        let (mut fx, pa) = pod_fixture(net, STATE_POLICIES_APPLIED, STATE_POLICIES_APPLIED);
        fx.put_entry(
            SET,
            DIRECTION_EGRESS,
            net.peer_net,
            &[rule(PROTO_TCP, 443, 443, 51)],
        );
        // No conntrack entry (evicted): a SYN-ACK from the peer's 443 is a reply.
        let syn_ack = Frame::tcp(net.peer, 443, net.pod, 50000, TCP_SYN | TCP_ACK).build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn_ack), ACT_PASS);
        let ack = Frame::tcp(net.peer, 443, net.pod, 50000, TCP_ACK).build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &ack), ACT_PASS);
        // A bare SYN from the peer is a new inbound flow and ingress has no rule.
        let syn = Frame::tcp(net.peer, 443, net.pod, 50001, TCP_SYN).build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn), ACT_DROP);
        let mid_stream_unknown = Frame::tcp(net.peer, 8443, net.pod, 50002, TCP_ACK).build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &mid_stream_unknown), ACT_DROP);
    });
}

#[test]
fn icmp_errors_quoting_a_tracked_flow_pass() {
    each_family(|net| {
        let (mut fx, pa) = pod_fixture(net, STATE_POLICIES_APPLIED, STATE_POLICIES_APPLIED);
        fx.put_entry(
            SET,
            DIRECTION_EGRESS,
            net.peer_net,
            &[rule(PROTO_TCP, 443, 443, 51)],
        );
        let syn = Frame::tcp(net.pod, 50000, net.peer, 443, TCP_SYN);
        assert_eq!(fx.run(DIRECTION_EGRESS, pa, &syn.build()), ACT_PASS);
        let router: IpAddr = if net.family == FAMILY_IPV4 {
            "10.50.0.1".parse().unwrap()
        } else {
            "fd00:50::1".parse().unwrap()
        };
        // Packet too big (v6) / fragmentation needed (v4, type 3).
        let too_big = if net.family == FAMILY_IPV4 { 3 } else { 2 };
        let error = Frame::icmp_error(router, net.pod, too_big, syn.ip_packet()).build();
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &error),
            ACT_PASS,
            "PMTU error for a tracked flow"
        );
        let untracked = Frame::tcp(net.pod, 50001, net.peer, 443, TCP_SYN);
        let error = Frame::icmp_error(router, net.pod, too_big, untracked.ip_packet()).build();
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &error),
            ACT_DROP,
            "error quoting an unknown flow"
        );
    });
}

#[test]
fn neighbour_discovery_and_non_ip_always_pass() {
    let (mut fx, pa) = pod_fixture(V6, STATE_DEFAULT_DENY, STATE_DEFAULT_DENY);
    for nd_type in [130u8, 131, 132, 133, 134, 135, 136, 137, 143] {
        let f = Frame::new(
            V6.peer,
            V6.pod,
            integration::frames::L4::Icmp {
                icmp_type: nd_type,
                code: 0,
                rest: [0; 4],
                payload: vec![0; 16],
            },
        );
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &f.build()),
            ACT_PASS,
            "ND/MLD type {nd_type}"
        );
        // Duplicate address detection and MLD reports leave the pod from `::`.
        let from_unspecified = Frame::new(
            "::".parse().unwrap(),
            "ff02::16".parse().unwrap(),
            integration::frames::L4::Icmp {
                icmp_type: nd_type,
                code: 0,
                rest: [0; 4],
                payload: vec![0; 16],
            },
        );
        assert_eq!(
            fx.run(DIRECTION_EGRESS, pa, &from_unspecified.build()),
            ACT_PASS,
            "type {nd_type} from ::"
        );
    }
    let echo_from_unspecified = Frame::echo("::".parse().unwrap(), V6.peer, 9, true).build();
    assert_eq!(
        fx.run(DIRECTION_EGRESS, pa, &echo_from_unspecified),
        ACT_DROP,
        "only link control may use ::"
    );
    assert_eq!(fx.run(DIRECTION_EGRESS, pa, &arp_frame()), ACT_PASS);
    let events = fx.events();
    assert_eq!(
        events.len(),
        1,
        "only the spoofed echo is reported: {events:?}"
    );
    assert_eq!(events[0].reason, REASON_SPOOFED_SOURCE);
}

#[test]
fn unmanaged_interface_passes_untouched() {
    let mut fx = KernelFixture::new(&["pa"]);
    let pa = fx.ifindex("pa");
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn_in(V4, 80)), ACT_PASS);
    assert!(fx.events().is_empty());
}

#[test]
fn spoofed_source_leaving_a_pod_is_dropped_and_reported() {
    each_family(|net| {
        let (mut fx, pa) = pod_fixture(net, STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
        let spoofed = Frame::udp(net.other_pod, 1000, net.peer, 53).build();
        assert_eq!(fx.run(DIRECTION_EGRESS, pa, &spoofed), ACT_DROP);
        let e = one_event(&mut fx);
        assert_event(
            &e,
            net,
            DIRECTION_EGRESS,
            VERDICT_DENY,
            0,
            REASON_SPOOFED_SOURCE,
        );
        assert_eq!(event_addrs(&e).0, net.other_pod);
        assert_eq!(fx.counters().spoofed_packets, 1);
        let honest = Frame::udp(net.pod, 1000, net.peer, 53).build();
        assert_eq!(fx.run(DIRECTION_EGRESS, pa, &honest), ACT_PASS);
    });
}

#[test]
fn vlan_tag_ipv4_options_and_ipv6_extension_headers_are_parsed() {
    let (mut fx, pa) = pod_fixture(V4, STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
    fx.put_entry(
        SET,
        DIRECTION_INGRESS,
        V4.peer_net,
        &[rule(PROTO_TCP, 80, 80, 11)],
    );
    let tagged = Frame::tcp(V4.peer, 1, V4.pod, 80, TCP_SYN)
        .with_vlan(100)
        .build();
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &tagged), ACT_PASS);
    let options = Frame::tcp(V4.peer, 2, V4.pod, 80, TCP_SYN)
        .with_ipv4_options(12)
        .build();
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &options), ACT_PASS);
    let options_wrong_port = Frame::tcp(V4.peer, 3, V4.pod, 81, TCP_SYN)
        .with_ipv4_options(40)
        .build();
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &options_wrong_port), ACT_DROP);
    let ports: Vec<u16> = fx.events().iter().map(|e| e.dst_port).collect();
    assert_eq!(ports, [80, 80, 81]);

    let (mut fx, pa) = pod_fixture(V6, STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
    fx.put_entry(
        SET,
        DIRECTION_INGRESS,
        V6.peer_net,
        &[rule(PROTO_TCP, 80, 80, 11)],
    );
    let ext = Frame::tcp(V6.peer, 1, V6.pod, 80, TCP_SYN)
        .with_ipv6_ext_headers(3)
        .build();
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &ext), ACT_PASS);
    let ext_wrong_port = Frame::tcp(V6.peer, 2, V6.pod, 81, TCP_SYN)
        .with_ipv6_ext_headers(2)
        .build();
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &ext_wrong_port), ACT_DROP);
    assert_eq!(
        fx.events().iter().map(|e| e.dst_port).collect::<Vec<_>>(),
        [80, 81]
    );
}

#[test]
fn later_fragments_follow_the_first_and_orphans_drop() {
    each_family(|net| {
        let (mut fx, pa) = pod_fixture(net, STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
        fx.put_entry(
            SET,
            DIRECTION_INGRESS,
            net.peer_net,
            &[rule(PROTO_UDP, 4789, 4789, 61)],
        );
        let first = Frame::udp(net.peer, 999, net.pod, 4789)
            .with_fragment(77, 0, true)
            .with_payload(64)
            .build();
        let later = Frame::udp(net.peer, 999, net.pod, 4789)
            .with_fragment(77, 9, false)
            .with_payload(64)
            .build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &first), ACT_PASS);
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &later),
            ACT_PASS,
            "follows its first fragment"
        );
        let denied_first = Frame::udp(net.peer, 999, net.pod, 4790)
            .with_fragment(78, 0, true)
            .build();
        let denied_later = Frame::udp(net.peer, 999, net.pod, 4790)
            .with_fragment(78, 9, false)
            .build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &denied_first), ACT_DROP);
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &denied_later), ACT_DROP);
        let orphan = Frame::udp(net.peer, 999, net.pod, 4789)
            .with_fragment(79, 9, false)
            .build();
        assert_eq!(
            fx.run(DIRECTION_INGRESS, pa, &orphan),
            ACT_DROP,
            "no first fragment seen"
        );
        let events = fx.events();
        let reasons: Vec<(u8, u8, u16)> = events
            .iter()
            .map(|e| (e.verdict, e.reason, e.dst_port))
            .collect();
        assert_eq!(
            reasons,
            [
                (VERDICT_ACCEPT, REASON_POLICY, 4789),
                (VERDICT_DENY, REASON_NO_RULE_MATCHED, 4790),
                (VERDICT_DENY, REASON_NO_RULE_MATCHED, 4790),
                (VERDICT_DENY, REASON_FRAGMENT_UNTRACKED, 0),
            ]
        );
        assert_eq!(fx.counters().fragments_untracked, 1);
    });
}

#[test]
fn gso_packets_count_as_their_wire_segments() {
    let (mut fx, pa) = pod_fixture(V4, STATE_DEFAULT_ALLOW, STATE_DEFAULT_DENY);
    // A UDP GSO aggregate of 2 segments of 1472 payload bytes each.
    let frame = Frame::udp(V4.pod, 1000, V4.peer, 80)
        .with_payload(2 * 1472)
        .build();
    assert_eq!(fx.run_segs(DIRECTION_EGRESS, pa, &frame, 2), ACT_DROP);
    let c = fx.counters();
    assert_eq!(
        c.packets[DIRECTION_EGRESS as usize][VERDICT_DENY as usize],
        2
    );
    assert_eq!(
        one_event(&mut fx).count,
        2,
        "the event carries every dropped wire packet"
    );
}

#[test]
fn event_scope_switch_filters_events_but_not_counters() {
    let (mut fx, pa) = pod_fixture(V4, STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
    fx.put_entry(
        SET,
        DIRECTION_INGRESS,
        V4.peer_net,
        &[rule(PROTO_TCP, 80, 80, 11)],
    );
    let mut settings = fx.dp().maps().settings().unwrap();
    for (scope, expected) in [
        (EVENT_SCOPE_ALL, vec![VERDICT_ACCEPT, VERDICT_DENY]),
        (EVENT_SCOPE_DENY, vec![VERDICT_DENY]),
        (EVENT_SCOPE_NONE, vec![]),
    ] {
        settings.event_scope = scope;
        fx.dp().maps().set_settings(&settings).unwrap();
        let port_base = 1000 * (scope as u16 + 1);
        assert_eq!(
            fx.run(
                DIRECTION_INGRESS,
                pa,
                &Frame::tcp(V4.peer, port_base, V4.pod, 80, TCP_SYN).build()
            ),
            ACT_PASS
        );
        assert_eq!(
            fx.run(
                DIRECTION_INGRESS,
                pa,
                &Frame::tcp(V4.peer, port_base, V4.pod, 81, TCP_SYN).build()
            ),
            ACT_DROP
        );
        let verdicts: Vec<u8> = fx.events().iter().map(|e| e.verdict).collect();
        assert_eq!(verdicts, expected, "scope {scope}");
    }
    let c = fx.counters();
    assert_eq!(c.events_filtered_scope, 3);
    assert_eq!(c.packets[0][VERDICT_ACCEPT as usize], 3);
    assert_eq!(c.packets[0][VERDICT_DENY as usize], 3);
}

#[test]
fn longest_match_is_chosen_across_the_hashes_and_the_trie() {
    // Hashed lengths (/16, /24, /32; /48, /64, /128) and trie lengths (/20, /28; /52,
    // /100) nested in one another: each peer must get its longest prefix's rules.
    struct Case {
        entries: [(&'static str, u16); 5],
        peers: [(IpAddr, u16); 5],
    }
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let cases = [
        Case {
            entries: [
                ("10.9.0.0/16", 80),
                ("10.9.0.0/20", 81),
                ("10.9.1.0/24", 82),
                ("10.9.1.0/28", 83),
                ("10.9.1.5/32", 84),
            ],
            peers: [
                (ip("10.9.200.1"), 80),
                (ip("10.9.2.1"), 81),
                (ip("10.9.1.99"), 82),
                (ip("10.9.1.6"), 83),
                (ip("10.9.1.5"), 84),
            ],
        },
        Case {
            entries: [
                ("fd00:9::/48", 80),
                ("fd00:9:0:1000::/52", 81),
                ("fd00:9:0:1001::/64", 82),
                ("fd00:9:0:1001::/100", 83),
                ("fd00:9:0:1001::5/128", 84),
            ],
            peers: [
                (ip("fd00:9:0:2::1"), 80),
                (ip("fd00:9:0:1002::1"), 81),
                (ip("fd00:9:0:1001:1::1"), 82),
                (ip("fd00:9:0:1001::6"), 83),
                (ip("fd00:9:0:1001::5"), 84),
            ],
        },
    ];
    for (case, net) in cases.iter().zip([V4, V6]) {
        let (mut fx, pa) = pod_fixture(net, STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
        for (prefix, port) in case.entries {
            fx.put_entry(
                SET,
                DIRECTION_INGRESS,
                prefix,
                &[rule(PROTO_TCP, port, port, u32::from(port))],
            );
        }
        let rec = fx.dp().maps().pod(pa).unwrap();
        let looks = rec.lookups[DIRECTION_INGRESS as usize][family_index(net.family)];
        assert_ne!(looks & LOOKUP_TRIE, 0, "some entries are in the trie");
        assert_eq!(looks.count_ones(), 4, "three hashed lengths and the trie");
        for (peer, port) in case.peers {
            for probe in [port, port + 1] {
                let frame = Frame::tcp(peer, 40000, net.pod, probe, TCP_SYN).build();
                let want = if probe == port { ACT_PASS } else { ACT_DROP };
                assert_eq!(
                    fx.run(DIRECTION_INGRESS, pa, &frame),
                    want,
                    "{peer} port {probe}"
                );
            }
            let events = fx.events();
            assert_eq!(events[0].policy_id, u32::from(port), "{peer}");
            assert_eq!(events[1].reason, REASON_NO_RULE_MATCHED, "{peer}");
        }
    }
}

#[test]
fn pods_on_large_ifindexes_get_spare_slots() {
    let mut fx = KernelFixture::new(&["pa"]);
    let mut ifindexes = Vec::new();
    for (name, index) in [("big1", DIRECT_POD_SLOTS + 7), ("big2", 1_000_000)] {
        let peer = format!("{name}p");
        fx.ns
            .ip(&[
                "link",
                "add",
                "name",
                name,
                "index",
                &index.to_string(),
                "type",
                "veth",
                "peer",
                "name",
                &peer,
            ])
            .unwrap();
        fx.ns.ip(&["link", "set", &peer, "up"]).unwrap();
        fx.ns.ip(&["link", "set", name, "up"]).unwrap();
        assert_eq!(fx.ifindex(name), index);
        ifindexes.push(index);
    }
    let (big1, big2) = (ifindexes[0], ifindexes[1]);
    fx.set_pod(big1, &[V4.pod], STATE_DEFAULT_DENY, STATE_DEFAULT_ALLOW);
    fx.set_pod(big2, &[V4.pod], STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
    let listed: Vec<u32> = fx.dp().maps().pods().iter().map(|(i, _)| *i).collect();
    assert_eq!(listed, [big1, big2]);

    assert_eq!(fx.run(DIRECTION_INGRESS, big1, &syn_in(V4, 80)), ACT_DROP);
    assert_eq!(fx.run(DIRECTION_INGRESS, big2, &syn_in(V4, 80)), ACT_PASS);
    let events = fx.events();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.ifindex, e.verdict, e.reason))
            .collect::<Vec<_>>(),
        [
            (big1, VERDICT_DENY, REASON_DEFAULT_DENY),
            (big2, VERDICT_ACCEPT, REASON_DEFAULT_ALLOW)
        ],
        "each interface was judged by its own record"
    );

    // A removed record frees its slot: the interface is ours no more.
    fx.dp().maps().remove_pod(big1).unwrap();
    assert_eq!(fx.dp().maps().pod(big1), None);
    assert_eq!(
        fx.run(
            DIRECTION_INGRESS,
            big1,
            &Frame::tcp(V4.peer, 40001, V4.pod, 80, TCP_SYN).build()
        ),
        ACT_PASS
    );
    assert!(
        fx.events().is_empty(),
        "an unmanaged interface reports nothing"
    );
    // The freed slot serves the next large interface.
    fx.set_pod(big1, &[V4.pod], STATE_DEFAULT_DENY, STATE_DEFAULT_ALLOW);
    assert_eq!(fx.run(DIRECTION_INGRESS, big1, &syn_in(V4, 81)), ACT_DROP);
}

#[test]
fn a_full_policy_hash_overflows_into_the_trie_with_the_same_verdicts() {
    let mut fx = KernelFixture::with_options(
        &["pa"],
        FixtureOptions {
            policy_hash_entries: 4,
            ..FixtureOptions::default()
        },
    );
    let pa = fx.ifindex("pa");
    fx.set_pod(pa, &[V4.pod], STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
    fx.set_policy_set(pa, SET);
    // Ten /32s (a hashed length) for four hash slots, and a /24 beneath them.
    fx.put_entry(
        SET,
        DIRECTION_INGRESS,
        "10.9.1.0/24",
        &[rule(PROTO_TCP, 90, 90, 90)],
    );
    for host in 1..=10u16 {
        fx.put_entry(
            SET,
            DIRECTION_INGRESS,
            &format!("10.9.1.{host}/32"),
            &[rule(PROTO_TCP, 100 + host, 100 + host, u32::from(host))],
        );
    }
    assert_eq!(fx.dp().maps().entries().len(), 11, "every entry is stored");
    let record = fx.dp().maps().pod(pa).unwrap();
    assert_ne!(
        record.lookups[DIRECTION_INGRESS as usize][0] & LOOKUP_TRIE,
        0,
        "the record looks in the trie too"
    );
    let probe = |fx: &mut KernelFixture, host: u8, port: u16| {
        let peer = IpAddr::from([10, 9, 1, host]);
        let frame = Frame::tcp(peer, 40000, V4.pod, port, TCP_SYN).build();
        fx.run(DIRECTION_INGRESS, pa, &frame)
    };
    for host in 1..=10u8 {
        let own = 100 + u16::from(host);
        assert_eq!(probe(&mut fx, host, own), ACT_PASS, "host {host}");
        assert_eq!(
            probe(&mut fx, host, 90),
            ACT_DROP,
            "host {host}: its /32 wins"
        );
    }
    assert_eq!(probe(&mut fx, 77, 90), ACT_PASS, "the /24 beneath");
    let events = fx.events();
    let ids: Vec<u32> = events
        .iter()
        .filter(|e| e.verdict == VERDICT_ACCEPT)
        .map(|e| e.policy_id)
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 90]);

    // Maps opened afresh (an agent restarting on its pins) still know of the overflow.
    let pins = fx.dp().pins().clone();
    let mut reopened = datapath::DatapathMaps::open_pinned(&pins).unwrap();
    let mut unflagged = record;
    unflagged.lookups = [[0; 2]; 2];
    reopened.put_pod(pa, &unflagged).unwrap();
    assert_ne!(
        reopened.pod(pa).unwrap().lookups[DIRECTION_INGRESS as usize][0] & LOOKUP_TRIE,
        0
    );
    reopened.put_pod(pa, &record).unwrap();

    // Entries leave from wherever they went.
    let maps = fx.dp().maps();
    for host in 1..=10u8 {
        let (key, len) =
            datapath_common::policy_key(SET, DIRECTION_INGRESS, IpAddr::from([10, 9, 1, host]), 32);
        maps.remove_entry(&key, len).unwrap();
    }
    assert_eq!(maps.entries().len(), 1);
    assert_eq!(
        probe(&mut fx, 3, 90),
        ACT_PASS,
        "host 3 falls back to the /24"
    );
}
