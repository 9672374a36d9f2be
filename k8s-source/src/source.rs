//! The source as the agent sees it: start the watchers of the chosen `PolicySource`
//! (Namespaces, Pods and NetworkPolicies; or Pods, PolicyEndpoints and
//! ClusterPolicyEndpoints, whose objects are merged per policy by `slices`), own the
//! one `ClusterState` they feed, and
//! publish it as `Arc` snapshots on a watch channel, coalesced (at most one publish
//! per `coalesce` interval, and never later than that after a change). Nothing is
//! published before every watched kind has been listed once; an error never removes
//! anything, only DELETED events and completed relists do.
//! A health task turns the watchers' failures into `SourceHealth` (blind when one has
//! failed for longer than `SourceOptions::blind_after`).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as networking;
use kube::Api;
use policy::ClusterState;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::convert::{
    ClusterPolicyEndpointObject, Key, Kind, Object, PolicyEndpointObject, Watched,
};
use crate::health::{self, Monitor, SourceHealth};
use crate::metrics::SourceMetrics;
use crate::slices::{ClusterSlices, Slices};
use crate::watch::{self as watch_task, Counters, Update};

/// Which objects say what the policies are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PolicySource {
    /// NetworkPolicies (networking.k8s.io/v1), resolved by this agent; namespaces
    /// are watched for their labels.
    #[default]
    NetworkPolicy,
    /// PolicyEndpoints (networking.k8s.aws/v1alpha1), which the EKS network policy
    /// controller derives from each NetworkPolicy with peers already resolved; the
    /// objects of one policy are merged into one policy named by their `policyRef`.
    /// Also ClusterPolicyEndpoints (same group, cluster-scoped), derived from each
    /// ClusterNetworkPolicy (Admin and Baseline tiers), merged likewise into
    /// `ClusterState::cluster_policies`; a server without their CRD has none.
    PolicyEndpoint,
}

impl PolicySource {
    /// The kinds watched for this source; pods always (phases, addresses, names).
    pub const fn kinds(self) -> &'static [Kind] {
        match self {
            PolicySource::NetworkPolicy => &[Kind::Namespace, Kind::Pod, Kind::NetworkPolicy],
            PolicySource::PolicyEndpoint => {
                &[Kind::Pod, Kind::PolicyEndpoint, Kind::ClusterPolicyEndpoint]
            }
        }
    }
}

/// Tuning of the watchers and of publishing. `Default` is what production uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceOptions {
    /// Where the policies come from.
    pub policy_source: PolicySource,
    /// This node's addresses: PolicyEndpoint objects' selected pods hosted elsewhere
    /// (`hostIP`) are dropped on arrival. Empty keeps them all (the resolver still
    /// enforces only this node's pods).
    pub node_addresses: Vec<IpAddr>,
    /// Shortest interval between two published snapshots; a change is published at
    /// most this long after it arrives.
    pub coalesce: Duration,
    /// A fresh list of every kind about this often (less up to a tenth, at random),
    /// to repair any drift; `None` never.
    pub resync: Option<Duration>,
    /// First delay after a failed call; doubles up to `backoff_max`. Each delay is
    /// drawn between half and all of that.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Objects per list page.
    pub page_size: u32,
    /// How long the server keeps one watch request open (`timeoutSeconds`).
    pub watch_timeout_secs: u32,
    /// After a 410 Gone, the relist starts after a delay drawn uniformly from zero to
    /// this, so that the agents of all nodes do not relist at the same instant after an
    /// API server restart.
    pub gone_relist_jitter: Duration,
    /// A watcher failing without a single success for longer than this makes the
    /// source blind (`SourceHealth`, which the agent's `/readyz` reports). Above the
    /// longest backoff, so that one slow retry alone does not flip readiness.
    pub blind_after: Duration,
    /// An optional kind the server does not serve (ClusterPolicyEndpoints without
    /// their CRD: 404) counts as listed with no objects and is listed again about this
    /// often (less up to a tenth, at random), to pick up a CRD installed later.
    pub absent_recheck: Duration,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            policy_source: PolicySource::default(),
            node_addresses: Vec::new(),
            coalesce: Duration::from_millis(100),
            resync: Some(Duration::from_secs(15 * 60)),
            backoff_initial: Duration::from_millis(800),
            backoff_max: Duration::from_secs(30),
            page_size: 500,
            watch_timeout_secs: 290,
            gone_relist_jitter: Duration::from_secs(3),
            blind_after: Duration::from_secs(60),
            absent_recheck: Duration::from_secs(60),
        }
    }
}

