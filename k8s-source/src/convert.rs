//! API objects to policy model values, through the policy crate's own manifest loader
//! (`policy::load::load_value_into`, what `policy::load_str` runs per document), so an object read from the API server and the same object
//! read from YAML give equal model values. Only the fields the resolver reads are
//! carried over; the API object is dropped right after. PolicyEndpoint objects
//! (`networking.k8s.aws/v1alpha1`, no Rust type in k8s-openapi) are read as
//! `PolicyEndpointObject`, their spec kept as JSON for
//! `policy::load_policy_endpoint`; ClusterPolicyEndpoints (the same group,
//! cluster-scoped) likewise as `ClusterPolicyEndpointObject` for
//! `policy::load_cluster_policy_endpoint`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::error::ConvertError;

/// What kind of object a watcher follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    Pod,
    NetworkPolicy,
    PolicyEndpoint,
    ClusterPolicyEndpoint,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Namespace,
        Kind::Pod,
        Kind::NetworkPolicy,
        Kind::PolicyEndpoint,
        Kind::ClusterPolicyEndpoint,
    ];

    /// How many kinds there are (the length of the per-kind arrays).
    pub(crate) const COUNT: usize = Self::ALL.len();

    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::PolicyEndpoint => "PolicyEndpoint",
            Kind::ClusterPolicyEndpoint => "ClusterPolicyEndpoint",
        }
    }

    /// The API resource (plural), as RBAC and the metrics' `kind` label name it.
    pub const fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Pod => "pods",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::PolicyEndpoint => "policyendpoints",
            Kind::ClusterPolicyEndpoint => "clusterpolicyendpoints",
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            Kind::Namespace => 0,
            Kind::Pod => 1,
            Kind::NetworkPolicy => 2,
            Kind::PolicyEndpoint => 3,
            Kind::ClusterPolicyEndpoint => 4,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object's identity within its kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Namespace(String),
    Pod(policy::PodRef),
    NetworkPolicy(policy::PolicyRef),
    /// One PolicyEndpoint object (a slice of a policy), by its own namespace and name.
    PolicyEndpoint(policy::ObjectRef),
    /// One ClusterPolicyEndpoint object (a slice of a cluster policy), by its name.
    ClusterPolicyEndpoint(String),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Namespace(name) => write!(f, "Namespace {name}"),
            Key::Pod(r) => write!(f, "Pod {r}"),
            Key::NetworkPolicy(r) => write!(f, "NetworkPolicy {r}"),
            Key::PolicyEndpoint(r) => write!(f, "PolicyEndpoint {r}"),
            Key::ClusterPolicyEndpoint(name) => write!(f, "ClusterPolicyEndpoint {name}"),
        }
    }
}

/// A converted object, ready for `ClusterState`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Namespace(policy::Namespace),
    Pod(policy::Pod),
    NetworkPolicy(policy::NetworkPolicy),
    PolicyEndpoint(policy::PolicyEndpoint),
    ClusterPolicyEndpoint(policy::ClusterPolicyEndpoint),
}

impl Object {
    pub fn key(&self) -> Key {
        match self {
            Object::Namespace(n) => Key::Namespace(n.name.clone()),
            Object::Pod(p) => Key::Pod(p.key()),
            Object::NetworkPolicy(p) => Key::NetworkPolicy(p.key()),
            Object::PolicyEndpoint(p) => Key::PolicyEndpoint(p.key()),
            Object::ClusterPolicyEndpoint(p) => Key::ClusterPolicyEndpoint(p.name.clone()),
        }
    }
}

/// An API type the source watches: how to name it and how to convert it.
pub trait Watched:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;

    /// May the API server not serve this kind at all (its CRD not installed)? A 404
    /// to a list then means "no objects", not a failure (`watch`).
    const OPTIONAL: bool = false;

    /// The identity, from metadata only (enough for DELETED events).
    fn model_key(&self) -> Key;

    /// The model value.
    ///
    /// # Errors
    /// The object does not pass the policy loader's validation.
    fn to_model(&self) -> Result<Object, ConvertError>;
}

fn namespace_of<K: ResourceExt>(obj: &K) -> String {
    obj.namespace().unwrap_or_else(|| "default".to_owned())
}

/// Feed one slim manifest through the policy loader and take the single object out.
fn load_one(key: &Key, manifest: &Value) -> Result<policy::ClusterState, ConvertError> {
    let value = serde_yaml::to_value(manifest).map_err(|source| ConvertError::Encode {
        object: key.to_string(),
        source,
    })?;
    let mut state = policy::ClusterState::default();
    policy::load::load_value_into(&mut state, &key.to_string(), value).map_err(|source| {
        ConvertError::Invalid {
            object: key.to_string(),
            source: Box::new(source),
        }
    })?;
    Ok(state)
}

