//! The crate's error type: every variant names what failed and on what.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("bpffs is not mounted at {path}: mount it with `mount -t bpf bpffs {path}`")]
    BpffsMissing { path: PathBuf },
    #[error("cannot create pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] Box<aya::EbpfError>),
    #[error("program {name} is missing from the eBPF object")]
    MissingProgram { name: &'static str },
    #[error("map {name} is missing from the eBPF object")]
    MissingMap { name: &'static str },
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: Box<aya::maps::MapError>,
    },
    #[error("interface {interface}: {reason}")]
    Interface { interface: String, reason: String },
    #[error("attaching {program} to {interface}: {source}")]
    Attach {
        program: &'static str,
        interface: String,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("pinning {path}: {reason}")]
    Pin { path: PathBuf, reason: String },
    #[error("rule list has {len} rules, more than the {max} a list holds")]
    RuleListTooLong { len: usize, max: usize },
    #[error(
        "interface {ifindex}: no spare pod slot left (all {spare} for large ifindexes are taken)"
    )]
    PodSlotsFull { ifindex: u32, spare: u32 },
    #[error("ifindex {ifindex} names no interface")]
    NoSuchIfindex { ifindex: u32 },
    #[error("policy set {set} is past the largest the policy tries hold ({max})")]
    PolicySetTooLarge { set: u32, max: u32 },
    #[error("netlink ({what}): {reason}")]
    Netlink { what: String, reason: String },
    #[error("ring buffer: {0}")]
    Ring(std::io::Error),
}

impl DatapathError {
    pub(crate) fn map(name: &'static str, source: aya::maps::MapError) -> Self {
        Self::Map {
            name,
            source: Box::new(source),
        }
    }

    pub(crate) fn program(name: &'static str, source: aya::programs::ProgramError) -> Self {
        Self::Program {
            name,
            source: Box::new(source),
        }
    }
}
