//! The EKS add-on configuration JSON of the VPC CNI (`{"enableNetworkPolicy":"true",
//! "nodeAgent":{…}}`): its schema as the EKS guide and the vpc-cni chart use it, checked
//! key by key with positions, and mapped onto our settings.
//!
//! The add-on schema types booleans and ports as strings (`"true"`, `"8162"`) and the
//! conntrack values as integers; the messages say so, because writing `true` for `"true"`
//! is the mistake the console rejects with the least helpful error.

use crate::error::{Pos, Severity};
use crate::node::{Entry, Node, Value};
use std::collections::HashMap;

use crate::file::MAX_REPORTED;
use crate::settings::{closest, shorten};
use crate::values::{EnforcingMode, LogLevel};

/// Top-level keys of the vpc-cni add-on schema that do not concern the network policy
/// agent: accepted, not checked further.
pub const OTHER_TOP_LEVEL_KEYS: &[&str] = &[
    "affinity",
    "enableWindowsIpam",
    "enableWindowsPrefixDelegation",
    "eniConfig",
    "init",
    "livenessProbeTimeoutSeconds",
    "nodeSelector",
    "podAnnotations",
    "podLabels",
    "readinessProbeTimeoutSeconds",
    "resources",
    "tolerations",
    "updateStrategy",
];

/// Top-level keys that mark a document as an add-on configuration.
pub const ADDON_MARKER_KEYS: &[&str] = &["enableNetworkPolicy", "nodeAgent", "env"];

/// The aws-node container variable that selects the enforcing mode.
pub const ENFORCING_MODE_VAR: &str = "NETWORK_POLICY_ENFORCING_MODE";

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A boolean written as a string: `"true"` or `"false"`.
    BoolString,
    /// A port written as a string: `"8162"`.
    PortString,
    /// An integer within bounds.
    Integer { min: i64, max: i64 },
    /// A non-empty string.
    Path,
    /// A log level string.
    Level,
    /// An object passed to Kubernetes as is (resources, securityContext).
    Object,
}

/// The `nodeAgent` keys: (key, kind, setting it maps to).
const NODE_AGENT_KEYS: &[(&str, Kind, Option<&str>)] = &[
    (
        "enableCloudWatchLogs",
        Kind::BoolString,
        Some("enable_cloudwatch_logs"),
    ),
    (
        "enablePolicyEventLogs",
        Kind::BoolString,
        Some("enable_policy_event_logs"),
    ),
    ("enableIpv6", Kind::BoolString, Some("enable_ipv6")),
    (
        "healthProbeBindAddr",
        Kind::PortString,
        Some("health_probe_bind_addr"),
    ),
    (
        "metricsBindAddr",
        Kind::PortString,
        Some("metrics_bind_addr"),
    ),
    (
        "conntrackCacheCleanupPeriod",
        Kind::Integer {
            min: 1,
            max: 86_400,
        },
        Some("conntrack_cache_cleanup_period"),
    ),
    (
        "conntrackCacheTableSize",
        Kind::Integer {
            min: 32 * 1024,
            max: 1024 * 1024,
        },
        Some("conntrack_cache_table_size"),
    ),
    (
        "networkPolicyAgentLogFileLocation",
        Kind::Path,
        Some("log_file"),
    ),
    ("logLevel", Kind::Level, Some("log_level")),
    ("resources", Kind::Object, None),
    ("securityContext", Kind::Object, None),
];

/// One add-on value mapped onto a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Override {
    /// Our setting key.
    pub setting: &'static str,
    /// The add-on key path (`nodeAgent.metricsBindAddr`), for messages.
    pub addon_key: String,
    /// The value as text, in the form our text parsers read.
    pub text: String,
    /// Where the value is.
    pub pos: Pos,
}

/// A finding, before the file path is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub pos: Pos,
    pub severity: Severity,
    pub key: String,
    pub message: String,
}

