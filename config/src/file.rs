//! Config files and add-on JSONs: reading them into a positioned tree (JSON or YAML by
//! extension), telling the two kinds apart, applying them onto an `AgentConfig` with the
//! origin of each value, and `validate_file`, which reports every error with its line and
//! column.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::addon;
use crate::error::{ConfigError, Diagnostic, Origin, Pos, Severity};
use crate::json::{self, SyntaxError};
use crate::model::AgentConfig;
use crate::node::{Entry, Node, Value};
use crate::settings::{SETTINGS, closest, set_from_node, set_from_text, setting, shorten};
use crate::validate::{CROSS_FIELD, problems};
use crate::yaml;

/// Where each setting's value came from; settings left at their default are absent.
pub type Origins = BTreeMap<&'static str, Origin>;

/// At most this many findings of a file are reported (the first, in file order); the
/// rest are only counted ([`FileReport::omitted`]), so a huge broken file answers quickly
/// with a readable list.
pub const MAX_REPORTED: usize = 100;

/// The UTF-8 byte order mark some editors (and Windows tools) put at the start of a file.
const BOM: char = '\u{feff}';

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Our config file: keys are setting names (`log_file_max_size`).
    AgentConfig,
    /// The VPC CNI's EKS add-on configuration (`enableNetworkPolicy`, `nodeAgent`).
    AddonConfig,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AgentConfig => "netpol-agent config file",
            Self::AddonConfig => "EKS add-on configuration",
        })
    }
}

/// The syntax a file is read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json`, or content starting with `{` when the name has no extension.
    Json,
    /// `.yaml`, `.yml`, or other content when the name has no extension.
    Yaml,
}

impl Format {
    /// By extension (`.json`, `.yaml`, `.yml`, any case); a name without an extension (a
    /// ConfigMap key, `/dev/stdin`) by its first non-blank character.
    ///
    /// # Errors
    /// Any other extension, with a message naming the accepted ones.
    pub fn of(path: &Path, text: &str) -> Result<Self, String> {
        let Some(extension) = path.extension() else {
            return Ok(
                if text.trim_start_matches(BOM).trim_start().starts_with('{') {
                    Self::Json
                } else {
                    Self::Yaml
                },
            );
        };
        match extension.to_str() {
            Some(e) if e.eq_ignore_ascii_case("json") => Ok(Self::Json),
            Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => {
                Ok(Self::Yaml)
            }
            _ => Err(format!(
                "unknown file extension {:?}: a config file ends in .yaml, .yml or .json (a name without an extension is read as JSON when it starts with '{{', else as YAML)",
                format!(".{}", extension.to_string_lossy())
            )),
        }
    }
}

/// The result of checking one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// What it was recognised as.
    pub kind: FileKind,
    /// The first [`MAX_REPORTED`] findings, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// How many more findings there were past those.
    pub omitted: usize,
}

