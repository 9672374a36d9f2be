//! Turns cluster states into kernel state: resolves policies (incrementally), attaches
//! the programs to each local pod's host-side interface, applies the planner's ordered
//! map writes, and publishes the enrichment snapshot the flow-log pipeline reads.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use datapath::Datapath;
use exporter::{EnrichmentSnapshot, PodInfo, SnapshotHandle};
use policy::{
    ClusterState, MapOp, Planner, PodRef, ResolveOptions, Resolved, ResolvedPod, Resolver,
};

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

pub struct Enforcer {
    dp: Datapath,
    resolver: Resolver,
    planner: Planner,
    options: ResolveOptions,
    /// Local pods whose interface carries our programs: pod → (interface, ifindex).
    interfaces: HashMap<PodRef, (String, u32)>,
    snapshot: SnapshotHandle,
    last: Option<Resolved>,
    /// Added to every generation written, above any a previous agent left, so its
    /// conntrack entries are re-evaluated under our rules.
    generation_base: u32,
    /// Stale sets, lists and records a previous agent left are removed after our
    /// first complete apply.
    reconciled: bool,
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
        let generation_base = pods
            .iter()
            .map(|(_, r)| r.generation)
            .max()
            .map_or(0, |g| g.saturating_add(1));
        Self {
            dp,
            resolver: Resolver::new(),
            planner: Planner::starting_after(max_set, max_list),
            options,
            interfaces: HashMap::new(),
            snapshot,
            last: None,
            generation_base,
            reconciled: false,
        }
    }

    pub fn datapath(&mut self) -> &mut Datapath {
        &mut self.dp
    }

    pub fn last_resolution(&self) -> Option<&Resolved> {
        self.last.as_ref()
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
        // Attach before the pod's record is written, so no packet of a new pod passes
        // unenforced once its record says otherwise.
        for pod in resolved.pods.values() {
            if self.interfaces.contains_key(&pod.pod) {
                continue;
            }
            match interface_for(pod) {
                Some(ifname) => {
                    let ifindex = self.dp.attach(&ifname)?;
                    tracing::info!(pod = %pod.pod, interface = %ifname, ifindex, "attached");
                    report.attached.push(ifname.clone());
                    self.interfaces.insert(pod.pod.clone(), (ifname, ifindex));
                }
                None => report.without_interface.push(pod.pod.clone()),
            }
        }
        let ops = self.planner.plan(&resolved);
        report.map_writes = ops.len();
        for op in &ops {
            self.write(op)?;
        }
        let gone: Vec<PodRef> = self
            .interfaces
            .keys()
            .filter(|p| !resolved.pods.contains_key(*p))
            .cloned()
            .collect();
        for pod in gone {
            if let Some((ifname, ifindex)) = self.interfaces.remove(&pod) {
                self.dp.maps().remove_pod(ifindex)?;
                if let Err(e) = self.dp.detach(&ifname) {
                    tracing::debug!(interface = %ifname, error = %e, "detach of a vanished interface");
                }
                report.detached.push(ifname);
            }
        }
        if !self.reconciled && report.without_interface.is_empty() {
            self.remove_stale()?;
            // Every pod's state is in this version's maps now: an older agent's
            // programs, enforcing beside ours until here, can go.
            self.dp.retire_other_versions()?;
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

    /// Deletes what the pinned maps hold that the current state does not: records of
    /// interfaces we do not manage, entries of policy sets no record points at, and
    /// rule lists no entry uses. Reconciles against the maps, not against memory.
    fn remove_stale(&mut self) -> Result<(), EnforceError> {
        let managed: std::collections::HashSet<u32> =
            self.interfaces.values().map(|(_, i)| *i).collect();
        let maps = self.dp.maps();
        for (ifindex, _) in maps.pods() {
            if !managed.contains(&ifindex) {
                maps.remove_pod(ifindex)?;
            }
        }
        let live_sets: std::collections::HashSet<u32> =
            maps.pods().iter().map(|(_, r)| r.policy_set).collect();
        let mut live_lists = std::collections::HashSet::new();
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
        let maps = self.dp.maps();
        match op {
            MapOp::PutRuleList { id, list } => maps.put_rule_list_raw(*id, list)?,
            MapOp::PutEntry {
                key,
                prefix_len,
                list_id,
            } => maps.put_entry(key, *prefix_len, *list_id)?,
            MapOp::DeleteEntry { key, prefix_len } => maps.remove_entry(key, *prefix_len)?,
            MapOp::DeleteRuleList { id } => maps.remove_rule_list(*id)?,
            MapOp::PutPod { pod, record } => {
                if let Some((_, ifindex)) = self.interfaces.get(pod) {
                    let ifindex = *ifindex;
                    let mut record = *record;
                    record.generation = record.generation.wrapping_add(self.generation_base);
                    self.dp.maps().put_pod(ifindex, &record)?;
                }
            }
            MapOp::DeletePod { pod } => {
                if let Some((_, ifindex)) = self.interfaces.get(pod) {
                    let ifindex = *ifindex;
                    self.dp.maps().remove_pod(ifindex)?;
                }
            }
        }
        Ok(())
    }

    /// The interface of a local pod, if attached.
    pub fn interface_of(&self, pod: &PodRef) -> Option<(&str, u32)> {
        self.interfaces.get(pod).map(|(n, i)| (n.as_str(), *i))
    }
}

/// The pod's host-side interface: named in the manifest, or the device of the route to
/// its address in this network namespace (how the VPC CNI wires pods).
fn interface_for(pod: &ResolvedPod) -> Option<String> {
    if let Some(name) = &pod.interface {
        return Some(name.clone());
    }
    let addr: IpAddr = pod.ipv4.map(IpAddr::V4).or(pod.ipv6.map(IpAddr::V6))?;
    route_device(addr)
}

/// `ip route get ADDR` → the `dev` it names.
pub fn route_device(addr: IpAddr) -> Option<String> {
    let out = netlab::run("ip", &["-o", "route", "get", &addr.to_string()]).ok()?;
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "dev" {
            return words.next().map(str::to_string);
        }
    }
    None
}

/// Names for the flow-log lines: every pod with an address, and every policy id.
fn enrichment(cluster: &ClusterState, resolved: &Resolved, node_name: &str) -> EnrichmentSnapshot {
    let mut pods = HashMap::new();
    for pod in cluster.pods.values() {
        if !pod.in_peer_sets() {
            continue;
        }
        let info = PodInfo {
            name: pod.name.as_str().into(),
            namespace: pod.namespace.as_str().into(),
            node: pod.node_name.as_deref().unwrap_or("").into(),
        };
        for ip in &pod.ips {
            pods.insert(*ip, info.clone());
        }
    }
    let mut policies: HashMap<u32, Arc<str>> = HashMap::new();
    for (id, rule) in resolved.table.iter() {
        policies.insert(id, rule.policy.to_string().into());
    }
    policies.insert(policy::NODE_LOCAL_POLICY_ID, "node-local".into());
    EnrichmentSnapshot {
        pods,
        policies,
        node_name: node_name.into(),
    }
}
