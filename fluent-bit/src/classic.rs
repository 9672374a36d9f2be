//! Fluent Bit's classic format: `[SECTION]` headers at column 0, indented
//! `Key Value` entries (key up to the first blank, value the trimmed rest), `#`
//! comments, and the `@INCLUDE file` and `@SET name=value` directives. Entries of one
//! section share one indentation, as Fluent Bit requires.

use crate::error::FluentBitError;
use crate::model::{Config, Property, Section, SectionKind};

/// Parses one classic-format file. `@INCLUDE`d files are listed, not read.
///
/// # Errors
/// The first malformed line, with its number.
///
/// # Examples
/// ```
/// let cfg = fluent_bit_config::classic::parse("[INPUT]\n    Name tail\n    Path /x/*.log\n")?;
/// let tail = cfg.find(fluent_bit_config::SectionKind::Input, "tail").unwrap();
/// assert_eq!(tail.get("path"), Some("/x/*.log"));
/// # Ok::<(), fluent_bit_config::FluentBitError>(())
/// ```
pub fn parse(text: &str) -> Result<Config, FluentBitError> {
    let mut config = Config::default();
    let mut current: Option<(Section, Option<String>)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = &raw[..raw.len() - raw.trim_start().len()];
        if indent.is_empty() {
            if let Some(rest) = trimmed.strip_prefix('@') {
                directive(&mut config, line, rest)?;
                continue;
            }
            if let Some(header) = trimmed.strip_prefix('[') {
                let name = header
                    .strip_suffix(']')
                    .ok_or(FluentBitError::UnterminatedHeader { line })?
                    .trim();
                let kind = SectionKind::from_header(name).ok_or_else(|| {
                    FluentBitError::UnknownSection {
                        line,
                        name: name.to_string(),
                    }
                })?;
                if let Some((done, _)) = current.take() {
                    config.sections.push(done);
                }
                current = Some((
                    Section {
                        kind,
                        properties: Vec::new(),
                    },
                    None,
                ));
                continue;
            }
            return Err(match current {
                None => FluentBitError::EntryOutsideSection { line },
                Some(_) => FluentBitError::BadIndent {
                    line,
                    found: String::new(),
                    expected: "an indentation of spaces".to_string(),
                },
            });
        }
        let Some((section, section_indent)) = current.as_mut() else {
            return Err(FluentBitError::EntryOutsideSection { line });
        };
        match section_indent {
            Some(expected) if expected != indent => {
                return Err(FluentBitError::BadIndent {
                    line,
                    found: indent.to_string(),
                    expected: expected.clone(),
                });
            }
            Some(_) => {}
            None if indent.contains('\t') => {
                return Err(FluentBitError::BadIndent {
                    line,
                    found: indent.to_string(),
                    expected: "spaces".to_string(),
                });
            }
            None => *section_indent = Some(indent.to_string()),
        }
        let (key, value) = split_entry(trimmed);
        if value.is_empty() {
            return Err(FluentBitError::MissingValue {
                line,
                key: key.to_string(),
            });
        }
        section.properties.push(Property {
            key: key.to_ascii_lowercase(),
            value: value.to_string(),
            line: Some(line),
        });
    }
    if let Some((done, _)) = current {
        config.sections.push(done);
    }
    Ok(config)
}

/// `Key   some value` into (`Key`, `some value`).
fn split_entry(trimmed: &str) -> (&str, &str) {
    match trimmed.find(char::is_whitespace) {
        Some(at) => (&trimmed[..at], trimmed[at..].trim()),
        None => (trimmed, ""),
    }
}

fn directive(config: &mut Config, line: usize, rest: &str) -> Result<(), FluentBitError> {
    let bad = || FluentBitError::BadDirective {
        line,
        text: format!("@{rest}"),
    };
    let (name, arg) = split_entry(rest);
    if name.eq_ignore_ascii_case("INCLUDE") && !arg.is_empty() {
        config.includes.push(arg.to_string());
        Ok(())
    } else if name.eq_ignore_ascii_case("SET") {
        let (key, value) = arg.split_once('=').ok_or_else(bad)?;
        let key = key.trim();
        if key.is_empty() {
            return Err(bad());
        }
        config
            .variables
            .push((key.to_string(), value.trim().to_string()));
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keep_order_and_entries_split_at_the_first_blank() {
        let cfg = parse(
            "# comment\n@SET cluster=demo\n[SERVICE]\n    Flush 1\n\n[INPUT]\n    Name   tail\n    Path   /var/log/x y.log\n[OUTPUT]\n  Name stdout\n  Match *\n",
        )
        .unwrap();
        let kinds: Vec<SectionKind> = cfg.sections.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                SectionKind::Service,
                SectionKind::Input,
                SectionKind::Output
            ]
        );
        let tail = cfg.find(SectionKind::Input, "tail").unwrap();
        assert_eq!(tail.get("PATH"), Some("/var/log/x y.log"));
        assert_eq!(tail.properties[1].line, Some(8));
        assert_eq!(cfg.variables, [("cluster".to_string(), "demo".to_string())]);
        assert_eq!(
            cfg.find(SectionKind::Output, "STDOUT")
                .unwrap()
                .get("match"),
            Some("*")
        );
    }

    #[test]
    fn malformed_lines_are_rejected_with_their_line() {
        let cases: [(&str, usize); 7] = [
            ("    Name tail\n", 1),
            ("[INPUT]\nName tail\n", 2),
            ("[INPUT]\n    Name tail\n  Path /x\n", 3),
            ("[INPUT]\n    Name\n", 2),
            ("[INPUTS]\n", 1),
            ("[INPUT\n", 1),
            ("@SET novalue\n", 1),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert!(
                err.to_string().starts_with(&format!("line {want}:")),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn tab_indentation_is_rejected() {
        assert!(matches!(
            parse("[INPUT]\n\tName tail\n"),
            Err(FluentBitError::BadIndent { line: 2, .. })
        ));
    }
}
