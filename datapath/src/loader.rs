//! Loading: the embedded object with maps pinned by name under our versioned pin
//! directory (re-used when already there), programs loaded and pinned, settings
//! written, and links of a previous agent re-adopted by atomic program replacement.

use std::collections::BTreeMap;

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, RingBuf},
    programs::SchedClassifier,
};
use datapath_common::{Settings, map_names, program_names};

use crate::{
    AttachMode, DatapathError, DatapathMaps, EventReader, PinLayout,
    attach::{self, Attached},
    object::EBPF_OBJECT,
};

/// DENY folds the kernel holds by default (`LoadOptions::fold_entries`).
pub const DEFAULT_FOLD_ENTRIES: u32 = 65_536;

/// Bytes pending in the ring before the kernel wakes the reader, by default
/// (`Settings::wakeup_threshold_bytes`); below it readers poll on a short timer.
pub const DEFAULT_WAKEUP_THRESHOLD_BYTES: u64 = 64 * 1024;

/// How to load the datapath.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub pins: PinLayout,
    /// Ring buffer size in bytes: a power of two and a multiple of the page size.
    pub ring_bytes: u32,
    /// Conntrack LRU entries (the incumbent's `--conntrack-cache-table-size`).
    pub conntrack_entries: u32,
    /// DENY folds the kernel can hold; past it DENY events go out unfolded.
    pub fold_entries: u32,
    /// Entries each policy hash (IPv4, IPv6) holds; past it entries go to the trie
    /// (same verdicts, slower lookups). A hash's buckets cost 16 bytes per entry of
    /// capacity from the start.
    pub policy_hash_entries: u32,
    pub attach_mode: AttachMode,
    pub settings: Settings,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            pins: PinLayout::default(),
            ring_bytes: 1 << 20,
            conntrack_entries: 512 * 1024,
            fold_entries: DEFAULT_FOLD_ENTRIES,
            policy_hash_entries: 1 << 18,
            attach_mode: AttachMode::Auto,
            settings: Settings {
                fold_window_ns: 1_000_000_000,
                wakeup_threshold_bytes: DEFAULT_WAKEUP_THRESHOLD_BYTES,
                ..Settings::default()
            },
        }
    }
}

/// The loaded datapath: programs, typed maps, the event ring, attached interfaces.
pub struct Datapath {
    ebpf: Ebpf,
    pins: PinLayout,
    mode: AttachMode,
    maps: DatapathMaps,
    ring: Option<RingBuf<MapData>>,
    attached: BTreeMap<u32, Attached>,
}

/// Programs attached to pod interfaces.
const POD_PROGRAMS: [&str; 2] = [program_names::POD_INGRESS, program_names::POD_EGRESS];

