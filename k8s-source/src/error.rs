//! The crate's error types: building a client, and objects the policy model rejects.

use std::path::PathBuf;

/// Why no API client could be built.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("in-cluster configuration (service account) unavailable: {source}")]
    InCluster {
        #[source]
        source: kube::config::InClusterError,
    },
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("--apiserver {url:?} is not a URL: {source}")]
    ApiServerUrl {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("API client from {origin}: {source}")]
    Client {
        origin: String,
        #[source]
        source: kube::Error,
    },
}

/// Why an API object could not be turned into a model value. The object is then
/// ignored (a previous version, if any, stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{object}: encoding the manifest: {source}")]
    Encode {
        object: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{object}: rejected by the policy model: {source}")]
    Invalid {
        object: String,
        #[source]
        source: Box<policy::LoadError>,
    },
    #[error("{object}: the loader returned no object")]
    NotLoaded { object: String },
}
