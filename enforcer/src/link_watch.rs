//! Watches the node's links (rtnetlink notifications) and wakes the enforcer when one
//! appears or goes, so a pod seen before its interface is bound as soon as the
//! interface exists. Polls instead when notifications cannot be had.

use std::{sync::Arc, thread::JoinHandle, time::Duration};

use datapath::links::LinkEvents;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the watcher checks for shutdown (and, without notifications, wakes the
/// enforcer anyway).
const TICK: Duration = Duration::from_millis(500);
/// Without notifications: how often the enforcer looks at the links.
const POLL: Duration = Duration::from_secs(2);

/// Starts the watcher thread in the calling thread's network namespace (the agent's).
/// `None` if the thread could not be started (logged; interfaces are then looked at
/// only with policy changes).
pub fn spawn_watcher(changed: Arc<Notify>, stop: CancellationToken) -> Option<JoinHandle<()>> {
    let events = LinkEvents::subscribe();
    let spawned = std::thread::Builder::new()
        .name("link-watcher".into())
        .spawn(move || match events {
            Ok(mut events) => {
                while !stop.is_cancelled() {
                    match events.wait(TICK) {
                        Ok(true) => changed.notify_one(),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "link notifications failed; looking at the links every {POLL:?} instead");
                            poll(&changed, &stop);
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no link notifications; looking at the links every {POLL:?} instead");
                poll(&changed, &stop);
            }
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::error!(error = %e, "could not start the link watcher");
            None
        }
    }
}

fn poll(changed: &Notify, stop: &CancellationToken) {
    let mut waited = Duration::ZERO;
    while !stop.is_cancelled() {
        std::thread::sleep(TICK);
        waited += TICK;
        if waited >= POLL {
            waited = Duration::ZERO;
            changed.notify_one();
        }
    }
}
