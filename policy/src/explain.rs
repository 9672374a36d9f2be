//! `explain`: why a connection is allowed or denied, in each direction, decided by the
//! agent's own engine. The cluster state is resolved as if every pod ran on one node
//! we model (`Resolver`), planned into map writes (`Planner`), applied to the in-memory
//! maps (`MapModel`), and each direction is judged with `MapModel::decide`, the same
//! longest-prefix lookup and first admitting rule the kernel runs. The verdict's
//! policy id is named through the resolution's `PolicyTable`; the only thing worked
//! out here is which `from`/`to` entry of the allowing rule holds the peer, to say so.
//!
//! Cluster policy tiers (ClusterNetworkPolicy, Admin and Baseline) are walked with
//! the resolver's own tier order (`Tiers::decide`): the verdict's deciding tier, the
//! Admin rule that matched first (Accept, Deny or Pass), whether NetworkPolicies
//! select the pod, the Baseline rule consulted for a pod they do not select, and the
//! default. The verdict itself stays the map model's (the kernel's lookup, into which
//! the resolver folds the tiers); the tier decision names why.
//!
//! A connection is judged twice: the source pod's egress (its interface sees the
//! packet leave) and the destination pod's ingress. A side that is not a pod we
//! enforce (a bare address, a host-network pod, a finished pod) has no enforcement.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use datapath_common::{REASON_POLICY, Rule, VERDICT_AUDIT, rule_admits};
use ipnet::IpNet;

use crate::cluster::{ClusterAction, ClusterRuleRef, Tier};
use crate::ids::RuleRef;
use crate::maps::MapModel;
use crate::model::{ClusterState, Direction, Peer, Pod, PodPhase, PodRef, PolicyRef, Protocol};
use crate::plan::Planner;
use crate::resolve::{DirectionRules, EnforcingMode, PodState, ResolveOptions, Resolved, Resolver};
use crate::tiers::{DecidingTier, TierDecision, Tiers, resolve_tiers};

/// The node every pod is put on for explain, so that every pod is local.
const EXPLAIN_NODE: &str = "netpol-agent-explain";

/// Why `explain` could not take its input. Each variant names the input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExplainError {
    #[error("{input:?}: {message}")]
    BadTarget { input: String, message: String },
    #[error("pod {pod}: not in the cluster state")]
    UnknownPod { pod: PodRef },
    #[error("pod {pod}: has no address (status.podIP) to explain a connection with")]
    NoAddress { pod: PodRef },
    #[error("{from} -> {to}: no address family in common")]
    NoCommonFamily { from: String, to: String },
    #[error("{input:?}: no port given and {pod} declares no container port; write {pod}:PORT")]
    NoPort { input: String, pod: PodRef },
}

/// One side of a connection as the user names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    Pod(PodRef),
    Ip(IpAddr),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Pod(pod) => pod.fmt(f),
            Endpoint::Ip(ip) => ip.fmt(f),
        }
    }
}

/// A destination with its optional port and protocol (`ns/pod:80/TCP`, `10.1.2.3:53/UDP`,
/// `[fd00::3]:80`, `ns/pod`, `10.1.2.3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub endpoint: Endpoint,
    pub port: Option<u16>,
    pub protocol: Protocol,
}

fn bad(input: &str, message: impl Into<String>) -> ExplainError {
    ExplainError::BadTarget {
        input: input.to_owned(),
        message: message.into(),
    }
}

fn parse_protocol(input: &str, text: &str) -> Result<Protocol, ExplainError> {
    match text.to_ascii_uppercase().as_str() {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        _ => Err(bad(
            input,
            format!("protocol {text:?}: expected TCP, UDP or SCTP"),
        )),
    }
}

fn parse_port(input: &str, text: &str) -> Result<u16, ExplainError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(bad(input, format!("port {text:?}: expected 1 to 65535"))),
    }
}

fn parse_pod(input: &str, text: &str) -> Result<Endpoint, ExplainError> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(Endpoint::Pod(PodRef::new(ns, name)))
        }
        _ => Err(bad(
            input,
            "expected NAMESPACE/POD or an IP address (10.1.2.3, fd00::3)",
        )),
    }
}

