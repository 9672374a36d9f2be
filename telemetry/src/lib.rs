//! The process's telemetry endpoints, shared by `netpol-agent` and `cloudwatch-ship`:
//! a [`Metrics`] registry that every crate registers its collectors into (the flow-log
//! pipeline, the enforcer, the Kubernetes source, the CloudWatch shipper, the CNI
//! hook), served on `/metrics` (default `:8162`), and [`Readiness`] served on
//! `/healthz` and `/readyz` (default `:8163`) by [`HttpServers`] on the caller's tokio
//! runtime.

pub mod error;
pub mod http;
pub mod metrics;

pub use error::TelemetryError;
pub use http::{HttpConfig, HttpServers, Readiness};
pub use metrics::Metrics;

#[cfg(test)]
mod tests {
    #[test]
    fn servers_can_move_into_a_spawned_task() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<crate::HttpServers>();
        assert_send::<crate::Readiness>();
    }
}