/// Counters of one kind's watcher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindStats {
    /// ADDED/MODIFIED/DELETED events received after the lists.
    pub events: u64,
    /// Lists completed (the first one, relists after 410 and resyncs).
    pub lists: u64,
    /// Failed calls and ERROR events, 410s included (each followed by backoff or a
    /// relist).
    pub errors: u64,
    /// 410 Gone answers (to a watch or list request, or as an ERROR event in a watch),
    /// each followed by a relist.
    pub gone_restarts: u64,
    /// Periodic relists started.
    pub resyncs: u64,
    /// Objects the policy model rejected (ignored, previous version kept).
    pub rejected: u64,
    /// Lists answered 404 for an optional kind (its CRD not installed), each taken as
    /// no objects.
    pub absent: u64,
}

/// Counters of the watchers plus publishing (zero for a kind not watched).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub namespaces: KindStats,
    pub pods: KindStats,
    pub network_policies: KindStats,
    pub policy_endpoints: KindStats,
    pub cluster_policy_endpoints: KindStats,
    /// Snapshots published on the channel.
    pub published: u64,
}

impl SourceStats {
    pub fn kind(&self, kind: Kind) -> &KindStats {
        match kind {
            Kind::Namespace => &self.namespaces,
            Kind::Pod => &self.pods,
            Kind::NetworkPolicy => &self.network_policies,
            Kind::PolicyEndpoint => &self.policy_endpoints,
            Kind::ClusterPolicyEndpoint => &self.cluster_policy_endpoints,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    kinds: [Arc<Counters>; Kind::COUNT],
    published: AtomicU64,
}

impl Shared {
    fn counters(&self, kind: Kind) -> Arc<Counters> {
        self.kinds[kind.index()].clone()
    }
}

/// Changes queued between the watchers and the state task (backpressure beyond).
const UPDATE_QUEUE: usize = 256;

/// The Kubernetes API as the policy source.
#[derive(Debug)]
pub struct KubeSource;

impl KubeSource {
    /// Start watching the kinds of `options.policy_source` (cluster-wide) through
    /// `client`. Returns the handle (readiness, health, counters; dropping it stops the
    /// watchers) and the snapshot channel, which holds an empty state until the first
    /// complete snapshot is published. Must be called inside a Tokio runtime.
    pub fn start(
        client: kube::Client,
        options: SourceOptions,
    ) -> (KubeSourceHandle, watch::Receiver<Arc<ClusterState>>) {
        Self::start_with_metrics(client, options, SourceMetrics::default())
    }

    /// `start`, counting errors in `metrics` (registered by the caller).
    pub fn start_with_metrics(
        client: kube::Client,
        options: SourceOptions,
        metrics: SourceMetrics,
    ) -> (KubeSourceHandle, watch::Receiver<Arc<ClusterState>>) {
        let shared = Arc::new(Shared::default());
        let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(ClusterState::default()));
        let (synced_tx, synced_rx) = watch::channel(false);
        let (health_tx, health_rx) = watch::channel(SourceHealth::default());
        let (update_tx, update_rx) = mpsc::channel(UPDATE_QUEUE);
        let (report, failures) = health::failures();
        let spawn_watcher = |kind: Kind| {
            let monitor = Monitor::new(kind, metrics.clone(), report.clone());
            let counters = shared.counters(kind);
            let (options, tx) = (options.clone(), update_tx.clone());
            match kind {
                Kind::Namespace => {
                    spawn::<core::Namespace>(&client, options, tx, counters, monitor)
                }
                Kind::Pod => spawn::<core::Pod>(&client, options, tx, counters, monitor),
                Kind::NetworkPolicy => {
                    spawn::<networking::NetworkPolicy>(&client, options, tx, counters, monitor)
                }
                Kind::PolicyEndpoint => {
                    spawn::<PolicyEndpointObject>(&client, options, tx, counters, monitor)
                }
                Kind::ClusterPolicyEndpoint => {
                    spawn::<ClusterPolicyEndpointObject>(&client, options, tx, counters, monitor)
                }
            }
        };
        let kinds = options.policy_source.kinds();
        let mut tasks: Vec<JoinHandle<()>> = kinds.iter().copied().map(spawn_watcher).collect();
        drop((update_tx, report));
        tasks.push(tokio::spawn(publish_loop(
            update_rx,
            snapshot_tx,
            synced_tx,
            Publishing {
                kinds,
                coalesce: options.coalesce,
                slices: Slices::new(options.node_addresses.clone()),
                cluster_slices: ClusterSlices::new(options.node_addresses.clone()),
            },
            shared.clone(),
        )));
        tasks.push(tokio::spawn(health::health_loop(
            failures,
            options.blind_after,
            health_tx,
        )));
        let handle = KubeSourceHandle {
            synced: synced_rx,
            health: health_rx,
            metrics,
            shared,
            tasks,
        };
        (handle, snapshot_rx)
    }
}

fn spawn<K: Watched>(
    client: &kube::Client,
    options: SourceOptions,
    tx: mpsc::Sender<Update>,
    counters: Arc<Counters>,
    monitor: Monitor,
) -> JoinHandle<()> {
    tokio::spawn(watch_task::run(
        Api::<K>::all(client.clone()),
        options,
        tx,
        counters,
        monitor,
    ))
}

/// Run the source until `stop`, sending every snapshot as `Some` on `tx`: the shape
/// of the agent's policy-source channel (as its directory source has). Nothing is sent
/// before every watched kind is listed, so an agent that turns ready on its first
/// applied state reports the caches' sync. Errors are counted in `metrics`; every
/// change of health is sent on `health` (blind: the last snapshot stays the one in
/// force, nothing emptier is sent).
pub async fn run(
    client: kube::Client,
    options: SourceOptions,
    metrics: SourceMetrics,
    tx: watch::Sender<Option<Arc<ClusterState>>>,
    health: watch::Sender<SourceHealth>,
    stop: CancellationToken,
) {
    let (handle, mut rx) = KubeSource::start_with_metrics(client, options, metrics);
    let mut health_rx = handle.health_receiver();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            changed = rx.changed() => {
                if changed.is_err() { break }
                let snapshot = rx.borrow_and_update().clone();
                if tx.send(Some(snapshot)).is_err() {
                    break;
                }
            }
            changed = health_rx.changed() => {
                if changed.is_err() { break }
                health.send_replace(health_rx.borrow_and_update().clone());
            }
        }
    }
    handle.shutdown();
}