impl Target {
    /// Parses `NS/POD[:PORT[/PROTO]]` or `IP`, `IP:PORT[/PROTO]`, `[IPv6]:PORT[/PROTO]`.
    /// The protocol defaults to TCP.
    ///
    /// # Errors
    /// `BadTarget` naming `input` and what is wrong with it.
    ///
    /// # Examples
    /// ```
    /// use policy::explain::{Endpoint, Target};
    /// let t = Target::parse("[fd00::3]:53/UDP").unwrap();
    /// assert_eq!(t.endpoint, Endpoint::Ip("fd00::3".parse().unwrap()));
    /// assert_eq!(t.port, Some(53));
    /// assert!(Target::parse("stars/backend:99999").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ExplainError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(bad(input, "empty"));
        }
        // A bare address, IPv6 included (its colons are not a port).
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self {
                endpoint: Endpoint::Ip(ip),
                port: None,
                protocol: Protocol::Tcp,
            });
        }
        let (host, rest) = if let Some(inner) = text.strip_prefix('[') {
            let (addr, rest) = inner
                .split_once(']')
                .ok_or_else(|| bad(input, "an opening '[' without ']'"))?;
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| bad(input, format!("{addr:?} is not an IPv6 address")))?;
            if !ip.is_ipv6() {
                return Err(bad(input, "brackets are for IPv6 addresses"));
            }
            let rest = match rest {
                "" => None,
                r => Some(
                    r.strip_prefix(':')
                        .ok_or_else(|| bad(input, "expected ':PORT' after ']'"))?,
                ),
            };
            (Endpoint::Ip(ip), rest)
        } else {
            let (host, rest) = match text.rsplit_once(':') {
                Some((h, r)) => (h, Some(r)),
                None => (text, None),
            };
            let endpoint = match host.parse::<IpAddr>() {
                Ok(IpAddr::V4(v4)) => Endpoint::Ip(IpAddr::V4(v4)),
                Ok(IpAddr::V6(_)) => {
                    return Err(bad(
                        input,
                        "write an IPv6 address with a port as [ADDR]:PORT",
                    ));
                }
                Err(_) if host.contains('/') => parse_pod(input, host)?,
                Err(_) => {
                    return Err(bad(
                        input,
                        "expected NAMESPACE/POD or an IP address (10.1.2.3, fd00::3)",
                    ));
                }
            };
            (endpoint, rest)
        };
        let (port, protocol) = match rest {
            None => (None, Protocol::Tcp),
            Some(rest) => {
                let (port, protocol) = match rest.split_once('/') {
                    Some((p, proto)) => (p, parse_protocol(input, proto)?),
                    None => (rest, Protocol::Tcp),
                };
                (Some(parse_port(input, port)?), protocol)
            }
        };
        Ok(Self {
            endpoint: host,
            port,
            protocol,
        })
    }
}

/// Parses a source: `NS/POD` or an address, without a port.
///
/// # Errors
/// `BadTarget` naming `input`.
pub fn parse_source(input: &str) -> Result<Endpoint, ExplainError> {
    let target = Target::parse(input)?;
    if target.port.is_some() {
        return Err(bad(
            input,
            "a source takes no port (the port is the destination's)",
        ));
    }
    Ok(target.endpoint)
}

/// One end of a judged connection: the address used, and the pod behind it if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    pub ip: IpAddr,
    /// The pod named, or the live pod holding `ip` when an address was named.
    pub pod: Option<PodRef>,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pod {
            Some(pod) => write!(f, "{pod} ({})", self.ip),
            None => self.ip.fmt(f),
        }
    }
}

/// How a policy takes part: enforcing, or in audit mode (what it would deny passes and
/// is reported as AUDIT; it acts only where no enforcing policy selects the pod).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyMode {
    Enforce,
    Audit,
}

impl PolicyMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::Audit => "audit",
        }
    }
}

/// A policy selecting the enforcing pod in the judged direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectingPolicy {
    pub policy: PolicyRef,
    pub mode: PolicyMode,
}

/// The `from` / `to` entry of a rule that holds the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerEntry {
    /// The rule has no `from` / `to`: every peer.
    Any,
    /// Entry `n` of `from` / `to`.
    Index(usize),
    /// Not found (the rule admitted the peer through another of its entries' prefixes).
    Unknown,
}

/// The rule that admitted the connection in one direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowingRule {
    pub rule: RuleRef,
    /// The peer prefix whose entry the lookup found (the longest match).
    pub prefix: IpNet,
    pub peer: PeerEntry,
}

/// Why a side is not enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotEnforced {
    /// An address no live pod holds (outside the cluster, a node, a service VIP...).
    NotAPod,
    /// A host-network pod shares its node's network: no policy applies to it.
    HostNetwork,
    /// A Succeeded or Failed pod has no interface.
    Finished,
}

/// A cluster policy rule that matched the connection in its tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMatch {
    pub rule: ClusterRuleRef,
    /// The action as written.
    pub written: ClusterAction,
    /// The action enforced: `Deny` for a Deny or Pass rule whose `domainNames` peers
    /// make it fail closed.
    pub action: ClusterAction,
}

