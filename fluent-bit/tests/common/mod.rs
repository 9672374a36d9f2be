//! Helpers shared by the file tests: reading the shipped Fluent Bit files, strict
//! Kubernetes validation against k8s-openapi's published types, and IAM wildcard
//! matching.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fluent_bit_config::{Config, Section, SectionKind, classic, deploy_dir, fluent_bit_dir, yaml};
use k8s_openapi::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub const CLASSIC: &str = "fluent-bit.conf";
pub const PARSERS: &str = "parsers.conf";
pub const YAML: &str = "fluent-bit.yaml";
pub const TRY_CLASSIC: &str = "try-stdout.conf";
pub const TRY_YAML: &str = "try-stdout.yaml";

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn fb_file(name: &str) -> PathBuf {
    fluent_bit_dir().join(name)
}

pub fn deploy_file(name: &str) -> PathBuf {
    deploy_dir().join(name)
}

/// A classic file with the parsers of its `Parsers_File` appended, as Fluent Bit loads it.
pub fn classic_with_parsers(name: &str) -> Config {
    let mut cfg = classic::parse(&read(&fb_file(name))).unwrap_or_else(|e| panic!("{name}: {e}"));
    let parsers_file = cfg
        .service()
        .and_then(|s| s.get("parsers_file"))
        .unwrap_or_else(|| panic!("{name}: no Parsers_File"))
        .to_string();
    let parsers = classic::parse(&read(&fb_file(&parsers_file)))
        .unwrap_or_else(|e| panic!("{parsers_file}: {e}"));
    assert!(
        parsers
            .sections
            .iter()
            .all(|s| s.kind == SectionKind::Parser),
        "{parsers_file} holds only parsers"
    );
    cfg.sections.extend(parsers.sections);
    cfg
}

pub fn yaml_config(name: &str) -> Config {
    yaml::parse(&read(&fb_file(name))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every shipped configuration, by file name.
pub fn all_configs() -> Vec<(&'static str, Config)> {
    vec![
        (CLASSIC, classic_with_parsers(CLASSIC)),
        (YAML, yaml_config(YAML)),
        (TRY_CLASSIC, classic_with_parsers(TRY_CLASSIC)),
        (TRY_YAML, yaml_config(TRY_YAML)),
    ]
}

pub fn tail(name: &str, cfg: &Config) -> Section {
    cfg.find(SectionKind::Input, "tail")
        .unwrap_or_else(|| panic!("{name}: no tail input"))
        .clone()
}

pub fn get<'a>(name: &str, section: &'a Section, key: &str) -> &'a str {
    section
        .get(key)
        .unwrap_or_else(|| panic!("{name}: [{}] has no {key}", section.kind.header()))
}

/// Every YAML document of a manifest file as JSON values.
pub fn documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: YAML document: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// `(apiVersion, kind)` of each document.
pub fn kinds(docs: &[Value]) -> Vec<(String, String)> {
    docs.iter()
        .map(|d| {
            (
                d["apiVersion"].as_str().unwrap_or_default().to_string(),
                d["kind"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The document of kind `T` named `name`, deserialized strictly: right apiVersion and
/// kind, every field of the right type (path reported on failure), and no field the
/// published type does not know (serializing the typed value back must give exactly
/// the document).
pub fn strict<T>(file: &Path, docs: &[Value], name: &str) -> T
where
    T: Resource + DeserializeOwned + Serialize,
{
    let doc = docs
        .iter()
        .find(|d| d["kind"] == T::KIND && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{}: no {} named {name}", file.display(), T::KIND));
    strict_value::<T>(file, doc)
}

/// [`strict`] for one document.
pub fn strict_value<T>(file: &Path, doc: &Value) -> T
where
    T: Resource + DeserializeOwned + Serialize,
{
    try_strict_value(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The strict check of [`strict`], reporting what is wrong instead of panicking.
pub fn try_strict_value<T>(doc: &Value) -> Result<T, String>
where
    T: Resource + DeserializeOwned + Serialize,
{
    if doc["apiVersion"] != T::API_VERSION || doc["kind"] != T::KIND {
        return Err(format!(
            "{} {} is not {} {}",
            doc["apiVersion"],
            doc["kind"],
            T::API_VERSION,
            T::KIND
        ));
    }
    let typed: T = serde_path_to_error::deserialize(doc.clone())
        .map_err(|e| format!("{} at {}: {}", T::KIND, e.path(), e.inner()))?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    match first_difference(doc, &back, "") {
        Some(diff) => Err(format!(
            "{} does not match the published schema: {diff}",
            T::KIND
        )),
        None => Ok(typed),
    }
}

/// Where `original` and `reserialized` first differ, as a readable path.
pub fn first_difference(original: &Value, reserialized: &Value, path: &str) -> Option<String> {
    match (original, reserialized) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    None => return Some(format!("{here}: unknown field")),
                    Some(other) => {
                        if let Some(d) = first_difference(value, other, &here) {
                            return Some(d);
                        }
                    }
                }
            }
            b.keys()
                .find(|k| !a.contains_key(*k))
                .map(|k| format!("{path}.{k}: added by the type"))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: {a} read back as {b}")),
    }
}

/// IAM's wildcard match: `*` any run of characters (including `:` and `/`), `?` one.
pub fn iam_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // matched[j]: pattern prefix so far matches text prefix of length j.
    let mut matched = vec![false; t.len() + 1];
    matched[0] = true;
    for &pc in &p {
        let mut next = vec![false; t.len() + 1];
        if pc == '*' {
            let mut any = false;
            for j in 0..=t.len() {
                any |= matched[j];
                next[j] = any;
            }
        } else {
            for j in 1..=t.len() {
                next[j] = matched[j - 1] && (pc == '?' || pc == t[j - 1]);
            }
        }
        matched = next;
    }
    matched[t.len()]
}
