//! The table of settings: each `AgentConfig` field with its file key, flag and environment
//! variable, and the two ways a value reaches it: typed from a file node, or parsed from
//! text (environment variables, flags, the add-on's string values).

use std::path::PathBuf;
use std::time::Duration;

use crate::model::AgentConfig;
use crate::node::{Node, Value};
use crate::validate::range_message;
use crate::values::{
    AttachMode, BindAddr, EnforcingMode, FlowLogScope, LineFormat, LogFormat, LogLevel,
    PolicyObjects, parse_bool, parse_duration,
};

/// One setting's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingInfo {
    /// The config-file key and `AgentConfig` field (`log_file_max_size`).
    pub key: &'static str,
    /// The flag, with dashes (`--log-file-max-size`).
    pub flag: &'static str,
    /// The environment variable (`NETPOL_LOG_FILE_MAX_SIZE`, or the incumbent's name).
    pub env: &'static str,
    /// Whether the incumbent has this flag (or variable) under this name.
    pub incumbent: bool,
}

/// A type a setting can hold.
pub(crate) trait SettingValue: Sized {
    /// From text (environment, flags, add-on strings).
    fn from_text(text: &str) -> Result<Self, String>;
    /// From a file value, strictly typed.
    fn from_node(node: &Node) -> Result<Self, String>;
}

fn expected(what: &str, node: &Node) -> String {
    format!("expected {what}, found {}", node.value.describe())
}

impl SettingValue for bool {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_bool(text)
    }
    fn from_node(node: &Node) -> Result<Self, String> {
        match &node.value {
            Value::Bool(b) => Ok(*b),
            Value::Str(s) if parse_bool(s).is_ok() => Err(format!(
                "expected a boolean, found string {s:?}: write {} without quotes",
                s.to_ascii_lowercase()
            )),
            _ => Err(expected("a boolean (true or false)", node)),
        }
    }
}

fn int_from_node<T: TryFrom<i64>>(node: &Node, what: &str) -> Result<T, String> {
    match &node.value {
        Value::Int(i) => T::try_from(*i).map_err(|_| format!("{i} is out of range for {what}")),
        Value::Str(s) if s.trim().parse::<i64>().is_ok() => Err(format!(
            "expected {what}, found string {s:?}: write {} without quotes",
            s.trim()
        )),
        _ => Err(expected(what, node)),
    }
}

macro_rules! unsigned_setting {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            fn from_text(text: &str) -> Result<Self, String> {
                text.trim().parse::<$ty>().map_err(|_| {
                    format!("{text:?} is not a whole number from 0 to {}", <$ty>::MAX)
                })
            }
            fn from_node(node: &Node) -> Result<Self, String> {
                int_from_node(node, "a whole number")
            }
        }
    )*};
}
unsigned_setting!(u32, u64);

impl SettingValue for String {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
    fn from_node(node: &Node) -> Result<Self, String> {
        match &node.value {
            Value::Str(s) => Ok(s.clone()),
            _ => Err(expected("a string", node)),
        }
    }
}

impl SettingValue for PathBuf {
    fn from_text(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty path".to_string());
        }
        Ok(PathBuf::from(text))
    }
    fn from_node(node: &Node) -> Result<Self, String> {
        match &node.value {
            Value::Str(s) => Self::from_text(s),
            _ => Err(expected("a path string", node)),
        }
    }
}

impl SettingValue for Duration {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }
    fn from_node(node: &Node) -> Result<Self, String> {
        match &node.value {
            Value::Int(i) => u64::try_from(*i)
                .map(Duration::from_secs)
                .map_err(|_| format!("{i} is negative; a duration is 0 or more")),
            Value::Str(s) => parse_duration(s),
            _ => Err(expected(
                "a duration (seconds, or text such as 30s, 500ms, 5m)",
                node,
            )),
        }
    }
}

