//! Cluster policy tiers (Admin, NetworkPolicy, Baseline, default) checked against a
//! plain evaluator written here from the ClusterNetworkPolicy semantics, sharing no
//! code with `policy::tiers`: every probe between the fixture's pods, TCP, UDP and
//! SCTP on two ports, both families, plus the deciding tier of chosen probes.

mod common;

use std::net::IpAddr;

use common::{Family, PROTOCOLS, Probe, cluster, options, oracle, probes};
use datapath_common::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use policy::{
    ClusterAction, ClusterPeer, ClusterState, DecidingTier, Direction, EnforcingMode, MapModel,
    ObjectRef, Planner, PolicyPort, PortRef, Resolved, Resolver, Tier, Tiers, resolve_tiers,
};

// ---- the plain evaluator ------------------------------------------------------

fn in_peer_sets(pod: &policy::Pod) -> bool {
    !pod.host_network
        && !matches!(
            pod.phase,
            policy::PodPhase::Succeeded | policy::PodPhase::Failed
        )
        && !pod.ips.is_empty()
}

fn cluster_port_matches(ports: &[PolicyPort], dest: &policy::Pod, protocol: u8, port: u16) -> bool {
    ports.is_empty()
        || ports.iter().any(|p| {
            oracle::protocol_number(p.protocol) == protocol
                && match &p.port {
                    None => true,
                    Some(PortRef::Number(n)) => *n <= port && port <= p.end_port.unwrap_or(*n),
                    Some(PortRef::Name(name)) => dest.ports.iter().any(|c| {
                        c.name.as_deref() == Some(name)
                            && c.protocol == p.protocol
                            && c.port == port
                    }),
                }
        })
}

/// The action of the first rule of `tier` matching, or `None`.
fn first_cluster_action(
    state: &ClusterState,
    tier: Tier,
    me: &policy::Pod,
    other: &policy::Pod,
    ingress: bool,
    protocol: u8,
    port: u16,
) -> Option<ClusterAction> {
    let my_ns = oracle::ns_labels(state, &me.namespace);
    let other_ns = oracle::ns_labels(state, &other.namespace);
    let other_ip = other.ips[0];
    let dest = if ingress { me } else { other };
    let mut best: Option<((u32, u8, String, usize), ClusterAction)> = None;
    for p in state.cluster_policies.values() {
        if p.tier != tier
            || !oracle::selector_matches(&p.subject.namespace_selector, &my_ns)
            || !oracle::selector_matches(&p.subject.pod_selector, &me.labels)
        {
            continue;
        }
        let rules = if ingress { &p.ingress } else { &p.egress };
        for (i, r) in rules.iter().enumerate() {
            let has_domains = r
                .peers
                .iter()
                .any(|x| matches!(x, ClusterPeer::DomainNames(_)));
            let action = if has_domains && r.action != ClusterAction::Accept {
                ClusterAction::Deny
            } else {
                r.action
            };
            let peer_ok = (has_domains && r.action != ClusterAction::Accept)
                || r.peers.iter().any(|x| match x {
                    ClusterPeer::Pods(sel) => {
                        in_peer_sets(other)
                            && oracle::selector_matches(&sel.namespace_selector, &other_ns)
                            && oracle::selector_matches(&sel.pod_selector, &other.labels)
                    }
                    ClusterPeer::Networks(nets) => nets.iter().any(|n| n.contains(&other_ip)),
                    ClusterPeer::DomainNames(_) => false,
                });
            if !peer_ok || !cluster_port_matches(&r.ports, dest, protocol, port) {
                continue;
            }
            let rank = match action {
                ClusterAction::Deny => 0,
                ClusterAction::Accept => 1,
                ClusterAction::Pass => 2,
            };
            let key = (p.priority, rank, p.name.clone(), i);
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, action));
            }
        }
    }
    best.map(|(_, a)| a)
}

fn np_selects(state: &ClusterState, me: &policy::Pod, ingress: bool) -> bool {
    state.policies.values().any(|p| {
        p.namespace == me.namespace
            && oracle::has_type(p, ingress)
            && oracle::selector_matches(&p.spec.pod_selector, &me.labels)
    })
}

