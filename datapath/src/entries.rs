//! Policy entries in the kernel's four stores: an exact-match hash per family for the
//! [`HASHED_LENGTHS`] and an LPM trie per family for every other length. Callers see
//! one logical key (`PolicyKey` plus the peer prefix length); this module picks the
//! store, masks hashed addresses and builds the kernel keys.

use aya::{
    Ebpf,
    maps::{
        HashMap, MapData,
        lpm_trie::{Key, LpmTrie},
    },
};
use datapath_common::{
    FAMILY_IPV4, FAMILY_IPV6, HashedKeyV4, HashedKeyV6, LOOKUP_TRIE, MAX_POLICY_SET,
    POLICY_SELECTOR_BITS, PolicyKey, PolicyKeyV4, PolicyKeyV6, TrieEntry, lookup_flag, map_names,
    mask_whole_bytes, policy_selector,
};

use crate::{
    DatapathError,
    maps::{RuleListId, ignore_not_found, open_pinned, take},
    pins::PinLayout,
};

pub(crate) struct PolicyEntries {
    hash_v4: HashMap<MapData, HashedKeyV4, RuleListId>,
    hash_v6: HashMap<MapData, HashedKeyV6, RuleListId>,
    trie_v4: LpmTrie<MapData, PolicyKeyV4, TrieEntry>,
    trie_v6: LpmTrie<MapData, PolicyKeyV6, TrieEntry>,
}

/// Where one logical entry lives, with its kernel key.
enum Stored {
    HashV4(HashedKeyV4),
    HashV6(HashedKeyV6),
    TrieV4(Key<PolicyKeyV4>),
    TrieV6(Key<PolicyKeyV6>),
}

impl Stored {
    fn of(key: &PolicyKey, prefix_len: u32) -> Result<Self, DatapathError> {
        let set = u32::from_be(key.policy_set_be);
        if set > MAX_POLICY_SET {
            return Err(DatapathError::PolicySetTooLarge {
                set,
                max: MAX_POLICY_SET,
            });
        }
        let selector_be = policy_selector(set, key.direction).to_be();
        let hashed = lookup_flag(key.family, prefix_len) != LOOKUP_TRIE;
        let mut v4 = [0; 4];
        v4.copy_from_slice(&key.addr[..4]);
        Ok(match (key.family == FAMILY_IPV4, hashed) {
            (true, true) => Self::HashV4(HashedKeyV4 {
                selector_be,
                prefix_len: prefix_len as u8,
                _pad: [0; 3],
                addr: mask_whole_bytes(&v4, prefix_len as u8),
            }),
            (false, true) => Self::HashV6(HashedKeyV6 {
                selector_be,
                prefix_len: prefix_len as u8,
                _pad: [0; 3],
                addr: mask_whole_bytes(&key.addr, prefix_len as u8),
            }),
            (true, false) => Self::TrieV4(Key::new(
                POLICY_SELECTOR_BITS + prefix_len,
                PolicyKeyV4 {
                    selector_be,
                    addr: v4,
                },
            )),
            (false, false) => Self::TrieV6(Key::new(
                POLICY_SELECTOR_BITS + prefix_len,
                PolicyKeyV6 {
                    selector_be,
                    addr: key.addr,
                },
            )),
        })
    }
}

/// The logical key of a kernel key's selector, family and address.
fn logical_key(selector_be: u32, family: u8, addr: &[u8]) -> PolicyKey {
    let selector = u32::from_be(selector_be);
    let mut key = PolicyKey {
        policy_set_be: (selector >> 1).to_be(),
        direction: (selector & 1) as u8,
        family,
        ..PolicyKey::default()
    };
    key.addr[..addr.len()].copy_from_slice(addr);
    key
}

