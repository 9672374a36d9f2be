//! The Kubernetes API as the policy source: watches Namespaces, Pods and
//! NetworkPolicies (or, with `PolicySource::PolicyEndpoint`, Pods and the EKS
//! controller's PolicyEndpoints and ClusterPolicyEndpoints) with kube list and watch
//! calls and publishes `policy::ClusterState` snapshots.
//!
//! Data flow: `client::client` builds a `kube::Client` (in-cluster or `--kubeconfig`);
//! `KubeSource::start` runs one `watch` task per kind, each converting every object
//! into the policy model at once (`convert`, through `policy::load_str`, so API and
//! YAML give equal values) and dropping the API object; a state task applies the
//! changes and publishes coalesced `Arc<ClusterState>` snapshots on a
//! `tokio::sync::watch` channel. Failures are counted (`metrics`) and a watcher failing
//! for too long makes the source blind (`health`, for readiness).
//! `rbac::WATCHED_RESOURCES` lists the API access this takes.

pub mod client;
pub mod convert;
pub mod error;
mod health;
mod metrics;
pub mod rbac;
mod retry;
mod slices;
mod source;
mod watch;

pub use client::{ClientSource, client, config};
pub use convert::{ClusterPolicyEndpointObject, Key, Kind, Object, PolicyEndpointObject, Watched};
pub use error::{ConvertError, ErrorReason, SourceError};
pub use health::{BlindWatcher, SourceHealth};
pub use metrics::SourceMetrics;
pub use rbac::{ApiAccess, GRANTED_VERBS, WATCH_CALLS, WATCHED_RESOURCES};
pub use source::{
    KindStats, KubeSource, KubeSourceHandle, PolicySource, SourceOptions, SourceStats, run,
};