impl ClusterMatch {
    pub fn fails_closed(&self) -> bool {
        self.action != self.written
    }
}

impl fmt::Display for ClusterMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}", self.action, self.rule)?;
        if self.fails_closed() {
            write!(
                f,
                " (a {} rule with domainNames peers, which fails closed)",
                self.written
            )?;
        }
        Ok(())
    }
}

/// What one step of the tier order did with the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// The first rule of the tier that admits the connection (Accept and Deny decide,
    /// Pass goes on).
    Matched(ClusterMatch),
    /// No rule of the tier matches: the next step decides.
    NoMatch,
    /// NetworkPolicies select the pod in this direction: they decide.
    Selected,
    /// No NetworkPolicy selects the pod in this direction: Baseline is consulted.
    NotSelected,
    /// This step decided (the node's own addresses, or the default).
    Decided,
}

/// One step of the tier order, in the order the resolver applies them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierStep {
    pub tier: DecidingTier,
    pub outcome: StepOutcome,
}

impl fmt::Display for TierStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.tier)?;
        match &self.outcome {
            StepOutcome::Matched(m) => m.fmt(f),
            StepOutcome::NoMatch => f.write_str("no rule matches"),
            StepOutcome::Selected => f.write_str("policies select the pod and decide"),
            StepOutcome::NotSelected => f.write_str("no policy selects the pod"),
            StepOutcome::Decided => f.write_str("decides"),
        }
    }
}

/// Why a direction has its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No enforcement on this side: allowed.
    NotEnforced(NotEnforced),
    /// Standard mode, no policy selects the pod in this direction.
    DefaultAllow,
    /// Strict mode, no policy selects the pod in this direction: denied.
    StrictDefaultDeny,
    /// A rule of a selecting policy admits the peer, protocol and port.
    Allowed(AllowingRule),
    /// The peer is an address of the pod's own node (kubelet probes).
    NodeLocal,
    /// Policies select the pod and none of their rules admits this: denied.
    NoRuleMatched,
    /// Only audit-mode policies select the pod and none of their rules admits this:
    /// passes, reported as AUDIT.
    Audited,
    /// The pod's rules in this direction do not fit the datapath: denied.
    Unenforceable,
    /// An Admin or Baseline cluster policy rule accepts or denies it.
    Cluster(ClusterMatch),
}

impl Reason {
    /// A stable short name (`--json`).
    pub const fn code(&self) -> &'static str {
        match self {
            Reason::NotEnforced(NotEnforced::NotAPod) => "not-a-pod",
            Reason::NotEnforced(NotEnforced::HostNetwork) => "host-network",
            Reason::NotEnforced(NotEnforced::Finished) => "pod-finished",
            Reason::DefaultAllow => "default-allow",
            Reason::StrictDefaultDeny => "strict-default-deny",
            Reason::Allowed(_) => "allowed-by-rule",
            Reason::NodeLocal => "node-local",
            Reason::NoRuleMatched => "no-rule-matched",
            Reason::Audited => "audit",
            Reason::Unenforceable => "unenforceable",
            Reason::Cluster(m) => match (m.rule.tier, m.action) {
                (Tier::Admin, ClusterAction::Accept) => "admin-accept",
                (Tier::Admin, _) => "admin-deny",
                (Tier::Baseline, ClusterAction::Accept) => "baseline-accept",
                (Tier::Baseline, _) => "baseline-deny",
            },
        }
    }
}

/// One direction of a connection: the source's egress or the destination's ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectionVerdict {
    pub direction: Direction,
    /// The pod whose interface judges this direction; `None` when the side is not a pod.
    pub pod: Option<PodRef>,
    pub allowed: bool,
    pub reason: Reason,
    /// The policies selecting `pod` in `direction` (empty when nothing is enforced).
    pub selected_by: Vec<SelectingPolicy>,
    /// The tier order step that decided (`None` when nothing is enforced).
    pub tier: Option<DecidingTier>,
    /// The tier order as walked for this connection; empty when the input holds no
    /// cluster policy.
    pub walk: Vec<TierStep>,
}

impl DirectionVerdict {
    /// The policies that isolate the pod when this direction is denied or audited
    /// (what a DENY or AUDIT line names); empty when allowed, or when a cluster rule
    /// decided.
    pub fn isolated_by(&self) -> Vec<&PolicyRef> {
        if (self.allowed && self.reason != Reason::Audited)
            || matches!(self.reason, Reason::Cluster(_))
        {
            return Vec::new();
        }
        self.selected_by.iter().map(|s| &s.policy).collect()
    }