fn missing(key: &Key) -> ConvertError {
    ConvertError::NotLoaded {
        object: key.to_string(),
    }
}

impl Watched for core::Namespace {
    const KIND: Kind = Kind::Namespace;

    fn model_key(&self) -> Key {
        Key::Namespace(self.name_any())
    }

    fn to_model(&self) -> Result<Object, ConvertError> {
        let key = self.model_key();
        let manifest = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": self.name_any(), "labels": self.labels() },
        });
        let mut state = load_one(&key, &manifest)?;
        state
            .namespaces
            .pop_first()
            .map(|(_, n)| Object::Namespace(n))
            .ok_or_else(|| missing(&key))
    }
}

impl Watched for core::Pod {
    const KIND: Kind = Kind::Pod;

    fn model_key(&self) -> Key {
        Key::Pod(policy::ObjectRef::new(namespace_of(self), self.name_any()))
    }

    fn to_model(&self) -> Result<Object, ConvertError> {
        let key = self.model_key();
        let annotations: BTreeMap<&str, &str> = self
            .annotations()
            .get(policy::INTERFACE_ANNOTATION)
            .map(|v| (policy::INTERFACE_ANNOTATION, v.as_str()))
            .into_iter()
            .collect();
        let spec = self.spec.as_ref();
        let containers: Vec<Value> = spec
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| json!({ "ports": c.ports }))
                    .collect()
            })
            .unwrap_or_default();
        let status = self.status.as_ref();
        let manifest = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name_any(),
                "namespace": namespace_of(self),
                "labels": self.labels(),
                "annotations": annotations,
            },
            "spec": {
                "nodeName": spec.and_then(|s| s.node_name.as_ref()),
                "hostNetwork": spec.and_then(|s| s.host_network),
                "containers": containers,
            },
            "status": {
                "phase": status.and_then(|s| s.phase.as_ref()),
                "podIP": status.and_then(|s| s.pod_ip.as_ref()),
                "podIPs": status.and_then(|s| s.pod_ips.as_ref()),
            },
        });
        let mut state = load_one(&key, &manifest)?;
        state
            .pods
            .pop_first()
            .map(|(_, p)| Object::Pod(p))
            .ok_or_else(|| missing(&key))
    }
}

impl Watched for networking::NetworkPolicy {
    const KIND: Kind = Kind::NetworkPolicy;

    fn model_key(&self) -> Key {
        Key::NetworkPolicy(policy::ObjectRef::new(namespace_of(self), self.name_any()))
    }

    fn to_model(&self) -> Result<Object, ConvertError> {
        let key = self.model_key();
        // Only the annotation the model reads (audit mode) travels.
        let annotations: BTreeMap<&str, &str> = self
            .annotations()
            .get(policy::AUDIT_KEY)
            .map(|v| (policy::AUDIT_KEY, v.as_str()))
            .into_iter()
            .collect();
        let manifest = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": self.name_any(),
                "namespace": namespace_of(self),
                "annotations": annotations,
            },
            "spec": self.spec,
        });
        let mut state = load_one(&key, &manifest)?;
        state
            .policies
            .pop_first()
            .map(|(_, p)| Object::NetworkPolicy(p))
            .ok_or_else(|| missing(&key))
    }
}

/// A `networking.k8s.aws/v1alpha1` PolicyEndpoint as the API serves it: metadata, and
/// the spec left as JSON for the policy crate's loader.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct PolicyEndpointObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Value,
}

impl k8s_openapi::Resource for PolicyEndpointObject {
    const API_VERSION: &'static str = policy::endpoints::POLICY_ENDPOINT_API_VERSION;
    const GROUP: &'static str = "networking.k8s.aws";
    const KIND: &'static str = policy::endpoints::POLICY_ENDPOINT_KIND;
    const VERSION: &'static str = "v1alpha1";
    const URL_PATH_SEGMENT: &'static str = "policyendpoints";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::ListableResource for PolicyEndpointObject {
    const LIST_KIND: &'static str = "PolicyEndpointList";
}

impl k8s_openapi::Metadata for PolicyEndpointObject {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Watched for PolicyEndpointObject {
    const KIND: Kind = Kind::PolicyEndpoint;

    fn model_key(&self) -> Key {
        Key::PolicyEndpoint(policy::ObjectRef::new(namespace_of(self), self.name_any()))
    }

