//! The source against a fake API server speaking the list/watch protocol: after every
//! event the published state equals `policy::load_str` of the same objects as YAML,
//! readiness waits for the three lists, and bookmarks, 410 Gone, dropped connections,
//! failing requests and resyncs never publish a wrong or emptier state. A 410 relists
//! within seconds whatever the backoff, the backoff starts over after a success, and
//! refused access is counted, logged once, reported as blindness and recovered from.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use k8s_source::{
    ErrorReason, Kind, KubeSource, KubeSourceHandle, PolicySource, SourceHealth, SourceMetrics,
    SourceOptions,
};
use policy::ClusterState;
use support::{FakeApi, Recorded, fixture, fixture_object};
use tokio::sync::watch;
use tokio::time::Instant;

/// Production behaviour, with short backoff and relist delays so error paths run in
/// milliseconds.
fn options() -> SourceOptions {
    SourceOptions {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        gone_relist_jitter: Duration::from_millis(200),
        resync: None,
        ..SourceOptions::default()
    }
}

/// The kinds the default (NetworkPolicy) source watches.
const WATCHED: &[Kind] = PolicySource::NetworkPolicy.kinds();

/// Longest wait for any expected state; the requirement is one second per event.
const PATIENCE: Duration = Duration::from_secs(5);

async fn started(api: &FakeApi) -> (KubeSourceHandle, watch::Receiver<Arc<ClusterState>>) {
    let (handle, rx) = KubeSource::start(api.client(), options());
    tokio::time::timeout(PATIENCE, handle.wait_synced())
        .await
        .expect("the source syncs");
    (handle, rx)
}

fn summary(state: &ClusterState) -> String {
    format!(
        "namespaces {:?}\npods {:#?}\npolicies {:?}",
        state.namespaces.values().collect::<Vec<_>>(),
        state.pods.values().collect::<Vec<_>>(),
        state.policies.keys().collect::<Vec<_>>()
    )
}

/// Wait until the published state equals what the fake's objects give as YAML;
/// returns how long that took.
async fn expect_yaml_state(
    rx: &mut watch::Receiver<Arc<ClusterState>>,
    api: &FakeApi,
    step: &str,
) -> Duration {
    let expected = api.expected_state();
    let start = Instant::now();
    let matched = tokio::time::timeout(PATIENCE, rx.wait_for(|s| **s == expected))
        .await
        .is_ok_and(|r| r.is_ok());
    if !matched {
        panic!(
            "{step}: published state never matched the YAML state\n--- published\n{}\n--- expected\n{}",
            summary(&rx.borrow()),
            summary(&expected)
        );
    }
    start.elapsed()
}

/// Every snapshot published from now on.
fn record(mut rx: watch::Receiver<Arc<ClusterState>>) -> Arc<Mutex<Vec<Arc<ClusterState>>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let snapshot = rx.borrow_and_update().clone();
            out.lock().expect("recorder").push(snapshot);
        }
    });
    seen
}

fn pod_names(state: &ClusterState) -> BTreeSet<String> {
    state.pods.keys().map(ToString::to_string).collect()
}

