//! One watcher task per kind, on kube's `Api::list` and `Api::watch`: a paginated list,
//! a watch from the list's resourceVersion (bookmarks on) resumed from the last
//! resourceVersion when it ends, a periodic relist, and conversion of every object into
//! the policy model at once. Relists are buffered and handed over whole, so a partial
//! list never replaces a complete one.
//!
//! Failures: a 410 Gone (an ERROR event in the stream, the answer to a watch request,
//! or a list page whose continue token expired) starts a relist after a short random
//! delay (`SourceOptions::gone_relist_jitter`), served from the API server's watch
//! cache; anything else is retried after an exponential backoff that starts over after
//! any success (a list, a watch accepted, an event).
//!
//! An optional kind (`Watched::OPTIONAL`: ClusterPolicyEndpoints, whose CRD exists only
//! where the EKS controller supports ClusterNetworkPolicies) answered 404 (not served)
//! counts as listed with no objects: readiness does not wait for it, any objects it
//! had are removed (a CRD deleted takes its objects with it), and the list is tried
//! again every `SourceOptions::absent_recheck` (jittered), so a CRD installed later is
//! picked up. Counted as `not_found` and logged once, not a failure: the source does
//! not turn blind for it.
//!
//! kube-runtime's `watcher` is not used: it hides a successfully reopened watch and
//! the bookmarks, so after a failed watch request nothing tells a quiet kind's watcher
//! that it sees again (its health would stay blind, its backoff grown); it logs a WARN
//! of its own on every 403; and its cache semantics (`resourceVersion=0`) are dropped
//! by kube whenever a page size is set.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::Api;
use kube::ResourceExt;
use kube::api::{ListParams, VersionMatch, WatchEvent, WatchParams};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::convert::{Key, Kind, Object, Watched};
use crate::error::{ErrorReason, Failure};
use crate::health::Monitor;
use crate::retry::Backoff;
use crate::source::SourceOptions;

/// A change for the state task.
#[derive(Debug)]
pub(crate) enum Update {
    Apply(Object),
    Delete(Key),
    /// A completed (re)list: every object of `kind` is in `objects`, except those in
    /// `keep`, which failed to convert and keep their previous version, if any.
    Replace {
        kind: Kind,
        objects: Vec<Object>,
        keep: Vec<Key>,
    },
}

/// Counters of one kind's watcher, readable at any time.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) events: AtomicU64,
    pub(crate) lists: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) gone_restarts: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) absent: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Margin over the server's watch timeout before a silent watch counts as dead (as
/// kube-runtime's watcher has it).
const WATCH_IDLE_MARGIN: Duration = Duration::from_secs(5);

/// How the next list is read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ListFrom {
    /// The most recent state, in pages of `SourceOptions::page_size`.
    Latest,
    /// After a 410: one unpaginated request at `resourceVersion` = the last one seen,
    /// `resourceVersionMatch=NotOlderThan`, which the API server answers from its watch
    /// cache (a limit, or no resourceVersion, would send it to etcd on most versions),
    /// never older than what this watcher already had. client-go's reflector relists
    /// the same way, to spare etcd when every node relists after an API server restart.
    Cache(String),
}

/// What the watcher does next.
#[derive(Debug)]
enum Next {
    List(ListFrom),
    Watch(String),
}

/// The watcher gave up: the state task is gone.
struct Stopped;

/// A completed list.
#[derive(Default)]
struct Listed {
    objects: Vec<Object>,
    keep: Vec<Key>,
    resource_version: String,
}

