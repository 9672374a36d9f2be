//! Property: after any random sequence of cluster changes applied as diffs (one
//! resolver, one planner and one set of maps kept throughout), the maps behave
//! exactly like maps programmed from scratch for the final state: same verdicts, same
//! deciding policy rule, same pod records (apart from set ids and generations), and
//! no more entries or rule lists. A pod whose verdicts changed got a new generation.

mod common;

use std::net::IpAddr;

use common::{Family, NAMESPACES, PODS, cluster, options};
use datapath_common::{PROTO_SCTP, PROTO_TCP, PROTO_UDP, PodRecord};
use policy::{
    ClusterState, Direction, EnforcingMode, MapModel, ObjectRef, Planner, PodPhase, PolicyTable,
    Resolver, load_str,
};
use proptest::prelude::*;

fn p(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n---\n"
    )
}

/// The pool of policies a change can add or remove.
fn policy_pool() -> Vec<String> {
    vec![
        p("x", "deny-in", "{podSelector: {}, policyTypes: [Ingress]}"),
        p(
            "x",
            "from-y",
            "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}",
        ),
        p(
            "x",
            "and",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}, podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]}",
        ),
        p(
            "x",
            "cidr",
            "{podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}, ingress: [{from: [{ipBlock: {cidr: ALL_PODS, except: [NET_Y]}}]}]}",
        ),
        p(
            "x",
            "narrow",
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: NET_Y, except: [HOST_Y_A]}}], ports: [{protocol: UDP, port: 81}]}]}",
        ),
        p(
            "y",
            "egress",
            "{podSelector: {}, policyTypes: [Egress], egress: [{to: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{port: serve-81-tcp}]}]}",
        ),
        p(
            "y",
            "role",
            "{podSelector: {matchExpressions: [{key: role, operator: Exists}]}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: role, operator: DoesNotExist}]}}], ports: [{protocol: SCTP}]}]}",
        ),
        p(
            "y",
            "range",
            "{podSelector: {}, ingress: [{ports: [{port: 80, endPort: 81}]}, {from: [{podSelector: {}}]}]}",
        ),
        p(
            "z",
            "out",
            "{podSelector: {matchLabels: {pod: a}}, egress: [{to: [{ipBlock: {cidr: EVERYWHERE, except: [NET_X]}}]}]}",
        ),
        p(
            "z",
            "named",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}}], ports: [{port: serve-80-tcp}, {protocol: UDP, port: serve-81-udp}]}]}",
        ),
    ]
}

#[derive(Clone, Debug)]
enum Change {
    TogglePolicy(usize),
    SetPodLabel(usize, usize),
    ToggleRole(usize),
    SetNamespaceLabel(usize, usize),
    TogglePod(usize),
    SetPhase(usize, usize),
    MoveNode(usize),
    TakeAddressOf(usize, usize),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (0..10usize).prop_map(Change::TogglePolicy),
        2 => (0..9usize, 0..3usize).prop_map(|(a, b)| Change::SetPodLabel(a, b)),
        1 => (0..9usize).prop_map(Change::ToggleRole),
        1 => (0..3usize, 0..3usize).prop_map(|(a, b)| Change::SetNamespaceLabel(a, b)),
        3 => (0..9usize).prop_map(Change::TogglePod),
        2 => (0..9usize, 0..3usize).prop_map(|(a, b)| Change::SetPhase(a, b)),
        1 => (0..9usize).prop_map(Change::MoveNode),
        1 => (0..9usize, 0..9usize).prop_map(|(a, b)| Change::TakeAddressOf(a, b)),
    ]
}

fn pod_key(i: usize) -> ObjectRef {
    ObjectRef::new(NAMESPACES[i / 3], PODS[i % 3])
}

fn apply_change(
    state: &mut ClusterState,
    fixture: &ClusterState,
    pool: &ClusterState,
    change: &Change,
) {
    match change {
        Change::TogglePolicy(i) => {
            let (key, policy) = pool.policies.iter().nth(*i).expect("pool index in range");
            if state.policies.remove(key).is_none() {
                state.policies.insert(key.clone(), policy.clone());
            }
        }
        Change::SetPodLabel(i, v) => {
            if let Some(pod) = state.pods.get_mut(&pod_key(*i)) {
                pod.labels.insert("pod".into(), PODS[*v].into());
            }
        }
        Change::ToggleRole(i) => {
            if let Some(pod) = state.pods.get_mut(&pod_key(*i))
                && pod.labels.remove("role").is_none()
            {
                pod.labels.insert("role".into(), "db".into());
            }
        }
        Change::SetNamespaceLabel(i, v) => {
            if let Some(ns) = state.namespaces.get_mut(NAMESPACES[*i]) {
                ns.labels.insert("ns".into(), NAMESPACES[*v].into());
            }
        }
        Change::TogglePod(i) => {
            let key = pod_key(*i);
            if state.pods.remove(&key).is_none() {
                state.pods.insert(key.clone(), fixture.pods[&key].clone());
            }
        }
        Change::SetPhase(i, v) => {
            if let Some(pod) = state.pods.get_mut(&pod_key(*i)) {
                pod.phase = [PodPhase::Running, PodPhase::Succeeded, PodPhase::Pending][*v];
            }
        }
        Change::MoveNode(i) => {
            if let Some(pod) = state.pods.get_mut(&pod_key(*i)) {
                pod.node_name = Some(
                    if pod.node_name.as_deref() == Some(common::NODE) {
                        "node-2"
                    } else {
                        common::NODE
                    }
                    .into(),
                );
            }
        }
        Change::TakeAddressOf(i, j) => {
            // Address reuse: a pod takes the address of one that is gone.
            if !state.pods.contains_key(&pod_key(*j)) {
                let ip = fixture.pods[&pod_key(*j)].ips.clone();
                if let Some(pod) = state.pods.get_mut(&pod_key(*i)) {
                    pod.ips = ip;
                }
            }
        }
    }
}

