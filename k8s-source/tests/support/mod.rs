//! A fake Kubernetes API server on 127.0.0.1 for the real kube-rs client: the list
//! (with resourceVersion, limit and continue) and watch (chunked JSON lines of
//! ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events) protocol for namespaces, pods,
//! networkpolicies, policyendpoints and clusterpolicyendpoints (networking.k8s.aws),
//! fed from YAML fixtures, with knobs for the failures a reflector
//! must survive: expired history (410 Gone as an ERROR event or as the HTTP status of
//! the watch request), dropped connections, failing requests, held lists and lost
//! access (every request refused, as after the agent's ClusterRoleBinding is deleted),
//! and a resource not served at all (its CRD not installed: 404).
//! Every request is recorded with the verb it stands for and when it came.

#![allow(dead_code)]

pub mod logs;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::SinkExt;
use policy::ClusterState;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, watch};

/// The collections the source may watch: (API group, plural, list path).
pub const RESOURCES: [(&str, &str, &str); 5] = [
    ("", "namespaces", "/api/v1/namespaces"),
    ("", "pods", "/api/v1/pods"),
    (
        "networking.k8s.io",
        "networkpolicies",
        "/apis/networking.k8s.io/v1/networkpolicies",
    ),
    (
        "networking.k8s.aws",
        "policyendpoints",
        "/apis/networking.k8s.aws/v1alpha1/policyendpoints",
    ),
    (
        "networking.k8s.aws",
        "clusterpolicyendpoints",
        "/apis/networking.k8s.aws/v1alpha1/clusterpolicyendpoints",
    ),
];

/// One request as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// `list`, `watch` or `get` (a path with an object name), as RBAC names them.
    pub verb: String,
    pub api_group: Option<String>,
    pub resource: Option<String>,
    pub query: BTreeMap<String, String>,
    pub at: tokio::time::Instant,
}

