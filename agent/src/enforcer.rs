//! Turns cluster states into kernel state: resolves policies (incrementally), attaches
//! the programs to each local pod's host-side interface, applies the planner's ordered
//! map writes, and publishes the enrichment snapshot the flow-log pipeline reads.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use datapath::Datapath;
use exporter::{EnrichmentSnapshot, PodInfo, SnapshotHandle};
use policy::{ClusterState, MapOp, Planner, PodRef, ResolveOptions, Resolved, ResolvedPod, Resolver};

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
}

impl Enforcer {
    pub fn new(dp: Datapath, options: ResolveOptions, snapshot: SnapshotHandle) -> Self {
        Self {
            dp,
            resolver: Resolver::new(),
            planner: Planner::new(),
            options,
            interfaces: HashMap::new(),
            snapshot,
            last: None,
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
        let mut report = ApplyReport { local_pods: resolved.pods.len(), ..ApplyReport::default() };
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
        let gone: Vec<PodRef> = self.interfaces.keys().filter(|p| !resolved.pods.contains_key(*p)).cloned().collect();
        for pod in gone {
            if let Some((ifname, ifindex)) = self.interfaces.remove(&pod) {
                self.dp.maps().remove_pod(ifindex)?;
                if let Err(e) = self.dp.detach(&ifname) {
                    tracing::debug!(interface = %ifname, error = %e, "detach of a vanished interface");
                }
                report.detached.push(ifname);
            }
        }
        self.snapshot.store(Arc::new(enrichment(cluster, &resolved, &self.options.node_name)));
        self.last = Some(resolved);
        Ok(report)
    }

    fn write(&mut self, op: &MapOp) -> Result<(), EnforceError> {
        let maps = self.dp.maps();
        match op {
            MapOp::PutRuleList { id, list } => maps.put_rule_list_raw(*id, list)?,
            MapOp::PutEntry { key, prefix_len, list_id } => maps.put_entry(key, *prefix_len, *list_id)?,
            MapOp::DeleteEntry { key, prefix_len } => maps.remove_entry(key, *prefix_len)?,
            MapOp::DeleteRuleList { id } => maps.remove_rule_list(*id)?,
            MapOp::PutPod { pod, record } => {
                if let Some((_, ifindex)) = self.interfaces.get(pod) {
                    let ifindex = *ifindex;
                    self.dp.maps().put_pod(ifindex, record)?;
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
    EnrichmentSnapshot { pods, policies, node_name: node_name.into() }
}
