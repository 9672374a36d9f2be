//! `lint`: the EKS user guide's cautions about NetworkPolicy, and the usual mistakes,
//! as warnings naming the policies and the pods. Reachability (IMDS, the EKS Pod
//! Identity agent, DNS) is decided by the explain engine, so by the agent's own rules.
//!
//! - `imds-blocked`: egress isolation blocks the EC2 instance metadata service
//!   (169.254.169.254, or fd00:ec2::254 for a pod without IPv4) on TCP 80; pods using
//!   the instance role's credentials or IMDS fail.
//! - `pod-identity-blocked`: the same for the EKS Pod Identity agent
//!   (169.254.170.23 and fd00:ec2::23, per family the pod has).
//! - `dns-blocked`: a pod cannot reach the CoreDNS pods (kube-system, `k8s-app:
//!   kube-dns`) on UDP or TCP 53: its egress or CoreDNS's ingress denies it. Strict
//!   mode denies every pod no policy selects, CoreDNS included. When the input holds no
//!   CoreDNS pod, one is assumed (addresses 192.0.2.53 and 2001:db8::53).
//! - `host-network-selected`: a policy selects host-network pods; no policy can cover
//!   them (they share the node's network).
//! - `selects-no-pod`: a policy whose pod selector matches no pod of its namespace.
//! - `ip-block-covers-pods`: an ipBlock holding pod addresses (pod addresses change;
//!   select pods by label). `0.0.0.0/0` and `::/0` mean "anywhere" and are not reported.
//! - `named-port-undeclared`: a named port that no pod it could mean declares (for
//!   ingress, the pods the policy selects; for egress, any pod).
//!
//! Cluster policies (ClusterNetworkPolicy, Admin and Baseline tiers):
//! - the reachability checks above go through the tier order, so an Admin or Baseline
//!   Deny that blocks DNS, IMDS or Pod Identity is reported naming that rule;
//! - `cluster-unenforceable-peer`: a rule with `domainNames` peers, which the datapath
//!   cannot match: an Accept rule ignores them, a Deny or Pass rule fails closed and
//!   denies every destination on its ports (the resolver's `TierIssue`s);
//! - `cluster-rule-shadowed`: a rule that an earlier rule of the same tier and
//!   direction (in evaluation order: ascending priority, Deny before Accept before Pass
//!   at equal priority, then name and rule index) always matches first: the same or
//!   a wider subject, a superset of its peers, and its ports or all ports; it never
//!   decides anything;
//! - `cluster-selects-no-pod`: a cluster policy whose subject matches no pod.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::cluster::{ClusterNetworkPolicy, ClusterPeer, ClusterRule, ClusterRuleRef};
use crate::explain::{Endpoint, Explainer, Explanation, Reason};
use crate::model::{
    ClusterState, Direction, LabelSelector, NetworkPolicy, Peer, Pod, PodPhase, PodRef, PolicyRef,
    PortRef, Protocol,
};
use crate::resolve::EnforcingMode;

/// EC2 instance metadata service (IMDS), IPv4 and IPv6.
pub const IMDS_V4: &str = "169.254.169.254";
pub const IMDS_V6: &str = "fd00:ec2::254";
/// EKS Pod Identity agent, IPv4 and IPv6.
pub const POD_IDENTITY_V4: &str = "169.254.170.23";
pub const POD_IDENTITY_V6: &str = "fd00:ec2::23";
/// The namespace and label of the CoreDNS pods.
pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
/// The CoreDNS pod assumed when the input holds none.
const ASSUMED_DNS_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: coredns-assumed-by-lint, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec: {nodeName: lint}
status: {phase: Running, podIPs: [{ip: 192.0.2.53}, {ip: "2001:db8::53"}]}
"#;

/// What a warning is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Caution {
    ImdsBlocked,
    PodIdentityBlocked,
    DnsBlocked,
    HostNetworkSelected,
    SelectsNoPod,
    IpBlockCoversPods,
    NamedPortUndeclared,
    ClusterUnenforceablePeer,
    ClusterRuleShadowed,
    ClusterSelectsNoPod,
}