#[derive(Clone, Debug)]
enum Frame {
    Event(u64, &'static str, Value),
    Bookmark(u64),
    Gone,
    Drop,
}

struct Store {
    objects: BTreeMap<(String, String), Value>,
    /// Every event so far, by resourceVersion.
    log: Vec<(u64, &'static str, Value)>,
    /// A watch from an older resourceVersion is answered 410 Gone.
    oldest_watchable: u64,
    live: broadcast::Sender<Frame>,
    /// Scripted HTTP errors for the next list / watch requests.
    list_failures: VecDeque<Option<StatusCode>>,
    watch_failures: VecDeque<StatusCode>,
    /// Lists wait while this is set.
    list_gate: Option<Arc<Gate>>,
    /// Not served (its CRD not installed): every request answered 404.
    unserved: bool,
}

/// A held list, released by the test.
pub struct Gate {
    open: watch::Sender<bool>,
}

impl Gate {
    pub fn release(&self) {
        self.open.send_replace(true);
    }
}

struct Inner {
    rv: u64,
    stores: HashMap<&'static str, Store>,
    requests: Vec<Recorded>,
    /// Every list and watch request is answered with this status while set.
    refuse: Option<StatusCode>,
}

/// The fake API server. Stops when dropped.
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    changed: Arc<Notify>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn resource_of(kind: &str) -> &'static str {
    match kind {
        "Namespace" => "namespaces",
        "Pod" => "pods",
        "NetworkPolicy" => "networkpolicies",
        "PolicyEndpoint" => "policyendpoints",
        "ClusterPolicyEndpoint" => "clusterpolicyendpoints",
        other => panic!("no fake collection for kind {other}"),
    }
}

fn object_key(obj: &Value) -> (String, String) {
    let meta = &obj["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default().to_owned(),
        meta["name"].as_str().expect("metadata.name").to_owned(),
    )
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn line(value: &Value) -> Bytes {
    let mut text = serde_json::to_vec(value).expect("JSON");
    text.push(b'\n');
    Bytes::from(text)
}

impl FakeApi {
    /// Serve `objects` (the initial contents) on a free 127.0.0.1 port.
    pub async fn start(objects: Vec<Value>) -> Self {
        let mut stores = HashMap::new();
        for (_, plural, _) in RESOURCES {
            stores.insert(
                plural,
                Store {
                    objects: BTreeMap::new(),
                    log: Vec::new(),
                    oldest_watchable: 0,
                    live: broadcast::channel(1024).0,
                    list_failures: VecDeque::new(),
                    watch_failures: VecDeque::new(),
                    list_gate: None,
                    unserved: false,
                },
            );
        }
        let inner = Arc::new(Mutex::new(Inner {
            rv: 100,
            stores,
            requests: Vec::new(),
            refuse: None,
        }));
        for obj in objects {
            store_quietly(&mut inner.lock().expect("state"), obj);
        }
        let changed = Arc::new(Notify::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state((inner.clone(), changed.clone()));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake API server");
        });
        Self {
            inner,
            addr,
            server,
            changed,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake API state")
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("url");
        kube::Client::try_from(kube::Config::new(url)).expect("kube client")
    }

    /// Store an object without any event, as if it had changed while nobody watched
    /// and the event had been compacted away.
    pub fn apply_quietly(&self, obj: Value) {
        store_quietly(&mut self.lock(), obj);
    }

    /// Remove an object without any event.
    pub fn delete_quietly(&self, kind: &str, namespace: &str, name: &str) {
        let mut inner = self.lock();
        inner.rv += 1;
        let store = inner.stores.get_mut(resource_of(kind)).expect("store");
        store
            .objects
            .remove(&(namespace.to_owned(), name.to_owned()))
            .expect("object to delete");
    }

    /// Create or replace an object: an ADDED or MODIFIED event to every watcher.
    pub fn apply(&self, obj: Value) {
        let mut inner = self.lock();
        inner.rv += 1;
        let rv = inner.rv;
        let store = inner
            .stores
            .get_mut(resource_of(obj["kind"].as_str().expect("kind")))
            .expect("store");
        let mut obj = obj;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let kind = match store.objects.insert(object_key(&obj), obj.clone()) {
            Some(_) => "MODIFIED",
            None => "ADDED",
        };
        store.log.push((rv, kind, obj.clone()));
        // No receiver is fine: nobody watches yet.
        let _ = store.live.send(Frame::Event(rv, kind, obj));
    }

    /// Delete an object: a DELETED event carrying its last state.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let mut inner = self.lock();
        inner.rv += 1;
        let rv = inner.rv;
        let store = inner.stores.get_mut(resource_of(kind)).expect("store");
        let mut obj = store
            .objects
            .remove(&(namespace.to_owned(), name.to_owned()))
            .expect("object to delete");
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        store.log.push((rv, "DELETED", obj.clone()));
        let _ = store.live.send(Frame::Event(rv, "DELETED", obj));
    }

    /// Send a BOOKMARK with the current resourceVersion to the watchers of `plural`;
    /// returns that resourceVersion.
    pub fn bookmark(&self, plural: &str) -> u64 {
        let inner = self.lock();
        let rv = inner.rv;
        let _ = inner.stores[plural].live.send(Frame::Bookmark(rv));
        rv
    }

    /// Forget the history of `plural` before `oldest` (watches from older versions get
    /// 410 Gone from now on).
    pub fn compact(&self, plural: &str, oldest: u64) {
        let mut inner = self.lock();
        inner
            .stores
            .get_mut(plural)
            .expect("store")
            .oldest_watchable = oldest;
    }

    /// Forget all history of `plural` and end its open watches with an ERROR event
    /// carrying a 410 Status, as an API server does after compaction.
    pub fn expire(&self, plural: &str) {
        let mut inner = self.lock();
        let rv = inner.rv;
        let store = inner.stores.get_mut(plural).expect("store");
        store.oldest_watchable = rv;
        let _ = store.live.send(Frame::Gone);
    }

    /// Break the open watch connections of `plural` mid-stream.
    pub fn drop_watches(&self, plural: &str) {
        let inner = self.lock();
        let _ = inner.stores[plural].live.send(Frame::Drop);
    }

    /// Answer every list and watch request with `status` (403: the agent's access is
    /// gone; 401: its token is refused) until called with `None`. The open watches end
    /// as their timeout would end them: the watchers' next requests are refused.
    pub fn refuse_all(&self, status: Option<StatusCode>) {
        let mut inner = self.lock();
        inner.refuse = status;
        if status.is_some() {
            for store in inner.stores.values() {
                let _ = store.live.send(Frame::Drop);
            }
        }
    }

    /// Answer the next watch requests of `plural` with these HTTP statuses.
    pub fn fail_watches(&self, plural: &str, statuses: &[StatusCode]) {
        let mut inner = self.lock();
        inner
            .stores
            .get_mut(plural)
            .expect("store")
            .watch_failures
            .extend(statuses);
    }

    /// Answer the next list requests of `plural` with these HTTP statuses.
    pub fn fail_lists(&self, plural: &str, statuses: &[StatusCode]) {
        let mut inner = self.lock();
        inner
            .stores
            .get_mut(plural)
            .expect("store")
            .list_failures
            .extend(statuses.iter().copied().map(Some));
    }

    /// Let the next `passes` list requests (pages) of `plural` through, then answer
    /// one with `status`.
    pub fn fail_list_after(&self, plural: &str, passes: usize, status: StatusCode) {
        let mut inner = self.lock();
        let failures = &mut inner.stores.get_mut(plural).expect("store").list_failures;
        failures.extend(std::iter::repeat_n(None, passes));
        failures.push_back(Some(status));
    }

    /// Hold list requests of `plural` until the returned gate is released.
    pub fn hold_lists(&self, plural: &str) -> Arc<Gate> {
        let gate = Arc::new(Gate {
            open: watch::channel(false).0,
        });
        self.lock().stores.get_mut(plural).expect("store").list_gate = Some(gate.clone());
        gate
    }

    /// Serve `plural` or not: while unserved (a CRD not installed, or deleted) every
    /// list and watch request of it is answered 404 as a real server answers for a
    /// resource it does not know, and open watches end.
    pub fn set_served(&self, plural: &str, served: bool) {
        let mut inner = self.lock();
        let store = inner.stores.get_mut(plural).expect("store");
        store.unserved = !served;
        if !served {
            let _ = store.live.send(Frame::Drop);
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Requests of `verb` on `plural` so far.
    pub fn count(&self, verb: &str, plural: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.verb == verb && r.resource.as_deref() == Some(plural))
            .count()
    }

    /// Wait until `pred` holds for the request log (bounded).
    pub async fn wait_requests(&self, what: &str, pred: impl Fn(&[Recorded]) -> bool) {
        self.wait_requests_for(Duration::from_secs(5), what, pred)
            .await;
    }

    /// Wait at most `patience` until `pred` holds for the request log.
    pub async fn wait_requests_for(
        &self,
        patience: Duration,
        what: &str,
        pred: impl Fn(&[Recorded]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.changed.notified();
            if pred(&self.lock().requests) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for requests: {what}");
            }
        }
    }

    /// The current objects as one YAML text, for `policy::load_str` (PolicyEndpoints
    /// and ClusterPolicyEndpoints left out: see `expected_state_via_endpoints`).
    pub fn objects_yaml(&self) -> String {
        let inner = self.lock();
        let mut docs = Vec::new();
        for (_, plural, _) in RESOURCES {
            if plural == "policyendpoints" || plural == "clusterpolicyendpoints" {
                continue;
            }
            for obj in inner.stores[plural].objects.values() {
                docs.push(serde_yaml::to_string(obj).expect("YAML"));
            }
        }
        docs.join("---\n")
    }

    /// The state the same objects give when read as YAML.
    pub fn expected_state(&self) -> ClusterState {
        policy::load_str("fake-api objects", &self.objects_yaml()).expect("fixture YAML loads")
    }

    /// What a PolicyEndpoint source on a node with `node_addresses` should publish:
    /// the pods read as YAML, and one policy per `policyRef` merged from its objects
    /// (selected pods of other nodes dropped), and one cluster policy per
    /// ClusterPolicyEndpoint `policyRef` likewise (none while clusterpolicyendpoints
    /// are not served). Namespaces and NetworkPolicies are not watched in that mode.
    pub fn expected_state_via_endpoints(
        &self,
        node_addresses: &[std::net::IpAddr],
    ) -> ClusterState {
        let mut state = self.expected_state();
        state.namespaces.clear();
        state.policies.clear();
        let inner = self.lock();
        let mut slices: BTreeMap<policy::PolicyRef, Vec<policy::PolicyEndpoint>> = BTreeMap::new();
        for obj in inner.stores["policyendpoints"].objects.values() {
            let value = serde_yaml::to_value(obj).expect("YAML value");
            let mut slice = policy::load_policy_endpoint("fake-api", value).expect("fixture loads");
            slice.retain_subjects_on(node_addresses);
            slices.entry(slice.policy.clone()).or_default().push(slice);
        }
        for (key, list) in &slices {
            state.upsert_policy(policy::endpoints::merge(key, list));
        }
        let cluster = &inner.stores["clusterpolicyendpoints"];
        let mut cluster_slices: BTreeMap<String, Vec<policy::ClusterPolicyEndpoint>> =
            BTreeMap::new();
        for obj in cluster.objects.values().filter(|_| !cluster.unserved) {
            let value = serde_yaml::to_value(obj).expect("YAML value");
            let mut slice =
                policy::load_cluster_policy_endpoint("fake-api", value).expect("fixture loads");
            slice.retain_subjects_on(node_addresses);
            cluster_slices
                .entry(slice.policy.clone())
                .or_default()
                .push(slice);
        }
        for (name, list) in &cluster_slices {
            state.upsert_cluster_policy(
                policy::cluster_endpoints::merge(name, list).expect("slices of the policy"),
            );
        }
        state
    }
}

fn store_quietly(inner: &mut Inner, obj: Value) {
    inner.rv += 1;
    let rv = inner.rv;
    let store = inner
        .stores
        .get_mut(resource_of(obj["kind"].as_str().expect("kind")))
        .expect("store");
    let mut obj = obj;
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    store.objects.insert(object_key(&obj), obj);
}

type AppState = (Arc<Mutex<Inner>>, Arc<Notify>);

fn parse_query(raw: Option<&str>) -> BTreeMap<String, String> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), v.replace("%2F", "/").replace("%3D", "="))
        })
        .collect()
}

