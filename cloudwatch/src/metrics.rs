//! The shipper's counters, readable by the agent's Prometheus registry: batches, events
//! and bytes sent, retries by cause, events dropped by reason, backlog bytes and the time
//! of the last success. Each notable event logs and counts in one place.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::retry::FailureCause;

/// Why events were not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Older than 14 days (or the group's retention) when read: never sent.
    TooOld,
    /// More than 2 hours in the future when read: never sent.
    TooNew,
    /// Reported by the service in `rejectedLogEventsInfo.tooOldLogEventEndIndex`.
    RejectedTooOld,
    /// Reported by the service in `rejectedLogEventsInfo.tooNewLogEventStartIndex`.
    RejectedTooNew,
    /// Reported by the service in `rejectedLogEventsInfo.expiredLogEventEndIndex`.
    RejectedExpired,
    /// A single event the service refused with InvalidParameterException.
    InvalidParameter,
}

impl DropReason {
    /// All reasons, in metric order.
    pub const ALL: [DropReason; 6] = [
        Self::TooOld,
        Self::TooNew,
        Self::RejectedTooOld,
        Self::RejectedTooNew,
        Self::RejectedExpired,
        Self::InvalidParameter,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooOld => "too_old",
            Self::TooNew => "too_new",
            Self::RejectedTooOld => "rejected_too_old",
            Self::RejectedTooNew => "rejected_too_new",
            Self::RejectedExpired => "rejected_expired",
            Self::InvalidParameter => "invalid_parameter",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Why lines were lost before they could be read (`cloudwatch_lines_lost_total{reason}`).
/// Every count is a lower bound: lines written and then overwritten between two looks
/// at a file leave no trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// A file was truncated in place (copytruncate, `: > file`) while the shipper held
    /// part of a line of it.
    Truncated,
    /// A rotated file left the disk before it was read: one line per file, as the agent
    /// never rotates an empty file.
    RotatedOut,
}

impl LossReason {
    /// All reasons, in metric order.
    pub const ALL: [LossReason; 2] = [Self::Truncated, Self::RotatedOut];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::RotatedOut => "rotated_out",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Counters shared by the shipper's tasks (cheap clones of atomics).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// PutLogEvents calls accepted.
    pub batches: Counter,
    /// Events accepted (including those the service then reported as rejected).
    pub events: Counter,
    /// Bytes accepted, counted like the API counts them (message plus 26 per event).
    pub bytes: Counter,
    retries: [Counter; 8],
    dropped: [Counter; 6],
    /// Messages cut to the event size limit.
    pub truncated: Counter,
    /// Files that left the disk (rotated out) before they were shipped.
    pub lost_files: Counter,
    lines_lost: [Counter; 2],
    /// Blank lines skipped (PutLogEvents refuses an empty message).
    pub blank_lines: Counter,
    /// Bytes on disk not acknowledged yet.
    pub backlog_bytes: Gauge<i64, AtomicI64>,
    /// Unix time, in seconds, of the last accepted call (0: never).
    pub last_success_unix_seconds: Gauge<i64, AtomicI64>,
    /// Requests in flight now.
    pub in_flight: Gauge<i64, AtomicI64>,
}

impl Metrics {
    /// The retry counter of one cause.
    pub fn retries(&self, cause: FailureCause) -> &Counter<u64, AtomicU64> {
        let i = FailureCause::ALL
            .iter()
            .position(|c| *c == cause)
            .unwrap_or(0);
        &self.retries[i]
    }

    /// The drop counter of one reason.
    pub fn dropped(&self, reason: DropReason) -> &Counter<u64, AtomicU64> {
        &self.dropped[reason.index()]
    }

    /// Counts dropped events and says so in the operational log.
    pub fn record_drop(&self, reason: DropReason, count: u64) {
        if count == 0 {
            return;
        }
        self.dropped(reason).inc_by(count);
        tracing::warn!(
            reason = reason.as_str(),
            count,
            "flow-log events not delivered to CloudWatch Logs"
        );
    }

    /// The lost-lines counter of one reason.
    pub fn lines_lost(&self, reason: LossReason) -> &Counter<u64, AtomicU64> {
        &self.lines_lost[reason.index()]
    }

    /// Sum of all drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(Counter::get).sum()
    }

    /// Registers every counter under the `cloudwatch_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let reg = registry.sub_registry_with_prefix("cloudwatch");
        reg.register(
            "batches",
            "PutLogEvents calls accepted",
            self.batches.clone(),
        );
        reg.register(
            "events",
            "Events accepted by CloudWatch Logs",
            self.events.clone(),
        );
        reg.register(
            "bytes",
            "Bytes accepted, counted as the API counts them",
            self.bytes.clone(),
        );
        reg.register(
            "truncated_events",
            "Messages cut to the event size limit",
            self.truncated.clone(),
        );
        reg.register(
            "lost_files",
            "Flow-log files rotated out before they were shipped",
            self.lost_files.clone(),
        );
        reg.register(
            "blank_lines",
            "Blank lines skipped: PutLogEvents refuses an empty message",
            self.blank_lines.clone(),
        );
        for reason in LossReason::ALL {
            reg.sub_registry_with_label(("reason".into(), reason.as_str().into()))
                .register(
                    "lines_lost",
                    "Lines lost before they could be read, by reason (a lower bound)",
                    self.lines_lost(reason).clone(),
                );
        }
        reg.register(
            "backlog_bytes",
            "Bytes on disk not acknowledged yet",
            self.backlog_bytes.clone(),
        );
        reg.register(
            "last_success_unix_seconds",
            "Unix time of the last accepted PutLogEvents call",
            self.last_success_unix_seconds.clone(),
        );
        reg.register(
            "in_flight_requests",
            "PutLogEvents calls in flight",
            self.in_flight.clone(),
        );
        for cause in FailureCause::ALL {
            reg.sub_registry_with_label(("cause".into(), cause.as_str().into()))
                .register(
                    "retries",
                    "Requests retried, by cause",
                    self.retries(cause).clone(),
                );
        }
        for reason in DropReason::ALL {
            reg.sub_registry_with_label(("reason".into(), reason.as_str().into()))
                .register(
                    "dropped_events",
                    "Events not delivered, by reason",
                    self.dropped(reason).clone(),
                );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_counters_appear_in_the_text_exposition() {
        let m = Metrics::default();
        m.batches.inc();
        m.retries(FailureCause::Throttled).inc_by(3);
        m.record_drop(DropReason::RejectedTooOld, 2);
        let mut reg = Registry::default();
        m.register(&mut reg);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).expect("encode");
        assert!(text.contains("cloudwatch_batches_total 1"), "{text}");
        assert!(
            text.contains("cloudwatch_retries_total{cause=\"throttled\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("cloudwatch_dropped_events_total{reason=\"rejected_too_old\"} 2"),
            "{text}"
        );
        assert_eq!(m.dropped_total(), 2);
        m.lines_lost(LossReason::Truncated).inc();
        m.blank_lines.inc_by(2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).expect("encode");
        assert!(
            text.contains("cloudwatch_lines_lost_total{reason=\"truncated\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cloudwatch_lines_lost_total{reason=\"rotated_out\"} 0"),
            "{text}"
        );
        assert!(text.contains("cloudwatch_blank_lines_total 2"), "{text}");
    }
}
