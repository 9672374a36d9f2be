//! A parsed document that remembers where every key and value was: what both the JSON and
//! the YAML reader produce, and what every check walks to put a line and column on its
//! findings.

use crate::error::Pos;

/// A value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the value starts.
    pub pos: Pos,
    /// The value.
    pub value: Value,
}

/// A JSON/YAML value whose children keep their positions.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null` (or an empty YAML value).
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// A string (any quoted YAML scalar is a string).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<Entry>),
}

/// One key of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key text.
    pub key: String,
    /// Where the key starts.
    pub key_pos: Pos,
    /// The value.
    pub value: Node,
}

impl Value {
    /// The value's kind as the messages name it (`boolean true`, `string "8162"`).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Null => "null".to_string(),
            Self::Bool(b) => format!("boolean {b}"),
            Self::Int(i) => format!("integer {i}"),
            Self::Float(f) => format!("number {f}"),
            Self::Str(s) => format!("string {s:?}"),
            Self::Seq(_) => "a list".to_string(),
            Self::Map(_) => "a mapping".to_string(),
        }
    }
}