#[tokio::test]
async fn initial_lists_then_added_modified_and_deleted_events_match_the_yaml_state() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let (handle, mut rx) = started(&api).await;
    expect_yaml_state(&mut rx, &api, "initial lists").await;
    let initial = rx.borrow().clone();
    assert_eq!(initial.namespaces.len(), 4);
    assert_eq!(initial.pods.len(), 6);
    assert_eq!(initial.policies.len(), 3);

    let mut slowest = Duration::ZERO;
    for (i, obj) in fixture("changes.yaml").into_iter().enumerate() {
        api.apply(obj);
        let took = expect_yaml_state(&mut rx, &api, &format!("change {i} of changes.yaml")).await;
        slowest = slowest.max(took);
    }
    let deletions = [
        ("Pod", "shop", "web-2"),
        ("NetworkPolicy", "shop", "default-deny"),
        ("Namespace", "", "batch"),
        ("Pod", "db", "migrate-6c8xq"),
    ];
    for (kind, namespace, name) in deletions {
        api.delete(kind, namespace, name);
        let took = expect_yaml_state(&mut rx, &api, &format!("delete {kind} {name}")).await;
        slowest = slowest.max(took);
    }
    assert!(
        slowest < Duration::from_secs(1),
        "an event took {slowest:?} to be published"
    );
    let final_state = rx.borrow().clone();
    assert!(
        !final_state
            .pods
            .contains_key(&policy::ObjectRef::new("shop", "web-2"))
    );
    assert!(
        final_state.pods[&policy::ObjectRef::new("shop", "web-1")]
            .labels
            .contains_key("canary")
    );

    let stats = handle.stats();
    assert_eq!(stats.pods.lists, 1, "events alone never relist");
    assert_eq!(stats.pods.events, 5);
    assert_eq!(stats.network_policies.events, 3);
    assert_eq!(stats.namespaces.events, 3);
}

#[tokio::test]
async fn readiness_waits_for_all_three_initial_lists() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let gate = api.hold_lists("pods");
    let (handle, rx) = KubeSource::start(api.client(), options());
    api.wait_requests("namespaces, policies listed and pods asked", |r| {
        ["namespaces", "networkpolicies"].iter().all(|p| {
            r.iter()
                .any(|x| x.verb == "watch" && x.resource.as_deref() == Some(*p))
        }) && r
            .iter()
            .any(|x| x.verb == "list" && x.resource.as_deref() == Some("pods"))
    })
    .await;
    // Two kinds are listed and watching, the third is held: not ready, nothing out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!handle.is_synced());
    assert_eq!(handle.stats().published, 0);
    assert_eq!(**rx.borrow(), ClusterState::default());

    gate.release();
    tokio::time::timeout(PATIENCE, handle.wait_synced())
        .await
        .expect("synced after the pod list");
    assert!(handle.is_synced());
    // Synced means the complete state is already published.
    assert_eq!(**rx.borrow(), api.expected_state());
    assert_eq!(handle.stats().published, 1);
}

#[tokio::test]
async fn readiness_stays_true_while_the_api_server_fails() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let (handle, mut rx) = started(&api).await;
    expect_yaml_state(&mut rx, &api, "initial").await;
    api.fail_watches("pods", &[StatusCode::INTERNAL_SERVER_ERROR; 3]);
    api.drop_watches("pods");
    api.wait_requests("three failed pod watches", |r| {
        r.iter()
            .filter(|x| x.verb == "watch" && x.resource.as_deref() == Some("pods"))
            .count()
            >= 5
    })
    .await;
    assert!(handle.is_synced());
}

#[tokio::test]
async fn bookmarks_advance_the_resource_version_so_a_reconnect_needs_no_list() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let (handle, mut rx) = started(&api).await;
    // Changes elsewhere move the cluster's resourceVersion past the pod list's.
    for obj in fixture("changes.yaml")
        .into_iter()
        .filter(|o| o["kind"] != "Pod")
    {
        api.apply(obj);
    }
    expect_yaml_state(&mut rx, &api, "non-pod changes").await;
    let pod_list_rv: u64 = api
        .requests()
        .iter()
        .find(|r| r.verb == "watch" && r.resource.as_deref() == Some("pods"))
        .and_then(|r| r.query.get("resourceVersion")?.parse().ok())
        .expect("pod watch with a resourceVersion");
    let bookmark_rv = api.bookmark("pods");
    assert!(bookmark_rv > pod_list_rv);
    // Give the bookmark time to arrive, then lose the history before it and break
    // the connection: only a watcher that kept the bookmark resumes without a 410.
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.compact("pods", bookmark_rv);
    api.drop_watches("pods");
    api.wait_requests("pod watch resumed", |r| {
        r.iter()
            .filter(|x| x.verb == "watch" && x.resource.as_deref() == Some("pods"))
            .count()
            >= 2
    })
    .await;
    let resumed = api
        .requests()
        .into_iter()
        .filter(|r| r.verb == "watch" && r.resource.as_deref() == Some("pods"))
        .nth(1)
        .expect("second pod watch");
    assert_eq!(
        resumed.query.get("resourceVersion"),
        Some(&bookmark_rv.to_string())
    );
    assert_eq!(
        resumed.query.get("allowWatchBookmarks").map(String::as_str),
        Some("true")
    );
    // The resumed watch still delivers events.
    api.apply(fixture_object("changes.yaml", "Pod", "shop/web-3"));
    expect_yaml_state(&mut rx, &api, "event after the resumed watch").await;
    assert_eq!(api.count("list", "pods"), 1);
    assert_eq!(handle.stats().pods.lists, 1);
}

