//! The connectivity truth table: for every scenario, in IPv4 and IPv6, the matrix
//! read from this crate's datapath maps (resolve -> plan -> in-memory maps -> the
//! kernel's lookup and decision functions) equals the matrix of a plain evaluator
//! written from the Kubernetes API reference; some matrices are also checked against
//! literal, hand-written grids.

mod common;

use common::{
    Family, Probe, cluster, controller, datapath_allows, grid, literal, options, oracle, probes,
};
use datapath_common::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use policy::{
    ClusterState, EnforcingMode, MapModel, ObjectRef, Planner, PodPhase, Resolver, load_str,
};

const STANDARD: EnforcingMode = EnforcingMode::Standard;
const STRICT: EnforcingMode = EnforcingMode::Strict;

/// One NetworkPolicy document.
fn p(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n---\n"
    )
}

fn with_policies(mut state: ClusterState, family: Family, policies: &str) -> ClusterState {
    let loaded =
        load_str("scenario.yaml", &family.render(policies)).expect("scenario manifests are valid");
    state.policies = loaded.policies;
    state
}

/// Program `state` from scratch and return the maps.
fn program(state: &ClusterState, family: Family, mode: EnforcingMode) -> MapModel {
    let resolved = Resolver::new().resolve(state, &options(family, mode));
    let ops = Planner::new().plan(&resolved);
    let mut maps = MapModel::new();
    maps.apply(&ops).expect("ops apply in order");
    maps
}

fn mismatches(state: &ClusterState, maps: &MapModel, mode: EnforcingMode) -> Vec<String> {
    probes(state)
        .into_iter()
        .filter_map(|probe| {
            let want = oracle::allows(state, mode, &probe);
            let got = datapath_allows(maps, state, &probe);
            (want != got).then(|| format!("{probe:?}: datapath {got}, kubernetes {want}"))
        })
        .collect()
}

/// Probes whose verdict differs when the same policies reach the agent as the
/// PolicyEndpoints the EKS controller would derive from them (`common::controller`).
fn policy_endpoint_differences(
    state: &ClusterState,
    maps: &MapModel,
    family: Family,
    mode: EnforcingMode,
) -> Vec<String> {
    let via = controller::via_policy_endpoints(state, common::NODE, family.node_ip());
    let pe_maps = program(&via, family, mode);
    probes(state)
        .into_iter()
        .filter_map(|probe| {
            let want = datapath_allows(maps, state, &probe);
            let got = datapath_allows(&pe_maps, &via, &probe);
            (want != got).then(|| format!("{probe:?}: PolicyEndpoints {got}, NetworkPolicy {want}"))
        })
        .collect()
}

/// What a scenario gives when its policies reach the agent as PolicyEndpoints.
#[derive(Clone, Copy, Debug)]
enum ViaEndpoints {
    /// The same verdict on every probe.
    Same,
    /// The controller's derivation loses what the policy says (named ports it cannot
    /// resolve for CIDR and all-peer rules or resolves over all selected pods at once,
    /// finished pods kept as peers): exactly `count` probes differ in each family,
    /// every one allowed (`pe_allows`) or denied where the NetworkPolicy path does the
    /// opposite. The agent cannot recover what the objects do not carry.
    Differs { count: usize, pe_allows: bool },
}

/// Run a scenario in both families; return the IPv4 state and maps for literal checks.
fn check(
    policies: &str,
    tweak: fn(&mut ClusterState),
    mode: EnforcingMode,
) -> (ClusterState, MapModel) {
    check_via(policies, tweak, mode, ViaEndpoints::Same)
}

