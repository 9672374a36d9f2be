//! The PolicyEndpoint source (`PolicySource::PolicyEndpoint`) against the fake API
//! server: pods and policyendpoints listed and watched (and clusterpolicyendpoints,
//! tested in `cluster_policy_endpoints.rs`; nothing else), the objects of
//! one NetworkPolicy merged into one policy named by their `policyRef`, selected pods
//! of other nodes left out, and the same list/watch discipline as the NetworkPolicy
//! source: readiness after both lists, events, 410 Gone relists, dropped connections,
//! a bad object refused alone.

mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_source::{KubeSource, KubeSourceHandle, PolicySource, SourceOptions};
use policy::{ClusterState, ObjectRef, PolicyRef};
use serde_json::{Value, json};
use support::{FakeApi, fixture};
use tokio::sync::watch;

const PATIENCE: Duration = Duration::from_secs(5);
const WEB: (&str, &str) = ("shop", "web-from-anywhere-in-cluster");

fn node() -> Vec<IpAddr> {
    vec!["10.0.1.10".parse().expect("address")]
}

fn options() -> SourceOptions {
    SourceOptions {
        policy_source: PolicySource::PolicyEndpoint,
        node_addresses: node(),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        gone_relist_jitter: Duration::from_millis(200),
        resync: None,
        ..SourceOptions::default()
    }
}

async fn cluster() -> FakeApi {
    let mut objects = fixture("cluster.yaml");
    objects.extend(fixture("endpoints.yaml"));
    FakeApi::start(objects).await
}

async fn started(api: &FakeApi) -> (KubeSourceHandle, watch::Receiver<Arc<ClusterState>>) {
    let (handle, rx) = KubeSource::start(api.client(), options());
    tokio::time::timeout(PATIENCE, handle.wait_synced())
        .await
        .expect("the source syncs");
    (handle, rx)
}

/// Wait until the published state is what the fake's objects give through
/// PolicyEndpoints.
async fn expect_state(rx: &mut watch::Receiver<Arc<ClusterState>>, api: &FakeApi, step: &str) {
    let expected = api.expected_state_via_endpoints(&node());
    let matched = tokio::time::timeout(PATIENCE, rx.wait_for(|s| **s == expected))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(
        matched,
        "{step}: published policies {:#?}\nexpected {:#?}",
        rx.borrow().policies,
        expected.policies
    );
}

fn web() -> PolicyRef {
    PolicyRef::new(WEB.0, WEB.1)
}

fn subjects(state: &ClusterState, policy: &PolicyRef) -> BTreeSet<String> {
    state.policies[policy]
        .spec
        .subject_pods
        .clone()
        .expect("a PolicyEndpoint policy selects pods by name")
}

/// A PolicyEndpoint object of `policy` selecting `pods` (name, hostIP) and admitting
/// `peers` on TCP 80.
fn slice(name: &str, policy: (&str, &str), pods: &[(&str, &str)], peers: &[&str]) -> Value {
    let pods: Vec<Value> = pods
        .iter()
        .map(|(pod, host)| json!({"podIP": "10.0.3.3", "hostIP": host, "name": pod, "namespace": policy.0}))
        .collect();
    let ingress: Vec<Value> = peers
        .iter()
        .map(|cidr| json!({"cidr": cidr, "ports": [{"protocol": "TCP", "port": 80}]}))
        .collect();
    json!({
        "apiVersion": "networking.k8s.aws/v1alpha1",
        "kind": "PolicyEndpoint",
        "metadata": {"name": name, "namespace": policy.0},
        "spec": {
            "policyRef": {"name": policy.1, "namespace": policy.0},
            "podSelector": {},
            "podIsolation": ["Ingress"],
            "podSelectorEndpoints": pods,
            "ingress": ingress,
        },
    })
}

