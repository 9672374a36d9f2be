//! The RBAC in `deploy/` against the access the source declares
//! (`k8s_source::WATCHED_RESOURCES`), and the requests the watchers really make
//! against the verbs declared as called (`k8s_source::WATCH_CALLS`).

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_source::{KubeSource, PolicySource, SourceOptions, WATCH_CALLS, WATCHED_RESOURCES};
use serde_json::Value;
use support::{FakeApi, fixture, fixture_object};

const ROLE: &str = "netpol-agent";

type Grant = (String, String, String);

fn deploy_documents() -> Vec<(PathBuf, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("deploy file");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if !value.is_null() {
                docs.push((file.clone(), value));
            }
        }
    }
    docs
}

fn the_one<T: serde::de::DeserializeOwned>(docs: &[(PathBuf, Value)], kind: &str) -> T {
    let found: Vec<&Value> = docs
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v["kind"] == kind && v["metadata"]["name"] == ROLE)
        .collect();
    assert_eq!(found.len(), 1, "want one {kind} {ROLE} in deploy/");
    serde_json::from_value(found[0].clone()).expect(kind)
}

fn declared() -> BTreeSet<Grant> {
    WATCHED_RESOURCES
        .iter()
        .flat_map(|a| {
            a.verbs.iter().map(|v| {
                (
                    a.api_group.to_owned(),
                    a.resource.to_owned(),
                    (*v).to_owned(),
                )
            })
        })
        .collect()
}

#[test]
fn deployment_cluster_role_grants_exactly_the_declared_access() {
    let docs = deploy_documents();
    let role: ClusterRole = the_one(&docs, "ClusterRole");
    assert!(role.aggregation_rule.is_none());
    let mut granted = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        assert!(
            rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
            "{rule:?}"
        );
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert_ne!(verb, "*", "wildcard verb in {rule:?}");
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    assert_eq!(granted, declared());

    // The role reaches the agent only through its binding to the service account.
    let binding: ClusterRoleBinding = the_one(&docs, "ClusterRoleBinding");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.name, ROLE);
    let subjects = binding.subjects.unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, ROLE);
    assert_eq!(subjects[0].namespace.as_deref(), Some("kube-system"));
    // No other role or binding widens it.
    for (file, doc) in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        if matches!(
            kind,
            "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding"
        ) {
            assert_eq!(
                doc["metadata"]["name"],
                ROLE,
                "{} has another {kind}",
                file.display()
            );
        }
    }
}

#[tokio::test]
async fn watchers_make_only_the_declared_calls_through_lists_relists_and_reconnects() {
    declared_calls_only(PolicySource::NetworkPolicy).await;
}

#[tokio::test]
async fn policy_endpoint_watchers_make_only_the_declared_calls() {
    declared_calls_only(PolicySource::PolicyEndpoint).await;
}

async fn declared_calls_only(source: PolicySource) {
    let mut objects = fixture("cluster.yaml");
    objects.extend(fixture("endpoints.yaml"));
    let api = FakeApi::start(objects).await;
    let kinds = source.kinds();
    let watched = |plural: &str| kinds.iter().any(|k| k.plural() == plural);
    let options = SourceOptions {
        policy_source: source,
        backoff_initial: Duration::from_millis(20),
        gone_relist_jitter: Duration::from_millis(200),
        resync: Some(Duration::from_millis(500)),
        page_size: 2,
        ..SourceOptions::default()
    };
    let (handle, mut rx) = KubeSource::start(api.client(), options);
    tokio::time::timeout(Duration::from_secs(5), handle.wait_synced())
        .await
        .expect("synced");
    // Exercise every path that makes requests: events, a 410 relist, a dropped
    // connection, a resync.
    api.apply(fixture_object("changes.yaml", "Pod", "shop/web-3"));
    let policies = kinds.last().expect("a policy kind").plural();
    api.expire(policies);
    api.drop_watches(kinds[0].plural());
    api.wait_requests("relist, reconnect and resync", |r| {
        let n = |verb: &str, p: &str| {
            r.iter()
                .filter(|x| x.verb == verb && x.resource.as_deref() == Some(p))
                .count()
        };
        kinds.iter().all(|k| n("watch", k.plural()) >= 2)
    })
    .await;
    let expected = match source {
        PolicySource::NetworkPolicy => api.expected_state(),
        PolicySource::PolicyEndpoint => api.expected_state_via_endpoints(&[]),
    };
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| **s == expected))
        .await
        .expect("state")
        .expect("source running");

    let requests = api.requests();
    let called_verbs: BTreeSet<&str> = requests.iter().map(|r| r.verb.as_str()).collect();
    let declared_calls: BTreeSet<&str> = WATCH_CALLS.iter().copied().collect();
    assert_eq!(called_verbs, declared_calls, "verbs called");
    let granted = declared();
    for r in &requests {
        assert_eq!(r.method, "GET", "{r:?}");
        let grant = (
            r.api_group.clone().expect("known group"),
            r.resource.clone().expect("known resource"),
            r.verb.clone(),
        );
        assert!(granted.contains(&grant), "{grant:?} is not granted");
    }
    // Every resource of this source is both listed and watched, and no other is asked for.
    for r in &requests {
        let resource = r.resource.as_deref().unwrap_or_default();
        assert!(watched(resource), "{resource} is not watched by {source:?}");
    }
    for access in WATCHED_RESOURCES.iter().filter(|a| watched(a.resource)) {
        for verb in WATCH_CALLS {
            assert!(
                requests
                    .iter()
                    .any(|r| r.verb == *verb && r.resource.as_deref() == Some(access.resource)),
                "{verb} {} never called",
                access.resource
            );
        }
    }
}