impl Datapath {
    /// Loads the programs, re-using pinned maps of a previous agent of the same ABI
    /// and re-adopting its links without detaching them.
    ///
    /// # Errors
    /// A missing bpffs, a program the verifier rejects, or a pin that cannot be made.
    pub fn load(opts: &LoadOptions) -> Result<Self, DatapathError> {
        opts.pins.prepare()?;
        let maps_dir = opts.pins.maps_dir();
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&maps_dir)
            .map_max_entries(map_names::EVENTS, opts.ring_bytes)
            .map_max_entries(map_names::CONNTRACK, opts.conntrack_entries)
            .map_max_entries(map_names::FOLDS, opts.fold_entries)
            .map_max_entries(map_names::POLICY_HASH_V4, opts.policy_hash_entries)
            .map_max_entries(map_names::POLICY_HASH_V6, opts.policy_hash_entries)
            .load(EBPF_OBJECT)
            .map_err(|e| DatapathError::Load(Box::new(e)))?;
        for name in [
            program_names::POD_INGRESS,
            program_names::POD_EGRESS,
            program_names::FOLD_FLUSH,
            program_names::NOOP,
        ] {
            let prog = classifier_mut(&mut ebpf, name)?;
            prog.load().map_err(|e| DatapathError::program(name, e))?;
            let pin = opts.pins.progs_dir().join(name);
            if pin.exists() {
                std::fs::remove_file(&pin).map_err(|e| DatapathError::Pin {
                    path: pin.clone(),
                    reason: e.to_string(),
                })?;
            }
            prog.pin(&pin).map_err(|e| DatapathError::Pin {
                path: pin.clone(),
                reason: e.to_string(),
            })?;
        }
        let ring = ebpf
            .take_map(map_names::EVENTS)
            .ok_or(DatapathError::MissingMap {
                name: map_names::EVENTS,
            })
            .and_then(|m| {
                RingBuf::try_from(m).map_err(|e| DatapathError::map(map_names::EVENTS, e))
            })?;
        let mut maps = DatapathMaps::take(&mut ebpf)?;
        maps.set_settings(&opts.settings)?;
        let mut dp = Self {
            ebpf,
            pins: opts.pins.clone(),
            mode: opts.attach_mode,
            maps,
            ring: Some(ring),
            attached: BTreeMap::new(),
        };
        dp.readopt_links()?;
        Ok(dp)
    }

    /// Replaces the program of every pinned link whose interface still exists and
    /// removes the pins of interfaces that are gone.
    fn readopt_links(&mut self) -> Result<(), DatapathError> {
        for (ifindex, program, path) in attach::pinned_links(&self.pins)? {
            if attach::interface_name(ifindex).is_none() {
                std::fs::remove_file(&path).map_err(|e| DatapathError::Pin {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                tracing::info!(
                    ifindex,
                    program,
                    "removed the pin of a link whose interface is gone"
                );
                continue;
            }
            let Some(name) = POD_PROGRAMS.into_iter().find(|n| *n == program) else {
                continue;
            };
            let prog = classifier_mut(&mut self.ebpf, name)?;
            attach::replace_pinned(prog, name, &path)?;
            self.attached.entry(ifindex).or_default().tcx = true;
        }
        Ok(())
    }

    /// Attaches both pod programs to `interface` (the pod's host-side veth). Already
    /// attached interfaces are left as they are.
    ///
    /// # Errors
    /// An unknown interface or a failed attach (the message names both).
    pub fn attach(&mut self, interface: &str) -> Result<u32, DatapathError> {
        let ifindex = attach::ifindex(interface)?;
        if self
            .attached
            .get(&ifindex)
            .is_some_and(|a| a.tcx || a.netlink)
        {
            return Ok(ifindex);
        }
        let use_tcx = self.mode.use_tcx();
        for name in POD_PROGRAMS {
            let path = self.pins.link_path(ifindex, name);
            let prog = classifier_mut(&mut self.ebpf, name)?;
            if use_tcx {
                attach::attach_tcx(prog, name, interface, &path)?;
            } else {
                attach::attach_netlink(prog, name, interface)?;
            }
        }
        let entry = self.attached.entry(ifindex).or_default();
        entry.tcx = use_tcx;
        entry.netlink = !use_tcx;
        Ok(ifindex)
    }

    /// Detaches our programs from `interface` and removes their pins.
    ///
    /// # Errors
    /// An unknown interface or a failed detach.
    pub fn detach(&mut self, interface: &str) -> Result<(), DatapathError> {
        let ifindex = attach::ifindex(interface)?;
        self.detach_ifindex(ifindex, Some(interface))
    }

    /// Detaches our programs from the interface with index `ifindex` (named `interface`),
    /// and removes their pins. Unlike [`Datapath::detach`], never touches another
    /// interface that took the name since.
    ///
    /// # Errors
    /// A failed detach.
    pub fn detach_ifindex_named(
        &mut self,
        ifindex: u32,
        interface: &str,
    ) -> Result<(), DatapathError> {
        let same = attach::ifindex(interface).is_ok_and(|i| i == ifindex);
        self.detach_ifindex(ifindex, same.then_some(interface))
    }

    /// Forgets an interface that is gone (deleted with its pod): its links went with it;
    /// their pins and our bookkeeping go now, so a new interface that reuses the index
    /// is attached afresh.
    ///
    /// # Errors
    /// A pin that cannot be removed.
    pub fn forget_interface(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        self.detach_ifindex(ifindex, None)
    }

    fn detach_ifindex(
        &mut self,
        ifindex: u32,
        interface: Option<&str>,
    ) -> Result<(), DatapathError> {
        let Some(state) = self.attached.remove(&ifindex) else {
            return Ok(());
        };
        if state.tcx {
            for name in POD_PROGRAMS {
                attach::unpin_link(&self.pins.link_path(ifindex, name))?;
            }
        }
        if state.netlink
            && let Some(interface) = interface
        {
            for name in POD_PROGRAMS {
                attach::detach_netlink(name, interface)?;
            }
        }
        Ok(())
    }

    /// Detaches what an agent of another ABI version left attached and removes its
    /// pins (its maps go with their last reference). Call once the maps of this
    /// version hold every pod's state: until then the older programs keep enforcing
    /// beside ours (TCX runs both; a packet passes only if both pass), so an upgrade
    /// leaves no gap. Returns how many links were detached.
    ///
    /// # Errors
    /// A pin that cannot be read or removed (the message names it).
    pub fn retire_other_versions(&mut self) -> Result<usize, DatapathError> {
        let mut detached = 0;
        for dir in self.pins.other_version_dirs() {
            let links = dir.join("links");
            if let Ok(entries) = std::fs::read_dir(&links) {
                for entry in entries.filter_map(Result::ok) {
                    attach::unpin_link(&entry.path())?;
                    detached += 1;
                }
            }
            std::fs::remove_dir_all(&dir).map_err(|e| DatapathError::Pin {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
            tracing::info!(dir = %dir.display(), detached, "retired the pins of another ABI version");
        }
        Ok(detached)
    }

    /// Interfaces our programs are attached to, by ifindex.
    pub fn attached_ifindexes(&self) -> Vec<u32> {
        self.attached.keys().copied().collect()
    }

    pub fn maps(&mut self) -> &mut DatapathMaps {
        &mut self.maps
    }

    pub fn pins(&self) -> &PinLayout {
        &self.pins
    }

    /// A handle of its own for the periodic chores (see [`crate::Housekeeper`]).
    ///
    /// # Errors
    /// A pin that cannot be opened.
    pub fn housekeeper(&self) -> Result<crate::Housekeeper, DatapathError> {
        crate::Housekeeper::open(&self.pins)
    }

    /// The event reader; `None` once taken.
    pub fn take_event_reader(&mut self) -> Option<EventReader> {
        self.ring.take().map(EventReader::new)
    }

    /// A loaded program, for BPF_PROG_TEST_RUN.
    ///
    /// # Errors
    /// [`DatapathError::MissingProgram`] for a name the object lacks.
    pub fn program(&self, name: &'static str) -> Result<&SchedClassifier, DatapathError> {
        self.ebpf
            .program(name)
            .and_then(|p| p.try_into().ok())
            .ok_or(DatapathError::MissingProgram { name })
    }

    /// Sends the pending counts of DENY folds whose window has passed and deletes
    /// folds idle for two windows. Returns the number of folds examined.
    ///
    /// # Errors
    /// A failed map read or program run.
    pub fn flush_folds(&mut self) -> Result<usize, DatapathError> {
        let keys = self.maps.fold_keys()?;
        let prog = self.program(program_names::FOLD_FLUSH)?;
        crate::fold_flush::flush_folds(prog, &keys)?;
        Ok(keys.len())
    }

    /// Detaches every link and removes every pin of this ABI version: enforcement
    /// stops on all interfaces.
    ///
    /// # Errors
    /// A pin that cannot be removed.
    pub fn remove_all(mut self) -> Result<(), DatapathError> {
        let ifindexes: Vec<u32> = self.attached.keys().copied().collect();
        for ifindex in ifindexes {
            let name = attach::interface_name(ifindex);
            self.detach_ifindex(ifindex, name.as_deref())?;
        }
        for (_, _, path) in attach::pinned_links(&self.pins)? {
            attach::unpin_link(&path)?;
        }
        let dir = self.pins.version_dir();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(|e| DatapathError::Pin {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        Ok(())
    }
}

fn classifier_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, DatapathError> {
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or(DatapathError::MissingProgram { name })
}
