//! The policy source that reads a directory of Kubernetes YAML (Namespaces, Pods,
//! NetworkPolicies) and publishes a new cluster state whenever it changes: woken by
//! file notifications on the directory (so a ConfigMap volume's `..data` swap is seen),
//! with polling as a fallback and a safety net.
//!
//! Documents are taken one by one, as the API server takes objects: a document that
//! does not load is refused alone (logged with file, document and field, counted, and
//! listed in `/readyz`'s detail), the others apply; a document that turns bad keeps its
//! last good version; one that was never good is ignored. A Pod or NetworkPolicy
//! without a namespace goes to `default`, as kubectl does.
//!
//! Each state carries a revision: the newest modification time (ns) of its files and,
//! when the set of files changed (one added, removed or renamed over), of the
//! directory, read before the files are, so a state is at least as new as its revision
//! says. `lab apply` waits for the agent to have applied its revision. A file that is
//! not YAML (an editor's swap file, a writer's temporary) moves the directory's time
//! but not the revision, so a waiting writer never sees its revision before its policies.

use std::{
    collections::{BTreeMap, HashMap},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use policy::ClusterState;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How often the directory is looked at without a notification (the only way when
/// notifications cannot be had).
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// After a notification, more are gathered for this long before reading (an editor or
/// `kubectl cp` writes in several steps).
const SETTLE: Duration = Duration::from_millis(5);

/// A document the source refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub file: PathBuf,
    /// 1-based document index in the file (0: the file itself could not be read).
    pub index: usize,
    /// Why, with the field path where there is one.
    pub reason: String,
    /// Its last good version is still in force.
    pub kept_last_good: bool,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} doc {}: {}",
            self.file.display(),
            self.index,
            self.reason
        )?;
        if self.kept_last_good {
            write!(f, " (its last good version stays in force)")?;
        }
        Ok(())
    }
}

/// What one read of the directory gave.
#[derive(Clone, Debug, Default)]
pub struct DirRead {
    pub state: ClusterState,
    pub rejected: Vec<Rejected>,
    /// Documents whose Pod or NetworkPolicy went to the `default` namespace.
    pub defaulted_namespace: Vec<(PathBuf, usize)>,
}

/// A file as its metadata describes it: a changed stamp means read it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime_ns: u64,
    inode: u64,
    device: u64,
}

fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One loaded document of a file: its index, its objects or why it is refused, and
/// whether its namespace was defaulted.
struct CachedDocument {
    index: usize,
    result: Result<Arc<ClusterState>, String>,
    defaulted: bool,
}

struct CachedFile {
    stamp: Stamp,
    documents: Vec<CachedDocument>,
}

/// Reads a policy directory, parsing only the files that changed and keeping each
/// document's last good version.
pub struct DirReader {
    dir: PathBuf,
    files: BTreeMap<PathBuf, CachedFile>,
    /// Each document's last version that loaded, by (file, index).
    last_good: HashMap<(PathBuf, usize), Arc<ClusterState>>,
    /// What the last read saw: an unchanged directory is not merged again.
    last_look: Option<Look>,
}

/// One look at the directory: its YAML files' stamps and the directory's time.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Look {
    files: BTreeMap<PathBuf, Stamp>,
    /// The directory's modification time as last counted: when the set of files changed.
    dir_time_ns: u64,
}

impl Look {
    /// The newest of the files' times and the directory's counted time.
    fn revision(&self) -> u64 {
        self.files
            .values()
            .map(|s| s.mtime_ns)
            .fold(self.dir_time_ns, u64::max)
    }

    /// Whether `other` has the same files (by path and identity), whatever their
    /// contents: only then may the directory's own time be left out.
    fn same_files(&self, other: &BTreeMap<PathBuf, Stamp>) -> bool {
        fn identity<'a>((path, s): (&'a PathBuf, &'a Stamp)) -> (&'a PathBuf, u64, u64) {
            (path, s.inode, s.device)
        }
        self.files
            .iter()
            .map(identity)
            .eq(other.iter().map(identity))
    }
}

