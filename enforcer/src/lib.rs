//! Turns cluster states into kernel state: resolves policies (incrementally), applies
//! the planner's ordered map writes, binds each local pod to its host-side interfaces
//! (see [`crate::binding`]) and attaches the programs there, and publishes the
//! enrichment snapshot the flow-log pipeline reads.
//!
//! Binding rules: an interface belongs to at most one pod. A pod keeps its interfaces
//! until it leaves (deleted, terminal, moved off the node) or the interface is gone;
//! a vanished podIP alone changes nothing. A pod whose interface does not exist yet
//! stays unbound (logged once, counted) and is bound by [`Enforcer::rebind`] when its
//! interface appears: its record is written before the programs are attached, so no
//! packet passes it unenforced.
//!
//! Modules: [`binding`] (which host interface is a pod's), [`cni`] (the VPC CNI's
//! ADD and DEL: bind and attach at once), [`link_watch`] (wakes the daemon when links
//! come and go), [`metrics`] (what was applied, what waits).

pub mod binding;
pub mod cni;
pub mod link_watch;
pub mod metrics;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use datapath::{
    Datapath,
    links::{self, LinkTable},
};
use exporter::{EnrichmentSnapshot, PodInfo, PodMap, PolicyInfo, PolicyMap, SnapshotHandle, Tier};
use policy::{ClusterState, MapOp, Planner, PodRef, ResolveOptions, Resolved, Resolver};
use prometheus_client::metrics::gauge::Gauge;

use crate::binding::{BindingOptions, Candidate, Found, named_interfaces, routed_interface};

/// What one `apply` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub local_pods: usize,
    pub map_writes: usize,
    pub attached: Vec<String>,
    pub detached: Vec<String>,
    /// Local pods whose host interface could not be found (not enforced yet).
    pub without_interface: Vec<PodRef>,
    pub unenforceable: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("datapath: {0}")]
    Datapath(#[from] datapath::DatapathError),
}

/// An interface a pod holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Bound {
    name: String,
    ifindex: u32,
    found: Found,
}

pub struct Enforcer {
    dp: Datapath,
    resolver: Resolver,
    planner: Planner,
    options: ResolveOptions,
    binding: BindingOptions,
    /// Local pods and the interfaces carrying our programs for them.
    interfaces: HashMap<PodRef, Vec<Bound>>,
    /// Interface index -> the pod holding it (one pod per interface).
    owners: HashMap<u32, PodRef>,
    /// Local pods without an interface, since when.
    unbound: HashMap<PodRef, Instant>,
    /// Pods bound on the CNI's ADD that the cluster state does not list yet: kept
    /// until it does or DEL comes (the pod watch may lag the CNI).
    cni_pods: HashSet<PodRef>,
    unbound_gauge: Gauge,
    snapshot: SnapshotHandle,
    last: Option<Resolved>,
    /// Stale sets, lists and records a previous agent left are removed after our
    /// first complete apply.
    reconciled: bool,
    /// The incumbent agent's pin root, when we take over from it after our first
    /// complete apply (datapath::incumbent).
    incumbent_pin_root: Option<std::path::PathBuf>,
}

impl Enforcer {
    /// An enforcer over `dp`, whose pinned maps may hold what a previous agent wrote:
    /// new ids start above the old ones, and the old state is reconciled away after
    /// the first apply.
    pub fn new(mut dp: Datapath, options: ResolveOptions, snapshot: SnapshotHandle) -> Self {
        let maps = dp.maps();
        let pods = maps.pods();
        let max_set = pods
            .iter()
            .map(|(_, r)| r.policy_set)
            .chain(
                maps.entries()
                    .iter()
                    .map(|(k, _, _)| u32::from_be(k.policy_set_be)),
            )
            .max()
            .unwrap_or(0);
        let max_list = maps
            .rule_lists()
            .iter()
            .map(|(id, _)| *id)
            .max()
            .unwrap_or(0);
        let max_generation = pods.iter().map(|(_, r)| r.generation).max();
        Self {
            dp,
            resolver: Resolver::new(),
            planner: Planner::starting_after(max_set, max_list)
                .with_generations_above(max_generation),
            options,
            binding: BindingOptions::default(),
            interfaces: HashMap::new(),
            owners: HashMap::new(),
            unbound: HashMap::new(),
            cni_pods: HashSet::new(),
            unbound_gauge: Gauge::default(),
            snapshot,
            last: None,
            reconciled: false,
            incumbent_pin_root: None,
        }
    }

