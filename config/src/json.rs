//! A small JSON reader that keeps the line and column of every key and value, and that
//! names the mistakes people make in hand-written JSON (trailing commas, single quotes,
//! comments). A trailing comma is reported and then skipped, so the rest of the document
//! is still read and checked; any other syntax error stops the reading.

use crate::error::Pos;
use crate::node::{Entry, Node, Value};

/// A syntax error with its place and, when inside an object, the dotted key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where.
    pub pos: Pos,
    /// Dotted path of the enclosing key, if any.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 128;

/// Reads `text` as one JSON document. Returns the tree when the syntax allows building
/// one (possibly after recoverable errors) and every syntax error found. An empty
/// document (blank) is `Null`, as in YAML.
#[must_use]
pub fn parse(text: &str) -> (Option<Node>, Vec<SyntaxError>) {
    let mut parser = Parser {
        chars: text.chars().collect(),
        at: 0,
        line: 1,
        column: 1,
        path: Vec::new(),
        errors: Vec::new(),
    };
    let root = parser.document();
    (root, parser.errors)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    line: usize,
    column: usize,
    path: Vec<String>,
    errors: Vec<SyntaxError>,
}

/// Marker for a syntax error that stops the reading (already recorded).
struct Stop;

impl Parser {
    fn document(&mut self) -> Option<Node> {
        if self.peek() == Some('\u{feff}') {
            self.bump();
        }
        self.skip_ws().ok()?;
        if self.peek().is_none() {
            // As an empty YAML file: no settings, every default.
            return Some(Node {
                pos: Pos::new(1, 1),
                value: Value::Null,
            });
        }
        let root = self.value(0).ok()?;
        self.skip_ws().ok()?;
        if let Some(c) = self.peek() {
            self.fail_here(&format!(
                "unexpected {} after the end of the JSON value",
                show(c)
            ));
            return None;
        }
        Some(root)
    }

    fn pos(&self) -> Pos {
        Pos::new(self.line, self.column)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn key_path(&self) -> Option<String> {
        (!self.path.is_empty()).then(|| self.path.join("."))
    }

    /// Records an error, its message prefixed with the enclosing key path.
    fn record(&mut self, pos: Pos, message: &str) {
        let key = self.key_path();
        let message = match &key {
            Some(key) => format!("{key}: {message}"),
            None => message.to_string(),
        };
        self.errors.push(SyntaxError { pos, key, message });
    }

    fn fail_at(&mut self, pos: Pos, message: &str) -> Stop {
        self.record(pos, message);
        Stop
    }

    fn fail_here(&mut self, message: &str) -> Stop {
        let pos = self.pos();
        self.fail_at(pos, message)
    }

    /// Skips whitespace; comments are an error (JSON has none).
    fn skip_ws(&mut self) -> Result<(), Stop> {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | '\r' => {
                    self.bump();
                }
                '/' if matches!(self.chars.get(self.at + 1), Some('/' | '*')) => {
                    return Err(self.fail_here("comments are not allowed in JSON"));
                }
                _ => break,
            }
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Node, Stop> {
        if depth > MAX_DEPTH {
            return Err(self.fail_here("nesting is too deep"));
        }
        let pos = self.pos();
        let value = match self.peek() {
            Some('{') => self.object(depth)?,
            Some('[') => self.array(depth)?,
            Some('"') => Value::Str(self.string()?),
            Some('\'') => {
                return Err(
                    self.fail_here("strings must use double quotes (\"), not single quotes")
                );
            }
            Some('-' | '0'..='9') => self.number()?,
            Some(c) if c.is_ascii_alphabetic() => self.literal()?,
            Some(c) => return Err(self.fail_here(&format!("expected a value, found {}", show(c)))),
            None => return Err(self.fail_here("unexpected end of file: expected a value")),
        };
        Ok(Node { pos, value })
    }

    fn literal(&mut self) -> Result<Value, Stop> {
        let pos = self.pos();
        let mut word = String::new();
        while let Some(c) = self.peek().filter(char::is_ascii_alphanumeric) {
            word.push(c);
            self.bump();
        }
        match word.as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "null" => Ok(Value::Null),
            "True" | "False" | "TRUE" | "FALSE" | "Null" | "NULL" | "None" => Err(self.fail_at(
                pos,
                &format!("{word} is not a JSON literal: write true, false or null in lower case"),
            )),
            _ => Err(self.fail_at(
                pos,
                &format!("expected a value, found {word:?} (strings need double quotes)"),
            )),
        }
    }