impl Caution {
    /// A stable short name (`--json`, documentation).
    pub const fn code(self) -> &'static str {
        match self {
            Caution::ImdsBlocked => "imds-blocked",
            Caution::PodIdentityBlocked => "pod-identity-blocked",
            Caution::DnsBlocked => "dns-blocked",
            Caution::HostNetworkSelected => "host-network-selected",
            Caution::SelectsNoPod => "selects-no-pod",
            Caution::IpBlockCoversPods => "ip-block-covers-pods",
            Caution::NamedPortUndeclared => "named-port-undeclared",
            Caution::ClusterUnenforceablePeer => "cluster-unenforceable-peer",
            Caution::ClusterRuleShadowed => "cluster-rule-shadowed",
            Caution::ClusterSelectsNoPod => "cluster-selects-no-pod",
        }
    }
}

/// One warning: the policies it is about (none for strict mode's default deny alone),
/// the cluster policies it is about (by name), the pods it concerns, and a sentence
/// saying what and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub caution: Caution,
    pub policies: Vec<PolicyRef>,
    pub cluster_policies: Vec<String>,
    pub pods: Vec<PodRef>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "warning[{}]: {}", self.caution.code(), self.message)
    }
}

/// Lints `state` as the agent would enforce it in `mode`.
pub fn lint(state: &ClusterState, mode: EnforcingMode) -> Vec<Warning> {
    lint_with(&Explainer::new(state, mode))
}

/// Lints the state an explainer holds.
pub fn lint_with(explainer: &Explainer) -> Vec<Warning> {
    let mut warnings = Vec::new();
    warnings.extend(metadata_endpoints(explainer));
    warnings.extend(dns(explainer));
    let state = explainer.state();
    for policy in state.policies.values() {
        warnings.extend(selection(state, policy));
        warnings.extend(ip_blocks(state, policy));
        warnings.extend(named_ports(state, policy));
    }
    warnings.extend(cluster_unenforceable(explainer));
    warnings.extend(cluster_shadowed(explainer));
    for policy in state.cluster_policies.values() {
        warnings.extend(cluster_selection(state, policy));
    }
    warnings
}

