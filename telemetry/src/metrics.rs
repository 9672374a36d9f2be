//! The registry behind `/metrics`: each crate registers its own collectors or metric
//! families into it (e.g. `exporter::metrics::register`), and a scrape encodes it as
//! Prometheus/OpenMetrics text. Served by [`crate::http`].

use std::fmt;

use prometheus_client::registry::Registry;

/// The metrics registry a process serves.
#[derive(Debug, Default)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Serves `registry` as it is.
    #[must_use]
    pub fn from_registry(registry: Registry) -> Self {
        Self { registry }
    }

    /// The registry, for the crates to add their metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The metrics in Prometheus/OpenMetrics text form.
    ///
    /// # Errors
    /// Only if a registered collector fails to encode.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn what_a_crate_registers_shows_in_the_text() {
        let mut metrics = Metrics::default();
        let counter = Counter::<u64>::default();
        metrics
            .registry_mut()
            .register("example_events", "Events seen", counter.clone());
        counter.inc_by(3);
        let text = metrics.encode().expect("encode");
        assert!(
            text.lines().any(|l| l == "example_events_total 3"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
