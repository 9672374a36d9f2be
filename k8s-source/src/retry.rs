//! The watchers' retry policy: exponential backoff between failed API calls, with
//! jitter so that the agents of every node do not retry in step after an API server
//! outage. The base delay doubles from `initial` up to `max` and starts over after any
//! success; each delay is drawn from the upper half of the base (`base/2 ..= base`).
//! The arithmetic is the shared `backoff` crate's; the policy (when to reset, how much
//! jitter) is ours.

use std::time::Duration;

use backoff::{Exponential, random_jitter};

/// Equal jitter: a delay is at least half its base.
const SPREAD: f64 = 0.5;

#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    curve: Exponential,
    attempt: u32,
}

impl Backoff {
    /// Bases from `initial` doubling up to `max` (a `max` below `initial` is taken as
    /// `initial`).
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            curve: Exponential::new(initial, max.max(initial)),
            attempt: 0,
        }
    }

    /// The delay before the next attempt; each call doubles the following base.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.curve.ceiling(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        random_jitter(base, SPREAD)
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(d: Duration, base_ms: u64) -> bool {
        let ms = d.as_secs_f64() * 1000.0;
        ms >= base_ms as f64 / 2.0 - 0.001 && ms <= base_ms as f64 + 0.001
    }

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_and_reset_after_success() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        for base in [100, 200, 350, 350] {
            let d = b.next_delay();
            assert!(within(d, base), "{d:?} for base {base} ms");
        }
        b.reset();
        let d = b.next_delay();
        assert!(within(d, 100), "{d:?} after reset");
    }

    #[test]
    fn a_max_below_initial_keeps_initial() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_millis(50));
        for _ in 0..3 {
            let d = b.next_delay();
            assert!(within(d, 200), "{d:?}");
        }
    }
}