/// Run the watcher for `K` until the state task goes away.
pub(crate) async fn run<K: Watched>(
    api: Api<K>,
    options: SourceOptions,
    tx: mpsc::Sender<Update>,
    counters: Arc<Counters>,
    monitor: Monitor,
) {
    let backoff = Backoff::new(options.backoff_initial, options.backoff_max);
    let mut watcher = Watcher {
        api,
        options,
        tx,
        counters,
        monitor,
        backoff,
        resync_at: None,
    };
    let mut next = Next::List(ListFrom::Latest);
    loop {
        let step = match next {
            Next::List(from) => watcher.list(from).await,
            Next::Watch(rv) => watcher.watch(rv).await,
        };
        match step {
            Ok(step) => next = step,
            Err(Stopped) => return,
        }
    }
}

struct Watcher<K: Watched> {
    api: Api<K>,
    options: SourceOptions,
    tx: mpsc::Sender<Update>,
    counters: Arc<Counters>,
    monitor: Monitor,
    backoff: Backoff,
    /// When the next periodic relist is due (set by each completed list).
    resync_at: Option<Instant>,
}

impl<K: Watched> Watcher<K> {
    fn succeeded(&mut self) {
        self.backoff.reset();
        self.monitor.succeeded();
    }

    /// Count and log a failure, wait the backoff.
    ///
    /// A 401 needs nothing more: kube re-reads a token file (in-cluster, or a
    /// kubeconfig `tokenFile`) by itself at least once a minute (kube-client 5.0,
    /// `src/client/auth/mod.rs`, `TokenFile::token`: reloaded when its 60 s expiry is
    /// 10 s away, on the next request), so the projected token the kubelet rotates is in
    /// use within a minute, whatever this backoff.
    async fn failed(&mut self, failure: &Failure, call: &'static str) {
        bump(&self.counters.errors);
        let delay = self.backoff.next_delay();
        self.monitor.failed(failure, call, delay);
        tokio::time::sleep(delay).await;
    }

    /// Count and log a 410, wait a short random delay (so that the nodes' agents do not
    /// all relist at once after an API server restart).
    async fn gone(&mut self, failure: &Failure) {
        bump(&self.counters.errors);
        bump(&self.counters.gone_restarts);
        // Anything from zero to the setting (full jitter).
        let delay = backoff::random_jitter(self.options.gone_relist_jitter, 1.0);
        self.monitor.gone(failure, delay);
        tokio::time::sleep(delay).await;
    }

    async fn list(&mut self, from: ListFrom) -> Result<Next, Stopped> {
        tracing::debug!(kind = K::KIND.as_str(), ?from, "listing");
        match self.list_pages(&from).await {
            Ok(Listed {
                objects,
                keep,
                resource_version,
            }) => {
                self.succeeded();
                bump(&self.counters.lists);
                tracing::debug!(
                    kind = K::KIND.as_str(),
                    objects = objects.len(),
                    "list complete"
                );
                let replace = Update::Replace {
                    kind: K::KIND,
                    objects,
                    keep,
                };
                self.tx.send(replace).await.map_err(|_| Stopped)?;
                // Spread over a tenth of the period so that the nodes do not relist in step.
                self.resync_at = self
                    .options
                    .resync
                    .map(|period| Instant::now() + backoff::random_jitter(period, 0.1));
                Ok(Next::Watch(resource_version))
            }
            Err((failure, _)) if K::OPTIONAL && failure.reason == ErrorReason::NotFound => {
                self.absent(&failure).await
            }
            Err((failure, last_rv)) if failure.reason == ErrorReason::Gone => {
                self.gone(&failure).await;
                Ok(Next::List(match (from, last_rv) {
                    // An expired continue token: the cache still serves the whole list.
                    (ListFrom::Latest, Some(rv)) => ListFrom::Cache(rv),
                    _ => ListFrom::Latest,
                }))
            }
            Err((failure, _)) => {
                self.failed(&failure, "list").await;
                Ok(Next::List(ListFrom::Latest))
            }
        }
    }