impl SettingValue for BindAddr {
    fn from_text(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn from_node(node: &Node) -> Result<Self, String> {
        match &node.value {
            Value::Str(s) => s.parse(),
            Value::Int(i) => i.to_string().parse(),
            _ => Err(expected("an address such as \":8162\"", node)),
        }
    }
}

macro_rules! enum_setting {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            fn from_text(text: &str) -> Result<Self, String> {
                text.trim().parse()
            }
            fn from_node(node: &Node) -> Result<Self, String> {
                match &node.value {
                    Value::Str(s) => s.parse(),
                    _ => Err(expected(&format!("one of {}", <$ty>::NAMES.join(", ")), node)),
                }
            }
        }
    )*};
}
enum_setting!(
    LogLevel,
    LogFormat,
    FlowLogScope,
    LineFormat,
    EnforcingMode,
    AttachMode,
    PolicyObjects
);

impl<T: SettingValue> SettingValue for Option<T> {
    /// Empty text unsets the setting.
    fn from_text(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            Ok(None)
        } else {
            T::from_text(text).map(Some)
        }
    }
    /// `null` unsets the setting.
    fn from_node(node: &Node) -> Result<Self, String> {
        match node.value {
            Value::Null => Ok(None),
            _ => T::from_node(node).map(Some),
        }
    }
}

/// A whole number the setting's type cannot hold (`-1` for a size) is reported with the
/// setting's real range, as the same value in range of the type would be; `fallback`
/// otherwise.
fn in_range_terms(key: &str, number: i128, fallback: String) -> String {
    range_message(key, number).unwrap_or(fallback)
}

/// Declares the settings table and the setters generated from it.
macro_rules! settings {
    ($($field:ident: $ty:ty, $flag:literal, $env:literal, $incumbent:literal;)*) => {
        /// Every setting, in `AgentConfig` field order.
        pub const SETTINGS: &[SettingInfo] = &[
            $(SettingInfo {
                key: stringify!($field),
                flag: $flag,
                env: $env,
                incumbent: $incumbent,
            },)*
        ];

        /// Sets `key` from a file node; `None` if `key` is not a setting.
        pub(crate) fn set_from_node(
            config: &mut AgentConfig,
            key: &str,
            node: &Node,
        ) -> Option<Result<(), String>> {
            match key {
                $(stringify!($field) => Some(
                    <$ty as SettingValue>::from_node(node)
                        .map(|v| config.$field = v)
                        .map_err(|e| match node.value {
                            Value::Int(i) => in_range_terms(stringify!($field), i.into(), e),
                            _ => e,
                        }),
                ),)*
                _ => None,
            }
        }

        /// Sets `key` from text; `None` if `key` is not a setting.
        pub(crate) fn set_from_text(
            config: &mut AgentConfig,
            key: &str,
            text: &str,
        ) -> Option<Result<(), String>> {
            match key {
                $(stringify!($field) => Some(
                    <$ty as SettingValue>::from_text(text)
                        .map(|v| config.$field = v)
                        .map_err(|e| match text.trim().parse::<i128>() {
                            Ok(n) => in_range_terms(stringify!($field), n, e),
                            Err(_) => e,
                        }),
                ),)*
                _ => None,
            }
        }
    };
}