    /// The cluster rule that decided this direction, if one did.
    pub fn cluster_rule(&self) -> Option<&ClusterMatch> {
        match &self.reason {
            Reason::Cluster(m) => Some(m),
            _ => None,
        }
    }

    /// The cluster rule that denied this direction, if one did.
    pub fn denied_by_cluster(&self) -> Option<&ClusterMatch> {
        self.cluster_rule().filter(|_| !self.allowed)
    }
}

/// A judged connection in one address family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub from: Side,
    pub to: Side,
    pub protocol: Protocol,
    pub port: u16,
    /// The source pod's egress.
    pub egress: DirectionVerdict,
    /// The destination pod's ingress.
    pub ingress: DirectionVerdict,
}

impl Explanation {
    /// Does the connection pass both directions?
    pub fn allowed(&self) -> bool {
        self.egress.allowed && self.ingress.allowed
    }
}

/// The explain engine over one cluster state: resolved, planned and applied once.
#[derive(Debug)]
pub struct Explainer {
    state: ClusterState,
    mode: EnforcingMode,
    options: ResolveOptions,
    resolved: Resolved,
    /// The cluster tiers, resolved as the resolver resolves them (same rule ids).
    tiers: Tiers,
    maps: MapModel,
    /// Address -> the live pods holding it (more than one only when misconfigured).
    by_address: BTreeMap<IpAddr, Vec<PodRef>>,
}

impl Explainer {
    /// Resolves `state` in `mode` with every pod on one modelled node.
    ///
    /// # Panics
    /// Never for plans of the planner (the map model accepts every plan it makes); a
    /// refusal would be a planner bug, reported as a panic naming it.
    pub fn new(state: &ClusterState, mode: EnforcingMode) -> Self {
        let mut local = state.clone();
        for pod in local.pods.values_mut() {
            pod.node_name = Some(EXPLAIN_NODE.to_owned());
        }
        let options = ResolveOptions {
            node_name: EXPLAIN_NODE.to_owned(),
            node_addresses: Vec::new(),
            mode,
        };
        let resolved = Resolver::new().resolve(&local, &options);
        let tiers = resolve_tiers(&local, &options);
        let mut maps = MapModel::new();
        let ops = Planner::new().plan(&resolved);
        if let Err(e) = maps.apply(&ops) {
            panic!("explain: the planner's writes do not apply to the map model: {e}");
        }
        let mut by_address: BTreeMap<IpAddr, Vec<PodRef>> = BTreeMap::new();
        for pod in local.pods.values().filter(|p| p.in_peer_sets()) {
            for ip in &pod.ips {
                by_address.entry(*ip).or_default().push(pod.key());
            }
        }
        Self {
            state: local,
            mode,
            options,
            resolved,
            tiers,
            maps,
            by_address,
        }
    }

    /// The cluster tiers of the modelled node (every pod local).
    pub fn tiers(&self) -> &Tiers {
        &self.tiers
    }

    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    pub fn mode(&self) -> EnforcingMode {
        self.mode
    }

    /// The pods whose interfaces enforce policy (not host-network, not finished).
    pub fn enforced_pods(&self) -> impl Iterator<Item = &Pod> {
        self.resolved
            .pods
            .keys()
            .filter_map(|key| self.state.pods.get(key))
    }

    /// The live pod holding `ip`, if one does.
    pub fn pod_at(&self, ip: IpAddr) -> Option<&PodRef> {
        self.by_address.get(&ip).and_then(|pods| pods.first())
    }

    fn pod(&self, pod: &PodRef) -> Result<&Pod, ExplainError> {
        self.state
            .pods
            .get(pod)
            .ok_or_else(|| ExplainError::UnknownPod { pod: pod.clone() })
    }

    /// The ports to explain for `target`: its own, or every port its pod declares.
    ///
    /// # Errors
    /// `NoPort` when neither gives one; `UnknownPod`.
    pub fn ports_of(
        &self,
        input: &str,
        target: &Target,
    ) -> Result<Vec<(Protocol, u16)>, ExplainError> {
        if let Some(port) = target.port {
            return Ok(vec![(target.protocol, port)]);
        }
        let pod = match &target.endpoint {
            Endpoint::Pod(pod) => self.pod(pod)?,
            Endpoint::Ip(ip) => match self.pod_at(*ip) {
                Some(pod) => self.pod(pod)?,
                None => return Err(bad(input, "an address needs a port (ADDR:PORT[/PROTO])")),
            },
        };
        let mut ports: Vec<(Protocol, u16)> =
            pod.ports.iter().map(|p| (p.protocol, p.port)).collect();
        ports.sort();
        ports.dedup();
        if ports.is_empty() {
            return Err(ExplainError::NoPort {
                input: input.to_owned(),
                pod: pod.key(),
            });
        }
        Ok(ports)
    }

