//! Incremental updates: the planner's ops, applied to the in-memory maps, move the
//! datapath from the old to the new policy with every intermediate state allowing
//! only what the old or the new policy allows, leave nothing behind on deletion,
//! and write only what changed.

mod common;

use common::{Family, Probe, cluster, datapath_allows, options, oracle, probes};
use datapath_common::{MAX_RULES_PER_LIST, PROTO_TCP, PROTO_UDP, STATE_DEFAULT_DENY};
use policy::{
    ClusterState, Direction, EnforcingMode, MapModel, MapOp, ObjectRef, Planner, PodState,
    Resolver, initial_pod_record, load_str,
};

fn p(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n---\n"
    )
}

fn set_policies(state: &mut ClusterState, family: Family, policies: &str) {
    state.policies = load_str("update.yaml", &family.render(policies))
        .expect("valid manifests")
        .policies;
}

/// Keeps a resolver, a planner and the maps across steps, as the agent does.
struct Node {
    family: Family,
    mode: EnforcingMode,
    resolver: Resolver,
    planner: Planner,
    maps: MapModel,
}

impl Node {
    fn new(family: Family, mode: EnforcingMode) -> Self {
        Self {
            family,
            mode,
            resolver: Resolver::new(),
            planner: Planner::new(),
            maps: MapModel::new(),
        }
    }

    fn plan(&mut self, state: &ClusterState) -> Vec<MapOp> {
        let resolved = self
            .resolver
            .resolve(state, &options(self.family, self.mode));
        self.planner.plan(&resolved)
    }

    /// Apply the ops for `new` one at a time; after each, every probe must be allowed
    /// or denied as under `old` or as under `new`. Probes of pods that are new are only
    /// checked at the end (before its first record the pod has no program attached).
    fn update_checking_every_step(&mut self, old: &ClusterState, new: &ClusterState) -> Vec<MapOp> {
        let ops = self.plan(new);
        let probe_set = probes(new);
        let before: Vec<Option<bool>> = probe_set
            .iter()
            .map(|pr| {
                let existed = old.pods.contains_key(&pr.from) && old.pods.contains_key(&pr.to);
                existed.then(|| oracle::allows(old, self.mode, pr))
            })
            .collect();
        let after: Vec<bool> = probe_set
            .iter()
            .map(|pr| oracle::allows(new, self.mode, pr))
            .collect();
        for (i, op) in ops.iter().enumerate() {
            self.maps.apply_one(i, op).expect("ops apply in order");
            for (k, probe) in probe_set.iter().enumerate() {
                let now = datapath_allows(&self.maps, new, probe);
                assert!(
                    before[k].is_none_or(|b| now == b) || now == after[k],
                    "after op {i} {op:?}: {probe:?} is {now}, old {:?} new {}",
                    before[k],
                    after[k]
                );
            }
        }
        for (k, probe) in probe_set.iter().enumerate() {
            assert_eq!(
                datapath_allows(&self.maps, new, probe),
                after[k],
                "{probe:?} after the update"
            );
        }
        ops
    }
}

const FROM_Y: &str =
    "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}";
const FROM_Z_PORT_81: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{port: 81}]}]}";

#[test]
fn policy_update_passes_only_through_old_or_new_states() {
    for family in [Family::V4, Family::V6] {
        let mut node = Node::new(family, EnforcingMode::Standard);
        let mut old = cluster(family);
        set_policies(&mut old, family, &p("x", "pol", FROM_Y));
        let ops = node.plan(&old);
        node.maps.apply(&ops).expect("ops apply");
        let mut new = old.clone();
        set_policies(&mut new, family, &[p("x", "pol", FROM_Z_PORT_81), p("y", "cidr", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: ALL_PODS, except: [NET_X]}}]}]}")].concat());
        node.update_checking_every_step(&old, &new);
        // And back again.
        node.update_checking_every_step(&new, &old);
    }
}

