//! The policy source that reads a directory of Kubernetes YAML (Namespaces, Pods,
//! NetworkPolicies) and publishes a new cluster state whenever a file changes. A file
//! that does not parse is reported (file, document, field) and the last good state
//! stays in force: nothing already accepted is lost.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use policy::ClusterState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the directory is looked at; changes apply well within a second.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Names, sizes and modification times of the YAML files: a change in any of them
/// means the directory must be read again.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x == "yaml" || x == "yml")
        })
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.path(), meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

/// Publishes the directory's state now and after every change until `stop`.
pub async fn watch_dir(
    dir: PathBuf,
    tx: watch::Sender<Option<Arc<ClusterState>>>,
    stop: CancellationToken,
) {
    let mut last = None;
    let mut last_error = None;
    loop {
        let now = fingerprint(&dir);
        if last.as_ref() != Some(&now) {
            match policy::load_dir(&dir) {
                Ok(state) => {
                    last_error = None;
                    tracing::info!(dir = %dir.display(), pods = state.pods.len(), policies = state.policies.len(), "policy source read");
                    if tx.send(Some(Arc::new(state))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    if last_error.as_ref() != Some(&message) {
                        tracing::error!(error = %message, "policy source has an error; the last good state stays enforced");
                    }
                    last_error = Some(message);
                }
            }
            last = Some(now);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}
