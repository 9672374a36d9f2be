//! Kernel event time (CLOCK_MONOTONIC, `bpf_ktime_get_ns`) to UTC wall-clock time.
//! A pair of clock readings gives the offset; it is re-paired periodically so NTP
//! slewing or a clock step shows up within one interval instead of accumulating. The
//! clocks themselves are read through `datapath_common::clock`.

use std::time::{Duration, Instant};

use datapath_common::clock::{monotonic_now_ns, realtime_now_ns};

/// Converts monotonic nanoseconds to Unix milliseconds.
#[derive(Debug, Clone)]
pub struct WallClock {
    /// `CLOCK_REALTIME - CLOCK_MONOTONIC`, in nanoseconds.
    offset_ns: i64,
    /// `None` for a fixed offset (tests).
    repair_every: Option<Duration>,
    last_pair: Instant,
}

impl WallClock {
    /// Pairs the clocks now and again every `repair_every`.
    pub fn system(repair_every: Duration) -> Self {
        Self {
            offset_ns: read_offset_ns(),
            repair_every: Some(repair_every),
            last_pair: Instant::now(),
        }
    }

    /// A clock with a fixed `realtime - monotonic` offset, never re-paired: lets
    /// tests produce exact timestamps.
    pub fn fixed(offset_ns: i64) -> Self {
        Self {
            offset_ns,
            repair_every: None,
            last_pair: Instant::now(),
        }
    }

    /// The current `realtime - monotonic` offset in nanoseconds.
    pub fn offset_ns(&self) -> i64 {
        self.offset_ns
    }

    /// Unix milliseconds of a CLOCK_MONOTONIC time.
    #[inline]
    pub fn unix_ms(&self, monotonic_ns: u64) -> i64 {
        (monotonic_ns as i64)
            .saturating_add(self.offset_ns)
            .div_euclid(1_000_000)
    }

    /// Re-pairs the clocks when the interval has passed; returns whether it did.
    pub fn maybe_repair(&mut self, now: Instant) -> bool {
        match self.repair_every {
            Some(every) if now.saturating_duration_since(self.last_pair) >= every => {
                self.offset_ns = read_offset_ns();
                self.last_pair = now;
                true
            }
            _ => false,
        }
    }
}

/// Reads monotonic, realtime, monotonic and pairs realtime with the midpoint, so the
/// offset's error is at most half the (sub-microsecond) reading window.
fn read_offset_ns() -> i64 {
    let before = monotonic_now_ns() as i64;
    let real = realtime_now_ns() as i64;
    let after = monotonic_now_ns() as i64;
    real - (before + (after - before) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn system_clock_maps_monotonic_now_to_system_time() {
        let clock = WallClock::system(Duration::from_secs(1));
        let got = clock.unix_ms(monotonic_now_ns());
        let want = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((got - want).abs() <= 5, "got {got} want {want}");
    }

    #[test]
    fn fixed_clock_adds_its_offset_and_truncates_to_milliseconds() {
        let clock = WallClock::fixed(1_685_462_732_000_000_000);
        assert_eq!(clock.unix_ms(573_999_999), 1_685_462_732_573);
    }

    #[test]
    fn repairing_waits_for_the_interval() {
        let mut clock = WallClock::system(Duration::from_secs(3600));
        assert!(!clock.maybe_repair(Instant::now()));
        assert!(clock.maybe_repair(Instant::now() + Duration::from_secs(3601)));
        let mut fixed = WallClock::fixed(0);
        assert!(!fixed.maybe_repair(Instant::now() + Duration::from_secs(86_400)));
        assert_eq!(fixed.offset_ns(), 0);
    }
}