    fn to_model(&self) -> Result<Object, ConvertError> {
        let key = self.model_key();
        let manifest = json!({
            "apiVersion": policy::endpoints::POLICY_ENDPOINT_API_VERSION,
            "kind": policy::endpoints::POLICY_ENDPOINT_KIND,
            "metadata": { "name": self.name_any(), "namespace": namespace_of(self) },
            "spec": self.spec,
        });
        let value = serde_yaml::to_value(&manifest).map_err(|source| ConvertError::Encode {
            object: key.to_string(),
            source,
        })?;
        policy::load_policy_endpoint(&key.to_string(), value)
            .map(Object::PolicyEndpoint)
            .map_err(|source| ConvertError::Invalid {
                object: key.to_string(),
                source: Box::new(source),
            })
    }
}

/// A `networking.k8s.aws/v1alpha1` ClusterPolicyEndpoint (cluster-scoped) as the API
/// serves it: metadata, and the spec left as JSON for the policy crate's loader. The
/// CRD exists only where the EKS controller supports ClusterNetworkPolicies, so the
/// kind is `OPTIONAL`.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct ClusterPolicyEndpointObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Value,
}

impl k8s_openapi::Resource for ClusterPolicyEndpointObject {
    const API_VERSION: &'static str =
        policy::cluster_endpoints::CLUSTER_POLICY_ENDPOINT_API_VERSION;
    const GROUP: &'static str = "networking.k8s.aws";
    const KIND: &'static str = policy::cluster_endpoints::CLUSTER_POLICY_ENDPOINT_KIND;
    const VERSION: &'static str = "v1alpha1";
    const URL_PATH_SEGMENT: &'static str = "clusterpolicyendpoints";
    type Scope = k8s_openapi::ClusterResourceScope;
}

impl k8s_openapi::ListableResource for ClusterPolicyEndpointObject {
    const LIST_KIND: &'static str = "ClusterPolicyEndpointList";
}

impl k8s_openapi::Metadata for ClusterPolicyEndpointObject {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Watched for ClusterPolicyEndpointObject {
    const KIND: Kind = Kind::ClusterPolicyEndpoint;
    const OPTIONAL: bool = true;

    fn model_key(&self) -> Key {
        Key::ClusterPolicyEndpoint(self.name_any())
    }

    fn to_model(&self) -> Result<Object, ConvertError> {
        let key = self.model_key();
        let manifest = json!({
            "apiVersion": policy::cluster_endpoints::CLUSTER_POLICY_ENDPOINT_API_VERSION,
            "kind": policy::cluster_endpoints::CLUSTER_POLICY_ENDPOINT_KIND,
            "metadata": { "name": self.name_any() },
            "spec": self.spec,
        });
        let value = serde_yaml::to_value(&manifest).map_err(|source| ConvertError::Encode {
            object: key.to_string(),
            source,
        })?;
        policy::load_cluster_policy_endpoint(&key.to_string(), value)
            .map(Object::ClusterPolicyEndpoint)
            .map_err(|source| ConvertError::Invalid {
                object: key.to_string(),
                source: Box::new(source),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {app: web}
  annotations:
    netpol-agent.dev/interface: eni0
    unrelated: dropped
  managedFields: [{manager: kubelet, operation: Update}]
spec:
  nodeName: node-a
  containers:
    - name: web
      image: web:1
      ports: [{name: http, containerPort: 8080}, {containerPort: 53, protocol: UDP}]
    - name: sidecar
      image: proxy:1
status:
  phase: Running
  podIP: 10.0.0.5
  podIPs: [{ip: 10.0.0.5}, {ip: "fd00::5"}]
"#;

    const POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from: [{namespaceSelector: {matchLabels: {team: a}}, podSelector: {}}]
      ports: [{port: http}, {port: 9000, endPort: 9010, protocol: SCTP}]
  egress:
    - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]
"#;

    fn api_object<K: serde::de::DeserializeOwned>(yaml: &str) -> K {
        serde_yaml::from_str(yaml).expect("API object")
    }

    #[test]
    fn pod_from_the_api_equals_the_same_pod_from_yaml() {
        let pod: core::Pod = api_object(POD);
        let from_yaml = policy::load_str("pod.yaml", POD).expect("loads");
        let expected = from_yaml.pods.values().next().expect("one pod").clone();
        assert_eq!(
            pod.to_model().expect("converts"),
            Object::Pod(expected.clone())
        );
        assert_eq!(expected.ips.len(), 2);
        assert_eq!(
            expected.named_port("http", policy::Protocol::Tcp),
            Some(8080)
        );
        assert_eq!(expected.interface.as_deref(), Some("eni0"));
    }

    #[test]
    fn policy_and_namespace_from_the_api_equal_the_yaml_ones() {
        let policy: networking::NetworkPolicy = api_object(POLICY);
        let from_yaml = policy::load_str("p.yaml", POLICY).expect("loads");
        let expected = from_yaml
            .policies
            .values()
            .next()
            .expect("one policy")
            .clone();
        assert_eq!(
            policy.to_model().expect("converts"),
            Object::NetworkPolicy(expected)
        );

        let ns_yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a}}\nstatus: {phase: Active}\n";
        let ns: core::Namespace = api_object(ns_yaml);
        let expected = policy::load_str("ns.yaml", ns_yaml)
            .expect("loads")
            .namespaces["shop"]
            .clone();
        assert_eq!(
            ns.to_model().expect("converts"),
            Object::Namespace(expected)
        );
    }

