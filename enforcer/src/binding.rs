//! Which host interface is a local pod's: the names the VPC CNI gives host-side veths,
//! checked against the links of the node's namespace, with an exact host route as the
//! only fallback. Pure functions over a [`LinkTable`]; the enforcer owns the state
//! (who holds which interface).

use std::{collections::HashMap, net::IpAddr};

use datapath::links::{Link, LinkTable};
use policy::ResolvedPod;
use sha1::{Digest, Sha1};

/// The VPC CNI's default host veth prefix (`AWS_VPC_K8S_CNI_VETHPREFIX`).
pub const DEFAULT_VETH_PREFIX: &str = "eni";
/// Security Groups for Pods: a branch-ENI pod's host veth is named with this prefix.
pub const SGP_VETH_PREFIX: &str = "vlan";
/// Extra interfaces of a multi-NIC pod are looked for up to this index.
const MAX_INTERFACE_INDEX: u32 = 7;
/// Linux interface names hold at most 15 bytes.
const IFNAMSIZ_MAX: usize = 15;

/// The host-side veth name the VPC CNI gives interface `index` of a pod: the prefix and
/// the first 11 hex digits of sha1("<namespace>.<name>"), with ".<index>" appended to
/// the name for a pod's extra interfaces. As amazon-vpc-cni-k8s
/// `pkg/networkutils/names.go` (`GeneratePodHostVethName`) and the incumbent's
/// `pkg/utils/utils.go` (`GetHostVethName`, which tries each prefix in turn) do.
pub fn host_veth_name(prefix: &str, namespace: &str, name: &str, index: u32) -> String {
    let name = if index > 0 {
        format!("{name}.{index}")
    } else {
        name.to_string()
    };
    let digest = Sha1::digest(format!("{namespace}.{name}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{}", &hex[..11])
}

/// How the binding finds interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingOptions {
    /// The CNI's host veth prefix (`eni` on EKS).
    pub veth_prefix: String,
}

impl Default for BindingOptions {
    fn default() -> Self {
        Self {
            veth_prefix: DEFAULT_VETH_PREFIX.into(),
        }
    }
}

impl BindingOptions {
    /// # Errors
    /// A prefix that leaves no room for the 11 hex digits, or holds characters an
    /// interface name cannot.
    pub fn new(veth_prefix: &str) -> Result<Self, String> {
        if veth_prefix.is_empty() || veth_prefix.len() + 11 > IFNAMSIZ_MAX {
            return Err(format!(
                "veth prefix {veth_prefix:?}: 1 to {} characters (the name adds 11 hex digits, at most 15 in all)",
                IFNAMSIZ_MAX - 11
            ));
        }
        if !veth_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "veth prefix {veth_prefix:?}: letters, digits, '-' and '_' only"
            ));
        }
        Ok(Self {
            veth_prefix: veth_prefix.into(),
        })
    }

    /// Every name a pod's interfaces may have, most specific first: the lab's explicit
    /// annotation, then interface 0 with the CNI prefix and the Security-Groups-for-Pods
    /// prefix, then extra interfaces.
    pub fn candidate_names(&self, pod: &ResolvedPod) -> Vec<String> {
        let mut names = Vec::new();
        if let Some(explicit) = &pod.interface {
            names.push(explicit.clone());
        }
        for index in 0..=MAX_INTERFACE_INDEX {
            for prefix in [self.veth_prefix.as_str(), SGP_VETH_PREFIX] {
                let name = host_veth_name(prefix, &pod.pod.namespace, &pod.pod.name, index);
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }
}

/// How an interface was found for a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Found {
    /// Named after the pod by the CNI's rule (or the lab's annotation).
    ByName,
    /// The output interface of an exact /32 or /128 host route to the pod's address.
    ByHostRoute,
}

/// An interface a pod may be bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub link: Link,
    pub found: Found,
}

/// The pod veths named after `pod` that exist (several for a multi-NIC pod).
pub fn named_interfaces(
    options: &BindingOptions,
    pod: &ResolvedPod,
    links: &LinkTable,
) -> Vec<Candidate> {
    options
        .candidate_names(pod)
        .iter()
        .filter_map(|name| links.by_name(name))
        .filter(|link| link.is_pod_veth())
        .map(|link| Candidate {
            link: link.clone(),
            found: Found::ByName,
        })
        .collect()
}