fn names<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The policies that denied `e` (the source's egress isolation, the destination's
/// ingress isolation), in order, without repeats.
fn denying_policies(e: &Explanation) -> Vec<PolicyRef> {
    let mut out: Vec<PolicyRef> = Vec::new();
    for verdict in [&e.egress, &e.ingress] {
        for p in verdict.isolated_by() {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
    }
    out
}

/// The cluster rules that denied `e`, in order, without repeats.
fn denying_cluster_rules(e: &Explanation) -> Vec<ClusterRuleRef> {
    let mut out: Vec<ClusterRuleRef> = Vec::new();
    for verdict in [&e.egress, &e.ingress] {
        if let Some(m) = verdict.denied_by_cluster()
            && !out.contains(&m.rule)
        {
            out.push(m.rule.clone());
        }
    }
    out
}

fn cluster_names(rules: &[ClusterRuleRef]) -> Vec<String> {
    let mut names: Vec<String> = rules.iter().map(|r| r.policy.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// Denied, or passing only because the isolating policies are in audit mode (it
/// will be denied once they enforce).
fn blocked(e: &Explanation) -> bool {
    !e.allowed() || e.egress.reason == Reason::Audited || e.ingress.reason == Reason::Audited
}

/// Said of a warning whose connections pass only through audit mode.
fn audit_note(passes_now: bool) -> &'static str {
    if passes_now {
        " (audit mode: it passes now and is blocked once the policies enforce)"
    } else {
        ""
    }
}

fn isolation_text(policies: &[PolicyRef], cluster_rules: &[ClusterRuleRef]) -> String {
    let mut parts = Vec::new();
    if !cluster_rules.is_empty() {
        parts.push(names(cluster_rules));
    }
    if !policies.is_empty() {
        parts.push(format!("the isolation of {}", names(policies)));
    }
    if parts.is_empty() {
        "strict mode's default deny (no policy selects them)".to_owned()
    } else {
        parts.join(" and ")
    }
}

/// Pods (grouped by the policies that deny them) for which `endpoint` on TCP 80 is
/// denied, per family the pod has.
fn metadata_endpoints(explainer: &Explainer) -> Vec<Warning> {
    let checks = [
        (
            Caution::ImdsBlocked,
            IMDS_V4,
            IMDS_V6,
            "the EC2 instance metadata service (IMDS)",
            "pods that use the instance role's credentials or IMDS fail",
        ),
        (
            Caution::PodIdentityBlocked,
            POD_IDENTITY_V4,
            POD_IDENTITY_V6,
            "the EKS Pod Identity agent",
            "pods that get AWS credentials through EKS Pod Identity fail",
        ),
    ];
    let mut warnings = Vec::new();
    for (caution, v4, v6, what, effect) in checks {
        type Key = (Vec<PolicyRef>, Vec<ClusterRuleRef>, IpAddr, bool);
        let mut groups: BTreeMap<Key, Vec<PodRef>> = BTreeMap::new();
        for pod in explainer.enforced_pods() {
            let has_v4 = pod.ips.iter().any(IpAddr::is_ipv4);
            let mut targets: Vec<&str> = Vec::new();
            if has_v4 {
                targets.push(v4);
            }
            let skip_imds_v6 = caution == Caution::ImdsBlocked && has_v4;
            if pod.ips.iter().any(IpAddr::is_ipv6) && !skip_imds_v6 {
                targets.push(v6);
            }
            for target in targets {
                let ip: IpAddr = target.parse().expect("a constant address");
                let Ok(found) = explainer.explain(
                    &Endpoint::Pod(pod.key()),
                    &Endpoint::Ip(ip),
                    Protocol::Tcp,
                    80,
                ) else {
                    continue;
                };
                for e in found.iter().filter(|e| blocked(e)) {
                    groups
                        .entry((
                            denying_policies(e),
                            denying_cluster_rules(e),
                            ip,
                            e.allowed(),
                        ))
                        .or_default()
                        .push(pod.key());
                }
            }
        }
        for ((policies, cluster_rules, ip, passes_now), mut pods) in groups {
            pods.dedup();
            let message = format!(
                "{ip}:80 ({what}) is blocked by {} for pods {}: {effect}; allow it with an egress ipBlock {ip}/{} on TCP 80 if they need it{}",
                isolation_text(&policies, &cluster_rules),
                names(&pods),
                if ip.is_ipv4() { 32 } else { 128 },
                audit_note(passes_now),
            );
            warnings.push(Warning {
                caution,
                policies,
                cluster_policies: cluster_names(&cluster_rules),
                pods,
                message,
            });
        }
    }
    warnings
}

fn is_dns_pod(pod: &Pod) -> bool {
    pod.namespace == DNS_NAMESPACE
        && pod.labels.get(DNS_LABEL.0).map(String::as_str) == Some(DNS_LABEL.1)
}

/// Pods that cannot reach every CoreDNS pod on UDP and TCP 53.
fn dns(explainer: &Explainer) -> Vec<Warning> {
    let has_dns = explainer
        .state()
        .pods
        .values()
        .any(|p| is_dns_pod(p) && p.in_peer_sets());
    let assumed;
    let engine = if has_dns {
        explainer
    } else {
        let mut state = explainer.state().clone();
        let extra = crate::load::load_str("lint: assumed CoreDNS pod", ASSUMED_DNS_POD)
            .expect("the assumed CoreDNS pod loads");
        if state.merge_from(&extra).is_err() {
            return Vec::new();
        }
        assumed = Explainer::new(&state, explainer.mode());
        &assumed
    };
    let dns_pods: Vec<PodRef> = engine
        .state()
        .pods
        .values()
        .filter(|p| is_dns_pod(p) && p.in_peer_sets())
        .map(Pod::key)
        .collect();
    type Key = (Vec<PolicyRef>, Vec<ClusterRuleRef>, Vec<Protocol>, bool);
    let mut groups: BTreeMap<Key, Vec<PodRef>> = BTreeMap::new();
    for pod in explainer.enforced_pods().filter(|p| !is_dns_pod(p)) {
        let mut policies: Vec<PolicyRef> = Vec::new();
        let mut cluster_rules: Vec<ClusterRuleRef> = Vec::new();
        let mut blocked_on: Vec<Protocol> = Vec::new();
        let mut passes_now = true;
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            for dns_pod in &dns_pods {
                let Ok(found) = engine.explain(
                    &Endpoint::Pod(pod.key()),
                    &Endpoint::Pod(dns_pod.clone()),
                    protocol,
                    53,
                ) else {
                    continue;
                };
                for e in found.iter().filter(|e| blocked(e)) {
                    passes_now &= e.allowed();
                    if !blocked_on.contains(&protocol) {
                        blocked_on.push(protocol);
                    }
                    for p in denying_policies(e) {
                        if !policies.contains(&p) {
                            policies.push(p);
                        }
                    }
                    for r in denying_cluster_rules(e) {
                        if !cluster_rules.contains(&r) {
                            cluster_rules.push(r);
                        }
                    }
                }
            }
        }
        if !blocked_on.is_empty() {
            policies.sort();
            cluster_rules.sort();
            groups
                .entry((policies, cluster_rules, blocked_on, passes_now))
                .or_default()
                .push(pod.key());
        }
    }
    let assumed_note = if has_dns {
        ""
    } else {
        " (no CoreDNS pod in the input: one was assumed)"
    };
    groups
        .into_iter()
        .map(|((policies, cluster_rules, protocols, passes_now), pods)| {
            let protocols: Vec<&str> = protocols
                .iter()
                .map(|p| match p {
                    Protocol::Udp => "UDP 53",
                    Protocol::Tcp => "TCP 53",
                    Protocol::Sctp => "SCTP 53",
                })
                .collect();
            let mode_note = if explainer.mode() == EnforcingMode::Strict {
                "; in strict mode every endpoint a pod reaches needs a policy, CoreDNS included"
            } else {
                ""
            };
            Warning {
                caution: Caution::DnsBlocked,
                message: format!(
                    "pods {} cannot reach DNS (CoreDNS in {DNS_NAMESPACE}, {}: {}) on {}: denied by {}{mode_note}{assumed_note}{}",
                    names(&pods),
                    DNS_LABEL.0,
                    DNS_LABEL.1,
                    protocols.join(" and "),
                    isolation_text(&policies, &cluster_rules),
                    audit_note(passes_now),
                ),
                policies,
                cluster_policies: cluster_names(&cluster_rules),
                pods,
            }
        })
        .collect()
}

/// The pods `policy` selects (as the resolver does), finished ones aside.
fn selected<'s>(state: &'s ClusterState, policy: &NetworkPolicy) -> Vec<&'s Pod> {
    state
        .pods
        .values()
        .filter(|p| !matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed) && policy.selects(p))
        .collect()
}