#[tokio::test]
async fn gone_error_event_forces_a_relist_that_removes_objects_deleted_meanwhile() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let (handle, mut rx) = started(&api).await;
    let before = rx.borrow().clone();
    let seen = record(rx.clone());
    // Changes whose events were lost (compacted away while disconnected).
    api.delete_quietly("Pod", "shop", "web-2");
    api.apply_quietly(fixture_object("changes.yaml", "Pod", "shop/web-3"));
    api.delete_quietly("NetworkPolicy", "shop", "default-deny");
    api.expire("pods");
    api.expire("networkpolicies");
    expect_yaml_state(&mut rx, &api, "after the relist").await;
    assert!(
        !rx.borrow()
            .pods
            .contains_key(&policy::ObjectRef::new("shop", "web-2"))
    );
    assert!(
        !rx.borrow()
            .policies
            .contains_key(&policy::ObjectRef::new("shop", "default-deny"))
    );

    let stats = handle.stats();
    assert_eq!(stats.pods.lists, 2);
    assert_eq!(stats.network_policies.lists, 2);
    assert_eq!(stats.namespaces.lists, 1);
    assert_eq!(api.count("list", "pods"), 2);
    // Nothing emptier than the truth was ever published on the way: every pod that
    // was never deleted is in every snapshot.
    let kept: BTreeSet<String> = pod_names(&before)
        .into_iter()
        .filter(|p| p != "shop/web-2")
        .collect();
    for snapshot in seen.lock().expect("recorder").iter() {
        assert!(pod_names(snapshot).is_superset(&kept));
    }
}

#[tokio::test]
async fn http_410_on_the_watch_request_forces_a_relist() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let (handle, mut rx) = started(&api).await;
    api.delete_quietly("Pod", "db", "postgres-0");
    api.fail_watches("pods", &[StatusCode::GONE]);
    api.drop_watches("pods");
    expect_yaml_state(&mut rx, &api, "after the HTTP 410").await;
    let stats = handle.stats();
    assert_eq!(stats.pods.gone_restarts, 1);
    assert_eq!(stats.pods.lists, 2);
}

#[tokio::test]
async fn dropped_connection_and_failing_requests_keep_the_last_state_then_resume() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let (handle, mut rx) = started(&api).await;
    let good = rx.borrow().clone();
    let seen = record(rx.clone());
    api.fail_watches(
        "pods",
        &[
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
        ],
    );
    api.fail_watches("networkpolicies", &[StatusCode::FORBIDDEN; 2]);
    api.drop_watches("pods");
    api.drop_watches("networkpolicies");
    api.wait_requests("failed watches retried", |r| {
        let watches = |p: &str| {
            r.iter()
                .filter(|x| x.verb == "watch" && x.resource.as_deref() == Some(p))
                .count()
        };
        watches("pods") >= 5 && watches("networkpolicies") >= 4
    })
    .await;
    assert_eq!(**rx.borrow(), *good, "errors changed the published state");
    let during_outage: Vec<Arc<ClusterState>> = seen.lock().expect("recorder").clone();
    // Events that happened during the outage arrive through the resumed watch.
    api.delete("Pod", "shop", "web-1");
    api.apply(fixture_object(
        "changes.yaml",
        "NetworkPolicy",
        "db/deny-egress",
    ));
    expect_yaml_state(&mut rx, &api, "after the outage").await;

    let stats = handle.stats();
    // kube's client retries 5xx and 429 itself; the watcher sees at least one error.
    assert!(stats.pods.errors >= 1, "{stats:?}");
    assert!(stats.network_policies.errors >= 2, "{stats:?}");
    assert_eq!(
        stats.pods.lists, 1,
        "a dropped watch resumes without a list"
    );
    assert_eq!(api.count("list", "pods"), 1);
    // The resumed watches started where the broken ones stopped.
    let pod_watch_rvs: BTreeSet<_> = api
        .requests()
        .iter()
        .filter(|r| r.verb == "watch" && r.resource.as_deref() == Some("pods"))
        .filter_map(|r| r.query.get("resourceVersion").cloned())
        .collect();
    assert_eq!(pod_watch_rvs.len(), 1, "{pod_watch_rvs:?}");
    for snapshot in &during_outage {
        assert_eq!(**snapshot, *good);
    }
}

