//! The API access the watchers make, as data: the single source for the RBAC the
//! deployment grants (tests compare `deploy/` against it, and the requests a fake API
//! server receives against `WATCH_CALLS`).

/// One ClusterRole rule: a resource of an API group and the verbs used on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiAccess {
    /// The API group, `""` for the core group.
    pub api_group: &'static str,
    /// The plural resource name.
    pub resource: &'static str,
    /// The verbs, sorted.
    pub verbs: &'static [&'static str],
}

/// The verbs the watchers issue: a `list` (paginated, or from the watch cache after a
/// 410), then `watch` from the list's resourceVersion (a test checks every request against this).
pub const WATCH_CALLS: &[&str] = &["list", "watch"];

/// The verbs the deployment grants on each watched resource: `WATCH_CALLS` plus `get`,
/// as the deployment spec asks (the usual informer grant). The watchers never `get`
/// one object; dropping it here and in `deploy/rbac.yaml` together is the strict
/// least-privilege choice.
pub const GRANTED_VERBS: &[&str] = &["get", "list", "watch"];

/// Everything the source may call on the API server, cluster-wide, whichever policy
/// source is chosen: the ClusterRole in `deploy/` grants exactly this.
pub const WATCHED_RESOURCES: &[ApiAccess] = &[
    ApiAccess {
        api_group: "",
        resource: "namespaces",
        verbs: GRANTED_VERBS,
    },
    ApiAccess {
        api_group: "",
        resource: "pods",
        verbs: GRANTED_VERBS,
    },
    ApiAccess {
        api_group: "networking.k8s.io",
        resource: "networkpolicies",
        verbs: GRANTED_VERBS,
    },
    // With `--policy-source policyendpoint` (EKS).
    ApiAccess {
        api_group: "networking.k8s.aws",
        resource: "policyendpoints",
        verbs: GRANTED_VERBS,
    },
    // With `--policy-source policyendpoint` too: the cluster-scoped objects the EKS
    // controller derives from ClusterNetworkPolicies (Admin and Baseline tiers).
    ApiAccess {
        api_group: "networking.k8s.aws",
        resource: "clusterpolicyendpoints",
        verbs: GRANTED_VERBS,
    },
];
