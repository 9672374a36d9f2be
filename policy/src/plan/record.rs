//! The fields of a pod's record that follow from its resolution: its addresses and
//! the lookups flags saying which hashed lengths and tries hold its entries.

use std::collections::BTreeMap;

use datapath_common::{FAMILY_IPV4, FAMILY_IPV6, POD_HAS_IPV4, POD_HAS_IPV6, PodRecord, Rule};
use ipnet::IpNet;

use super::dir_index;
use crate::model::Direction;
use crate::resolve::ResolvedPod;

/// `PodRecord::addr_flags`, `ipv4` and `ipv6` for `want`'s addresses.
pub(super) fn addresses(want: &ResolvedPod) -> (u8, [u8; 4], [u8; 16]) {
    let mut addr_flags = 0;
    let mut ipv4 = [0u8; 4];
    let mut ipv6 = [0u8; 16];
    if let Some(v4) = want.ipv4 {
        addr_flags |= POD_HAS_IPV4;
        ipv4 = v4.octets();
    }
    if let Some(v6) = want.ipv6 {
        addr_flags |= POD_HAS_IPV6;
        ipv6 = v6.octets();
    }
    (addr_flags, ipv4, ipv6)
}

/// The `PodRecord::lookups` flags for a pod's entries, `[ingress, egress]`.
pub(super) fn lookups(entries: [&BTreeMap<IpNet, Vec<Rule>>; 2]) -> [[u8; 2]; 2] {
    let mut record = PodRecord::default();
    for direction in Direction::BOTH {
        for net in entries[dir_index(direction)].keys() {
            let family = if net.addr().is_ipv4() {
                FAMILY_IPV4
            } else {
                FAMILY_IPV6
            };
            record.note_entry(direction.as_u8(), family, u32::from(net.prefix_len()));
        }
    }
    record.lookups
}