    /// Takes over from the EKS network policy agent after the first complete apply:
    /// its filters go from the interfaces we enforce, its pins under `pin_root` once
    /// none of its filters is left (datapath::incumbent).
    pub fn with_incumbent_takeover(mut self, pin_root: impl Into<std::path::PathBuf>) -> Self {
        self.incumbent_pin_root = Some(pin_root.into());
        self
    }

    /// Interface naming other than the VPC CNI's default (`eni` prefix).
    pub fn with_binding(mut self, binding: BindingOptions) -> Self {
        self.binding = binding;
        self
    }

    /// The gauge `network_policy_pods_unbound` to keep current.
    pub fn with_unbound_gauge(mut self, gauge: Gauge) -> Self {
        self.unbound_gauge = gauge;
        self
    }

    pub fn datapath(&mut self) -> &mut Datapath {
        &mut self.dp
    }

    pub fn last_resolution(&self) -> Option<&Resolved> {
        self.last.as_ref()
    }

    /// Local pods still waiting for their interface.
    pub fn unbound_pods(&self) -> Vec<PodRef> {
        let mut pods: Vec<PodRef> = self.unbound.keys().cloned().collect();
        pods.sort();
        pods
    }

    /// Brings the kernel to the state `cluster` asks for.
    ///
    /// # Errors
    /// A map write or attach that failed; the maps keep what was written before it,
    /// and the next apply retries.
    pub fn apply(&mut self, cluster: &ClusterState) -> Result<ApplyReport, EnforceError> {
        let resolved = self.resolver.resolve(cluster, &self.options);
        let mut report = ApplyReport {
            local_pods: resolved.pods.len(),
            ..ApplyReport::default()
        };
        for u in &resolved.unenforceable {
            tracing::error!(%u, "rules do not fit the datapath; the direction is denied");
            report.unenforceable.push(u.to_string());
        }
        // Entries and lists first, records of bound pods after them (the planner's
        // order); pods bound below get their record before their programs.
        let ops = self.planner.plan(&resolved);
        report.map_writes = ops.len();
        for op in &ops {
            self.write(op)?;
        }
        // A pod the CNI bound is kept until the state lists it (then the usual rules
        // apply) or the CNI's DEL comes.
        self.cni_pods.retain(|p| !resolved.pods.contains_key(p));
        let gone: Vec<PodRef> = self
            .interfaces
            .keys()
            .filter(|p| !resolved.pods.contains_key(*p) && !self.cni_pods.contains(*p))
            .cloned()
            .collect();
        for pod in gone {
            self.release(&pod, &mut report)?;
        }
        self.unbound.retain(|p, _| resolved.pods.contains_key(p));
        // Links that come and go wake `rebind`; here only pods without an interface
        // need a look at the links.
        if resolved
            .pods
            .keys()
            .any(|p| !self.interfaces.contains_key(p))
        {
            self.bind(&resolved, &mut report)?;
        } else {
            self.unbound_gauge.set(0);
        }
        if !self.reconciled && report.without_interface.is_empty() {
            self.remove_stale()?;
            // Every pod's state is in this version's maps now: an older agent's
            // programs, enforcing beside ours until here, can go.
            self.dp.retire_other_versions()?;
            // Likewise the incumbent's, on every interface we enforce (logged there).
            if let Some(root) = &self.incumbent_pin_root
                && let Err(e) = self.dp.take_over_incumbent(root)
            {
                tracing::error!(error = %e, "looking for the incumbent network policy agent failed; whatever it left stays");
            }
            self.reconciled = true;
        }
        self.snapshot.store(Arc::new(enrichment(
            cluster,
            &resolved,
            &self.options.node_name,
        )));
        self.last = Some(resolved);
        Ok(report)
    }