async fn handle(
    State((inner, changed)): State<AppState>,
    method: axum::http::Method,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let path = uri.path().to_owned();
    let query = parse_query(raw.as_deref());
    let collection = RESOURCES.iter().find(|(_, _, p)| *p == path);
    let named = RESOURCES
        .iter()
        .find(|(_, _, p)| path.starts_with(&format!("{p}/")));
    let verb = match (collection, named) {
        (Some(_), _) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        (Some(_), _) => "list",
        (None, Some(_)) => "get",
        (None, None) => "unknown",
    };
    let (api_group, resource) = match collection.or(named) {
        Some((g, r, _)) => (Some((*g).to_owned()), Some((*r).to_owned())),
        None => (None, None),
    };
    inner
        .lock()
        .expect("fake API state")
        .requests
        .push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            verb: verb.to_owned(),
            api_group,
            resource,
            query: query.clone(),
            at: tokio::time::Instant::now(),
        });
    changed.notify_waiters();
    match (verb, collection) {
        ("list", Some((_, plural, _))) => list(&inner, plural, &query).await,
        ("watch", Some((_, plural, _))) => watch_response(&inner, plural, &query),
        _ => json_response(
            StatusCode::NOT_FOUND,
            &status(404, "NotFound", "the fake serves lists and watches only"),
        ),
    }
}

