//! The crate's one error type: every fallible public function returns
//! [`ExporterError`], whose variants carry the operation and the path or address.

use std::io;
use std::path::PathBuf;

/// Errors at the exporter's public boundary.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// A file-sink setting failed validation at start-up.
    #[error("invalid file sink setting `{field}`: {reason}")]
    InvalidSinkConfig {
        field: &'static str,
        reason: &'static str,
    },
    /// The operational log would land in the flow-log file or be shipped with it.
    #[error("operational log {operational_log} would mix with the flow log {flow_log}")]
    OperationalLogCollides {
        operational_log: PathBuf,
        flow_log: PathBuf,
    },
    /// The flow-log path has no file name (e.g. `/` or `..`).
    #[error("flow-log path {path} has no file name")]
    NoFileName { path: PathBuf },
    /// A file-system call on the flow-log file or its directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ExporterError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
