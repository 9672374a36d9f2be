//! The format-independent view of a Fluent Bit configuration: ordered sections of
//! `key value` properties, keys compared case-insensitively as Fluent Bit does.

use crate::error::FluentBitError;
use crate::vars;

/// Which kind of section a block is (`[INPUT]` in classic, `pipeline.inputs` in YAML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SectionKind {
    Service,
    Input,
    Filter,
    Output,
    Parser,
    MultilineParser,
}

impl SectionKind {
    /// The kind named by a classic header (`INPUT`, `multiline_parser`, ...).
    #[must_use]
    pub fn from_header(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "SERVICE" => Self::Service,
            "INPUT" => Self::Input,
            "FILTER" => Self::Filter,
            "OUTPUT" => Self::Output,
            "PARSER" => Self::Parser,
            "MULTILINE_PARSER" => Self::MultilineParser,
            _ => return None,
        })
    }

    /// The classic header name.
    #[must_use]
    pub fn header(self) -> &'static str {
        match self {
            Self::Service => "SERVICE",
            Self::Input => "INPUT",
            Self::Filter => "FILTER",
            Self::Output => "OUTPUT",
            Self::Parser => "PARSER",
            Self::MultilineParser => "MULTILINE_PARSER",
        }
    }
}

/// One `key value` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The key, lower-cased (Fluent Bit keys are case-insensitive).
    pub key: String,
    /// The value as written, before `${VAR}` expansion.
    pub value: String,
    /// 1-based line in a classic file; `None` for YAML.
    pub line: Option<usize>,
}

impl Property {
    /// The value with booleans in one spelling (`on`/`off`), for comparing two files that
    /// write `On`, `true` or `yes` for the same thing.
    #[must_use]
    pub fn normalized_value(&self) -> String {
        match self.value.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => "on".to_string(),
            "off" | "false" | "no" => "off".to_string(),
            _ => self.value.clone(),
        }
    }
}

/// One section with its properties in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub kind: SectionKind,
    pub properties: Vec<Property>,
}

impl Section {
    /// The first value of `key` (case-insensitive), unexpanded.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| p.key.eq_ignore_ascii_case(key))
            .map(|p| p.value.as_str())
    }

    /// The plugin or parser name (`Name`).
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.get("name")
    }

    /// The value of `key` with `${VAR}` references expanded through `lookup`.
    ///
    /// # Errors
    /// [`FluentBitError::UndefinedVariable`] or [`FluentBitError::UnterminatedVariable`].
    pub fn get_expanded(
        &self,
        key: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, FluentBitError> {
        self.get(key).map(|v| vars::expand(v, lookup)).transpose()
    }

    /// `(key, normalized value)` pairs sorted by key: what two equivalent sections share
    /// regardless of format, order, key case and boolean spelling.
    #[must_use]
    pub fn canonical(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .properties
            .iter()
            .map(|p| (p.key.clone(), p.normalized_value()))
            .collect();
        out.sort();
        out
    }
}

/// A whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub sections: Vec<Section>,
    /// Variables defined in the file (`@SET` in classic, `env:` in YAML).
    pub variables: Vec<(String, String)>,
    /// Files included (`@INCLUDE` in classic, `includes:` in YAML).
    pub includes: Vec<String>,
}

impl Config {
    /// Every section of `kind`, in file order.
    pub fn of_kind(&self, kind: SectionKind) -> impl Iterator<Item = &Section> {
        self.sections.iter().filter(move |s| s.kind == kind)
    }

    /// The first section of `kind` whose `Name` is `name` (case-insensitive).
    #[must_use]
    pub fn find(&self, kind: SectionKind, name: &str) -> Option<&Section> {
        self.of_kind(kind)
            .find(|s| s.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
    }

    /// The `[SERVICE]` section, if any.
    #[must_use]
    pub fn service(&self) -> Option<&Section> {
        self.of_kind(SectionKind::Service).next()
    }

    /// A lookup for [`Section::get_expanded`]: the file's own variables first, then `env`.
    pub fn lookup<'a>(
        &'a self,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            self.variables
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| env(name))
        }
    }
}
