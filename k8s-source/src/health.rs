//! Blindness: a watcher that has been failing without a break for longer than
//! `SourceOptions::blind_after` makes the source blind, published as a `SourceHealth`
//! value on a watch channel for readiness. Each watcher counts every failure in the
//! metrics but logs only changes of its state: the first failure (ERROR for 401 and
//! 403, which need a person; WARN otherwise), a change of reason, and the recovery
//! (INFO, with how long it lasted); each retry is logged at DEBUG.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::convert::Kind;
use crate::error::{ErrorReason, Failure};
use crate::metrics::SourceMetrics;

/// Whether the source still sees the API server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceHealth {
    /// The watchers failing continuously for longer than `SourceOptions::blind_after`,
    /// in kind order; empty when the source sees every kind.
    pub blind: Vec<BlindWatcher>,
}

/// A watcher that has failed continuously for longer than the bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlindWatcher {
    pub kind: Kind,
    /// The reason of its latest failures.
    pub reason: ErrorReason,
    /// When it started to fail.
    pub since: std::time::Instant,
    /// The first error with this reason, as the server or the client put it.
    pub error: String,
}

impl SourceHealth {
    /// Is any watcher blind? The published state is then possibly out of date (it
    /// stays in force).
    pub fn is_blind(&self) -> bool {
        !self.blind.is_empty()
    }

    /// Why the source is blind, for people (a readiness answer), or `None` if it is not.
    pub fn reason(&self) -> Option<String> {
        self.is_blind().then(|| self.to_string())
    }
}

impl std::fmt::Display for SourceHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.blind.is_empty() {
            return f.write_str("the Kubernetes API source sees every kind");
        }
        f.write_str("Kubernetes API source blind: ")?;
        for (i, w) in self.blind.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{} ({}) failing for {} s: {}",
                w.kind.plural(),
                w.reason,
                w.since.elapsed().as_secs(),
                w.error
            )?;
        }
        Ok(())
    }
}

/// One watcher's current failure, as the health task sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failing {
    reason: ErrorReason,
    since: Instant,
    error: String,
}

/// The failures of the watchers, by `Kind::index`.
pub(crate) type Failures = [Option<Failing>; Kind::COUNT];

/// The channel the watchers report their failures on.
pub(crate) fn failures() -> (Arc<watch::Sender<Failures>>, watch::Receiver<Failures>) {
    let (tx, rx) = watch::channel(Failures::default());
    (Arc::new(tx), rx)
}

/// A watcher's own failure state: counts, logs on changes, reports to the health task.
#[derive(Debug)]
pub(crate) struct Monitor {
    kind: Kind,
    metrics: SourceMetrics,
    report: Arc<watch::Sender<Failures>>,
    failing: Option<Failing>,
    /// An optional kind the server does not serve (404), since when.
    absent: Option<Instant>,
}

impl Monitor {
    pub(crate) fn new(
        kind: Kind,
        metrics: SourceMetrics,
        report: Arc<watch::Sender<Failures>>,
    ) -> Self {
        Self {
            kind,
            metrics,
            report,
            failing: None,
            absent: None,
        }
    }

    /// A call (`call`: "list" or "watch") failed, or a watch sent an ERROR event; a
    /// retry follows after `retry_in`.
    pub(crate) fn failed(&mut self, failure: &Failure, call: &'static str, retry_in: Duration) {
        self.metrics.count(self.kind, failure.reason);
        let kind = self.kind.as_str();
        let reason = failure.reason.as_str();
        let error = &failure.message;
        let previous = match &mut self.failing {
            Some(f) if f.reason == failure.reason => {
                tracing::debug!(kind, reason, call, %error, ?retry_in, "Kubernetes API call failed again");
                return;
            }
            Some(f) => {
                let previous = f.reason;
                f.reason = failure.reason;
                f.error.clone_from(error);
                Some(previous)
            }
            None => {
                self.failing = Some(Failing {
                    reason: failure.reason,
                    since: Instant::now(),
                    error: error.clone(),
                });
                None
            }
        };
        let previous = previous.map(ErrorReason::as_str);
        match failure.reason {
            ErrorReason::Forbidden => tracing::error!(
                kind,
                reason,
                previous,
                call,
                %error,
                "the Kubernetes API refuses the agent's calls (403 Forbidden: check the netpol-agent ClusterRole and its binding); retrying, the last state stays enforced"
            ),
            ErrorReason::Unauthorized => tracing::error!(
                kind,
                reason,
                previous,
                call,
                %error,
                "the Kubernetes API refuses the agent's credentials (401 Unauthorized: check the service account and its token); retrying, the last state stays enforced"
            ),
            _ => tracing::warn!(
                kind,
                reason,
                previous,
                call,
                %error,
                ?retry_in,
                "Kubernetes API calls failing; retrying with backoff, the last state stays enforced"
            ),
        }
        self.publish();
    }

