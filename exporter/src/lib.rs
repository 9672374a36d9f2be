//! Flow-log pipeline: kernel `FlowEvent`s become enriched lines in a rotating file,
//! with every loss counted and exposed as metrics.
//!
//! Data flow, all on the datapath's ring-reader thread except where noted:
//! `FlowEvent` → [`pipeline::Pipeline::on_event`] (scope filter, [`clock`] time
//! conversion, [`enrich`] lookups, [`mod@format`] into a reusable buffer) → write groups
//! of whole lines into the [`sink`] (space reserved before each write, size-based
//! rotation by rename-then-create; gzip and pruning of rotated files on a background
//! thread) → [`stats`] counters, exposed by [`metrics`] (served on `:8162` by the `telemetry`
//! crate's listeners).
//!
//! The line formats and every key's meaning are documented in the crate README.

pub mod clock;
pub mod enrich;
pub mod error;
pub mod format;
pub mod labels;
pub mod timefmt;

pub use enrich::{
    CLUSTER_POLICY_PREFIX, EnrichmentSnapshot, ISOLATED_BY_SEPARATOR, JsonText, PodInfo, PodMap,
    PolicyInfo, PolicyMap, SnapshotHandle, snapshot_handle,
};
pub use error::ExporterError;
pub use format::{FlowScope, LineFormat, LineFormatter};
pub use labels::Tier;
pub mod pipeline;
pub mod sink;
pub mod stats;
pub mod telemetry;

pub use pipeline::{Pipeline, PipelineConfig};
pub use sink::{
    DEFAULT_FLOW_LOG_PATH, FileSinkConfig, ensure_operational_log_apart, list_shipping_order,
    parse_rotated_name,
};
pub use stats::{ConntrackCounters, KernelCounters, PipelineCounters, SharedStats};
pub mod metrics;

#[cfg(test)]
mod tests {
    /// The datapath creates the pipeline on one thread and may move it to its reader.
    #[test]
    fn pipeline_and_stats_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<crate::Pipeline>();
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<crate::SharedStats>();
    }
}