#[tokio::test]
async fn lists_pods_and_policy_endpoints_and_merges_the_objects_of_each_policy() {
    let api = cluster().await;
    let held = api.hold_lists("policyendpoints");
    let (handle, mut rx) = KubeSource::start(api.client(), options());
    api.wait_requests("pods listed", |r| {
        r.iter()
            .any(|x| x.verb == "list" && x.resource.as_deref() == Some("pods"))
    })
    .await;
    assert!(
        !handle.is_synced(),
        "not ready before the PolicyEndpoint list"
    );
    held.release();
    tokio::time::timeout(PATIENCE, handle.wait_synced())
        .await
        .expect("synced after both lists");
    expect_state(&mut rx, &api, "initial lists").await;

    let state = rx.borrow().clone();
    let names: Vec<String> = state.policies.keys().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "db/postgres-from-shop",
            "shop/default-deny",
            "shop/web-from-anywhere-in-cluster"
        ],
        "one policy per NetworkPolicy, named by it, from five objects"
    );
    assert_eq!(
        subjects(&state, &web()),
        ["web-1".to_owned()].into(),
        "web-2 runs on the other node"
    );
    let policy = &state.policies[&web()];
    assert_eq!(
        policy.spec.ingress.len(),
        1,
        "equal port lists share a rule"
    );
    assert_eq!(policy.spec.ingress[0].peers.len(), 2);
    assert_eq!(policy.spec.egress.len(), 2, "egress of two objects");
    assert_eq!(state.pods.len(), 6, "pods are still watched");
    assert!(state.namespaces.is_empty(), "namespaces are not needed");

    // Only pods, policyendpoints and clusterpolicyendpoints are asked for.
    let resources: BTreeSet<String> = api
        .requests()
        .iter()
        .filter_map(|r| r.resource.clone())
        .collect();
    assert_eq!(
        resources,
        [
            "clusterpolicyendpoints".to_owned(),
            "pods".to_owned(),
            "policyendpoints".to_owned()
        ]
        .into()
    );
    let stats = handle.stats();
    assert_eq!(stats.policy_endpoints.lists, 1);
    assert_eq!(stats.network_policies.lists, 0);
    assert_eq!(stats.namespaces.lists, 0);
}

#[tokio::test]
async fn added_modified_and_deleted_objects_change_only_their_policy() {
    let api = cluster().await;
    let (handle, mut rx) = started(&api).await;
    expect_state(&mut rx, &api, "initial").await;

    // A fourth object for the split policy.
    api.apply(slice(
        "web-from-anywhere-in-cluster-n5b6v",
        WEB,
        &[("web-3", "10.0.1.10")],
        &["10.0.7.0/24"],
    ));
    expect_state(&mut rx, &api, "object added").await;
    assert!(subjects(&rx.borrow(), &web()).contains("web-3"));

    // Modified: its peers change.
    api.apply(slice(
        "web-from-anywhere-in-cluster-n5b6v",
        WEB,
        &[("web-3", "10.0.1.10")],
        &["10.0.8.0/24"],
    ));
    expect_state(&mut rx, &api, "object modified").await;

    // A new policy, then its only object deleted: the policy goes.
    api.apply(slice("fresh-a1b2c", ("shop", "fresh"), &[], &["10.0.9.9"]));
    expect_state(&mut rx, &api, "new policy").await;
    assert!(
        rx.borrow()
            .policies
            .contains_key(&PolicyRef::new("shop", "fresh"))
    );
    api.delete("PolicyEndpoint", "shop", "fresh-a1b2c");
    expect_state(&mut rx, &api, "last object of a policy deleted").await;
    assert!(
        !rx.borrow()
            .policies
            .contains_key(&PolicyRef::new("shop", "fresh"))
    );

    // Deleting one object of several keeps the policy with the rest.
    api.delete(
        "PolicyEndpoint",
        "shop",
        "web-from-anywhere-in-cluster-4xk9z",
    );
    expect_state(&mut rx, &api, "one of several objects deleted").await;
    assert_eq!(subjects(&rx.borrow(), &web()), ["web-3".to_owned()].into());
    assert_eq!(handle.stats().policy_endpoints.events, 5);
}

