//! Cluster state the pipeline reads to name each endpoint and the deciding policy.
//! The agent builds a plain [`EnrichmentSnapshot`] and publishes it through a
//! [`SnapshotHandle`]; the pipeline thread picks up a new snapshot on its next event
//! without any lock (arc-swap), so a swap never pauses the pipeline.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use datapath_common::abi::{DIRECTION_INGRESS, FAMILY_IPV4, FlowEvent, VERDICT_ACCEPT};

use crate::labels::{self, Tier};

/// What separates the policy names of the `Isolated By` key.
pub const ISOLATED_BY_SEPARATOR: &str = ",";

/// A name flow lines show as a JSON string value: the text, and its JSON-escaped
/// form made once when built, so a line copies the bytes instead of scanning the text
/// for characters to escape. Reads as the text (`Deref<Target = str>`); built from
/// `&str`, `String` or `Arc<str>`. When nothing needs escaping (the usual case: pod
/// and namespace names are DNS labels), both are the same allocation.
#[derive(Clone, Default)]
pub struct JsonText {
    text: Arc<str>,
    escaped: Arc<str>,
}

impl JsonText {
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        let text: Arc<str> = text.into();
        let escaped = if crate::format::write::needs_escape(text.as_bytes()) {
            let mut buf = Vec::with_capacity(text.len() + 8);
            crate::format::write::push_json_str(&mut buf, &text);
            // Escaping keeps UTF-8: it only replaces ASCII bytes with ASCII text.
            String::from_utf8(buf)
                .expect("escaped JSON text is UTF-8")
                .into()
        } else {
            Arc::clone(&text)
        };
        Self { text, escaped }
    }

    /// The text as given.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text escaped as the body of a JSON string (no quotes).
    #[inline]
    pub fn escaped(&self) -> &str {
        &self.escaped
    }
}

impl std::ops::Deref for JsonText {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        &self.text
    }
}

impl AsRef<str> for JsonText {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.text, f)
    }
}

impl std::fmt::Display for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Equal when the texts are (the escaped form follows from the text).
impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for JsonText {}

impl PartialEq<str> for JsonText {
    fn eq(&self, other: &str) -> bool {
        *self.text == *other
    }
}

impl PartialEq<&str> for JsonText {
    fn eq(&self, other: &&str) -> bool {
        *self.text == **other
    }
}

impl From<&str> for JsonText {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for JsonText {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<Arc<str>> for JsonText {
    fn from(text: Arc<str>) -> Self {
        Self::new(text)
    }
}

/// One pod, as flow lines name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub name: JsonText,
    pub namespace: JsonText,
    /// The node the pod runs on.
    pub node: Arc<str>,
    /// For a pod on this node: the policies that select it, `namespace/name` joined by
    /// [`ISOLATED_BY_SEPARATOR`], indexed by direction (`DIRECTION_INGRESS`,
    /// `DIRECTION_EGRESS`); empty when none does, and for pods of other nodes.
    pub isolated_by: [Arc<str>; 2],
}

/// The rule behind one policy id, as flow lines name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyInfo {
    /// The `Policy` value: `namespace/name` of a NetworkPolicy,
    /// `ClusterNetworkPolicy/name` (see [`CLUSTER_POLICY_PREFIX`]) of a cluster
    /// policy, or a fixed name (`node-local`).
    pub name: Arc<str>,
    /// The `Tier` value of a verdict the rule decided.
    pub tier: Tier,
}

impl PolicyInfo {
    pub fn new(name: impl Into<Arc<str>>, tier: Tier) -> Self {
        Self {
            name: name.into(),
            tier,
        }
    }

    /// A cluster policy's rule: named [`CLUSTER_POLICY_PREFIX`] + `name`.
    pub fn cluster(name: &str, tier: Tier) -> Self {
        let mut text = String::with_capacity(CLUSTER_POLICY_PREFIX.len() + name.len());
        text.push_str(CLUSTER_POLICY_PREFIX);
        text.push_str(name);
        Self::new(text, tier)
    }
}

