//! Policy resolution at cluster scale: 5,000 pods in 50 namespaces, 1,000
//! NetworkPolicies, 110 pods on this node. Resolves and plans from scratch, then
//! changes one remote pod's labels and times the incremental resolve + plan. The
//! write count the change must produce is derived here from the generator's own
//! rules (not from the code under test) and asserted. Ends with one JSON line.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use policy::{
    ClusterState, ContainerPort, Direction, EnforcingMode, IpBlock, LabelSelector, MapModel, MapOp,
    Namespace, NetworkPolicy, ObjectRef, Peer, Planner, Pod, PodPhase, PolicyPort, PolicyRule,
    PolicySpec, PortRef, Protocol, ResolveOptions, Resolver,
};

const NAMESPACES: usize = 50;
const PODS_PER_NAMESPACE: usize = 100;
const POLICIES_PER_NAMESPACE: usize = 20;
const APPS: usize = 10;
const TEAMS: usize = 5;
/// Pod `g` (global index) is local when `g % LOCAL_STRIDE == 0` and `g / LOCAL_STRIDE < LOCAL_PODS`.
const LOCAL_STRIDE: usize = 45;
const LOCAL_PODS: usize = 110;
const NODE: &str = "node-0";
/// Label changes timed (forward only; the revert is untimed); the median is reported.
const ROUNDS: usize = 21;

fn ns_name(i: usize) -> String {
    format!("ns-{i:02}")
}

fn app(j: usize) -> usize {
    j % APPS
}

fn front(j: usize) -> bool {
    j.is_multiple_of(2)
}

fn is_local(i: usize, j: usize) -> bool {
    let g = i * PODS_PER_NAMESPACE + j;
    g.is_multiple_of(LOCAL_STRIDE) && g / LOCAL_STRIDE < LOCAL_PODS
}