/// `selects-no-pod` and `host-network-selected`.
fn selection(state: &ClusterState, policy: &NetworkPolicy) -> Vec<Warning> {
    let pods = selected(state, policy);
    if pods.is_empty() {
        return vec![Warning {
            caution: Caution::SelectsNoPod,
            policies: vec![policy.key()],
            cluster_policies: Vec::new(),
            pods: Vec::new(),
            message: format!(
                "policy {} selects no pod of namespace {}: check its podSelector and namespace",
                policy.key(),
                policy.namespace
            ),
        }];
    }
    let host: Vec<PodRef> = pods
        .iter()
        .filter(|p| p.host_network)
        .map(|p| p.key())
        .collect();
    if host.is_empty() {
        return Vec::new();
    }
    vec![Warning {
        caution: Caution::HostNetworkSelected,
        policies: vec![policy.key()],
        cluster_policies: Vec::new(),
        message: format!(
            "policy {} selects host-network pods {}: no policy applies to them (they use the node's network; strict mode's default deny does not reach them either)",
            policy.key(),
            names(&host)
        ),
        pods: host,
    }]
}

/// `ip-block-covers-pods`: an ipBlock (other than "anywhere") holding pod addresses.
fn ip_blocks(state: &ClusterState, policy: &NetworkPolicy) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for direction in Direction::BOTH {
        let field = match direction {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        };
        for (rule_index, rule) in policy.rules(direction).iter().enumerate() {
            for (peer_index, peer) in rule.peers.iter().enumerate() {
                let Peer::IpBlock(block) = peer else { continue };
                if block.cidr.prefix_len() == 0 {
                    continue;
                }
                let covered: Vec<PodRef> = state
                    .pods
                    .values()
                    .filter(|p| {
                        p.in_peer_sets()
                            && p.ips.iter().any(|ip| {
                                block.cidr.contains(ip)
                                    && !block.except.iter().any(|e| e.contains(ip))
                            })
                    })
                    .map(Pod::key)
                    .collect();
                if covered.is_empty() {
                    continue;
                }
                warnings.push(Warning {
                    caution: Caution::IpBlockCoversPods,
                    policies: vec![policy.key()],
                    cluster_policies: Vec::new(),
                    message: format!(
                        "policy {} {direction} rule {rule_index} {field}[{peer_index}]: ipBlock {} holds the addresses of pods {}: pod addresses change with every restart, select pods with podSelector/namespaceSelector instead",
                        policy.key(),
                        block.cidr,
                        names(&covered)
                    ),
                    pods: covered,
                });
            }
        }
    }
    warnings
}

