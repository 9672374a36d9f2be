//! Operational-log events of the pipeline (tracing, never the flow file): a
//! periodic warning when any loss counter moved since the last one.

use std::time::{Duration, Instant};

use crate::stats::{KernelCounters, PipelineCounters};

/// Tracks loss counters and warns at most once per interval when they moved.
#[derive(Debug)]
pub struct LossWatch {
    interval: Duration,
    last_check: Option<Instant>,
    last: [u64; 3],
}

impl LossWatch {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_check: None,
            last: [0; 3],
        }
    }

    /// Warns when the interval has passed and a loss counter moved; returns whether
    /// it warned.
    pub fn check(
        &mut self,
        now: Instant,
        pipeline: &PipelineCounters,
        kernel: &KernelCounters,
    ) -> bool {
        if self
            .last_check
            .is_some_and(|t| now.saturating_duration_since(t) < self.interval)
        {
            return false;
        }
        self.last_check = Some(now);
        let current = [
            kernel.events_lost_ring,
            pipeline.lines_lost_no_space,
            pipeline.lines_lost_write_error,
        ];
        if current == self.last {
            return false;
        }
        let delta: Vec<u64> = current
            .iter()
            .zip(self.last)
            .map(|(c, l)| c.saturating_sub(l))
            .collect();
        self.last = current;
        tracing::warn!(
            lost_kernel_ring = delta[0],
            lost_disk_full = delta[1],
            lost_write_error = delta[2],
            total_lost_kernel_ring = current[0],
            total_lost_disk_full = current[1],
            total_lost_write_error = current[2],
            "flow-log events lost since the last report"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_only_when_a_counter_moved_and_the_interval_passed() {
        let mut w = LossWatch::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let mut p = PipelineCounters::default();
        let k = KernelCounters::default();
        assert!(!w.check(t0, &p, &k));
        p.lines_lost_no_space = 3;
        assert!(
            !w.check(t0 + Duration::from_secs(1), &p, &k),
            "interval not passed"
        );
        assert!(w.check(t0 + Duration::from_secs(11), &p, &k));
        assert!(
            !w.check(t0 + Duration::from_secs(22), &p, &k),
            "nothing moved"
        );
        let k = KernelCounters {
            events_lost_ring: 1,
            ..Default::default()
        };
        assert!(w.check(t0 + Duration::from_secs(33), &p, &k));
    }
}