fn labels(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn pod(i: usize, j: usize) -> Pod {
    let g = i * PODS_PER_NAMESPACE + j;
    Pod {
        namespace: ns_name(i),
        name: format!("pod-{j:02}"),
        labels: labels(&[
            ("app", format!("app-{}", app(j))),
            ("tier", if front(j) { "front" } else { "back" }.into()),
        ]),
        ips: vec![IpAddr::V4(Ipv4Addr::new(
            10,
            i as u8,
            (j / 250) as u8,
            (j % 250 + 1) as u8,
        ))],
        node_name: Some(if is_local(i, j) {
            NODE.to_owned()
        } else {
            format!("remote-{}", g % LOCAL_STRIDE)
        }),
        host_network: false,
        phase: PodPhase::Running,
        ports: vec![
            ContainerPort {
                name: Some("http".into()),
                port: 8080,
                protocol: Protocol::Tcp,
            },
            ContainerPort {
                name: Some("metrics".into()),
                port: 9090,
                protocol: Protocol::Tcp,
            },
        ],
        interface: None,
    }
}

fn select(pairs: &[(&str, String)]) -> LabelSelector {
    LabelSelector {
        match_labels: labels(pairs),
        match_expressions: Vec::new(),
    }
}

fn port(protocol: Protocol, p: PortRef) -> PolicyPort {
    PolicyPort {
        protocol,
        port: Some(p),
        end_port: None,
    }
}

fn policy(i: usize, name: String, spec: PolicySpec) -> NetworkPolicy {
    NetworkPolicy {
        namespace: ns_name(i),
        name,
        spec,
    }
}

/// The 20 policies of namespace `i`:
/// - `allow-app-k` (k < 10): pods `app-k` admit `app-(k+1)` of their namespace on the named port `http`;
/// - `allow-team-t` (t < 5): pods `app-(2t)` admit front `app-0` pods of namespaces of team `(i+1) % 5` on 8080;
/// - `egress-cidr-c` (c < 3): pods `app-c` may reach `10.((i+1+c) % 50).0.0/16` except its first /28 on 443;
/// - `deny-ingress`: every pod is isolated for ingress;
/// - `dns`: every pod may reach `app-9` pods of `ns-00` on UDP 53 (and is isolated for egress).
fn policies(i: usize) -> Vec<NetworkPolicy> {
    let mut out = Vec::new();
    for k in 0..APPS {
        out.push(policy(
            i,
            format!("allow-app-{k}"),
            PolicySpec {
                pod_selector: select(&[("app", format!("app-{k}"))]),
                ingress: vec![PolicyRule {
                    peers: vec![Peer::Pods {
                        pod_selector: Some(select(&[("app", format!("app-{}", (k + 1) % APPS))])),
                        namespace_selector: None,
                    }],
                    ports: vec![port(Protocol::Tcp, PortRef::Name("http".into()))],
                }],
                egress: Vec::new(),
                policy_types: None,
            },
        ));
    }
    for t in 0..TEAMS {
        out.push(policy(
            i,
            format!("allow-team-{t}"),
            PolicySpec {
                pod_selector: select(&[("app", format!("app-{}", 2 * t))]),
                ingress: vec![PolicyRule {
                    peers: vec![Peer::Pods {
                        pod_selector: Some(select(&[
                            ("app", "app-0".into()),
                            ("tier", "front".into()),
                        ])),
                        namespace_selector: Some(select(&[(
                            "team",
                            format!("team-{}", (i + 1) % TEAMS),
                        )])),
                    }],
                    ports: vec![port(Protocol::Tcp, PortRef::Number(8080))],
                }],
                egress: Vec::new(),
                policy_types: None,
            },
        ));
    }
    for c in 0..3 {
        let target = ((i + 1 + c) % NAMESPACES) as u8;
        out.push(policy(
            i,
            format!("egress-cidr-{c}"),
            PolicySpec {
                pod_selector: select(&[("app", format!("app-{c}"))]),
                ingress: Vec::new(),
                egress: vec![PolicyRule {
                    peers: vec![Peer::IpBlock(IpBlock {
                        cidr: format!("10.{target}.0.0/16").parse().expect("valid CIDR"),
                        except: vec![format!("10.{target}.0.0/28").parse().expect("valid CIDR")],
                    })],
                    ports: vec![port(Protocol::Tcp, PortRef::Number(443))],
                }],
                policy_types: Some(vec![Direction::Egress]),
            },
        ));
    }
    out.push(policy(
        i,
        "deny-ingress".into(),
        PolicySpec {
            policy_types: Some(vec![Direction::Ingress]),
            ..PolicySpec::default()
        },
    ));
    out.push(policy(
        i,
        "dns".into(),
        PolicySpec {
            pod_selector: LabelSelector::everything(),
            ingress: Vec::new(),
            egress: vec![PolicyRule {
                peers: vec![Peer::Pods {
                    pod_selector: Some(select(&[("app", "app-9".into())])),
                    namespace_selector: Some(select(&[(
                        "kubernetes.io/metadata.name",
                        ns_name(0),
                    )])),
                }],
                ports: vec![port(Protocol::Udp, PortRef::Number(53))],
            }],
            policy_types: Some(vec![Direction::Egress]),
        },
    ));
    assert_eq!(out.len(), POLICIES_PER_NAMESPACE);
    out
}

fn cluster() -> ClusterState {
    let mut state = ClusterState::default();
    for i in 0..NAMESPACES {
        state.upsert_namespace(Namespace {
            name: ns_name(i),
            labels: labels(&[("team", format!("team-{}", i % TEAMS))]),
        });
        for j in 0..PODS_PER_NAMESPACE {
            state.upsert_pod(pod(i, j));
        }
        for p in policies(i) {
            state.upsert_policy(p);
        }
    }
    state
}

/// Which ingress rules of local pod (`p`, `jp`) admit a peer pod in namespace `x`
/// with `peer_app` and `peer_front`, straight from the generator's definitions above.
fn rules_admitting(
    p: usize,
    jp: usize,
    x: usize,
    peer_app: usize,
    peer_front: bool,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    // allow-app-k selects the pod when k == app(jp); its peers are app-(k+1) of the same namespace.
    if p == x && peer_app == (app(jp) + 1) % APPS {
        out.push("allow-app");
    }
    // allow-team-t selects the pod when app(jp) == 2t; its peers are front app-0 pods of team (p+1)%5.
    if app(jp).is_multiple_of(2)
        && app(jp) / 2 < TEAMS
        && x % TEAMS == (p + 1) % TEAMS
        && peer_app == 0
        && peer_front
    {
        out.push("allow-team");
    }
    out
}

/// Writes a label change of the remote pod (`x`, `jx`) from `old_app` to `new_app`
/// must cause: per local pod whose set of admitting rules for that peer changes, one
/// entry write (the peer's /32 added, removed or re-pointed) and one pod record
/// (generation bump). No rule list is created or dropped: every list involved is also
/// used by other peers of the same policies.
fn expected_writes(x: usize, jx: usize, old_app: usize, new_app: usize) -> usize {
    let mut writes = 0;
    for p in 0..NAMESPACES {
        for jp in 0..PODS_PER_NAMESPACE {
            if !is_local(p, jp) {
                continue;
            }
            if rules_admitting(p, jp, x, old_app, front(jx))
                != rules_admitting(p, jp, x, new_app, front(jx))
            {
                writes += 2;
            }
        }
    }
    writes
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let mut state = cluster();
    let local = state
        .pods
        .values()
        .filter(|p| p.node_name.as_deref() == Some(NODE))
        .count();
    assert_eq!(
        (state.pods.len(), state.policies.len(), local),
        (5000, 1000, 110)
    );
    let options = ResolveOptions {
        node_name: NODE.into(),
        node_addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 168, 0, 10))],
        mode: EnforcingMode::Standard,
    };

    let mut resolver = Resolver::new();
    let mut planner = Planner::new();
    let started = Instant::now();
    let resolved = resolver.resolve(&state, &options);
    let resolve_ms = ms(started);
    let started = Instant::now();
    let ops = planner.plan(&resolved);
    let plan_ms = ms(started);
    let entries = resolved.entry_count();
    let mut maps = MapModel::new();
    maps.apply(&ops).expect("initial ops apply in order");
    println!(
        "resolve {resolve_ms:.1} ms, plan {plan_ms:.1} ms: {entries} entries, {} distinct rule lists, {} ops, {} unenforceable",
        planner.rule_list_count(),
        ops.len(),
        resolved.unenforceable.len()
    );

    // The change: remote pod ns-07/pod-10 (front, app-0) becomes app-1.
    let (x, jx) = (7, 10);
    assert!(!is_local(x, jx));
    let key = ObjectRef::new(ns_name(x), format!("pod-{jx:02}"));
    let expected = expected_writes(x, jx, app(jx), 1);
    let mut samples = Vec::new();
    let mut update_writes = 0;
    for round in 0..ROUNDS {
        let started = Instant::now();
        state
            .pods
            .get_mut(&key)
            .expect("generated pod")
            .labels
            .insert("app".into(), "app-1".into());
        let resolved = resolver.resolve(&state, &options);
        let ops = planner.plan(&resolved);
        samples.push(ms(started));
        maps.apply(&ops).expect("update ops apply in order");
        let entry_writes = ops
            .iter()
            .filter(|op| matches!(op, MapOp::PutEntry { .. } | MapOp::DeleteEntry { .. }))
            .count();
        let record_writes = ops
            .iter()
            .filter(|op| matches!(op, MapOp::PutPod { .. }))
            .count();
        assert_eq!(
            ops.len(),
            expected,
            "round {round}: {entry_writes} entry writes, {record_writes} records; want {expected} writes"
        );
        assert_eq!(entry_writes, record_writes);
        update_writes = ops.len();
        // Back, untimed, for the next round.
        state
            .pods
            .get_mut(&key)
            .expect("generated pod")
            .labels
            .insert("app".into(), "app-0".into());
        let back = planner.plan(&resolver.resolve(&state, &options));
        assert_eq!(back.len(), expected);
        maps.apply(&back).expect("revert ops apply in order");
    }
    samples.sort_by(f64::total_cmp);
    let update_ms = samples[samples.len() / 2];
    println!(
        "label change of {key}: {update_writes} writes (expected {expected}), median {update_ms:.3} ms (min {:.3}) of {} rounds; update/resolve ratio {:.4}",
        samples[0],
        samples.len(),
        update_ms / resolve_ms
    );
    println!(
        "targets: resolve_ms <= 1000 ({}), update_ms <= 10 ({})",
        resolve_ms <= 1000.0,
        update_ms <= 10.0
    );
    println!(
        "{{\"bench\":\"policy\",\"pods\":{},\"policies\":{},\"resolve_ms\":{resolve_ms:.1},\"entries\":{entries},\"update_ms\":{update_ms:.3},\"update_writes\":{update_writes}}}",
        state.pods.len(),
        state.policies.len()
    );
}