/// `named-port-undeclared`: a port name no pod it could mean declares.
fn named_ports(state: &ClusterState, policy: &NetworkPolicy) -> Vec<Warning> {
    let selected_pods = selected(state, policy);
    let mut warnings = Vec::new();
    for direction in Direction::BOTH {
        for (rule_index, rule) in policy.rules(direction).iter().enumerate() {
            for port in &rule.ports {
                let Some(PortRef::Name(name)) = &port.port else {
                    continue;
                };
                let declared = |p: &&Pod| p.named_port(name, port.protocol).is_some();
                let (found, whose) = match direction {
                    Direction::Ingress => (
                        selected_pods.iter().any(declared),
                        "the pods the policy selects",
                    ),
                    Direction::Egress => (state.pods.values().any(|p| declared(&p)), "any pod"),
                };
                if found {
                    continue;
                }
                warnings.push(Warning {
                    caution: Caution::NamedPortUndeclared,
                    policies: vec![policy.key()],
                    cluster_policies: Vec::new(),
                    pods: selected_pods.iter().map(|p| p.key()).collect(),
                    message: format!(
                        "policy {} {direction} rule {rule_index}: port {name:?}/{:?} is declared by none of {whose}: the port admits nothing",
                        policy.key(),
                        port.protocol
                    ),
                });
            }
        }
    }
    warnings
}

/// `cluster-unenforceable-peer`: the resolver's reports of rules with `domainNames`
/// peers, with the pods the policy applies to.
fn cluster_unenforceable(explainer: &Explainer) -> Vec<Warning> {
    let state = explainer.state();
    explainer
        .tiers()
        .issues
        .iter()
        .map(|issue| Warning {
            caution: Caution::ClusterUnenforceablePeer,
            policies: Vec::new(),
            cluster_policies: vec![issue.rule.policy.clone()],
            pods: state
                .cluster_policies
                .get(&issue.rule.policy)
                .map(|p| cluster_subjects(state, p))
                .unwrap_or_default(),
            message: issue.to_string(),
        })
        .collect()
}

/// The live pods a cluster policy applies to.
fn cluster_subjects(state: &ClusterState, policy: &ClusterNetworkPolicy) -> Vec<PodRef> {
    state
        .pods
        .values()
        .filter(|p| !matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed))
        .filter(|p| policy.selects(p, &state.namespace_labels(&p.namespace)))
        .map(Pod::key)
        .collect()
}

/// `cluster-selects-no-pod`.
fn cluster_selection(state: &ClusterState, policy: &ClusterNetworkPolicy) -> Vec<Warning> {
    if !cluster_subjects(state, policy).is_empty() {
        return Vec::new();
    }
    vec![Warning {
        caution: Caution::ClusterSelectsNoPod,
        policies: Vec::new(),
        cluster_policies: vec![policy.name.clone()],
        pods: Vec::new(),
        message: format!(
            "{} ClusterNetworkPolicy {} applies to no pod: check its subject",
            policy.tier, policy.name
        ),
    }]
}