fn oracle_side(
    state: &ClusterState,
    mode: EnforcingMode,
    me: &policy::Pod,
    other: &policy::Pod,
    ingress: bool,
    protocol: u8,
    port: u16,
) -> bool {
    match first_cluster_action(state, Tier::Admin, me, other, ingress, protocol, port) {
        Some(ClusterAction::Accept) => return true,
        Some(ClusterAction::Deny) => return false,
        Some(ClusterAction::Pass) | None => {}
    }
    if np_selects(state, me, ingress) {
        return oracle::side_allows(state, mode, me, other, ingress, protocol, port);
    }
    match first_cluster_action(state, Tier::Baseline, me, other, ingress, protocol, port) {
        Some(ClusterAction::Accept) => true,
        Some(ClusterAction::Deny) => false,
        Some(ClusterAction::Pass) | None => mode == EnforcingMode::Standard,
    }
}

fn oracle_allows(state: &ClusterState, mode: EnforcingMode, probe: &Probe) -> bool {
    if probe.from == probe.to {
        return true;
    }
    let from = &state.pods[&probe.from];
    let to = &state.pods[&probe.to];
    oracle_side(state, mode, from, to, false, probe.protocol, probe.port)
        && oracle_side(state, mode, to, from, true, probe.protocol, probe.port)
}

// ---- the resolver's answer ----------------------------------------------------

struct Programmed {
    state: ClusterState,
    options: policy::ResolveOptions,
    resolved: Resolved,
    tiers: Tiers,
    /// The maps the datapath would hold, written through the planner.
    maps: MapModel,
}

impl Programmed {
    fn new(family: Family, mode: EnforcingMode, manifests: &str) -> Self {
        let mut state = cluster(family);
        let loaded = policy::load_str("tiers.yaml", &family.render(manifests)).unwrap();
        state.merge_from(&loaded).unwrap();
        let options = options(family, mode);
        let resolved = Resolver::new().resolve(&state, &options);
        let tiers = resolve_tiers(&state, &options);
        let mut maps = MapModel::new();
        maps.apply(&Planner::new().plan(&resolved)).unwrap();
        Self {
            state,
            options,
            resolved,
            tiers,
            maps,
        }
    }

    fn side(
        &self,
        me: &str,
        direction: Direction,
        peer: IpAddr,
        protocol: u8,
        port: u16,
    ) -> policy::TierDecision {
        let (ns, name) = me.split_once('/').unwrap();
        let key = ObjectRef::new(ns, name);
        let np = self.resolved.pods[&key].direction(direction);
        self.tiers
            .decide(&key, direction, np, &self.options, peer, protocol, port)
    }

    fn ip(&self, pod: &str) -> IpAddr {
        let (ns, name) = pod.split_once('/').unwrap();
        self.state.pods[&ObjectRef::new(ns, name)].ips[0]
    }

    /// Both sides of `from` -> `to`: (egress decision, ingress decision).
    fn connect(
        &self,
        from: &str,
        to: &str,
        protocol: u8,
        port: u16,
    ) -> (policy::TierDecision, policy::TierDecision) {
        (
            self.side(from, Direction::Egress, self.ip(to), protocol, port),
            self.side(to, Direction::Ingress, self.ip(from), protocol, port),
        )
    }

    /// The in-memory datapath's verdict for both sides, as the kernel looks it up.
    fn datapath_allows(&self, probe: &Probe) -> bool {
        if probe.from == probe.to {
            return true;
        }
        let (from_ip, to_ip) = (
            self.state.pods[&probe.from].ips[0],
            self.state.pods[&probe.to].ips[0],
        );
        let egress = self.maps.decide(
            &probe.from,
            Direction::Egress,
            to_ip,
            probe.protocol,
            probe.port,
        );
        let ingress = self.maps.decide(
            &probe.to,
            Direction::Ingress,
            from_ip,
            probe.protocol,
            probe.port,
        );
        // The datapath names what Tiers::decide names.
        let (e, i) = self.connect(
            &format!("{}/{}", probe.from.namespace, probe.from.name),
            &format!("{}/{}", probe.to.namespace, probe.to.name),
            probe.protocol,
            probe.port,
        );
        assert_eq!((egress, ingress), (e.decision, i.decision), "{probe:?}");
        egress.passes() && ingress.passes()
    }

    fn allows(&self, probe: &Probe) -> bool {
        if probe.from == probe.to {
            return true;
        }
        let from = format!("{}/{}", probe.from.namespace, probe.from.name);
        let to = format!("{}/{}", probe.to.namespace, probe.to.name);
        let (e, i) = self.connect(&from, &to, probe.protocol, probe.port);
        e.decision.passes() && i.decision.passes()
    }

