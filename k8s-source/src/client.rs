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

/// Build a client for `source`; `apiserver` (the `--apiserver` flag) replaces the
/// server URL it names, keeping its credentials.
///
/// # Errors
/// The service account files or environment are missing, the kubeconfig cannot be
/// read or has no usable context, `apiserver` is not a URL, or the TLS/auth setup
/// fails.
pub async fn client(
    source: &ClientSource,
    apiserver: Option<&str>,
) -> Result<kube::Client, SourceError> {
    let config = config(source, apiserver).await?;
    kube::Client::try_from(config).map_err(|error| SourceError::Client {
        origin: source.to_string(),
        source: error,
    })
}

/// The client configuration `client` uses.
///
/// # Errors
/// As `client`, except TLS/auth setup.
pub async fn config(
    source: &ClientSource,
    apiserver: Option<&str>,
) -> Result<kube::Config, SourceError> {
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
    if let Some(url) = apiserver {
        config.cluster_url =
            url.parse::<http::Uri>()
                .map_err(|source| SourceError::ApiServerUrl {
                    url: url.to_owned(),
                    source,
                })?;
    }
    config.read_timeout.get_or_insert(READ_TIMEOUT);
    Ok(config)
}

impl std::fmt::Display for ClientSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientSource::InCluster => f.write_str("in-cluster configuration"),
            ClientSource::Kubeconfig(path) => write!(f, "kubeconfig {}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_flag_selects_the_file_and_its_absence_in_cluster() {
        assert_eq!(ClientSource::from_flag(None), ClientSource::InCluster);
        assert_eq!(
            ClientSource::from_flag(Some("/etc/kube.conf".into())),
            ClientSource::Kubeconfig("/etc/kube.conf".into())
        );
    }

    const KUBECONFIG: &str = "apiVersion: v1
kind: Config
current-context: test
clusters:
  - name: test
    cluster: {server: \"http://127.0.0.1:6443\"}
contexts:
  - name: test
    context: {cluster: test, user: test}
users:
  - name: test
    user: {token: abc}
";

    #[tokio::test]
    async fn a_kubeconfig_file_gives_a_client_and_apiserver_overrides_its_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, KUBECONFIG).expect("write kubeconfig");
        let source = ClientSource::Kubeconfig(path.clone());
        client(&source, None).await.expect("client from kubeconfig");
        let plain = config(&source, None).await.expect("config");
        assert_eq!(plain.cluster_url.to_string(), "http://127.0.0.1:6443/");
        assert_eq!(plain.read_timeout, Some(READ_TIMEOUT));
        let overridden = config(&source, Some("http://127.0.0.1:7000"))
            .await
            .expect("config with --apiserver");
        assert_eq!(overridden.cluster_url.to_string(), "http://127.0.0.1:7000/");
        let error = config(&source, Some("http://bad url"))
            .await
            .expect_err("not a URL");
        assert!(matches!(error, SourceError::ApiServerUrl { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_is_an_error_naming_the_path() {
        let source = ClientSource::Kubeconfig("/nonexistent/kubeconfig".into());
        let error = config(&source, None).await.expect_err("no such file");
        assert!(
            error.to_string().contains("/nonexistent/kubeconfig"),
            "{error}"
        );
    }
}