    /// Looks at the links again (one appeared or went): binds pods whose interface is
    /// now there and lets go of interfaces that are gone, with the last resolution.
    ///
    /// # Errors
    /// As [`Enforcer::apply`].
    pub fn rebind(&mut self) -> Result<ApplyReport, EnforceError> {
        let Some(resolved) = self.last.take() else {
            return Ok(ApplyReport::default());
        };
        let mut report = ApplyReport {
            local_pods: resolved.pods.len(),
            ..ApplyReport::default()
        };
        let result = self.bind(&resolved, &mut report);
        self.last = Some(resolved);
        result?;
        Ok(report)
    }

    /// Drops interfaces that are gone, binds pods without one, and keeps the unbound
    /// list, its log lines and its gauge current.
    fn bind(&mut self, resolved: &Resolved, report: &mut ApplyReport) -> Result<(), EnforceError> {
        let links = links::dump_links()?;
        self.drop_vanished(&links, report)?;

        // Claims: by name first (final), then by host route for pods with no name
        // match. An interface another pod holds by name is never taken; one held by
        // route yields to a pod it is named after.
        let mut claims: Vec<(PodRef, Candidate)> = Vec::new();
        let mut route_wanted = Vec::new();
        for pod in resolved.pods.values() {
            let named = named_interfaces(&self.binding, pod, &links);
            let held = self.interfaces.get(&pod.pod);
            if named.is_empty() {
                if held.is_none() {
                    route_wanted.push(pod);
                }
                continue;
            }
            for candidate in named {
                if held.is_some_and(|h| h.iter().any(|b| b.ifindex == candidate.link.ifindex)) {
                    continue;
                }
                claims.push((pod.pod.clone(), candidate));
            }
        }
        if !route_wanted.is_empty() {
            let routes = links::host_routes()?;
            let mut by_interface: HashMap<u32, Vec<(PodRef, Candidate)>> = HashMap::new();
            for pod in route_wanted {
                if let Some(candidate) = routed_interface(pod, &links, &routes) {
                    by_interface
                        .entry(candidate.link.ifindex)
                        .or_default()
                        .push((pod.pod.clone(), candidate));
                }
            }
            for (ifindex, mut wanting) in by_interface {
                if wanting.len() > 1 {
                    let pods: Vec<String> = wanting.iter().map(|(p, _)| p.to_string()).collect();
                    tracing::warn!(
                        ifindex,
                        ?pods,
                        "several pods route to one interface; none is bound to it"
                    );
                    continue;
                }
                claims.push(wanting.pop().expect("one claim"));
            }
        }
        let named_claims: HashSet<u32> = claims
            .iter()
            .filter(|(_, c)| c.found == Found::ByName)
            .map(|(_, c)| c.link.ifindex)
            .collect();
        for (pod, candidate) in claims {
            let ifindex = candidate.link.ifindex;
            if let Some(owner) = self.owners.get(&ifindex).cloned() {
                let owner_by_name = self.interfaces.get(&owner).is_some_and(|h| {
                    h.iter()
                        .any(|b| b.ifindex == ifindex && b.found == Found::ByName)
                });
                if owner == pod || owner_by_name || candidate.found != Found::ByName {
                    continue;
                }
                tracing::warn!(interface = %candidate.link.name, from = %owner, to = %pod, "interface is named after another pod; it moves to that pod");
                self.let_go(&owner, ifindex);
            } else if candidate.found == Found::ByHostRoute && named_claims.contains(&ifindex) {
                continue;
            }
            self.attach(&pod, candidate, report)?;
        }

        let now = Instant::now();
        for pod in resolved.pods.keys() {
            if self.interfaces.get(pod).is_some_and(|h| !h.is_empty()) {
                if let Some(since) = self.unbound.remove(pod) {
                    tracing::info!(%pod, waited = ?since.elapsed(), "pod bound to its interface");
                }
                continue;
            }
            report.without_interface.push(pod.clone());
            if !self.unbound.contains_key(pod) {
                let expected = crate::binding::host_veth_name(
                    &self.binding.veth_prefix,
                    &pod.namespace,
                    &pod.name,
                    0,
                );
                tracing::warn!(%pod, %expected, "no interface for a local pod yet; it is bound when one appears");
                self.unbound.insert(pod.clone(), now);
            }
        }
        self.unbound_gauge.set(self.unbound.len() as i64);
        Ok(())
    }

