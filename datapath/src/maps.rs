//! Typed access to the kernel maps: pod records, policy trie entries, rule lists,
//! settings, counters, conntrack and folds. The policy side writes the first three;
//! the datapath owns conntrack and folds.

use std::time::Duration;

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray},
};
use datapath_common::{
    Counters, CtValue, FlowKey, FoldValue, MAX_RULES_PER_LIST, PodRecord, PolicyKey, Rule,
    RuleList, Settings, map_names,
};

use datapath_common::clock::monotonic_now_ns;

use crate::{DatapathError, entries::PolicyEntries, pod_slots::PodSlots};

/// Id of a rule list in `RULE_LISTS`.
pub type RuleListId = u32;

/// A conntrack entry as userspace sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackEntry {
    pub key: FlowKey,
    pub value: CtValue,
}

/// Every map of the datapath as userspace holds it: the policy side's (pod records,
/// policy entries, rule lists) and the datapath's own (conntrack, folds, settings,
/// counters).
pub struct DatapathMaps {
    pods: PodSlots,
    entries: PolicyEntries,
    rule_lists: HashMap<MapData, RuleListId, RuleList>,
    conntrack: HashMap<MapData, FlowKey, CtValue>,
    folds: HashMap<MapData, FlowKey, FoldValue>,
    settings: Array<MapData, Settings>,
    counters: PerCpuArray<MapData, Counters>,
}

pub(crate) fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DatapathError::MissingMap { name })?;
    T::try_from(map).map_err(|e| DatapathError::map(name, e))
}

/// Builds a rule list from at most [`MAX_RULES_PER_LIST`] rules.
///
/// # Errors
/// [`DatapathError::RuleListTooLong`] past the limit.
pub fn rule_list(rules: &[Rule]) -> Result<RuleList, DatapathError> {
    if rules.len() > MAX_RULES_PER_LIST {
        return Err(DatapathError::RuleListTooLong {
            len: rules.len(),
            max: MAX_RULES_PER_LIST,
        });
    }
    let mut list = RuleList {
        len: rules.len() as u32,
        ..RuleList::default()
    };
    list.rules[..rules.len()].copy_from_slice(rules);
    Ok(list)
}