    /// Judges `from` -> `to` on `protocol`/`port`, once per address family both sides
    /// have (an address fixes its family).
    ///
    /// # Errors
    /// An unknown pod, a pod without an address, or no family in common.
    pub fn explain(
        &self,
        from: &Endpoint,
        to: &Endpoint,
        protocol: Protocol,
        port: u16,
    ) -> Result<Vec<Explanation>, ExplainError> {
        let from_ips = self.addresses(from)?;
        let to_ips = self.addresses(to)?;
        let mut out = Vec::new();
        for src in &from_ips {
            for dst in to_ips.iter().filter(|d| d.is_ipv4() == src.is_ipv4()) {
                let from_side = self.side(from, *src);
                let to_side = self.side(to, *dst);
                out.push(self.explain_sides(from_side, to_side, protocol, port));
            }
        }
        if out.is_empty() {
            return Err(ExplainError::NoCommonFamily {
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        Ok(out)
    }

    fn addresses(&self, endpoint: &Endpoint) -> Result<Vec<IpAddr>, ExplainError> {
        match endpoint {
            Endpoint::Ip(ip) => Ok(vec![*ip]),
            Endpoint::Pod(key) => {
                let pod = self.pod(key)?;
                if pod.ips.is_empty() {
                    return Err(ExplainError::NoAddress { pod: key.clone() });
                }
                Ok(pod.ips.clone())
            }
        }
    }

    fn side(&self, endpoint: &Endpoint, ip: IpAddr) -> Side {
        let pod = match endpoint {
            Endpoint::Pod(pod) => Some(pod.clone()),
            Endpoint::Ip(ip) => self.pod_at(*ip).cloned(),
        };
        Side { ip, pod }
    }

    /// Judges one connection between two resolved sides.
    pub fn explain_sides(
        &self,
        from: Side,
        to: Side,
        protocol: Protocol,
        port: u16,
    ) -> Explanation {
        let egress = self.judge(&from, &to, Direction::Egress, protocol, port);
        let ingress = self.judge(&to, &from, Direction::Ingress, protocol, port);
        Explanation {
            from,
            to,
            protocol,
            port,
            egress,
            ingress,
        }
    }

    /// `pod_side`'s verdict in `direction` with `peer` on the other end.
    fn judge(
        &self,
        pod_side: &Side,
        peer: &Side,
        direction: Direction,
        protocol: Protocol,
        port: u16,
    ) -> DirectionVerdict {
        let not_enforced = |why| DirectionVerdict {
            direction,
            pod: pod_side.pod.clone(),
            allowed: true,
            reason: Reason::NotEnforced(why),
            selected_by: Vec::new(),
            tier: None,
            walk: Vec::new(),
        };
        let Some(key) = &pod_side.pod else {
            return not_enforced(NotEnforced::NotAPod);
        };
        let Some(resolved) = self.resolved.pods.get(key) else {
            let pod = self.state.pods.get(key);
            return not_enforced(match pod {
                Some(p) if p.host_network => NotEnforced::HostNetwork,
                Some(p) if matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed) => {
                    NotEnforced::Finished
                }
                _ => NotEnforced::NotAPod,
            });
        };
        let rules = resolved.direction(direction);
        // The resolver keeps audit policies only where nothing enforcing selects the
        // pod, and then sets the audit state.
        let mode = if rules.state == PodState::PoliciesAudit {
            PolicyMode::Audit
        } else {
            PolicyMode::Enforce
        };
        let selected_by: Vec<SelectingPolicy> = rules
            .isolating
            .iter()
            .map(|policy| SelectingPolicy {
                policy: policy.clone(),
                mode,
            })
            .collect();
        // The verdict: the kernel's lookup over the planned maps (tiers folded in).
        let allowed = self
            .maps
            .decide(key, direction, peer.ip, protocol.number(), port)
            .passes();
        // Why: the resolver's tier order.
        let decided = self.tiers.decide(
            key,
            direction,
            rules,
            &self.options,
            peer.ip,
            protocol.number(),
            port,
        );
        let reason = if !allowed
            && self
                .resolved
                .unenforceable
                .iter()
                .any(|u| &u.pod == key && u.direction == direction)
        {
            Reason::Unenforceable
        } else {
            self.reason(key, direction, peer, &decided)
        };
        DirectionVerdict {
            direction,
            pod: Some(key.clone()),
            allowed,
            reason,
            selected_by,
            tier: Some(decided.tier),
            walk: self.walk(key, direction, rules, peer.ip, protocol, port, &decided),
        }
    }

    /// The reason the tier decision gives.
    fn reason(
        &self,
        key: &PodRef,
        direction: Direction,
        peer: &Side,
        decided: &TierDecision,
    ) -> Reason {
        let decision = &decided.decision;
        match decided.tier {
            DecidingTier::NodeLocal => Reason::NodeLocal,
            DecidingTier::Admin | DecidingTier::Baseline => self
                .cluster_match(decision.policy_id)
                .map_or(Reason::NoRuleMatched, Reason::Cluster),
            DecidingTier::NetworkPolicy => {
                if decision.verdict == VERDICT_AUDIT {
                    Reason::Audited
                } else if decision.passes() && decision.reason == REASON_POLICY {
                    // The table names every id the resolution wrote; keep the verdict.
                    self.allowing_rule(key, direction, peer, decision.policy_id)
                        .map_or(Reason::NoRuleMatched, Reason::Allowed)
                } else {
                    Reason::NoRuleMatched
                }
            }
            DecidingTier::Default => {
                if decision.passes() {
                    Reason::DefaultAllow
                } else {
                    Reason::StrictDefaultDeny
                }
            }
        }
    }

    fn cluster_match(&self, id: u32) -> Option<ClusterMatch> {
        self.tiers.table.get(id).map(|e| ClusterMatch {
            rule: e.rule.clone(),
            written: e.written,
            action: e.action,
        })
    }

    /// The first rule of one tier's entries (prefix -> rules in evaluation order)
    /// matching the connection: the same longest-prefix lookup and first admitting
    /// rule as `Tiers::decide`, to name a Pass (which does not decide).
    fn first_in_tier(
        &self,
        entries: &BTreeMap<IpNet, Vec<Rule>>,
        ip: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> Option<ClusterMatch> {
        let (_, rules) = entries
            .iter()
            .filter(|(net, _)| net.contains(&ip))
            .max_by_key(|(net, _)| net.prefix_len())?;
        let rule = rules
            .iter()
            .find(|r| rule_admits(r, protocol.number(), port))?;
        self.cluster_match(rule.policy_id)
    }

    /// The tier order's steps up to the deciding one; empty without cluster policies.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        key: &PodRef,
        direction: Direction,
        rules: &DirectionRules,
        ip: IpAddr,
        protocol: Protocol,
        port: u16,
        decided: &TierDecision,
    ) -> Vec<TierStep> {
        if self.tiers.table.is_empty() {
            return Vec::new();
        }
        let step = |tier, outcome| TierStep { tier, outcome };
        if decided.tier == DecidingTier::NodeLocal {
            return vec![step(DecidingTier::NodeLocal, StepOutcome::Decided)];
        }
        let tiered = self.tiers.pods.get(key).map(|p| p.direction(direction));
        let matched = |tier: Tier| {
            tiered
                .and_then(|t| self.first_in_tier(t.tier(tier), ip, protocol, port))
                .map_or(StepOutcome::NoMatch, StepOutcome::Matched)
        };
        let mut steps = vec![step(DecidingTier::Admin, matched(Tier::Admin))];
        if decided.tier == DecidingTier::Admin {
            return steps;
        }
        if !rules.isolating.is_empty() {
            steps.push(step(DecidingTier::NetworkPolicy, StepOutcome::Selected));
            return steps;
        }
        steps.push(step(DecidingTier::NetworkPolicy, StepOutcome::NotSelected));
        steps.push(step(DecidingTier::Baseline, matched(Tier::Baseline)));
        if decided.tier == DecidingTier::Baseline {
            return steps;
        }
        steps.push(step(DecidingTier::Default, StepOutcome::Decided));
        steps
    }

    fn allowing_rule(
        &self,
        pod: &PodRef,
        direction: Direction,
        peer: &Side,
        policy_id: u32,
    ) -> Option<AllowingRule> {
        let rule = self.resolved.table.rule(policy_id)?.clone();
        let record = self.maps.pods.get(pod)?;
        let (prefix, _) = self.maps.longest_match_entry(record, direction, peer.ip)?;
        let entry = self.peer_entry(&rule, peer);
        Some(AllowingRule {
            rule,
            prefix,
            peer: entry,
        })
    }

    /// Which `from`/`to` entry of `rule` holds `peer` (for the explanation only: the
    /// verdict is the map lookup's).
    fn peer_entry(&self, rule: &RuleRef, peer: &Side) -> PeerEntry {
        let Some(policy) = self.state.policies.get(&rule.policy) else {
            return PeerEntry::Unknown;
        };
        let Some(spec) = policy.rules(rule.direction).get(rule.rule_index) else {
            return PeerEntry::Unknown;
        };
        if spec.peers.is_empty() {
            return PeerEntry::Any;
        }
        let peer_pod = peer
            .pod
            .as_ref()
            .and_then(|p| self.state.pods.get(p))
            .filter(|p| p.in_peer_sets());
        let found = spec.peers.iter().position(|entry| match entry {
            Peer::IpBlock(block) => {
                block.cidr.contains(&peer.ip) && !block.except.iter().any(|e| e.contains(&peer.ip))
            }
            Peer::Pods {
                pod_selector,
                namespace_selector,
            } => peer_pod.is_some_and(|p| {
                let namespace_ok = match namespace_selector {
                    Some(sel) => sel.matches(&self.state.namespace_labels(&p.namespace)),
                    None => p.namespace == policy.namespace,
                };
                namespace_ok && pod_selector.as_ref().is_none_or(|s| s.matches(&p.labels))
            }),
        });
        found.map_or(PeerEntry::Unknown, PeerEntry::Index)
    }
}

impl fmt::Display for Explanation {
    /// A few lines for people: the connection and its verdict, then each direction.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed() { "ALLOWED" } else { "DENIED" };
        let protocol = match self.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        };
        writeln!(
            f,
            "{} -> {} {protocol} {}: {verdict}",
            self.from, self.to, self.port
        )?;
        for verdict in [&self.egress, &self.ingress] {
            write!(f, "  {verdict}")?;
        }
        Ok(())
    }
}