    /// Every probe agrees with the plain evaluator; returns how many were allowed.
    fn assert_matches_oracle(&self, mode: EnforcingMode) -> usize {
        let mut mismatches = Vec::new();
        let mut allowed = 0;
        let all = probes(&self.state);
        assert_eq!(all.len(), 81 * PROTOCOLS.len() * 2);
        for probe in &all {
            let expected = oracle_allows(&self.state, mode, probe);
            let got = self.allows(probe);
            let datapath = self.datapath_allows(probe);
            allowed += usize::from(got);
            if expected != got || expected != datapath {
                mismatches.push(format!(
                    "{probe:?}: oracle {expected}, resolver {got}, datapath maps {datapath}"
                ));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} mismatches:\n{}",
            mismatches.len(),
            mismatches.join("\n")
        );
        allowed
    }
}

fn each_family(mode: EnforcingMode, manifests: &str, check: impl Fn(&Programmed)) {
    for family in [Family::V4, Family::V6] {
        let programmed = Programmed::new(family, mode, manifests);
        let allowed = programmed.assert_matches_oracle(mode);
        // Neither everything nor nothing: the scenario actually discriminates.
        assert!(
            allowed > 0 && allowed < 81 * 6,
            "{family:?}: {allowed} allowed"
        );
        check(&programmed);
    }
}

fn tier_of(d: &policy::TierDecision) -> DecidingTier {
    d.tier
}

// ---- scenarios ----------------------------------------------------------------

const ALLOW_ALL_INGRESS_X_A: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{}]
"#;

#[test]
fn admin_deny_overrides_a_network_policy_allow() {
    let manifests = format!(
        "{ALLOW_ALL_INGRESS_X_A}---\n{}",
        r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: deny-y-to-x-a}
spec:
  tier: Admin
  priority: 10
  subject: {pods: {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}}
  ingress:
  - name: no-web-from-y
    action: Deny
    from: [{namespaces: {matchLabels: {ns: y}}}]
    ports: [{portNumber: {protocol: TCP, port: 80}}]
"#
    );
    each_family(EnforcingMode::Standard, &manifests, |p| {
        let (_, ingress) = p.connect("y/b", "x/a", PROTO_TCP, 80);
        assert!(!ingress.decision.passes());
        assert_eq!(tier_of(&ingress), DecidingTier::Admin);
        assert_eq!(
            p.tiers.describe(&ingress).unwrap(),
            "Admin ClusterNetworkPolicy deny-y-to-x-a (priority 10) ingress rule 0 (\"no-web-from-y\")"
        );
        let (_, ingress) = p.connect("y/b", "x/a", PROTO_UDP, 80);
        assert!(ingress.decision.passes());
        assert_eq!(tier_of(&ingress), DecidingTier::NetworkPolicy);
        let (_, ingress) = p.connect("z/b", "x/a", PROTO_TCP, 80);
        assert_eq!(tier_of(&ingress), DecidingTier::NetworkPolicy);
        assert!(ingress.decision.passes());
    });
}

#[test]
fn admin_pass_hands_over_to_a_network_policy_deny() {
    let manifests = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}}
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: accept-y}
spec:
  tier: Admin
  priority: 20
  subject: {namespaces: {matchLabels: {ns: x}}}
  ingress: [{action: Accept, from: [{namespaces: {matchLabels: {ns: y}}}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: pass-y-b}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {ns: x}}}
  ingress:
  - action: Pass
    from: [{pods: {namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}}]
"#;
    each_family(EnforcingMode::Standard, manifests, |p| {
        for (protocol, _) in PROTOCOLS {
            let (_, passed) = p.connect("y/b", "x/c", protocol, 81);
            assert!(!passed.decision.passes());
            assert_eq!(tier_of(&passed), DecidingTier::NetworkPolicy);
            let (_, accepted) = p.connect("y/a", "x/c", protocol, 81);
            assert!(accepted.decision.passes());
            assert_eq!(tier_of(&accepted), DecidingTier::Admin);
        }
        let (_, other) = p.connect("z/a", "x/a", PROTO_SCTP, 80);
        assert!(!other.decision.passes());
    });
}

#[test]
fn baseline_deny_applies_only_to_pods_no_network_policy_selects() {
    let manifests = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: z-closed-to-x}