    /// The server does not serve this optional kind: no objects (published as a
    /// complete, empty list), and another list after `absent_recheck`.
    async fn absent(&mut self, failure: &Failure) -> Result<Next, Stopped> {
        bump(&self.counters.absent);
        self.backoff.reset();
        let delay = backoff::random_jitter(self.options.absent_recheck, 0.1);
        self.monitor.absent(failure, delay);
        let replace = Update::Replace {
            kind: K::KIND,
            objects: Vec::new(),
            keep: Vec::new(),
        };
        self.tx.send(replace).await.map_err(|_| Stopped)?;
        self.resync_at = None;
        tokio::time::sleep(delay).await;
        Ok(Next::List(ListFrom::Latest))
    }

    /// All pages of one list, converted. On failure, the resourceVersion of the pages
    /// read so far, if any.
    async fn list_pages(&mut self, from: &ListFrom) -> Result<Listed, (Failure, Option<String>)> {
        let mut listed = Listed::default();
        let mut params = match from {
            ListFrom::Latest => ListParams::default().limit(self.options.page_size),
            ListFrom::Cache(rv) => ListParams::default()
                .at(rv)
                .matching(VersionMatch::NotOlderThan),
        };
        let mut page_rv = None;
        loop {
            let page = match self.api.list(&params).await {
                Ok(page) => page,
                Err(error) => return Err((Failure::from_kube(&error), page_rv)),
            };
            for obj in &page.items {
                match convert(obj, &self.counters) {
                    Some(object) => listed.objects.push(object),
                    None => listed.keep.push(obj.model_key()),
                }
            }
            page_rv = page.metadata.resource_version.filter(|rv| !rv.is_empty());
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => {
                    params = ListParams::default()
                        .limit(self.options.page_size)
                        .continue_token(&token);
                }
                None => {
                    let Some(rv) = page_rv else {
                        return Err((
                            Failure::decode("list without metadata.resourceVersion"),
                            None,
                        ));
                    };
                    listed.resource_version = rv;
                    return Ok(listed);
                }
            }
        }
    }

    fn resync_due(&self) -> bool {
        self.resync_at.is_some_and(|at| at <= Instant::now())
    }

    fn resync(&self) -> Next {
        bump(&self.counters.resyncs);
        tracing::debug!(kind = K::KIND.as_str(), "periodic relist");
        Next::List(ListFrom::Latest)
    }

    async fn watch(&mut self, rv: String) -> Result<Next, Stopped> {
        if self.resync_due() {
            return Ok(self.resync());
        }
        let params = WatchParams::default().timeout(self.options.watch_timeout_secs);
        match self.api.watch(&params, &rv).await {
            Ok(stream) => {
                // Accepted: the API serves this watcher again (a quiet kind may send
                // nothing for minutes). The backoff starts over, unless the watch fails
                // before it delivers anything (no hot loop on a server that accepts
                // watches and breaks them at once).
                let before = self.backoff.clone();
                self.succeeded();
                self.follow(stream, rv, before).await
            }
            Err(error) => {
                let failure = Failure::from_kube(&error);
                if failure.reason == ErrorReason::Gone {
                    self.gone(&failure).await;
                    Ok(Next::List(ListFrom::Cache(rv)))
                } else if K::OPTIONAL && failure.reason == ErrorReason::NotFound {
                    // The CRD went away: the list says whether the kind is gone.
                    self.failed(&failure, "watch").await;
                    Ok(Next::List(ListFrom::Latest))
                } else {
                    self.failed(&failure, "watch").await;
                    Ok(Next::Watch(rv))
                }
            }
        }
    }

    /// Apply a watch stream's events until it ends, fails or a resync is due.
    /// `before`: the backoff before the watch was accepted, restored if it fails before
    /// delivering anything.
    async fn follow(
        &mut self,
        stream: impl Stream<Item = kube::Result<WatchEvent<K>>>,
        mut rv: String,
        before: Backoff,
    ) -> Result<Next, Stopped> {
        let mut stream = pin!(stream);
        let mut unproven = Some(before);
        let idle = (self.options.watch_timeout_secs > 0).then(|| {
            Duration::from_secs(u64::from(self.options.watch_timeout_secs)) + WATCH_IDLE_MARGIN
        });
        loop {
            let resync_at = self.resync_at;
            let resync_due = async {
                match resync_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let next_item = async {
                match idle {
                    Some(idle) => tokio::time::timeout(idle, stream.next()).await.ok(),
                    None => Some(stream.next().await),
                }
            };
            let item = tokio::select! {
                item = next_item => item,
                () = resync_due => return Ok(self.resync()),
            };
            let event = match item {
                // Silent for longer than the server's timeout: the connection is dead.
                None => {
                    tracing::debug!(kind = K::KIND.as_str(), "watch idle; reconnecting");
                    return Ok(Next::Watch(rv));
                }
                // The server closed the watch (its timeout): resume where it stopped.
                Some(None) => return Ok(Next::Watch(rv)),
                Some(Some(Ok(event))) => event,
                Some(Some(Err(error))) => {
                    let failure = Failure::from_kube(&error);
                    if failure.reason == ErrorReason::Decode {
                        // One line kube could not read; the stream goes on (the object
                        // keeps its previous version, as a rejected one does).
                        bump(&self.counters.errors);
                        self.monitor.skipped(&failure);
                        continue;
                    }
                    self.restore(&mut unproven);
                    self.failed(&failure, "watch").await;
                    return Ok(Next::Watch(rv));
                }
            };
            if !matches!(event, WatchEvent::Error(_)) {
                unproven = None;
            }
            match event {
                WatchEvent::Added(obj) | WatchEvent::Modified(obj) => {
                    let Some(version) = version_of(&obj) else {
                        return self.without_version().await;
                    };
                    rv = version;
                    bump(&self.counters.events);
                    if let Some(object) = convert(&obj, &self.counters) {
                        self.send(Update::Apply(object)).await?;
                    }
                }
                WatchEvent::Deleted(obj) => {
                    let Some(version) = version_of(&obj) else {
                        return self.without_version().await;
                    };
                    rv = version;
                    bump(&self.counters.events);
                    self.send(Update::Delete(obj.model_key())).await?;
                }
                WatchEvent::Bookmark(bookmark) => {
                    if !bookmark.metadata.resource_version.is_empty() {
                        rv = bookmark.metadata.resource_version;
                    }
                }
                WatchEvent::Error(status) => {
                    let failure = Failure::from_status(&status);
                    if failure.reason == ErrorReason::Gone {
                        self.gone(&failure).await;
                        return Ok(Next::List(ListFrom::Cache(rv)));
                    }
                    self.restore(&mut unproven);
                    self.failed(&failure, "watch").await;
                    return Ok(Next::Watch(rv));
                }
            }
        }
    }

    /// A watch failed before delivering anything: its acceptance does not count.
    fn restore(&mut self, unproven: &mut Option<Backoff>) {
        if let Some(before) = unproven.take() {
            self.backoff = before;
        }
    }

    async fn send(&mut self, update: Update) -> Result<(), Stopped> {
        self.monitor.succeeded();
        self.tx.send(update).await.map_err(|_| Stopped)
    }

    /// An event without a resourceVersion: the watch cannot be resumed, relist.
    async fn without_version(&mut self) -> Result<Next, Stopped> {
        let failure = Failure::decode("watch event without metadata.resourceVersion");
        self.failed(&failure, "watch").await;
        Ok(Next::List(ListFrom::Latest))
    }
}

fn version_of<K: Watched>(obj: &K) -> Option<String> {
    obj.resource_version().filter(|rv| !rv.is_empty())
}

fn convert<K: Watched>(obj: &K, counters: &Counters) -> Option<Object> {
    match obj.to_model() {
        Ok(object) => Some(object),
        Err(error) => {
            bump(&counters.rejected);
            tracing::warn!(kind = K::KIND.as_str(), %error, "object ignored; its previous version, if any, stays in force");
            None
        }
    }
}