#[test]
fn policy_ids_stay_the_same_for_unchanged_policies() {
    let family = Family::V4;
    let mut node = Node::new(family, EnforcingMode::Standard);
    let mut state = cluster(family);
    set_policies(&mut state, family, &p("x", "keep", FROM_Y));
    let first = node.resolver.resolve(&state, &options(family, node.mode));
    set_policies(
        &mut state,
        family,
        &[p("a", "other", FROM_Y), p("x", "keep", FROM_Y)].concat(),
    );
    let second = node.resolver.resolve(&state, &options(family, node.mode));
    let id_of = |r: &policy::Resolved| {
        r.table
            .iter()
            .find(|(_, rule)| rule.policy.name == "keep")
            .map(|(id, _)| id)
    };
    assert!(id_of(&first).is_some());
    assert_eq!(id_of(&first), id_of(&second));
    let id = id_of(&second).expect("keep has an id");
    assert_eq!(second.table.describe(id), "x/keep ingress rule 0");
}

#[test]
fn deleting_every_policy_and_pod_leaves_nothing_behind() {
    for mode in [EnforcingMode::Standard, EnforcingMode::Strict] {
        let family = Family::V6;
        let mut node = Node::new(family, mode);
        let mut state = cluster(family);
        set_policies(
            &mut state,
            family,
            &[p("x", "pol", FROM_Y), p("z", "pol", FROM_Z_PORT_81)].concat(),
        );
        let ops = node.plan(&state);
        node.maps.apply(&ops).expect("ops apply");
        assert!(!node.maps.entries.is_empty());

        let old = state.clone();
        state.policies.clear();
        node.update_checking_every_step(&old, &state);
        if mode == EnforcingMode::Standard {
            assert!(
                node.maps.entries.is_empty(),
                "no entries once no policy selects anything"
            );
            assert!(node.maps.lists.is_empty(), "no rule lists either");
        }

        state.pods.clear();
        let ops = node.plan(&state);
        node.maps.apply(&ops).expect("ops apply");
        assert!(
            node.maps.pods.is_empty() && node.maps.entries.is_empty() && node.maps.lists.is_empty(),
            "{mode:?}: {:?}",
            node.maps
        );
        assert_eq!(node.planner.rule_list_count(), 0);
    }
}

#[test]
fn an_unchanged_state_produces_no_ops() {
    let family = Family::V4;
    let mut node = Node::new(family, EnforcingMode::Standard);
    let mut state = cluster(family);
    set_policies(&mut state, family, &p("x", "pol", FROM_Y));
    assert!(!node.plan(&state).is_empty());
    assert_eq!(node.plan(&state), Vec::<MapOp>::new());
    // A change to a pod no local rule cares about writes nothing either.
    state
        .pods
        .get_mut(&ObjectRef::new("z", "b"))
        .expect("fixture pod")
        .labels
        .insert("unrelated".into(), "1".into());
    assert_eq!(node.plan(&state), Vec::<MapOp>::new());
}

#[test]
fn a_peer_label_change_writes_one_entry_per_shared_set_and_one_record_per_affected_pod() {
    let family = Family::V4;
    let mut node = Node::new(family, EnforcingMode::Standard);
    let mut state = cluster(family);
    // x/* admit pod=b from any namespace.
    set_policies(
        &mut state,
        family,
        &p(
            "x",
            "b-only",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}]}]}",
        ),
    );
    let ops = node.plan(&state);
    node.maps.apply(&ops).expect("ops apply");
    let old = state.clone();
    // z/c becomes a "b": the three x pods, which share one policy set, gain one
    // /32 whose rule list already exists (the one the other b pods use).
    state
        .pods
        .get_mut(&ObjectRef::new("z", "c"))
        .expect("fixture pod")
        .labels
        .insert("pod".into(), "b".into());
    let ops = node.update_checking_every_step(&old, &state);
    let puts = ops
        .iter()
        .filter(|op| matches!(op, MapOp::PutEntry { .. }))
        .count();
    let records = ops
        .iter()
        .filter(|op| matches!(op, MapOp::PutPod { .. }))
        .count();
    assert_eq!((puts, records, ops.len()), (1, 3, 4), "{ops:#?}");
    let record = node.maps.pods[&ObjectRef::new("x", "a")];
    assert_eq!(
        record.generation, 2,
        "conntrack must re-evaluate after the change"
    );
}