impl fmt::Display for DirectionVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = self
            .pod
            .as_ref()
            .map_or_else(|| "(not a pod)".to_owned(), ToString::to_string);
        let word = if self.allowed { "allowed" } else { "DENIED" };
        write!(f, "{} of {who}: {word}: ", self.direction)?;
        match &self.reason {
            Reason::NotEnforced(NotEnforced::NotAPod) => {
                f.write_str("no pod behind this address, nothing enforces here")?
            }
            Reason::NotEnforced(NotEnforced::HostNetwork) => {
                f.write_str("host-network pod, no policy applies to it")?
            }
            Reason::NotEnforced(NotEnforced::Finished) => {
                f.write_str("finished pod, it has no interface")?
            }
            Reason::DefaultAllow => write!(f, "no policy selects it for {}", self.direction)?,
            Reason::StrictDefaultDeny => write!(
                f,
                "strict mode and no policy selects it for {}",
                self.direction
            )?,
            Reason::Allowed(rule) => {
                write!(f, "by {}", rule.rule)?;
                let field = match self.direction {
                    Direction::Ingress => "from",
                    Direction::Egress => "to",
                };
                match rule.peer {
                    PeerEntry::Any => write!(f, " (no {field}: every peer)")?,
                    PeerEntry::Index(i) => write!(f, ", {field}[{i}]")?,
                    PeerEntry::Unknown => {}
                }
                write!(f, ", peer prefix {}", rule.prefix)?;
            }
            Reason::NodeLocal => f.write_str("the peer is an address of the pod's node")?,
            Reason::NoRuleMatched => {
                f.write_str("no rule of the policies selecting it admits this")?
            }
            Reason::Audited => f.write_str(
                "AUDIT: no rule admits this, it passes because the policies are in audit mode",
            )?,
            Reason::Unenforceable => {
                f.write_str("its rules do not fit the datapath, the direction is denied")?
            }
            Reason::Cluster(m) => m.fmt(f)?,
        }
        writeln!(f)?;
        if !self.walk.is_empty() {
            let steps: Vec<String> = self.walk.iter().map(ToString::to_string).collect();
            write!(f, "    tiers: {}", steps.join(" -> "))?;
            if let Some(tier) = self.tier {
                write!(f, "; decided by {tier}")?;
            }
            writeln!(f)?;
        }
        if !self.selected_by.is_empty() {
            let names: Vec<String> = self
                .selected_by
                .iter()
                .map(|s| format!("{} ({})", s.policy, s.mode.as_str()))
                .collect();
            let label = if self.isolated_by().is_empty() {
                "selected by"
            } else {
                "isolated by"
            };
            writeln!(f, "    {label}: {}", names.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: b}}
