//! The PolicyEndpoint objects the source holds, grouped by the NetworkPolicy they were
//! derived from (`spec.policyRef`), and the one merged policy per group that stands in
//! `ClusterState::policies` (`policy::endpoints::merge`). Selected pods hosted on other
//! nodes are dropped on arrival when the node's addresses are known, so a change that
//! only concerns other nodes leaves the merged policy, and the published state, as
//! they were. `ClusterSlices` does the same for ClusterPolicyEndpoint objects, grouped
//! by the ClusterNetworkPolicy they were derived from, into
//! `ClusterState::cluster_policies` (`policy::cluster_endpoints::merge`). Both are a
//! `SliceStore`; the `Slice` trait says how each kind is keyed, merged and published.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::IpAddr;

use policy::{ClusterPolicyEndpoint, ClusterState, ObjectRef, PolicyEndpoint, PolicyRef};

/// Every PolicyEndpoint object of the cluster, by policy.
pub(crate) type Slices = SliceStore<PolicyEndpoint>;

/// Every ClusterPolicyEndpoint object of the cluster, by cluster policy name.
pub(crate) type ClusterSlices = SliceStore<ClusterPolicyEndpoint>;

/// A kind of slice object: derived from one policy, merged with the other slices of
/// that policy into the policy `ClusterState` holds.
pub(crate) trait Slice: Sized {
    /// The object's identity.
    type Key: Ord + Hash + Clone;
    /// The identity of the policy it was derived from.
    type Policy: Ord + Hash + Clone;

    fn key(&self) -> Self::Key;
    fn policy(&self) -> &Self::Policy;
    /// Drop the selected pods not hosted on one of `node_addresses` (none when empty).
    fn keep_subjects_on(&mut self, node_addresses: &[IpAddr]);
    /// Put the merge of `slices`, the objects of `policy` (at least one), in
    /// `state`; true when that changed `state`.
    fn publish<'a>(
        state: &mut ClusterState,
        policy: &Self::Policy,
        slices: impl IntoIterator<Item = &'a Self>,
    ) -> bool
    where
        Self: 'a;
    /// Take `policy`'s merged policy out of `state`; true when it was there.
    fn withdraw(state: &mut ClusterState, policy: &Self::Policy) -> bool;
}

impl Slice for PolicyEndpoint {
    type Key = ObjectRef;
    type Policy = PolicyRef;

    fn key(&self) -> ObjectRef {
        PolicyEndpoint::key(self)
    }
    fn policy(&self) -> &PolicyRef {
        &self.policy
    }
    fn keep_subjects_on(&mut self, node_addresses: &[IpAddr]) {
        self.retain_subjects_on(node_addresses);
    }
    fn publish<'a>(
        state: &mut ClusterState,
        policy: &PolicyRef,
        slices: impl IntoIterator<Item = &'a Self>,
    ) -> bool {
        let merged = policy::endpoints::merge(policy, slices);
        if state.policies.get(policy) == Some(&merged) {
            return false;
        }
        state.upsert_policy(merged);
        true
    }
    fn withdraw(state: &mut ClusterState, policy: &PolicyRef) -> bool {
        state.remove_policy(policy).is_some()
    }
}

impl Slice for ClusterPolicyEndpoint {
    type Key = String;
    type Policy = String;

    fn key(&self) -> String {
        self.name.clone()
    }
    fn policy(&self) -> &String {
        &self.policy
    }
    fn keep_subjects_on(&mut self, node_addresses: &[IpAddr]) {
        self.retain_subjects_on(node_addresses);
    }
    fn publish<'a>(
        state: &mut ClusterState,
        policy: &String,
        slices: impl IntoIterator<Item = &'a Self>,
    ) -> bool {
        let Some(merged) = policy::cluster_endpoints::merge(policy, slices) else {
            return Self::withdraw(state, policy);
        };
        if state.cluster_policies.get(policy) == Some(&merged) {
            return false;
        }
        state.upsert_cluster_policy(merged);
        true
    }
    fn withdraw(state: &mut ClusterState, policy: &String) -> bool {
        state.remove_cluster_policy(policy).is_some()
    }
}

/// Every object of one slice kind, by the policy it was derived from.
#[derive(Debug)]
pub(crate) struct SliceStore<S: Slice> {
    /// This node's addresses (`SourceOptions::node_addresses`); empty keeps every
    /// selected pod.
    node_addresses: Vec<IpAddr>,
    by_policy: BTreeMap<S::Policy, BTreeMap<S::Key, S>>,
    /// Object -> the policy it belongs to (a slice never changes policy in practice,
    /// but a MODIFIED event may say otherwise).
    owner: HashMap<S::Key, S::Policy>,
}

