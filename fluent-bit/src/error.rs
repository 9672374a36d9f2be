//! The crate's one error type: what went wrong reading a Fluent Bit file, and where.

/// A Fluent Bit file could not be read as configuration.
#[derive(Debug, thiserror::Error)]
pub enum FluentBitError {
    /// `[NAME]` is not a section Fluent Bit knows.
    #[error("line {line}: unknown section [{name}]")]
    UnknownSection { line: usize, name: String },
    /// A `[` header without its closing `]`.
    #[error("line {line}: section header without a closing ']'")]
    UnterminatedHeader { line: usize },
    /// A `key value` line before the first section header.
    #[error("line {line}: entry outside any section")]
    EntryOutsideSection { line: usize },
    /// A key without a value.
    #[error("line {line}: key {key:?} has no value")]
    MissingValue { line: usize, key: String },
    /// An entry that is not indented, or indented unlike the section's first entry.
    #[error("line {line}: entry indented with {found:?}, expected {expected:?}")]
    BadIndent {
        line: usize,
        found: String,
        expected: String,
    },
    /// An `@` directive other than `@INCLUDE` and `@SET`, or a malformed `@SET`.
    #[error("line {line}: bad directive {text:?}")]
    BadDirective { line: usize, text: String },
    /// The YAML file does not parse, or has a shape Fluent Bit does not accept.
    #[error("YAML configuration: {source}")]
    Yaml {
        #[from]
        source: serde_yaml::Error,
    },
    /// A YAML property whose value is a list or a map (only scalars are read here).
    #[error("YAML {section} property {key:?} is not a scalar")]
    NonScalar { section: String, key: String },
    /// A YAML property key that is not a string.
    #[error("YAML {section} has a non-string key")]
    NonStringKey { section: String },
    /// `${NAME}` names a variable that is neither `@SET` nor in the environment given.
    #[error("variable ${{{name}}} is not defined")]
    UndefinedVariable { name: String },
    /// `${` without its closing `}`.
    #[error("unterminated variable reference in {value:?}")]
    UnterminatedVariable { value: String },
    /// A `Time_Format` directive with no strftime equivalent here.
    #[error("time format {format:?}: unsupported directive %{directive}")]
    UnsupportedTimeDirective { format: String, directive: char },
}
