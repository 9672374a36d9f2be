//! Policy entries in the kernel's four stores: an exact-match hash per family for the
//! [`HASHED_LENGTHS`] and an LPM trie per family for every other length. Callers see
//! one logical key (`PolicyKey` plus the peer prefix length); this module picks the
//! store, masks hashed addresses and builds the kernel keys. A full hash overflows
//! into the trie (same verdicts, slower lookups), flagged in the pod records.

use std::collections::HashMap as StdHashMap;

use aya::{
    Ebpf,
    maps::{
        HashMap, MapData, MapError,
        lpm_trie::{Key, LpmTrie},
    },
};
use datapath_common::{
    FAMILY_IPV4, FAMILY_IPV6, HashedKeyV4, HashedKeyV6, LOOKUP_TRIE, MAX_POLICY_SET,
    POLICY_SELECTOR_BITS, PolicyKey, PolicyKeyV4, PolicyKeyV6, TrieEntry, family_index,
    lookup_flag, map_names, mask_whole_bytes, policy_selector,
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
    /// Entries of hashed lengths that went to the trie because their hash was full,
    /// by (policy set, direction, family index). Pod records of those sets flag the
    /// trie so the programs look there too.
    overflow: StdHashMap<(u32, u8, usize), usize>,
}

/// The trie key of an entry, whatever its length.
enum TrieAt {
    V4(Key<PolicyKeyV4>),
    V6(Key<PolicyKeyV6>),
}

/// The hash key of an entry of one of the hashed lengths.
enum HashAt {
    V4(HashedKeyV4),
    V6(HashedKeyV6),
}

fn selector_be(key: &PolicyKey) -> Result<u32, DatapathError> {
    let set = u32::from_be(key.policy_set_be);
    if set > MAX_POLICY_SET {
        return Err(DatapathError::PolicySetTooLarge {
            set,
            max: MAX_POLICY_SET,
        });
    }
    Ok(policy_selector(set, key.direction).to_be())
}

fn v4_addr(key: &PolicyKey) -> [u8; 4] {
    let mut v4 = [0; 4];
    v4.copy_from_slice(&key.addr[..4]);
    v4
}

fn trie_key(key: &PolicyKey, prefix_len: u32) -> Result<TrieAt, DatapathError> {
    let selector_be = selector_be(key)?;
    let bits = POLICY_SELECTOR_BITS + prefix_len;
    Ok(if key.family == FAMILY_IPV4 {
        TrieAt::V4(Key::new(
            bits,
            PolicyKeyV4 {
                selector_be,
                addr: v4_addr(key),
            },
        ))
    } else {
        TrieAt::V6(Key::new(
            bits,
            PolicyKeyV6 {
                selector_be,
                addr: key.addr,
            },
        ))
    })
}

/// The hash key of `key`, or `None` when its length is not a hashed one.
fn hash_key(key: &PolicyKey, prefix_len: u32) -> Result<Option<HashAt>, DatapathError> {
    if lookup_flag(key.family, prefix_len) == LOOKUP_TRIE {
        return Ok(None);
    }
    let selector_be = selector_be(key)?;
    let len = prefix_len as u8;
    Ok(Some(if key.family == FAMILY_IPV4 {
        HashAt::V4(HashedKeyV4 {
            selector_be,
            prefix_len: len,
            _pad: [0; 3],
            addr: mask_whole_bytes(&v4_addr(key), len),
        })
    } else {
        HashAt::V6(HashedKeyV6 {
            selector_be,
            prefix_len: len,
            _pad: [0; 3],
            addr: mask_whole_bytes(&key.addr, len),
        })
    }))
}

fn overflow_group(key: &PolicyKey) -> (u32, u8, usize) {
    (
        u32::from_be(key.policy_set_be),
        key.direction,
        family_index(key.family),
    )
}

/// Did a map update fail because the map is full?
fn is_full(e: &MapError) -> bool {
    matches!(e, MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::E2BIG))
}