impl<S: Slice> Default for SliceStore<S> {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl<S: Slice> SliceStore<S> {
    pub(crate) fn new(node_addresses: Vec<IpAddr>) -> Self {
        Self {
            node_addresses,
            by_policy: BTreeMap::new(),
            owner: HashMap::new(),
        }
    }

    /// Add or replace one object; true when `state`'s policies changed.
    pub(crate) fn upsert(&mut self, state: &mut ClusterState, mut slice: S) -> bool {
        slice.keep_subjects_on(&self.node_addresses);
        let key = slice.key();
        let policy = slice.policy().clone();
        let previous = self.owner.insert(key.clone(), policy.clone());
        let mut changed = false;
        if let Some(old) = previous.filter(|old| *old != policy) {
            if let Some(group) = self.by_policy.get_mut(&old) {
                group.remove(&key);
            }
            changed |= self.refresh(state, &old);
        }
        self.by_policy
            .entry(policy.clone())
            .or_default()
            .insert(key, slice);
        changed | self.refresh(state, &policy)
    }

    /// Remove one object; returns it, and whether `state`'s policies changed.
    pub(crate) fn remove<K>(&mut self, state: &mut ClusterState, key: &K) -> (Option<S>, bool)
    where
        S::Key: Borrow<K>,
        K: Ord + Hash + ?Sized,
    {
        let Some(policy) = self.owner.remove(key) else {
            return (None, false);
        };
        let removed = self
            .by_policy
            .get_mut(&policy)
            .and_then(|group| group.remove(key));
        let changed = self.refresh(state, &policy);
        (removed, changed)
    }

    /// Forget every object and the policies they made.
    pub(crate) fn clear(&mut self, state: &mut ClusterState) {
        for policy in self.by_policy.keys() {
            S::withdraw(state, policy);
        }
        self.by_policy.clear();
        self.owner.clear();
    }

