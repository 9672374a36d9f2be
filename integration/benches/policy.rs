//! Policy resolution at cluster scale: 5,000 pods in 50 namespaces, 1,000
//! NetworkPolicies, 110 pods on this node. Resolves and plans from scratch, then
//! changes one remote pod's labels and times the incremental resolve + plan. The
//! write count the change must produce is derived here from the generator's own
//! rules (not from the code under test) and asserted, and after every change the
//! maps must mean what a fresh resolve + plan of the same state gives. Ends with one
//! JSON line.
//!
//! `NETPOL_BENCH_QUICK=1`: the same generator with 10 namespaces (1,000 pods, 200
//! policies, 23 on this node), 3 rounds, and a change (`ns-00/pod-10`) that moves
//! policy sets shared by two pods; the same checks, no speed targets; the JSON line
//! gets `"quick":true`. Runs in seconds even in a debug build
//! (`NETPOL_BENCH_QUICK=1 cargo test -p integration --bench policy`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use datapath_common::PodRecord;
use policy::{
    ClusterState, ContainerPort, Direction, EnforcingMode, IpBlock, LabelSelector, MapModel, MapOp,
    Namespace, NetworkPolicy, ObjectRef, Peer, Planner, Pod, PodPhase, PodRef, PolicyPort,
    PolicyRule, PolicySpec, PolicyTable, PortRef, Protocol, ResolveOptions, Resolver,
};

/// Namespaces in full mode (quick mode: `QUICK_NAMESPACES`).
const NAMESPACES: usize = 50;
const QUICK_NAMESPACES: usize = 10;
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
const QUICK_ROUNDS: usize = 3;

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
/// - `egress-cidr-c` (c < 3): pods `app-c` may reach `10.((i+1+c) % namespaces).0.0/16` except its first /28 on 443;
/// - `deny-ingress`: every pod is isolated for ingress;
/// - `dns`: every pod may reach `app-9` pods of `ns-00` on UDP 53 (and is isolated for egress).
fn policies(i: usize, namespaces: usize) -> Vec<NetworkPolicy> {
    let mut out = Vec::new();
    for k in 0..APPS {
        out.push(policy(
            i,
            format!("allow-app-{k}"),
            PolicySpec {
                pod_selector: select(&[("app", format!("app-{k}"))]),
                subject_pods: None,
                ingress: vec![PolicyRule {
                    peers: vec![Peer::Pods {
                        pod_selector: Some(select(&[("app", format!("app-{}", (k + 1) % APPS))])),
                        namespace_selector: None,
                    }],
                    ports: vec![port(Protocol::Tcp, PortRef::Name("http".into()))],
                }],
                egress: Vec::new(),
                policy_types: None,
                audit: false,
            },
        ));
    }
    for t in 0..TEAMS {
        out.push(policy(
            i,
            format!("allow-team-{t}"),
            PolicySpec {
                pod_selector: select(&[("app", format!("app-{}", 2 * t))]),
                subject_pods: None,
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
                audit: false,
            },
        ));
    }
    for c in 0..3 {
        let target = ((i + 1 + c) % namespaces) as u8;
        out.push(policy(
            i,
            format!("egress-cidr-{c}"),
            PolicySpec {
                pod_selector: select(&[("app", format!("app-{c}"))]),
                subject_pods: None,
                ingress: Vec::new(),
                egress: vec![PolicyRule {
                    peers: vec![Peer::IpBlock(IpBlock {
                        cidr: format!("10.{target}.0.0/16").parse().expect("valid CIDR"),
                        except: vec![format!("10.{target}.0.0/28").parse().expect("valid CIDR")],
                    })],
                    ports: vec![port(Protocol::Tcp, PortRef::Number(443))],
                }],
                policy_types: Some(vec![Direction::Egress]),
                audit: false,
            },
        ));
    }
    out.push(policy(
        i,
        "deny-ingress".into(),
        PolicySpec {
            policy_types: Some(vec![Direction::Ingress]),
            audit: false,
            ..PolicySpec::default()
        },
    ));
    out.push(policy(
        i,
        "dns".into(),
        PolicySpec {
            pod_selector: LabelSelector::everything(),
            subject_pods: None,
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
            audit: false,
        },
    ));
    assert_eq!(out.len(), POLICIES_PER_NAMESPACE);
    out
}

