//! Turns overlapping contributions (a prefix, the sub-prefixes it excepts, and its
//! rules) into what a longest-prefix-match lookup needs: one rule list per prefix
//! holding the union of every contribution that covers that whole prefix.
//!
//! Why it is exact: for an address `a`, the lookup returns the longest emitted prefix
//! `X` holding `a`. A contribution `(C, E, r)` covers `a` iff `a ∈ C` and `a ∉ e` for
//! every `e ∈ E`. Since `C` and every `e` are themselves emitted, `X ⊆ C` iff `a ∈ C`,
//! and `X ⊆ e` iff `a ∈ e`; so `r` is in `X`'s list iff `(C, E, r)` covers `a`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use datapath_common::{PROTO_ANY, Rule};
use ipnet::IpNet;

/// Contributions of one pod and direction, before the union.
#[derive(Debug, Default)]
pub(crate) struct PrefixUnion {
    /// Rules by the prefix they were given for, each with its except group (if any).
    by_prefix: HashMap<IpNet, Vec<(Option<usize>, Rule)>>,
    except_groups: Vec<ExceptGroup>,
    except_prefixes: BTreeSet<IpNet>,
}

/// One `except` list, asked "does any of you contain this prefix?" in a few hash
/// probes (one per prefix length present) rather than a scan, so a list of 200,000
/// entries stays linear to build and to query.
#[derive(Debug, Default)]
struct ExceptGroup {
    nets: HashSet<IpNet>,
    lengths_v4: BTreeSet<u8>,
    lengths_v6: BTreeSet<u8>,
}

impl ExceptGroup {
    fn new(except: &[IpNet]) -> Self {
        let mut group = Self::default();
        for net in except {
            let net = net.trunc();
            match net {
                IpNet::V4(_) => group.lengths_v4.insert(net.prefix_len()),
                IpNet::V6(_) => group.lengths_v6.insert(net.prefix_len()),
            };
            group.nets.insert(net);
        }
        group
    }

    /// Is `x` inside one of the group's prefixes?
    fn covers(&self, x: &IpNet) -> bool {
        let lengths = match x {
            IpNet::V4(_) => &self.lengths_v4,
            IpNet::V6(_) => &self.lengths_v6,
        };
        lengths.range(..=x.prefix_len()).any(|&len| {
            IpNet::new(x.addr(), len).is_ok_and(|candidate| self.nets.contains(&candidate.trunc()))
        })
    }
}

impl PrefixUnion {
    pub(crate) fn add(&mut self, net: IpNet, rules: &[Rule]) {
        self.by_prefix
            .entry(net.trunc())
            .or_default()
            .extend(rules.iter().map(|r| (None, *r)));
    }

    pub(crate) fn add_with_except(&mut self, net: IpNet, except: &[IpNet], rules: &[Rule]) {
        if except.is_empty() {
            return self.add(net, rules);
        }
        let group = self.except_groups.len();
        self.except_groups.push(ExceptGroup::new(except));
        self.except_prefixes.extend(except.iter().map(IpNet::trunc));
        self.by_prefix
            .entry(net.trunc())
            .or_default()
            .extend(rules.iter().map(|r| (Some(group), *r)));
    }

    /// Every emitted prefix with its canonical rule list (possibly empty, for an
    /// except that nothing else covers: the entry is what makes it deny).
    pub(crate) fn build(self, order: &RuleOrder) -> BTreeMap<IpNet, Vec<Rule>> {
        let mut lengths_v4 = BTreeSet::new();
        let mut lengths_v6 = BTreeSet::new();
        for net in self.by_prefix.keys() {
            match net {
                IpNet::V4(_) => lengths_v4.insert(net.prefix_len()),
                IpNet::V6(_) => lengths_v6.insert(net.prefix_len()),
            };
        }
        let prefixes: BTreeSet<IpNet> = self
            .by_prefix
            .keys()
            .copied()
            .chain(self.except_prefixes.iter().copied())
            .collect();
        let mut out = BTreeMap::new();
        for x in prefixes {
            let lengths = if matches!(x, IpNet::V4(_)) {
                &lengths_v4
            } else {
                &lengths_v6
            };
            let mut rules = Vec::new();
            for &len in lengths.range(..=x.prefix_len()) {
                let Ok(ancestor) = IpNet::new(x.addr(), len) else {
                    continue;
                };
                let Some(contributions) = self.by_prefix.get(&ancestor.trunc()) else {
                    continue;
                };
                for (group, rule) in contributions {
                    let excepted = group.is_some_and(|g| self.except_groups[g].covers(&x));
                    if !excepted {
                        rules.push(*rule);
                    }
                }
            }
            out.insert(x, canonical(rules, order));
        }
        out
    }
}

/// The order of rules in a list: by the policy rule they come from (node-local first,
/// then namespace, name, direction, rule index), so the deciding rule of a verdict
/// never depends on the order ids were handed out in.
#[derive(Debug, Default)]
pub(crate) struct RuleOrder {
    rank: HashMap<u32, usize>,
}

impl RuleOrder {
    /// `ids` in the order their rules should be tried.
    pub(crate) fn new(ids: impl IntoIterator<Item = u32>) -> Self {
        Self {
            rank: ids.into_iter().enumerate().map(|(i, id)| (id, i)).collect(),
        }
    }

    fn rank(&self, id: u32) -> (usize, u32) {
        (self.rank.get(&id).copied().unwrap_or(usize::MAX), id)
    }
}