    /// Writes the pod's record into the interface's slot, then attaches the programs.
    fn attach(
        &mut self,
        pod: &PodRef,
        candidate: Candidate,
        report: &mut ApplyReport,
    ) -> Result<(), EnforceError> {
        let Candidate { link, found } = candidate;
        if let Some(record) = self.planner.record_of(pod).copied() {
            self.dp.maps().put_pod(link.ifindex, &record)?;
        }
        let ifindex = match self.dp.attach(&link.name) {
            Ok(i) => i,
            Err(e) => {
                // The interface may have gone between the dump and the attach.
                let _ = self.dp.maps().remove_pod(link.ifindex);
                tracing::warn!(%pod, interface = %link.name, error = %e, "attach failed; retried when the links change");
                return Ok(());
            }
        };
        if ifindex != link.ifindex {
            // Re-created under the same name since the dump: bind on the next look.
            let _ = self.dp.maps().remove_pod(link.ifindex);
            return Ok(());
        }
        tracing::info!(%pod, interface = %link.name, ifindex, ?found, "attached");
        report.attached.push(link.name.clone());
        self.owners.insert(ifindex, pod.clone());
        self.interfaces.entry(pod.clone()).or_default().push(Bound {
            name: link.name,
            ifindex,
            found,
        });
        Ok(())
    }

    /// Interfaces that are gone (or re-created under a new index): their records and
    /// pins go; the pod is bound again when an interface of its appears.
    fn drop_vanished(
        &mut self,
        links: &LinkTable,
        report: &mut ApplyReport,
    ) -> Result<(), EnforceError> {
        let vanished: Vec<(PodRef, u32, String)> = self
            .interfaces
            .iter()
            .flat_map(|(pod, held)| {
                held.iter()
                    .filter(|b| links.by_index(b.ifindex).is_none_or(|l| l.name != b.name))
                    .map(|b| (pod.clone(), b.ifindex, b.name.clone()))
            })
            .collect();
        for (pod, ifindex, name) in vanished {
            tracing::info!(%pod, interface = %name, ifindex, "interface gone");
            self.dp.maps().remove_pod(ifindex)?;
            self.dp.forget_interface(ifindex)?;
            self.let_go(&pod, ifindex);
            report.detached.push(name);
        }
        Ok(())
    }

    /// Forgets that `pod` holds `ifindex` (no kernel change).
    fn let_go(&mut self, pod: &PodRef, ifindex: u32) {
        self.owners.remove(&ifindex);
        if let Some(held) = self.interfaces.get_mut(pod) {
            held.retain(|b| b.ifindex != ifindex);
            if held.is_empty() {
                self.interfaces.remove(pod);
            }
        }
    }

    /// A pod that left: its records go and our programs leave its interfaces (only
    /// those it holds: never another pod's).
    fn release(&mut self, pod: &PodRef, report: &mut ApplyReport) -> Result<(), EnforceError> {
        for bound in self.interfaces.remove(pod).unwrap_or_default() {
            self.owners.remove(&bound.ifindex);
            self.dp.maps().remove_pod(bound.ifindex)?;
            // By index: a new interface under the same name (the pod re-created) is
            // not ours to detach.
            self.dp.detach_ifindex_named(bound.ifindex, &bound.name)?;
            report.detached.push(bound.name);
        }
        Ok(())
    }

    /// Deletes what the pinned maps hold that the current state does not: records of
    /// interfaces we do not manage, entries of policy sets no record points at, and
    /// rule lists no entry uses. Reconciles against the maps, not against memory.
    fn remove_stale(&mut self) -> Result<(), EnforceError> {
        let managed: HashSet<u32> = self.owners.keys().copied().collect();
        let maps = self.dp.maps();
        for (ifindex, _) in maps.pods() {
            if !managed.contains(&ifindex) {
                maps.remove_pod(ifindex)?;
            }
        }
        let live_sets: HashSet<u32> = maps.pods().iter().map(|(_, r)| r.policy_set).collect();
        let mut live_lists = HashSet::new();
        let mut removed = 0usize;
        for (key, prefix_len, list) in maps.entries() {
            if live_sets.contains(&u32::from_be(key.policy_set_be)) {
                live_lists.insert(list);
            } else {
                maps.remove_entry(&key, prefix_len)?;
                removed += 1;
            }
        }
        for (id, _) in maps.rule_lists() {
            if !live_lists.contains(&id) {
                maps.remove_rule_list(id)?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "removed entries and rule lists a previous agent left"
            );
        }
        Ok(())
    }