impl DirReader {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            files: BTreeMap::new(),
            last_good: HashMap::new(),
            last_look: None,
        }
    }

    /// The YAML files with their stamps (symlinks followed, as a ConfigMap volume's
    /// files are links into `..data`), and the revision: the newest modification time
    /// of those files and, if they are not the files the last look saw, the directory.
    fn look(&self) -> Result<Look, String> {
        let dir_meta = std::fs::metadata(&self.dir)
            .map_err(|e| format!("policy directory {}: {e}", self.dir.display()))?;
        let dir_time_now = mtime_ns(&dir_meta);
        let mut files = BTreeMap::new();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| format!("policy directory {}: {e}", self.dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let stamp = Stamp {
                len: meta.len(),
                mtime_ns: mtime_ns(&meta),
                inode: meta.ino(),
                device: meta.dev(),
            };
            files.insert(path, stamp);
        }
        let dir_time_ns = match &self.last_look {
            Some(last) if last.same_files(&files) => last.dir_time_ns,
            _ => dir_time_now,
        };
        Ok(Look { files, dir_time_ns })
    }

    /// Parses `path` and keeps its documents, each good one also as its last good
    /// version.
    fn parse(&mut self, path: &Path, stamp: Stamp, text: &str) {
        let name = path.display().to_string();
        let documents: Vec<CachedDocument> = policy::load_documents(&name, text)
            .into_iter()
            .map(|d| CachedDocument {
                index: d.index,
                result: d.result.map(Arc::new).map_err(|e| e.to_string()),
                defaulted: d.defaulted_namespace,
            })
            .collect();
        self.last_good
            .retain(|(p, i), _| p != path || documents.iter().any(|d| d.index == *i));
        for d in &documents {
            if let Ok(objects) = &d.result {
                self.last_good
                    .insert((path.to_path_buf(), d.index), objects.clone());
            }
        }
        self.files
            .insert(path.to_path_buf(), CachedFile { stamp, documents });
    }

    /// Reads the directory: every document that loads, each refused one listed;
    /// `None` when nothing changed since the last read.
    ///
    /// # Errors
    /// The directory itself cannot be read (nothing is changed then).
    pub fn read(&mut self) -> Result<Option<DirRead>, String> {
        let look = self.look()?;
        if self.last_look.as_ref() == Some(&look) {
            return Ok(None);
        }
        let stamps = &look.files;
        self.files.retain(|path, _| stamps.contains_key(path));
        self.last_good
            .retain(|(path, _), _| stamps.contains_key(path));
        let mut out = DirRead {
            state: ClusterState {
                revision: look.revision(),
                ..ClusterState::default()
            },
            ..DirRead::default()
        };
        for (path, stamp) in stamps {
            if self.files.get(path).is_some_and(|f| f.stamp == *stamp) {
                continue;
            }
            match std::fs::read_to_string(path) {
                Ok(text) => self.parse(path, *stamp, &text),
                // What was read of it before stays; the file is reported.
                Err(e) => out.rejected.push(Rejected {
                    file: path.clone(),
                    index: 0,
                    reason: e.to_string(),
                    kept_last_good: self.files.contains_key(path),
                }),
            }
        }
        for (path, file) in &self.files {
            for d in &file.documents {
                let objects = match &d.result {
                    Ok(objects) => Some(objects),
                    Err(reason) => {
                        let last = self.last_good.get(&(path.clone(), d.index));
                        out.rejected.push(Rejected {
                            file: path.clone(),
                            index: d.index,
                            reason: reason.clone(),
                            kept_last_good: last.is_some(),
                        });
                        last
                    }
                };
                let Some(objects) = objects else { continue };
                if let Err(duplicate) = out.state.merge_from(objects) {
                    out.rejected.push(Rejected {
                        file: path.clone(),
                        index: d.index,
                        reason: format!("{duplicate} is defined twice; the first stays"),
                        kept_last_good: false,
                    });
                } else if d.defaulted {
                    out.defaulted_namespace.push((path.clone(), d.index));
                }
            }
        }
        self.last_look = Some(look);
        Ok(Some(out))
    }
}

/// What the source reports beside the states it publishes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceReport {
    pub rejected: Vec<Rejected>,
}

/// File notifications on `dir`, as a channel of "something changed"; `None` when they
/// cannot be had (the caller polls).
fn notifications(dir: &Path) -> Option<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    use notify::Watcher;
    let (tx, rx) = mpsc::channel(1);
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            // Full means a wake-up is already pending.
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "no file notifications; polling the policy directory every {POLL_INTERVAL:?}");
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the policy directory; polling it every {POLL_INTERVAL:?}");
        return None;
    }
    Some((watcher, rx))
}