#[test]
fn standard_mode_new_pod_is_allowed_until_its_policies_are_programmed() {
    let family = Family::V4;
    let mut node = Node::new(family, EnforcingMode::Standard);
    let mut state = cluster(family);
    set_policies(
        &mut state,
        family,
        &p("x", "deny", "{podSelector: {}, policyTypes: [Ingress]}"),
    );
    let xa = ObjectRef::new("x", "a");
    let full = state.clone();
    state.pods.remove(&xa);
    let ops = node.plan(&state);
    node.maps.apply(&ops).expect("ops apply");
    // The pod's interface appears: its initial record allows.
    node.maps
        .apply(&[MapOp::PutPod {
            pod: xa.clone(),
            record: initial_pod_record(EnforcingMode::Standard),
        }])
        .expect("initial record");
    let probe = Probe {
        from: ObjectRef::new("y", "a"),
        to: xa.clone(),
        protocol: PROTO_TCP,
        port: 80,
    };
    assert!(datapath_allows(&node.maps, &full, &probe));
    let ops = node.plan(&full);
    node.maps.apply(&ops).expect("ops apply");
    assert!(!datapath_allows(&node.maps, &full, &probe));
}

#[test]
fn strict_mode_new_pod_is_denied_until_policies_allow() {
    let family = Family::V4;
    let mut node = Node::new(family, EnforcingMode::Strict);
    let mut state = cluster(family);
    set_policies(
        &mut state,
        family,
        &[p(
            "x",
            "open",
            "{podSelector: {}, policyTypes: [Ingress, Egress], ingress: [{}], egress: [{}]}",
        )]
        .concat(),
    );
    let xa = ObjectRef::new("x", "a");
    let xb = ObjectRef::new("x", "b");
    let full = state.clone();
    state.pods.remove(&xa);
    let ops = node.plan(&state);
    node.maps.apply(&ops).expect("ops apply");
    // Written before the pod has an address.
    let initial = initial_pod_record(EnforcingMode::Strict);
    assert_eq!(
        (
            initial.ingress_state,
            initial.egress_state,
            initial.addr_flags
        ),
        (STATE_DEFAULT_DENY, STATE_DEFAULT_DENY, 0)
    );
    node.maps
        .apply(&[MapOp::PutPod {
            pod: xa.clone(),
            record: initial,
        }])
        .expect("initial record");
    let probe = Probe {
        from: xb.clone(),
        to: xa.clone(),
        protocol: PROTO_UDP,
        port: 81,
    };
    assert!(!datapath_allows(&node.maps, &full, &probe));
    assert!(
        !node
            .maps
            .decide(&xa, Direction::Egress, family.node_ip(), PROTO_TCP, 80)
            .is_accept()
    );
    let ops = node.plan(&full);
    node.maps.apply(&ops).expect("ops apply");
    assert!(datapath_allows(&node.maps, &full, &probe));
    // A pod no policy selects stays denied in strict mode.
    let ya_to_za = Probe {
        from: ObjectRef::new("y", "a"),
        to: ObjectRef::new("z", "a"),
        protocol: PROTO_TCP,
        port: 80,
    };
    assert!(!datapath_allows(&node.maps, &full, &ya_to_za));
}