#[tokio::test]
async fn objects_that_only_concern_other_nodes_leave_the_policy_as_it_was() {
    let api = cluster().await;
    let (_handle, mut rx) = started(&api).await;
    expect_state(&mut rx, &api, "initial").await;
    let before = rx.borrow().policies[&web()].clone();

    // The controller moves pods of the other node between objects.
    api.apply(slice(
        "web-from-anywhere-in-cluster-q8v2n",
        WEB,
        &[("web-2", "10.0.2.20"), ("web-9", "10.0.2.20")],
        &[],
    ));
    api.apply(slice(
        "web-from-anywhere-in-cluster-t0t0t",
        WEB,
        &[("web-8", "10.0.2.20")],
        &[],
    ));
    // A change that matters, after them on the same watch: once it is in, they are.
    api.apply(slice(
        "marker-00000",
        ("shop", "marker"),
        &[],
        &["10.0.9.9"],
    ));
    expect_state(&mut rx, &api, "other-node objects and a marker").await;
    assert_eq!(
        rx.borrow().policies[&web()],
        before,
        "nothing for this node"
    );

    // A pod of this node joins: the policy changes.
    api.apply(slice(
        "web-from-anywhere-in-cluster-t0t0t",
        WEB,
        &[("web-8", "10.0.2.20"), ("web-7", "10.0.1.10")],
        &[],
    ));
    expect_state(&mut rx, &api, "a local pod joins").await;
    assert!(subjects(&rx.borrow(), &web()).contains("web-7"));
    assert!(!subjects(&rx.borrow(), &web()).contains("web-8"));
}

#[tokio::test]
async fn gone_relists_and_dropped_connections_resume_with_every_change() {
    let api = cluster().await;
    let (handle, mut rx) = started(&api).await;
    expect_state(&mut rx, &api, "initial").await;

    // Changed while history was compacted away: only a relist can see it.
    api.apply_quietly(slice(
        "web-from-anywhere-in-cluster-4xk9z",
        WEB,
        &[("web-1", "10.0.1.10")],
        &["10.0.5.0/24"],
    ));
    api.delete_quietly("PolicyEndpoint", "db", "postgres-from-shop-k1w9t");
    api.expire("policyendpoints");
    expect_state(&mut rx, &api, "after 410").await;
    assert!(
        !rx.borrow()
            .policies
            .contains_key(&PolicyRef::new("db", "postgres-from-shop"))
    );
    let stats = handle.stats();
    assert_eq!(stats.policy_endpoints.gone_restarts, 1);
    assert_eq!(stats.policy_endpoints.lists, 2);

    // A broken connection resumes from the last resourceVersion: no relist.
    api.drop_watches("policyendpoints");
    api.apply(slice(
        "late-00000",
        ("db", "late"),
        &[("postgres-0", "10.0.1.10")],
        &[],
    ));
    expect_state(&mut rx, &api, "after a dropped watch").await;
    assert_eq!(handle.stats().policy_endpoints.lists, 2);
    assert!(handle.is_synced());
}

#[tokio::test]
async fn a_bad_object_is_refused_alone_and_its_policy_keeps_the_rest() {
    let api = cluster().await;
    let (handle, mut rx) = started(&api).await;
    expect_state(&mut rx, &api, "initial").await;
    let before = rx.borrow().policies[&web()].clone();

    let mut bad = slice(
        "web-from-anywhere-in-cluster-bad00",
        WEB,
        &[],
        &["not-a-cidr"],
    );
    bad["metadata"]["resourceVersion"] = json!("1");
    api.apply(bad);
    api.apply(slice(
        "marker-00000",
        ("shop", "marker"),
        &[],
        &["10.0.9.9"],
    ));
    let marker = PolicyRef::new("shop", "marker");
    tokio::time::timeout(PATIENCE, rx.wait_for(|s| s.policies.contains_key(&marker)))
        .await
        .expect("the next object applies")
        .expect("source running");
    assert_eq!(
        rx.borrow().policies[&web()],
        before,
        "the bad object changed nothing"
    );
    assert_eq!(handle.stats().policy_endpoints.rejected, 1);
    assert!(
        rx.borrow()
            .pods
            .contains_key(&ObjectRef::new("shop", "web-1"))
    );
}