fn cluster(namespaces: usize) -> ClusterState {
    let mut state = ClusterState::default();
    for i in 0..namespaces {
        state.upsert_namespace(Namespace {
            name: ns_name(i),
            labels: labels(&[("team", format!("team-{}", i % TEAMS))]),
        });
        for j in 0..PODS_PER_NAMESPACE {
            state.upsert_pod(pod(i, j));
        }
        for p in policies(i, namespaces) {
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

/// Whether the egress rules of any local pod admit a peer pod in namespace `x` with
/// `peer_app`: the only egress pod selector is `dns` (app-9 pods of ns-00, selected by
/// every pod); the `egress-cidr` ipBlocks do not depend on labels.
fn egress_admits(x: usize, peer_app: usize) -> bool {
    x == 0 && peer_app == 9
}

/// The writes a label change of the remote pod (`x`, `jx`) from `old_app` to
/// `new_app` must cause.
struct Expected {
    /// Local pods whose entries change.
    pods: usize,
    /// Distinct (namespace, app) groups among them.
    groups: usize,
}

impl Expected {
    fn writes(&self) -> usize {
        self.groups + self.pods
    }
}

/// Derived from the generator, not from the planner:
/// - A local pod's entries depend only on its (namespace, app): every pod selector of
///   the generated policies matches on `app` alone (or selects everything), the peers
///   and ipBlocks a policy admits do not depend on which pod it selects, the named
///   port `http` means 8080 on every pod, and the node-local entry is the same for all.
///   Distinct groups have distinct entries (`allow-app-k` admits the app-(k+1) pods of
///   its own namespace, and every namespace has them), so the planner, which gives pods
///   with equal entries one policy set, keeps one set per group (checked at start-up).
/// - The change adds, removes or re-points one /32 (the peer's) among the /32s of one
///   direction of each affected pod, and all pods of a group move to the same new
///   entries in the same plan, so each group's shared set changes in place: one entry
///   write per group, then one pod record (generation bump) per affected pod.
/// - No rule list is created or dropped: every list involved is also used by other
///   peers of the same policies.
fn expected_writes(
    namespaces: usize,
    x: usize,
    jx: usize,
    old_app: usize,
    new_app: usize,
) -> Expected {
    let mut pods = 0;
    let mut groups = BTreeSet::new();
    for p in 0..namespaces {
        for jp in 0..PODS_PER_NAMESPACE {
            if !is_local(p, jp) {
                continue;
            }
            let ingress_changes = rules_admitting(p, jp, x, old_app, front(jx))
                != rules_admitting(p, jp, x, new_app, front(jx));
            let egress_changes = egress_admits(x, old_app) != egress_admits(x, new_app);
            if ingress_changes || egress_changes {
                pods += 1;
                groups.insert((p, app(jp)));
            }
        }
    }
    Expected {
        pods,
        groups: groups.len(),
    }
}

/// Entries of one policy set by (direction, family, address, prefix length), each
/// rule as (protocol, first port, last port, the policy rule its id names).
type SetMeaning = BTreeMap<(u8, u8, [u8; 16], u32), Vec<(u8, u16, u16, String)>>;

/// What the maps mean, free of the planner's ids (policy sets, rule-list ids,
/// generations, policy ids): per pod, its record with policy set and generation
/// zeroed, and the entries of its set. Also checks that nothing is orphaned: every
/// entry belongs to a set some pod uses and every rule list is referenced. Returns
/// the meaning and the number of distinct policy sets.
fn meaning(
    maps: &MapModel,
    table: &PolicyTable,
) -> (BTreeMap<PodRef, (PodRecord, SetMeaning)>, usize) {
    let used_sets: BTreeSet<u32> = maps.pods.values().map(|r| r.policy_set).collect();
    let mut sets: BTreeMap<u32, SetMeaning> = BTreeMap::new();
    let mut used_lists = BTreeSet::new();
    for ((key, len), list_id) in &maps.entries {
        let set = u32::from_be(key.policy_set_be);
        assert!(
            used_sets.contains(&set),
            "entry {key:?}/{len} of an unused policy set {set}"
        );
        let list = maps.lists.get(list_id).expect("entry's rule list exists");
        used_lists.insert(*list_id);
        let rules = list.rules[..list.len as usize]
            .iter()
            .map(|r| {
                (
                    r.protocol,
                    r.port_min,
                    r.port_max,
                    table.describe(r.policy_id),
                )
            })
            .collect();
        sets.entry(set)
            .or_default()
            .insert((key.direction, key.family, key.addr, *len), rules);
    }
    let unused: Vec<&u32> = maps
        .lists
        .keys()
        .filter(|id| !used_lists.contains(id))
        .collect();
    assert!(unused.is_empty(), "rule lists no entry uses: {unused:?}");
    let pods = maps
        .pods
        .iter()
        .map(|(pod, record)| {
            let bare = PodRecord {
                policy_set: 0,
                generation: 0,
                ..*record
            };
            let entries = sets.get(&record.policy_set).cloned().unwrap_or_default();
            (pod.clone(), (bare, entries))
        })
        .collect();
    (pods, sets.len())
}

/// The meaning of the maps a fresh resolver and planner write for `state`.
fn fresh_meaning(
    state: &ClusterState,
    options: &ResolveOptions,
) -> (BTreeMap<PodRef, (PodRecord, SetMeaning)>, usize) {
    let resolved = Resolver::new().resolve(state, options);
    let mut maps = MapModel::new();
    maps.apply(&Planner::new().plan(&resolved))
        .expect("fresh ops apply in order");
    meaning(&maps, &resolved.table)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let quick = std::env::var("NETPOL_BENCH_QUICK").is_ok_and(|v| v == "1");
    let (namespaces, rounds) = if quick {
        (QUICK_NAMESPACES, QUICK_ROUNDS)
    } else {
        (NAMESPACES, ROUNDS)
    };
    let mut state = cluster(namespaces);
    let local = state
        .pods
        .values()
        .filter(|p| p.node_name.as_deref() == Some(NODE))
        .count();
    let generated_local = (0..namespaces)
        .flat_map(|i| (0..PODS_PER_NAMESPACE).map(move |j| (i, j)))
        .filter(|&(i, j)| is_local(i, j))
        .count();
    assert_eq!(
        (state.pods.len(), state.policies.len(), local),
        (
            namespaces * PODS_PER_NAMESPACE,
            namespaces * POLICIES_PER_NAMESPACE,
            generated_local
        )
    );
    if !quick {
        assert_eq!(
            (state.pods.len(), state.policies.len(), local),
            (5000, 1000, 110)
        );
    }
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
    assert!(resolved.unenforceable.is_empty());
    // The premise of `expected_writes`: one policy set per (namespace, app) group of
    // local pods, shared by the pods of the group.
    let mut set_of_group = BTreeMap::new();
    for (pod, record) in &maps.pods {
        let i: usize = pod.namespace["ns-".len()..]
            .parse()
            .expect("generated namespace");
        let j: usize = pod.name["pod-".len()..]
            .parse()
            .expect("generated pod name");
        assert!(is_local(i, j));
        let set = *set_of_group.entry((i, app(j))).or_insert(record.policy_set);
        assert_eq!(
            set, record.policy_set,
            "{pod}: pods of one group share a set"
        );
    }
    let distinct_sets: BTreeSet<u32> = set_of_group.values().copied().collect();
    assert_eq!(maps.pods.len(), local);
    assert_eq!(
        distinct_sets.len(),
        set_of_group.len(),
        "each group has a set of its own"
    );

    // The change: remote pod ns-07/pod-10 (front, app-0) becomes app-1. Quick mode
    // takes ns-00/pod-10 (also front, app-0): with 10 namespaces that one moves sets
    // shared by two pods (ns-00 app-0 and ns-09 app-0).
    let (x, jx) = if quick { (0, 10) } else { (7, 10) };
    assert!(!is_local(x, jx));
    assert_eq!((app(jx), front(jx)), (0, true));
    let key = ObjectRef::new(ns_name(x), format!("pod-{jx:02}"));
    let want = expected_writes(namespaces, x, jx, app(jx), 1);
    let expected = want.writes();
    assert!(want.pods > 0);
    // What the maps must mean after the change and after the revert.
    let unchanged = fresh_meaning(&state, &options);
    let changed = {
        let mut moved = state.clone();
        moved
            .pods
            .get_mut(&key)
            .expect("generated pod")
            .labels
            .insert("app".into(), "app-1".into());
        fresh_meaning(&moved, &options)
    };
    assert!(
        meaning(&maps, &resolved.table) == unchanged,
        "the initial maps differ from a fresh plan's"
    );
    let count_writes = |ops: &[MapOp]| {
        let entry_writes = ops
            .iter()
            .filter(|op| matches!(op, MapOp::PutEntry { .. } | MapOp::DeleteEntry { .. }))
            .count();
        let record_writes = ops
            .iter()
            .filter(|op| matches!(op, MapOp::PutPod { .. }))
            .count();
        (entry_writes, record_writes)
    };
    let mut samples = Vec::new();
    let mut update_writes = 0;
    for round in 0..rounds {
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
        let (entry_writes, record_writes) = count_writes(&ops);
        assert_eq!(
            (entry_writes, record_writes, ops.len()),
            (want.groups, want.pods, expected),
            "round {round}: (entry writes, pod records, all writes); want one entry write per \
             (namespace, app) group and one record per affected pod"
        );
        assert!(
            meaning(&maps, &resolved.table) == changed,
            "round {round}: the maps after the change differ from a fresh plan's"
        );
        update_writes = ops.len();
        // Back, untimed, for the next round.
        state
            .pods
            .get_mut(&key)
            .expect("generated pod")
            .labels
            .insert("app".into(), "app-0".into());
        let resolved = resolver.resolve(&state, &options);
        let back = planner.plan(&resolved);
        assert_eq!(
            count_writes(&back),
            (want.groups, want.pods),
            "round {round}: revert"
        );
        assert_eq!(back.len(), expected);
        maps.apply(&back).expect("revert ops apply in order");
        assert!(
            meaning(&maps, &resolved.table) == unchanged,
            "round {round}: the maps after the revert differ from a fresh plan's"
        );
    }
    samples.sort_by(f64::total_cmp);
    let update_ms = samples[samples.len() / 2];
    println!(
        "label change of {key}: {update_writes} writes (expected {expected}: {} entries, one per (namespace, app) group, + {} pod records), median {update_ms:.3} ms (min {:.3}) of {} rounds; update/resolve ratio {:.4}; maps checked against a fresh plan after every change",
        want.groups,
        want.pods,
        samples[0],
        samples.len(),
        update_ms / resolve_ms
    );
    let except_entries = if quick { QUICK_EXCEPT } else { EXCEPT };
    let except_ms = except_case(except_entries, &options);
    println!(
        "a policy excepting {except_entries} /32s from a /8: resolve + plan {except_ms:.1} ms"
    );
    if quick {
        println!("quick mode: {namespaces} namespaces, {rounds} rounds; speed targets not checked");
    } else {
        println!(
            "targets: resolve_ms <= 1000 ({}), update_ms <= 10 ({}), except_200k_ms <= 1000 ({})",
            resolve_ms <= 1000.0,
            update_ms <= 10.0,
            except_ms <= 1000.0
        );
    }
    println!(
        "{{\"bench\":\"policy\",\"pods\":{},\"policies\":{},\"resolve_ms\":{resolve_ms:.1},\"entries\":{entries},\"update_ms\":{update_ms:.3},\"update_writes\":{update_writes},\"except_200k_ms\":{except_ms:.1}{}}}",
        state.pods.len(),
        state.policies.len(),
        if quick { ",\"quick\":true" } else { "" }
    );
}

/// `except` entries of the large-except case (quick mode: `QUICK_EXCEPT`).
const EXCEPT: u32 = 200_000;
const QUICK_EXCEPT: u32 = 20_000;

/// One local pod selected by a policy admitting 10.0.0.0/8 on TCP 80 except `count`
/// /32s: resolve and plan it from scratch; checks that every hole denies and the /8
/// allows. Returns milliseconds.
fn except_case(count: u32, options: &ResolveOptions) -> f64 {
    let holes: Vec<ipnet::IpNet> = (0..count)
        .map(|i| ipnet::IpNet::new(Ipv4Addr::from(0x0a00_0000 + i * 11).into(), 32).unwrap())
        .collect();
    let mut state = ClusterState::default();
    state.upsert_namespace(Namespace {
        name: "big".into(),
        labels: BTreeMap::new(),
    });
    let mut web = pod(0, 0);
    web.namespace = "big".into();
    web.node_name = Some(NODE.into());
    state.upsert_pod(web);
    state.upsert_policy(NetworkPolicy {
        namespace: "big".into(),
        name: "except-many".into(),
        spec: PolicySpec {
            pod_selector: LabelSelector::everything(),
            subject_pods: None,
            ingress: vec![PolicyRule {
                peers: vec![Peer::IpBlock(IpBlock {
                    cidr: "10.0.0.0/8".parse().unwrap(),
                    except: holes.clone(),
                })],
                ports: vec![port(Protocol::Tcp, PortRef::Number(80))],
            }],
            egress: Vec::new(),
            policy_types: None,
            audit: false,
        },
    });
    let started = Instant::now();
    let resolved = Resolver::new().resolve(&state, options);
    let ops = Planner::new().plan(&resolved);
    let took = ms(started);
    let pod = resolved.pods.values().next().expect("the local pod");
    let entries = &pod.ingress.entries;
    assert_eq!(
        entries.len(),
        count as usize + 1 + options.node_addresses.len(),
        "the /8, every hole and the node's own addresses"
    );
    assert!(
        holes.iter().all(|h| entries[h].is_empty()),
        "every hole denies"
    );
    assert!(!entries[&"10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()].is_empty());
    assert!(ops.len() > count as usize, "every entry is written");
    took
}
