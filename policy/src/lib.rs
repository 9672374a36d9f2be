//! Kubernetes NetworkPolicy semantics: cluster state in, per-pod datapath rule sets and their attribution out, plus ordered diffs.
//!
//! Data flow: `load` (YAML) or the agent builds a `model::ClusterState`;
//! `resolve::Resolver` turns it into per-pod, per-direction LPM entries and a
//! `ids::PolicyTable`; `plan::Planner` turns successive results into ordered
//! `plan::MapOp`s; `maps::MapModel` applies them in memory (tests, evaluators).

pub mod error;
pub mod load;
mod manifest;
pub mod model;

pub use error::{ApplyError, LoadError};
pub use load::{load_dir, load_str};
pub use model::*;
