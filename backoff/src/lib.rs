//! Capped exponential backoff arithmetic with jitter: the ceiling of the n-th wait
//! (`first * 2^n`, never past `cap`, never overflowing) and a delay drawn below a
//! ceiling. Only the arithmetic: when to reset, which failures wait how long, and how
//! much jitter suits a caller are the callers' retry policies (`k8s-source`'s watchers
//! draw from the upper half of the ceiling, the CloudWatch shipper from all of it).
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! use backoff::{Exponential, jittered};
//!
//! let curve = Exponential::new(Duration::from_millis(100), Duration::from_secs(1));
//! assert_eq!(curve.ceiling(3), Duration::from_millis(800));
//! assert_eq!(curve.ceiling(40), Duration::from_secs(1));
//! // Half jitter: between half the ceiling and the ceiling.
//! assert_eq!(jittered(Duration::from_secs(2), 0.5, 0.0), Duration::from_secs(1));
//! assert_eq!(jittered(Duration::from_secs(2), 0.5, 1.0), Duration::from_secs(2));
//! ```

use std::time::Duration;

use rand::Rng;

/// The ceilings of successive waits: `first`, `2 * first`, `4 * first`, ... up to `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exponential {
    first: Duration,
    cap: Duration,
}

impl Exponential {
    /// Ceilings that start at `first` and double up to `cap` (a `cap` below `first`
    /// caps every ceiling, `first` included).
    #[must_use]
    pub const fn new(first: Duration, cap: Duration) -> Self {
        Self { first, cap }
    }

    /// The first ceiling.
    #[must_use]
    pub const fn first(&self) -> Duration {
        self.first
    }

    /// The largest ceiling.
    #[must_use]
    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// The ceiling of wait number `attempt` (0 for the first): `min(cap, first * 2^attempt)`,
    /// saturating at `cap` however large `attempt` grows.
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.first
            .checked_mul(factor)
            .unwrap_or(self.cap)
            .min(self.cap)
    }
}

/// A delay below `ceiling`: `ceiling * (1 - spread + spread * unit)`, so `unit` 0 gives
/// the shortest (`ceiling * (1 - spread)`) and 1 gives `ceiling`. `spread` 1 is "full
/// jitter" (anything from zero), 0.5 "equal jitter" (the upper half). Both numbers are
/// clamped to `[0, 1]`.
#[must_use]
pub fn jittered(ceiling: Duration, spread: f64, unit: f64) -> Duration {
    let spread = spread.clamp(0.0, 1.0);
    let unit = unit.clamp(0.0, 1.0);
    ceiling.mul_f64(1.0 - spread + spread * unit)
}

/// [`jittered`] with a `unit` drawn uniformly from this thread's random generator.
#[must_use]
pub fn random_jitter(ceiling: Duration, spread: f64) -> Duration {
    jittered(ceiling, spread, rand::thread_rng().gen_range(0.0..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_double_from_the_first_up_to_the_cap() {
        let curve = Exponential::new(100 * MS, 1000 * MS);
        let ceilings: Vec<u128> = (0..6).map(|n| curve.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn ceilings_never_overflow_however_many_attempts() {
        let curve = Exponential::new(Duration::from_secs(1), Duration::from_secs(30));
        for attempt in [31, 32, 64, 1000, u32::MAX] {
            assert_eq!(curve.ceiling(attempt), Duration::from_secs(30), "{attempt}");
        }
        let huge = Exponential::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.ceiling(5), Duration::MAX);
    }

    #[test]
    fn a_cap_below_the_first_caps_every_ceiling() {
        let curve = Exponential::new(500 * MS, 300 * MS);
        assert_eq!(curve.ceiling(0), 300 * MS);
        assert_eq!(curve.ceiling(3), 300 * MS);
    }

    #[test]
    fn jitter_spans_from_the_spread_floor_to_the_ceiling() {
        let ceiling = 1000 * MS;
        let rows = [
            // (spread, unit, expected ms)
            (1.0, 0.0, 0),
            (1.0, 0.25, 250),
            (1.0, 1.0, 1000),
            (0.5, 0.0, 500),
            (0.5, 0.5, 750),
            (0.5, 1.0, 1000),
            (0.0, 0.3, 1000),
            // Out-of-range numbers are clamped.
            (2.0, 0.0, 0),
            (0.5, -1.0, 500),
            (0.5, 7.0, 1000),
        ];
        for (spread, unit, want) in rows {
            assert_eq!(
                jittered(ceiling, spread, unit),
                want * MS,
                "spread {spread} unit {unit}"
            );
        }
    }

    #[test]
    fn full_jitter_is_the_ceiling_scaled_by_the_unit() {
        let ceiling = 100 * MS;
        assert_eq!(
            jittered(ceiling, 1.0, 0.999_999),
            ceiling.mul_f64(0.999_999)
        );
    }

    #[test]
    fn random_jitter_stays_in_range_and_spreads() {
        let ceiling = Duration::from_secs(10);
        let delays: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| random_jitter(ceiling, 0.5)).collect();
        assert!(delays.len() > 10, "no spread: {delays:?}");
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_secs(5) && *d <= ceiling),
            "{delays:?}"
        );
    }
}