#[test]
fn more_rules_than_a_list_holds_fail_closed_and_name_the_rule() {
    let family = Family::V4;
    let mut node = Node::new(family, EnforcingMode::Standard);
    let mut state = cluster(family);
    let ports: Vec<String> = (0..MAX_RULES_PER_LIST + 6)
        .map(|i| format!("{{port: {}}}", 1000 + 2 * i))
        .collect();
    set_policies(
        &mut state,
        family,
        &[
            p("x", "small", FROM_Y),
            p(
                "x",
                "many-ports",
                &format!(
                    "{{podSelector: {{matchLabels: {{pod: a}}}}, ingress: [{{ports: [{}]}}]}}",
                    ports.join(", ")
                ),
            ),
        ]
        .concat(),
    );
    let resolved = node.resolver.resolve(&state, &options(family, node.mode));
    let xa = ObjectRef::new("x", "a");
    assert_eq!(resolved.pods[&xa].ingress.state, PodState::DefaultDeny);
    assert!(resolved.pods[&xa].ingress.entries.is_empty());
    assert_eq!(
        resolved.pods[&ObjectRef::new("x", "b")].ingress.state,
        PodState::PoliciesApplied,
        "other pods are not affected"
    );
    let report = &resolved.unenforceable;
    assert_eq!(report.len(), 1);
    let rule = report[0].rule.as_ref().expect("a policy rule overflowed");
    assert_eq!(
        (rule.policy.name.as_str(), rule.direction, rule.rule_index),
        ("many-ports", Direction::Ingress, 0)
    );
    let text = report[0].to_string();
    assert!(
        text.contains("pod x/a ingress")
            && text.contains("x/many-ports ingress rule 0")
            && text.contains("denying"),
        "{text}"
    );
    let ops = node.planner.plan(&resolved);
    node.maps.apply(&ops).expect("ops apply");
    let probe = Probe {
        from: ObjectRef::new("y", "a"),
        to: xa,
        protocol: PROTO_TCP,
        port: 1000,
    };
    assert!(!datapath_allows(&node.maps, &state, &probe), "fails closed");
}

#[test]
fn a_sequence_of_cluster_changes_passes_only_through_old_or_new_states() {
    for (family, mode) in [
        (Family::V4, EnforcingMode::Standard),
        (Family::V6, EnforcingMode::Strict),
    ] {
        let mut node = Node::new(family, mode);
        let mut state = cluster(family);
        set_policies(
            &mut state,
            family,
            &[
                p("x", "from-y", FROM_Y),
                p("y", "egress", "{podSelector: {}, policyTypes: [Egress], egress: [{to: [{namespaceSelector: {matchLabels: {ns: x}}}], ports: [{port: serve-80-tcp}]}]}"),
                p("z", "cidr", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: ALL_PODS, except: [NET_Y]}}]}]}"),
            ]
            .concat(),
        );
        let ops = node.plan(&state);
        node.maps.apply(&ops).expect("ops apply");
        let steps: [fn(&mut ClusterState); 6] = [
            |s| {
                s.pods
                    .get_mut(&ObjectRef::new("y", "a"))
                    .expect("pod")
                    .labels
                    .insert("pod".into(), "c".into());
            },
            |s| {
                s.namespaces
                    .get_mut("z")
                    .expect("ns")
                    .labels
                    .insert("ns".into(), "y".into());
            },
            |s| {
                s.pods.remove(&ObjectRef::new("x", "b"));
            },
            |s| {
                // A new pod takes the address x/b left behind (pods keep their
                // address for life; reuse comes with a new pod).
                let mut reused = s.pods[&ObjectRef::new("x", "a")].clone();
                reused.name = "b".into();
                reused.ips = vec![match reused.ips[0] {
                    std::net::IpAddr::V4(a) => {
                        std::net::IpAddr::from([a.octets()[0], a.octets()[1], a.octets()[2], 2])
                    }
                    std::net::IpAddr::V6(a) => {
                        let mut seg = a.segments();
                        seg[7] = 2;
                        std::net::IpAddr::from(seg)
                    }
                }];
                s.upsert_pod(reused);
            },
            |s| {
                s.pods
                    .get_mut(&ObjectRef::new("x", "a"))
                    .expect("pod")
                    .ports
                    .clear();
            },
            |s| {
                s.policies.retain(|k, _| k.name != "from-y");
            },
        ];
        for step in steps {
            let old = state.clone();
            step(&mut state);
            node.update_checking_every_step(&old, &state);
        }
    }
}

