//! A handle of its own for the periodic kernel-side chores (flushing due DENY/AUDIT
//! folds, reading the counters, sweeping idle conntrack entries): the pinned maps and
//! the pinned `fold_flush` program opened again, so the chores never wait for the
//! enforcer that owns the loaded [`crate::Datapath`].

use std::time::Duration;

use aya::programs::SchedClassifier;
use datapath_common::{Counters, program_names};

use crate::{DatapathError, DatapathMaps, PinLayout};

pub struct Housekeeper {
    maps: DatapathMaps,
    fold_flush: SchedClassifier,
}

impl Housekeeper {
    /// Opens the maps and the fold flush program a loaded datapath pinned under `pins`.
    ///
    /// # Errors
    /// A pin that is missing or not ours.
    pub fn open(pins: &PinLayout) -> Result<Self, DatapathError> {
        let path = pins.progs_dir().join(program_names::FOLD_FLUSH);
        let fold_flush = SchedClassifier::from_pin(&path).map_err(|e| DatapathError::Pin {
            path,
            reason: e.to_string(),
        })?;
        Ok(Self {
            maps: DatapathMaps::open_pinned(pins)?,
            fold_flush,
        })
    }

    /// As [`crate::Datapath::flush_folds`].
    ///
    /// # Errors
    /// A failed map read or program run.
    pub fn flush_folds(&mut self) -> Result<usize, DatapathError> {
        let keys = self.maps.fold_keys()?;
        crate::fold_flush::flush_folds(&self.fold_flush, &keys)?;
        Ok(keys.len())
    }

    /// The kernel counters summed over CPUs.
    ///
    /// # Errors
    /// A failed map read.
    pub fn counters(&self) -> Result<Counters, DatapathError> {
        self.maps.counters()
    }

    /// Removes conntrack entries idle for longer than `idle`; returns how many.
    ///
    /// # Errors
    /// A failed map delete.
    pub fn sweep_conntrack(&mut self, idle: Duration) -> Result<usize, DatapathError> {
        self.maps.sweep_conntrack(idle)
    }

    /// The maps, for chores not listed here.
    pub fn maps(&mut self) -> &mut DatapathMaps {
        &mut self.maps
    }
}