impl DatapathMaps {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            pods: PodSlots::take(ebpf)?,
            entries: PolicyEntries::take(ebpf)?,
            rule_lists: take(ebpf, map_names::RULE_LISTS)?,
            conntrack: take(ebpf, map_names::CONNTRACK)?,
            folds: take(ebpf, map_names::FOLDS)?,
            settings: take(ebpf, map_names::SETTINGS)?,
            counters: take(ebpf, map_names::COUNTERS)?,
        })
    }

    /// Writes the record of the pod behind `ifindex` (stamping `record.ifindex`, and
    /// flagging the trie where a full hash sent entries of its set there).
    ///
    /// # Errors
    /// Ifindex 0, no spare slot left for a large ifindex, or a failed map update (the
    /// message names the map).
    pub fn put_pod(&mut self, ifindex: u32, record: &PodRecord) -> Result<(), DatapathError> {
        let mut record = *record;
        let overflow = self.entries.overflow_lookups(record.policy_set);
        for (flags, extra) in record
            .lookups
            .iter_mut()
            .flatten()
            .zip(overflow.iter().flatten())
        {
            *flags |= extra;
        }
        self.pods.put(ifindex, &record)
    }

    /// Removes a pod record; a missing record is not an error.
    ///
    /// # Errors
    /// A failed map delete other than "not found".
    pub fn remove_pod(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        self.pods.remove(ifindex)
    }

    pub fn pod(&self, ifindex: u32) -> Option<PodRecord> {
        self.pods.get(ifindex)
    }

    /// Every pod record, by ifindex.
    pub fn pods(&self) -> Vec<(u32, PodRecord)> {
        self.pods.all()
    }

    /// # Errors
    /// A list longer than the kernel holds, or a failed map update.
    pub fn put_rule_list(&mut self, id: RuleListId, rules: &[Rule]) -> Result<(), DatapathError> {
        let list = rule_list(rules)?;
        self.put_rule_list_raw(id, &list)
    }

    /// # Errors
    /// A failed map update.
    pub fn put_rule_list_raw(
        &mut self,
        id: RuleListId,
        list: &RuleList,
    ) -> Result<(), DatapathError> {
        self.rule_lists
            .insert(id, list, 0)
            .map_err(|e| DatapathError::map(map_names::RULE_LISTS, e))
    }

    /// # Errors
    /// A failed map delete other than "not found".
    pub fn remove_rule_list(&mut self, id: RuleListId) -> Result<(), DatapathError> {
        ignore_not_found(self.rule_lists.remove(&id), map_names::RULE_LISTS)
    }

    pub fn rule_lists(&self) -> Vec<(RuleListId, RuleList)> {
        self.rule_lists.iter().filter_map(Result::ok).collect()
    }

    /// Stores `list` for the peer prefix `key`/`prefix_len` (peer bits only): in the
    /// family's hash for the hashed lengths, else in its trie.
    ///
    /// # Errors
    /// A policy set past `MAX_POLICY_SET`; a failed map update (the message names
    /// the map).
    pub fn put_entry(
        &mut self,
        key: &PolicyKey,
        prefix_len: u32,
        list: RuleListId,
    ) -> Result<(), DatapathError> {
        self.entries.put(key, prefix_len, list)
    }

    /// # Errors
    /// A failed map delete other than "not found".
    pub fn remove_entry(&mut self, key: &PolicyKey, prefix_len: u32) -> Result<(), DatapathError> {
        self.entries.remove(key, prefix_len)
    }

    /// Every policy entry: (key, peer prefix length, list id).
    pub fn entries(&self) -> Vec<(PolicyKey, u32, RuleListId)> {
        self.entries.all()
    }

    /// # Errors
    /// A failed map update.
    pub fn set_settings(&mut self, settings: &Settings) -> Result<(), DatapathError> {
        self.settings
            .set(0, settings, 0)
            .map_err(|e| DatapathError::map(map_names::SETTINGS, e))
    }

    /// # Errors
    /// A failed map read.
    pub fn settings(&self) -> Result<Settings, DatapathError> {
        self.settings
            .get(&0, 0)
            .map_err(|e| DatapathError::map(map_names::SETTINGS, e))
    }

    /// The kernel counters summed over CPUs.
    ///
    /// # Errors
    /// A failed map read.
    pub fn counters(&self) -> Result<Counters, DatapathError> {
        let per_cpu = self
            .counters
            .get(&0, 0)
            .map_err(|e| DatapathError::map(map_names::COUNTERS, e))?;
        let mut sum = Counters::default();
        for c in per_cpu.iter() {
            for d in 0..2 {
                for v in 0..2 {
                    sum.packets[d][v] += c.packets[d][v];
                    sum.bytes[d][v] += c.bytes[d][v];
                }
                sum.audited_packets[d] += c.audited_packets[d];
            }
            sum.audited_packets_lost += c.audited_packets_lost;
            sum.events_submitted += c.events_submitted;
            sum.events_lost += c.events_lost;
            sum.denied_packets_lost += c.denied_packets_lost;
            sum.events_unfolded_fold_full += c.events_unfolded_fold_full;
            sum.events_filtered_scope += c.events_filtered_scope;
            sum.fragments_untracked += c.fragments_untracked;
            sum.spoofed_packets += c.spoofed_packets;
            sum.wakeups_forced += c.wakeups_forced;
            sum.conntrack_inserts += c.conntrack_inserts;
            sum.conntrack_removals += c.conntrack_removals;
            sum.conntrack_insert_races += c.conntrack_insert_races;
        }
        Ok(sum)
    }

    pub fn conntrack(&self) -> Vec<ConntrackEntry> {
        self.conntrack
            .iter()
            .filter_map(Result::ok)
            .map(|(key, value)| ConntrackEntry { key, value })
            .collect()
    }

    /// The conntrack map itself, for the sweep's lookup-and-delete.
    pub(crate) fn conntrack_map(&self) -> &MapData {
        use aya::maps::IterableMap as _;
        self.conntrack.map()
    }

    /// One conntrack entry's value, if present.
    ///
    /// # Errors
    /// A failed map read other than "not found".
    pub fn conntrack_value(&self, key: &FlowKey) -> Result<Option<CtValue>, DatapathError> {
        match self.conntrack.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(None)
            }
            Err(e) => Err(DatapathError::map(map_names::CONNTRACK, e)),
        }
    }

    /// # Errors
    /// A failed map delete other than "not found".
    pub fn remove_conntrack(&mut self, key: &FlowKey) -> Result<(), DatapathError> {
        ignore_not_found(self.conntrack.remove(key), map_names::CONNTRACK)
    }

    /// Deletes conntrack entries idle for longer than `idle`; returns how many.
    ///
    /// # Errors
    /// A failed map delete.
    pub fn sweep_conntrack(&mut self, idle: Duration) -> Result<usize, DatapathError> {
        let now = monotonic_now_ns();
        let idle_ns = idle.as_nanos() as u64;
        let stale: Vec<FlowKey> = self
            .conntrack
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| now.saturating_sub(v.last_seen_ns) > idle_ns)
            .map(|(k, _)| k)
            .collect();
        for key in &stale {
            self.remove_conntrack(key)?;
        }
        Ok(stale.len())
    }

    /// Keys of every DENY fold.
    ///
    /// # Errors
    /// None today; kept fallible for map iteration errors.
    pub fn fold_keys(&self) -> Result<Vec<FlowKey>, DatapathError> {
        Ok(self.folds.keys().filter_map(Result::ok).collect())
    }

    pub fn folds(&self) -> Vec<(FlowKey, FoldValue)> {
        self.folds.iter().filter_map(Result::ok).collect()
    }

    /// Denied packets counted in folds but not yet sent in an event.
    pub fn pending_fold_packets(&self) -> u64 {
        self.folds().iter().map(|(_, v)| v.pending_packets).sum()
    }
}

