//! The Kubernetes YAML shapes `load` reads (the parts of Namespace, Pod and
//! NetworkPolicy that matter), with deserializers that reject bad ports and CIDRs at
//! the field where they appear, so errors carry the field path.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::model::{Direction, Operator, PodPhase, PortRef, Protocol};

/// Fields that may be written as `null` or left out; both mean the default.
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `apiVersion` and `kind`, read first to pick the shape.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Header {
    pub api_version: Option<String>,
    pub kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Metadata {
    pub name: Option<String>,
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NamespaceManifest {
    #[serde(default)]
    pub metadata: Metadata,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PodManifest {
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: PodSpec,
    #[serde(default, deserialize_with = "null_default")]
    pub status: PodStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodSpec {
    pub node_name: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub host_network: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub containers: Vec<Container>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Container {
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<ContainerPortManifest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerPortManifest {
    pub name: Option<String>,
    pub container_port: PortNumber,
    #[serde(default, deserialize_with = "null_default")]
    pub protocol: Protocol,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PodStatus {
    pub phase: Option<PodPhase>,
    #[serde(rename = "podIP")]
    pub pod_ip: Option<IpAddr>,
    #[serde(rename = "podIPs", default, deserialize_with = "null_default")]
    pub pod_ips: Vec<PodIp>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PodIp {
    pub ip: IpAddr,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PolicyManifest {
    #[serde(default)]
    pub metadata: Metadata,
    pub spec: PolicySpecManifest,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PolicySpecManifest {
    pub pod_selector: SelectorManifest,
    #[serde(default, deserialize_with = "null_default")]
    pub ingress: Vec<IngressManifest>,
    #[serde(default, deserialize_with = "null_default")]
    pub egress: Vec<EgressManifest>,
    pub policy_types: Option<Vec<Direction>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IngressManifest {
    #[serde(default, deserialize_with = "null_default")]
    pub from: Vec<PeerManifest>,
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<PortManifest>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EgressManifest {
    #[serde(default, deserialize_with = "null_default")]
    pub to: Vec<PeerManifest>,
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<PortManifest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PeerManifest {
    pub pod_selector: Option<SelectorManifest>,
    pub namespace_selector: Option<SelectorManifest>,
    pub ip_block: Option<IpBlockManifest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IpBlockManifest {
    pub cidr: Cidr,
    #[serde(default, deserialize_with = "null_default")]
    pub except: Vec<Cidr>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PortManifest {
    #[serde(default, deserialize_with = "null_default")]
    pub protocol: Protocol,
    pub port: Option<PortRef>,
    pub end_port: Option<PortNumber>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SelectorManifest {
    #[serde(default, deserialize_with = "null_default")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub match_expressions: Vec<RequirementManifest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequirementManifest {
    pub key: String,
    pub operator: Operator,
    #[serde(default, deserialize_with = "null_default")]
    pub values: Vec<String>,
}

/// A port number 1-65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct PortNumber(pub u16);

impl<'de> Deserialize<'de> for PortNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(deserializer)?;
        match u16::try_from(n) {
            Ok(p) if p != 0 => Ok(PortNumber(p)),
            _ => Err(de::Error::custom(format_args!(
                "{n} is not a port number (1-65535)"
            ))),
        }
    }
}

/// A CIDR in `a.b.c.d/n` or `x::/n` form; host bits are cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr(pub IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<IpNet>()
            .map(|net| Cidr(net.trunc()))
            .map_err(|_| de::Error::custom(format_args!("{text:?} is not a CIDR")))
    }
}

/// Is `name` a valid port name (IANA_SVC_NAME: 1-15 lowercase letters, digits and
/// single inner hyphens, at least one letter)?
pub fn is_valid_port_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !name.contains("--")
}

impl<'de> Deserialize<'de> for PortRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PortRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a port name")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<PortRef, E> {
                match u16::try_from(n) {
                    Ok(p) if p != 0 => Ok(PortRef::Number(p)),
                    _ => Err(E::custom(format_args!(
                        "{n} is not a port number (1-65535)"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<PortRef, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(-1))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PortRef, E> {
                if let Ok(n) = s.parse::<i64>() {
                    return self.visit_i64(n);
                }
                if is_valid_port_name(s) {
                    Ok(PortRef::Name(s.to_owned()))
                } else {
                    Err(E::custom(format_args!(
                        "{s:?} is neither a number nor a valid port name"
                    )))
                }
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}