    const SLICE: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: PolicyEndpoint
metadata: {name: web-x7k2p, namespace: shop, generateName: web-, resourceVersion: "9"}
spec:
  policyRef: {name: web, namespace: shop}
  podSelector: {matchLabels: {app: web}}
  podIsolation: [Ingress]
  podSelectorEndpoints: [{podIP: 10.0.0.5, hostIP: 192.168.0.1, name: web-1, namespace: shop}]
  ingress: [{cidr: 10.0.1.7, ports: [{port: 80, protocol: TCP}]}]
"#;

    #[test]
    fn policy_endpoint_from_the_api_equals_the_policy_loaders_reading() {
        let object: PolicyEndpointObject = api_object(SLICE);
        let expected =
            policy::load_policy_endpoint("x", serde_yaml::from_str(SLICE).unwrap()).expect("loads");
        assert_eq!(
            object.to_model().expect("converts"),
            Object::PolicyEndpoint(expected)
        );
        assert_eq!(
            object.model_key(),
            Key::PolicyEndpoint(policy::ObjectRef::new("shop", "web-x7k2p"))
        );
        let bad: PolicyEndpointObject = api_object(&SLICE.replace("cidr: 10.0.1.7", "cidr: x"));
        let error = bad.to_model().expect_err("bad cidr").to_string();
        assert!(error.contains("PolicyEndpoint shop/web-x7k2p"), "{error}");
        assert!(error.contains("spec.ingress[0].cidr"), "{error}");
    }

    #[test]
    fn an_invalid_object_is_rejected_with_its_name_and_field() {
        let bad = POD.replace("{ip: \"fd00::5\"}", "{ip: 10.0.0.6}");
        let pod: core::Pod = api_object(&bad);
        let error = pod.to_model().expect_err("two IPv4 addresses").to_string();
        assert!(error.contains("Pod shop/web-1"), "{error}");
        assert!(error.contains("status.podIPs"), "{error}");
        assert_eq!(
            pod.model_key(),
            Key::Pod(policy::ObjectRef::new("shop", "web-1"))
        );
    }

    const CLUSTER_SLICE: &str = r#"
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterPolicyEndpoint
metadata: {name: guard-x7k2p, generateName: guard-, resourceVersion: "9"}
spec:
  policyRef: {name: guard}
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  podSelectorEndpoints: [{podIP: 10.0.0.5, hostIP: 192.168.0.1, name: web-1, namespace: shop}]
  egress: [{cidr: 169.254.169.254/32, action: Deny}]
"#;

    #[test]
    fn cluster_policy_endpoint_from_the_api_equals_the_policy_loaders_reading() {
        let object: ClusterPolicyEndpointObject = api_object(CLUSTER_SLICE);
        let expected =
            policy::load_cluster_policy_endpoint("x", serde_yaml::from_str(CLUSTER_SLICE).unwrap())
                .expect("loads");
        assert_eq!(
            object.to_model().expect("converts"),
            Object::ClusterPolicyEndpoint(expected)
        );
        assert_eq!(
            object.model_key(),
            Key::ClusterPolicyEndpoint("guard-x7k2p".into())
        );
        let bad: ClusterPolicyEndpointObject =
            api_object(&CLUSTER_SLICE.replace("action: Deny", "action: Allow"));
        let error = bad.to_model().expect_err("bad action").to_string();
        assert!(
            error.contains("ClusterPolicyEndpoint guard-x7k2p"),
            "{error}"
        );
        assert!(error.contains("spec.egress[0].action"), "{error}");
    }
}
