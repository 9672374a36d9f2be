//! Checks a request from the CNI before anything touches the kernel: the pod's name
//! (a DNS-1123 subdomain), its namespace (a DNS-1123 label), the enforcing mode and the
//! interface count. Each refusal names the field and why.

use std::fmt;

use crate::{
    HookError,
    proto::{DeleteNpRequest, EnforceNpRequest},
};

/// Longest pod name Kubernetes accepts (a DNS-1123 subdomain).
const MAX_NAME: usize = 253;
/// Longest namespace (a DNS-1123 label).
const MAX_LABEL: usize = 63;
/// Most interfaces a pod may ask for (the CNI's multi-NIC limit is far below).
pub const MAX_INTERFACES: u32 = 8;

/// A pod, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

impl PodKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The enforcing mode the CNI passes (`NETWORK_POLICY_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookMode {
    /// A pod no policy selects is open.
    Standard,
    /// A new pod starts denied both ways until its policies are known.
    Strict,
}

/// A checked `EnforceNpToPod`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnforceRequest {
    pub pod: PodKey,
    pub mode: HookMode,
    /// Interfaces the CNI set up for the pod (at least 1).
    pub interface_count: u32,
}

impl TryFrom<EnforceNpRequest> for EnforceRequest {
    type Error = HookError;

    fn try_from(request: EnforceNpRequest) -> Result<Self, HookError> {
        let pod = pod_key(&request.k8s_pod_namespace, &request.k8s_pod_name)?;
        let mode = match request.network_policy_mode.to_ascii_lowercase().as_str() {
            "standard" => HookMode::Standard,
            "strict" => HookMode::Strict,
            other => {
                return Err(HookError::invalid(
                    "NETWORK_POLICY_MODE",
                    format!("{other:?} is neither \"standard\" nor \"strict\""),
                ));
            }
        };
        // The CNI sends the count of allocated IPs; 0 (an older CNI) means one.
        let interface_count = match u32::try_from(request.interface_count) {
            Ok(0) => 1,
            Ok(n) if n <= MAX_INTERFACES => n,
            _ => {
                return Err(HookError::invalid(
                    "InterfaceCount",
                    format!(
                        "{} is outside 0 to {MAX_INTERFACES}",
                        request.interface_count
                    ),
                ));
            }
        };
        Ok(Self {
            pod,
            mode,
            interface_count,
        })
    }
}

impl TryFrom<DeleteNpRequest> for PodKey {
    type Error = HookError;

    fn try_from(request: DeleteNpRequest) -> Result<Self, HookError> {
        pod_key(&request.k8s_pod_namespace, &request.k8s_pod_name)
    }
}

fn pod_key(namespace: &str, name: &str) -> Result<PodKey, HookError> {
    check_label(namespace, MAX_LABEL).map_err(|r| HookError::invalid("K8S_POD_NAMESPACE", r))?;
    check_subdomain(name).map_err(|r| HookError::invalid("K8S_POD_NAME", r))?;
    Ok(PodKey::new(namespace, name))
}

/// A DNS-1123 label: 1 to `max` of `[a-z0-9-]`, starting and ending alphanumeric.
fn check_label(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("empty".into());
    }
    if value.len() > max {
        return Err(format!("{} characters, at most {max}", value.len()));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{value:?} holds {bad:?}; only lowercase letters, digits and '-'"
        ));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(format!("{value:?} starts or ends with '-'"));
    }
    Ok(())
}

/// A DNS-1123 subdomain: dot-separated labels, 253 characters at most.
fn check_subdomain(value: &str) -> Result<(), String> {
    if value.len() > MAX_NAME {
        return Err(format!("{} characters, at most {MAX_NAME}", value.len()));
    }
    if value.is_empty() {
        return Err("empty".into());
    }
    for label in value.split('.') {
        check_label(label, MAX_NAME).map_err(|r| format!("{value:?}: label {r}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enforce(namespace: &str, name: &str, mode: &str, count: i32) -> EnforceNpRequest {
        EnforceNpRequest {
            k8s_pod_name: name.into(),
            k8s_pod_namespace: namespace.into(),
            network_policy_mode: mode.into(),
            interface_count: count,
        }
    }

    #[test]
    fn good_requests_are_taken() {
        let r = EnforceRequest::try_from(enforce("default", "web-7d9.x", "Strict", 0)).unwrap();
        assert_eq!(r.pod, PodKey::new("default", "web-7d9.x"));
        assert_eq!(r.mode, HookMode::Strict);
        assert_eq!(r.interface_count, 1);
        let r = EnforceRequest::try_from(enforce("kube-system", "a", "standard", 3)).unwrap();
        assert_eq!((r.mode, r.interface_count), (HookMode::Standard, 3));
    }

    #[test]
    fn bad_requests_name_the_field() {
        let long = "a".repeat(64);
        let cases: &[(EnforceNpRequest, &str)] = &[
            (enforce("", "p", "strict", 1), "K8S_POD_NAMESPACE"),
            (enforce("default", "", "strict", 1), "K8S_POD_NAME"),
            (enforce("Default", "p", "strict", 1), "K8S_POD_NAMESPACE"),
            (enforce(&long, "p", "strict", 1), "K8S_POD_NAMESPACE"),
            (enforce("default", "-p", "strict", 1), "K8S_POD_NAME"),
            (enforce("default", "a..b", "strict", 1), "K8S_POD_NAME"),
            (enforce("default", "p/../x", "strict", 1), "K8S_POD_NAME"),
            (
                enforce("default", &"a".repeat(254), "strict", 1),
                "K8S_POD_NAME",
            ),
            (enforce("default", "p", "", 1), "NETWORK_POLICY_MODE"),
            (enforce("default", "p", "loose", 1), "NETWORK_POLICY_MODE"),
            (enforce("default", "p", "strict", -1), "InterfaceCount"),
            (enforce("default", "p", "strict", 9), "InterfaceCount"),
        ];
        for (request, field) in cases {
            match EnforceRequest::try_from(request.clone()) {
                Err(HookError::InvalidArgument { field: f, .. }) => {
                    assert_eq!(f, *field, "{request:?}")
                }
                other => panic!("{request:?}: {other:?}"),
            }
        }
        let delete = DeleteNpRequest {
            k8s_pod_name: "p".into(),
            k8s_pod_namespace: String::new(),
        };
        assert!(matches!(
            PodKey::try_from(delete),
            Err(HookError::InvalidArgument {
                field: "K8S_POD_NAMESPACE",
                ..
            })
        ));
    }
}