/// Checks an add-on document and returns its overrides and every finding.
pub(crate) fn check(root: &Node) -> (Vec<Override>, Vec<Finding>) {
    let mut out = Checker::default();
    let Value::Map(entries) = &root.value else {
        out.error(
            root.pos,
            "",
            format!(
                "the add-on configuration must be a JSON object, found {}",
                root.value.describe()
            ),
        );
        return (out.overrides, out.findings);
    };
    for entry in unique(entries, "", &mut out) {
        match entry.key.as_str() {
            "enableNetworkPolicy" => out.value(
                entry,
                "enableNetworkPolicy",
                Kind::BoolString,
                Some("enable_network_policy"),
            ),
            "nodeAgent" => out.node_agent(entry),
            "env" => out.env(entry),
            other if OTHER_TOP_LEVEL_KEYS.contains(&other) => {}
            other => {
                let known = ADDON_MARKER_KEYS
                    .iter()
                    .chain(OTHER_TOP_LEVEL_KEYS)
                    .copied();
                out.unknown(entry.key_pos, other, other, known);
            }
        }
    }
    (out.overrides, out.findings)
}

/// The entries of a mapping with duplicates reported (the last one wins, as in JSON
/// parsers), in the order of their last occurrence.
fn unique<'a>(entries: &'a [Entry], prefix: &str, out: &mut Checker) -> Vec<&'a Entry> {
    // Each key's latest occurrence so far: its index and position.
    let mut latest: HashMap<&str, (usize, Pos)> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        if let Some((_, first_pos)) = latest.insert(&entry.key, (index, entry.key_pos)) {
            out.error(
                entry.key_pos,
                &join(prefix, &entry.key),
                format!(
                    "duplicate key (first at line {} column {})",
                    first_pos.line, first_pos.column
                ),
            );
        }
    }
    entries
        .iter()
        .enumerate()
        .filter(|(index, entry)| latest.get(entry.key.as_str()).map(|(i, _)| i) == Some(index))
        .map(|(_, entry)| entry)
        .collect()
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

#[derive(Default)]
struct Checker {
    overrides: Vec<Override>,
    findings: Vec<Finding>,
    /// Unknown keys given a "did you mean" search so far.
    hinted: usize,
}

impl Checker {
    fn error(&mut self, pos: Pos, key: &str, message: String) {
        let message = if key.is_empty() {
            message
        } else {
            format!("{}: {message}", shorten(key))
        };
        self.findings.push(Finding {
            pos,
            severity: Severity::Error,
            key: key.to_string(),
            message,
        });
    }