/// `check`, with what the PolicyEndpoint path gives.
fn check_via(
    policies: &str,
    tweak: fn(&mut ClusterState),
    mode: EnforcingMode,
    via: ViaEndpoints,
) -> (ClusterState, MapModel) {
    let mut first = None;
    for family in [Family::V4, Family::V6] {
        let mut state = cluster(family);
        tweak(&mut state);
        let state = with_policies(state, family, policies);
        let maps = program(&state, family, mode);
        let bad = mismatches(&state, &maps, mode);
        assert!(
            bad.is_empty(),
            "{family:?}: {} mismatches:\n{}",
            bad.len(),
            bad.join("\n")
        );
        let differ = policy_endpoint_differences(&state, &maps, family, mode);
        let as_expected = match via {
            ViaEndpoints::Same => differ.is_empty(),
            ViaEndpoints::Differs { count, pe_allows } => {
                differ.len() == count
                    && differ
                        .iter()
                        .all(|d| d.contains(&format!("PolicyEndpoints {pe_allows},")))
            }
        };
        assert!(
            as_expected,
            "{family:?}: through PolicyEndpoints, {} verdicts differ (expected {via:?}):\n{}",
            differ.len(),
            differ.join("\n")
        );
        first.get_or_insert((state, maps));
    }
    first.expect("two families ran")
}

fn no_tweak(_: &mut ClusterState) {}

fn assert_grid(state: &ClusterState, maps: &MapModel, protocol: u8, port: u16, expected: &str) {
    let got = grid(
        |probe: &Probe| datapath_allows(maps, state, probe),
        protocol,
        port,
    );
    assert_eq!(
        got,
        literal(expected),
        "datapath grid for protocol {protocol} port {port}"
    );
}

fn pod_mut<'a>(state: &'a mut ClusterState, ns: &str, name: &str) -> &'a mut policy::Pod {
    state
        .pods
        .get_mut(&ObjectRef::new(ns, name))
        .expect("fixture pod")
}

#[test]
fn no_policies_allow_everything() {
    let (state, maps) = check("", no_tweak, STANDARD);
    assert!(
        probes(&state)
            .iter()
            .all(|probe| datapath_allows(&maps, &state, probe))
    );
}

#[test]
fn default_deny_ingress_blocks_everything_into_the_namespace() {
    let (state, maps) = check(
        &p("x", "deny", "{podSelector: {}, policyTypes: [Ingress]}"),
        no_tweak,
        STANDARD,
    );
    for (protocol, port) in [(PROTO_TCP, 80), (PROTO_UDP, 81)] {
        assert_grid(
            &state,
            &maps,
            protocol,
            port,
            "
            xa 1.. 111 111
            xb .1. 111 111
            xc ..1 111 111
            ya ... 111 111
            yb ... 111 111
            yc ... 111 111
            za ... 111 111
            zb ... 111 111
            zc ... 111 111",
        );
    }
}

#[test]
fn default_deny_egress_blocks_everything_out_of_the_namespace() {
    let (state, maps) = check(
        &p("x", "deny", "{podSelector: {}, policyTypes: [Egress]}"),
        no_tweak,
        STANDARD,
    );
    assert_grid(
        &state,
        &maps,
        PROTO_SCTP,
        80,
        "
        xa 1.. ... ...
        xb .1. ... ...
        xc ..1 ... ...
        ya 111 111 111
        yb 111 111 111
        yc 111 111 111
        za 111 111 111
        zb 111 111 111
        zc 111 111 111",
    );
}

