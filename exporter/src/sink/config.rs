//! File-sink settings, with the incumbent's defaults, validated once at start-up.

use std::path::Path;
use std::time::Duration;

use super::names::parse_rotated_name;
use crate::error::ExporterError;

/// Where flow lines go unless configured otherwise (the EKS guide's path).
pub const DEFAULT_FLOW_LOG_PATH: &str = "/var/log/aws-routed-eni/network-policy-agent.log";
/// Size at which the live file is rotated (the incumbent's 200 MB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 200 * 1024 * 1024;
/// Rotated files kept (the incumbent's 8).
pub const DEFAULT_MAX_BACKUPS: usize = 8;
/// Rotated files older than this are deleted (the incumbent's 30 days).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// A live file is never rotated younger than this, so a tail reader that rescans the
/// directory every few seconds always discovers it.
pub const DEFAULT_MIN_FILE_AGE: Duration = Duration::from_secs(30);
/// The tail input's `Refresh_Interval` in the shipped Fluent Bit configuration
/// (`fluent-bit/fluent-bit.conf` and `.yaml`; a test there keeps them equal): how often
/// Fluent Bit rescans the directory for a new live file.
pub const FLUENT_BIT_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// A rotated file is compressed only this long after its rotation, so tail readers
/// finish its end first (Fluent Bit's Rotate_Wait is 5 s).
pub const DEFAULT_COMPRESS_GRACE: Duration = Duration::from_secs(60);
/// Lines reach the file at most this long after they were formatted.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes of whole lines collected before one `write(2)`.
pub const DEFAULT_WRITE_GROUP_BYTES: usize = 256 * 1024;
/// Largest accepted write group.
pub const MAX_WRITE_GROUP_BYTES: usize = 16 * 1024 * 1024;
/// Smallest accepted rotation size.
pub const MIN_MAX_FILE_BYTES: u64 = 4096;

/// File-sink settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    pub max_file_bytes: u64,
    pub max_backups: usize,
    pub max_age: Duration,
    pub min_file_age: Duration,
    /// Gzip rotated files (after `compress_grace`).
    pub compress: bool,
    pub compress_grace: Duration,
    pub flush_interval: Duration,
    pub write_group_bytes: usize,
}

impl Default for FileSinkConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_backups: DEFAULT_MAX_BACKUPS,
            max_age: DEFAULT_MAX_AGE,
            min_file_age: DEFAULT_MIN_FILE_AGE,
            compress: true,
            compress_grace: DEFAULT_COMPRESS_GRACE,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            write_group_bytes: DEFAULT_WRITE_GROUP_BYTES,
        }
    }
}

impl FileSinkConfig {
    /// Checks the settings that would make the sink misbehave.
    ///
    /// # Errors
    /// [`ExporterError::InvalidSinkConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ExporterError> {
        let bad = |field, reason| Err(ExporterError::InvalidSinkConfig { field, reason });
        if self.max_file_bytes < MIN_MAX_FILE_BYTES {
            return bad("max_file_bytes", "must be at least 4096");
        }
        if self.write_group_bytes == 0 || self.write_group_bytes > MAX_WRITE_GROUP_BYTES {
            return bad("write_group_bytes", "must be between 1 and 16 MiB");
        }
        if self.flush_interval.is_zero() {
            return bad("flush_interval", "must be positive");
        }
        if self.max_age.is_zero() {
            return bad("max_age", "must be positive");
        }
        Ok(())
    }
}