/// Readiness and counters of a running source. Dropping it stops the watchers; the
/// snapshot channel then keeps its last value.
#[derive(Debug)]
pub struct KubeSourceHandle {
    synced: watch::Receiver<bool>,
    health: watch::Receiver<SourceHealth>,
    metrics: SourceMetrics,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl KubeSourceHandle {
    /// Has every watched kind been listed (an optional kind not served counts as listed)
    /// and the first complete snapshot published?
    /// Stays true afterwards: a broken watch keeps the last state in force.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// A receiver of the readiness flag, for a health endpoint that outlives borrows.
    pub fn synced_receiver(&self) -> watch::Receiver<bool> {
        self.synced.clone()
    }

    /// Wait until `is_synced()`; returns at once if it already is.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.clone();
        // An error means the state task ended, which only happens on shutdown.
        let _ = synced.wait_for(|s| *s).await;
    }

    /// Is any watcher failing for longer than `SourceOptions::blind_after`, and why.
    /// Independent of `is_synced`: a blind source keeps its last state in force.
    pub fn health(&self) -> SourceHealth {
        self.health.borrow().clone()
    }

    /// A receiver of the health, changed on every change of the blind watchers.
    pub fn health_receiver(&self) -> watch::Receiver<SourceHealth> {
        self.health.clone()
    }

    /// The error counters (`network_policy_source_errors`).
    pub fn metrics(&self) -> &SourceMetrics {
        &self.metrics
    }

