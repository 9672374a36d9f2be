//! When a direction may change in place: the prefixes that change do not nest in one
//! another, so each peer address sees at most one (atomic) write.

use std::collections::BTreeMap;
use std::net::IpAddr;

use datapath_common::Rule;
use ipnet::IpNet;

/// Do the prefixes that differ between `old` and `new` (added, removed or with other
/// rules) avoid nesting in one another? Then each address sees at most one change.
pub(super) fn changes_are_disjoint(
    old: &BTreeMap<IpNet, Vec<Rule>>,
    new: &BTreeMap<IpNet, Vec<Rule>>,
) -> bool {
    let changed: Vec<IpNet> = old
        .iter()
        .filter(|(n, r)| new.get(*n) != Some(*r))
        .map(|(n, _)| *n)
        .chain(new.keys().filter(|n| !old.contains_key(*n)).copied())
        .collect();
    if changed.len() <= 1 {
        return true;
    }
    let mut by_family: [Vec<IpNet>; 2] = [Vec::new(), Vec::new()];
    for n in changed {
        by_family[usize::from(matches!(n.addr(), IpAddr::V6(_)))].push(n);
    }
    by_family.iter_mut().all(|nets| {
        // Sorted by address then length, a nesting pair shows up as a prefix that
        // contains the next one.
        nets.sort_by_key(|n| (n.network(), n.prefix_len()));
        let mut widest: Option<IpNet> = None;
        for n in nets.iter() {
            if let Some(w) = widest
                && w.contains(n)
            {
                return false;
            }
            if widest.is_none_or(|w| !w.contains(n)) {
                widest = Some(*n);
            }
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(id: u32) -> Vec<Rule> {
        vec![Rule {
            policy_id: id,
            port_max: u16::MAX,
            ..Rule::default()
        }]
    }

    fn map(items: &[(&str, u32)]) -> BTreeMap<IpNet, Vec<Rule>> {
        items
            .iter()
            .map(|(n, id)| (n.parse().unwrap(), rules(*id)))
            .collect()
    }

    #[test]
    fn disjoint_changes_allow_in_place_updates_and_nested_ones_do_not() {
        let old = map(&[("10.0.0.0/8", 2), ("10.0.0.1/32", 2)]);
        assert!(changes_are_disjoint(
            &old,
            &map(&[
                ("10.0.0.0/8", 2),
                ("10.0.0.1/32", 2),
                ("10.0.0.2/32", 3),
                ("11.0.0.1/32", 3)
            ])
        ));
        assert!(!changes_are_disjoint(
            &old,
            &map(&[("10.0.0.0/8", 3), ("10.0.0.1/32", 3)])
        ));
        assert!(!changes_are_disjoint(
            &old,
            &map(&[("10.0.0.0/8", 2), ("10.0.0.0/16", 3), ("10.0.0.1/32", 3)])
        ));
        assert!(changes_are_disjoint(&old, &map(&[("10.0.0.0/8", 2)])));
    }
}