/// What a real API server answers when it refuses a request.
fn refused(code: StatusCode, verb: &str, resource: &str) -> Response {
    let group = RESOURCES
        .iter()
        .find(|(_, r, _)| *r == resource)
        .map_or("", |(g, _, _)| *g);
    let body = if code == StatusCode::UNAUTHORIZED {
        status(401, "Unauthorized", "Unauthorized")
    } else {
        let qualified = if group.is_empty() {
            resource.to_owned()
        } else {
            format!("{resource}.{group}")
        };
        status(
            code.as_u16(),
            "Forbidden",
            &format!(
                "{qualified} is forbidden: User \"system:serviceaccount:kube-system:netpol-agent\" cannot {verb} resource \"{resource}\" in API group \"{group}\" at the cluster scope"
            ),
        )
    };
    json_response(code, &body)
}

/// What a real API server answers for a resource of a served group it does not know
/// (a CRD not installed).
fn not_served() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    )
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn list(
    inner: &Arc<Mutex<Inner>>,
    plural: &str,
    query: &BTreeMap<String, String>,
) -> Response {
    let gate = inner.lock().expect("state").stores[plural]
        .list_gate
        .clone();
    if let Some(gate) = gate {
        let mut open = gate.open.subscribe();
        // The sender lives in the gate, which this function holds.
        let _ = open.wait_for(|o| *o).await;
    }
    let mut inner = inner.lock().expect("state");
    if let Some(code) = inner.refuse {
        return refused(code, "list", plural);
    }
    let rv = inner.rv;
    let store = inner.stores.get_mut(plural).expect("store");
    if store.unserved {
        return not_served();
    }
    if let Some(code) = store.list_failures.pop_front().flatten() {
        return json_response(
            code,
            &status(code.as_u16(), "InternalError", "scripted list failure"),
        );
    }
    let offset: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let all: Vec<&Value> = store.objects.values().collect();
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|obj| {
            // As a real server does, list items carry no kind and apiVersion.
            let mut item = (*obj).clone();
            if let Some(map) = item.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            item
        })
        .collect();
    let next = offset.saturating_add(limit);
    let continue_token = if next < all.len() {
        next.to_string()
    } else {
        String::new()
    };
    let (kind, api_version) = match plural {
        "namespaces" => ("NamespaceList", "v1"),
        "pods" => ("PodList", "v1"),
        "policyendpoints" => ("PolicyEndpointList", "networking.k8s.aws/v1alpha1"),
        "clusterpolicyendpoints" => ("ClusterPolicyEndpointList", "networking.k8s.aws/v1alpha1"),
        _ => ("NetworkPolicyList", "networking.k8s.io/v1"),
    };
    json_response(
        StatusCode::OK,
        &json!({
            "kind": kind,
            "apiVersion": api_version,
            "metadata": { "resourceVersion": rv.to_string(), "continue": continue_token },
            "items": page,
        }),
    )
}