    pub fn stats(&self) -> SourceStats {
        let kind = |k: Kind| {
            let c = &self.shared.kinds[k.index()];
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            KindStats {
                events: get(&c.events),
                lists: get(&c.lists),
                errors: get(&c.errors),
                gone_restarts: get(&c.gone_restarts),
                resyncs: get(&c.resyncs),
                rejected: get(&c.rejected),
                absent: get(&c.absent),
            }
        };
        SourceStats {
            namespaces: kind(Kind::Namespace),
            pods: kind(Kind::Pod),
            network_policies: kind(Kind::NetworkPolicy),
            policy_endpoints: kind(Kind::PolicyEndpoint),
            cluster_policy_endpoints: kind(Kind::ClusterPolicyEndpoint),
            published: self.shared.published.load(Ordering::Relaxed),
        }
    }

    /// Stop the watchers and the publisher.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for KubeSourceHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What the state task needs besides its channels.
struct Publishing {
    /// The kinds that must be listed before the first publish.
    kinds: &'static [Kind],
    coalesce: Duration,
    slices: Slices,
    cluster_slices: ClusterSlices,
}

/// The working state: the cluster, and the PolicyEndpoint and ClusterPolicyEndpoint
/// objects behind its policies.
struct Working {
    state: ClusterState,
    slices: Slices,
    cluster_slices: ClusterSlices,
    listed: [bool; Kind::COUNT],
}

/// The state task: apply updates, publish coalesced snapshots once all kinds synced.
async fn publish_loop(
    mut updates: mpsc::Receiver<Update>,
    snapshots: watch::Sender<Arc<ClusterState>>,
    synced: watch::Sender<bool>,
    publishing: Publishing,
    shared: Arc<Shared>,
) {
    let Publishing {
        kinds,
        coalesce,
        slices,
        cluster_slices,
    } = publishing;
    let mut working = Working {
        state: ClusterState::default(),
        slices,
        cluster_slices,
        listed: [false; Kind::COUNT],
    };
    let mut dirty = false;
    let mut next_publish = Instant::now();
    loop {
        let ready = kinds.iter().all(|k| working.listed[k.index()]);
        let publish_at = (dirty && ready).then(|| next_publish.max(Instant::now()));
        let due = async {
            match publish_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            update = updates.recv() => {
                let Some(update) = update else { return };
                dirty |= working.apply(update);
                // Take whatever else is already queued before publishing.
                for _ in 0..UPDATE_QUEUE {
                    match updates.try_recv() {
                        Ok(update) => dirty |= working.apply(update),
                        Err(_) => break,
                    }
                }
            }
            () = due => {
                let state = &working.state;
                snapshots.send_replace(Arc::new(state.clone()));
                shared.published.fetch_add(1, Ordering::Relaxed);
                dirty = false;
                next_publish = Instant::now() + coalesce;
                if synced.send_if_modified(|s| !std::mem::replace(s, true)) {
                    tracing::info!(
                        namespaces = state.namespaces.len(),
                        pods = state.pods.len(),
                        policies = state.policies.len(),
                        cluster_policies = state.cluster_policies.len(),
                        "Kubernetes API source synced"
                    );
                }
            }
        }
    }
}

impl Working {
    /// Apply one update; false when it changed nothing that is published (a
    /// PolicyEndpoint change that only concerns other nodes).
    fn apply(&mut self, update: Update) -> bool {
        match update {
            Update::Apply(object) => self.insert(object),
            Update::Delete(key) => self.take(&key).1,
            Update::Replace {
                kind,
                objects,
                keep,
            } => {
                let mut kept: Vec<Object> = keep.iter().filter_map(|k| self.take(k).0).collect();
                self.clear(kind);
                kept.extend(objects);
                for object in kept {
                    self.insert(object);
                }
                self.listed[kind.index()] = true;
                true
            }
        }
    }

    fn insert(&mut self, object: Object) -> bool {
        let state = &mut self.state;
        match object {
            Object::Namespace(n) => state.upsert_namespace(n),
            Object::Pod(p) => state.upsert_pod(p),
            Object::NetworkPolicy(p) => state.upsert_policy(p),
            Object::PolicyEndpoint(slice) => return self.slices.upsert(state, slice),
            Object::ClusterPolicyEndpoint(slice) => {
                return self.cluster_slices.upsert(state, slice);
            }
        }
        true
    }

