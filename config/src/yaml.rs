//! Reads a YAML config file into a [`Node`] tree that keeps every key's and value's line
//! and column, using yaml-rust2's marked event stream (serde_yaml does not expose
//! positions). Plain scalars resolve by the YAML 1.2 core schema (`true`, `12`, `null`);
//! quoted and block scalars are strings.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::error::Pos;
use crate::json::SyntaxError;
use crate::node::{Entry, Node, Value};

/// Reads `text` as a single YAML document. An empty document is `Null`.
///
/// # Errors
/// The first syntax error, or a construct this configuration does not use (aliases,
/// several documents), with its position.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(err) = parser.load(&mut builder, true) {
        let marker = err.marker();
        return Err(SyntaxError {
            pos: pos_of(marker),
            key: None,
            message: format!("YAML syntax error: {}", err.info()),
        });
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    if builder.documents > 1 {
        return Err(SyntaxError {
            pos: builder.second_document.unwrap_or_default(),
            key: None,
            message: "a config file holds one YAML document; remove the second '---'".to_string(),
        });
    }
    Ok(builder.root.unwrap_or(Node {
        pos: Pos::new(1, 1),
        value: Value::Null,
    }))
}

fn pos_of(marker: &Marker) -> Pos {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Pos::new(marker.line(), marker.col() + 1)
}

/// A container being filled, with the key waiting for its value in a mapping.
enum Open {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<Entry>, Option<(String, Pos)>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    documents: usize,
    second_document: Option<Pos>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn fail(&mut self, pos: Pos, message: &str) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                pos,
                key: None,
                message: message.to_string(),
            });
        }
    }

    /// Places a finished node into the open container (or as the root).
    fn place(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(_, items)) => items.push(node),
            Some(Open::Map(_, entries, pending)) => match pending.take() {
                None => {
                    // This node is a key.
                    let key = match &node.value {
                        Value::Str(s) => Some(s.clone()),
                        Value::Int(i) => Some(i.to_string()),
                        Value::Bool(b) => Some(b.to_string()),
                        Value::Float(f) => Some(f.to_string()),
                        Value::Null => Some(String::new()),
                        Value::Seq(_) | Value::Map(_) => None,
                    };
                    match key {
                        Some(key) => *pending = Some((key, node.pos)),
                        None => self.fail(node.pos, "mapping keys must be plain scalars"),
                    }
                }
                Some((key, key_pos)) => entries.push(Entry {
                    key,
                    key_pos,
                    value: node,
                }),
            },
        }
    }
}

fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => {
            if let Ok(i) = text.parse::<i64>() {
                Value::Int(i)
            } else if let Some(hex) = text.strip_prefix("0x") {
                i64::from_str_radix(hex, 16)
                    .map_or_else(|_| Value::Str(text.to_string()), Value::Int)
            } else if let Some(oct) = text.strip_prefix("0o") {
                i64::from_str_radix(oct, 8)
                    .map_or_else(|_| Value::Str(text.to_string()), Value::Int)
            } else if looks_like_float(text) {
                text.parse::<f64>()
                    .map_or_else(|_| Value::Str(text.to_string()), Value::Float)
            } else {
                Value::Str(text.to_string())
            }
        }
    }
}

fn looks_like_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = pos_of(&marker);
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    self.second_document = Some(pos);
                }
            }
            Event::Alias(_) => self.fail(
                pos,
                "YAML aliases (*name) are not supported in config files",
            ),
            Event::Scalar(text, style, anchor, tag) => {
                if anchor != 0 {
                    self.fail(
                        pos,
                        "YAML anchors (&name) are not supported in config files",
                    );
                    return;
                }
                let explicit_string = tag.is_some_and(|t| {
                    t.suffix == "str" && (t.handle == "!!" || t.handle == "tag:yaml.org,2002:")
                });
                let value = match style {
                    TScalarStyle::Plain if !explicit_string => resolve_plain(&text),
                    _ => Value::Str(text),
                };
                self.place(Node { pos, value });
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) if anchor != 0 => {
                self.fail(
                    pos,
                    "YAML anchors (&name) are not supported in config files",
                );
            }
            Event::SequenceStart(..) => self.stack.push(Open::Seq(pos, Vec::new())),
            Event::MappingStart(..) => self.stack.push(Open::Map(pos, Vec::new(), None)),
            Event::SequenceEnd => {
                if let Some(Open::Seq(start, items)) = self.stack.pop() {
                    self.place(Node {
                        pos: start,
                        value: Value::Seq(items),
                    });
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(start, entries, _)) = self.stack.pop() {
                    self.place(Node {
                        pos: start,
                        value: Value::Map(entries),
                    });
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_mapping_keys_and_values_keep_positions_and_types() {
        let text = "# comment\nlog_level: info\nlog_file_max_size: 100\nenable_network_policy: true\nname: \"true\"\nempty:\n";
        let node = parse(text).expect("parses");
        let Value::Map(entries) = node.value else {
            panic!("map")
        };
        assert_eq!(entries[0].key, "log_level");
        assert_eq!(entries[0].key_pos, Pos::new(2, 1));
        assert_eq!(entries[0].value.pos, Pos::new(2, 12));
        assert_eq!(entries[0].value.value, Value::Str("info".into()));
        assert_eq!(entries[1].value.value, Value::Int(100));
        assert_eq!(entries[2].value.value, Value::Bool(true));
        assert_eq!(entries[3].value.value, Value::Str("true".into()));
        assert_eq!(entries[4].value.value, Value::Null);
    }

    #[test]
    fn explicit_str_tag_keeps_a_plain_scalar_a_string() {
        let node = parse("a: !!str 123\nb: 123\n").expect("parses");
        let Value::Map(entries) = node.value else {
            panic!("map")
        };
        assert_eq!(entries[0].value.value, Value::Str("123".into()));
        assert_eq!(entries[1].value.value, Value::Int(123));
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("").expect("parses").value, Value::Null);
        assert_eq!(
            parse("# only a comment\n").expect("parses").value,
            Value::Null
        );
    }

    #[test]
    fn syntax_errors_and_unsupported_constructs_have_positions() {
        let err = parse("a: 1\n b: 2\n").expect_err("bad indentation");
        assert_eq!(err.pos.line, 2, "{err:?}");
        let err = parse("a: &x 1\nb: *x\n").expect_err("anchor");
        assert!(err.message.contains("anchors"), "{err:?}");
        assert_eq!(err.pos.line, 1);
        let err = parse("a: 1\n---\nb: 2\n").expect_err("two documents");
        assert!(err.message.contains("one YAML document"), "{err:?}");
        assert_eq!(err.pos.line, 2);
    }
}