/// Publishes the directory's state now and after every change until `stop`; refused
/// documents go to `report`.
pub async fn watch_dir(
    dir: PathBuf,
    tx: watch::Sender<Option<Arc<ClusterState>>>,
    report: watch::Sender<SourceReport>,
    stop: CancellationToken,
) {
    let mut notified = notifications(&dir);
    let mut reader = Some(DirReader::new(dir.clone()));
    let mut last_error: Option<String> = None;
    let mut last_rejected: Vec<Rejected> = Vec::new();
    loop {
        let Some(mut r) = reader.take() else { return };
        // Parsing a large file must not hold a runtime worker (health and metrics).
        let Ok((r, read)) = tokio::task::spawn_blocking(move || {
            let read = r.read();
            (r, read)
        })
        .await
        else {
            return;
        };
        reader = Some(r);
        match read {
            Ok(None) => last_error = None,
            Ok(Some(read)) => {
                last_error = None;
                for rejected in &read.rejected {
                    if !last_rejected.contains(rejected) {
                        tracing::error!(file = %rejected.file.display(), document = rejected.index, reason = %rejected.reason, kept_last_good = rejected.kept_last_good, "policy document refused; the others apply");
                    }
                }
                if read.rejected != last_rejected {
                    last_rejected = read.rejected.clone();
                    let _ = report.send(SourceReport {
                        rejected: read.rejected.clone(),
                    });
                }
                for (file, index) in &read.defaulted_namespace {
                    tracing::debug!(file = %file.display(), document = index, "no namespace given: the default namespace");
                }
                tracing::info!(dir = %dir.display(), pods = read.state.pods.len(), policies = read.state.policies.len(), refused = read.rejected.len(), revision = read.state.revision, "policy source read");
                if tx.send(Some(Arc::new(read.state))).is_err() {
                    return;
                }
            }
            Err(message) => {
                if last_error.as_ref() != Some(&message) {
                    tracing::error!(error = %message, "policy source cannot be read; the last good state stays enforced");
                }
                last_error = Some(message);
            }
        }
        let woken = match notified.as_mut() {
            Some((_, rx)) => tokio::select! {
                _ = stop.cancelled() => return,
                woke = rx.recv() => woke.is_some(),
                _ = tokio::time::sleep(POLL_INTERVAL) => false,
            },
            None => tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(POLL_INTERVAL) => false,
            },
        };
        if woken {
            tokio::time::sleep(SETTLE).await;
            if let Some((_, rx)) = notified.as_mut() {
                while rx.try_recv().is_ok() {}
            }
        } else if notified.as_ref().is_some_and(|(_, rx)| rx.is_closed()) {
            notified = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";

    fn policy_names(state: &ClusterState) -> Vec<&str> {
        state.policies.keys().map(|k| k.name.as_str()).collect()
    }
    fn policy(name: &str, port: &str) -> String {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  podSelector: {{}}\n  ingress: [{{ports: [{{port: {port}}}]}}]\n"
        )
    }

    #[test]
    fn a_bad_document_is_refused_alone_and_a_good_one_turned_bad_keeps_its_last_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), NS).unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            format!("{}---\n{}", policy("p1", "80"), policy("p2", "81")),
        )
        .unwrap();
        let mut reader = DirReader::new(dir.path());
        let first = reader.read().unwrap().unwrap();
        assert!(first.rejected.is_empty());
        assert_eq!(first.state.policies.len(), 2);

        // p1 turns bad, a never-good p3 appears, and another file changes a port.
        std::fs::write(
            dir.path().join("b.yaml"),
            format!(
                "{}---\n{}---\n{}",
                policy("p1", "Web_Port"),
                policy("p2", "82"),
                policy("p3", "-1")
            ),
        )
        .unwrap();
        let second = reader.read().unwrap().unwrap();
        let refused: Vec<(usize, bool)> = second
            .rejected
            .iter()
            .map(|r| (r.index, r.kept_last_good))
            .collect();
        assert_eq!(refused, [(1, true), (3, false)]);
        assert!(
            second.rejected[0].reason.contains("port"),
            "{:?}",
            second.rejected[0]
        );
        let names = policy_names(&second.state);
        assert_eq!(
            names,
            ["p1", "p2"],
            "p1 as last good, p2 changed, p3 ignored"
        );
        let p2 = &second.state.policies[&policy::ObjectRef::new("shop", "p2")];
        assert_eq!(
            p2.spec.ingress[0].ports[0].port,
            Some(policy::PortRef::Number(82)),
            "the good change applies despite the bad documents beside it"
        );
        assert!(second.state.revision >= first.state.revision);
    }

    #[test]
    fn unchanged_files_are_not_parsed_again_and_deleted_ones_leave() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), NS).unwrap();
        std::fs::write(dir.path().join("b.yaml"), policy("p1", "80")).unwrap();
        let mut reader = DirReader::new(dir.path());
        reader.read().unwrap().unwrap();
        assert!(
            reader.read().unwrap().is_none(),
            "nothing changed, nothing read"
        );
        // Mark the cached document without touching the file's stamp, and touch
        // another file: the re-read takes b.yaml from the cache.
        let b = dir.path().join("b.yaml");
        reader.files.get_mut(&b).unwrap().documents[0].defaulted = true;
        std::fs::write(dir.path().join("c.yaml"), "").unwrap();
        assert_eq!(reader.read().unwrap().unwrap().defaulted_namespace.len(), 1);
        std::fs::remove_file(&b).unwrap();
        let after = reader.read().unwrap().unwrap();
        assert!(after.state.policies.is_empty());
        assert!(reader.last_good.keys().all(|(p, _)| p != &b));
    }

    /// Sets the modification time of `path` (a file or a directory).
    fn set_mtime(path: &Path, ns: u64) {
        std::fs::File::open(path)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_nanos(ns))
            .unwrap();
    }

    #[test]
    fn the_directory_time_counts_only_when_the_set_of_files_changes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = d.join("a.yaml");
        std::fs::write(&a, format!("{NS}---\n{}", policy("p1", "80"))).unwrap();
        const SECOND: u64 = 1_000_000_000;
        let base = 1_800_000_000 * SECOND;
        set_mtime(&a, base);
        set_mtime(d, base + SECOND);
        let mut reader = DirReader::new(d);
        let first = reader.read().unwrap().unwrap();
        assert_eq!(
            first.state.revision,
            base + SECOND,
            "a first look counts the directory"
        );

        // An editor's swap file (not YAML) moves the directory's time: nothing to read.
        std::fs::write(d.join(".a.yaml.swp"), "x").unwrap();
        set_mtime(d, base + 2 * SECOND);
        assert!(
            reader.read().unwrap().is_none(),
            "a file that is not policy input changes neither the state nor the revision"
        );

        // A file written in place counts by its own time.
        std::fs::write(&a, format!("{NS}---\n{}", policy("p1", "81"))).unwrap();
        set_mtime(&a, base + 3 * SECOND);
        set_mtime(d, base + 4 * SECOND);
        let in_place = reader.read().unwrap().unwrap();
        assert_eq!(in_place.state.revision, base + 3 * SECOND);

        let b = d.join("b.yaml");
        std::fs::write(&b, policy("p2", "80")).unwrap();
        set_mtime(&b, base);
        set_mtime(d, base + 5 * SECOND);
        let added = reader.read().unwrap().unwrap();
        assert_eq!(
            added.state.revision,
            base + 5 * SECOND,
            "an added file counts the directory"
        );
        // A file renamed over another: a new file at the same path, so the directory counts.
        let staged = tempfile::NamedTempFile::new_in(d.parent().unwrap()).unwrap();
        std::fs::write(staged.path(), policy("p3", "80")).unwrap();
        set_mtime(staged.path(), base);
        staged.persist(&b).unwrap();
        set_mtime(d, base + 6 * SECOND);
        let renamed = reader.read().unwrap().unwrap();
        assert_eq!(renamed.state.revision, base + 6 * SECOND);
        assert_eq!(policy_names(&renamed.state), ["p1", "p3"]);

        // A removed file: the directory's time is the only trace, and it counts.
        std::fs::remove_file(&b).unwrap();
        set_mtime(d, base + 7 * SECOND);
        let removed = reader.read().unwrap().unwrap();
        assert_eq!(removed.state.revision, base + 7 * SECOND);
        assert_eq!(policy_names(&removed.state), ["p1"]);
    }

    #[test]
    fn duplicates_and_byte_order_marks_and_default_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), format!("\u{feff}{NS}---\n{NS}")).unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {podSelector: {}}\n",
        )
        .unwrap();
        let read = DirReader::new(dir.path()).read().unwrap().unwrap();
        assert_eq!(read.rejected.len(), 1);
        assert!(
            read.rejected[0].reason.contains("Namespace shop"),
            "{:?}",
            read.rejected
        );
        assert_eq!(read.rejected[0].index, 2);
        assert!(
            read.state
                .policies
                .contains_key(&policy::ObjectRef::new("default", "x"))
        );
        assert_eq!(read.defaulted_namespace.len(), 1);
    }

    #[test]
    fn a_configmap_style_swap_of_the_data_link_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let v1 = d.join("..v1");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(
            v1.join("p.yaml"),
            format!("{NS}---\n{}", policy("p1", "80")),
        )
        .unwrap();
        std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/p.yaml", d.join("p.yaml")).unwrap();
        let mut reader = DirReader::new(d);
        let first = reader.read().unwrap().unwrap();
        assert_eq!(first.state.policies.len(), 1);
        // kubelet: a new directory, then `..data` replaced atomically.
        let v2 = d.join("..v2");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(
            v2.join("p.yaml"),
            format!("{NS}---\n{}", policy("p9", "80")),
        )
        .unwrap();
        std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        let second = reader.read().unwrap().unwrap();
        let names = policy_names(&second.state);
        assert_eq!(names, ["p9"]);
    }
}