/// A NetworkPolicy rule's name (tier `NETWORK_POLICY`).
impl From<&str> for PolicyInfo {
    fn from(name: &str) -> Self {
        Self::new(name, Tier::NetworkPolicy)
    }
}

/// A NetworkPolicy rule's name (tier `NETWORK_POLICY`).
impl From<String> for PolicyInfo {
    fn from(name: String) -> Self {
        Self::new(name, Tier::NetworkPolicy)
    }
}

/// A NetworkPolicy rule's name (tier `NETWORK_POLICY`).
impl From<Arc<str>> for PolicyInfo {
    fn from(name: Arc<str>) -> Self {
        Self::new(name, Tier::NetworkPolicy)
    }
}

/// What the `Policy` value of a cluster policy's rule starts with. Cluster policies
/// have no namespace; the kind in its place keeps the value apart from every
/// `namespace/name` (namespace names are lower case) and, holding a `/`, from every
/// reason label.
pub const CLUSTER_POLICY_PREFIX: &str = "ClusterNetworkPolicy/";

/// The hasher of the snapshot's maps: foldhash, several times faster than the
/// standard SipHash on the small keys (an address, a policy id) looked up for every
/// line; still seeded per process.
pub type FastHashState = foldhash::fast::RandomState;

/// Pod addresses to pods ([`EnrichmentSnapshot::pods`]); build with `PodMap::default()`.
pub type PodMap = HashMap<IpAddr, PodInfo, FastHashState>;

/// Policy ids to rules ([`EnrichmentSnapshot::policies`]); build with
/// `PolicyMap::default()`.
pub type PolicyMap = HashMap<u32, PolicyInfo, FastHashState>;

/// Everything enrichment needs, immutable once published.
#[derive(Debug, Clone, Default)]
pub struct EnrichmentSnapshot {
    /// Pod addresses (IPv4 and IPv6) to pods, on every node.
    pub pods: PodMap,
    /// Policy ids as the datapath reports them to the rule's policy name and tier.
    pub policies: PolicyMap,
    /// The node this agent runs on (the `Node` key).
    pub node_name: Arc<str>,
}

/// Shared, swappable snapshot: `handle.store(Arc::new(next))` publishes a new one.
pub type SnapshotHandle = Arc<ArcSwap<EnrichmentSnapshot>>;

/// A handle holding `snapshot`.
pub fn snapshot_handle(snapshot: EnrichmentSnapshot) -> SnapshotHandle {
    Arc::new(ArcSwap::from_pointee(snapshot))
}

/// The names one event resolves to in a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    pub src: Option<&'a PodInfo>,
    pub dst: Option<&'a PodInfo>,
    /// `namespace/name`, `ClusterNetworkPolicy/name`, or a reason label (see
    /// [`labels::reason`]) when no policy decided, or `unknown-policy` for an id the
    /// snapshot does not know.
    pub policy: &'a str,
    /// The deciding tier: the deciding rule's, else from the reason (see
    /// [`labels::tier`]); `NETWORK_POLICY` for an id the snapshot does not know.
    pub tier: Tier,
    /// The peer pod's node when the peer is a pod on another node, else `""`.
    pub peer_node: &'a str,
    pub node: &'a str,
    /// For a packet that did not pass as allowed (DENY) and that no cluster rule
    /// decided: the policies isolating the pod whose interface decided, in the event's
    /// direction; `""` otherwise.
    pub isolated_by: &'a str,
}

