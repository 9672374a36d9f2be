//! One flow-log line turned into one CloudWatch event: its timestamp, its message body
//! (the JSON line as written, or the incumbent's text) and truncation at the event limit.

use crate::limits::{EVENT_OVERHEAD_BYTES, MAX_MESSAGE_BYTES, TRUNCATION_MARKER};

/// One event as sent: milliseconds since the epoch and the message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub timestamp_ms: i64,
    /// The message body.
    pub message: String,
}

impl Event {
    /// The bytes this event counts for in a batch: message bytes plus the fixed overhead.
    pub fn size(&self) -> usize {
        self.message.len() + EVENT_OVERHEAD_BYTES
    }
}

/// The message body sent for each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageFormat {
    /// The JSON line as written (CloudWatch Logs Insights discovers its fields).
    #[default]
    Json,
    /// The incumbent's `Node: …;SIP: …;SPORT: …;DIP: …;DPORT: …;PROTOCOL: …;PolicyVerdict: …`.
    Incumbent,
}

const TIMESTAMP_KEY: &[u8] = b"\"timestamp\":\"";

/// Finds `"timestamp":"YYYY-MM-DDTHH:MM:SS.mmmZ"` in a JSON line and returns it in
/// milliseconds since the epoch, or `None` when absent or malformed.
pub fn parse_timestamp(line: &[u8]) -> Option<i64> {
    let start = find(line, TIMESTAMP_KEY)? + TIMESTAMP_KEY.len();
    let t = line.get(start..start + 24)?;
    let punct = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ];
    if punct.iter().any(|&(i, c)| t[i] != c) {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        t[range].iter().try_fold(0i64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while let Some(pos) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + pos;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// A message body built from one line, and whether it had to be truncated.
#[derive(Debug)]
pub struct Message {
    /// The body to send.
    pub text: String,
    /// True when the line was longer than [`MAX_MESSAGE_BYTES`] and was cut.
    pub truncated: bool,
}

/// Builds the message body of one line (without its trailing newline).
pub fn build_message(line: &[u8], format: MessageFormat, node: &str) -> Message {
    let text = match format {
        MessageFormat::Json => match std::str::from_utf8(line) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(line).into_owned(),
        },
        MessageFormat::Incumbent => {
            incumbent_text(line, node).unwrap_or_else(|| String::from_utf8_lossy(line).into_owned())
        }
    };
    truncate(text)
}

fn truncate(mut text: String) -> Message {
    if text.len() <= MAX_MESSAGE_BYTES {
        return Message {
            text,
            truncated: false,
        };
    }
    let mut cut = MAX_MESSAGE_BYTES - TRUNCATION_MARKER.len();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(TRUNCATION_MARKER);
    Message {
        text,
        truncated: true,
    }
}

/// The field names a flow line may use for each part of the incumbent's text: ours first,
/// then the incumbent's v1.0 JSON names.
const SRC_IP: &[&str] = &["src_ip", "Src IP", "srcIp", "sip"];
const SRC_PORT: &[&str] = &["src_port", "Src Port", "srcPort", "sport"];
const DST_IP: &[&str] = &["dst_ip", "dest_ip", "Dest IP", "dstIp", "dip"];
const DST_PORT: &[&str] = &["dst_port", "dest_port", "Dest Port", "dstPort", "dport"];
const PROTO: &[&str] = &["proto", "protocol", "Proto"];
const VERDICT: &[&str] = &["verdict", "Verdict", "policy_verdict"];

fn incumbent_text(line: &[u8], node: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let obj = value.as_object()?;
    let field = |names: &[&str]| -> String {
        names
            .iter()
            .find_map(|n| obj.get(*n))
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    Some(format!(
        "Node: {node};SIP: {};SPORT: {};DIP: {};DPORT: {};PROTOCOL: {};PolicyVerdict: {}",
        field(SRC_IP),
        field(SRC_PORT),
        field(DST_IP),
        field(DST_PORT),
        field(PROTO),
        field(VERDICT)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_is_parsed_to_epoch_millis() {
        let line = br#"{"level":"info","timestamp":"2023-05-30T16:05:32.573Z","msg":"x"}"#;
        assert_eq!(parse_timestamp(line), Some(1_685_462_732_573));
        assert_eq!(
            parse_timestamp(br#"{"timestamp":"1970-01-01T00:00:00.000Z"}"#),
            Some(0)
        );
        assert_eq!(
            parse_timestamp(br#"{"timestamp":"2024-02-29T23:59:59.999Z"}"#),
            Some(1_709_251_199_999)
        );
    }

    #[test]
    fn malformed_or_missing_timestamp_is_none() {
        for line in [
            &br#"{"msg":"no time"}"#[..],
            br#"{"timestamp":"2023-05-30 16:05:32.573Z"}"#,
            br#"{"timestamp":"2023-13-30T16:05:32.573Z"}"#,
            br#"{"timestamp":"2023-05-30T16:05:3"#,
            br#"{"timestamp":"2023-05-30T16:0x:32.573Z"}"#,
        ] {
            assert_eq!(
                parse_timestamp(line),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn json_body_is_the_line_as_written() {
        let line = br#"{"timestamp":"2023-05-30T16:05:32.573Z","verdict":"DENY"}"#;
        let m = build_message(line, MessageFormat::Json, "node-a");
        assert_eq!(m.text.as_bytes(), line);
        assert!(!m.truncated);
    }

    #[test]
    fn incumbent_body_is_derived_from_the_json_fields() {
        let ours = br#"{"timestamp":"2023-05-30T16:05:32.573Z","src_ip":"10.0.0.1","src_port":38971,"dst_ip":"10.0.0.2","dst_port":53,"proto":"UDP","verdict":"ACCEPT"}"#;
        let m = build_message(ours, MessageFormat::Incumbent, "ip-10-0-0-9");
        assert_eq!(
            m.text,
            "Node: ip-10-0-0-9;SIP: 10.0.0.1;SPORT: 38971;DIP: 10.0.0.2;DPORT: 53;PROTOCOL: UDP;PolicyVerdict: ACCEPT"
        );
        let theirs = br#"{"level":"info","timestamp":"2023-05-30T16:05:32.573Z","Src IP":"192.168.87.155","Src Port":38971,"Dest IP":"64.6.160","Dest Port":53,"Proto":"UDP","Verdict":"DENY"}"#;
        let m = build_message(theirs, MessageFormat::Incumbent, "n");
        assert_eq!(
            m.text,
            "Node: n;SIP: 192.168.87.155;SPORT: 38971;DIP: 64.6.160;DPORT: 53;PROTOCOL: UDP;PolicyVerdict: DENY"
        );
    }

    #[test]
    fn message_at_the_limit_is_kept_and_one_past_is_truncated_with_marker() {
        let at = "a".repeat(MAX_MESSAGE_BYTES);
        let m = build_message(at.as_bytes(), MessageFormat::Json, "n");
        assert!(!m.truncated);
        assert_eq!(m.text.len(), MAX_MESSAGE_BYTES);

        let past = "a".repeat(MAX_MESSAGE_BYTES + 1);
        let m = build_message(past.as_bytes(), MessageFormat::Json, "n");
        assert!(m.truncated);
        assert_eq!(m.text.len(), MAX_MESSAGE_BYTES);
        assert!(m.text.ends_with(TRUNCATION_MARKER));
    }

    #[test]
    fn truncation_never_splits_a_character() {
        let past = "é".repeat(MAX_MESSAGE_BYTES);
        let m = build_message(past.as_bytes(), MessageFormat::Json, "n");
        assert!(m.truncated);
        assert!(m.text.len() <= MAX_MESSAGE_BYTES);
        assert!(m.text.ends_with(TRUNCATION_MARKER));
    }
}