/// Does every connection `later` matches also match `earlier` (both of one tier and
/// direction)? Only for rules the datapath enforces as written (no `domainNames`).
fn covers(
    earlier: (&ClusterNetworkPolicy, &ClusterRule),
    later: (&ClusterNetworkPolicy, &ClusterRule),
) -> bool {
    let enforceable = |r: &ClusterRule| r.peers.iter().all(ClusterPeer::is_enforceable);
    let everyone = LabelSelector::everything();
    let earlier_selects_all = earlier.0.subject.namespace_selector == everyone
        && earlier.0.subject.pod_selector == everyone;
    // A policy read from ClusterPolicyEndpoints names its pods instead of selecting.
    let subject_ok = match (&earlier.0.subject_pods, &later.0.subject_pods) {
        (None, None) => earlier.0.subject == later.0.subject || earlier_selects_all,
        (Some(earlier_pods), Some(later_pods)) => later_pods.is_subset(earlier_pods),
        (None, Some(_)) => earlier_selects_all,
        (Some(_), None) => false,
    };
    let peers_ok = later.1.peers.iter().all(|p| earlier.1.peers.contains(p));
    let ports_ok =
        earlier.1.ports.is_empty() || later.1.ports.iter().all(|p| earlier.1.ports.contains(p));
    enforceable(earlier.1) && enforceable(later.1) && subject_ok && peers_ok && ports_ok
}

/// `cluster-rule-shadowed`: rules an earlier rule (in evaluation order, which the
/// resolver's rule ids follow) always matches first.
fn cluster_shadowed(explainer: &Explainer) -> Vec<Warning> {
    let state = explainer.state();
    let rule_of = |r: &ClusterRuleRef| {
        let policy = state.cluster_policies.get(&r.policy)?;
        Some((policy, policy.rules(r.direction).get(r.rule_index)?))
    };
    let ordered: Vec<&ClusterRuleRef> = explainer
        .tiers()
        .table
        .iter()
        .map(|(_, e)| &e.rule)
        .collect();
    let mut warnings = Vec::new();
    for (j, later) in ordered.iter().enumerate() {
        let Some(later_rule) = rule_of(later) else {
            continue;
        };
        let shadow = ordered[..j].iter().find(|earlier| {
            earlier.tier == later.tier
                && earlier.direction == later.direction
                && rule_of(earlier).is_some_and(|e| covers(e, later_rule))
        });
        let Some(earlier) = shadow else { continue };
        let earlier_action = rule_of(earlier).map(|e| e.1.action);
        let tie =
            if earlier.priority == later.priority && earlier_action != Some(later_rule.1.action) {
                " (at equal priority Deny is tried before Accept, and Accept before Pass)"
            } else {
                ""
            };
        let mut cluster_policies = vec![later.policy.clone(), earlier.policy.clone()];
        cluster_policies.dedup();
        warnings.push(Warning {
            caution: Caution::ClusterRuleShadowed,
            policies: Vec::new(),
            cluster_policies,
            pods: cluster_subjects(state, later_rule.0),
            message: format!(
                "{later} ({}) is shadowed by {earlier} ({}), which is tried first{tie} and matches every connection it would (subject, peers and ports): it never decides anything",
                later_rule.1.action,
                earlier_action.map_or("?", |a| a.as_str()),
            ),
        });
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: x, namespace: a, labels: {app: x}}
status: {phase: Running, podIPs: [{ip: 10.0.0.1}]}
"#;

    fn shadowed(cluster: &str) -> Vec<String> {
        let state = crate::load::load_str("lint.yaml", &format!("{PODS}---\n{cluster}")).unwrap();
        lint(&state, EnforcingMode::Standard)
            .into_iter()
            .filter(|w| w.caution == Caution::ClusterRuleShadowed)
            .map(|w| w.message)
            .collect()
    }

    #[test]
    fn a_later_rule_of_the_same_policy_with_narrower_peers_is_shadowed() {
        let found = shadowed(
            r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: p}
spec:
  tier: Baseline
  priority: 3
  subject: {namespaces: {}}
  egress:
  - action: Accept
    to: [{networks: [10.1.0.0/16]}, {networks: [10.2.0.0/16]}]
  - action: Pass
    to: [{networks: [10.2.0.0/16]}]
    ports: [{portNumber: {protocol: UDP, port: 53}}]
"#,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "Baseline ClusterNetworkPolicy p (priority 3) egress rule 1 (Pass) is shadowed by Baseline ClusterNetworkPolicy p (priority 3) egress rule 0 (Accept)"
            ),
            "{found:?}"
        );
        // At equal priority a Deny is tried before an Accept, whatever the rule order:
        // the same rules with a Deny second shadow nothing.
        let found = shadowed(
            r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: p}