#[test]
fn default_deny_both_directions() {
    check(
        &p(
            "y",
            "deny",
            "{podSelector: {}, policyTypes: [Ingress, Egress]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn allow_from_same_namespace_only() {
    let (state, maps) = check(
        &p(
            "x",
            "same-ns",
            "{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
    assert_grid(
        &state,
        &maps,
        PROTO_TCP,
        81,
        "
        xa 111 111 111
        xb 111 111 111
        xc 111 111 111
        ya ... 111 111
        yb ... 111 111
        yc ... 111 111
        za ... 111 111
        zb ... 111 111
        zc ... 111 111",
    );
}

#[test]
fn allow_from_namespace_by_label() {
    check(
        &p(
            "x",
            "from-y",
            "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn allow_from_namespace_by_its_automatic_name_label() {
    check(
        &p(
            "x",
            "from-z",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn match_expressions_in_and_not_in() {
    check(
        &p(
            "x",
            "expr",
            "{podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}, ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [y]}]}, podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [a]}]}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn match_expressions_exists_and_does_not_exist() {
    check(
        &p(
            "x",
            "expr",
            "{podSelector: {matchExpressions: [{key: role, operator: Exists}]}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: role, operator: DoesNotExist}]}}]}]}",
        ),
        |s| {
            for (ns, pod) in [("x", "b"), ("y", "b")] {
                pod_mut(s, ns, pod)
                    .labels
                    .insert("role".into(), "db".into());
            }
        },
        STANDARD,
    );
}

#[test]
fn combined_pod_and_namespace_selector_is_an_and() {
    let (state, maps) = check(
        &p(
            "x",
            "and",
            "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
    assert_grid(
        &state,
        &maps,
        PROTO_TCP,
        80,
        "
        xa 111 111 111
        xb .11 111 111
        xc .11 111 111
        ya .11 111 111
        yb 111 111 111
        yc .11 111 111
        za .11 111 111
        zb .11 111 111
        zc .11 111 111",
    );
}

#[test]
fn two_separate_peers_are_an_or() {
    let (state, maps) = check(
        &p(
            "x",
            "or",
            "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
    assert_grid(
        &state,
        &maps,
        PROTO_TCP,
        80,
        "
        xa 111 111 111
        xb 111 111 111
        xc .11 111 111
        ya 111 111 111
        yb 111 111 111
        yc 111 111 111
        za .11 111 111
        zb .11 111 111
        zc .11 111 111",
    );
}

#[test]
fn ip_block_of_a_namespace_range() {
    check(
        &p(
            "x",
            "cidr",
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: NET_Y}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn ip_block_with_except_of_a_namespace() {
    let (state, maps) = check(
        &p(
            "x",
            "except",
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: ALL_PODS, except: [NET_Z]}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
    assert_grid(
        &state,
        &maps,
        PROTO_UDP,
        80,
        "
        xa 111 111 111
        xb 111 111 111
        xc 111 111 111
        ya 111 111 111
        yb 111 111 111
        yc 111 111 111
        za ... 111 111
        zb ... 111 111
        zc ... 111 111",
    );
}

#[test]
fn ip_block_except_a_single_host() {
    check(
        &p(
            "x",
            "except",
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: NET_Y, except: [HOST_Y_A]}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn overlapping_cidrs_from_different_policies_with_except_give_no_false_deny() {
    let policies = [
        p("x", "wide", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: ALL_PODS, except: [NET_Y]}}], ports: [{port: 80}]}]}"),
        p("x", "narrow", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: NET_Y, except: [HOST_Y_B]}}], ports: [{protocol: UDP, port: 81}]}]}"),
        p("x", "host", "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{ipBlock: {cidr: HOST_Y_B}}, {ipBlock: {cidr: NET_Z, except: [HOST_Z_C]}}]}]}"),
    ]
    .concat();
    let (state, maps) = check(&policies, no_tweak, STANDARD);
    // y/b into x/a: the /32 of "host" must carry nothing less than what covers it.
    let probe = |from: (&str, &str), protocol, port| Probe {
        from: ObjectRef::new(from.0, from.1),
        to: ObjectRef::new("x", "a"),
        protocol,
        port,
    };
    assert!(datapath_allows(
        &maps,
        &state,
        &probe(("y", "b"), PROTO_TCP, 80)
    ));
    assert!(datapath_allows(
        &maps,
        &state,
        &probe(("y", "a"), PROTO_UDP, 81)
    ));
    assert!(!datapath_allows(
        &maps,
        &state,
        &probe(("y", "a"), PROTO_TCP, 80)
    ));
    assert!(
        datapath_allows(&maps, &state, &probe(("z", "c"), PROTO_TCP, 80)),
        "z/c is excepted by 'host' but 'wide' still covers it"
    );
    assert!(!datapath_allows(
        &maps,
        &state,
        &probe(("z", "c"), PROTO_UDP, 81)
    ));
}

#[test]
fn pod_selector_peer_inside_an_except_is_still_allowed() {
    let policies = [
        p("x", "cidr", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: ALL_PODS, except: [NET_Y]}}]}]}"),
        p("x", "pods", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: a}}}]}]}"),
    ]
    .concat();
    check(&policies, no_tweak, STANDARD);
}

