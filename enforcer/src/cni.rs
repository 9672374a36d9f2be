//! The VPC CNI's hook into the enforcer ([`cni_hook::PodHook`]). On ADD the pod is
//! bound to the host veths the CNI just made (its naming, [`crate::binding`]) and the
//! programs are attached with the pod's record before the call returns: its resolved
//! policies if the enforcer knows the pod already, otherwise the initial record of the
//! CNI's mode (strict: deny both ways; standard: allow). The pod watch may lag the
//! CNI, so a pod bound here is kept while it is missing from the cluster state, until
//! the state lists it (then the usual rules apply) or DEL comes. On DEL the programs
//! leave the pod's interfaces by index and the binding is forgotten.

use std::sync::{Arc, Mutex};

use cni_hook::{EnforceRequest, HookError, HookMode, PodHook, PodKey};
use datapath::links;
use policy::{EnforcingMode, PodRef};

use crate::{
    ApplyReport, Bound, Enforcer,
    binding::{Found, SGP_VETH_PREFIX, host_veth_name},
};

impl Enforcer {
    /// Binds the pod of a CNI ADD to its host veths (`interface_count` of them) and
    /// attaches the programs, its record written first. Returns the interfaces.
    ///
    /// # Errors
    /// [`HookError::NoInterface`] when one of its veths does not exist (the CNI makes
    /// them before calling), [`HookError::Enforcement`] when a map write or attach
    /// failed (nothing is left attached for that interface).
    pub fn cni_add(&mut self, request: &EnforceRequest) -> Result<Vec<String>, HookError> {
        let pod = PodRef::new(request.pod.namespace.clone(), request.pod.name.clone());
        let failed = |e: &dyn std::fmt::Display| HookError::Enforcement {
            pod: request.pod.clone(),
            reason: e.to_string(),
        };
        let links = links::dump_links().map_err(|e| failed(&e))?;
        // A veth of an earlier incarnation of the pod may be gone: let go of it first.
        let mut report = ApplyReport::default();
        self.drop_vanished(&links, &mut report)
            .map_err(|e| failed(&e))?;

        let mut found = Vec::new();
        for index in 0..request.interface_count {
            let names = [self.binding.veth_prefix.as_str(), SGP_VETH_PREFIX]
                .map(|prefix| host_veth_name(prefix, &pod.namespace, &pod.name, index));
            let link = names
                .iter()
                .filter_map(|n| links.by_name(n))
                .find(|l| l.is_pod_veth());
            match link {
                Some(link) => found.push(link.clone()),
                None => {
                    return Err(HookError::NoInterface {
                        pod: request.pod.clone(),
                        expected: names.join(" or "),
                    });
                }
            }
        }

        let mode = match request.mode {
            HookMode::Strict => EnforcingMode::Strict,
            HookMode::Standard => EnforcingMode::Standard,
        };
        let known = self.planner.record_of(&pod).copied();
        // An unknown pod's addresses are those of the CNI's host routes through its veth
        // (the programs check a pod's source address, so a record needs them).
        let routes = match known {
            Some(_) => Default::default(),
            None => links::host_routes().map_err(|e| failed(&e))?,
        };
        let mut attached = Vec::new();
        for link in found {
            let ifindex = link.ifindex;
            let record = known.unwrap_or_else(|| {
                let mut record = self.planner.initial_record(mode);
                with_routed_addresses(&mut record, &routes, ifindex);
                record
            });
            match self.owners.get(&ifindex).cloned() {
                Some(owner) if owner == pod => {
                    attached.push(link.name);
                    continue;
                }
                Some(owner) => {
                    tracing::warn!(interface = %link.name, from = %owner, to = %pod, "the CNI set this interface up for another pod; it moves to that pod");
                    self.let_go(&owner, ifindex);
                }
                None => {}
            }
            self.dp
                .maps()
                .put_pod(ifindex, &record)
                .map_err(|e| failed(&e))?;
            match self.dp.attach(&link.name) {
                Ok(i) if i == ifindex => {}
                Ok(_) => {
                    let _ = self.dp.maps().remove_pod(ifindex);
                    return Err(failed(&format!(
                        "interface {} was re-created during the attach",
                        link.name
                    )));
                }
                Err(e) => {
                    let _ = self.dp.maps().remove_pod(ifindex);
                    return Err(failed(&e));
                }
            }
            tracing::info!(%pod, interface = %link.name, ifindex, ?mode, "attached on the CNI's ADD");
            self.owners.insert(ifindex, pod.clone());
            self.interfaces.entry(pod.clone()).or_default().push(Bound {
                name: link.name.clone(),
                ifindex,
                found: Found::ByName,
            });
            attached.push(link.name);
        }
        if self.unbound.remove(&pod).is_some() {
            self.unbound_gauge.set(self.unbound.len() as i64);
        }
        if !self
            .last
            .as_ref()
            .is_some_and(|r| r.pods.contains_key(&pod))
        {
            self.cni_pods.insert(pod);
        }
        Ok(attached)
    }

    /// Detaches the programs from the interfaces of the pod of a CNI DEL (by index: a
    /// new interface that took a name is left alone) and forgets the binding. Returns
    /// the interfaces let go; a pod never bound is not an error.
    ///
    /// # Errors
    /// A map delete or detach failed.
    pub fn cni_del(&mut self, pod: &PodKey) -> Result<Vec<String>, HookError> {
        let key = PodRef::new(pod.namespace.clone(), pod.name.clone());
        self.cni_pods.remove(&key);
        let mut report = ApplyReport::default();
        self.release(&key, &mut report)
            .map_err(|e| HookError::Enforcement {
                pod: pod.clone(),
                reason: e.to_string(),
            })?;
        Ok(report.detached)
    }

    /// Pods bound on a CNI ADD that the cluster state has not listed yet.
    pub fn cni_only_pods(&self) -> Vec<PodRef> {
        let mut pods: Vec<PodRef> = self.cni_pods.iter().cloned().collect();
        pods.sort();
        pods
    }
}

/// Fills the record's addresses from the host routes that leave through `ifindex`.
fn with_routed_addresses(
    record: &mut datapath::abi::PodRecord,
    routes: &std::collections::HashMap<std::net::IpAddr, u32>,
    ifindex: u32,
) {
    for (address, _) in routes.iter().filter(|(_, oif)| **oif == ifindex) {
        match address {
            std::net::IpAddr::V4(a) => {
                record.ipv4 = a.octets();
                record.addr_flags |= datapath::abi::POD_HAS_IPV4;
            }
            std::net::IpAddr::V6(a) => {
                record.ipv6 = a.octets();
                record.addr_flags |= datapath::abi::POD_HAS_IPV6;
            }
        }
    }
}

/// The agent's [`PodHook`]: the daemon's enforcer behind its lock.
pub struct EnforcerHook {
    enforcer: Arc<Mutex<Enforcer>>,
}

impl EnforcerHook {
    pub fn new(enforcer: Arc<Mutex<Enforcer>>) -> Self {
        Self { enforcer }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Enforcer>, HookError> {
        self.enforcer.lock().map_err(|_| HookError::NotReady {
            reason: "the enforcer's lock is poisoned (a previous apply panicked)".into(),
        })
    }
}

impl PodHook for EnforcerHook {
    fn enforce(&self, request: &EnforceRequest) -> Result<(), HookError> {
        self.lock()?.cni_add(request).map(drop)
    }

    fn delete(&self, pod: &PodKey) -> Result<(), HookError> {
        let detached = self.lock()?.cni_del(pod)?;
        tracing::info!(%pod, ?detached, "detached on the CNI's DEL");
        Ok(())
    }
}