fn not_found(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
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
    fn new(
        hash_v4: HashMap<MapData, HashedKeyV4, RuleListId>,
        hash_v6: HashMap<MapData, HashedKeyV6, RuleListId>,
        trie_v4: LpmTrie<MapData, PolicyKeyV4, TrieEntry>,
        trie_v6: LpmTrie<MapData, PolicyKeyV6, TrieEntry>,
    ) -> Self {
        let mut entries = Self {
            hash_v4,
            hash_v6,
            trie_v4,
            trie_v6,
            overflow: StdHashMap::new(),
        };
        // Pinned maps may hold overflowed entries from before a restart.
        for (key, prefix_len, _) in entries.trie_entries() {
            if lookup_flag(key.family, prefix_len) != LOOKUP_TRIE {
                *entries.overflow.entry(overflow_group(&key)).or_default() += 1;
            }
        }
        entries
    }

    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Ok(Self::new(
            take(ebpf, map_names::POLICY_HASH_V4)?,
            take(ebpf, map_names::POLICY_HASH_V6)?,
            take(ebpf, map_names::POLICY_V4)?,
            take(ebpf, map_names::POLICY_V6)?,
        ))
    }

    pub(crate) fn open_pinned(pins: &PinLayout) -> Result<Self, DatapathError> {
        use aya::maps::Map;
        Ok(Self::new(
            open_pinned(pins, map_names::POLICY_HASH_V4, Map::HashMap)?,
            open_pinned(pins, map_names::POLICY_HASH_V6, Map::HashMap)?,
            open_pinned(pins, map_names::POLICY_V4, Map::LpmTrie)?,
            open_pinned(pins, map_names::POLICY_V6, Map::LpmTrie)?,
        ))
    }

    /// `LOOKUP_TRIE` where set `policy_set` has entries of hashed lengths in the
    /// trie, by `[direction][family index]`: to be or-ed into its pod records.
    pub(crate) fn overflow_lookups(&self, policy_set: u32) -> [[u8; 2]; 2] {
        let mut lookups = [[0; 2]; 2];
        for (direction, row) in lookups.iter_mut().enumerate() {
            for (family, flags) in row.iter_mut().enumerate() {
                if self
                    .overflow
                    .contains_key(&(policy_set, direction as u8, family))
                {
                    *flags = LOOKUP_TRIE;
                }
            }
        }
        lookups
    }

    fn put_trie(&mut self, key: &TrieAt, entry: TrieEntry) -> Result<(), DatapathError> {
        match key {
            TrieAt::V4(k) => self
                .trie_v4
                .insert(k, entry, 0)
                .map_err(|e| DatapathError::map(map_names::POLICY_V4, e)),
            TrieAt::V6(k) => self
                .trie_v6
                .insert(k, entry, 0)
                .map_err(|e| DatapathError::map(map_names::POLICY_V6, e)),
        }
    }

    /// Removes a trie entry; whether it was there.
    fn remove_trie(&mut self, key: &TrieAt) -> Result<bool, DatapathError> {
        let (result, name) = match key {
            TrieAt::V4(k) => (self.trie_v4.remove(k), map_names::POLICY_V4),
            TrieAt::V6(k) => (self.trie_v6.remove(k), map_names::POLICY_V6),
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(DatapathError::map(name, e)),
        }
    }

    /// Is this exact entry in the trie?
    fn in_trie(&self, key: &TrieAt, prefix_len: u32) -> bool {
        let found = match key {
            TrieAt::V4(k) => self.trie_v4.get(k, 0).ok(),
            TrieAt::V6(k) => self.trie_v6.get(k, 0).ok(),
        };
        // A trie lookup is a longest match: only a match of the full length is this
        // entry.
        found.is_some_and(|e| e.prefix_len == prefix_len)
    }

    /// Stores `list_id` for the entry: in its family's hash for the hashed lengths
    /// (in the trie when the hash is full, or when an earlier overflow put it there),
    /// else in the trie.
    pub(crate) fn put(
        &mut self,
        key: &PolicyKey,
        prefix_len: u32,
        list_id: RuleListId,
    ) -> Result<(), DatapathError> {
        let trie = trie_key(key, prefix_len)?;
        let trie_entry = TrieEntry {
            list_id,
            prefix_len,
        };
        let Some(hashed) = hash_key(key, prefix_len)? else {
            return self.put_trie(&trie, trie_entry);
        };
        let group = overflow_group(key);
        if self.overflow.contains_key(&group) && self.in_trie(&trie, prefix_len) {
            return self.put_trie(&trie, trie_entry);
        }
        let (result, name) = match hashed {
            HashAt::V4(k) => (
                self.hash_v4.insert(k, list_id, 0),
                map_names::POLICY_HASH_V4,
            ),
            HashAt::V6(k) => (
                self.hash_v6.insert(k, list_id, 0),
                map_names::POLICY_HASH_V6,
            ),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_full(&e) => {
                tracing::warn!(map = name, "policy hash full: the entry goes to the trie");
                self.put_trie(&trie, trie_entry)?;
                *self.overflow.entry(group).or_default() += 1;
                Ok(())
            }
            Err(e) => Err(DatapathError::map(name, e)),
        }
    }

    pub(crate) fn remove(&mut self, key: &PolicyKey, prefix_len: u32) -> Result<(), DatapathError> {
        let trie = trie_key(key, prefix_len)?;
        let Some(hashed) = hash_key(key, prefix_len)? else {
            return self.remove_trie(&trie).map(drop);
        };
        match hashed {
            HashAt::V4(k) => ignore_not_found(self.hash_v4.remove(&k), map_names::POLICY_HASH_V4)?,
            HashAt::V6(k) => ignore_not_found(self.hash_v6.remove(&k), map_names::POLICY_HASH_V6)?,
        }
        let group = overflow_group(key);
        if self.overflow.contains_key(&group)
            && self.remove_trie(&trie)?
            && let Some(n) = self.overflow.get_mut(&group)
        {
            *n -= 1;
            if *n == 0 {
                self.overflow.remove(&group);
            }
        }
        Ok(())
    }

    /// Every entry of the four stores: (key, peer prefix length, list id).
    pub(crate) fn all(&self) -> Vec<(PolicyKey, u32, RuleListId)> {
        let mut all = self.hash_entries();
        all.extend(self.trie_entries());
        all
    }

    fn hash_entries(&self) -> Vec<(PolicyKey, u32, RuleListId)> {
        let hash_v4 = self.hash_v4.iter().filter_map(Result::ok).map(|(k, v)| {
            let key = logical_key(k.selector_be, FAMILY_IPV4, &k.addr);
            (key, u32::from(k.prefix_len), v)
        });
        let hash_v6 = self.hash_v6.iter().filter_map(Result::ok).map(|(k, v)| {
            let key = logical_key(k.selector_be, FAMILY_IPV6, &k.addr);
            (key, u32::from(k.prefix_len), v)
        });
        hash_v4.chain(hash_v6).collect()
    }

    fn trie_entries(&self) -> Vec<(PolicyKey, u32, RuleListId)> {
        let trie_v4 = self.trie_v4.iter().filter_map(Result::ok).map(|(k, v)| {
            let key = logical_key(k.data().selector_be, FAMILY_IPV4, &k.data().addr);
            (key, k.prefix_len() - POLICY_SELECTOR_BITS, v.list_id)
        });
        let trie_v6 = self.trie_v6.iter().filter_map(Result::ok).map(|(k, v)| {
            let key = logical_key(k.data().selector_be, FAMILY_IPV6, &k.data().addr);
            (key, k.prefix_len() - POLICY_SELECTOR_BITS, v.list_id)
        });
        trie_v4.chain(trie_v6).collect()
    }
}
