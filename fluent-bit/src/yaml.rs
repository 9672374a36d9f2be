//! Fluent Bit's YAML format: `env`, `includes`, `service`, `parsers`,
//! `multiline_parsers` and `pipeline.{inputs,filters,outputs}`, read into the same
//! [`Config`] as the classic format. Property values must be scalars (numbers and
//! booleans are kept as their text); unknown top-level keys are errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::error::FluentBitError;
use crate::model::{Config, Property, Section, SectionKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    env: BTreeMap<String, Value>,
    #[serde(default)]
    includes: Vec<String>,
    #[serde(default)]
    service: Option<Mapping>,
    #[serde(default)]
    parsers: Vec<Mapping>,
    #[serde(default)]
    multiline_parsers: Vec<Mapping>,
    #[serde(default)]
    pipeline: Pipeline,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Pipeline {
    #[serde(default)]
    inputs: Vec<Mapping>,
    #[serde(default)]
    filters: Vec<Mapping>,
    #[serde(default)]
    outputs: Vec<Mapping>,
}

/// Parses one YAML-format file. Included files are listed, not read.
///
/// # Errors
/// YAML syntax, an unknown top-level key, or a non-scalar property value.
///
/// # Examples
/// ```
/// let cfg = fluent_bit_config::yaml::parse("pipeline:\n  inputs:\n    - name: tail\n      refresh_interval: 5\n")?;
/// let tail = cfg.find(fluent_bit_config::SectionKind::Input, "tail").unwrap();
/// assert_eq!(tail.get("Refresh_Interval"), Some("5"));
/// # Ok::<(), fluent_bit_config::FluentBitError>(())
/// ```
pub fn parse(text: &str) -> Result<Config, FluentBitError> {
    let doc: Document = serde_yaml::from_str(text)?;
    let mut config = Config {
        includes: doc.includes,
        ..Config::default()
    };
    for (name, value) in doc.env {
        let value = scalar_text(&value).ok_or_else(|| FluentBitError::NonScalar {
            section: "env".to_string(),
            key: name.clone(),
        })?;
        config.variables.push((name, value));
    }
    let groups: [(SectionKind, Vec<Mapping>); 6] = [
        (SectionKind::Service, doc.service.into_iter().collect()),
        (SectionKind::Parser, doc.parsers),
        (SectionKind::MultilineParser, doc.multiline_parsers),
        (SectionKind::Input, doc.pipeline.inputs),
        (SectionKind::Filter, doc.pipeline.filters),
        (SectionKind::Output, doc.pipeline.outputs),
    ];
    for (kind, maps) in groups {
        for map in maps {
            config.sections.push(section(kind, &map)?);
        }
    }
    Ok(config)
}

fn section(kind: SectionKind, map: &Mapping) -> Result<Section, FluentBitError> {
    let mut properties = Vec::with_capacity(map.len());
    for (key, value) in map {
        let key = key.as_str().ok_or_else(|| FluentBitError::NonStringKey {
            section: kind.header().to_string(),
        })?;
        let value = scalar_text(value).ok_or_else(|| FluentBitError::NonScalar {
            section: kind.header().to_string(),
            key: key.to_string(),
        })?;
        properties.push(Property {
            key: key.to_ascii_lowercase(),
            value,
            line: None,
        });
    }
    Ok(Section { kind, properties })
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "on" } else { "off" }.to_string()),
        Value::Tagged(t) => scalar_text(&t.value),
        Value::Null | Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_becomes_sections_of_its_kind() {
        let cfg = parse(
            "env:\n  X: 1\nservice:\n  flush: 1\nparsers:\n  - name: p\n    format: json\npipeline:\n  inputs:\n    - name: tail\n      skip_long_lines: true\n  outputs:\n    - name: stdout\n      match: '*'\n",
        )
        .unwrap();
        let kinds: Vec<SectionKind> = cfg.sections.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                SectionKind::Service,
                SectionKind::Parser,
                SectionKind::Input,
                SectionKind::Output
            ]
        );
        assert_eq!(cfg.variables, [("X".to_string(), "1".to_string())]);
        let tail = cfg.find(SectionKind::Input, "tail").unwrap();
        assert_eq!(tail.get("skip_long_lines"), Some("on"));
    }

    #[test]
    fn unknown_keys_and_nested_values_are_rejected() {
        assert!(matches!(
            parse("pipelines:\n  inputs: []\n"),
            Err(FluentBitError::Yaml { .. })
        ));
        assert!(matches!(
            parse("pipeline:\n  inputs:\n    - name: tail\n      path: [a, b]\n"),
            Err(FluentBitError::NonScalar { key, .. }) if key == "path"
        ));
    }
}