#[test]
fn named_port_on_ingress() {
    let (state, maps) = check_via(
        &p(
            "x",
            "named",
            "{podSelector: {}, ingress: [{ports: [{port: serve-80-tcp}]}]}",
        ),
        no_tweak,
        STANDARD,
        ViaEndpoints::Differs {
            count: 24,
            pe_allows: false,
        },
    );
    let open = "
        xa 111 111 111
        xb 111 111 111
        xc 111 111 111
        ya 111 111 111
        yb 111 111 111
        yc 111 111 111
        za 111 111 111
        zb 111 111 111
        zc 111 111 111";
    let closed = "
        xa 1.. 111 111
        xb .1. 111 111
        xc ..1 111 111
        ya ... 111 111
        yb ... 111 111
        yc ... 111 111
        za ... 111 111
        zb ... 111 111
        zc ... 111 111";
    assert_grid(&state, &maps, PROTO_TCP, 80, open);
    assert_grid(&state, &maps, PROTO_TCP, 81, closed);
    assert_grid(&state, &maps, PROTO_UDP, 80, closed);
}

#[test]
fn named_udp_port_on_ingress() {
    check_via(
        &p(
            "y",
            "named",
            "{podSelector: {}, ingress: [{ports: [{protocol: UDP, port: serve-81-udp}]}]}",
        ),
        no_tweak,
        STANDARD,
        ViaEndpoints::Differs {
            count: 24,
            pe_allows: false,
        },
    );
}

#[test]
fn named_port_on_egress_resolves_on_the_destination() {
    check(
        &p(
            "x",
            "named",
            "{podSelector: {}, policyTypes: [Egress], egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: serve-81-tcp}]}]}",
        ),
        |s| {
            // y/b serves "serve-81-tcp" on port 80 instead.
            let pod = pod_mut(s, "y", "b");
            pod.ports.retain(|cp| {
                cp.name.as_deref() != Some("serve-81-tcp")
                    && cp.name.as_deref() != Some("serve-80-tcp")
            });
            pod.ports.push(policy::ContainerPort {
                name: Some("serve-81-tcp".into()),
                port: 80,
                protocol: policy::Protocol::Tcp,
            });
        },
        STANDARD,
    );
}

#[test]
fn named_port_on_egress_to_all_peers_and_to_an_ip_block() {
    let policies = [
        p("x", "all", "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{ports: [{port: serve-80-tcp}]}]}"),
        p("x", "cidr", "{podSelector: {matchLabels: {pod: b}}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: ALL_PODS, except: [NET_Z]}}], ports: [{protocol: UDP, port: serve-81-udp}, {protocol: SCTP, port: 80}]}]}"),
    ]
    .concat();
    check_via(
        &policies,
        |s| pod_mut(s, "y", "c").ports.clear(),
        STANDARD,
        ViaEndpoints::Differs {
            count: 11,
            pe_allows: false,
        },
    );
}

#[test]
fn named_port_missing_on_some_pods_admits_nothing_there() {
    check_via(
        &p(
            "y",
            "named",
            "{podSelector: {}, ingress: [{ports: [{port: serve-80-tcp}]}]}",
        ),
        |s| pod_mut(s, "y", "b").ports.clear(),
        STANDARD,
        ViaEndpoints::Differs {
            count: 16,
            pe_allows: false,
        },
    );
}

#[test]
fn named_port_meaning_differs_per_pod() {
    check_via(
        &p(
            "x",
            "named",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}}], ports: [{port: serve-80-tcp}]}]}",
        ),
        |s| {
            let pod = pod_mut(s, "x", "b");
            pod.ports
                .retain(|cp| cp.name.as_deref() != Some("serve-80-tcp"));
            pod.ports.push(policy::ContainerPort {
                name: Some("serve-80-tcp".into()),
                port: 81,
                protocol: policy::Protocol::Tcp,
            });
        },
        STANDARD,
        ViaEndpoints::Differs {
            count: 24,
            pe_allows: true,
        },
    );
}

