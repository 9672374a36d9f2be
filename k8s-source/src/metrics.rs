//! The source's Prometheus metric: `network_policy_source_errors`, failed API calls
//! and watch ERROR events by watched kind (`namespaces`, `pods`, `networkpolicies`,
//! `policyendpoints`, `clusterpolicyendpoints`) and `ErrorReason`. Every row exists
//! from the start, at zero. A ClusterPolicyEndpoint list answered 404 (CRD absent) is
//! counted as `not_found`, though it is no failure.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::convert::Kind;
use crate::error::ErrorReason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    reason: &'static str,
}

impl ErrorLabels {
    fn new(kind: Kind, reason: ErrorReason) -> Self {
        Self {
            kind: kind.plural(),
            reason: reason.as_str(),
        }
    }
}

/// The source's counters. Clones share them: give one to `KubeSource::start_with_metrics`
/// or `run` and register another with the agent's registry.
#[derive(Clone, Debug)]
pub struct SourceMetrics {
    errors: Family<ErrorLabels, Counter>,
}

impl Default for SourceMetrics {
    fn default() -> Self {
        let errors = Family::<ErrorLabels, Counter>::default();
        for kind in Kind::ALL {
            for reason in ErrorReason::ALL {
                // Create the row at zero so that rates work from the first scrape.
                let _ = errors.get_or_create(&ErrorLabels::new(kind, reason));
            }
        }
        Self { errors }
    }
}

impl SourceMetrics {
    /// Registers `network_policy_source_errors` (exposed as `…_total`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "network_policy_source_errors",
            "Failed Kubernetes API calls and watch ERROR events of the policy source, by watched kind and reason",
            self.errors.clone(),
        );
    }

    /// Errors of `kind` with `reason` so far.
    pub fn errors(&self, kind: Kind, reason: ErrorReason) -> u64 {
        self.errors
            .get_or_create(&ErrorLabels::new(kind, reason))
            .get()
    }

    pub(crate) fn count(&self, kind: Kind, reason: ErrorReason) {
        self.errors
            .get_or_create(&ErrorLabels::new(kind, reason))
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_exposed_by_kind_and_reason_from_zero() {
        let metrics = SourceMetrics::default();
        metrics.count(Kind::NetworkPolicy, ErrorReason::Forbidden);
        metrics.count(Kind::NetworkPolicy, ErrorReason::Forbidden);
        let mut registry = Registry::default();
        metrics.clone().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(
                "network_policy_source_errors_total{kind=\"networkpolicies\",reason=\"forbidden\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("network_policy_source_errors_total{kind=\"pods\",reason=\"gone\"} 0"),
            "{text}"
        );
        assert_eq!(
            metrics.errors(Kind::NetworkPolicy, ErrorReason::Forbidden),
            2
        );
    }
}