#[tokio::test]
async fn failing_lists_are_retried_with_backoff_before_readiness() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    api.fail_lists(
        "networkpolicies",
        &[
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::INTERNAL_SERVER_ERROR,
        ],
    );
    let started_at = Instant::now();
    let (handle, mut rx) = started(&api).await;
    // Two failures: backoff of 10-20 ms then 20-40 ms before the third list.
    assert!(started_at.elapsed() >= Duration::from_millis(30));
    assert_eq!(api.count("list", "networkpolicies"), 3);
    assert_eq!(handle.stats().network_policies.errors, 2);
    expect_yaml_state(&mut rx, &api, "after failed lists").await;
}

#[tokio::test]
async fn a_rejected_object_keeps_its_previous_version() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let (handle, mut rx) = started(&api).await;
    let before = rx.borrow().clone();
    let web2 = policy::ObjectRef::new("shop", "web-2");
    api.apply(fixture_object("rejected.yaml", "Pod", "shop/web-2"));
    // A later valid event proves the rejected one was processed.
    api.apply(fixture_object("changes.yaml", "Pod", "shop/web-3"));
    tokio::time::timeout(
        PATIENCE,
        rx.wait_for(|s| s.pods.len() == before.pods.len() + 1),
    )
    .await
    .expect("web-3 published")
    .expect("source running");
    assert_eq!(rx.borrow().pods[&web2], before.pods[&web2]);
    assert_eq!(handle.stats().pods.rejected, 1);
    // A relist with the rejected version still in the server keeps the old one too.
    api.expire("pods");
    tokio::time::timeout(PATIENCE, async {
        while handle.stats().pods.lists < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("relisted");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.borrow().pods[&web2], before.pods[&web2]);
    assert_eq!(handle.stats().pods.rejected, 2);
}

#[tokio::test]
async fn periodic_resync_relists_and_repairs_drift() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let (handle, mut rx) = KubeSource::start(
        api.client(),
        SourceOptions {
            resync: Some(Duration::from_millis(400)),
            ..options()
        },
    );
    tokio::time::timeout(PATIENCE, handle.wait_synced())
        .await
        .expect("synced");
    // A change whose event never came.
    api.delete_quietly("Pod", "shop", "pending-1");
    api.apply_quietly(fixture_object("changes.yaml", "Namespace", "db"));
    expect_yaml_state(&mut rx, &api, "after a resync").await;
    let stats = handle.stats();
    assert!(
        stats.pods.resyncs >= 1 && stats.namespaces.resyncs >= 1,
        "{stats:?}"
    );
}