/// Sorted by `order` then protocol and ports, without duplicates and without rules an
/// earlier rule fully shadows (the lookup takes the first admitting rule, so a
/// shadowed rule never decides).
pub(crate) fn canonical(mut rules: Vec<Rule>, order: &RuleOrder) -> Vec<Rule> {
    rules.sort_unstable_by_key(|r| (order.rank(r.policy_id), r.protocol, r.port_min, r.port_max));
    rules.dedup();
    let mut out: Vec<Rule> = Vec::with_capacity(rules.len());
    for r in rules {
        let shadowed = out.iter().any(|e| {
            (e.protocol == PROTO_ANY || e.protocol == r.protocol)
                && e.port_min <= r.port_min
                && r.port_max <= e.port_max
        });
        if !shadowed {
            out.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath_common::{PROTO_TCP, PROTO_UDP};

    fn rule(protocol: u8, lo: u16, hi: u16, id: u32) -> Rule {
        Rule {
            protocol,
            port_min: lo,
            port_max: hi,
            policy_id: id,
            ..Rule::default()
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn except_groups_answer_as_a_scan_would() {
        let except: Vec<IpNet> = [
            "10.0.0.0/24",
            "10.0.1.7/32",
            "10.2.0.0/16",
            "fd00::/64",
            "fd00:1::5/128",
        ]
        .iter()
        .map(|s| net(s))
        .collect();
        let group = ExceptGroup::new(&except);
        for probe in [
            "10.0.0.0/24",
            "10.0.0.128/25",
            "10.0.0.9/32",
            "10.0.1.7/32",
            "10.0.1.8/32",
            "10.0.0.0/23",
            "10.2.3.0/24",
            "10.3.0.0/16",
            "10.0.0.0/8",
            "fd00::1/128",
            "fd00:0:0:1::/64",
            "fd00:1::5/128",
            "fd00:1::/64",
        ] {
            let x = net(probe);
            let scan = except.iter().any(|e| e.contains(&x));
            assert_eq!(group.covers(&x), scan, "{probe}");
        }
    }

    #[test]
    fn a_large_except_list_keeps_every_rule_right() {
        // 20,000 /32 holes in a /16: each hole denies, every other address allows.
        let except: Vec<IpNet> = (0..20_000u32)
            .map(|i| IpNet::new(std::net::Ipv4Addr::from(0x0a00_0000 + i * 3).into(), 32).unwrap())
            .collect();
        let mut u = PrefixUnion::default();
        u.add_with_except(net("10.0.0.0/16"), &except, &[rule(PROTO_TCP, 80, 80, 2)]);
        let out = u.build(&RuleOrder::default());
        assert_eq!(out.len(), 20_001);
        assert_eq!(out[&net("10.0.0.0/16")], vec![rule(PROTO_TCP, 80, 80, 2)]);
        assert!(
            except.iter().all(|e| out[e].is_empty()),
            "every hole denies"
        );
    }

    #[test]
    fn longer_prefix_carries_rules_of_covering_prefixes() {
        let mut u = PrefixUnion::default();
        u.add(net("10.0.0.0/8"), &[rule(PROTO_TCP, 80, 80, 2)]);
        u.add(net("10.1.0.5/32"), &[rule(PROTO_UDP, 53, 53, 3)]);
        let out = u.build(&RuleOrder::default());
        assert_eq!(out[&net("10.0.0.0/8")], vec![rule(PROTO_TCP, 80, 80, 2)]);
        assert_eq!(
            out[&net("10.1.0.5/32")],
            vec![rule(PROTO_TCP, 80, 80, 2), rule(PROTO_UDP, 53, 53, 3)]
        );
    }

    #[test]
    fn except_removes_only_its_own_rule() {
        let mut u = PrefixUnion::default();
        u.add_with_except(
            net("10.0.0.0/8"),
            &[net("10.1.0.0/16")],
            &[rule(PROTO_TCP, 80, 80, 2)],
        );
        u.add(net("10.0.0.0/8"), &[rule(PROTO_TCP, 81, 81, 3)]);
        let out = u.build(&RuleOrder::default());
        assert_eq!(out[&net("10.1.0.0/16")], vec![rule(PROTO_TCP, 81, 81, 3)]);
        assert_eq!(out[&net("10.0.0.0/8")].len(), 2);
    }

    #[test]
    fn an_except_nothing_else_covers_gets_an_empty_list() {
        let mut u = PrefixUnion::default();
        u.add_with_except(
            net("10.0.0.0/8"),
            &[net("10.1.0.0/16")],
            &[rule(PROTO_TCP, 80, 80, 2)],
        );
        assert_eq!(
            u.build(&RuleOrder::default())[&net("10.1.0.0/16")],
            Vec::<Rule>::new()
        );
    }

    #[test]
    fn canonical_drops_duplicates_and_shadowed_rules() {
        let any = rule(PROTO_ANY, 0, u16::MAX, 2);
        let out = canonical(
            vec![
                rule(PROTO_TCP, 80, 80, 3),
                any,
                any,
                rule(PROTO_TCP, 80, 80, 2),
            ],
            &RuleOrder::default(),
        );
        assert_eq!(out, vec![any]);
        let out = canonical(
            vec![rule(PROTO_TCP, 80, 90, 2), rule(PROTO_TCP, 85, 95, 2)],
            &RuleOrder::default(),
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn rule_order_follows_the_given_ranking_not_the_ids() {
        let order = RuleOrder::new([9, 3]);
        let out = canonical(
            vec![rule(PROTO_TCP, 80, 80, 3), rule(PROTO_UDP, 80, 80, 9)],
            &order,
        );
        assert_eq!(
            out.iter().map(|r| r.policy_id).collect::<Vec<_>>(),
            vec![9, 3]
        );
    }
}