spec:
  tier: Baseline
  priority: 0
  subject: {namespaces: {matchLabels: {ns: z}}}
  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: x}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: open-a, namespace: z}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{}]
"#;
    each_family(EnforcingMode::Standard, manifests, |p| {
        let (_, denied) = p.connect("x/a", "z/b", PROTO_UDP, 80);
        assert!(!denied.decision.passes());
        assert_eq!(tier_of(&denied), DecidingTier::Baseline);
        let (_, open) = p.connect("y/a", "z/b", PROTO_UDP, 80);
        assert!(open.decision.passes());
        assert_eq!(tier_of(&open), DecidingTier::Default);
        let (_, np) = p.connect("x/a", "z/a", PROTO_UDP, 80);
        assert!(np.decision.passes());
        assert_eq!(tier_of(&np), DecidingTier::NetworkPolicy);
    });
}

#[test]
fn baseline_accept_does_not_open_a_pod_a_network_policy_isolates() {
    let manifests = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate-a, namespace: y}
spec: {podSelector: {matchLabels: {pod: a}}}
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: accept-everything}
spec:
  tier: Baseline
  priority: 5
  subject: {namespaces: {}}
  ingress: [{action: Accept, from: [{namespaces: {}}]}]
"#;
    each_family(EnforcingMode::Standard, manifests, |p| {
        let (_, isolated) = p.connect("x/a", "y/a", PROTO_TCP, 80);
        assert!(!isolated.decision.passes());
        assert_eq!(tier_of(&isolated), DecidingTier::NetworkPolicy);
        let (_, open) = p.connect("x/a", "y/b", PROTO_TCP, 80);
        assert!(open.decision.passes());
        assert_eq!(tier_of(&open), DecidingTier::Baseline);
    });
}