#[tokio::test]
async fn bursts_are_coalesced_into_few_snapshots_and_the_last_one_is_complete() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let (handle, mut rx) = started(&api).await;
    let published_before = handle.stats().published;
    let template = fixture_object("changes.yaml", "Pod", "shop/web-3");
    for i in 0..200 {
        let mut pod = template.clone();
        pod["metadata"]["name"] = serde_json::json!(format!("burst-{i}"));
        pod["status"]["podIP"] = serde_json::json!(format!("10.0.7.{}", i + 1));
        pod["status"]["podIPs"] = serde_json::json!([{ "ip": format!("10.0.7.{}", i + 1) }]);
        api.apply(pod);
    }
    let burst_start = Instant::now();
    expect_yaml_state(&mut rx, &api, "after the burst").await;
    let took = burst_start.elapsed();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // At most one snapshot per 100 ms window, plus the leading one.
    let published = handle.stats().published - published_before;
    let windows = u64::try_from(took.as_millis() / 100).unwrap_or(u64::MAX) + 2;
    assert!(
        (1..=windows).contains(&published),
        "200 events in {took:?} gave {published} snapshots"
    );
    assert!(published < 50, "200 events gave {published} snapshots");
}

#[tokio::test]
async fn five_thousand_pods_and_one_thousand_policies_list_in_pages_and_match() {
    let template = fixture_object("cluster.yaml", "Pod", "shop/web-2");
    let policy_template = fixture_object(
        "cluster.yaml",
        "NetworkPolicy",
        "shop/web-from-anywhere-in-cluster",
    );
    let mut objects = fixture("cluster.yaml");
    for i in 0..5000u32 {
        let mut pod = template.clone();
        pod["metadata"]["name"] = serde_json::json!(format!("pod-{i}"));
        let ip = format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256);
        pod["status"]["podIP"] = serde_json::json!(ip);
        pod["status"]["podIPs"] = serde_json::json!([{ "ip": ip }]);
        objects.push(pod);
    }
    for i in 0..1000u32 {
        let mut p = policy_template.clone();
        p["metadata"]["name"] = serde_json::json!(format!("policy-{i}"));
        objects.push(p);
    }
    let api = FakeApi::start(objects).await;
    let started_at = Instant::now();
    let (handle, mut rx) = KubeSource::start(api.client(), options());
    tokio::time::timeout(Duration::from_secs(60), handle.wait_synced())
        .await
        .expect("the source syncs");
    let sync_time = started_at.elapsed();
    expect_yaml_state(&mut rx, &api, "large lists").await;
    assert_eq!(rx.borrow().pods.len(), 5006);
    assert_eq!(rx.borrow().policies.len(), 1003);
    // Pages of 500: 11 pod lists (10 full pages and one of 6), 3 policy lists.
    assert_eq!(api.count("list", "pods"), 11);
    assert_eq!(api.count("list", "networkpolicies"), 3);
    assert_eq!(handle.stats().pods.lists, 1);
    eprintln!("5,006 pods and 1,003 policies synced in {sync_time:?}");
}

#[tokio::test]
async fn run_sends_complete_snapshots_on_the_agent_channel_and_stops_on_cancel() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let (tx, mut rx) = watch::channel::<Option<Arc<ClusterState>>>(None);
    let (health_tx, _health) = watch::channel(SourceHealth::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(k8s_source::run(
        api.client(),
        options(),
        SourceMetrics::default(),
        tx,
        health_tx,
        stop.clone(),
    ));
    let expected = api.expected_state();
    tokio::time::timeout(PATIENCE, rx.wait_for(|s| s.as_deref() == Some(&expected)))
        .await
        .expect("first snapshot")
        .expect("channel open");
    api.delete("Pod", "shop", "web-1");
    let expected = api.expected_state();
    tokio::time::timeout(PATIENCE, rx.wait_for(|s| s.as_deref() == Some(&expected)))
        .await
        .expect("snapshot after a delete")
        .expect("channel open");
    stop.cancel();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("run returns on cancel")
        .expect("run task");
    // The watchers are gone: later changes reach nobody.
    let watches = api.count("watch", "pods");
    api.delete("Pod", "shop", "web-2");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(api.count("watch", "pods"), watches);
    assert!(rx.borrow().as_ref().is_some_and(|s| {
        s.pods
            .contains_key(&policy::ObjectRef::new("shop", "web-2"))
    }));
}

