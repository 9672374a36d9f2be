//! The longest policy entry holding a peer: exact-match hashes for the usual prefix
//! lengths, longest first, then the LPM trie for the rest: one generic body, inlined
//! per family into the policy subprograms.

use aya_ebpf::maps::{HashMap, LpmTrie, lpm_trie::Key};
use datapath_common::{
    HASHED_LENGTHS, HashedKey, LOOKUP_TRIE, POLICY_SELECTOR_BITS, TrieEntry, TrieKey,
    clear_past_prefix,
};

use crate::maps::{POLICY_HASH_V4, POLICY_HASH_V6, POLICY_V4, POLICY_V6};

/// What the longest-match subprograms return when nothing matches (plain integers
/// cross a BPF-to-BPF call in a register; an `Option` might not).
pub(super) const NO_LIST: i64 = -1;

/// The rule list of the longest entry holding an IPv4 peer, or [`NO_LIST`].
///
/// Only ever inlined into a BPF subprogram: each inlined copy of the unrolled probes
/// keeps its own keys on the stack, and four copies in one frame pass the 512-byte
/// limit.
#[inline(always)]
pub(super) fn longest_v4(selector_be: u32, addr: &[u8; 4], lookups: u8) -> i64 {
    longest(
        &POLICY_HASH_V4,
        &POLICY_V4,
        &HASHED_LENGTHS[0],
        selector_be,
        addr,
        lookups,
    )
}

/// As [`longest_v4`] for an IPv6 peer.
#[inline(always)]
pub(super) fn longest_v6(selector_be: u32, addr: &[u8; 16], lookups: u8) -> i64 {
    longest(
        &POLICY_HASH_V6,
        &POLICY_V6,
        &HASHED_LENGTHS[1],
        selector_be,
        addr,
        lookups,
    )
}

/// The longest match in one family: the hashed `lengths` the pod uses, longest
/// first (the first hit is the longest hashed match), then the trie if the pod has
/// entries there, whose match wins only when longer.
#[inline(always)]
fn longest<const N: usize>(
    hash: &HashMap<HashedKey<N>, u32>,
    trie: &LpmTrie<TrieKey<N>, TrieEntry>,
    lengths: &[u8; 5],
    selector_be: u32,
    addr: &[u8; N],
    lookups: u8,
) -> i64 {
    // The hashed probes' key lives in this block only, so its stack slot is free again
    // for the trie's key and the rule list's (the caller's frame leaves little room).
    let mut best: Option<(u32, u32)> = {
        // One key, masked further for each probe (the lengths only shrink): a key per
        // unrolled probe would not fit the stack.
        let mut key = HashedKey {
            selector_be,
            prefix_len: 0,
            _pad: [0; 3],
            addr: *addr,
        };
        let mut found = None;
        for (slot, &len) in lengths.iter().enumerate() {
            clear_past_prefix(&mut key.addr, len);
            if lookups & (1 << slot) == 0 {
                continue;
            }
            key.prefix_len = len;
            if let Some(list) = hash.get_ptr(&key) {
                // SAFETY: map values stay valid for the duration of the program (RCU).
                found = Some((unsafe { *list }, len as u32));
                break;
            }
        }
        found
    };
    if lookups & LOOKUP_TRIE != 0 {
        let key = Key::new(
            POLICY_SELECTOR_BITS + 8 * N as u32,
            TrieKey {
                selector_be,
                addr: *addr,
            },
        );
        if let Some(e) = trie.get(&key) {
            best = longer(best, e);
        }
    }
    best.map_or(NO_LIST, |(list, _)| list as i64)
}

/// The trie's match replaces a hashed one only when its prefix is longer.
#[inline(always)]
fn longer(best: Option<(u32, u32)>, trie: &TrieEntry) -> Option<(u32, u32)> {
    match best {
        Some((_, len)) if len >= trie.prefix_len => best,
        _ => Some((trie.list_id, trie.prefix_len)),
    }
}