spec:
  tier: Baseline
  priority: 3
  subject: {namespaces: {}}
  egress:
  - action: Accept
    to: [{networks: [10.1.0.0/16]}, {networks: [10.2.0.0/16]}]
  - action: Deny
    to: [{networks: [10.2.0.0/16]}]
    ports: [{portNumber: {protocol: UDP, port: 53}}]
"#,
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn rules_with_domain_names_or_other_peers_or_subjects_are_not_shadowed() {
        for later in [
            // domainNames: the Deny fails closed, wider than it reads.
            "to: [{domainNames: [example.com]}]",
            // Other peers.
            "to: [{networks: [10.3.0.0/16]}]",
        ] {
            let text = format!(
                r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {{name: p}}
spec:
  tier: Admin
  priority: 3
  subject: {{namespaces: {{}}}}
  egress:
  - action: Accept
    to: [{{networks: [10.1.0.0/16]}}]
  - action: Deny
    {later}
"#
            );
            assert!(shadowed(&text).is_empty(), "{later}");
        }
        // A narrower subject first does not cover a wider one.
        let found = shadowed(
            r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: narrow}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {matchLabels: {team: a}}}
  egress: [{action: Deny, to: [{networks: [10.1.0.0/16]}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: wide}
spec:
  tier: Admin
  priority: 2
  subject: {namespaces: {}}
  egress: [{action: Accept, to: [{networks: [10.1.0.0/16]}]}]
"#,
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn named_pod_subjects_shadow_only_when_they_cover_the_later_pods() {
        const TWO: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: first}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {}}
  egress: [{action: Deny, to: [{networks: [10.1.0.0/16]}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: second}
spec:
  tier: Admin
  priority: 2
  subject: {namespaces: {}}
  egress: [{action: Accept, to: [{networks: [10.1.0.0/16]}]}]
"#;
        let shadowed_with = |first: Option<&[&str]>, second: Option<&[&str]>| {
            let mut state =
                crate::load::load_str("lint.yaml", &format!("{PODS}---\n{TWO}")).unwrap();
            let pods = |names: Option<&[&str]>| {
                names.map(|n| {
                    n.iter()
                        .map(|name| crate::model::ObjectRef::new("a", *name))
                        .collect()
                })
            };
            state
                .cluster_policies
                .get_mut("first")
                .unwrap()
                .subject_pods = pods(first);
            state
                .cluster_policies
                .get_mut("second")
                .unwrap()
                .subject_pods = pods(second);
            lint(&state, EnforcingMode::Standard)
                .into_iter()
                .filter(|w| w.caution == Caution::ClusterRuleShadowed)
                .count()
        };
        assert_eq!(shadowed_with(None, None), 1, "selectors alike");
        assert_eq!(
            shadowed_with(Some(&["x", "y"]), Some(&["x"])),
            1,
            "superset"
        );
        assert_eq!(shadowed_with(Some(&["y"]), Some(&["x"])), 0, "other pods");
        assert_eq!(
            shadowed_with(Some(&["x"]), None),
            0,
            "named pods vs selector"
        );
        assert_eq!(shadowed_with(None, Some(&["x"])), 1, "select-all first");
    }
}
