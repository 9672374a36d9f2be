//! The enforcement side's metrics: what the agent has applied (the policy source's
//! revision and how long applying took), the pods it cannot bind yet, and the policy
//! documents it refused. Registered beside the flow-log metrics on `/metrics`.

use prometheus_client::{
    metrics::{
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug)]
pub struct EnforcementMetrics {
    /// Local pods whose host interface has not been found.
    pub pods_unbound: Gauge,
    /// The revision of the last state applied (the policy directory's newest
    /// modification time in ns; 0 for the API source).
    pub applied_revision: Gauge,
    /// Seconds each apply took (resolve, plan, map writes, attaches).
    pub apply_duration: Histogram,
    /// Policy documents refused by the source (the others apply).
    pub rejected_documents: Gauge,
}

impl Default for EnforcementMetrics {
    fn default() -> Self {
        Self {
            pods_unbound: Gauge::default(),
            applied_revision: Gauge::default(),
            // 1 ms to ~16 s.
            apply_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            rejected_documents: Gauge::default(),
        }
    }
}

impl EnforcementMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "network_policy_pods_unbound",
            "Local pods whose host interface has not been found (not enforced until it appears)",
            self.pods_unbound.clone(),
        );
        registry.register(
            "network_policy_applied_revision",
            "Revision of the last policy state applied (policy directory: newest modification time in ns)",
            self.applied_revision.clone(),
        );
        registry.register(
            "network_policy_apply_duration_seconds",
            "Time to apply one policy state (resolve, plan, map writes, attaches)",
            self.apply_duration.clone(),
        );
        registry.register(
            "network_policy_rejected_documents",
            "Policy documents the source refused (listed in /readyz; the others apply)",
            self.rejected_documents.clone(),
        );
    }
}