impl EnrichmentSnapshot {
    /// Resolves the endpoints and policy of `ev`.
    #[inline]
    pub fn resolve(&self, ev: &FlowEvent) -> Resolved<'_> {
        let src = self.pods.get(&event_addr(ev.family, &ev.src_addr));
        let dst = self.pods.get(&event_addr(ev.family, &ev.dst_addr));
        let (policy, rule_tier) = if ev.policy_id == 0 {
            (labels::reason(ev.reason), None)
        } else {
            self.policies
                .get(&ev.policy_id)
                .map_or(("unknown-policy", Some(Tier::NetworkPolicy)), |p| {
                    (&*p.name, Some(p.tier))
                })
        };
        let tier = labels::tier(rule_tier, ev.reason);
        let peer = if ev.direction == DIRECTION_INGRESS {
            src
        } else {
            dst
        };
        let peer_node = match peer {
            Some(p) if *p.node != *self.node_name => &p.node,
            _ => "",
        };
        let local = if ev.direction == DIRECTION_INGRESS {
            dst
        } else {
            src
        };
        // A cluster rule's deny is final: no NetworkPolicy rule would let the packet in.
        let by_network_policies = !matches!(tier, Tier::Admin | Tier::Baseline);
        let isolated_by = match local {
            Some(p) if ev.verdict != VERDICT_ACCEPT && by_network_policies => p
                .isolated_by
                .get(usize::from(ev.direction))
                .map_or("", |names| names),
            _ => "",
        };
        Resolved {
            src,
            dst,
            policy,
            tier,
            peer_node,
            node: &self.node_name,
            isolated_by,
        }
    }
}

