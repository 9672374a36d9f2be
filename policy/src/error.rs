//! The crate's error types: what went wrong reading manifests, and what the
//! in-memory map model refused.

use std::path::PathBuf;

/// Why a manifest could not be loaded. Every variant names the source (file) and the
/// 1-based document index; field errors also name the field path.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source_name} doc {doc}: invalid YAML: {message}")]
    Syntax {
        source_name: String,
        doc: usize,
        message: String,
    },
    #[error("{source_name} doc {doc}: {path}: {message}")]
    Field {
        source_name: String,
        doc: usize,
        path: String,
        message: String,
    },
    #[error(
        "{source_name} doc {doc}: unsupported object {api_version}/{kind} (want v1 Namespace, v1 Pod or networking.k8s.io/v1 NetworkPolicy)"
    )]
    UnsupportedKind {
        source_name: String,
        doc: usize,
        api_version: String,
        kind: String,
    },
    #[error("{source_name} doc {doc}: {kind} {object} is defined twice")]
    Duplicate {
        source_name: String,
        doc: usize,
        kind: &'static str,
        object: String,
    },
}

/// An operation the in-memory map model rejected: the op sequence was out of order
/// or referenced something that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("op {index}: entry points at rule list {list_id}, which is not written")]
    MissingRuleList { index: usize, list_id: u32 },
    #[error("op {index}: rule list {list_id} is deleted while entries still use it")]
    RuleListInUse { index: usize, list_id: u32 },
    #[error(
        "op {index}: pod {pod} points at policy set {policy_set}, which has no entries for a direction it applies"
    )]
    EmptyPolicySet {
        index: usize,
        pod: String,
        policy_set: u32,
    },
    #[error("op {index}: deleting {what} that does not exist")]
    Missing { index: usize, what: String },
}