impl FileReport {
    /// Whether any finding is an error.
    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Checks a config file or an EKS add-on configuration JSON and returns its findings (the
/// first [`MAX_REPORTED`]; [`check_file`] also counts the rest), each with its line and
/// column (`file.json:3:25: error: ...`). An unreadable file gives one diagnostic at 1:1.
#[must_use]
pub fn validate_file(path: &Path) -> Vec<Diagnostic> {
    match check_file(path) {
        Ok(report) => report.diagnostics,
        Err(err) => vec![Diagnostic {
            path: path.to_path_buf(),
            pos: Pos::new(1, 1),
            severity: Severity::Error,
            key: None,
            message: err.to_string(),
        }],
    }
}

/// Like [`validate_file`], also saying what the file was recognised as.
///
/// # Errors
/// [`ConfigError::Read`] when the file cannot be read.
pub fn check_file(path: &Path) -> Result<FileReport, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(check_text(path, &text))
}

/// Checks `text` as if read from `path` (the path picks the syntax and names the file in
/// messages).
#[must_use]
pub fn check_text(path: &Path, text: &str) -> FileReport {
    let mut config = AgentConfig::default();
    let mut origins = Origins::new();
    let applied = apply_text(path, text, &mut config, &mut origins);
    let mut diagnostics = applied.diagnostics;
    let had_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    if applied.tree_complete {
        for (key, message) in problems(&config) {
            // A check across two settings is noise when one of them was already rejected.
            if had_errors && CROSS_FIELD.contains(&key) {
                continue;
            }
            let (pos, shown_key) = match origins.get(key) {
                Some(Origin::File { pos, .. }) => (
                    *pos,
                    applied
                        .addon_keys
                        .get(key)
                        .cloned()
                        .unwrap_or_else(|| key.to_string()),
                ),
                _ => (Pos::new(1, 1), key.to_string()),
            };
            diagnostics.push(diag(
                path,
                pos,
                &shown_key,
                format!("{shown_key}: {message}"),
            ));
        }
    }
    diagnostics.sort_by_key(|d| d.pos);
    diagnostics.dedup();
    let omitted = applied.omitted + diagnostics.len().saturating_sub(MAX_REPORTED);
    diagnostics.truncate(MAX_REPORTED);
    FileReport {
        path: path.to_path_buf(),
        kind: applied.kind,
        diagnostics,
        omitted,
    }
}

/// What applying one file did.
pub(crate) struct Applied {
    pub kind: FileKind,
    /// Among them the first [`MAX_REPORTED`] by position (not sorted).
    pub diagnostics: Vec<Diagnostic>,
    /// Findings left out of `diagnostics`.
    pub omitted: usize,
    /// Whether the whole document was read (only recoverable syntax errors, if any).
    pub tree_complete: bool,
    /// For add-on files: our setting key -> the add-on key it came from.
    pub addon_keys: BTreeMap<&'static str, String>,
}

/// Findings of one source that come in file order: the first [`MAX_REPORTED`] are kept (so
/// they hold the first of the file whatever other sources add), the rest only counted.
#[derive(Default)]
struct Bounded {
    kept: Vec<Diagnostic>,
    dropped: usize,
}

impl Bounded {
    fn full(&self) -> bool {
        self.kept.len() >= MAX_REPORTED
    }

