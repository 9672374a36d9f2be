//! The API access the watchers make, as data: the single source for the RBAC the
//! deployment grants (a test compares `deploy/` against it and against the requests a
//! fake API server actually receives).

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

/// The verbs a kube-runtime watcher issues: a paginated `list`, then `watch` from the
/// list's resourceVersion. It never reads single objects, so `get` is not needed.
pub const WATCH_VERBS: &[&str] = &["list", "watch"];

/// Everything the source calls on the API server, cluster-wide.
pub const WATCHED_RESOURCES: &[ApiAccess] = &[
    ApiAccess {
        api_group: "",
        resource: "namespaces",
        verbs: WATCH_VERBS,
    },
    ApiAccess {
        api_group: "",
        resource: "pods",
        verbs: WATCH_VERBS,
    },
    ApiAccess {
        api_group: "networking.k8s.io",
        resource: "networkpolicies",
        verbs: WATCH_VERBS,
    },
];