/// Refuses an operational-log path that would mix with flow lines: the flow-log
/// file itself, or a file in its directory that the Fluent Bit glob of the EKS guide
/// (`<live stem>*.log`) or the rotated-name contract would pick up.
///
/// # Errors
/// [`ExporterError::OperationalLogCollides`] naming both paths.
pub fn ensure_operational_log_apart(
    operational_log: &Path,
    flow_log: &Path,
) -> Result<(), ExporterError> {
    let collides = || ExporterError::OperationalLogCollides {
        operational_log: operational_log.into(),
        flow_log: flow_log.into(),
    };
    if operational_log == flow_log {
        return Err(collides());
    }
    let (Some(op_dir), Some(op_name), Some(flow_dir), Some(flow_name)) = (
        operational_log.parent(),
        operational_log.file_name().and_then(|n| n.to_str()),
        flow_log.parent(),
        flow_log.file_name().and_then(|n| n.to_str()),
    ) else {
        return Ok(());
    };
    let same_dir = op_dir == flow_dir
        || matches!((op_dir.canonicalize(), flow_dir.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if !same_dir {
        return Ok(());
    }
    let stem = flow_name.strip_suffix(".log").unwrap_or(flow_name);
    let glob_match = op_name.starts_with(stem) && op_name.ends_with(".log");
    if op_name == flow_name || glob_match || parse_rotated_name(flow_name, op_name).is_some() {
        return Err(collides());
    }
    Ok(())
}

/// The start-up warning for a minimum file age below the shipped Fluent Bit
/// configuration's refresh interval; `None` when the age is at least that interval.
pub fn min_file_age_warning(min_file_age: Duration) -> Option<String> {
    (min_file_age < FLUENT_BIT_REFRESH_INTERVAL).then(|| {
        format!(
            "--log-file-min-age {min_file_age:?} is below the Refresh_Interval of the shipped Fluent Bit configuration ({FLUENT_BIT_REFRESH_INTERVAL:?}): a live file can be rotated away before Fluent Bit rescans the directory and sees it, and Fluent Bit then never reads its lines (the agent's own CloudWatch shipper is not affected); keep it at least {FLUENT_BIT_REFRESH_INTERVAL:?} (default {DEFAULT_MIN_FILE_AGE:?})"
        )
    })
}

/// Logs [`min_file_age_warning`] at warn, once, at start-up; returns whether it did.
pub fn warn_if_min_file_age_below_tailer_refresh(min_file_age: Duration) -> bool {
    let Some(text) = min_file_age_warning(min_file_age) else {
        return false;
    };
    tracing::warn!(min_file_age = ?min_file_age, refresh_interval = ?FLUENT_BIT_REFRESH_INTERVAL, "{text}");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimum_file_age_below_the_fluent_bit_refresh_interval_is_warned_about() {
        for age in [0, 1, 4] {
            let text = min_file_age_warning(Duration::from_secs(age)).expect("warned");
            assert!(text.contains("Refresh_Interval"), "{text}");
            assert!(text.contains("never reads its lines"), "{text}");
        }
        assert!(min_file_age_warning(FLUENT_BIT_REFRESH_INTERVAL).is_none());
        assert!(min_file_age_warning(DEFAULT_MIN_FILE_AGE).is_none());
        assert!(warn_if_min_file_age_below_tailer_refresh(
            Duration::from_secs(1)
        ));
        assert!(!warn_if_min_file_age_below_tailer_refresh(
            DEFAULT_MIN_FILE_AGE
        ));
    }

    #[test]
    fn operational_logs_may_not_share_the_flow_file_or_its_glob() {
        let flow = Path::new("/var/log/aws-routed-eni/network-policy-agent.log");
        for bad in [
            "/var/log/aws-routed-eni/network-policy-agent.log",
            "/var/log/aws-routed-eni/network-policy-agent-ops.log",
            "/var/log/aws-routed-eni/network-policy-agent.log.00000003",
        ] {
            assert!(
                matches!(
                    ensure_operational_log_apart(Path::new(bad), flow),
                    Err(ExporterError::OperationalLogCollides { .. })
                ),
                "{bad}"
            );
        }
        for good in [
            "/var/log/aws-routed-eni/netpol-agent-ops.log",
            "/var/log/other/network-policy-agent-ops.log",
        ] {
            assert!(
                ensure_operational_log_apart(Path::new(good), flow).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn defaults_are_the_incumbents_and_valid() {
        let c = FileSinkConfig::default();
        assert_eq!((c.max_file_bytes, c.max_backups), (200 * 1024 * 1024, 8));
        assert_eq!(c.max_age, Duration::from_secs(2_592_000));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn limits_are_accepted_at_the_edge_and_refused_one_past() {
        let at = FileSinkConfig {
            max_file_bytes: MIN_MAX_FILE_BYTES,
            write_group_bytes: MAX_WRITE_GROUP_BYTES,
            ..Default::default()
        };
        assert!(at.validate().is_ok());
        let small = FileSinkConfig {
            max_file_bytes: MIN_MAX_FILE_BYTES - 1,
            ..Default::default()
        };
        assert!(matches!(
            small.validate(),
            Err(ExporterError::InvalidSinkConfig {
                field: "max_file_bytes",
                ..
            })
        ));
        let big = FileSinkConfig {
            write_group_bytes: MAX_WRITE_GROUP_BYTES + 1,
            ..Default::default()
        };
        assert!(matches!(
            big.validate(),
            Err(ExporterError::InvalidSinkConfig {
                field: "write_group_bytes",
                ..
            })
        ));
        let zero = FileSinkConfig {
            flush_interval: Duration::ZERO,
            ..Default::default()
        };
        assert!(matches!(
            zero.validate(),
            Err(ExporterError::InvalidSinkConfig {
                field: "flush_interval",
                ..
            })
        ));
    }
}
