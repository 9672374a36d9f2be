//! The crate's one public error type, with the context each failure needs.

use std::path::PathBuf;

/// What can stop the shipper from starting or from reading its files.
///
/// Remote failures never surface here: they are retried or counted by the sender.
#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    /// A configuration value is outside what the API or the shipper accepts.
    #[error("invalid configuration `{field}`: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A file or directory operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (open, read, stat, list, write, rename).
        op: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint could not be encoded.
    #[error("encode checkpoint {path}: {source}")]
    CheckpointEncode {
        /// The checkpoint's path.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// No AWS region was configured and none could be resolved from the environment.
    #[error("no AWS region: set it in the configuration or AWS_REGION")]
    NoRegion,
    /// A background task of the shipper ended abnormally.
    #[error("shipper task {task} failed: {detail}")]
    Task {
        /// Which task.
        task: &'static str,
        /// What the runtime reported.
        detail: String,
    },
}

impl ShipperError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