#[tokio::test]
async fn a_relist_broken_between_pages_never_publishes_a_partial_list() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let (handle, mut rx) = KubeSource::start(
        api.client(),
        SourceOptions {
            page_size: 2,
            ..options()
        },
    );
    tokio::time::timeout(PATIENCE, handle.wait_synced())
        .await
        .expect("synced");
    let before = rx.borrow().clone();
    let seen = record(rx.clone());
    // After the 410 the relist from the watch cache fails; the paginated one that
    // follows breaks on its second page, as when the continue token has expired; the
    // 410 sends it to the cache again.
    api.delete_quietly("Pod", "shop", "web-2");
    api.fail_lists("pods", &[StatusCode::FORBIDDEN]);
    api.fail_list_after("pods", 1, StatusCode::GONE);
    api.expire("pods");
    expect_yaml_state(&mut rx, &api, "after the broken and the retried relist").await;
    // 6 pods in pages of 2: 3 pages first, a refused cache relist, 1 page + a failure,
    // then the whole list from the cache.
    let lists: Vec<Recorded> = api
        .requests()
        .into_iter()
        .filter(|r| r.verb == "list" && r.resource.as_deref() == Some("pods"))
        .collect();
    assert_eq!(lists.len(), 3 + 1 + 2 + 1);
    for cache_list in [&lists[3], &lists[6]] {
        assert_cache_list(cache_list);
    }
    assert_eq!(lists[4].query.get("limit").map(String::as_str), Some("2"));
    assert_eq!(lists[4].query.get("resourceVersion"), None);
    assert_eq!(handle.stats().pods.lists, 2);
    let after = rx.borrow().clone();
    for snapshot in seen.lock().expect("recorder").iter() {
        assert!(
            **snapshot == *before || **snapshot == *after,
            "a snapshot with {} pods was neither the old nor the new state",
            snapshot.pods.len()
        );
    }
}

/// A relist after a 410: one request the API server answers from its watch cache, not
/// older than what the watcher had.
fn assert_cache_list(request: &Recorded) {
    let q = &request.query;
    assert!(
        q.get("resourceVersion")
            .is_some_and(|rv| !rv.is_empty() && rv != "0"),
        "{request:?}"
    );
    assert_eq!(
        q.get("resourceVersionMatch").map(String::as_str),
        Some("NotOlderThan"),
        "{request:?}"
    );
    assert_eq!(q.get("limit"), None, "{request:?}");
    assert_eq!(q.get("continue"), None, "{request:?}");
}

/// Requests of `verb` on `plural`, in order.
fn requests_of(api: &FakeApi, verb: &str, plural: &str) -> Vec<Recorded> {
    api.requests()
        .into_iter()
        .filter(|r| r.verb == verb && r.resource.as_deref() == Some(plural))
        .collect()
}

/// Wait until `cond` holds, checking every 10 ms, at most `patience`.
async fn wait_until(patience: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + patience;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_gone_event_relists_within_seconds_from_the_watch_cache_whatever_the_backoff() {
    // The backoff an outage leaves behind (15-30 s before the next retry), set from the
    // start rather than grown by a 30-second outage: a 410 must not wait for it.
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let metrics = SourceMetrics::default();
    let (handle, mut rx) = KubeSource::start_with_metrics(
        api.client(),
        SourceOptions {
            backoff_initial: Duration::from_secs(30),
            backoff_max: Duration::from_secs(60),
            resync: None,
            ..SourceOptions::default()
        },
        metrics.clone(),
    );
    tokio::time::timeout(PATIENCE, handle.wait_synced())
        .await
        .expect("synced");
    api.wait_requests("the watches open", |r| {
        ["pods", "networkpolicies"].iter().all(|p| {
            r.iter()
                .any(|x| x.verb == "watch" && x.resource.as_deref() == Some(*p))
        })
    })
    .await;
    // Lost while the API server restarted: its new watch cache has no older history.
    api.delete_quietly("Pod", "shop", "web-2");
    api.expire("pods");
    // The other kind: the new server answers the resumed watch request itself with 410.
    api.delete_quietly("NetworkPolicy", "shop", "default-deny");
    api.fail_watches("networkpolicies", &[StatusCode::GONE]);
    api.drop_watches("networkpolicies");
    let expected = api.expected_state();
    let relisted = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| **s == expected))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(
        relisted,
        "no relist within 10 s of the 410s: {:?}",
        handle.stats()
    );
    for plural in ["pods", "networkpolicies"] {
        let lists = requests_of(&api, "list", plural);
        assert_eq!(lists.len(), 2, "{plural}: the first list and one relist");
        assert_cache_list(&lists[1]);
    }
    let stats = handle.stats();
    assert_eq!(stats.pods.gone_restarts, 1);
    assert_eq!(stats.network_policies.gone_restarts, 1);
    assert_eq!(metrics.errors(Kind::Pod, ErrorReason::Gone), 1);
    assert_eq!(metrics.errors(Kind::NetworkPolicy, ErrorReason::Gone), 1);
    assert!(!handle.health().is_blind());
}