    fn number(&mut self) -> Result<Value, Stop> {
        let pos = self.pos();
        let mut text = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        {
            text.push(c);
            self.bump();
        }
        let valid = {
            let digits = text.strip_prefix('-').unwrap_or(&text);
            let int_part: String = digits.chars().take_while(char::is_ascii_digit).collect();
            !int_part.is_empty() && (int_part.len() == 1 || !int_part.starts_with('0'))
        };
        if valid {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Value::Int(i));
            }
            if let Ok(f) = text.parse::<f64>() {
                return Ok(Value::Float(f));
            }
        }
        Err(self.fail_at(pos, &format!("{text:?} is not a valid JSON number")))
    }

    fn string(&mut self) -> Result<String, Stop> {
        let start = self.pos();
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            let pos = self.pos();
            match self.bump() {
                None => return Err(self.fail_at(start, "string is not closed")),
                Some('"') => return Ok(out),
                Some('\n') => {
                    return Err(self.fail_at(start, "string is not closed before the end of line"));
                }
                Some(c) if c < ' ' => {
                    return Err(self.fail_at(pos, "control character inside a string"));
                }
                Some('\\') => out.push(self.escape(pos)?),
                Some(c) => out.push(c),
            }
        }
    }

    fn escape(&mut self, pos: Pos) -> Result<char, Stop> {
        let c = match self.bump() {
            Some('"') => '"',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let high = self.hex4(pos)?;
                if (0xD800..0xDC00).contains(&high) {
                    if self.bump() != Some('\\') || self.bump() != Some('u') {
                        return Err(self.fail_at(pos, "unpaired surrogate in \\u escape"));
                    }
                    let low = self.hex4(pos)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(self.fail_at(pos, "unpaired surrogate in \\u escape"));
                    }
                    let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    return char::from_u32(code)
                        .ok_or_else(|| self.fail_at(pos, "invalid \\u escape"));
                }
                return char::from_u32(high).ok_or_else(|| self.fail_at(pos, "invalid \\u escape"));
            }
            _ => return Err(self.fail_at(pos, "invalid escape in string")),
        };
        Ok(c)
    }

    fn hex4(&mut self, pos: Pos) -> Result<u32, Stop> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self.bump().and_then(|c| c.to_digit(16));
            match digit {
                Some(d) => code = code * 16 + d,
                None => return Err(self.fail_at(pos, "invalid \\u escape: expected 4 hex digits")),
            }
        }
        Ok(code)
    }

    fn object(&mut self, depth: usize) -> Result<Value, Stop> {
        self.bump(); // {
        let mut entries: Vec<Entry> = Vec::new();
        self.skip_ws()?;
        if self.peek() == Some('}') {
            self.bump();
            return Ok(Value::Map(entries));
        }
        loop {
            self.skip_ws()?;
            let key_pos = self.pos();
            let key = match self.peek() {
                Some('"') => self.string()?,
                Some('\'') => {
                    return Err(
                        self.fail_here("keys must use double quotes (\"), not single quotes")
                    );
                }
                Some(c) if c.is_alphabetic() || c == '_' => {
                    return Err(self.fail_here("keys must be strings in double quotes"));
                }
                Some(c) => {
                    return Err(self.fail_here(&format!(
                        "expected a key in double quotes, found {}",
                        show(c)
                    )));
                }
                None => return Err(self.fail_here("unexpected end of file inside an object")),
            };
            self.skip_ws()?;
            match self.peek() {
                Some(':') => {
                    self.bump();
                }
                Some('=') => {
                    return Err(
                        self.fail_here(&format!("expected ':' after key {key:?}, found '='"))
                    );
                }
                Some(c) => {
                    return Err(self.fail_here(&format!(
                        "expected ':' after key {key:?}, found {}",
                        show(c)
                    )));
                }
                None => return Err(self.fail_here("unexpected end of file inside an object")),
            }
            self.skip_ws()?;
            self.path.push(key.clone());
            let value = self.value(depth + 1);
            self.path.pop();
            let value = value?;
            entries.push(Entry {
                key,
                key_pos,
                value,
            });
            self.skip_ws()?;
            match self.peek() {
                Some(',') => {
                    let comma = self.pos();
                    self.bump();
                    self.skip_ws()?;
                    if self.peek() == Some('}') {
                        let last = entries.last().map(|e| e.key.clone()).unwrap_or_default();
                        self.record(
                            comma,
                            &format!(
                                "trailing comma after {last:?}: JSON does not allow a comma before '}}' (remove it)"
                            ),
                        );
                        self.bump();
                        return Ok(Value::Map(entries));
                    }
                }
                Some('}') => {
                    self.bump();
                    return Ok(Value::Map(entries));
                }
                Some('"') => return Err(self.fail_here("missing ',' between object members")),
                Some(c) => {
                    return Err(self.fail_here(&format!(
                        "expected ',' or '}}' after a value, found {}",
                        show(c)
                    )));
                }
                None => {
                    return Err(
                        self.fail_here("unexpected end of file: the object is not closed with '}'")
                    );
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Stop> {
        self.bump(); // [
        let mut items = Vec::new();
        self.skip_ws()?;
        if self.peek() == Some(']') {
            self.bump();
            return Ok(Value::Seq(items));
        }
        loop {
            self.skip_ws()?;
            self.path.push(items.len().to_string());
            let item = self.value(depth + 1);
            self.path.pop();
            items.push(item?);
            self.skip_ws()?;
            match self.peek() {
                Some(',') => {
                    let comma = self.pos();
                    self.bump();
                    self.skip_ws()?;
                    if self.peek() == Some(']') {
                        self.record(
                            comma,
                            "trailing comma: JSON does not allow a comma before ']' (remove it)",
                        );
                        self.bump();
                        return Ok(Value::Seq(items));
                    }
                }
                Some(']') => {
                    self.bump();
                    return Ok(Value::Seq(items));
                }
                Some(c) => {
                    return Err(self.fail_here(&format!(
                        "expected ',' or ']' after a value, found {}",
                        show(c)
                    )));
                }
                None => {
                    return Err(
                        self.fail_here("unexpected end of file: the list is not closed with ']'")
                    );
                }
            }
        }
    }
}

fn show(c: char) -> String {
    format!("{c:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Node {
        let (node, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        node.expect("tree")
    }

    #[test]
    fn keys_and_values_keep_their_positions() {
        let node = ok("{\n  \"a\": 1,\n  \"b\": {\"c\": \"x\"}\n}");
        let Value::Map(entries) = node.value else {
            panic!("map")
        };
        assert_eq!(entries[0].key, "a");
        assert_eq!(entries[0].key_pos, Pos::new(2, 3));
        assert_eq!(entries[0].value.pos, Pos::new(2, 8));
        let Value::Map(inner) = &entries[1].value.value else {
            panic!("inner map")
        };
        assert_eq!(inner[0].key_pos, Pos::new(3, 9));
        assert_eq!(inner[0].value.value, Value::Str("x".into()));
    }

    #[test]
    fn scalars_parse_to_their_kinds() {
        let node = ok(r#"[true, false, null, -12, 1.5e3, "a\u00e9\n"]"#);
        let Value::Seq(items) = node.value else {
            panic!("seq")
        };
        let values: Vec<Value> = items.into_iter().map(|n| n.value).collect();
        assert_eq!(
            values,
            vec![
                Value::Bool(true),
                Value::Bool(false),
                Value::Null,
                Value::Int(-12),
                Value::Float(1500.0),
                Value::Str("a\u{e9}\n".into())
            ]
        );
    }

    #[test]
    fn trailing_comma_is_reported_at_the_comma_and_reading_continues() {
        let (node, errors) = parse("{\"a\": {\"b\": 1, }, \"c\": 2,}");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].pos, Pos::new(1, 14));
        assert!(errors[0].message.contains("trailing comma"));
        assert_eq!(errors[0].key.as_deref(), Some("a"));
        assert_eq!(errors[1].pos, Pos::new(1, 25));
        let Some(Node {
            value: Value::Map(entries),
            ..
        }) = node
        else {
            panic!("map")
        };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn common_mistakes_get_named() {
        let cases = [
            ("{'a': 1}", Pos::new(1, 2), "double quotes"),
            ("{\"a\": True}", Pos::new(1, 7), "lower case"),
            ("{\"a\": 1 \"b\": 2}", Pos::new(1, 9), "missing ','"),
            ("{\"a\": 1} // x", Pos::new(1, 10), "comments"),
            ("{\"a\": 01}", Pos::new(1, 7), "not a valid JSON number"),
            ("{\"a\": \"x}", Pos::new(1, 7), "not closed"),
            ("{\"a\": 1", Pos::new(1, 8), "not closed"),
            ("{} {}", Pos::new(1, 4), "after the end"),
        ];
        for (text, pos, needle) in cases {
            let (_, errors) = parse(text);
            assert_eq!(errors.len(), 1, "{text}: {errors:?}");
            assert_eq!(errors[0].pos, pos, "{text}: {errors:?}");
            assert!(
                errors[0].message.contains(needle),
                "{text}: {}",
                errors[0].message
            );
        }
    }
}