    /// An unknown key; the first [`MAX_REPORTED`] get a "did you mean" search among `known`
    /// (no more are shown).
    fn unknown<'k>(
        &mut self,
        pos: Pos,
        path: &str,
        key: &str,
        known: impl IntoIterator<Item = &'k str>,
    ) {
        let suggestion = if self.hinted < MAX_REPORTED {
            self.hinted += 1;
            closest(key, known)
        } else {
            None
        };
        let hint = suggestion.map_or_else(String::new, |s| format!(" (did you mean {s:?}?)"));
        self.error(
            pos,
            path,
            format!(
                "unknown key {:?} in the add-on configuration{hint}",
                shorten(key)
            ),
        );
    }

    fn node_agent(&mut self, entry: &Entry) {
        let Value::Map(entries) = &entry.value.value else {
            self.error(
                entry.value.pos,
                "nodeAgent",
                format!("expected an object, found {}", entry.value.value.describe()),
            );
            return;
        };
        for inner in unique(entries, "nodeAgent", self) {
            let path = format!("nodeAgent.{}", inner.key);
            match NODE_AGENT_KEYS.iter().find(|(k, _, _)| *k == inner.key) {
                Some((_, kind, setting)) => self.value(inner, &path, *kind, *setting),
                None => {
                    let known = NODE_AGENT_KEYS.iter().map(|(k, _, _)| *k);
                    self.unknown(inner.key_pos, &path, &inner.key, known);
                }
            }
        }
    }

    fn env(&mut self, entry: &Entry) {
        let Value::Map(entries) = &entry.value.value else {
            self.error(
                entry.value.pos,
                "env",
                format!(
                    "expected an object of variables, found {}",
                    entry.value.value.describe()
                ),
            );
            return;
        };
        for var in unique(entries, "env", self) {
            let path = format!("env.{}", var.key);
            let Value::Str(text) = &var.value.value else {
                self.error(
                    var.value.pos,
                    &path,
                    format!(
                        "environment values are strings in the add-on schema: write \"{}\", found {}",
                        scalar_text(&var.value.value),
                        var.value.value.describe()
                    ),
                );
                continue;
            };
            if var.key == ENFORCING_MODE_VAR {
                match text.parse::<EnforcingMode>() {
                    Ok(mode) => self.map(
                        "enforcing_mode",
                        &path,
                        mode.as_str().to_string(),
                        var.value.pos,
                    ),
                    Err(e) => self.error(var.value.pos, &path, e),
                }
            }
        }
    }

    fn map(&mut self, setting: &'static str, path: &str, text: String, pos: Pos) {
        self.overrides.push(Override {
            setting,
            addon_key: path.to_string(),
            text,
            pos,
        });
    }

    fn value(&mut self, entry: &Entry, path: &str, kind: Kind, setting: Option<&'static str>) {
        let node = &entry.value;
        let pos = node.pos;
        let result: Result<Option<String>, String> = match (kind, &node.value) {
            (Kind::BoolString, Value::Str(s)) => match s.as_str() {
                "true" | "false" => Ok(Some(s.clone())),
                _ => Err(format!("{s:?} is not \"true\" or \"false\"")),
            },
            (Kind::BoolString, Value::Bool(b)) => Err(format!(
                "the add-on schema wants a string here: write \"{b}\" (in quotes), not the boolean {b}"
            )),
            (Kind::PortString, Value::Str(s)) => match s.parse::<u16>() {
                Ok(port) if port > 0 => Ok(Some(format!(":{port}"))),
                _ if s.starts_with(':') => Err(format!(
                    "{s:?}: the add-on wants the port number only, e.g. \"{}\" (the agent's flag adds the colon)",
                    s.trim_start_matches(':')
                )),
                _ => Err(format!("{s:?} is not a port number from 1 to 65535")),
            },
            (Kind::PortString, Value::Int(i)) => Err(format!(
                "the add-on schema wants a string here: write \"{i}\" (in quotes), not the number {i}"
            )),
            (Kind::Integer { min, max }, Value::Int(i)) => {
                if (min..=max).contains(i) {
                    Ok(Some(i.to_string()))
                } else {
                    Err(format!("{i} is outside {min} to {max}"))
                }
            }
            (Kind::Integer { .. }, Value::Str(s)) if s.trim().parse::<i64>().is_ok() => {
                Err(format!(
                    "the add-on schema wants an integer here: write {} without quotes",
                    s.trim()
                ))
            }
            (Kind::Path, Value::Str(s)) if !s.is_empty() => Ok(Some(s.clone())),
            (Kind::Level, Value::Str(s)) => {
                s.parse::<LogLevel>().map(|l| Some(l.as_str().to_string()))
            }
            (Kind::Object, Value::Map(_)) => Ok(None),
            (kind, other) => Err(format!(
                "expected {}, found {}",
                kind_name(kind),
                other.describe()
            )),
        };
        match result {
            Ok(Some(text)) => {
                if let Some(setting) = setting {
                    self.map(setting, path, text, pos);
                }
            }
            Ok(None) => {}
            Err(message) => self.error(pos, path, message),
        }
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BoolString => "the string \"true\" or \"false\"",
        Kind::PortString => "a port number as a string, e.g. \"8162\"",
        Kind::Integer { .. } => "an integer",
        Kind::Path => "a non-empty path string",
        Kind::Level => "a log level string (debug, info, warn, error)",
        Kind::Object => "an object",
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => s.clone(),
        Value::Null | Value::Seq(_) | Value::Map(_) => "...".to_string(),
    }
}