/// The address of an event field: the first 4 bytes for IPv4, all 16 otherwise.
#[inline]
pub fn event_addr(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_IPV4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath_common::abi::{DIRECTION_EGRESS, FAMILY_IPV6, REASON_NO_RULE_MATCHED};

    fn pod(name: &str, ns: &str, node: &str) -> PodInfo {
        PodInfo {
            name: name.into(),
            namespace: ns.into(),
            node: node.into(),
            ..Default::default()
        }
    }

    fn snapshot() -> EnrichmentSnapshot {
        let mut s = EnrichmentSnapshot {
            node_name: "node-a".into(),
            ..Default::default()
        };
        s.pods.insert(
            "10.0.0.1".parse().unwrap(),
            pod("client", "default", "node-a"),
        );
        s.pods
            .insert("10.0.1.9".parse().unwrap(), pod("db", "data", "node-b"));
        s.pods
            .insert("fd00::9".parse().unwrap(), pod("db", "data", "node-b"));
        s.policies.insert(3, "data/allow-client".into());
        s.policies.insert(
            0x8000_0000,
            PolicyInfo::cluster("deny-egress-to-metadata", Tier::Admin),
        );
        s.policies.insert(
            0x8000_0001,
            PolicyInfo::cluster("baseline-deny-all", Tier::Baseline),
        );
        s
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    #[test]
    fn egress_to_a_remote_pod_names_both_pods_the_policy_and_the_peer_node() {
        let s = snapshot();
        let ev = FlowEvent {
            family: FAMILY_IPV4,
            direction: DIRECTION_EGRESS,
            src_addr: v4([10, 0, 0, 1]),
            dst_addr: v4([10, 0, 1, 9]),
            policy_id: 3,
            ..Default::default()
        };
        let r = s.resolve(&ev);
        assert_eq!(&*r.src.unwrap().name, "client");
        assert_eq!(&*r.dst.unwrap().namespace, "data");
        assert_eq!(r.policy, "data/allow-client");
        assert_eq!(r.tier, Tier::NetworkPolicy);
        assert_eq!(r.peer_node, "node-b");
        assert_eq!(r.node, "node-a");
    }

    #[test]
    fn ingress_from_an_unknown_address_has_no_peer_and_a_reason_label() {
        let s = snapshot();
        let ev = FlowEvent {
            family: FAMILY_IPV4,
            direction: DIRECTION_INGRESS,
            src_addr: v4([192, 0, 2, 1]),
            dst_addr: v4([10, 0, 0, 1]),
            policy_id: 0,
            reason: REASON_NO_RULE_MATCHED,
            ..Default::default()
        };
        let r = s.resolve(&ev);
        assert!(r.src.is_none());
        assert_eq!(&*r.dst.unwrap().name, "client");
        assert_eq!(r.policy, "no-rule-matched");
        assert_eq!(r.tier, Tier::NetworkPolicy);
        assert_eq!(r.peer_node, "");
    }

    #[test]
    fn ipv6_events_use_all_sixteen_bytes_and_unknown_ids_are_labelled() {
        let s = snapshot();
        let ev = FlowEvent {
            family: FAMILY_IPV6,
            direction: DIRECTION_EGRESS,
            dst_addr: "fd00::9".parse::<Ipv6Addr>().unwrap().octets(),
            policy_id: 99,
            ..Default::default()
        };
        let r = s.resolve(&ev);
        assert_eq!(&*r.dst.unwrap().name, "db");
        assert_eq!(r.policy, "unknown-policy");
        assert_eq!(r.tier, Tier::NetworkPolicy);
    }

    #[test]
    fn cluster_rule_ids_resolve_to_the_cluster_policy_and_its_tier() {
        let mut s = snapshot();
        let client = s.pods.get_mut(&"10.0.0.1".parse().unwrap()).unwrap();
        client.isolated_by = [Arc::default(), "default/out".into()];
        let mut ev = FlowEvent {
            family: FAMILY_IPV4,
            direction: DIRECTION_EGRESS,
            src_addr: v4([10, 0, 0, 1]),
            dst_addr: v4([169, 254, 169, 254]),
            verdict: datapath_common::abi::VERDICT_DENY,
            reason: datapath_common::abi::REASON_POLICY,
            policy_id: 0x8000_0000,
            ..Default::default()
        };
        let r = s.resolve(&ev);
        assert_eq!(r.policy, "ClusterNetworkPolicy/deny-egress-to-metadata");
        assert_eq!(r.tier, Tier::Admin);
        assert_eq!(
            r.isolated_by, "",
            "an Admin deny names no NetworkPolicy: none of their rules would admit it"
        );
        ev.policy_id = 0x8000_0001;
        let r = s.resolve(&ev);
        assert_eq!(r.policy, "ClusterNetworkPolicy/baseline-deny-all");
        assert_eq!(r.tier, Tier::Baseline);
        ev.policy_id = 0;
        ev.reason = REASON_NO_RULE_MATCHED;
        let r = s.resolve(&ev);
        assert_eq!(
            (r.tier, r.isolated_by),
            (Tier::NetworkPolicy, "default/out")
        );
    }

    #[test]
    fn plain_names_convert_to_network_policy_entries() {
        let p: PolicyInfo = "ns/p".into();
        assert_eq!(p, PolicyInfo::new("ns/p", Tier::NetworkPolicy));
        assert_eq!(
            &*PolicyInfo::cluster("x", Tier::Admin).name,
            "ClusterNetworkPolicy/x"
        );
    }

    #[test]
    fn a_deny_names_the_policies_isolating_the_deciding_pod_in_its_direction() {
        let mut s = snapshot();
        let client = s.pods.get_mut(&"10.0.0.1".parse().unwrap()).unwrap();
        client.isolated_by = ["default/in-a,default/in-b".into(), "default/out".into()];
        let mut ev = FlowEvent {
            family: FAMILY_IPV4,
            direction: DIRECTION_INGRESS,
            src_addr: v4([10, 0, 1, 9]),
            dst_addr: v4([10, 0, 0, 1]),
            verdict: datapath_common::abi::VERDICT_DENY,
            reason: REASON_NO_RULE_MATCHED,
            ..Default::default()
        };
        assert_eq!(s.resolve(&ev).isolated_by, "default/in-a,default/in-b");
        ev.direction = DIRECTION_EGRESS;
        std::mem::swap(&mut ev.src_addr, &mut ev.dst_addr);
        assert_eq!(s.resolve(&ev).isolated_by, "default/out");
        ev.verdict = VERDICT_ACCEPT;
        assert_eq!(
            s.resolve(&ev).isolated_by,
            "",
            "an ACCEPT names no isolating policy"
        );
        // The peer's (db's) isolation never shows: it is not the deciding pod.
        ev.verdict = datapath_common::abi::VERDICT_DENY;
        ev.direction = DIRECTION_INGRESS;
        assert_eq!(s.resolve(&ev).isolated_by, "");
    }

    #[test]
    fn a_stored_snapshot_is_seen_by_the_next_load() {
        let handle = snapshot_handle(EnrichmentSnapshot::default());
        let mut cache = arc_swap::Cache::new(Arc::clone(&handle));
        assert!(cache.load().pods.is_empty());
        handle.store(Arc::new(snapshot()));
        assert_eq!(cache.load().pods.len(), 3);
    }
}