#[test]
fn lower_priority_numbers_win_and_deny_wins_a_tie() {
    let manifests = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: a-accept-web}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {matchLabels: {ns: y}}}
  ingress: [{action: Accept, from: [{namespaces: {matchLabels: {ns: x}}}], ports: [{portNumber: {protocol: TCP, port: 80}}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: b-deny-x}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {matchLabels: {ns: y}}}
  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: x}}}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: z-accept-81-first}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {matchLabels: {ns: y}}}
  ingress: [{action: Accept, from: [{namespaces: {matchLabels: {ns: x}}}], ports: [{portRange: {protocol: TCP, start: 81, end: 90}}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: pass-z}
spec:
  tier: Admin
  priority: 3
  subject: {namespaces: {matchLabels: {ns: y}}}
  ingress: [{action: Pass, from: [{namespaces: {matchLabels: {ns: z}}}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: accept-z}
spec:
  tier: Admin
  priority: 3
  subject: {namespaces: {matchLabels: {ns: y}}}
  ingress: [{action: Accept, from: [{namespaces: {matchLabels: {ns: z}}}], ports: [{namedPort: serve-80-udp}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: y}
spec: {podSelector: {}}
"#;
    each_family(EnforcingMode::Standard, manifests, |p| {
        // Priority 1 beats the priority-5 Deny.
        let (_, d) = p.connect("x/a", "y/a", PROTO_TCP, 81);
        assert!(d.decision.passes());
        assert_eq!(
            p.tiers.table.get(d.decision.policy_id).unwrap().rule.policy,
            "z-accept-81-first"
        );
        // Priority 5: Accept and Deny tie on TCP 80; Deny wins.
        let (_, d) = p.connect("x/a", "y/a", PROTO_TCP, 80);
        assert!(!d.decision.passes());
        assert_eq!(
            p.tiers.table.get(d.decision.policy_id).unwrap().rule.policy,
            "b-deny-x"
        );
        // Priority 3: Accept (UDP 80 by name) ties with Pass; Accept goes first.
        let (_, d) = p.connect("z/c", "y/b", PROTO_UDP, 80);
        assert!(d.decision.passes());
        assert_eq!(tier_of(&d), DecidingTier::Admin);
        // Elsewhere the Pass reaches y's deny-all.
        let (_, d) = p.connect("z/c", "y/b", PROTO_TCP, 80);
        assert!(!d.decision.passes());
        assert_eq!(tier_of(&d), DecidingTier::NetworkPolicy);
    });
}

#[test]
fn strict_mode_denies_what_baseline_does_not_accept() {
    let manifests = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: x-serves-y}
spec:
  tier: Baseline
  priority: 100
  subject: {namespaces: {matchLabels: {ns: x}}}
  ingress: [{action: Accept, from: [{namespaces: {matchLabels: {ns: y}}}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: y-c-passes}
spec:
  tier: Baseline
  priority: 10
  subject: {namespaces: {matchLabels: {ns: x}}}
  ingress: [{action: Pass, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: c}}}}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: y-calls-x}
spec:
  tier: Baseline
  priority: 100
  subject: {namespaces: {matchLabels: {ns: y}}}
  egress:
  - action: Accept
    to: [{networks: [NET_X]}]
    ports: [{portNumber: {protocol: SCTP, port: 81}}, {namedPort: serve-80-tcp}]
"#;
    each_family(EnforcingMode::Strict, manifests, |p| {
        let (egress, ingress) = p.connect("y/a", "x/b", PROTO_SCTP, 81);
        assert!(egress.decision.passes() && ingress.decision.passes());
        assert_eq!(
            (egress.tier, ingress.tier),
            (DecidingTier::Baseline, DecidingTier::Baseline)
        );
        let (egress, _) = p.connect("y/a", "x/b", PROTO_TCP, 80);
        assert!(egress.decision.passes());
        let (egress, _) = p.connect("y/a", "x/b", PROTO_UDP, 80);
        assert!(!egress.decision.passes());
        assert_eq!(egress.tier, DecidingTier::Default);
        let (_, ingress) = p.connect("z/a", "x/b", PROTO_TCP, 80);
        assert!(!ingress.decision.passes());
        // A Baseline Pass goes to the default before the priority-100 Accept.
        let (egress, ingress) = p.connect("y/c", "x/b", PROTO_SCTP, 81);
        assert!(egress.decision.passes() && !ingress.decision.passes());
        assert_eq!(ingress.tier, DecidingTier::Default);
        // The node's own address still passes.
        let node = p.options.node_addresses[0];
        let d = p.side("x/a", Direction::Ingress, node, PROTO_TCP, 8080);
        assert_eq!(d.tier, DecidingTier::NodeLocal);
        assert!(d.decision.passes());
    });
}

#[test]
fn domain_names_drop_out_of_accept_and_fail_deny_and_pass_closed() {
    let manifests = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: names}
spec:
  tier: Admin
  priority: 50
  subject: {pods: {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}}
  egress:
  - name: accept-named
    action: Accept
    to: [{domainNames: ["example.com"]}, {networks: [NET_Y]}]
    ports: [{portNumber: {protocol: UDP, port: 81}}]
  - name: pass-named
    action: Pass
    to: [{domainNames: ["*.example.org"]}]
    ports: [{portNumber: {protocol: TCP, port: 81}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}
"#;
    each_family(EnforcingMode::Standard, manifests, |p| {
        let (e, _) = p.connect("x/a", "y/c", PROTO_UDP, 81);
        assert!(e.decision.passes());
        assert_eq!(e.tier, DecidingTier::Admin);
        let (e, _) = p.connect("x/a", "z/c", PROTO_UDP, 81);
        assert!(!e.decision.passes());
        assert_eq!(e.tier, DecidingTier::NetworkPolicy);
        let (e, _) = p.connect("x/a", "z/c", PROTO_TCP, 81);
        assert!(!e.decision.passes());
        assert_eq!(e.tier, DecidingTier::Admin);
        let entry = p.tiers.table.get(e.decision.policy_id).unwrap();
        assert!(entry.fails_closed());
        let issues: Vec<String> = p.tiers.issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            issues,
            [
                "Admin ClusterNetworkPolicy names (priority 50) egress rule 0 (\"accept-named\"): domainNames peers (example.com) cannot be enforced; the Accept rule ignores them",
                "Admin ClusterNetworkPolicy names (priority 50) egress rule 1 (\"pass-named\"): domainNames peers (*.example.org) cannot be enforced; the Pass rule fails closed and denies every destination on its ports",
            ]
        );
    });
}

#[test]
fn no_cluster_policy_leaves_network_policies_alone() {
    for family in [Family::V4, Family::V6] {
        for mode in [EnforcingMode::Standard, EnforcingMode::Strict] {
            let p = Programmed::new(family, mode, ALLOW_ALL_INGRESS_X_A);
            assert!(p.tiers.pods.is_empty() && p.tiers.table.is_empty());
            for probe in probes(&p.state) {
                assert_eq!(
                    p.allows(&probe),
                    oracle::allows(&p.state, mode, &probe),
                    "{probe:?}"
                );
            }
        }
    }
}

// ---- loading ------------------------------------------------------------------

fn load_error(spec: &str) -> String {
    let text = format!(
        "apiVersion: networking.k8s.aws/v1alpha1\nkind: ClusterNetworkPolicy\nmetadata: {{name: bad}}\nspec:\n{spec}"
    );
    policy::load_str("cnp.yaml", &text).unwrap_err().to_string()
}

#[test]
fn bad_cluster_policies_are_refused_naming_the_field() {
    let subject = "  subject: {namespaces: {}}\n";
    let cases = [
        (
            format!("  tier: Admin\n  priority: 1001\n{subject}"),
            "spec.priority",
        ),
        (
            "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}, pods: {}}\n".to_owned(),
            "spec.subject",
        ),
        (
            format!("  tier: Middle\n  priority: 1\n{subject}"),
            "spec.tier",
        ),
        (
            format!(
                "  tier: Admin\n  priority: 1\n{subject}  ingress: [{{action: Deny, from: []}}]\n"
            ),
            "spec.ingress[0].from",
        ),
        (
            format!(
                "  tier: Admin\n  priority: 1\n{subject}  ingress: [{{action: Deny, from: [{{networks: [10.0.0.0/8]}}]}}]\n"
            ),
            "spec.ingress[0].from[0]",
        ),
        (
            format!(
                "  tier: Admin\n  priority: 1\n{subject}  egress: [{{action: Drop, to: [{{namespaces: {{}}}}]}}]\n"
            ),
            "spec.egress[0].action",
        ),
        (
            format!(
                "  tier: Admin\n  priority: 1\n{subject}  egress: [{{action: Deny, to: [{{networks: [\"10.0.0.0/8\"]}}], ports: [{{portRange: {{start: 90, end: 80}}}}]}}]\n"
            ),
            "spec.egress[0].ports[0].portRange",
        ),
        (
            format!(
                "  tier: Admin\n  priority: 1\n{subject}  egress: [{{action: Deny, to: [{{networks: [\"10.0.0.0/33\"]}}]}}]\n"
            ),
            "spec.egress[0].to[0].networks[0]",
        ),
    ];
    for (spec, path) in cases {
        let error = load_error(&spec);
        assert!(
            error.contains("cnp.yaml doc 1") && error.contains(path),
            "{path}: {error}"
        );
    }
    let namespaced = policy::load_str(
        "cnp.yaml",
        "apiVersion: networking.k8s.aws/v1alpha1\nkind: ClusterNetworkPolicy\nmetadata: {name: bad, namespace: x}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(namespaced.contains("metadata.namespace"), "{namespaced}");
}

#[test]
fn the_incumbents_example_loads() {
    let state = policy::load_str(
        "clusternetworkpolicy.yaml",
        r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata:
  name: default-admin-policy
spec:
  priority: 100
  tier: Admin
  subject:
    pods:
      namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: default
      podSelector:
        matchLabels: {app: nginx1}
  ingress:
    - name: dns
      action: Accept
      from:
        - pods:
            namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
            podSelector: {matchLabels: {k8s-app: kube-dns}}
      ports:
        - portNumber: {protocol: UDP, port: 53}
        - portNumber: {protocol: TCP, port: 53}
  egress:
    - name: https
      action: Accept
      to: [{networks: ["192.168.0.0/24"]}]
      ports: [{portNumber: {protocol: TCP, port: 443}}]
    - name: rest
      action: Pass
      to: [{networks: ["0.0.0.0/0"]}]
"#,
    )
    .unwrap();
    let p = &state.cluster_policies["default-admin-policy"];
    assert_eq!((p.tier, p.priority), (Tier::Admin, 100));
    assert_eq!(p.ingress[0].ports.len(), 2);
    assert_eq!(p.egress[1].action, ClusterAction::Pass);
    assert_eq!(
        p.egress[0].peers,
        [ClusterPeer::Networks(vec![
            "192.168.0.0/24".parse().unwrap()
        ])]
    );
    // A duplicate is refused.
    let mut twice = state.clone();
    assert!(
        twice
            .merge_from(&state)
            .unwrap_err()
            .contains("ClusterNetworkPolicy default-admin-policy")
    );
}
