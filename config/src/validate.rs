//! Semantic checks of a whole `AgentConfig`: ranges, CloudWatch naming rules, retention
//! days, and settings that only make sense together. Each finding names the setting it is
//! about so the caller can point at where that value came from.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::model::{AgentConfig, defaults};

/// CloudWatch Logs' allowed retention periods, in days (PutRetentionPolicy).
pub const RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Problems (by key) that involve a second setting: a collision, a dependency, a derived
/// name. A file checker skips them when that other value was already rejected.
pub const CROSS_FIELD: &[&str] = &[
    "health_probe_bind_addr",
    "operational_log_file",
    "cluster_name",
    "enable_cloudwatch_logs",
];

/// Longest CloudWatch log group and stream name.
pub const CLOUDWATCH_NAME_MAX: usize = 512;

/// Checks a log group name: 1-512 characters of `[.\-_/#A-Za-z0-9]`.
///
/// # Errors
/// What is wrong with the name.
pub fn check_log_group(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 || len > CLOUDWATCH_NAME_MAX {
        return Err(format!(
            "log group name must be 1 to {CLOUDWATCH_NAME_MAX} characters, got {len}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#')))
    {
        return Err(format!(
            "log group name {name:?} has {bad:?}; allowed are letters, digits and . - _ / #"
        ));
    }
    Ok(())
}

/// Checks a log stream name: 1-512 characters, no `:` or `*`.
///
/// # Errors
/// What is wrong with the name.
pub fn check_log_stream(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 || len > CLOUDWATCH_NAME_MAX {
        return Err(format!(
            "log stream name must be 1 to {CLOUDWATCH_NAME_MAX} characters, got {len}"
        ));
    }
    if let Some(bad) = name.chars().find(|c| matches!(c, ':' | '*')) {
        return Err(format!("log stream name {name:?} must not contain {bad:?}"));
    }
    Ok(())
}

/// Checks a retention period against CloudWatch's allowed list.
///
/// # Errors
/// The allowed values, when `days` is not one.
pub fn check_retention_days(days: u32) -> Result<(), String> {
    if RETENTION_DAYS.contains(&days) {
        Ok(())
    } else {
        let allowed: Vec<String> = RETENTION_DAYS.iter().map(u32::to_string).collect();
        Err(format!(
            "{days} is not a CloudWatch retention period; allowed days are {}",
            allowed.join(", ")
        ))
    }
}

fn check_range(value: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if value < min || value > max {
        Err(format!(
            "{} is outside {} to {}",
            crate::values::format_duration(value),
            crate::values::format_duration(min),
            crate::values::format_duration(max)
        ))
    } else {
        Ok(())
    }
}

/// Largest flow-log file size, in MB (1 TiB).
const LOG_FILE_MAX_SIZE_MB_MAX: u64 = 1024 * 1024;
/// Most rotated flow-log files kept.
const LOG_FILE_MAX_BACKUPS_MAX: u32 = 10_000;
/// The ring buffer's smallest and largest size, in bytes.
const RING_BUFFER_SIZE_RANGE: std::ops::RangeInclusive<u32> = 4096..=1 << 30;

/// What is wrong with `number` as the value of the whole-number setting `key`, in terms
/// of the setting's real range; `None` for other settings or a number in range. Also
/// used for numbers the setting's type cannot hold (`--log-file-max-size=-1`), so those
/// read like any other value out of range.
#[must_use]
pub(crate) fn range_message(key: &str, number: i128) -> Option<String> {
    let within = |range: std::ops::RangeInclusive<i128>| range.contains(&number);
    let message = match key {
        "log_file_max_size" if !within(1..=LOG_FILE_MAX_SIZE_MB_MAX.into()) => {
            format!("{number} MB is outside 1 to {LOG_FILE_MAX_SIZE_MB_MAX} MB")
        }
        "log_file_max_backups" if !within(0..=LOG_FILE_MAX_BACKUPS_MAX.into()) => {
            format!("{number} is outside 0 to {LOG_FILE_MAX_BACKUPS_MAX}")
        }
        "log_file_max_age" if !within(0..=u32::MAX.into()) => {
            format!("{number} days is outside 0 (never) to {}", u32::MAX)
        }
        "ring_buffer_size"
            if !u32::try_from(number)
                .is_ok_and(|n| n.is_power_of_two() && RING_BUFFER_SIZE_RANGE.contains(&n)) =>
        {
            format!(
                "{number} bytes: the ring buffer size must be a power of two from {} to {}",
                RING_BUFFER_SIZE_RANGE.start(),
                RING_BUFFER_SIZE_RANGE.end()
            )
        }
        "policy_hash_entries" => {
            let range = &defaults::POLICY_HASH_ENTRIES_RANGE;
            if within((*range.start()).into()..=(*range.end()).into()) {
                return None;
            }
            format!(
                "{number} entries: must be between {} and {}",
                range.start(),
                range.end()
            )
        }
        "conntrack_cache_table_size" => {
            let range = &defaults::CONNTRACK_CACHE_TABLE_SIZE_RANGE;
            if within((*range.start()).into()..=(*range.end()).into()) {
                return None;
            }
            format!(
                "{number} entries: must be between {} (32K) and {} (1024K), as for the incumbent",
                range.start(),
                range.end()
            )
        }
        "conntrack_cache_cleanup_period" if !within(1..=86_400) => {
            format!("{number}s is outside 1s to 86400s")
        }
        "max_concurrent_reconciles" if !within(1..=u32::MAX.into()) => {
            format!("{number}: must be at least 1 (and at most {})", u32::MAX)
        }
        "cloudwatch_retention_days" if !within(0..=u32::MAX.into()) => {
            let allowed: Vec<String> = RETENTION_DAYS.iter().map(u32::to_string).collect();
            format!(
                "{number} is not a CloudWatch retention period; allowed days are {}",
                allowed.join(", ")
            )
        }
        _ => return None,
    };
    Some(message)
}

/// `path` made absolute (against the current directory) with `.` and `..` resolved as
/// text, then with its directory resolved on disk when it exists (symbolic links).
fn resolved(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    match (out.parent(), out.file_name()) {
        (Some(dir), Some(name)) => match std::fs::canonicalize(dir) {
            Ok(dir) => dir.join(name),
            Err(_) => out,
        },
        _ => out,
    }
}

/// Whether `a` and `b` name the same file: the same path once normalised, or the same
/// file on disk (a hard link, a symbolic link) when both exist.
#[must_use]
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if resolved(a) == resolved(b) {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The operational log file names a file (not a directory) other than the flow-log file.
fn check_operational_log_file(path: &Path, log_file: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    if path.file_name().is_none() || path.as_os_str().as_bytes().ends_with(b"/") || path.is_dir() {
        return Err(format!(
            "{} is a directory, not a file (write e.g. /var/log/netpol-agent/agent.log)",
            path.display()
        ));
    }
    if same_file(path, log_file) {
        return Err(format!(
            "{} is the flow-log file (log_file {}): operational_log_file and log_file must be different files",
            path.display(),
            log_file.display()
        ));
    }
    Ok(())
}

/// Every problem in `config`, as (setting key, message); empty when valid.
#[must_use]
pub fn problems(config: &AgentConfig) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let mut check = |key: &'static str, result: Result<(), String>| {
        if let Err(message) = result {
            out.push((key, message));
        }
    };
    let secs = Duration::from_secs;

    check(
        "log_file",
        if config.log_file.as_os_str().is_empty() {
            Err("empty path".to_string())
        } else {
            Ok(())
        },
    );
    for (key, number) in [
        ("log_file_max_size", i128::from(config.log_file_max_size)),
        ("log_file_max_backups", config.log_file_max_backups.into()),
    ] {
        check(key, range_message(key, number).map_or(Ok(()), Err));
    }
    if let Some(operational) = &config.operational_log_file {
        check(
            "operational_log_file",
            check_operational_log_file(operational, &config.log_file),
        );
    }
    check(
        "log_file_min_age",
        check_range(config.log_file_min_age, Duration::ZERO, secs(3600)),
    );
    check(
        "log_file_compress_grace",
        check_range(config.log_file_compress_grace, Duration::ZERO, secs(86_400)),
    );
    check(
        "flow_log_flush_interval",
        check_range(
            config.flow_log_flush_interval,
            Duration::from_millis(10),
            secs(60),
        ),
    );
    check(
        "flow_record_interval",
        check_range(config.flow_record_interval, Duration::ZERO, secs(86_400)),
    );
    check(
        "deny_fold_window",
        check_range(config.deny_fold_window, Duration::ZERO, secs(60)),
    );
    for (key, number) in [
        ("ring_buffer_size", config.ring_buffer_size.into()),
        ("policy_hash_entries", config.policy_hash_entries.into()),
    ] {
        check(key, range_message(key, number).map_or(Ok(()), Err));
    }
    check(
        "conntrack_cache_cleanup_period",
        check_range(config.conntrack_cache_cleanup_period, secs(1), secs(86_400)),
    );
    check(
        "conntrack_cache_table_size",
        range_message(
            "conntrack_cache_table_size",
            config.conntrack_cache_table_size.into(),
        )
        .map_or(Ok(()), Err),
    );
    check(
        "health_probe_bind_addr",
        if config.health_probe_bind_addr.port == config.metrics_bind_addr.port
            && (config.health_probe_bind_addr.host == config.metrics_bind_addr.host
                || config.health_probe_bind_addr.host.is_none()
                || config.metrics_bind_addr.host.is_none())
        {
            Err(format!(
                "{} collides with metrics_bind_addr {}",
                config.health_probe_bind_addr, config.metrics_bind_addr
            ))
        } else {
            Ok(())
        },
    );
    check(
        "max_concurrent_reconciles",
        if config.max_concurrent_reconciles >= 1 {
            Ok(())
        } else {
            Err("must be at least 1".to_string())
        },
    );
    for (key, value) in [
        ("cluster_name", &config.cluster_name),
        ("node_name", &config.node_name),
        ("cloudwatch_region", &config.cloudwatch_region),
        ("apiserver", &config.apiserver),
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            check(key, Err("empty value (leave it unset instead)".to_string()));
        }
    }
    if let Some(region) = &config.cloudwatch_region {
        check(
            "cloudwatch_region",
            if region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                Ok(())
            } else {
                Err(format!("{region:?} is not a Region name such as us-west-2"))
            },
        );
    }
    if let Some(group) = &config.cloudwatch_log_group {
        check("cloudwatch_log_group", check_log_group(group));
    } else if let Some(cluster) = &config.cluster_name {
        // The group is derived from the cluster name, so the name must make a valid group.
        check(
            "cluster_name",
            check_log_group(&config.effective_log_group()).map_err(|e| {
                format!("cluster name {cluster:?} makes an invalid CloudWatch group: {e}")
            }),
        );
    }
    if let Some(stream) = &config.cloudwatch_log_stream {
        check("cloudwatch_log_stream", check_log_stream(stream));
    }
    if let Some(days) = config.cloudwatch_retention_days {
        check("cloudwatch_retention_days", check_retention_days(days));
    }
    if let Some(endpoint) = &config.cloudwatch_endpoint {
        check(
            "cloudwatch_endpoint",
            match endpoint.split_once("://") {
                Some(("http" | "https", rest)) if !rest.is_empty() => Ok(()),
                _ => Err(format!("{endpoint:?} is not an http:// or https:// URL")),
            },
        );
    }
    check(
        "cloudwatch_flush_interval",
        check_range(
            config.cloudwatch_flush_interval,
            Duration::from_millis(100),
            secs(300),
        ),
    );
    check(
        "bpffs_pin_dir",
        if config.bpffs_pin_dir.is_absolute() {
            Ok(())
        } else {
            Err(format!(
                "{} is not an absolute path",
                config.bpffs_pin_dir.display()
            ))
        },
    );
    if let Some(path) = &config.npa_socket_path {
        check(
            "npa_socket_path",
            if !path.is_absolute() {
                Err(format!("{} is not an absolute path", path.display()))
            } else if path.as_os_str().len() > 107 {
                Err(format!(
                    "{}: a unix socket path holds at most 107 bytes",
                    path.display()
                ))
            } else {
                Ok(())
            },
        );
    }
    let prefix = &config.veth_prefix;
    check(
        "veth_prefix",
        if prefix.is_empty() || prefix.len() > 4 {
            Err(format!(
                "{prefix:?}: 1 to 4 characters (interface names hold 15: the prefix and 11 hex digits)"
            ))
        } else if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            Err(format!("{prefix:?}: letters, digits, '-' and '_' only"))
        } else {
            Ok(())
        },
    );
    if config.enable_cloudwatch_logs && !config.enable_policy_event_logs {
        check(
            "enable_cloudwatch_logs",
            Err("needs enable_policy_event_logs=true (CloudWatch ships the flow-log file), as for the incumbent".to_string()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::BindAddr;

    fn keys(config: &AgentConfig) -> Vec<&'static str> {
        problems(config).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(problems(&AgentConfig::default()), vec![]);
    }

    #[test]
    fn retention_days_accept_exactly_the_cloudwatch_list() {
        for days in RETENTION_DAYS {
            assert_eq!(check_retention_days(*days), Ok(()));
        }
        for days in [0, 2, 4, 31, 366, 3654] {
            assert!(check_retention_days(days).is_err(), "{days}");
        }
    }

    #[test]
    fn log_group_names_follow_cloudwatch_rules_at_the_limits() {
        assert_eq!(check_log_group("/aws/eks/my-cluster/cluster"), Ok(()));
        assert_eq!(check_log_group("a.b-c_d/e#f09"), Ok(()));
        assert_eq!(check_log_group(&"a".repeat(512)), Ok(()));
        assert!(check_log_group(&"a".repeat(513)).is_err());
        assert!(check_log_group("").is_err());
        assert!(check_log_group("has space").is_err());
        assert!(check_log_group("colon:").is_err());
    }

    #[test]
    fn log_stream_names_follow_cloudwatch_rules_at_the_limits() {
        assert_eq!(
            check_log_stream("aws-network-policy-agent-audit-node 1"),
            Ok(())
        );
        assert_eq!(check_log_stream(&"s".repeat(512)), Ok(()));
        assert!(check_log_stream(&"s".repeat(513)).is_err());
        assert!(check_log_stream("").is_err());
        assert!(check_log_stream("a:b").is_err());
        assert!(check_log_stream("a*b").is_err());
    }

    #[test]
    fn each_bad_value_is_reported_under_its_own_key() {
        let config = AgentConfig {
            log_file_max_size: 0,
            ring_buffer_size: 5000,
            policy_hash_entries: 10,
            conntrack_cache_table_size: 1000,
            conntrack_cache_cleanup_period: Duration::ZERO,
            health_probe_bind_addr: BindAddr::any(8162),
            cloudwatch_retention_days: Some(2),
            cloudwatch_log_stream: Some("a:b".into()),
            cloudwatch_endpoint: Some("localhost:4566".into()),
            enable_cloudwatch_logs: true,
            ..AgentConfig::default()
        };
        assert_eq!(
            keys(&config),
            vec![
                "log_file_max_size",
                "ring_buffer_size",
                "policy_hash_entries",
                "conntrack_cache_cleanup_period",
                "conntrack_cache_table_size",
                "health_probe_bind_addr",
                "cloudwatch_log_stream",
                "cloudwatch_retention_days",
                "cloudwatch_endpoint",
                "enable_cloudwatch_logs",
            ]
        );
    }

    #[test]
    fn a_cluster_name_that_makes_a_bad_group_is_reported() {
        let config = AgentConfig {
            cluster_name: Some("my cluster".into()),
            ..AgentConfig::default()
        };
        assert_eq!(keys(&config), vec!["cluster_name"]);
    }
}
