//! Line formats: one event and its resolved names become one line appended to a
//! reusable buffer. [`json`] is the default layout; [`compat`] reproduces the
//! incumbent v1.3 text-in-`msg` layout. [`FlowScope`] decides which verdicts get a
//! line at all.

pub mod compat;
pub mod json;
pub mod write;

use datapath_common::abi::{FlowEvent, VERDICT_ACCEPT};
use datapath_common::record::FlowRecord;
use serde::Deserialize;

use crate::enrich::Resolved;
use crate::timefmt::TimestampFormatter;

/// Which line layout the pipeline writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineFormat {
    /// One JSON object per line, keys of the EKS guide first, then ours.
    #[default]
    Json,
    /// The incumbent v1.3 layout: `Flow Info: …` text inside `msg`.
    #[serde(alias = "compat-v1.3")]
    Compat,
}

/// Which verdicts are written; independent of the operational log level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlowScope {
    /// Every ACCEPT and DENY event.
    #[default]
    All,
    /// DENY events only.
    Deny,
    /// No flow lines (counters and metrics still run).
    None,
}

impl FlowScope {
    /// Whether an event with this verdict gets a line.
    #[inline]
    pub fn admits(self, verdict: u8) -> bool {
        match self {
            FlowScope::All => true,
            FlowScope::Deny => verdict != VERDICT_ACCEPT,
            FlowScope::None => false,
        }
    }
}

impl std::str::FromStr for LineFormat {
    type Err = UnknownSetting;

    /// `json`, or `compat` (alias `compat-v1.3`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "compat" | "compat-v1.3" => Ok(Self::Compat),
            _ => Err(UnknownSetting {
                setting: "flow-log format",
                expected: "json, compat (compat-v1.3)",
            }),
        }
    }
}

impl std::str::FromStr for FlowScope {
    type Err = UnknownSetting;

    /// `all`, `deny` or `none`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Self::All),
            "deny" => Ok(Self::Deny),
            "none" => Ok(Self::None),
            _ => Err(UnknownSetting {
                setting: "flow-log scope",
                expected: "all, deny, none",
            }),
        }
    }
}

/// A setting's text is not one of its words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {setting}; expected one of: {expected}")]
pub struct UnknownSetting {
    pub setting: &'static str,
    pub expected: &'static str,
}

/// Formats events in one layout; keeps the timestamp cache between calls.
#[derive(Debug, Clone, Default)]
pub struct LineFormatter {
    format: LineFormat,
    timestamps: TimestampFormatter,
}

impl LineFormatter {
    pub fn new(format: LineFormat) -> Self {
        Self {
            format,
            timestamps: TimestampFormatter::default(),
        }
    }

    /// Appends one line, ending in `\n`, for `ev` at `unix_ms`.
    #[inline]
    pub fn append(
        &mut self,
        buf: &mut Vec<u8>,
        ev: &FlowEvent,
        unix_ms: i64,
        names: &Resolved<'_>,
    ) {
        let ts = self.timestamps.format(unix_ms);
        match self.format {
            LineFormat::Json => json::append_line(buf, ev, ts, names),
            LineFormat::Compat => compat::append_line(buf, ev, ts, names.tier),
        }
    }

    /// Appends one line for a flow record (`ev` is [`FlowRecord::as_event`]) from
    /// `start_ms` to `end_ms`; false, with nothing appended, in a layout without
    /// record lines (`compat`: the incumbent has none, and its readers would take
    /// one for a verdict).
    #[inline]
    pub fn append_record(
        &mut self,
        buf: &mut Vec<u8>,
        record: &FlowRecord,
        ev: &FlowEvent,
        (start_ms, end_ms): (i64, i64),
        names: &Resolved<'_>,
    ) -> bool {
        if self.format != LineFormat::Json {
            return false;
        }
        let start = *self.timestamps.format(start_ms);
        let end = self.timestamps.format(end_ms);
        json::append_record_line(buf, record, ev, &start, end, names);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath_common::abi::VERDICT_DENY;

    #[test]
    fn settings_parse_from_their_words() {
        assert_eq!("deny".parse::<FlowScope>(), Ok(FlowScope::Deny));
        assert_eq!("compat".parse::<LineFormat>(), Ok(LineFormat::Compat));
        assert_eq!("compat-v1.3".parse::<LineFormat>(), Ok(LineFormat::Compat));
        assert!("DENY".parse::<FlowScope>().is_err());
        assert!("text".parse::<LineFormat>().is_err());
    }

    #[test]
    fn scope_admits_verdicts() {
        assert!(FlowScope::All.admits(VERDICT_ACCEPT) && FlowScope::All.admits(VERDICT_DENY));
        assert!(!FlowScope::Deny.admits(VERDICT_ACCEPT) && FlowScope::Deny.admits(VERDICT_DENY));
        assert!(!FlowScope::None.admits(VERDICT_ACCEPT) && !FlowScope::None.admits(VERDICT_DENY));
    }
}