impl PolicyEntries {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            hash_v4: take(ebpf, map_names::POLICY_HASH_V4)?,
            hash_v6: take(ebpf, map_names::POLICY_HASH_V6)?,
            trie_v4: take(ebpf, map_names::POLICY_V4)?,
            trie_v6: take(ebpf, map_names::POLICY_V6)?,
        })
    }

    pub(crate) fn open_pinned(pins: &PinLayout) -> Result<Self, DatapathError> {
        use aya::maps::Map;
        Ok(Self {
            hash_v4: open_pinned(pins, map_names::POLICY_HASH_V4, Map::HashMap)?,
            hash_v6: open_pinned(pins, map_names::POLICY_HASH_V6, Map::HashMap)?,
            trie_v4: open_pinned(pins, map_names::POLICY_V4, Map::LpmTrie)?,
            trie_v6: open_pinned(pins, map_names::POLICY_V6, Map::LpmTrie)?,
        })
    }

    pub(crate) fn put(
        &mut self,
        key: &PolicyKey,
        prefix_len: u32,
        list_id: RuleListId,
    ) -> Result<(), DatapathError> {
        let trie_entry = TrieEntry {
            list_id,
            prefix_len,
        };
        match Stored::of(key, prefix_len)? {
            Stored::HashV4(k) => self
                .hash_v4
                .insert(k, list_id, 0)
                .map_err(|e| DatapathError::map(map_names::POLICY_HASH_V4, e)),
            Stored::HashV6(k) => self
                .hash_v6
                .insert(k, list_id, 0)
                .map_err(|e| DatapathError::map(map_names::POLICY_HASH_V6, e)),
            Stored::TrieV4(k) => self
                .trie_v4
                .insert(&k, trie_entry, 0)
                .map_err(|e| DatapathError::map(map_names::POLICY_V4, e)),
            Stored::TrieV6(k) => self
                .trie_v6
                .insert(&k, trie_entry, 0)
                .map_err(|e| DatapathError::map(map_names::POLICY_V6, e)),
        }
    }

    pub(crate) fn remove(&mut self, key: &PolicyKey, prefix_len: u32) -> Result<(), DatapathError> {
        match Stored::of(key, prefix_len)? {
            Stored::HashV4(k) => {
                ignore_not_found(self.hash_v4.remove(&k), map_names::POLICY_HASH_V4)
            }
            Stored::HashV6(k) => {
                ignore_not_found(self.hash_v6.remove(&k), map_names::POLICY_HASH_V6)
            }
            Stored::TrieV4(k) => ignore_not_found(self.trie_v4.remove(&k), map_names::POLICY_V4),
            Stored::TrieV6(k) => ignore_not_found(self.trie_v6.remove(&k), map_names::POLICY_V6),
        }
    }

    /// Every entry of the four stores: (key, peer prefix length, list id).
    pub(crate) fn all(&self) -> Vec<(PolicyKey, u32, RuleListId)> {
        let hash_v4 = self.hash_v4.iter().filter_map(Result::ok).map(|(k, v)| {
            let key = logical_key(k.selector_be, FAMILY_IPV4, &k.addr);
            (key, u32::from(k.prefix_len), v)
        });
        let hash_v6 = self.hash_v6.iter().filter_map(Result::ok).map(|(k, v)| {
            let key = logical_key(k.selector_be, FAMILY_IPV6, &k.addr);
            (key, u32::from(k.prefix_len), v)
        });
        let trie_v4 = self.trie_v4.iter().filter_map(Result::ok).map(|(k, v)| {
            let key = logical_key(k.data().selector_be, FAMILY_IPV4, &k.data().addr);
            (key, k.prefix_len() - POLICY_SELECTOR_BITS, v.list_id)
        });
        let trie_v6 = self.trie_v6.iter().filter_map(Result::ok).map(|(k, v)| {
            let key = logical_key(k.data().selector_be, FAMILY_IPV6, &k.data().addr);
            (key, k.prefix_len() - POLICY_SELECTOR_BITS, v.list_id)
        });
        hash_v4
            .chain(hash_v6)
            .chain(trie_v4)
            .chain(trie_v6)
            .collect()
    }
}