    fn push(&mut self, diagnostic: Diagnostic) {
        if self.full() {
            self.dropped += 1;
        } else {
            self.kept.push(diagnostic);
        }
    }
}

fn diag(path: &Path, pos: Pos, key: &str, message: String) -> Diagnostic {
    Diagnostic {
        path: path.to_path_buf(),
        pos,
        severity: Severity::Error,
        key: (!key.is_empty()).then(|| key.to_string()),
        message,
    }
}

fn syntax_diag(path: &Path, err: SyntaxError) -> Diagnostic {
    Diagnostic {
        path: path.to_path_buf(),
        pos: err.pos,
        severity: Severity::Error,
        key: err.key,
        message: err.message,
    }
}

/// Recognises the kind of a parsed document: an add-on configuration has at least one of
/// its marker keys and none of our setting keys.
#[must_use]
pub(crate) fn detect(root: &Node) -> FileKind {
    let Value::Map(entries) = &root.value else {
        return FileKind::AgentConfig;
    };
    let addon = entries
        .iter()
        .any(|e| addon::ADDON_MARKER_KEYS.contains(&e.key.as_str()));
    let ours = entries.iter().any(|e| setting(&e.key).is_some());
    if addon && !ours {
        FileKind::AddonConfig
    } else {
        FileKind::AgentConfig
    }
}

/// Reads `text`, applies it onto `config` and records origins. Every problem found is in
/// the returned diagnostics; values that were fine are applied even when others were not.
pub(crate) fn apply_text(
    path: &Path,
    text: &str,
    config: &mut AgentConfig,
    origins: &mut Origins,
) -> Applied {
    // A byte order mark is not content: positions count from the character after it.
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let mut syntax = Bounded::default();
    let root = match Format::of(path, text) {
        Err(message) => {
            syntax.push(diag(path, Pos::new(1, 1), "", message));
            None
        }
        Ok(Format::Json) => {
            let (root, errors) = json::parse(text);
            for e in errors {
                syntax.push(syntax_diag(path, e));
            }
            root
        }
        Ok(Format::Yaml) => match yaml::parse(text) {
            Ok(root) => Some(root),
            Err(e) => {
                syntax.push(syntax_diag(path, e));
                None
            }
        },
    };
    let Some(root) = root else {
        let kind = if text.contains("\"nodeAgent\"") || text.contains("\"enableNetworkPolicy\"") {
            FileKind::AddonConfig
        } else {
            FileKind::AgentConfig
        };
        return Applied {
            kind,
            diagnostics: syntax.kept,
            omitted: syntax.dropped,
            tree_complete: false,
            addon_keys: BTreeMap::new(),
        };
    };
    let kind = detect(&root);
    let mut addon_keys = BTreeMap::new();
    let mut tree = Bounded::default();
    match kind {
        FileKind::AgentConfig => apply_agent_tree(path, &root, config, origins, &mut tree),
        FileKind::AddonConfig => {
            let (overrides, mut findings) = addon::check(&root);
            // The add-on checker walks the tree, not the file, in order.
            findings.sort_by_key(|f| f.pos);
            for f in findings {
                tree.push(Diagnostic {
                    path: path.to_path_buf(),
                    pos: f.pos,
                    severity: f.severity,
                    key: (!f.key.is_empty()).then_some(f.key),
                    message: f.message,
                });
            }
            let mut bad = Vec::new();
            for o in overrides {
                match set_from_text(config, o.setting, &o.text) {
                    Some(Ok(())) => {
                        origins.insert(
                            o.setting,
                            Origin::File {
                                path: path.to_path_buf(),
                                pos: o.pos,
                            },
                        );
                        addon_keys.insert(o.setting, o.addon_key);
                    }
                    Some(Err(message)) => {
                        let text = format!("{}: {message}", o.addon_key);
                        bad.push(diag(path, o.pos, &o.addon_key, text));
                    }
                    None => {}
                }
            }
            // Few (one per mapped add-on key): kept whole, the final cut is by position.
            tree.kept.extend(bad);
        }
    }
    let mut diagnostics = syntax.kept;
    diagnostics.append(&mut tree.kept);
    Applied {
        kind,
        diagnostics,
        omitted: syntax.dropped + tree.dropped,
        tree_complete: true,
        addon_keys,
    }
}

/// Applies our config-file format: a mapping of setting keys. Its findings come in file
/// order; once `diagnostics` is full, the rest are only counted (and get no "did you mean"
/// search).
fn apply_agent_tree(
    path: &Path,
    root: &Node,
    config: &mut AgentConfig,
    origins: &mut Origins,
    diagnostics: &mut Bounded,
) {
    let entries: &[Entry] = match &root.value {
        Value::Map(entries) => entries,
        Value::Null => return,
        other => {
            diagnostics.push(diag(
                path,
                root.pos,
                "",
                format!(
                    "a config file is a mapping of settings (key: value), found {}",
                    other.describe()
                ),
            ));
            return;
        }
    };
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    for entry in entries {
        let key = entry.key.as_str();
        if let Some(first) = seen.get(key) {
            diagnostics.push(diag(
                path,
                entry.key_pos,
                key,
                format!(
                    "{}: duplicate key (first at line {} column {})",
                    shorten(key),
                    first.line,
                    first.column
                ),
            ));
        }
        seen.insert(key, entry.key_pos);
        match set_from_node(config, key, &entry.value) {
            Some(Ok(())) => {
                if let Some(info) = setting(key) {
                    origins.insert(
                        info.key,
                        Origin::File {
                            path: path.to_path_buf(),
                            pos: entry.value.pos,
                        },
                    );
                }
            }
            Some(Err(message)) => {
                diagnostics.push(diag(
                    path,
                    entry.value.pos,
                    key,
                    format!("{key}: {message}"),
                ));
            }
            None if diagnostics.full() => diagnostics.dropped += 1,
            None => {
                let hint = match closest(key, SETTINGS.iter().map(|s| s.key)) {
                    Some(known) => format!(" (did you mean {known:?}?)"),
                    None if addon::ADDON_MARKER_KEYS.contains(&key)
                        || addon::OTHER_TOP_LEVEL_KEYS.contains(&key) =>
                    {
                        " (an EKS add-on key: an add-on configuration cannot be mixed with netpol-agent settings)".to_string()
                    }
                    None => String::new(),
                };
                diagnostics.push(diag(
                    path,
                    entry.key_pos,
                    key,
                    format!("unknown key {:?}{hint}", shorten(key)),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_the_extension_then_the_first_character() {
        let of = |name: &str, text: &str| Format::of(Path::new(name), text);
        assert_eq!(of("a.json", "x: 1"), Ok(Format::Json));
        assert_eq!(of("a.JSON", ""), Ok(Format::Json));
        assert_eq!(of("a.yaml", "{}"), Ok(Format::Yaml));
        assert_eq!(of("a.yml", "{}"), Ok(Format::Yaml));
        assert_eq!(
            of("addon", "  {\"enableNetworkPolicy\": \"true\"}"),
            Ok(Format::Json)
        );
        assert_eq!(of("config", "log_level: info"), Ok(Format::Yaml));
        let err = of("agent.conf", "log_level: info").expect_err("unknown extension");
        assert!(err.contains("\".conf\""), "{err}");
    }

    #[test]
    fn kind_is_addon_only_with_addon_keys_and_none_of_ours() {
        let kind = |text: &str| check_text(Path::new("x.json"), text).kind;
        assert_eq!(kind("{\"nodeAgent\": {}}"), FileKind::AddonConfig);
        assert_eq!(
            kind("{\"enableNetworkPolicy\": \"true\"}"),
            FileKind::AddonConfig
        );
        assert_eq!(kind("{\"log_level\": \"info\"}"), FileKind::AgentConfig);
        assert_eq!(kind("{}"), FileKind::AgentConfig);
        let yaml = check_text(Path::new("addon.yaml"), "enableNetworkPolicy: \"true\"\n");
        assert_eq!(yaml.kind, FileKind::AddonConfig);
        assert_eq!(yaml.diagnostics, vec![]);
    }

    #[test]
    fn a_non_mapping_document_is_one_error_at_its_start() {
        let report = check_text(Path::new("x.yaml"), "- a\n- b\n");
        assert_eq!(report.diagnostics.len(), 1);
        assert_eq!(report.diagnostics[0].pos, Pos::new(1, 1));
        assert!(
            report.diagnostics[0]
                .message
                .contains("mapping of settings")
        );
    }

    #[test]
    fn an_empty_yaml_file_is_a_valid_empty_config() {
        let report = check_text(Path::new("x.yaml"), "");
        assert_eq!(report.kind, FileKind::AgentConfig);
        assert_eq!(report.diagnostics, vec![]);
    }

    #[test]
    fn cross_field_checks_are_skipped_when_a_value_was_already_rejected() {
        let text =
            r#"{"nodeAgent": {"enablePolicyEventLogs": true, "enableCloudWatchLogs": "true"}}"#;
        let report = check_text(Path::new("x.json"), text);
        assert_eq!(report.diagnostics.len(), 1, "{:?}", report.diagnostics);
        assert_eq!(
            report.diagnostics[0].key.as_deref(),
            Some("nodeAgent.enablePolicyEventLogs")
        );
    }

    #[test]
    fn kebab_case_keys_are_pointed_to_the_snake_case_setting() {
        let report = check_text(Path::new("x.yaml"), "log-file-max-size: 10\n");
        assert_eq!(report.diagnostics.len(), 1);
        assert!(
            report.diagnostics[0]
                .message
                .contains("did you mean \"log_file_max_size\""),
            "{}",
            report.diagnostics[0]
        );
    }
}