    /// Remove one object: the removed value, and whether the state changed.
    fn take(&mut self, key: &Key) -> (Option<Object>, bool) {
        let state = &mut self.state;
        let removed = match key {
            Key::Namespace(name) => state.namespaces.remove(name).map(Object::Namespace),
            Key::Pod(r) => state.remove_pod(r).map(Object::Pod),
            Key::NetworkPolicy(r) => state.remove_policy(r).map(Object::NetworkPolicy),
            Key::PolicyEndpoint(r) => {
                let (slice, changed) = self.slices.remove(state, r);
                return (slice.map(Object::PolicyEndpoint), changed);
            }
            Key::ClusterPolicyEndpoint(name) => {
                let (slice, changed) = self.cluster_slices.remove(state, name);
                return (slice.map(Object::ClusterPolicyEndpoint), changed);
            }
        };
        let changed = removed.is_some();
        (removed, changed)
    }

    fn clear(&mut self, kind: Kind) {
        let state = &mut self.state;
        match kind {
            Kind::Namespace => state.namespaces.clear(),
            Kind::Pod => state.pods.clear(),
            Kind::NetworkPolicy => state.policies.clear(),
            Kind::PolicyEndpoint => self.slices.clear(state),
            Kind::ClusterPolicyEndpoint => self.cluster_slices.clear(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, label: &str) -> policy::Pod {
        policy::Pod {
            namespace: "ns".into(),
            name: name.into(),
            labels: [("v".to_owned(), label.to_owned())].into(),
            ips: Vec::new(),
            node_name: None,
            host_network: false,
            phase: policy::PodPhase::Running,
            ports: Vec::new(),
            interface: None,
        }
    }

    fn working() -> Working {
        Working {
            state: ClusterState::default(),
            slices: Slices::default(),
            cluster_slices: ClusterSlices::default(),
            listed: [false; Kind::COUNT],
        }
    }

    fn namespace(name: &str) -> policy::Namespace {
        policy::Namespace {
            name: name.into(),
            labels: Default::default(),
        }
    }

    #[test]
    fn a_relist_replaces_one_kind_and_keeps_rejected_objects_at_their_old_version() {
        let mut working = working();
        for p in [pod("a", "1"), pod("b", "1"), pod("gone", "1")] {
            working.apply(Update::Apply(Object::Pod(p)));
        }
        working.apply(Update::Apply(Object::Namespace(namespace("ns"))));
        working.apply(Update::Replace {
            kind: Kind::Pod,
            objects: vec![Object::Pod(pod("a", "2")), Object::Pod(pod("new", "2"))],
            keep: vec![Key::Pod(policy::ObjectRef::new("ns", "b"))],
        });
        let state = &working.state;
        let labels = |name: &str| {
            state
                .pods
                .get(&policy::ObjectRef::new("ns", name))
                .map(|p| p.labels["v"].clone())
        };
        assert_eq!(labels("a").as_deref(), Some("2"));
        assert_eq!(
            labels("b").as_deref(),
            Some("1"),
            "rejected in the relist: kept"
        );
        assert_eq!(labels("new").as_deref(), Some("2"));
        assert_eq!(labels("gone"), None, "absent from the relist: removed");
        assert!(state.namespaces.contains_key("ns"), "other kinds untouched");
        assert_eq!(working.listed, [false, true, false, false, false]);
    }

    #[test]
    fn deletes_remove_only_their_object() {
        let mut working = working();
        working.apply(Update::Apply(Object::Pod(pod("a", "1"))));
        working.apply(Update::Apply(Object::Pod(pod("b", "1"))));
        working.apply(Update::Delete(Key::Pod(policy::ObjectRef::new("ns", "a"))));
        working.apply(Update::Delete(Key::Namespace("never-seen".into())));
        assert_eq!(working.state.pods.len(), 1);
        assert!(
            working
                .state
                .pods
                .contains_key(&policy::ObjectRef::new("ns", "b"))
        );
    }
}
