//! One watcher task per kind: kube-runtime's watcher (paginated list, watch from the
//! list's resourceVersion, bookmarks, relist after 410 Gone) plus what it leaves to
//! its user: backoff after errors, a relist when the server answers a watch request
//! itself with HTTP 410, a periodic relist, and conversion of every object into the
//! policy model at once. Relists are buffered and handed over whole, so a partial
//! list never replaces a complete one.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backoff::{Backoff, jitter};
use crate::convert::{Key, Kind, Object, Watched};
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
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Why a watcher stream was replaced by a fresh one (which starts with a list).
#[derive(Debug)]
enum Restart {
    Resync,
    Gone,
    Ended,
}

/// A relist in progress.
#[derive(Default)]
struct InitBuffer {
    objects: Vec<Object>,
    keep: Vec<Key>,
}

/// Run the watcher for `K` until the state task goes away.
pub(crate) async fn run<K: Watched>(
    api: Api<K>,
    options: SourceOptions,
    tx: mpsc::Sender<Update>,
    counters: Arc<Counters>,
) {
    let kind = K::KIND;
    let mut backoff = Backoff::new(options.backoff_initial, options.backoff_max);
    loop {
        let config = watcher::Config::default()
            .page_size(options.page_size)
            .timeout(options.watch_timeout_secs);
        let mut stream = pin!(watcher::watcher(api.clone(), config));
        // Spread over a tenth of the period so that the nodes' agents do not relist in step.
        let resync_at = options
            .resync
            .map(|period| Instant::now() + jitter(period, 0.1));
        let mut init: Option<InitBuffer> = None;
        let restart = loop {
            let resync_due = async {
                match resync_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let item = tokio::select! {
                item = stream.next() => item,
                () = resync_due, if init.is_none() => break Restart::Resync,
            };
            match item {
                None => break Restart::Ended,
                Some(Ok(event)) => {
                    backoff.reset();
                    if handle(event, &mut init, &tx, &counters).await.is_err() {
                        return;
                    }
                }
                Some(Err(error)) => {
                    bump(&counters.errors);
                    let gone = is_gone_on_watch_start(&error);
                    tracing::warn!(kind = kind.as_str(), %error, gone, "watch error; the last state stays in force");
                    if gone {
                        break Restart::Gone;
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        };
        match restart {
            Restart::Resync => bump(&counters.resyncs),
            Restart::Gone => bump(&counters.gone_restarts),
            Restart::Ended => tokio::time::sleep(backoff.next_delay()).await,
        }
        tracing::debug!(
            kind = kind.as_str(),
            ?restart,
            "restarting the watch with a list"
        );
    }
}

/// kube-runtime relists after a 410 ERROR event inside a watch stream, but retries
/// the same resourceVersion forever when the watch request itself is answered 410.
fn is_gone_on_watch_start(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 410)
}

/// Apply one watcher event; `Err` when the state task is gone.
async fn handle<K: Watched>(
    event: Event<K>,
    init: &mut Option<InitBuffer>,
    tx: &mpsc::Sender<Update>,
    counters: &Counters,
) -> Result<(), mpsc::error::SendError<Update>> {
    match event {
        Event::Init => {
            *init = Some(InitBuffer::default());
            Ok(())
        }
        Event::InitApply(obj) => {
            let buffer = init.get_or_insert_with(InitBuffer::default);
            match convert(&obj, counters) {
                Some(object) => buffer.objects.push(object),
                None => buffer.keep.push(obj.model_key()),
            }
            Ok(())
        }
        Event::InitDone => {
            let InitBuffer { objects, keep } = init.take().unwrap_or_default();
            bump(&counters.lists);
            tracing::debug!(
                kind = K::KIND.as_str(),
                objects = objects.len(),
                "list complete"
            );
            tx.send(Update::Replace {
                kind: K::KIND,
                objects,
                keep,
            })
            .await
        }
        Event::Apply(obj) => {
            bump(&counters.events);
            match convert(&obj, counters) {
                Some(object) => tx.send(Update::Apply(object)).await,
                None => Ok(()),
            }
        }
        Event::Delete(obj) => {
            bump(&counters.events);
            tx.send(Update::Delete(obj.model_key())).await
        }
    }
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
