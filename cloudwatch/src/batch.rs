//! Request building (pure): gathers events into batches that respect every
//! PutLogEvents limit (count, bytes with per-event overhead, 24 h span) and hands them
//! out sorted by timestamp.

use crate::event::Event;
use crate::limits::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_SPAN_MS};

/// The limits a batch is built to; the API's by default, smaller for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// At most this many events ([`MAX_BATCH_EVENTS`] at most).
    pub max_events: usize,
    /// At most this many bytes counting the overhead ([`MAX_BATCH_BYTES`] at most).
    pub max_bytes: usize,
    /// At most this span between the oldest and the newest event ([`MAX_BATCH_SPAN_MS`] at most).
    pub max_span_ms: i64,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_events: MAX_BATCH_EVENTS,
            max_bytes: MAX_BATCH_BYTES,
            max_span_ms: MAX_BATCH_SPAN_MS,
        }
    }
}

/// Accumulates events until the next one would break a limit.
#[derive(Debug)]
pub struct BatchBuilder {
    limits: BatchLimits,
    events: Vec<Event>,
    bytes: usize,
    min_ts: i64,
    max_ts: i64,
    in_order: bool,
}

impl BatchBuilder {
    /// An empty builder with the given limits.
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits,
            events: Vec::new(),
            bytes: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            in_order: true,
        }
    }

    /// True when `event` can join the batch without breaking a limit.
    pub fn fits(&self, event: &Event) -> bool {
        if self.events.is_empty() {
            return true;
        }
        let min = self.min_ts.min(event.timestamp_ms);
        let max = self.max_ts.max(event.timestamp_ms);
        self.events.len() < self.limits.max_events
            && self.bytes + event.size() <= self.limits.max_bytes
            && max - min <= self.limits.max_span_ms
    }

    /// Adds an event; the caller checked [`Self::fits`] first (an event that does not fit
    /// an empty batch is the caller's bug and is still accepted, so nothing is lost).
    pub fn push(&mut self, event: Event) {
        if event.timestamp_ms < self.max_ts {
            self.in_order = false;
        }
        self.min_ts = self.min_ts.min(event.timestamp_ms);
        self.max_ts = self.max_ts.max(event.timestamp_ms);
        self.bytes += event.size();
        self.events.push(event);
    }

    /// Number of events gathered.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes gathered, counting the per-event overhead.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Hands out the gathered events in timestamp order (stable: equal timestamps keep
    /// file order) and starts a new batch.
    pub fn take(&mut self) -> Vec<Event> {
        let mut events = std::mem::take(&mut self.events);
        if !self.in_order {
            events.sort_by_key(|e| e.timestamp_ms);
        }
        self.bytes = 0;
        self.min_ts = i64::MAX;
        self.max_ts = i64::MIN;
        self.in_order = true;
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::EVENT_OVERHEAD_BYTES;

    fn ev(ts: i64, len: usize) -> Event {
        Event {
            timestamp_ms: ts,
            message: "x".repeat(len),
        }
    }

    #[test]
    fn count_limit_admits_ten_thousand_and_refuses_one_more() {
        let mut b = BatchBuilder::new(BatchLimits::default());
        for i in 0..MAX_BATCH_EVENTS {
            assert!(b.fits(&ev(i as i64, 1)), "event {i} should fit");
            b.push(ev(i as i64, 1));
        }
        assert_eq!(b.len(), 10_000);
        assert!(!b.fits(&ev(0, 1)));
    }

    #[test]
    fn byte_limit_counts_overhead_admits_exactly_the_limit_and_refuses_one_byte_more() {
        let mut b = BatchBuilder::new(BatchLimits::default());
        // 4 events of 262,144 bytes each (message + 26) make exactly 1,048,576.
        let msg = 262_144 - EVENT_OVERHEAD_BYTES;
        for _ in 0..3 {
            b.push(ev(0, msg));
        }
        assert!(b.fits(&ev(0, msg)));
        assert!(!b.fits(&ev(0, msg + 1)));
        b.push(ev(0, msg));
        assert_eq!(b.bytes(), MAX_BATCH_BYTES);
        assert!(
            !b.fits(&ev(0, 0)),
            "a 26-byte empty event is one past the limit"
        );
    }

    #[test]
    fn span_limit_admits_exactly_24h_and_refuses_one_ms_more() {
        let mut b = BatchBuilder::new(BatchLimits::default());
        b.push(ev(1_000, 1));
        assert!(b.fits(&ev(1_000 + MAX_BATCH_SPAN_MS, 1)));
        assert!(!b.fits(&ev(1_000 + MAX_BATCH_SPAN_MS + 1, 1)));
        assert!(
            !b.fits(&ev(999 - MAX_BATCH_SPAN_MS, 1)),
            "the span counts both ways"
        );
    }

    #[test]
    fn take_sorts_by_timestamp_keeping_file_order_for_ties() {
        let mut b = BatchBuilder::new(BatchLimits::default());
        for (ts, m) in [(5, "a"), (3, "b"), (5, "c"), (3, "d")] {
            b.push(Event {
                timestamp_ms: ts,
                message: m.into(),
            });
        }
        let got: Vec<_> = b.take().into_iter().map(|e| e.message).collect();
        assert_eq!(got, ["b", "d", "a", "c"]);
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn smaller_configured_limits_are_honoured() {
        let mut b = BatchBuilder::new(BatchLimits {
            max_events: 2,
            max_bytes: MAX_BATCH_BYTES,
            max_span_ms: MAX_BATCH_SPAN_MS,
        });
        b.push(ev(0, 1));
        b.push(ev(0, 1));
        assert!(!b.fits(&ev(0, 1)));
    }
}