    /// Put the merge of `policy`'s objects in `state` (or remove it when none is
    /// left); true when that changed `state`.
    fn refresh(&mut self, state: &mut ClusterState, policy: &S::Policy) -> bool {
        match self.by_policy.get(policy).filter(|g| !g.is_empty()) {
            Some(group) => S::publish(state, policy, group.values()),
            None => {
                self.by_policy.remove(policy);
                S::withdraw(state, policy)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `podSelectorEndpoints` entries for `(pod, hostIP)` pairs in namespace shop.
    fn pod_endpoints(pods: &[(&str, &str)]) -> String {
        let entries: Vec<String> = pods
            .iter()
            .map(|(pod, host)| {
                format!(
                    "{{podIP: 10.0.9.{}, hostIP: {host}, name: {pod}, namespace: shop}}",
                    pod.len()
                )
            })
            .collect();
        entries.join(", ")
    }

    fn slice(name: &str, pods: &[(&str, &str)], peer: &str) -> PolicyEndpoint {
        let text = format!(
            "apiVersion: networking.k8s.aws/v1alpha1\nkind: PolicyEndpoint\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  policyRef: {{name: web, namespace: shop}}\n  podIsolation: [Ingress]\n  podSelectorEndpoints: [{}]\n  ingress: [{{cidr: {peer}}}]\n",
            pod_endpoints(pods)
        );
        policy::load_policy_endpoint("test", serde_yaml::from_str(&text).expect("YAML"))
            .expect("loads")
    }

    fn subjects(state: &ClusterState) -> Vec<String> {
        state.policies[&PolicyRef::new("shop", "web")]
            .spec
            .subject_pods
            .clone()
            .expect("explicit subjects")
            .into_iter()
            .collect()
    }

    const HERE: &str = "192.168.0.1";
    const THERE: &str = "192.168.0.2";

    #[test]
    fn slices_merge_by_policy_and_leave_when_the_last_one_goes() {
        let mut slices = Slices::new(vec![HERE.parse().unwrap()]);
        let mut state = ClusterState::default();
        assert!(slices.upsert(&mut state, slice("web-a", &[("a", HERE)], "10.0.1.1")));
        assert!(slices.upsert(
            &mut state,
            slice("web-b", &[("bb", HERE), ("ccc", THERE)], "10.0.1.2")
        ));
        assert_eq!(state.policies.len(), 1, "one policy for two objects");
        assert_eq!(
            subjects(&state),
            ["a", "bb"],
            "pods of other nodes left out"
        );
        let rules = &state.policies[&PolicyRef::new("shop", "web")].spec.ingress;
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].peers.len(), 2, "peers of both objects");

        let (removed, changed) = slices.remove(&mut state, &ObjectRef::new("shop", "web-a"));
        assert!(removed.is_some() && changed);
        assert_eq!(subjects(&state), ["bb"]);
        let (_, changed) = slices.remove(&mut state, &ObjectRef::new("shop", "web-b"));
        assert!(changed);
        assert!(state.policies.is_empty());
        let (removed, changed) = slices.remove(&mut state, &ObjectRef::new("shop", "web-b"));
        assert!(removed.is_none() && !changed);
    }

    #[test]
    fn a_change_that_only_concerns_other_nodes_changes_nothing() {
        let mut slices = Slices::new(vec![HERE.parse().unwrap()]);
        let mut state = ClusterState::default();
        assert!(slices.upsert(
            &mut state,
            slice("web-a", &[("a", HERE), ("b", THERE)], "10.0.1.1")
        ));
        let before = state.clone();
        assert!(!slices.upsert(
            &mut state,
            slice(
                "web-a",
                &[("a", HERE), ("b", THERE), ("c", THERE)],
                "10.0.1.1"
            )
        ));
        assert_eq!(state, before);
        // Without the node's addresses every pod counts.
        let mut all = Slices::new(Vec::new());
        let mut state = ClusterState::default();
        all.upsert(
            &mut state,
            slice("web-a", &[("a", HERE), ("b", THERE)], "10.0.1.1"),
        );
        assert_eq!(subjects(&state), ["a", "b"]);
    }

    #[test]
    fn clear_removes_the_merged_policies_and_nothing_else() {
        let mut slices = Slices::new(Vec::new());
        let mut state = ClusterState::default();
        slices.upsert(&mut state, slice("web-a", &[("a", HERE)], "10.0.1.1"));
        state.upsert_namespace(policy::Namespace {
            name: "shop".into(),
            labels: Default::default(),
        });
        slices.clear(&mut state);
        assert!(state.policies.is_empty());
        assert_eq!(state.namespaces.len(), 1);
    }

    fn cluster_slice(
        name: &str,
        policy: &str,
        pods: &[(&str, &str)],
        peer: &str,
    ) -> ClusterPolicyEndpoint {
        let text = format!(
            "apiVersion: networking.k8s.aws/v1alpha1\nkind: ClusterPolicyEndpoint\nmetadata: {{name: {name}}}\nspec:\n  policyRef: {{name: {policy}}}\n  tier: Admin\n  priority: 5\n  podSelectorEndpoints: [{}]\n  ingress: [{{cidr: {peer}, action: Deny}}]\n",
            pod_endpoints(pods)
        );
        policy::load_cluster_policy_endpoint("test", serde_yaml::from_str(&text).expect("YAML"))
            .expect("loads")
    }

    fn cluster_subjects(state: &ClusterState, policy: &str) -> Vec<String> {
        state.cluster_policies[policy]
            .subject_pods
            .clone()
            .expect("explicit subjects")
            .into_iter()
            .map(|p| p.name)
            .collect()
    }

    #[test]
    fn cluster_slices_merge_by_policy_and_leave_when_the_last_one_goes() {
        let mut slices = ClusterSlices::new(vec![HERE.parse().unwrap()]);
        let mut state = ClusterState::default();
        assert!(slices.upsert(
            &mut state,
            cluster_slice("guard-a", "guard", &[("a", HERE)], "10.0.1.1")
        ));
        assert!(slices.upsert(
            &mut state,
            cluster_slice(
                "guard-b",
                "guard",
                &[("bb", HERE), ("ccc", THERE)],
                "10.0.1.2"
            )
        ));
        assert_eq!(
            state.cluster_policies.len(),
            1,
            "one policy for two objects"
        );
        assert_eq!(
            cluster_subjects(&state, "guard"),
            ["a", "bb"],
            "pods of other nodes left out"
        );
        // Only other-node pods change: nothing to publish.
        assert!(!slices.upsert(
            &mut state,
            cluster_slice(
                "guard-b",
                "guard",
                &[("bb", HERE), ("dddd", THERE)],
                "10.0.1.2"
            )
        ));
        // An object moving to another policy leaves the first one.
        assert!(slices.upsert(
            &mut state,
            cluster_slice("guard-b", "other", &[("bb", HERE)], "10.0.1.2")
        ));
        assert_eq!(cluster_subjects(&state, "guard"), ["a"]);
        assert_eq!(cluster_subjects(&state, "other"), ["bb"]);
        let (removed, changed) = slices.remove(&mut state, "guard-a");
        assert!(removed.is_some() && changed);
        assert!(!state.cluster_policies.contains_key("guard"));
        let (removed, changed) = slices.remove(&mut state, "guard-a");
        assert!(removed.is_none() && !changed);
        state.upsert_namespace(policy::Namespace {
            name: "shop".into(),
            labels: Default::default(),
        });
        slices.clear(&mut state);
        assert!(state.cluster_policies.is_empty());
        assert_eq!(state.namespaces.len(), 1, "nothing else cleared");
    }
}
