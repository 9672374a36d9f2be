//! Cluster policy tiers in the kernel programs, IPv4 and IPv6, through
//! BPF_PROG_TEST_RUN: rule lists as `policy` folds the tiers into them (Admin rules
//! first, an Admin Pass expanded into the NetworkPolicy rules it hands over to, then
//! a deny of policy id 0) decide by their first matching rule's action, and events
//! name the deciding rule.

use std::net::IpAddr;

use datapath_common::*;
use integration::{
    frames::{Frame, TCP_ACK, TCP_SYN},
    kernel::*,
};

const SET: u32 = 7;
const ADMIN_DENY_WEB: u32 = 0x8000_0000;
const ADMIN_DENY_ALL: u32 = 0x8000_0002;
const BASELINE_DENY_WEB: u32 = 0x8000_0003;
const NP_ALLOW: u32 = 11;

struct Net {
    pod: IpAddr,
    peer: IpAddr,
    peer_net: &'static str,
}

fn each_family(test: impl Fn(&Net)) {
    let v4 = Net {
        pod: "10.1.0.2".parse().unwrap(),
        peer: "10.9.1.7".parse().unwrap(),
        peer_net: "10.9.0.0/16",
    };
    let v6 = Net {
        pod: "fd00:1::2".parse().unwrap(),
        peer: "fd00:9:1::7".parse().unwrap(),
        peer_net: "fd00:9::/32",
    };
    for net in [v4, v6] {
        test(&net);
    }
}

fn with_action(action: u8, rule: Rule) -> Rule {
    Rule { action, ..rule }
}

fn fixture(net: &Net, rules: &[Rule]) -> (KernelFixture, u32) {
    let mut fx = KernelFixture::new(&["pa"]);
    let pa = fx.ifindex("pa");
    fx.set_pod(pa, &[net.pod], STATE_POLICIES_APPLIED, STATE_DEFAULT_ALLOW);
    fx.set_policy_set(pa, SET);
    fx.put_entry(SET, DIRECTION_INGRESS, net.peer_net, rules);
    (fx, pa)
}

/// Runs one new flow into the pod; returns the action and the event's
/// (verdict, policy id, reason).
fn judge(fx: &mut KernelFixture, pa: u32, frame: &[u8]) -> (i32, (u8, u32, u8)) {
    let action = fx.run(DIRECTION_INGRESS, pa, frame);
    let events = fx.events();
    assert_eq!(events.len(), 1, "one event per new flow: {events:?}");
    let e = events[0];
    (action, (e.verdict, e.policy_id, e.reason))
}

#[test]
fn admin_deny_drops_before_a_network_policy_allow_and_a_pass_reaches_its_rules() {
    each_family(|net| {
        // Admin: deny TCP 80, pass UDP, deny everything; NetworkPolicy: UDP 53 and
        // TCP 80-81. The Pass becomes the NetworkPolicy rules within UDP, then a deny.
        let (mut fx, pa) = fixture(
            net,
            &[
                with_action(RULE_DENY, rule(PROTO_TCP, 80, 80, ADMIN_DENY_WEB)),
                rule(PROTO_UDP, 53, 53, NP_ALLOW),
                with_action(RULE_DENY, rule(PROTO_UDP, 0, u16::MAX, 0)),
                with_action(RULE_DENY, rule(PROTO_ANY, 0, u16::MAX, ADMIN_DENY_ALL)),
                rule(PROTO_TCP, 80, 81, NP_ALLOW),
            ],
        );
        let web = Frame::tcp(net.peer, 40000, net.pod, 80, TCP_SYN).build();
        assert_eq!(
            judge(&mut fx, pa, &web),
            (ACT_DROP, (VERDICT_DENY, ADMIN_DENY_WEB, REASON_POLICY)),
            "Admin Deny over the NetworkPolicy allow"
        );
        let other = Frame::tcp(net.peer, 40001, net.pod, 81, TCP_SYN).build();
        assert_eq!(
            judge(&mut fx, pa, &other),
            (ACT_DROP, (VERDICT_DENY, ADMIN_DENY_ALL, REASON_POLICY)),
        );
        let dns = Frame::udp(net.peer, 40002, net.pod, 53).build();
        assert_eq!(
            judge(&mut fx, pa, &dns),
            (ACT_PASS, (VERDICT_ACCEPT, NP_ALLOW, REASON_POLICY)),
            "Pass reaches the NetworkPolicy rule past the Admin deny-all"
        );
        let udp = Frame::udp(net.peer, 40003, net.pod, 54).build();
        assert_eq!(
            judge(&mut fx, pa, &udp),
            (ACT_DROP, (VERDICT_DENY, 0, REASON_NO_RULE_MATCHED)),
            "Pass into a NetworkPolicy that does not admit it"
        );
        let sctp = Frame::sctp(net.peer, 40004, net.pod, 53).build();
        assert_eq!(
            judge(&mut fx, pa, &sctp),
            (ACT_DROP, (VERDICT_DENY, ADMIN_DENY_ALL, REASON_POLICY)),
        );
    });
}

#[test]
fn baseline_rules_and_the_folded_default_allow() {
    each_family(|net| {
        let (mut fx, pa) = fixture(
            net,
            &[
                with_action(RULE_DENY, rule(PROTO_TCP, 80, 80, BASELINE_DENY_WEB)),
                rule(PROTO_ANY, 0, u16::MAX, 0),
            ],
        );
        let web = Frame::tcp(net.peer, 40000, net.pod, 80, TCP_SYN).build();
        assert_eq!(
            judge(&mut fx, pa, &web),
            (ACT_DROP, (VERDICT_DENY, BASELINE_DENY_WEB, REASON_POLICY)),
        );
        let other = Frame::udp(net.peer, 40001, net.pod, 80).build();
        assert_eq!(
            judge(&mut fx, pa, &other),
            (ACT_PASS, (VERDICT_ACCEPT, 0, REASON_DEFAULT_ALLOW)),
        );
    });
}

#[test]
fn an_admin_deny_stops_an_established_flow_after_the_generation_changes() {
    each_family(|net| {
        let (mut fx, pa) = fixture(net, &[rule(PROTO_TCP, 80, 80, NP_ALLOW)]);
        let syn = Frame::tcp(net.peer, 40000, net.pod, 80, TCP_SYN).build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn), ACT_PASS);
        fx.events();
        fx.put_entry(
            SET + 1,
            DIRECTION_INGRESS,
            net.peer_net,
            &[
                with_action(RULE_DENY, rule(PROTO_ANY, 0, u16::MAX, ADMIN_DENY_ALL)),
                rule(PROTO_TCP, 80, 80, NP_ALLOW),
            ],
        );
        fx.set_policy_set(pa, SET + 1);
        fx.bump_generation(pa);
        let data = Frame::tcp(net.peer, 40000, net.pod, 80, TCP_ACK).build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &data), ACT_DROP);
        let events = fx.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            (events[0].verdict, events[0].policy_id),
            (VERDICT_DENY, ADMIN_DENY_ALL)
        );
    });
}
