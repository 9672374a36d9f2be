//! The crate's error type, file diagnostics and the origin of each setting's value.

use std::fmt;
use std::path::PathBuf;

/// A line and column in a file, both counted from 1 (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl Pos {
    /// A position.
    #[must_use]
    pub const fn new(line: usize, column: usize) -> Self {
        Self { line, column }
    }
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file would be rejected.
    Error,
    /// Accepted, but probably not what was meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// One finding in a file, rendered as `file.json:3:25: error: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as given.
    pub path: PathBuf,
    /// Where in the file.
    pub pos: Pos,
    /// Error or warning.
    pub severity: Severity,
    /// The key the finding is about, dotted for nested keys (`nodeAgent.metricsBindAddr`);
    /// `None` for syntax errors outside any key.
    pub key: Option<String>,
    /// What is wrong and, where possible, how to fix it. Starts with the key when there is one.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.path.display(),
            self.pos.line,
            self.pos.column,
            self.severity,
            self.message
        )
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A config file or add-on JSON, at the value's position.
    File {
        /// The file.
        path: PathBuf,
        /// The value's position.
        pos: Pos,
    },
    /// An environment variable.
    Env {
        /// Its name.
        var: String,
    },
    /// A command-line flag.
    Flag {
        /// Its name, with the leading dashes.
        flag: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File { path, pos } => write!(f, "{}:{}:{}", path.display(), pos.line, pos.column),
            Self::Env { var } => write!(f, "environment variable {var}"),
            Self::Flag { flag } => write!(f, "flag {flag}"),
        }
    }
}

/// One bad setting, with where its value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the bad value came from.
    pub origin: Origin,
    /// The setting's key (`log_file_max_size`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.key, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A config file or add-on JSON has errors (the first hundred are listed, the rest
    /// counted).
    #[error(
        "{} has {} error(s):\n{}{}",
        path.display(),
        diagnostics.len() + omitted,
        join_lines(diagnostics),
        more_line(*omitted)
    )]
    File {
        /// The file.
        path: PathBuf,
        /// Its first errors, in file order.
        diagnostics: Vec<Diagnostic>,
        /// How many more errors it has.
        omitted: usize,
    },
    /// Settings from the environment, flags or a file have bad values (every one is listed).
    #[error("invalid configuration:\n{}", join_lines(problems))]
    Invalid {
        /// The bad settings.
        problems: Vec<Problem>,
    },
}

/// The line that ends a cut list of errors: `... and 49900 more error(s)`; empty when
/// nothing was cut.
#[must_use]
pub fn more_line(omitted: usize) -> String {
    if omitted == 0 {
        String::new()
    } else {
        format!("\n  ... and {omitted} more error(s) not shown")
    }
}

fn join_lines<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|item| format!("  {item}"))
        .collect::<Vec<_>>()
        .join("\n")
}