    fn write(&mut self, op: &MapOp) -> Result<(), EnforceError> {
        match op {
            MapOp::PutRuleList { id, list } => self.dp.maps().put_rule_list_raw(*id, list)?,
            MapOp::PutEntry {
                key,
                prefix_len,
                list_id,
            } => self.dp.maps().put_entry(key, *prefix_len, *list_id)?,
            MapOp::DeleteEntry { key, prefix_len } => {
                self.dp.maps().remove_entry(key, *prefix_len)?
            }
            MapOp::DeleteRuleList { id } => self.dp.maps().remove_rule_list(*id)?,
            MapOp::PutPod { pod, record } => {
                for ifindex in self.ifindexes_of(pod) {
                    self.dp.maps().put_pod(ifindex, record)?;
                }
            }
            MapOp::DeletePod { pod } => {
                for ifindex in self.ifindexes_of(pod) {
                    self.dp.maps().remove_pod(ifindex)?;
                }
            }
        }
        Ok(())
    }

    /// The interfaces `pod` holds (none while unbound).
    fn ifindexes_of(&self, pod: &PodRef) -> Vec<u32> {
        self.interfaces
            .get(pod)
            .map(|h| h.iter().map(|b| b.ifindex).collect())
            .unwrap_or_default()
    }

    /// The first interface of a local pod, if bound.
    pub fn interface_of(&self, pod: &PodRef) -> Option<(&str, u32)> {
        self.interfaces
            .get(pod)
            .and_then(|h| h.first())
            .map(|b| (b.name.as_str(), b.ifindex))
    }
}

/// Names for the flow-log lines: every pod with an address, and every policy id with
/// its tier (NetworkPolicy rules and node-local `NETWORK_POLICY`, cluster rules their
/// policy's `ADMIN` or `BASELINE`).
fn enrichment(cluster: &ClusterState, resolved: &Resolved, node_name: &str) -> EnrichmentSnapshot {
    let mut pods = PodMap::default();
    // Many pods share one set of isolating policies: one string per set.
    let mut joined: HashMap<Vec<policy::PolicyRef>, Arc<str>> = HashMap::new();
    let mut isolated_by = |policies: &[policy::PolicyRef]| -> Arc<str> {
        if policies.is_empty() {
            return Arc::default();
        }
        if let Some(names) = joined.get(policies) {
            return names.clone();
        }
        let names: Vec<String> = policies.iter().map(ToString::to_string).collect();
        let names: Arc<str> = names.join(exporter::ISOLATED_BY_SEPARATOR).into();
        joined.insert(policies.to_vec(), names.clone());
        names
    };
    for pod in cluster.pods.values() {
        if !pod.in_peer_sets() {
            continue;
        }
        let mut info = PodInfo {
            name: pod.name.as_str().into(),
            namespace: pod.namespace.as_str().into(),
            node: pod.node_name.as_deref().unwrap_or("").into(),
            ..Default::default()
        };
        if let Some(local) = resolved.pods.get(&pod.key()) {
            info.isolated_by[usize::from(datapath::abi::DIRECTION_INGRESS)] =
                isolated_by(&local.ingress.isolating);
            info.isolated_by[usize::from(datapath::abi::DIRECTION_EGRESS)] =
                isolated_by(&local.egress.isolating);
        }
        for ip in &pod.ips {
            pods.insert(*ip, info.clone());
        }
    }
    let mut policies = PolicyMap::default();
    for (id, rule) in resolved.table.iter() {
        policies.insert(id, rule.policy.to_string().into());
    }
    // Cluster policies have no namespace: `ClusterNetworkPolicy/<name>`, one string
    // per policy however many rules it has.
    let mut cluster_names: HashMap<&str, Arc<str>> = HashMap::new();
    for (id, rule) in resolved.table.cluster_rules() {
        let tier = match rule.tier {
            policy::Tier::Admin => Tier::Admin,
            policy::Tier::Baseline => Tier::Baseline,
        };
        let name = cluster_names
            .entry(rule.policy.as_str())
            .or_insert_with(|| PolicyInfo::cluster(&rule.policy, tier).name);
        policies.insert(id, PolicyInfo::new(Arc::clone(name), tier));
    }
    policies.insert(policy::NODE_LOCAL_POLICY_ID, policy::NODE_LOCAL_NAME.into());
    EnrichmentSnapshot {
        pods,
        policies,
        node_name: node_name.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath::abi::{
        DIRECTION_EGRESS, DIRECTION_INGRESS, FAMILY_IPV4, FlowEvent, REASON_POLICY, VERDICT_ACCEPT,
        VERDICT_DENY,
    };

    /// A pod of node-1, a NetworkPolicy selecting it, an Admin cluster policy (two
    /// rules) and a Baseline one.
    const STATE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: c, image: x}]}
