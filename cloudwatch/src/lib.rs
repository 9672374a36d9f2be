//! CloudWatch Logs shipper: reads the flow-log files from a checkpoint and sends batches
//! at the API limits.
//!
//! Data flow: [`files`] names the set → [`reader`] yields whole lines in order from a
//! [`checkpoint`] → [`event`] makes each line an event → [`batch`] packs them at the
//! [`limits`] → [`shipper`] keeps several calls in flight through [`sink`], retried by the
//! [`retry`] policy (outages warned by [`outage`]), and commits the checkpoint in file order; [`metrics`] counts it all.
//!
//! The agent calls [`Shipper::new`] with a [`ShipperConfig`], registers
//! [`Shipper::metrics`] (see [`Metrics::register`]), and awaits [`Shipper::run`] with a
//! cancellation token; `run` flushes and persists the checkpoint when it is cancelled.
//!
//! Where events go: group `/aws/eks/<cluster>/cluster` (or `/aws/k8s-cluster/cluster`
//! for a self-managed cluster, or the configured one), stream
//! `aws-network-policy-agent-audit-<node name>` (stable, so a restart appends to it).
//! Both are created on demand on the first ResourceNotFoundException. IAM needed:
//! `logs:CreateLogGroup`, `logs:CreateLogStream`, `logs:PutLogEvents`, and
//! `logs:PutRetentionPolicy` only when a retention is configured; never
//! `logs:DescribeLogGroups`.
//!
//! The checkpoint lives beside the files, `<dir>/.<live name>.cloudwatch-checkpoint`.
//! Lines are delivered at least once; duplicates come only from requests whose answer
//! was lost (a reset after the service accepted them, a timeout, a kill). The crate's
//! feature `testkit` adds the fault-injecting proxy and the moto launcher its tests use.
//!
//! Order: CloudWatch Logs orders a stream by timestamp only, and requests run
//! concurrently, so lines with equal timestamps may come back in another order than
//! written; sort by timestamp, then by the flow fields (see the exporter README).

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod event;
pub mod files;
pub mod limits;
pub mod metrics;
pub mod outage;
mod read_loop;
pub mod reader;
pub mod retry;
pub mod shipper;
pub mod sink;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::ShipperConfig;
pub use error::ShipperError;
pub use event::MessageFormat;
pub use metrics::Metrics;
pub use shipper::Shipper;
