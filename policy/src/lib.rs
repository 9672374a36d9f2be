//! Kubernetes NetworkPolicy semantics: cluster state in, per-pod datapath rule sets and their attribution out, plus ordered diffs.
//!
//! Data flow: `load` (YAML) or the agent builds a `model::ClusterState`;
//! `resolve::Resolver` turns it into per-pod, per-direction LPM entries and a
//! `ids::PolicyTable`; `plan::Planner` turns successive results into ordered
//! `plan::MapOp`s; `maps::MapModel` applies them in memory (tests, evaluators).
//!
//! # Examples
//! ```
//! use policy::{EnforcingMode, MapModel, Planner, ResolveOptions, Resolver, load_str};
//!
//! let state = load_str("demo.yaml", r#"
//! apiVersion: v1
//! kind: Pod
//! metadata: {name: web, namespace: shop, labels: {app: web}}
//! spec: {nodeName: node-1}
//! status: {phase: Running, podIP: 10.0.0.5}
//! ---
//! apiVersion: networking.k8s.io/v1
//! kind: NetworkPolicy
//! metadata: {name: deny-all, namespace: shop}
//! spec: {podSelector: {}}
//! "#).unwrap();
//! let options = ResolveOptions { node_name: "node-1".into(), node_addresses: vec![], mode: EnforcingMode::Standard };
//! let mut resolver = Resolver::new();
//! let mut planner = Planner::new();
//! let ops = planner.plan(&resolver.resolve(&state, &options));
//! let mut maps = MapModel::new();
//! maps.apply(&ops).unwrap();
//! let web = policy::ObjectRef::new("shop", "web");
//! let verdict = maps.decide(&web, policy::Direction::Ingress, "10.0.0.9".parse().unwrap(), 6, 80);
//! assert!(!verdict.is_accept());
//! // Nothing changed: nothing to write.
//! assert!(planner.plan(&resolver.resolve(&state, &options)).is_empty());
//! ```

pub mod cluster;
pub mod cluster_endpoints;
mod cluster_load;
mod compile;
pub mod endpoints;
pub mod error;
pub mod explain;
pub mod ids;
pub mod lint;
pub mod load;
mod manifest;
pub mod maps;
pub mod model;
pub mod plan;
mod prefixes;
pub mod resolve;
mod slices;
pub mod tiers;

pub use cluster::{
    ClusterAction, ClusterNetworkPolicy, ClusterPeer, ClusterRule, ClusterRuleRef, NamespacedPods,
    Tier,
};
pub use cluster_endpoints::{ClusterPolicyEndpoint, load_cluster_policy_endpoint};
pub use cluster_load::{CLUSTER_POLICY_API_VERSION, CLUSTER_POLICY_KIND};
pub use endpoints::{PolicyEndpoint, load_policy_endpoint};
pub use error::{ApplyError, LoadError};
pub use ids::{
    NO_POLICY_ID, NODE_LOCAL_NAME, NODE_LOCAL_POLICY_ID, PolicyIdTarget, PolicyTable, RuleRef,
};
pub use load::{DocumentLoad, load_dir, load_documents, load_str};
pub use maps::MapModel;
pub use model::*;
pub use plan::{MapOp, Planner, initial_pod_record};
pub use resolve::{
    DirectionRules, EnforcingMode, PodState, ResolveOptions, Resolved, ResolvedPod, Resolver,
    Unenforceable, resolve,
};
pub use tiers::{DecidingTier, TierDecision, TierIssue, Tiers, resolve_tiers};