fn watch_response(
    inner: &Arc<Mutex<Inner>>,
    plural: &str,
    query: &BTreeMap<String, String>,
) -> Response {
    let mut inner = inner.lock().expect("state");
    // Checked under the lock the subscription is taken under, so that a watch is either
    // refused or ended by `refuse_all`.
    if let Some(code) = inner.refuse {
        return refused(code, "watch", plural);
    }
    let store = inner.stores.get_mut(plural).expect("store");
    if store.unserved {
        return not_served();
    }
    if let Some(code) = store.watch_failures.pop_front() {
        let reason = if code == StatusCode::GONE {
            "Expired"
        } else {
            "InternalError"
        };
        return json_response(
            code,
            &status(code.as_u16(), reason, "scripted watch failure"),
        );
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    if from < store.oldest_watchable {
        let gone = json!({
            "type": "ERROR",
            "object": status(410, "Expired", &format!("too old resource version: {from}")),
        });
        tokio::spawn(async move {
            let _ = tx.send(Ok(line(&gone))).await;
        });
        return stream_response(rx);
    }
    let mut pending: VecDeque<Frame> = store
        .log
        .iter()
        .filter(|(rv, _, _)| *rv > from)
        .map(|(rv, kind, obj)| Frame::Event(*rv, kind, obj.clone()))
        .collect();
    let mut live = store.live.subscribe();
    let plural = plural.to_owned();
    tokio::spawn(async move {
        loop {
            let frame = match pending.pop_front() {
                Some(f) => f,
                None => match live.recv().await {
                    Ok(f) => f,
                    Err(_) => return,
                },
            };
            let sent = match frame {
                Frame::Event(_, kind, obj) => {
                    tx.send(Ok(line(&json!({ "type": kind, "object": obj }))))
                        .await
                }
                Frame::Bookmark(rv) => {
                    let (kind, api_version) = bookmark_kind(&plural);
                    tx.send(Ok(line(&json!({
                        "type": "BOOKMARK",
                        "object": {
                            "kind": kind,
                            "apiVersion": api_version,
                            "metadata": { "resourceVersion": rv.to_string() },
                        },
                    }))))
                    .await
                }
                Frame::Gone => {
                    let _ = tx
                        .send(Ok(line(&json!({
                            "type": "ERROR",
                            "object": status(410, "Expired", "the requested history has been compacted"),
                        }))))
                        .await;
                    return;
                }
                Frame::Drop => {
                    let _ = tx
                        .send(Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "scripted drop",
                        )))
                        .await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    });
    stream_response(rx)
}

fn bookmark_kind(plural: &str) -> (&'static str, &'static str) {
    match plural {
        "namespaces" => ("Namespace", "v1"),
        "pods" => ("Pod", "v1"),
        "policyendpoints" => ("PolicyEndpoint", "networking.k8s.aws/v1alpha1"),
        "clusterpolicyendpoints" => ("ClusterPolicyEndpoint", "networking.k8s.aws/v1alpha1"),
        _ => ("NetworkPolicy", "networking.k8s.io/v1"),
    }
}

fn stream_response(
    rx: futures::channel::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(rx),
    )
        .into_response()
}

/// Every document of a fixture file under tests/fixtures, as JSON values.
pub fn fixture(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc).expect("fixture YAML");
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

/// The fixture object of `kind` named `namespace/name` (or `name`).
pub fn fixture_object(file: &str, kind: &str, name: &str) -> Value {
    fixture(file)
        .into_iter()
        .find(|o| {
            let (ns, n) = object_key(o);
            o["kind"] == kind && (n == name || format!("{ns}/{n}") == name)
        })
        .unwrap_or_else(|| panic!("{file} has no {kind} {name}"))
}
