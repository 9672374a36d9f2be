//! A pod wired the way the VPC CNI wires it: a veth whose pod end is `eth0` in the
//! pod's namespace with the pod's /32 (and /128), a default route through the
//! link-local gateway 169.254.1.1 (fe80::1 for IPv6) answered by the host end, and the
//! host end in the node namespace with host routes to the pod's addresses.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{NetNs, NetlabError};

/// The gateway every pod routes through (the VPC CNI uses the same address).
pub const GATEWAY_V4: &str = "169.254.1.1";
pub const GATEWAY_V6: &str = "fe80::1";

pub struct PodSpec<'a> {
    /// Host-side interface name in the node namespace (e.g. `eni…`).
    pub host_if: &'a str,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// The result of wiring one pod.
#[derive(Clone, Debug)]
pub struct PodLink {
    pub host_if: String,
    pub host_ifindex: u32,
    pub host_mac: String,
    pub pod_mac: String,
}

fn mac_of(ns: &NetNs, interface: &str) -> Result<String, NetlabError> {
    ns.exec("cat", &[&format!("/sys/class/net/{interface}/address")])
        .map(|s| s.trim().to_string())
}

/// Creates the veth, the pod's addresses and the routes both ways.
///
/// # Errors
/// Any `ip` command failing (the error shows which).
pub fn wire_pod(node: &NetNs, pod: &NetNs, spec: &PodSpec<'_>) -> Result<PodLink, NetlabError> {
    let link = create_link(node, pod, spec.host_if)?;
    assign_addresses(node, pod, &link, spec.ipv4, spec.ipv6)?;
    Ok(link)
}

/// Creates the veth only (both ends up, no addresses): enforcement can be programmed
/// on the host end before the pod has an address (strict mode).
///
/// # Errors
/// Any `ip` command failing.
pub fn create_link(node: &NetNs, pod: &NetNs, host_if: &str) -> Result<PodLink, NetlabError> {
    let host = host_if;
    node.ip(&[
        "link",
        "add",
        host,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod.name(),
    ])?;
    node.ip(&["link", "set", host, "up"])?;
    let host_mac = mac_of(node, host)?;
    let pod_mac = mac_of(pod, "eth0")?;
    pod.ip(&["link", "set", "eth0", "up"])?;
    let host_ifindex = node.ifindex(host)?;
    Ok(PodLink {
        host_if: host.to_string(),
        host_ifindex,
        host_mac,
        pod_mac,
    })
}

/// Gives the pod its addresses and routes, and the node its routes to the pod.
///
/// # Errors
/// Any `ip` command failing.
pub fn assign_addresses(
    node: &NetNs,
    pod: &NetNs,
    link: &PodLink,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
) -> Result<(), NetlabError> {
    let host = link.host_if.as_str();
    let (host_mac, pod_mac) = (&link.host_mac, &link.pod_mac);
    // The pod reaches the gateway through a static neighbour entry, so no ARP or ND
    // has to cross the programs before they are configured.
    if let Some(v4) = ipv4 {
        let addr = v4.to_string();
        pod.ip(&["addr", "add", &format!("{addr}/32"), "dev", "eth0"])?;
        pod.ip(&["route", "add", GATEWAY_V4, "dev", "eth0", "scope", "link"])?;
        pod.ip(&["route", "add", "default", "via", GATEWAY_V4, "dev", "eth0"])?;
        pod.ip(&[
            "neigh",
            "replace",
            GATEWAY_V4,
            "lladdr",
            host_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])?;
        node.ip(&["route", "add", &format!("{addr}/32"), "dev", host])?;
        node.ip(&[
            "neigh",
            "replace",
            &addr,
            "lladdr",
            pod_mac,
            "dev",
            host,
            "nud",
            "permanent",
        ])?;
    }
    if let Some(v6) = ipv6 {
        let addr = v6.to_string();
        pod.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{addr}/128"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        pod.ip(&[
            "-6", "route", "add", "default", "via", GATEWAY_V6, "dev", "eth0",
        ])?;
        pod.ip(&[
            "-6",
            "neigh",
            "replace",
            GATEWAY_V6,
            "lladdr",
            host_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])?;
        node.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{GATEWAY_V6}/64"),
            "dev",
            host,
            "nodad",
        ])?;
        node.ip(&["-6", "route", "add", &format!("{addr}/128"), "dev", host])?;
        node.ip(&[
            "-6",
            "neigh",
            "replace",
            &addr,
            "lladdr",
            pod_mac,
            "dev",
            host,
            "nud",
            "permanent",
        ])?;
    }
    Ok(())
}

/// Prepares a node namespace to route between pods.
///
/// # Errors
/// A sysctl failing.
pub fn prepare_node(node: &NetNs) -> Result<(), NetlabError> {
    node.sysctl("net.ipv4.ip_forward", "1")?;
    node.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    Ok(())
}