/// The fallback: the pod veth an exact host route to one of the pod's addresses
/// leaves through. Never the uplink: a default or subnet route is not a host route,
/// and the interface must be a veth with its peer in another namespace.
pub fn routed_interface(
    pod: &ResolvedPod,
    links: &LinkTable,
    routes: &HashMap<IpAddr, u32>,
) -> Option<Candidate> {
    let addresses = pod
        .ipv4
        .map(IpAddr::V4)
        .into_iter()
        .chain(pod.ipv6.map(IpAddr::V6));
    for address in addresses {
        if let Some(link) = routes.get(&address).and_then(|i| links.by_index(*i))
            && link.is_pod_veth()
        {
            return Some(Candidate {
                link: link.clone(),
                found: Found::ByHostRoute,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{DirectionRules, ObjectRef, PodState};

    fn pod(namespace: &str, name: &str, ipv4: Option<&str>) -> ResolvedPod {
        let allow = DirectionRules {
            state: PodState::DefaultAllow,
            entries: Default::default(),
            isolating: Vec::new(),
        };
        ResolvedPod {
            pod: ObjectRef::new(namespace.to_string(), name.to_string()),
            ipv4: ipv4.map(|a| a.parse().unwrap()),
            ipv6: None,
            interface: None,
            ingress: allow.clone(),
            egress: allow,
        }
    }

    fn link(ifindex: u32, name: &str, kind: Option<&str>, peer_elsewhere: bool) -> Link {
        Link {
            ifindex,
            name: name.into(),
            kind: kind.map(str::to_string),
            peer_in_other_netns: peer_elsewhere,
        }
    }

    #[test]
    fn names_match_the_cni_and_the_incumbent() {
        // The incumbent's own test vector (pkg/utils/utils_test.go): pod foo in bar.
        assert_eq!(host_veth_name("eni", "bar", "foo", 0), "eni9cfdfc6963c");
        assert_eq!(host_veth_name("vlan", "bar", "foo", 0), "vlan9cfdfc6963c");
        // Extra interfaces hash "<namespace>.<name>.<index>".
        let extra = host_veth_name("eni", "bar", "foo", 1);
        assert_ne!(extra, "eni9cfdfc6963c");
        assert_eq!(extra, host_veth_name("eni", "bar", "foo.1", 0));
        assert_eq!(extra.len(), 14);
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(BindingOptions::new("eni").is_ok());
        assert!(BindingOptions::new("abcd").is_ok());
        assert!(BindingOptions::new("abcde").is_err(), "16-byte names");
        assert!(BindingOptions::new("").is_err());
        assert!(BindingOptions::new("a/b").is_err());
    }

    #[test]
    fn only_pod_veths_named_after_the_pod_are_found() {
        let options = BindingOptions::default();
        let p = pod("bar", "foo", Some("10.0.0.5"));
        let mine = host_veth_name("eni", "bar", "foo", 0);
        let extra = host_veth_name("eni", "bar", "foo", 1);
        let links = LinkTable::from_links([
            link(1, "lo", None, false),
            link(2, "eth0", None, false),
            link(7, &mine, Some("veth"), true),
            link(8, &extra, Some("veth"), true),
            link(
                9,
                &host_veth_name("eni", "bar", "other", 0),
                Some("veth"),
                true,
            ),
        ]);
        let found: Vec<u32> = named_interfaces(&options, &p, &links)
            .iter()
            .map(|c| c.link.ifindex)
            .collect();
        assert_eq!(found, [7, 8]);
        // A same-named device that is no pod veth (both ends here, or a bridge) is not.
        let fake = LinkTable::from_links([
            link(7, &mine, Some("veth"), false),
            link(8, &extra, Some("bridge"), false),
        ]);
        assert!(named_interfaces(&options, &p, &fake).is_empty());
    }

    #[test]
    fn the_route_fallback_never_names_the_uplink() {
        let p = pod("bar", "foo", Some("10.0.0.5"));
        let links = LinkTable::from_links([
            link(2, "eth0", None, false),
            link(3, "cali1", Some("veth"), true),
            link(4, "br0", Some("bridge"), false),
        ]);
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        // An exact route out of a pod veth binds.
        let routes = HashMap::from([(ip, 3)]);
        assert_eq!(
            routed_interface(&p, &links, &routes).map(|c| c.link.ifindex),
            Some(3)
        );
        // Through the uplink or a bridge: nothing.
        for oif in [2, 4] {
            let routes = HashMap::from([(ip, oif)]);
            assert_eq!(routed_interface(&p, &links, &routes), None);
        }
        // No host route at all: nothing (a FIB lookup would have named the uplink).
        assert_eq!(routed_interface(&p, &links, &HashMap::new()), None);
    }
}
