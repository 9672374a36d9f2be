//! Pod records in `POD_SLOTS`: the slot numbered like the interface for small
//! ifindexes (the programs index the array directly), otherwise a spare slot found
//! through `POD_INDEX`. Callers see records by ifindex only.

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
};
use datapath_common::{DIRECT_POD_SLOTS, POD_SLOT_COUNT, PodRecord, map_names};

use crate::{
    DatapathError,
    maps::{ignore_not_found, open_pinned, take},
    pins::PinLayout,
};

pub(crate) struct PodSlots {
    slots: Array<MapData, PodRecord>,
    index: HashMap<MapData, u32, u32>,
}

impl PodSlots {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            slots: take(ebpf, map_names::POD_SLOTS)?,
            index: take(ebpf, map_names::POD_INDEX)?,
        })
    }

    pub(crate) fn open_pinned(pins: &PinLayout) -> Result<Self, DatapathError> {
        use aya::maps::Map;
        Ok(Self {
            slots: open_pinned(pins, map_names::POD_SLOTS, Map::Array)?,
            index: open_pinned(pins, map_names::POD_INDEX, Map::HashMap)?,
        })
    }

    /// The slot `ifindex` has, if any.
    fn slot_of(&self, ifindex: u32) -> Option<u32> {
        if ifindex < DIRECT_POD_SLOTS {
            Some(ifindex)
        } else {
            self.index.get(&ifindex, 0).ok()
        }
    }

    fn read(&self, slot: u32) -> Option<PodRecord> {
        self.slots.get(&slot, 0).ok()
    }

    fn write(&mut self, slot: u32, record: &PodRecord) -> Result<(), DatapathError> {
        self.slots
            .set(slot, record, 0)
            .map_err(|e| DatapathError::map(map_names::POD_SLOTS, e))
    }

    /// Writes the record of `ifindex` (stamped with it), taking a spare slot for a
    /// large ifindex that has none.
    pub(crate) fn put(&mut self, ifindex: u32, record: &PodRecord) -> Result<(), DatapathError> {
        if ifindex == 0 {
            return Err(DatapathError::NoSuchIfindex { ifindex });
        }
        let record = PodRecord { ifindex, ..*record };
        if let Some(slot) = self.slot_of(ifindex) {
            return self.write(slot, &record);
        }
        let slot = (DIRECT_POD_SLOTS..POD_SLOT_COUNT)
            .find(|s| self.read(*s).is_some_and(|r| r.ifindex == 0))
            .ok_or(DatapathError::PodSlotsFull {
                ifindex,
                spare: POD_SLOT_COUNT - DIRECT_POD_SLOTS,
            })?;
        // The record first: the programs only reach it once the index points there.
        self.write(slot, &record)?;
        self.index
            .insert(ifindex, slot, 0)
            .map_err(|e| DatapathError::map(map_names::POD_INDEX, e))
    }

    /// Frees the slot of `ifindex`; an interface without one is not an error.
    pub(crate) fn remove(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        let Some(slot) = self.slot_of(ifindex) else {
            return Ok(());
        };
        if ifindex >= DIRECT_POD_SLOTS {
            ignore_not_found(self.index.remove(&ifindex), map_names::POD_INDEX)?;
        }
        if self.read(slot).is_some_and(|r| r.ifindex == ifindex) {
            self.write(slot, &PodRecord::default())?;
        }
        Ok(())
    }

    pub(crate) fn get(&self, ifindex: u32) -> Option<PodRecord> {
        self.read(self.slot_of(ifindex)?)
            .filter(|r| r.ifindex == ifindex)
    }

    /// Every record, by ifindex.
    pub(crate) fn all(&self) -> Vec<(u32, PodRecord)> {
        let mut records: Vec<(u32, PodRecord)> = self
            .slots
            .iter()
            .filter_map(Result::ok)
            .filter(|r| r.ifindex != 0)
            .map(|r| (r.ifindex, r))
            .collect();
        records.sort_by_key(|(ifindex, _)| *ifindex);
        records
    }
}