#[tokio::test]
async fn the_backoff_starts_over_once_a_watch_is_accepted() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let (handle, _rx) = KubeSource::start(
        api.client(),
        SourceOptions {
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(60),
            blind_after: Duration::from_millis(500),
            ..options()
        },
    );
    tokio::time::timeout(PATIENCE, handle.wait_synced())
        .await
        .expect("synced");
    api.wait_requests("the pod watch open", |r| {
        r.iter()
            .any(|x| x.verb == "watch" && x.resource.as_deref() == Some("pods"))
    })
    .await;
    let mut health = handle.health_receiver();
    // Four refused watch requests grow the backoff to 4 s (delays of 2-4 s next).
    api.fail_watches("pods", &[StatusCode::FORBIDDEN; 4]);
    api.drop_watches("pods");
    tokio::time::timeout(
        Duration::from_secs(15),
        health.wait_for(SourceHealth::is_blind),
    )
    .await
    .expect("blind while refused")
    .expect("source running");
    // The fifth is accepted: a success, though no event comes.
    tokio::time::timeout(Duration::from_secs(15), health.wait_for(|h| !h.is_blind()))
        .await
        .expect("seeing again once a watch is accepted")
        .expect("source running");
    assert_eq!(requests_of(&api, "watch", "pods").len(), 1 + 5);
    // One more refusal: the retry follows after the initial backoff (125-250 ms), not
    // after the grown one.
    api.fail_watches("pods", &[StatusCode::FORBIDDEN]);
    api.drop_watches("pods");
    api.wait_requests_for(Duration::from_secs(15), "the retry", |r| {
        r.iter()
            .filter(|x| x.verb == "watch" && x.resource.as_deref() == Some("pods"))
            .count()
            >= 1 + 5 + 2
    })
    .await;
    let watches = requests_of(&api, "watch", "pods");
    let gap = watches[7].at - watches[6].at;
    assert!(
        gap < Duration::from_millis(1500),
        "retry {gap:?} after the refusal that followed an accepted watch"
    );
    assert_eq!(handle.stats().pods.lists, 1, "refusals resume the watch");
}