/// Peers probed: every fixture pod address, the node, and an outside address.
fn peers(family: Family, fixture: &ClusterState) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = fixture.pods.values().map(|p| p.ips[0]).collect();
    out.push(family.node_ip());
    out.push(match family {
        Family::V4 => IpAddr::from([8, 8, 8, 8]),
        Family::V6 => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]),
    });
    out
}

/// Verdict, deciding policy (by name) and reason of every probe of one pod.
type Behaviour = Vec<(bool, String, u8)>;

/// The behaviour of one pod towards every peer, protocol and port.
fn behaviour(
    maps: &MapModel,
    table: &PolicyTable,
    pod: &ObjectRef,
    peers: &[IpAddr],
) -> Vec<(bool, String, u8)> {
    let mut out = Vec::new();
    for direction in Direction::BOTH {
        for peer in peers {
            for protocol in [PROTO_TCP, PROTO_UDP, PROTO_SCTP] {
                for port in [80, 81, 5000] {
                    let d = maps.decide(pod, direction, *peer, protocol, port);
                    out.push((d.is_accept(), table.describe(d.policy_id), d.reason));
                }
            }
        }
    }
    out
}

fn without_ids(mut r: PodRecord) -> PodRecord {
    r.policy_set = 0;
    r.generation = 0;
    r
}

fn run(family: Family, mode: EnforcingMode, changes: &[Change]) -> Result<(), TestCaseError> {
    let fixture = cluster(family);
    let pool = load_str("pool.yaml", &family.render(&policy_pool().concat()))
        .expect("pool manifests are valid");
    let peers = peers(family, &fixture);
    let mut state = fixture.clone();
    let mut resolver = Resolver::new();
    let mut planner = Planner::new();
    let mut maps = MapModel::new();
    let opts = options(family, mode);
    let mut table = PolicyTable::default();
    for change in changes {
        let before: Vec<(ObjectRef, Behaviour)> = maps
            .pods
            .keys()
            .map(|pod| (pod.clone(), behaviour(&maps, &table, pod, &peers)))
            .collect();
        let old_records = maps.pods.clone();
        apply_change(&mut state, &fixture, &pool, change);
        let resolved = resolver.resolve(&state, &opts);
        let ops = planner.plan(&resolved);
        maps.apply(&ops)
            .map_err(|e| TestCaseError::fail(format!("{change:?}: {e}")))?;
        table = (*resolved.table).clone();

        let scratch_resolved = Resolver::new().resolve(&state, &opts);
        let mut scratch = MapModel::new();
        scratch
            .apply(&Planner::new().plan(&scratch_resolved))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;

        let pods: Vec<&ObjectRef> = maps.pods.keys().collect();
        let scratch_pods: Vec<&ObjectRef> = scratch.pods.keys().collect();
        prop_assert_eq!(
            pods,
            scratch_pods,
            "same pods programmed after {:?}",
            change
        );
        for (pod, record) in &maps.pods {
            prop_assert_eq!(
                without_ids(*record),
                without_ids(scratch.pods[pod]),
                "record of {} after {:?}",
                pod,
                change
            );
            let now = behaviour(&maps, &table, pod, &peers);
            prop_assert_eq!(
                &now,
                &behaviour(&scratch, &scratch_resolved.table, pod, &peers),
                "behaviour of {} after {:?}",
                pod,
                change
            );
            if let Some((_, was)) = before.iter().find(|(p, _)| p == pod)
                && was.iter().map(|b| b.0).ne(now.iter().map(|b| b.0))
            {
                prop_assert_ne!(
                    old_records[pod].generation,
                    record.generation,
                    "{} changed verdicts without a new generation",
                    pod
                );
            }
        }
        prop_assert_eq!(
            maps.entries.len(),
            scratch.entries.len(),
            "entries left behind after {:?}",
            change
        );
        prop_assert_eq!(
            maps.lists.len(),
            scratch.lists.len(),
            "rule lists left behind after {:?}",
            change
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn incremental_updates_equal_a_from_scratch_programming(
        v6 in any::<bool>(),
        strict in any::<bool>(),
        changes in proptest::collection::vec(change(), 1..12),
    ) {
        let family = if v6 { Family::V6 } else { Family::V4 };
        let mode = if strict { EnforcingMode::Strict } else { EnforcingMode::Standard };
        run(family, mode, &changes)?;
    }
}
