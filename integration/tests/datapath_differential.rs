//! Differential test: thousands of random packets against random rule sets. The
//! kernel's verdict (longest-prefix match, then the rule list) must equal a host
//! reference that evaluates every rule directly: no LPM and no code shared with the
//! kernel's lookup. Rule sets overlap and carry `except` prefixes on purpose.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use datapath_common::*;
use integration::{frames::Frame, kernel::*};
use rand::{Rng, SeedableRng, rngs::StdRng};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Prefix {
    addr: u128,
    len: u8,
    v4: bool,
}

impl Prefix {
    fn width(&self) -> u8 {
        if self.v4 { 32 } else { 128 }
    }

    fn contains_addr(&self, addr: u128) -> bool {
        if self.len == 0 {
            return true;
        }
        let shift = self.width() - self.len;
        (addr >> shift) == (self.addr >> shift)
    }

    fn contains(&self, other: &Prefix) -> bool {
        self.v4 == other.v4 && self.len <= other.len && self.contains_addr(other.addr)
    }

    fn ip(&self) -> IpAddr {
        if self.v4 {
            IpAddr::V4(Ipv4Addr::from(self.addr as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        }
    }

    fn text(&self) -> String {
        format!("{}/{}", self.ip(), self.len)
    }
}

#[derive(Clone, Debug)]
struct AllowRule {
    cidr: Prefix,
    excepts: Vec<Prefix>,
    protocol: u8,
    ports: (u16, u16),
    policy_id: u32,
}

fn mask(addr: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let shift = width - len;
    (addr >> shift) << shift
}

fn random_prefix(rng: &mut StdRng, v4: bool, bases: &[u128]) -> Prefix {
    let width = if v4 { 32 } else { 128 };
    let base = bases[rng.gen_range(0..bases.len())];
    // Often one of the lengths the datapath hashes, so rule sets mix the hashes and
    // the trie and the longest match must be chosen across both.
    let hashed = HASHED_LENGTHS[if v4 { 0 } else { 1 }];
    let len = if rng.gen_bool(0.4) {
        hashed[rng.gen_range(0..hashed.len() - 1)]
    } else if v4 {
        rng.gen_range(8..=32)
    } else {
        rng.gen_range(16..=128)
    };
    let jitter: u128 = if v4 {
        rng.gen_range(0..=0xffff)
    } else {
        rng.gen_range(0..=0xffff_ffff)
    };
    Prefix {
        addr: mask(base ^ jitter, len, width),
        len,
        v4,
    }
}

fn random_rules(rng: &mut StdRng, v4: bool) -> Vec<AllowRule> {
    let bases: Vec<u128> = if v4 {
        vec![0x0a09_0000, 0x0a09_0100, 0xc0a8_0000]
    } else {
        vec![
            0xfd00_0009_0000_0000_0000_0000_0000_0000,
            0xfd00_0009_0001_0000_0000_0000_0000_0000,
        ]
    };
    let count = rng.gen_range(1..=40);
    (0..count)
        .map(|i| {
            let cidr = if rng.gen_bool(0.05) {
                Prefix {
                    addr: 0,
                    len: 0,
                    v4,
                }
            } else {
                random_prefix(rng, v4, &bases)
            };
            let excepts = (0..rng.gen_range(0..=2))
                .filter_map(|_| {
                    let width = cidr.width();
                    if cidr.len >= width {
                        return None;
                    }
                    let len = rng.gen_range(cidr.len + 1..=width);
                    let noise: u128 =
                        rng.r#gen::<u128>() & if v4 { 0xffff_ffff } else { u128::MAX };
                    Some(Prefix {
                        addr: mask(
                            cidr.addr
                                | (noise
                                    & !mask(u128::MAX, cidr.len, width)
                                    & if v4 { 0xffff_ffff } else { u128::MAX }),
                            len,
                            width,
                        ),
                        len,
                        v4,
                    })
                })
                .collect();
            let protocol = [PROTO_ANY, PROTO_TCP, PROTO_UDP, PROTO_SCTP][rng.gen_range(0..4)];
            let ports = if protocol == PROTO_ANY || rng.gen_bool(0.2) {
                (0, u16::MAX)
            } else {
                let lo = rng.gen_range(1..100);
                (lo, lo + rng.gen_range(0..5))
            };
            AllowRule {
                cidr,
                excepts,
                protocol,
                ports,
                policy_id: i + 1,
            }
        })
        .collect()
}

/// The LPM entries the rule set compiles to: for every prefix, the rules whose CIDR
/// covers it and none of whose excepts does.
fn compile(rules: &[AllowRule]) -> Vec<(Prefix, Vec<Rule>)> {
    let mut prefixes: Vec<Prefix> = rules
        .iter()
        .flat_map(|r| std::iter::once(r.cidr).chain(r.excepts.iter().copied()))
        .collect();
    prefixes.sort_by_key(|p| (p.len, p.addr));
    prefixes.dedup();
    prefixes
        .into_iter()
        .map(|p| {
            let list = rules
                .iter()
                .filter(|r| r.cidr.contains(&p) && !r.excepts.iter().any(|e| e.contains(&p)))
                .map(|r| rule(r.protocol, r.ports.0, r.ports.1, r.policy_id))
                .collect();
            (p, list)
        })
        .collect()
}

/// Straight from the rules: which policies admit this packet?
fn reference(rules: &[AllowRule], peer: u128, protocol: u8, port: u16) -> Vec<u32> {
    rules
        .iter()
        .filter(|r| {
            r.cidr.contains_addr(peer)
                && !r.excepts.iter().any(|e| e.contains_addr(peer))
                && (r.protocol == PROTO_ANY || r.protocol == protocol)
                && (r.protocol == PROTO_ANY || (r.ports.0 <= port && port <= r.ports.1))
        })
        .map(|r| r.policy_id)
        .collect()
}

#[test]
fn kernel_verdicts_equal_a_direct_evaluation_of_the_rules() {
    differential(FixtureOptions::default());
}

#[test]
fn kernel_verdicts_equal_a_direct_evaluation_when_the_hashes_overflow() {
    // Hashes of 8 entries: most entries of hashed lengths overflow into the tries.
    differential(FixtureOptions {
        policy_hash_entries: 8,
        ..FixtureOptions::default()
    });
}

fn differential(options: FixtureOptions) {
    let seed: u64 = std::env::var("DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026);
    println!("differential seed {seed} (set DIFF_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fx = KernelFixture::with_options(&["pa"], options);
    let pa = fx.ifindex("pa");
    let pod_v4: IpAddr = "10.1.0.2".parse().unwrap();
    let pod_v6: IpAddr = "fd00:1::2".parse().unwrap();
    fx.set_pod(
        pa,
        &[pod_v4, pod_v6],
        STATE_POLICIES_APPLIED,
        STATE_POLICIES_APPLIED,
    );
    let mut checked = 0;
    let mut accepted = 0;
    for round in 0..8u32 {
        let set = 100 + round;
        fx.set_policy_set(pa, set);
        fx.bump_generation(pa);
        for direction in [DIRECTION_INGRESS, DIRECTION_EGRESS] {
            for v4 in [true, false] {
                let rules = random_rules(&mut rng, v4);
                for (prefix, list) in compile(&rules) {
                    fx.put_entry(set, direction, &prefix.text(), &list);
                }
                for i in 0..300u32 {
                    let target = &rules[rng.gen_range(0..rules.len())].cidr;
                    let peer_bits: u128 = if rng.gen_bool(0.8) {
                        let width = target.width();
                        let host = rng.r#gen::<u128>()
                            & !mask(u128::MAX, target.len, width)
                            & if v4 { 0xffff_ffff } else { u128::MAX };
                        target.addr | host
                    } else if v4 {
                        rng.r#gen::<u32>() as u128
                    } else {
                        rng.r#gen::<u128>()
                    };
                    let peer = Prefix {
                        addr: peer_bits,
                        len: if v4 { 32 } else { 128 },
                        v4,
                    }
                    .ip();
                    let pod = if v4 { pod_v4 } else { pod_v6 };
                    let protocol =
                        [PROTO_TCP, PROTO_UDP, PROTO_SCTP, PROTO_ICMP][rng.gen_range(0..4)];
                    let port = rng.gen_range(1..110u16);
                    // A fresh peer-side port per packet keeps every packet a new flow.
                    let peer_port = 1024 + (round * 10_000 + i) as u16;
                    let (src, sport, dst, dport) = if direction == DIRECTION_INGRESS {
                        (peer, peer_port, pod, port)
                    } else {
                        (pod, peer_port, peer, port)
                    };
                    let frame = match protocol {
                        PROTO_TCP => Frame::tcp(src, sport, dst, dport, 0x02),
                        PROTO_UDP => Frame::udp(src, sport, dst, dport),
                        PROTO_SCTP => Frame::sctp(src, sport, dst, dport),
                        _ => Frame::echo(src, dst, peer_port, true),
                    };
                    let admitted = reference(
                        &rules,
                        peer_bits,
                        if protocol == PROTO_ICMP && !v4 {
                            PROTO_ICMPV6
                        } else {
                            protocol
                        },
                        port,
                    );
                    let action = fx.run(direction, pa, &frame.build());
                    let expected = if admitted.is_empty() {
                        ACT_DROP
                    } else {
                        ACT_PASS
                    };
                    assert_eq!(
                        action, expected,
                        "seed {seed} round {round} dir {direction} packet {i}: {src}:{sport} -> {dst}:{dport} proto {protocol}; admitting {admitted:?}; rules {rules:#?}"
                    );
                    let events = fx.events();
                    assert_eq!(events.len(), 1);
                    if action == ACT_PASS {
                        assert!(
                            admitted.contains(&events[0].policy_id),
                            "attributed to a rule that admits it"
                        );
                        accepted += 1;
                    }
                    checked += 1;
                }
            }
        }
    }
    println!("differential: {checked} packets checked, {accepted} accepted");
    assert!(
        accepted > checked / 10 && accepted < checked * 9 / 10,
        "both verdicts well represented: {accepted}/{checked}"
    );
}
