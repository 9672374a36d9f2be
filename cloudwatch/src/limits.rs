//! The PutLogEvents contract as named constants, each next to the page that states it.
//!
//! Source: <https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html>
//! (batch count, batch bytes, per-event overhead, order, span, age window) and
//! <https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html>
//! (retention values), <https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html>
//! and `API_CreateLogStream.html` (names).

/// At most this many events in one PutLogEvents call (API_PutLogEvents: "The maximum
/// number of log events in a batch is 10,000").
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// At most this many bytes in one call, counted as the sum of each message's UTF-8
/// bytes plus [`EVENT_OVERHEAD_BYTES`] per event (API_PutLogEvents: "The maximum batch
/// size is 1,048,576 bytes").
pub const MAX_BATCH_BYTES: usize = 1_048_576;

/// Bytes added to each event's message when counting a batch's size (API_PutLogEvents:
/// "calculated as the sum of all event messages in UTF-8, plus 26 bytes for each log event").
pub const EVENT_OVERHEAD_BYTES: usize = 26;

/// A batch may not span more than 24 hours between its oldest and newest event
/// (API_PutLogEvents: "A batch of log events in a single request cannot span more than 24 hours").
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 60 * 60 * 1000;

/// Events older than 14 days are rejected (API_PutLogEvents: "None of the log events in
/// the batch can be older than 14 days or older than the retention period of the log group").
pub const MAX_EVENT_AGE_MS: i64 = 14 * 24 * 60 * 60 * 1000;

/// Events more than 2 hours in the future are rejected (API_PutLogEvents: "None of the
/// log events in the batch can be more than 2 hours in the future").
pub const MAX_EVENT_FUTURE_MS: i64 = 2 * 60 * 60 * 1000;

/// The size of one event, message plus overhead. Current documents say 1 MB; older ones
/// said 256 KB (API_PutLogEvents, "Log event size"), so we stay with the conservative one.
pub const MAX_EVENT_BYTES: usize = 262_144;

/// The longest message we send: [`MAX_EVENT_BYTES`] less the per-event overhead.
pub const MAX_MESSAGE_BYTES: usize = MAX_EVENT_BYTES - EVENT_OVERHEAD_BYTES;

/// Appended to a message cut at [`MAX_MESSAGE_BYTES`].
pub const TRUNCATION_MARKER: &str = "...[truncated]";

/// Retention values PutRetentionPolicy accepts, in days (API_PutRetentionPolicy).
pub const RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Group and stream names are 1 to 512 characters (API_CreateLogGroup, API_CreateLogStream).
pub const MAX_NAME_LEN: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_event_fits_in_a_batch() {
        assert_eq!(MAX_MESSAGE_BYTES + EVENT_OVERHEAD_BYTES, MAX_EVENT_BYTES);
        const { assert!(MAX_EVENT_BYTES <= MAX_BATCH_BYTES) };
        assert!(TRUNCATION_MARKER.len() < MAX_MESSAGE_BYTES);
    }

    #[test]
    fn retention_values_are_sorted_and_unique() {
        assert!(RETENTION_DAYS.windows(2).all(|w| w[0] < w[1]));
    }
}
