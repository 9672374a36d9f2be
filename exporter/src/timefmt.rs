//! UTC timestamps as `YYYY-MM-DDTHH:MM:SS.mmmZ` without allocation: the date and
//! time of day of a second are built once and kept in a small cache of recent
//! seconds, so the usual line (its second seen just before) and a flow record's
//! `Start` (a second seen up to a minute ago) both skip the calendar arithmetic.

/// Length of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub const TIMESTAMP_LEN: usize = 24;
/// Length of the `YYYY-MM-DDTHH:MM:SS.` prefix a second shares.
const PREFIX_LEN: usize = 20;
/// Seconds cached, direct-mapped by the second's value: a power of two above the
/// spread of seconds one batch of lines names (verdicts now, record starts up to the
/// record interval before). 64 slots of 28 bytes.
const SLOTS: usize = 64;

/// One cached second and its prefix text.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The second, or -1 for an empty slot.
    sec: i64,
    prefix: [u8; PREFIX_LEN],
}

/// Formats Unix milliseconds, caching the `YYYY-MM-DDTHH:MM:SS.` prefix of recent
/// seconds (events arrive nearly in time order, so the cache almost always hits).
#[derive(Debug, Clone)]
pub struct TimestampFormatter {
    slots: Box<[Slot; SLOTS]>,
    text: [u8; TIMESTAMP_LEN],
}

impl Default for TimestampFormatter {
    fn default() -> Self {
        Self {
            slots: Box::new(
                [Slot {
                    sec: -1,
                    prefix: [0; PREFIX_LEN],
                }; SLOTS],
            ),
            text: [0; TIMESTAMP_LEN],
        }
    }
}

impl TimestampFormatter {
    /// Returns the timestamp text of `unix_ms`; times before 1970 print as 1970.
    #[inline]
    pub fn format(&mut self, unix_ms: i64) -> &[u8; TIMESTAMP_LEN] {
        let ms = unix_ms.max(0);
        let sec = ms / 1000;
        let slot = &mut self.slots[sec as usize % SLOTS];
        if slot.sec != sec {
            slot.sec = sec;
            slot.prefix = prefix_of(sec);
        }
        self.text[..PREFIX_LEN].copy_from_slice(&slot.prefix);
        let milli = (ms % 1000) as u32;
        self.text[20] = b'0' + (milli / 100) as u8;
        self.text[21] = b'0' + (milli / 10 % 10) as u8;
        self.text[22] = b'0' + (milli % 10) as u8;
        self.text[23] = b'Z';
        &self.text
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` of Unix second `sec` (not negative).
fn prefix_of(sec: i64) -> [u8; PREFIX_LEN] {
    let days = sec.div_euclid(86_400);
    let secs_of_day = sec.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    let mut t = [0u8; PREFIX_LEN];
    put_digits(&mut t[0..4], year.clamp(0, 9999) as u32);
    t[4] = b'-';
    put_digits(&mut t[5..7], month);
    t[7] = b'-';
    put_digits(&mut t[8..10], day);
    t[10] = b'T';
    put_digits(&mut t[11..13], secs_of_day / 3600);
    t[13] = b':';
    put_digits(&mut t[14..16], secs_of_day / 60 % 60);
    t[16] = b':';
    put_digits(&mut t[17..19], secs_of_day % 60);
    t[19] = b'.';
    t
}

fn put_digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ms: i64) -> String {
        String::from_utf8(TimestampFormatter::default().format(ms).to_vec()).unwrap()
    }

    #[test]
    fn formats_the_eks_guide_example_instant() {
        assert_eq!(text(1_685_462_732_573), "2023-05-30T16:05:32.573Z");
    }

    #[test]
    fn formats_calendar_edges() {
        let rows = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_704_067_199_999, "2023-12-31T23:59:59.999Z"),
            (1_709_164_800_001, "2024-02-29T00:00:00.001Z"),
            (4_102_444_800_000, "2100-01-01T00:00:00.000Z"),
            (-5, "1970-01-01T00:00:00.000Z"),
        ];
        for (ms, want) in rows {
            assert_eq!(text(ms), want, "{ms}");
        }
    }

    #[test]
    fn cached_prefix_is_rebuilt_when_the_second_changes() {
        let mut f = TimestampFormatter::default();
        assert_eq!(
            &f.format(1_685_462_732_573)[..],
            b"2023-05-30T16:05:32.573Z"
        );
        assert_eq!(
            &f.format(1_685_462_732_999)[..],
            b"2023-05-30T16:05:32.999Z"
        );
        assert_eq!(
            &f.format(1_685_462_733_000)[..],
            b"2023-05-30T16:05:33.000Z"
        );
        assert_eq!(
            &f.format(1_685_462_732_001)[..],
            b"2023-05-30T16:05:32.001Z"
        );
    }

    #[test]
    fn seconds_sharing_a_slot_and_far_apart_each_print_their_own_time() {
        let mut f = TimestampFormatter::default();
        let base = 1_685_462_732_573;
        let rows = [
            (base, "2023-05-30T16:05:32.573Z"),
            // 64 s later: the same slot, another second.
            (base + 64_000, "2023-05-30T16:06:36.573Z"),
            (base, "2023-05-30T16:05:32.573Z"),
            // A record's start a minute before its end, then the end again.
            (base - 60_000, "2023-05-30T16:04:32.573Z"),
            (base + 1, "2023-05-30T16:05:32.574Z"),
            (0, "1970-01-01T00:00:00.000Z"),
            (base + 86_400_000, "2023-05-31T16:05:32.573Z"),
        ];
        for (ms, want) in rows {
            assert_eq!(std::str::from_utf8(f.format(ms)).unwrap(), want, "{ms}");
        }
    }
}
