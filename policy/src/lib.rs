//! Kubernetes NetworkPolicy semantics: cluster state in, per-pod datapath rule sets and their attribution out, plus ordered diffs.
//!
//! Data flow: `load` (YAML) or the agent builds a `model::ClusterState`;
//! `resolve::Resolver` turns it into per-pod, per-direction LPM entries and a
//! `ids::PolicyTable`; `plan::Planner` turns successive results into ordered
//! `plan::MapOp`s; `maps::MapModel` applies them in memory (tests, evaluators).

mod compile;
pub mod error;
pub mod ids;
pub mod load;
mod manifest;
pub mod maps;
pub mod model;
pub mod plan;
mod prefixes;
pub mod resolve;

pub use error::{ApplyError, LoadError};
pub use ids::{NO_POLICY_ID, NODE_LOCAL_POLICY_ID, PolicyTable, RuleRef};
pub use load::{load_dir, load_str};
pub use maps::MapModel;
pub use model::*;
pub use plan::{MapOp, Planner, initial_pod_record, policy_key};
pub use resolve::{
    EnforcingMode, PodState, ResolveOptions, Resolved, ResolvedPod, Resolver, resolve,
};
