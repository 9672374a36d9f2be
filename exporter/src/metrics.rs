//! Prometheus text metrics read from [`SharedStats`] at each scrape: the
//! incumbent's drop counters (fed from the kernel counters), events by verdict,
//! losses by stage, lines and bytes written, rotations, housekeeping and lag.
//! Registered into the process's registry ([`register`]), which the `telemetry` crate
//! serves.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::stats::SharedStats;

/// Registers the flow-log pipeline's metrics into `registry`; they read `stats` at
/// each scrape.
pub fn register(registry: &mut Registry, stats: Arc<SharedStats>) {
    registry.register_collector(Box::new(StatsCollector { stats }));
}

#[derive(Debug)]
struct StatsCollector {
    stats: Arc<SharedStats>,
}

/// Names are registered without `_total`; the encoder appends it to counters.
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let c = ConstCounter::new(value);
    let m = enc.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

fn labelled_counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    rows: &[(&'static str, u64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (value, count) in rows {
        let labels = [(label, *value)];
        ConstCounter::new(*count).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    let g = ConstGauge::new(value);
    let m = enc.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

impl Collector for StatsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let k = self.stats.kernel.load();
        let p = self.stats.pipeline.load();
        let h = self.stats.housekeeping.load();
        let ct = self.stats.conntrack.load();
        let e = &mut enc;
        labelled_counter(
            e,
            "network_policy_drop_count",
            "Total number of packets dropped by network policy agent",
            "direction",
            &[
                ("ingress", k.drop_packets[0]),
                ("egress", k.drop_packets[1]),
            ],
        )?;
        labelled_counter(
            e,
            "network_policy_drop_bytes",
            "Total number of bytes dropped by network policy agent",
            "direction",
            &[("ingress", k.drop_bytes[0]), ("egress", k.drop_bytes[1])],
        )?;
        labelled_counter(
            e,
            "network_policy_flow_events",
            "Flow events received from the kernel ring, by verdict",
            "verdict",
            &[
                ("ACCEPT", p.events_accept),
                ("AUDIT", p.events_audit),
                ("DENY", p.events_deny),
            ],
        )?;
        labelled_counter(
            e,
            "network_policy_audit_count",
            "Packets passed that audit-mode policies would have dropped",
            "direction",
            &[
                ("ingress", k.audit_packets[0]),
                ("egress", k.audit_packets[1]),
            ],
        )?;
        labelled_counter(
            e,
            "network_policy_flow_events_lost",
            "Flow events lost, by the stage that lost them",
            "stage",
            &[
                ("kernel_ring", k.events_lost_ring),
                ("disk_full", p.lines_lost_no_space),
                ("write_error", p.lines_lost_write_error),
            ],
        )?;
        labelled_counter(
            e,
            "network_policy_flow_events_filtered",
            "Flow events not logged because of the flow scope, by where they were filtered",
            "stage",
            &[
                ("kernel", k.events_filtered_scope),
                ("userspace", p.events_filtered_scope),
            ],
        )?;
        gauge(
            e,
            "network_policy_conntrack_entries",
            "Conntrack entries alive at the last sweep",
            ct.conntrack_entries as f64,
        )?;
        labelled_counter(
            e,
            "network_policy_conntrack_removed",
            "Conntrack entries gone, by who removed them: ended by the sweep (TCP close or idleness), deleted by the datapath (its pod's new rules deny the flow), or evicted by the kernel's LRU from a full table (never reported as flow records)",
            "by",
            &[
                ("sweep", ct.conntrack_ended),
                ("datapath", ct.conntrack_removed_kernel),
                ("lru_eviction", ct.conntrack_evicted),
            ],
        )?;
        counter(
            e,
            "network_policy_conntrack_inserts",
            "Conntrack entries the datapath created",
            ct.conntrack_inserts,
        )?;
        counter(
            e,
            "network_policy_conntrack_insert_race_packets",
            "Packets no conntrack entry counted: two CPUs opened the same flow at the same instant and the second insert lost",
            ct.conntrack_insert_race_packets,
        )?;
        counter(
            e,
            "network_policy_flow_records",
            "Flow records the conntrack sweep made (periodic and final)",
            ct.records_made,
        )?;
        labelled_counter(
            e,
            "network_policy_flow_records_dropped",
            "Flow records not written, by why: the queue to the pipeline was full, or the compat line format has no record lines",
            "reason",
            &[
                ("queue", ct.records_lost_queue),
                ("compat_format", p.records_skipped_format),
            ],
        )?;
        counter(
            e,
            "network_policy_flow_events_submitted",
            "Flow events the kernel put into the ring",
            k.events_submitted,
        )?;
        counter(
            e,
            "network_policy_flow_log_lines_written",
            "Flow-log lines written to the file",
            p.lines_written,
        )?;
        counter(
            e,
            "network_policy_flow_log_bytes_written",
            "Flow-log bytes written to the file",
            p.bytes_written,
        )?;
        counter(
            e,
            "network_policy_flow_log_rotations",
            "Flow-log file rotations",
            p.rotations,
        )?;
        counter(
            e,
            "network_policy_flow_log_rotation_errors",
            "Flow-log rotations that failed",
            p.rotation_errors,
        )?;
        counter(
            e,
            "network_policy_flow_log_files_compressed",
            "Rotated flow-log files gzipped",
            h.files_compressed,
        )?;
        counter(
            e,
            "network_policy_flow_log_compression_errors",
            "Rotated flow-log files that could not be gzipped",
            h.compression_errors,
        )?;
        counter(
            e,
            "network_policy_flow_log_files_pruned",
            "Rotated flow-log files deleted by count or age",
            h.files_pruned,
        )?;
        gauge(
            e,
            "network_policy_flow_log_lines_pending",
            "Formatted lines waiting for the next write",
            p.lines_pending as f64,
        )?;
        let lag = self.stats.lag_ns.load(std::sync::atomic::Ordering::Relaxed);
        gauge(
            e,
            "network_policy_flow_log_lag_seconds",
            "Time from the kernel timestamp of the last line written to its write",
            lag as f64 / 1e9,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{KernelCounters, PipelineCounters};

    #[test]
    fn text_carries_the_incumbent_drop_counters_by_direction() {
        let stats = Arc::new(SharedStats::default());
        stats.kernel.store(&KernelCounters {
            drop_packets: [5, 7],
            drop_bytes: [500, 700],
            events_lost_ring: 3,
            ..Default::default()
        });
        stats.pipeline.store(&PipelineCounters {
            events_deny: 12,
            lines_lost_no_space: 4,
            ..Default::default()
        });
        let mut registry = Registry::default();
        register(&mut registry, stats);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "network_policy_drop_count_total{direction=\"ingress\"} 5",
            "network_policy_drop_count_total{direction=\"egress\"} 7",
            "network_policy_drop_bytes_total{direction=\"egress\"} 700",
            "network_policy_flow_events_total{verdict=\"DENY\"} 12",
            "network_policy_flow_events_lost_total{stage=\"kernel_ring\"} 3",
            "network_policy_flow_events_lost_total{stage=\"disk_full\"} 4",
            "# TYPE network_policy_flow_log_lag_seconds gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