---
apiVersion: v1
kind: Pod
metadata: {name: x, namespace: a, labels: {app: x}}
status: {phase: Running, podIPs: [{ip: 10.0.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: y, namespace: a, labels: {app: y}}
status: {phase: Running, podIPs: [{ip: 10.0.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: z, namespace: b, labels: {app: z}}
status: {phase: Running, podIPs: [{ip: 10.0.0.3}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: y-from-x, namespace: a}
spec:
  podSelector: {matchLabels: {app: y}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: x}}}], ports: [{port: 80}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: pass-a}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {matchLabels: {team: a}}}
  ingress: [{action: Pass, from: [{namespaces: {matchLabels: {team: a}}}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: deny-b-to-a}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {team: b}}}], ports: [{portNumber: {port: 81}}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: baseline-b}
spec:
  tier: Baseline
  priority: 10
  subject: {namespaces: {matchLabels: {team: b}}}
  ingress: [{action: Deny, from: [{namespaces: {}}], ports: [{portNumber: {port: 80}}]}]
"#;

    /// Every reason agrees with the verdict (the tier decision with the map model's
    /// lookup), for every pair, port and mode.
    #[test]
    fn every_reason_agrees_with_the_verdict_in_both_modes() {
        let state = crate::load::load_str("explain-tiers.yaml", STATE).unwrap();
        let pods = ["a/x", "a/y", "b/z"].map(|k| {
            let (ns, name) = k.split_once('/').unwrap();
            PodRef::new(ns, name)
        });
        let mut tiers_seen = std::collections::BTreeSet::new();
        for mode in [EnforcingMode::Standard, EnforcingMode::Strict] {
            let explainer = Explainer::new(&state, mode);
            for from in &pods {
                for to in pods.iter().filter(|p| *p != from) {
                    for port in [80, 81, 82] {
                        let e = explainer
                            .explain(
                                &Endpoint::Pod(from.clone()),
                                &Endpoint::Pod(to.clone()),
                                Protocol::Tcp,
                                port,
                            )
                            .unwrap();
                        for v in [&e[0].egress, &e[0].ingress] {
                            let consistent = match &v.reason {
                                Reason::Cluster(m) => {
                                    v.allowed == (m.action == ClusterAction::Accept)
                                }
                                Reason::DefaultAllow | Reason::Allowed(_) => v.allowed,
                                Reason::StrictDefaultDeny | Reason::NoRuleMatched => !v.allowed,
                                other => panic!("unexpected {other:?}"),
                            };
                            assert!(consistent, "{mode:?} {from} -> {to}:{port}: {v:?}");
                            assert!(!v.walk.is_empty());
                            tiers_seen.insert(v.tier.unwrap());
                        }
                    }
                }
            }
        }
        assert_eq!(
            tiers_seen.into_iter().collect::<Vec<_>>(),
            [
                DecidingTier::Admin,
                DecidingTier::NetworkPolicy,
                DecidingTier::Baseline,
                DecidingTier::Default
            ]
        );
    }

    #[test]
    fn an_admin_pass_is_walked_and_the_network_policy_decides() {
        let state = crate::load::load_str("explain-tiers.yaml", STATE).unwrap();
        let explainer = Explainer::new(&state, EnforcingMode::Standard);
        let x = Endpoint::Pod(PodRef::new("a", "x"));
        let y = Endpoint::Pod(PodRef::new("a", "y"));
        let e = &explainer.explain(&x, &y, Protocol::Tcp, 80).unwrap()[0];
        assert!(e.allowed());
        assert!(matches!(e.ingress.reason, Reason::Allowed(_)));
        assert_eq!(e.ingress.tier, Some(DecidingTier::NetworkPolicy));
        let StepOutcome::Matched(pass) = &e.ingress.walk[0].outcome else {
            panic!("{:?}", e.ingress.walk);
        };
        assert_eq!(pass.rule.policy, "pass-a");
        assert_eq!(pass.action, ClusterAction::Pass);
        // The Pass hands over to the NetworkPolicy, which does not admit port 82.
        let e = &explainer.explain(&x, &y, Protocol::Tcp, 82).unwrap()[0];
        assert!(!e.allowed());
        assert_eq!(e.ingress.reason, Reason::NoRuleMatched);
        let isolated: Vec<String> = e
            .ingress
            .isolated_by()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(isolated, ["a/y-from-x"]);
        // An Admin Deny names itself and no isolating NetworkPolicy.
        let z = Endpoint::Pod(PodRef::new("b", "z"));
        let e = &explainer.explain(&z, &y, Protocol::Tcp, 81).unwrap()[0];
        let denied = e.ingress.denied_by_cluster().expect("an Admin Deny");
        assert_eq!(denied.rule.policy, "deny-b-to-a");
        assert!(e.ingress.isolated_by().is_empty());
        assert_eq!(e.ingress.reason.code(), "admin-deny");
    }
}
