//! Outage reporting: one warning when delivery starts failing (the first failed attempt
//! of any request), one when an attempt succeeds again (with the outage's length, the
//! failed attempts and the lines delayed), at most one outage warning per interval so a
//! flapping endpoint cannot flood the log; each attempt's detail stays at debug.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::retry::FailureCause;

/// The shortest time between two outage-start warnings.
pub const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// What the caller logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Delivery started failing (warned).
    Started { cause: FailureCause },
    /// Delivery works again after a warned outage.
    Ended {
        duration: Duration,
        failed_attempts: u64,
        lines_delayed: u64,
    },
}

/// Outage state shared by the delivery tasks.
#[derive(Debug)]
pub struct Outages {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    current: Option<Current>,
    last_warned: Option<Instant>,
    /// Outages not warned because of the interval, since the last warning.
    suppressed: u64,
}

#[derive(Debug)]
struct Current {
    started: Instant,
    failed_attempts: u64,
    lines_delayed: u64,
    warned: bool,
}

impl Default for Outages {
    fn default() -> Self {
        Self::new(WARN_INTERVAL)
    }
}

impl Outages {
    /// At most one outage warning per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// An attempt failed; `lines` are the lines of its request when this is the
    /// request's first failure (0 for later attempts). `Some` when an outage starts and
    /// is to be warned about.
    pub fn failure(&self, now: Instant, cause: FailureCause, lines: u64) -> Option<Report> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cur) = s.current.as_mut() {
            cur.failed_attempts += 1;
            cur.lines_delayed += lines;
            return None;
        }
        let warn = s
            .last_warned
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
        if warn {
            s.last_warned = Some(now);
        } else {
            s.suppressed += 1;
        }
        s.current = Some(Current {
            started: now,
            failed_attempts: 1,
            lines_delayed: lines,
            warned: warn,
        });
        warn.then_some(Report::Started { cause })
    }

    /// An attempt succeeded. `Some` when it ends an outage that was warned about.
    pub fn success(&self, now: Instant) -> Option<Report> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let cur = s.current.take()?;
        cur.warned.then(|| Report::Ended {
            duration: now.saturating_duration_since(cur.started),
            failed_attempts: cur.failed_attempts,
            lines_delayed: cur.lines_delayed,
        })
    }

    /// Outages not warned about (rate limit) since the last warning; resets the count.
    pub fn take_suppressed(&self) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut s.suppressed)
    }

    /// Logs a report at warn.
    pub fn log(&self, report: &Report, operation: &str, detail: &str) {
        match report {
            Report::Started { cause } => {
                let suppressed = self.take_suppressed();
                tracing::warn!(
                    operation,
                    cause = cause.as_str(),
                    error = detail,
                    outages_not_warned = suppressed,
                    "CloudWatch Logs delivery failing; retrying with backoff until it recovers"
                );
            }
            Report::Ended {
                duration,
                failed_attempts,
                lines_delayed,
            } => tracing::warn!(
                seconds = duration.as_secs_f64(),
                failed_attempts,
                lines_delayed,
                "CloudWatch Logs delivery recovered"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_warns_once_at_its_start_and_once_at_its_end_with_its_figures() {
        let o = Outages::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(
            o.failure(t0, FailureCause::Connection, 100),
            Some(Report::Started {
                cause: FailureCause::Connection
            })
        );
        // 27 more failed attempts over 10 s, two more requests failing for the first time.
        for i in 1..28u64 {
            let lines = if i <= 2 { 50 } else { 0 };
            let at = t0 + Duration::from_millis(i * 350);
            assert_eq!(o.failure(at, FailureCause::Server, lines), None);
        }
        assert_eq!(
            o.success(t0 + Duration::from_secs(10)),
            Some(Report::Ended {
                duration: Duration::from_secs(10),
                failed_attempts: 28,
                lines_delayed: 200,
            })
        );
        assert_eq!(o.success(t0 + Duration::from_secs(11)), None, "no outage");
    }

    #[test]
    fn outage_warnings_are_rate_limited_and_suppressed_ones_counted() {
        let o = Outages::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(o.failure(t0, FailureCause::Throttled, 1).is_some());
        assert!(o.success(t0 + Duration::from_secs(1)).is_some());
        // A flap 5 s later: neither its start nor its end is warned.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(o.failure(t1, FailureCause::Throttled, 1), None);
        assert_eq!(o.success(t1 + Duration::from_secs(1)), None);
        // After the interval, the next outage is warned again, counting the one skipped.
        let t2 = t0 + Duration::from_secs(61);
        assert!(o.failure(t2, FailureCause::Timeout, 1).is_some());
        assert_eq!(o.take_suppressed(), 1);
    }
}
