//! ClusterPolicyEndpoints in the PolicyEndpoint source (`PolicySource::PolicyEndpoint`)
//! against the fake API server: listed before the source is ready, the objects of one
//! ClusterNetworkPolicy merged into one cluster policy named by their `policyRef`
//! (pods by name, pods of other nodes left out), events, a bad object refused alone
//! naming the object and the field, 410 Gone relists, and a server without the CRD
//! (404): no cluster policies, ready all the same, not blind, and picked up once the
//! CRD is installed.

mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_source::{ErrorReason, Kind, KubeSource, KubeSourceHandle, PolicySource, SourceOptions};
use policy::{ClusterAction, ClusterState, ObjectRef, PolicyRef, Tier};
use serde_json::{Value, json};
use support::{FakeApi, fixture};
use tokio::sync::watch;
use tracing::Level;

const PATIENCE: Duration = Duration::from_secs(10);
const CPE: &str = "clusterpolicyendpoints";

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
        absent_recheck: Duration::from_millis(150),
        resync: None,
        ..SourceOptions::default()
    }
}

async fn cluster() -> FakeApi {
    let mut objects = fixture("cluster.yaml");
    objects.extend(fixture("endpoints.yaml"));
    objects.extend(fixture("cluster-endpoints.yaml"));
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
/// PolicyEndpoints and ClusterPolicyEndpoints.
async fn expect_state(rx: &mut watch::Receiver<Arc<ClusterState>>, api: &FakeApi, step: &str) {
    let expected = api.expected_state_via_endpoints(&node());
    let matched = tokio::time::timeout(PATIENCE, rx.wait_for(|s| **s == expected))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(
        matched,
        "{step}: published cluster policies {:#?}\nexpected {:#?}",
        rx.borrow().cluster_policies,
        expected.cluster_policies
    );
}

fn names(state: &ClusterState) -> Vec<String> {
    state.cluster_policies.keys().cloned().collect()
}

fn subjects(state: &ClusterState, policy: &str) -> BTreeSet<String> {
    state.cluster_policies[policy]
        .subject_pods
        .clone()
        .expect("a ClusterPolicyEndpoint policy selects pods by name")
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A ClusterPolicyEndpoint of `policy` (Admin, `priority`) selecting `pods`
/// (namespace/name, hostIP) and denying egress to `peers`.
fn slice(name: &str, policy: &str, priority: i64, pods: &[(&str, &str)], peers: &[&str]) -> Value {
    let pods: Vec<Value> = pods
        .iter()
        .map(|(pod, host)| {
            let (namespace, name) = pod.split_once('/').expect("namespace/name");
            json!({"podIP": "10.0.3.3", "hostIP": host, "name": name, "namespace": namespace})
        })
        .collect();
    let egress: Vec<Value> = peers
        .iter()
        .map(|cidr| json!({"cidr": cidr, "action": "Deny"}))
        .collect();
    json!({
        "apiVersion": "networking.k8s.aws/v1alpha1",
        "kind": "ClusterPolicyEndpoint",
        "metadata": {"name": name},
        "spec": {
            "policyRef": {"name": policy},
            "tier": "Admin",
            "priority": priority,
            "subject": {"namespaces": {}},
            "podSelectorEndpoints": pods,
            "egress": egress,
        },
    })
}

#[tokio::test]
async fn cluster_policy_endpoints_are_listed_before_ready_and_merged_per_cluster_policy() {
    let api = cluster().await;
    let held = api.hold_lists(CPE);
    let (handle, mut rx) = KubeSource::start(api.client(), options());
    api.wait_requests("pods and policyendpoints listed", |r| {
        ["pods", "policyendpoints"].iter().all(|p| {
            r.iter()
                .any(|x| x.verb == "list" && x.resource.as_deref() == Some(*p))
        })
    })
    .await;
    // The other two lists are complete: only the held one keeps the source unready.
    tokio::time::timeout(PATIENCE, async {
        while handle.stats().policy_endpoints.lists == 0 || handle.stats().pods.lists == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("pods and policyendpoints listed");
    assert!(
        !handle.is_synced(),
        "not ready before the ClusterPolicyEndpoint list"
    );
    assert_eq!(handle.stats().published, 0, "nothing published before it");
    held.release();
    tokio::time::timeout(PATIENCE, handle.wait_synced())
        .await
        .expect("synced after the three lists");
    expect_state(&mut rx, &api, "initial lists").await;

    let state = rx.borrow().clone();
    assert_eq!(
        names(&state),
        ["baseline-shop", "deny-metadata"],
        "one cluster policy per ClusterNetworkPolicy, named by it, from three objects"
    );
    let deny = &state.cluster_policies["deny-metadata"];
    assert_eq!((deny.tier, deny.priority), (Tier::Admin, 10));
    assert_eq!(
        subjects(&state, "deny-metadata"),
        set(&["db/postgres-0", "shop/web-1"]),
        "pods of both objects, in every namespace; web-2 and migrate run on the other node"
    );
    assert_eq!(
        deny.egress.len(),
        1,
        "equal entries of two objects share a rule"
    );
    assert_eq!(deny.egress[0].action, ClusterAction::Deny);
    let baseline = &state.cluster_policies["baseline-shop"];
    assert_eq!((baseline.tier, baseline.priority), (Tier::Baseline, 100));
    let actions: Vec<ClusterAction> = baseline.ingress.iter().map(|r| r.action).collect();
    assert_eq!(actions, [ClusterAction::Deny, ClusterAction::Accept]);
    assert_eq!(state.policies.len(), 3, "PolicyEndpoints are still read");

    let resources: BTreeSet<String> = api
        .requests()
        .iter()
        .filter_map(|r| r.resource.clone())
        .collect();
    assert_eq!(resources, set(&["pods", "policyendpoints", CPE]));
    assert_eq!(handle.stats().cluster_policy_endpoints.lists, 1);
    assert_eq!(handle.stats().cluster_policy_endpoints.absent, 0);
}

#[tokio::test]
async fn added_modified_and_deleted_objects_are_reflected_in_the_cluster_policies() {
    let api = cluster().await;
    let (handle, mut rx) = started(&api).await;
    expect_state(&mut rx, &api, "initial").await;

    // A new cluster policy.
    api.apply(slice(
        "guard-a1b2c",
        "guard",
        5,
        &[("shop/web-1", "10.0.1.10")],
        &["10.0.7.0/24"],
    ));
    expect_state(&mut rx, &api, "object added").await;
    assert_eq!(rx.borrow().cluster_policies["guard"].priority, 5);

    // Modified: priority and peers change.
    api.apply(slice(
        "guard-a1b2c",
        "guard",
        7,
        &[("shop/web-1", "10.0.1.10")],
        &["10.0.8.0/24"],
    ));
    expect_state(&mut rx, &api, "object modified").await;
    assert_eq!(rx.borrow().cluster_policies["guard"].priority, 7);

    // One object of a split policy deleted: the policy keeps the other's pods.
    api.delete("ClusterPolicyEndpoint", "", "deny-metadata-k4x9z");
    expect_state(&mut rx, &api, "one of two objects deleted").await;
    assert_eq!(
        subjects(&rx.borrow(), "deny-metadata"),
        set(&["db/postgres-0"])
    );

    // The last object of a policy deleted: the policy goes.
    api.delete("ClusterPolicyEndpoint", "", "guard-a1b2c");
    expect_state(&mut rx, &api, "last object deleted").await;
    assert_eq!(names(&rx.borrow()), ["baseline-shop", "deny-metadata"]);
    assert_eq!(handle.stats().cluster_policy_endpoints.events, 4);
}

#[tokio::test]
async fn a_bad_object_is_refused_alone_naming_the_object_and_the_field() {
    let (logs, _guard) = support::logs::capture();
    let api = cluster().await;
    let (handle, mut rx) = started(&api).await;
    expect_state(&mut rx, &api, "initial").await;
    let before = rx.borrow().cluster_policies["deny-metadata"].clone();

    // A third object of deny-metadata whose action is not one of the kind's.
    let mut bad = slice(
        "deny-metadata-bad00",
        "deny-metadata",
        10,
        &[("shop/pending-1", "10.0.1.10")],
        &["10.0.9.9"],
    );
    bad["spec"]["egress"][0]["action"] = json!("Allow");
    api.apply(bad);
    api.apply(slice("marker-00000", "marker", 1, &[], &["10.0.9.9"]));
    tokio::time::timeout(
        PATIENCE,
        rx.wait_for(|s| s.cluster_policies.contains_key("marker")),
    )
    .await
    .expect("the next object applies")
    .expect("source running");
    assert_eq!(
        rx.borrow().cluster_policies["deny-metadata"],
        before,
        "the bad object changed nothing"
    );
    assert!(rx.borrow().cluster_policies.contains_key("baseline-shop"));
    assert_eq!(handle.stats().cluster_policy_endpoints.rejected, 1);
    let refused: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| {
            l.level == Level::WARN
                && l.fields.get("kind").map(String::as_str) == Some("ClusterPolicyEndpoint")
        })
        .filter_map(|l| l.fields.get("error").cloned())
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("ClusterPolicyEndpoint deny-metadata-bad00"),
        "{}",
        refused[0]
    );
    assert!(
        refused[0].contains("spec.egress[0].action"),
        "{}",
        refused[0]
    );
}

#[tokio::test]
async fn gone_relists_see_changes_made_while_history_was_compacted() {
    let api = cluster().await;
    let (handle, mut rx) = started(&api).await;
    expect_state(&mut rx, &api, "initial").await;

    api.apply_quietly(slice(
        "deny-metadata-k4x9z",
        "deny-metadata",
        10,
        &[("shop/web-1", "10.0.1.10"), ("shop/pending-1", "10.0.1.10")],
        &["169.254.169.254/32"],
    ));
    api.delete_quietly("ClusterPolicyEndpoint", "", "baseline-shop-7hj3k");
    api.expire(CPE);
    expect_state(&mut rx, &api, "after 410").await;
    assert_eq!(names(&rx.borrow()), ["deny-metadata"]);
    assert!(subjects(&rx.borrow(), "deny-metadata").contains("shop/pending-1"));
    let stats = handle.stats().cluster_policy_endpoints;
    assert_eq!(stats.gone_restarts, 1);
    assert_eq!(stats.lists, 2);
    assert_eq!(
        handle
            .metrics()
            .errors(Kind::ClusterPolicyEndpoint, ErrorReason::Gone),
        1
    );
    assert!(handle.is_synced());
}

#[tokio::test]
async fn without_the_crd_there_are_no_cluster_policies_until_it_is_installed() {
    let (logs, _guard) = support::logs::capture();
    let api = cluster().await;
    api.set_served(CPE, false);
    let (handle, mut rx) = KubeSource::start(
        api.client(),
        SourceOptions {
            blind_after: Duration::from_millis(300),
            ..options()
        },
    );
    tokio::time::timeout(PATIENCE, handle.wait_synced())
        .await
        .expect("ready without the CRD");
    expect_state(&mut rx, &api, "no CRD").await;
    assert!(rx.borrow().cluster_policies.is_empty());
    assert_eq!(rx.borrow().policies.len(), 3, "PolicyEndpoints still read");

    // Checked again and again, never a failure: not blind well past `blind_after`.
    api.wait_requests("lists rechecked", |r| {
        r.iter()
            .filter(|x| x.verb == "list" && x.resource.as_deref() == Some(CPE))
            .count()
            >= 4
    })
    .await;
    assert!(!handle.health().is_blind(), "{}", handle.health());
    let absent = handle.stats().cluster_policy_endpoints.absent;
    assert!(absent >= 3, "{absent}");
    assert!(
        handle
            .metrics()
            .errors(Kind::ClusterPolicyEndpoint, ErrorReason::NotFound)
            >= 3
    );
    assert_eq!(
        logs.count(Level::INFO, "ClusterPolicyEndpoint"),
        1,
        "one line for the absent kind, not one per check"
    );
    assert_eq!(logs.count(Level::WARN, "ClusterPolicyEndpoint"), 0);
    assert_eq!(logs.count(Level::ERROR, "ClusterPolicyEndpoint"), 0);

    // The CRD is installed: its objects arrive without a restart.
    api.set_served(CPE, true);
    expect_state(&mut rx, &api, "CRD installed").await;
    assert_eq!(names(&rx.borrow()), ["baseline-shop", "deny-metadata"]);
    assert!(
        rx.borrow()
            .pods
            .contains_key(&ObjectRef::new("shop", "web-1"))
    );

    // And deleted again (its objects with it): the cluster policies go.
    api.set_served(CPE, false);
    expect_state(&mut rx, &api, "CRD deleted").await;
    assert!(rx.borrow().cluster_policies.is_empty());
    assert!(
        rx.borrow()
            .policies
            .contains_key(&PolicyRef::new("shop", "default-deny"))
    );
    assert!(!handle.health().is_blind(), "{}", handle.health());
}