status: {phase: Running, podIPs: [{ip: 10.1.0.2}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: deny-egress-to-metadata}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  egress:
    - {name: imds, action: Deny, to: [{networks: [169.254.169.254/32]}]}
    - {name: imds-v6, action: Deny, to: [{networks: ["fd00:ec2::254/128"]}]}
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: baseline-allow-dns}
spec:
  tier: Baseline
  priority: 5
  subject: {namespaces: {}}
  egress:
    - {action: Accept, to: [{networks: [10.100.0.10/32]}]}
"#;

    fn event(policy_id: u32, direction: u8, verdict: u8) -> FlowEvent {
        let mut pod = [0; 16];
        pod[..4].copy_from_slice(&[10, 1, 0, 2]);
        FlowEvent {
            family: FAMILY_IPV4,
            direction,
            verdict,
            reason: REASON_POLICY,
            policy_id,
            src_addr: pod,
            dst_addr: pod,
            ..Default::default()
        }
    }

    #[test]
    fn cluster_rule_ids_are_named_after_their_cluster_policy_with_its_tier() {
        let state = policy::load_str("state.yaml", STATE).unwrap();
        let options = ResolveOptions {
            node_name: "node-1".into(),
            ..Default::default()
        };
        let resolved = Resolver::new().resolve(&state, &options);
        let snapshot = enrichment(&state, &resolved, "node-1");

        let cluster: Vec<(u32, String)> = resolved
            .table
            .cluster_rules()
            .map(|(id, r)| (id, r.policy.clone()))
            .collect();
        assert_eq!(cluster.len(), 3, "{cluster:?}");
        for (id, policy) in &cluster {
            assert!(*id >= policy::tiers::CLUSTER_RULE_ID_BASE);
            let want = if policy == "baseline-allow-dns" {
                Tier::Baseline
            } else {
                Tier::Admin
            };
            let ev = event(*id, DIRECTION_EGRESS, VERDICT_DENY);
            let names = snapshot.resolve(&ev);
            assert_eq!(
                names.policy,
                format!("ClusterNetworkPolicy/{policy}"),
                "id {id:#x}"
            );
            assert_eq!(names.tier, want, "id {id:#x} of {policy}");
        }
        let admin: Vec<&PolicyInfo> = cluster
            .iter()
            .filter(|(_, p)| p == "deny-egress-to-metadata")
            .map(|(id, _)| &snapshot.policies[id])
            .collect();
        assert_eq!(admin.len(), 2);
        assert!(
            Arc::ptr_eq(&admin[0].name, &admin[1].name),
            "the rules of one policy share its name"
        );

        // NetworkPolicy rules and node-local keep their names and tier.
        let (np_id, _) = resolved.table.iter().next().expect("allow-web has a rule");
        let names = snapshot.resolve(&event(np_id, DIRECTION_INGRESS, VERDICT_ACCEPT));
        assert_eq!(
            (names.policy, names.tier),
            ("shop/allow-web", Tier::NetworkPolicy)
        );
        let names = snapshot.resolve(&event(
            policy::NODE_LOCAL_POLICY_ID,
            DIRECTION_INGRESS,
            VERDICT_ACCEPT,
        ));
        assert_eq!(
            (names.policy, names.tier),
            ("node-local", Tier::NetworkPolicy)
        );
    }
}
