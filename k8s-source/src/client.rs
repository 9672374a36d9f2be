//! Building the API client: in-cluster (service account) or from a kubeconfig file,
//! as the incumbent's `--kubeconfig` flag does.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::SourceError;

/// Longest silence on one connection before it counts as dead: above the watch
/// timeout the watcher asks the server for (290 s), so only a hung request trips it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the API server and credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientSource {
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, token and CA
    /// under `/var/run/secrets/kubernetes.io/serviceaccount/`).
    InCluster,
    /// A kubeconfig file, its current context.
    Kubeconfig(PathBuf),
}

impl ClientSource {
    /// The incumbent's rule: a given `--kubeconfig` path wins, else in-cluster.
    pub fn from_flag(kubeconfig: Option<PathBuf>) -> Self {
        kubeconfig.map_or(ClientSource::InCluster, ClientSource::Kubeconfig)
    }
}

/// Build a client for `source`.
///
/// # Errors
/// The service account files or environment are missing, the kubeconfig cannot be
/// read or has no usable context, or the TLS/auth setup fails.
pub async fn client(source: &ClientSource) -> Result<kube::Client, SourceError> {
    let mut config = match source {
        ClientSource::InCluster => {
            kube::Config::incluster().map_err(|source| SourceError::InCluster { source })?
        }
        ClientSource::Kubeconfig(path) => {
            let kubeconfig_error = |source| SourceError::Kubeconfig {
                path: path.clone(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(kubeconfig_error)?
        }
    };
    config.read_timeout.get_or_insert(READ_TIMEOUT);
    kube::Client::try_from(config).map_err(|error| SourceError::Client {
        origin: source.to_string(),
        source: error,
    })
}

impl std::fmt::Display for ClientSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientSource::InCluster => f.write_str("in-cluster configuration"),
            ClientSource::Kubeconfig(path) => write!(f, "kubeconfig {}", path.display()),
        }
    }
}
