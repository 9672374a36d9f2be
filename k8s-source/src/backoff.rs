//! Exponential backoff between failed API calls, with jitter so that the agents of
//! every node do not retry in step after an API server outage: the base delay
//! doubles from `initial` up to `max` and starts over after any success; each delay
//! is drawn from the upper half of the base (`base/2 ..= base`).

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt; each call doubles the following base.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        jitter(base, 0.5)
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// `base` scaled by a random factor in `1 - spread ..= 1`.
pub(crate) fn jitter(base: Duration, spread: f64) -> Duration {
    let factor = 1.0 - rand::thread_rng().gen_range(0.0..=spread);
    base.mul_f64(factor)
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
    fn jitter_spreads_delays() {
        let delays: std::collections::BTreeSet<Duration> = (0..50)
            .map(|_| jitter(Duration::from_secs(10), 0.5))
            .collect();
        assert!(delays.len() > 10, "no spread: {delays:?}");
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_secs(5) && *d <= Duration::from_secs(10))
        );
    }
}