settings! {
    enable_network_policy: bool, "--enable-network-policy", "NETPOL_ENABLE_NETWORK_POLICY", true;
    enable_ipv6: bool, "--enable-ipv6", "NETPOL_ENABLE_IPV6", true;
    enforcing_mode: EnforcingMode, "--enforcing-mode", "NETWORK_POLICY_ENFORCING_MODE", true;
    enable_policy_event_logs: bool, "--enable-policy-event-logs", "NETPOL_ENABLE_POLICY_EVENT_LOGS", true;
    enable_cloudwatch_logs: bool, "--enable-cloudwatch-logs", "NETPOL_ENABLE_CLOUDWATCH_LOGS", true;
    log_file: PathBuf, "--log-file", "NETPOL_LOG_FILE", true;
    log_file_max_size: u64, "--log-file-max-size", "NETPOL_LOG_FILE_MAX_SIZE", true;
    log_file_max_backups: u32, "--log-file-max-backups", "NETPOL_LOG_FILE_MAX_BACKUPS", true;
    log_file_max_age: u32, "--log-file-max-age", "NETPOL_LOG_FILE_MAX_AGE", false;
    log_file_min_age: Duration, "--log-file-min-age", "NETPOL_LOG_FILE_MIN_AGE", false;
    log_file_compress_grace: Duration, "--log-file-compress-grace", "NETPOL_LOG_FILE_COMPRESS_GRACE", false;
    flow_log_flush_interval: Duration, "--flow-log-flush-interval", "NETPOL_FLOW_LOG_FLUSH_INTERVAL", false;
    flow_log_scope: FlowLogScope, "--flow-log-scope", "NETPOL_FLOW_LOG_SCOPE", false;
    flow_log_format: LineFormat, "--flow-log-format", "NETPOL_FLOW_LOG_FORMAT", false;
    flow_records: bool, "--flow-records", "NETPOL_FLOW_RECORDS", false;
    flow_record_interval: Duration, "--flow-record-interval", "NETPOL_FLOW_RECORD_INTERVAL", false;
    deny_fold_window: Duration, "--deny-fold-window", "NETPOL_DENY_FOLD_WINDOW", false;
    ring_buffer_size: u32, "--ring-buffer-size", "NETPOL_RING_BUFFER_SIZE", false;
    policy_hash_entries: u32, "--policy-hash-entries", "NETPOL_POLICY_HASH_ENTRIES", false;
    metrics_bind_addr: BindAddr, "--metrics-bind-addr", "NETPOL_METRICS_BIND_ADDR", true;
    health_probe_bind_addr: BindAddr, "--health-probe-bind-addr", "NETPOL_HEALTH_PROBE_BIND_ADDR", true;
    conntrack_cache_cleanup_period: Duration, "--conntrack-cache-cleanup-period", "NETPOL_CONNTRACK_CACHE_CLEANUP_PERIOD", true;
    conntrack_cache_table_size: u32, "--conntrack-cache-table-size", "NETPOL_CONNTRACK_CACHE_TABLE_SIZE", true;
    log_level: LogLevel, "--log-level", "NETPOL_LOG_LEVEL", true;
    log_format: Option<LogFormat>, "--log-format", "NETPOL_LOG_FORMAT", false;
    operational_log_file: Option<PathBuf>, "--operational-log-file", "NETPOL_OPERATIONAL_LOG_FILE", false;
    max_concurrent_reconciles: u32, "--max-concurrent-reconciles", "NETPOL_MAX_CONCURRENT_RECONCILES", true;
    cluster_name: Option<String>, "--cluster-name", "CLUSTER_NAME", true;
    node_name: Option<String>, "--node-name", "MY_NODE_NAME", true;
    cloudwatch_log_group: Option<String>, "--cloudwatch-log-group", "NETPOL_CLOUDWATCH_LOG_GROUP", false;
    cloudwatch_log_stream: Option<String>, "--cloudwatch-log-stream", "NETPOL_CLOUDWATCH_LOG_STREAM", false;
    cloudwatch_retention_days: Option<u32>, "--cloudwatch-retention-days", "NETPOL_CLOUDWATCH_RETENTION_DAYS", false;
    cloudwatch_region: Option<String>, "--cloudwatch-region", "NETPOL_CLOUDWATCH_REGION", false;
    cloudwatch_endpoint: Option<String>, "--cloudwatch-endpoint", "NETPOL_CLOUDWATCH_ENDPOINT", false;
    cloudwatch_flush_interval: Duration, "--cloudwatch-flush-interval", "NETPOL_CLOUDWATCH_FLUSH_INTERVAL", false;
    policy_dir: Option<PathBuf>, "--policy-dir", "NETPOL_POLICY_DIR", false;
    kubeconfig: Option<PathBuf>, "--kubeconfig", "NETPOL_KUBECONFIG", true;
    apiserver: Option<String>, "--apiserver", "NETPOL_APISERVER", true;
    policy_source: PolicyObjects, "--policy-source", "NETPOL_POLICY_SOURCE", false;
    attach_mode: AttachMode, "--attach-mode", "NETPOL_ATTACH_MODE", false;
    bpffs_pin_dir: PathBuf, "--bpffs-pin-dir", "NETPOL_BPFFS_PIN_DIR", false;
    veth_prefix: String, "--veth-prefix", "AWS_VPC_K8S_CNI_VETHPREFIX", false;
    npa_socket_path: Option<PathBuf>, "--npa-socket-path", "NETPOL_NPA_SOCKET_PATH", false;
}

