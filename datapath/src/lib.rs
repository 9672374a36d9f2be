//! Userspace side of the kernel datapath: embeds the eBPF object built by `build.rs`,
//! loads it with maps pinned under a bpffs directory of ours (versioned by ABI),
//! attaches the classifiers to pod interfaces (TCX, or clsact through netlink),
//! writes pod records and policy entries, reads verdict events from the ring buffer,
//! sweeps conntrack (ending flows and reporting them as flow records, counting what
//! the LRU evicted), flushes DENY folds and reads the kernel counters.
//!
//! # Examples
//!
//! ```no_run
//! use datapath::{Datapath, LoadOptions};
//! let mut dp = Datapath::load(&LoadOptions::default())?;
//! dp.attach("eni1234")?;
//! # Ok::<(), datapath::DatapathError>(())
//! ```

mod attach;
mod entries;
mod error;
mod events;
mod flow_sweep;
mod fold_flush;
pub mod frame_run;
mod housekeeping;
pub mod incumbent;
pub mod links;
mod loader;
mod maps;
mod object;
mod pins;
mod pod_slots;

pub use attach::{AttachMode, interface_name};
pub use error::DatapathError;
pub use events::{EventReader, decode_event};
pub use flow_sweep::{FlowSweeper, RecordOptions, SweepCounts};
pub use housekeeping::Housekeeper;
pub use loader::{DEFAULT_FOLD_ENTRIES, DEFAULT_WAKEUP_THRESHOLD_BYTES, Datapath, LoadOptions};
pub use maps::{ConntrackEntry, DatapathMaps, RuleListId, pinned_pod_records, rule_list};
pub use pins::PinLayout;

pub use datapath_common as abi;