#[test]
fn end_port_range_on_tcp() {
    let (state, maps) = check(
        &p(
            "z",
            "range",
            "{podSelector: {}, ingress: [{ports: [{protocol: TCP, port: 80, endPort: 81}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
    for port in [80, 81] {
        assert!(
            probes(&state)
                .iter()
                .filter(|pr| pr.protocol == PROTO_TCP && pr.port == port)
                .all(|pr| datapath_allows(&maps, &state, pr))
        );
    }
}

#[test]
fn end_port_range_starting_at_81_on_udp() {
    check(
        &p(
            "z",
            "range",
            "{podSelector: {}, ingress: [{ports: [{protocol: UDP, port: 81, endPort: 90}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn protocol_without_port_admits_every_port_of_it() {
    check(
        &p(
            "x",
            "sctp",
            "{podSelector: {}, ingress: [{ports: [{protocol: SCTP}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn numeric_udp_port() {
    check(
        &p(
            "x",
            "udp",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}}], ports: [{protocol: UDP, port: 81}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn several_ports_in_one_rule() {
    check(
        &p(
            "y",
            "ports",
            "{podSelector: {}, ingress: [{ports: [{port: 80}, {protocol: UDP, port: 81}, {protocol: SCTP, port: 81}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn union_of_several_policies() {
    let policies = [
        p("x", "one", "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]}"),
        p("x", "two", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 81}]}]}"),
        p("x", "three", "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}, podSelector: {matchLabels: {pod: c}}}], ports: [{protocol: UDP}]}]}"),
    ]
    .concat();
    check(&policies, no_tweak, STANDARD);
}

#[test]
fn deny_all_plus_allow_policy_is_allow() {
    let policies = [
        p("x", "deny", "{podSelector: {}, policyTypes: [Ingress]}"),
        p(
            "x",
            "allow",
            "{podSelector: {matchLabels: {pod: a}}, ingress: [{}]}",
        ),
    ]
    .concat();
    check(&policies, no_tweak, STANDARD);
}

#[test]
fn egress_only_policy_types_ignore_ingress_rules() {
    check(
        &p(
            "x",
            "egress-only",
            "{podSelector: {}, policyTypes: [Egress], ingress: [{from: [{podSelector: {}}]}], egress: [{to: [{namespaceSelector: {matchLabels: {ns: z}}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn default_policy_types_include_egress_when_egress_rules_exist() {
    check(
        &p(
            "y",
            "both",
            "{podSelector: {}, egress: [{to: [{podSelector: {}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn empty_ingress_rule_admits_all_peers() {
    check(
        &p("x", "all", "{podSelector: {}, ingress: [{}]}"),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn egress_to_all_peers_restricted_to_a_port() {
    check(
        &p(
            "x",
            "port",
            "{podSelector: {}, policyTypes: [Egress], egress: [{ports: [{port: 80}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn egress_everywhere_except_own_namespace() {
    check(
        &p(
            "x",
            "out",
            "{podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: EVERYWHERE, except: [NET_X]}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn egress_to_a_namespace_on_one_udp_port() {
    check(
        &p(
            "x",
            "dns",
            "{podSelector: {}, policyTypes: [Egress], egress: [{to: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{protocol: UDP, port: 81}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn deny_all_ingress_for_one_pod() {
    check(
        &p(
            "z",
            "one",
            "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn allow_one_pod_of_another_namespace() {
    check(
        &p(
            "y",
            "xa-only",
            "{podSelector: {matchLabels: {pod: b}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn empty_namespace_selector_with_pod_selector_spans_all_namespaces() {
    check(
        &p(
            "x",
            "c-anywhere",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: c}}}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn host_network_pod_is_neither_selected_nor_a_peer() {
    let policies = [
        p(
            "x",
            "same",
            "{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}",
        ),
        p(
            "y",
            "from-x",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}}]}]}",
        ),
    ]
    .concat();
    let (_, maps) = check(
        &policies,
        |s| pod_mut(s, "x", "c").host_network = true,
        STANDARD,
    );
    assert!(
        !maps.pods.contains_key(&ObjectRef::new("x", "c")),
        "host-network pods get no record"
    );
}

#[test]
fn finished_pods_are_left_out_of_peer_sets() {
    check_via(
        &p(
            "y",
            "from-x",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}}]}]}",
        ),
        |s| {
            pod_mut(s, "x", "b").phase = PodPhase::Succeeded;
            pod_mut(s, "x", "c").phase = PodPhase::Failed;
        },
        STANDARD,
        ViaEndpoints::Differs {
            count: 36,
            pe_allows: true,
        },
    );
}

#[test]
fn pod_without_address_is_programmed_but_never_a_peer() {
    let (_, maps) = check(
        &p(
            "x",
            "deny",
            "{podSelector: {}, policyTypes: [Ingress, Egress]}",
        ),
        |s| pod_mut(s, "x", "c").ips.clear(),
        STANDARD,
    );
    let record = maps.pods[&ObjectRef::new("x", "c")];
    assert_eq!(record.addr_flags, 0);
    assert_eq!(
        record.ingress_state,
        datapath_common::STATE_POLICIES_APPLIED
    );
}

#[test]
fn policies_in_every_namespace() {
    let policies = [
        p("x", "deny-egress", "{podSelector: {}, policyTypes: [Egress]}"),
        p("x", "to-y", "{podSelector: {}, policyTypes: [Egress], egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}"),
        p("y", "from-x", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, c]}]}}]}]}"),
        p("z", "deny", "{podSelector: {}, policyTypes: [Ingress, Egress]}"),
    ]
    .concat();
    check(&policies, no_tweak, STANDARD);
}

#[test]
fn ports_only_rule_admits_every_peer_on_those_ports() {
    check(
        &p(
            "y",
            "udp80",
            "{podSelector: {}, ingress: [{ports: [{protocol: UDP, port: 80}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn ingress_and_egress_on_one_pod_combine() {
    check(
        &p(
            "x",
            "both",
            "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress, Egress], ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}], egress: [{to: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{port: 81}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn ip_block_with_port_range() {
    check(
        &p(
            "x",
            "cidr-range",
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: NET_Z}}], ports: [{port: 80, endPort: 81}, {protocol: SCTP, port: 81}]}]}",
        ),
        no_tweak,
        STANDARD,
    );
}

