//! The hook's metrics: every call by method and outcome, so a refused or failed ADD
//! (a pod the CNI could not create) is counted. Registered beside the agent's others.

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

type Labels = Vec<(&'static str, &'static str)>;

#[derive(Clone, Debug, Default)]
pub struct HookMetrics {
    /// `network_policy_cni_hook_calls_total{method, outcome}`; outcome is `ok` or the
    /// error kind (`invalid_argument`, `not_ready`, `no_interface`, `enforcement`).
    calls: Family<Labels, Counter>,
}

impl HookMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "network_policy_cni_hook_calls",
            "Calls from the VPC CNI (EnforceNpToPod, DeletePodNp) by outcome",
            self.calls.clone(),
        );
    }

    pub(crate) fn count(&self, method: &'static str, outcome: &'static str) {
        self.calls
            .get_or_create(&vec![("method", method), ("outcome", outcome)])
            .inc();
    }

    /// Calls of `method` that ended with `outcome` so far.
    pub fn calls(&self, method: &'static str, outcome: &'static str) -> u64 {
        self.calls
            .get_or_create(&vec![("method", method), ("outcome", outcome)])
            .get()
    }
}
