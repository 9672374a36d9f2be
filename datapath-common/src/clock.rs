//! The clocks the kernel programs stamp times with, read from userspace (`user`
//! feature): `bpf_ktime_get_ns` is CLOCK_MONOTONIC, `bpf_ktime_get_coarse_ns` is
//! CLOCK_MONOTONIC_COARSE. The one place userspace reads them, so conntrack ages, fold
//! windows and event times are compared on the clock the kernel wrote them with.

/// CLOCK_MONOTONIC now, in nanoseconds: the clock `bpf_ktime_get_ns` reads.
#[must_use]
pub fn monotonic_now_ns() -> u64 {
    now_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_MONOTONIC_COARSE now, in nanoseconds: the clock `bpf_ktime_get_coarse_ns`
/// reads (the programs' conntrack, fold and event times); up to one tick behind
/// [`monotonic_now_ns`].
#[must_use]
pub fn coarse_monotonic_now_ns() -> u64 {
    now_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// CLOCK_REALTIME now, in nanoseconds since the Unix epoch: what a monotonic time is
/// paired with to become wall-clock time.
#[must_use]
pub fn realtime_now_ns() -> u64 {
    now_ns(libc::CLOCK_REALTIME)
}

fn now_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the three clock ids above always exist
    // on Linux, so the call cannot fail and only writes `ts`.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_clock_never_runs_ahead_of_the_fine_one() {
        let coarse = coarse_monotonic_now_ns();
        let fine = monotonic_now_ns();
        assert!(coarse <= fine, "coarse {coarse} after fine {fine}");
        assert!(coarse > 0);
    }

    #[test]
    fn monotonic_time_does_not_go_back() {
        let first = monotonic_now_ns();
        let second = monotonic_now_ns();
        assert!(second >= first, "{second} before {first}");
    }

    #[test]
    fn realtime_is_the_unix_clock() {
        extern crate std;
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_nanos() as u64;
        let ours = realtime_now_ns();
        // Both read CLOCK_REALTIME; a second covers any scheduling between the reads.
        assert!(ours.abs_diff(unix) < 1_000_000_000, "{ours} vs {unix}");
    }
}