/// The setting named `key`, if any.
#[must_use]
pub fn setting(key: &str) -> Option<&'static SettingInfo> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// Keys longer than this get no "did you mean" hint: no setting is near them, and the
/// edit distance of a huge key would take long.
pub(crate) const MAX_HINT_KEY_LEN: usize = 64;

/// `key` as a message shows it: cut after [`MAX_HINT_KEY_LEN`] characters (with `…`), so
/// a megabyte-long key does not make a megabyte-long message.
pub(crate) fn shorten(key: &str) -> std::borrow::Cow<'_, str> {
    match key.char_indices().nth(MAX_HINT_KEY_LEN) {
        None => key.into(),
        Some((end, _)) => format!("{}…", &key[..end]).into(),
    }
}

/// The known key closest to `unknown` (for "did you mean" hints), if it is close enough.
/// Keys longer than [`MAX_HINT_KEY_LEN`] are not compared.
pub(crate) fn closest<'a>(
    unknown: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if unknown.len() > MAX_HINT_KEY_LEN {
        return None;
    }
    let unknown_norm = normalize(unknown);
    let unknown_chars = unknown_norm.chars().count();
    known
        .into_iter()
        .filter_map(|k| {
            let limit = (k.len() / 3).max(2);
            let k_norm = normalize(k);
            // The distance is at least the difference in length.
            (unknown_chars.abs_diff(k_norm.chars().count()) <= limit)
                .then(|| (edit_distance(&unknown_norm, &k_norm), k))
                .filter(|(d, _)| *d <= limit)
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Lower case without separators, so `logFileMaxSize`, `log-file-max-size` and
/// `log_file_max_size` compare equal.
fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            row.push((prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Pos;

    fn node(value: Value) -> Node {
        Node {
            pos: Pos::new(1, 1),
            value,
        }
    }

    #[test]
    fn every_setting_is_a_field_with_a_flag_of_the_same_name() {
        let mut config = AgentConfig::default();
        for s in SETTINGS {
            assert_eq!(
                s.flag,
                format!("--{}", s.key.replace('_', "-")),
                "{}",
                s.key
            );
            assert!(
                set_from_text(&mut config, s.key, "x").is_some(),
                "{}",
                s.key
            );
        }
        let serialized = serde_json::to_value(AgentConfig::default()).expect("serializes");
        let fields = serialized.as_object().expect("object").len();
        assert_eq!(
            fields,
            SETTINGS.len(),
            "every AgentConfig field is in SETTINGS"
        );
    }

    #[test]
    fn file_values_are_strictly_typed() {
        let mut c = AgentConfig::default();
        let err = set_from_node(
            &mut c,
            "enable_network_policy",
            &node(Value::Str("true".into())),
        )
        .expect("known")
        .expect_err("string is not a boolean");
        assert!(err.contains("without quotes"), "{err}");
        let err = set_from_node(&mut c, "log_file_max_size", &node(Value::Str("100".into())))
            .expect("known")
            .expect_err("string is not a number");
        assert!(err.contains("without quotes"), "{err}");
        let err = set_from_node(&mut c, "log_file_max_backups", &node(Value::Int(-1)))
            .expect("known")
            .expect_err("negative");
        assert!(err.contains("-1 is outside 0 to 10000"), "{err}");
        let err = set_from_node(&mut c, "cluster_name", &node(Value::Int(-1)))
            .expect("known")
            .expect_err("not a string");
        assert!(err.contains("expected a string"), "{err}");
        set_from_node(&mut c, "metrics_bind_addr", &node(Value::Int(9100)))
            .expect("known")
            .expect("a bare port is an address");
        assert_eq!(c.metrics_bind_addr, BindAddr::any(9100));
        set_from_node(&mut c, "cluster_name", &node(Value::Null))
            .expect("known")
            .expect("null unsets");
        assert_eq!(c.cluster_name, None);
    }

    #[test]
    fn unknown_keys_get_a_close_suggestion() {
        let keys = SETTINGS.iter().map(|s| s.key);
        assert_eq!(
            closest("log_file_maxsize", keys.clone()),
            Some("log_file_max_size")
        );
        assert_eq!(
            closest("metricsBindAddr", keys.clone()),
            Some("metrics_bind_addr")
        );
        assert_eq!(closest("completely_else", keys), None);
    }
}