    /// The history expired (410 Gone): counted, not a failure of access; a relist
    /// follows after `relist_in`.
    pub(crate) fn gone(&self, failure: &Failure, relist_in: Duration) {
        self.metrics.count(self.kind, ErrorReason::Gone);
        tracing::info!(kind = self.kind.as_str(), error = %failure.message, ?relist_in, "watch history expired (410 Gone); relisting");
    }

    /// A line of a watch stream kube could not decode: counted and logged, the stream
    /// goes on; not a failure of access.
    pub(crate) fn skipped(&self, failure: &Failure) {
        self.metrics.count(self.kind, failure.reason);
        tracing::warn!(kind = self.kind.as_str(), error = %failure.message, "watch event not decoded; ignored");
    }

    /// An optional kind's list was answered 404 (its CRD is not installed): counted as
    /// `not_found` and logged once (INFO) until the kind is served; not a failure, so
    /// the source stays healthy. The next list follows after `recheck_in`.
    pub(crate) fn absent(&mut self, failure: &Failure, recheck_in: Duration) {
        self.metrics.count(self.kind, failure.reason);
        self.clear_failure();
        if self.absent.is_some() {
            tracing::debug!(kind = self.kind.as_str(), error = %failure.message, ?recheck_in, "still not served");
            return;
        }
        self.absent = Some(Instant::now());
        tracing::info!(
            kind = self.kind.as_str(),
            resource = self.kind.plural(),
            error = %failure.message,
            ?recheck_in,
            "the API server does not serve this kind (404: its CRD is not installed): taken as no objects; checking again periodically"
        );
    }

    /// A call succeeded (a complete list, a watch accepted, an event).
    pub(crate) fn succeeded(&mut self) {
        if let Some(since) = self.absent.take() {
            tracing::info!(
                kind = self.kind.as_str(),
                resource = self.kind.plural(),
                absent_secs = since.elapsed().as_secs_f64(),
                "the API server serves this kind now"
            );
        }
        self.clear_failure();
    }

    /// The server answered: any failure is over.
    fn clear_failure(&mut self) {
        let Some(failing) = self.failing.take() else {
            return;
        };
        let lasted = failing.since.elapsed();
        tracing::info!(
            kind = self.kind.as_str(),
            reason = failing.reason.as_str(),
            lasted_secs = lasted.as_secs_f64(),
            "Kubernetes API calls succeed again after failing for {lasted:.1?}"
        );
        self.publish();
    }

    fn publish(&self) {
        let current = self.failing.clone();
        let index = self.kind.index();
        self.report
            .send_if_modified(|all| std::mem::replace(&mut all[index], current.clone()) != current);
    }
}

/// The health task: turns the watchers' failures into `SourceHealth`, waking when a
/// failure passes `blind_after`. Ends when the watchers are gone.
pub(crate) async fn health_loop(
    mut failures: watch::Receiver<Failures>,
    blind_after: Duration,
    health: watch::Sender<SourceHealth>,
) {
    loop {
        let now = Instant::now();
        let current = failures.borrow_and_update().clone();
        let mut blind = Vec::new();
        let mut wake: Option<Instant> = None;
        for kind in Kind::ALL {
            let Some(failing) = &current[kind.index()] else {
                continue;
            };
            let at = failing.since + blind_after;
            if at <= now {
                blind.push(BlindWatcher {
                    kind,
                    reason: failing.reason,
                    since: failing.since.into_std(),
                    error: failing.error.clone(),
                });
            } else {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        let next = SourceHealth { blind };
        health.send_if_modified(|h| {
            if *h == next {
                return false;
            }
            if next.is_blind() {
                tracing::warn!(health = %next, "the Kubernetes API source is blind: policy changes are not seen, the last state stays enforced, readiness reports it");
            } else {
                tracing::info!("the Kubernetes API source sees every kind again");
            }
            *h = next;
            true
        });
        let due = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = failures.changed() => if changed.is_err() { return },
            () = due => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden() -> Failure {
        Failure {
            reason: ErrorReason::Forbidden,
            message: "403 Forbidden: no".into(),
        }
    }

    #[tokio::test]
    async fn a_failure_longer_than_the_bound_makes_the_source_blind_until_a_success() {
        let (report, rx) = failures();
        let (health_tx, mut health) = watch::channel(SourceHealth::default());
        let task = tokio::spawn(health_loop(rx, Duration::from_millis(50), health_tx));
        let mut monitor = Monitor::new(Kind::Pod, SourceMetrics::default(), report.clone());
        monitor.failed(&forbidden(), "list", Duration::ZERO);
        monitor.failed(&forbidden(), "list", Duration::ZERO);
        assert!(!health.borrow().is_blind(), "not before the bound");
        health
            .wait_for(SourceHealth::is_blind)
            .await
            .expect("blind");
        let reason = health.borrow().reason().expect("a reason");
        assert!(reason.contains("pods (forbidden)"), "{reason}");
        assert!(reason.contains("403 Forbidden: no"), "{reason}");
        monitor.succeeded();
        health
            .wait_for(|h| !h.is_blind())
            .await
            .expect("sees again");
        assert_eq!(health.borrow().reason(), None);
        drop((monitor, report));
        task.await.expect("the health task ends with the watchers");
    }
}