/// Every request refused with `status` (RBAC or token lost): counted each time, logged
/// once per kind, blind after the bound with the last state kept, and all of it undone
/// when the server answers again, including a policy created meanwhile.
async fn refused_access_is_reported_and_recovered_from(status: StatusCode, reason: ErrorReason) {
    let (logs, _guard) = support::logs::capture();
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    let metrics = SourceMetrics::default();
    let (handle, mut rx) = KubeSource::start_with_metrics(
        api.client(),
        SourceOptions {
            blind_after: Duration::from_secs(1),
            ..options()
        },
        metrics.clone(),
    );
    tokio::time::timeout(PATIENCE, handle.wait_synced())
        .await
        .expect("synced");
    let good = rx.borrow().clone();
    let published = handle.stats().published;
    let mut health = handle.health_receiver();
    assert!(!health.borrow().is_blind());

    api.refuse_all(Some(status));
    tokio::time::timeout(
        Duration::from_secs(10),
        health.wait_for(|h| h.blind.len() == 3),
    )
    .await
    .expect("every kind blind")
    .expect("source running");
    let text = health.borrow().reason().expect("a reason");
    for &kind in WATCHED {
        assert!(
            text.contains(&format!("{} ({reason})", kind.plural())),
            "{text}"
        );
    }
    assert!(
        health.borrow().blind.iter().all(|b| b.reason == reason),
        "{text}"
    );
    wait_until(
        Duration::from_secs(10),
        "several refusals of each kind",
        || WATCHED.iter().all(|k| metrics.errors(*k, reason) >= 4),
    )
    .await;
    for &kind in WATCHED {
        assert_eq!(
            logs.count(tracing::Level::ERROR, kind.as_str()),
            1,
            "{kind}: one ERROR for {} refusals; {:#?}",
            metrics.errors(kind, reason),
            logs.lines()
        );
    }
    assert_eq!(**rx.borrow(), *good, "the last state stays");
    assert_eq!(handle.stats().published, published, "nothing published");
    assert!(handle.is_synced());

    // Created while the agent cannot see it.
    api.apply(fixture_object(
        "changes.yaml",
        "NetworkPolicy",
        "db/deny-egress",
    ));
    api.refuse_all(None);
    tokio::time::timeout(Duration::from_secs(10), health.wait_for(|h| !h.is_blind()))
        .await
        .expect("seeing again")
        .expect("source running");
    expect_yaml_state(&mut rx, &api, "after access came back").await;
    for &kind in WATCHED {
        let recovered = logs
            .lines()
            .iter()
            .filter(|l| {
                l.level == tracing::Level::INFO
                    && l.fields.get("kind").map(String::as_str) == Some(kind.as_str())
                    && l.message.contains("succeed again")
            })
            .count();
        assert_eq!(recovered, 1, "{kind}: {:#?}", logs.lines());
        assert_eq!(logs.count(tracing::Level::ERROR, kind.as_str()), 1);
    }
}

#[tokio::test]
async fn forbidden_access_is_counted_logged_once_reported_blind_and_recovered_from() {
    refused_access_is_reported_and_recovered_from(StatusCode::FORBIDDEN, ErrorReason::Forbidden)
        .await;
}

#[tokio::test]
async fn unauthorized_access_is_counted_logged_once_reported_blind_and_recovered_from() {
    refused_access_is_reported_and_recovered_from(
        StatusCode::UNAUTHORIZED,
        ErrorReason::Unauthorized,
    )
    .await;
}

#[tokio::test]
async fn run_reports_health_on_its_channel_and_sends_nothing_while_blind() {
    let api = FakeApi::start(fixture("cluster.yaml")).await;
    api.refuse_all(Some(StatusCode::FORBIDDEN));
    let (tx, mut rx) = watch::channel::<Option<Arc<ClusterState>>>(None);
    let (health_tx, mut health) = watch::channel(SourceHealth::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(k8s_source::run(
        api.client(),
        SourceOptions {
            blind_after: Duration::from_secs(1),
            ..options()
        },
        SourceMetrics::default(),
        tx,
        health_tx,
        stop.clone(),
    ));
    tokio::time::timeout(
        Duration::from_secs(10),
        health.wait_for(SourceHealth::is_blind),
    )
    .await
    .expect("blind")
    .expect("run running");
    assert!(rx.borrow().is_none(), "nothing before the lists");
    api.refuse_all(None);
    let expected = api.expected_state();
    tokio::time::timeout(PATIENCE, rx.wait_for(|s| s.as_deref() == Some(&expected)))
        .await
        .expect("first snapshot")
        .expect("channel open");
    tokio::time::timeout(PATIENCE, health.wait_for(|h| !h.is_blind()))
        .await
        .expect("seeing again")
        .expect("run running");
    stop.cancel();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("run returns on cancel")
        .expect("run task");
}