#[test]
fn namespace_label_change_changes_who_is_selected() {
    check(
        &p(
            "x",
            "from-ns-x",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}}]}]}",
        ),
        |s| {
            s.namespaces
                .get_mut("y")
                .expect("fixture namespace")
                .labels
                .insert("ns".into(), "x".into());
        },
        STANDARD,
    );
}

#[test]
fn strict_mode_without_policies_denies_everything_but_self() {
    let (state, maps) = check("", no_tweak, STRICT);
    for probe in probes(&state) {
        assert_eq!(
            datapath_allows(&maps, &state, &probe),
            probe.from == probe.to,
            "{probe:?}"
        );
    }
}

#[test]
fn strict_mode_allows_only_where_both_ends_have_policies() {
    let policies = [
        p("x", "open", "{podSelector: {}, policyTypes: [Ingress, Egress], ingress: [{}], egress: [{}]}"),
        p("y", "in", "{podSelector: {}, ingress: [{}]}"),
        p("z", "out", "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{ports: [{port: 81}]}]}"),
    ]
    .concat();
    check(&policies, no_tweak, STRICT);
}

#[test]
fn node_addresses_are_always_allowed_even_under_deny_all() {
    for mode in [STANDARD, STRICT] {
        for family in [Family::V4, Family::V6] {
            let state = with_policies(
                cluster(family),
                family,
                &p(
                    "x",
                    "deny",
                    "{podSelector: {}, policyTypes: [Ingress, Egress]}",
                ),
            );
            let maps = program(&state, family, mode);
            let pod = ObjectRef::new("x", "a");
            for direction in policy::Direction::BOTH {
                let d = maps.decide(&pod, direction, family.node_ip(), PROTO_TCP, 8080);
                assert!(d.is_accept(), "{mode:?} {family:?} {direction}");
                assert_eq!(d.policy_id, policy::NODE_LOCAL_POLICY_ID);
            }
            let other = family.pod_ip("y", "a");
            assert!(
                !maps
                    .decide(&pod, policy::Direction::Ingress, other, PROTO_TCP, 80)
                    .is_accept()
            );
        }
    }
}