#[test]
fn a_peer_that_leaves_and_comes_back_is_admitted_again() {
    let family = Family::V4;
    let mut node = Node::new(family, EnforcingMode::Standard);
    let mut state = cluster(family);
    set_policies(&mut state, family, &p("x", "from-y", FROM_Y));
    let ops = node.plan(&state);
    node.maps.apply(&ops).expect("ops apply");
    let ya = ObjectRef::new("y", "a");
    let probe = Probe {
        from: ya.clone(),
        to: ObjectRef::new("x", "a"),
        protocol: PROTO_TCP,
        port: 80,
    };
    let full = state.clone();
    let pod = state.pods.remove(&ya).expect("fixture pod");
    node.update_checking_every_step(&full, &state);
    assert!(
        !node
            .maps
            .decide(&probe.to, Direction::Ingress, pod.ips[0], PROTO_TCP, 80)
            .is_accept()
    );
    let without = state.clone();
    state.upsert_pod(pod);
    node.update_checking_every_step(&without, &state);
    assert!(datapath_allows(&node.maps, &state, &probe));
}

#[test]
fn a_remote_change_reuses_the_results_of_pods_it_cannot_affect() {
    let family = Family::V4;
    let mut node = Node::new(family, EnforcingMode::Standard);
    let mut state = cluster(family);
    set_policies(
        &mut state,
        family,
        &[
            p("x", "from-y", FROM_Y),
            p(
                "z",
                "same-ns",
                "{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}",
            ),
        ]
        .concat(),
    );
    let opts = options(family, node.mode);
    let before = node.resolver.resolve(&state, &opts);
    state
        .pods
        .get_mut(&ObjectRef::new("z", "b"))
        .expect("fixture pod")
        .labels
        .insert("pod".into(), "q".into());
    let after = node.resolver.resolve(&state, &opts);
    for (pod, result) in &after.pods {
        let reused = std::sync::Arc::ptr_eq(result, &before.pods[pod]);
        // Only z/b itself may be recomputed; its rules did not change, so even its
        // result is the same value.
        assert_eq!(**result, *before.pods[pod], "{pod}");
        if pod.namespace != "z" {
            assert!(reused, "{pod} was recomputed for an unrelated change");
        }
    }
    assert_eq!(
        after,
        Resolver::new().resolve(&state, &opts),
        "same as from scratch"
    );
}

#[test]
fn pods_with_equal_entries_share_one_policy_set_until_their_rules_part() {
    let family = Family::V4;
    let mut node = Node::new(family, EnforcingMode::Standard);
    let mut state = cluster(family);
    // Every x pod admits the same peers: one set of entries for all of them.
    set_policies(&mut state, family, &p("x", "pol", FROM_Y));
    let ops = node.plan(&state);
    node.maps.apply(&ops).expect("ops apply");
    let x_sets = |maps: &MapModel| -> std::collections::BTreeSet<u32> {
        maps.pods
            .iter()
            .filter(|(pod, _)| pod.namespace == "x")
            .map(|(_, r)| r.policy_set)
            .collect()
    };
    let x_pods = node.maps.pods.keys().filter(|p| p.namespace == "x").count();
    assert!(x_pods > 1, "the fixture has several x pods");
    assert_eq!(x_sets(&node.maps).len(), 1, "one set for the x pods");
    let entries_shared = node.maps.entries.len();

    // x/a alone gets an extra rule: it moves to a set of its own, the others stay.
    let old = state.clone();
    set_policies(
        &mut state,
        family,
        &format!(
            "{}\n---\n{}",
            p("x", "pol", FROM_Y),
            p("x", "a-81", FROM_Z_PORT_81)
        ),
    );
    node.update_checking_every_step(&old, &state);
    assert_eq!(x_sets(&node.maps).len(), 2);
    assert!(node.maps.entries.len() > entries_shared);

    // Back as before: x/a rejoins the shared set and its own set's entries go.
    let old = state.clone();
    set_policies(&mut state, family, &p("x", "pol", FROM_Y));
    node.update_checking_every_step(&old, &state);
    assert_eq!(x_sets(&node.maps).len(), 1);
    assert_eq!(node.maps.entries.len(), entries_shared);
}