pub(crate) fn ignore_not_found(
    result: Result<(), aya::maps::MapError>,
    name: &'static str,
) -> Result<(), DatapathError> {
    match result {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(e) => Err(DatapathError::map(name, e)),
    }
}

/// Opens one pinned map of ours as the aya map kind `wrap` names.
pub(crate) fn open_pinned<T>(
    pins: &crate::PinLayout,
    name: &'static str,
    wrap: fn(MapData) -> aya::maps::Map,
) -> Result<T, DatapathError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let path = pins.maps_dir().join(name);
    let data = MapData::from_pin(&path).map_err(|e| DatapathError::Pin {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    T::try_from(wrap(data)).map_err(|e| DatapathError::map(name, e))
}

impl DatapathMaps {
    /// The maps a running agent pinned (for the lab and the inspection commands, which
    /// run beside the agent rather than inside it).
    ///
    /// # Errors
    /// A pin is missing (no agent has run with this pin directory) or is not our map.
    pub fn open_pinned(pins: &crate::PinLayout) -> Result<Self, DatapathError> {
        use aya::maps::Map;
        Ok(Self {
            pods: PodSlots::open_pinned(pins)?,
            entries: PolicyEntries::open_pinned(pins)?,
            rule_lists: open_pinned(pins, map_names::RULE_LISTS, Map::HashMap)?,
            conntrack: open_pinned(pins, map_names::CONNTRACK, Map::LruHashMap)?,
            folds: open_pinned(pins, map_names::FOLDS, Map::HashMap)?,
            settings: open_pinned(pins, map_names::SETTINGS, Map::Array)?,
            counters: open_pinned(pins, map_names::COUNTERS, Map::PerCpuArray)?,
        })
    }
}

/// Pod records as a running agent's pinned map holds them.
///
/// # Errors
/// The pin does not exist or is not our map.
pub fn pinned_pod_records(pins: &crate::PinLayout) -> Result<Vec<(u32, PodRecord)>, DatapathError> {
    Ok(PodSlots::open_pinned(pins)?.all())
}
