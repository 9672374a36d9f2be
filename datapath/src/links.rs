//! The host's links and routes as rtnetlink reports them (no `ip` subprocess): which
//! interfaces are pod veths (kind veth, peer in another network namespace), the exact
//! host routes to pod addresses, the node's own addresses, and a subscription to link
//! changes.

use std::{collections::HashMap, net::IpAddr, os::fd::AsRawFd, time::Duration};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::DatapathError;

/// The main routing table, where the VPC CNI puts its host routes to pods.
const RT_TABLE_MAIN: u32 = 254;

/// One link of this network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` (`veth`, `bridge`, `vlan`, …); `None` for devices without one
    /// (the loopback, most physical NICs).
    pub kind: Option<String>,
    /// `IFLA_LINK_NETNSID` is set: the link's peer lives in another network namespace.
    pub peer_in_other_netns: bool,
}

impl Link {
    /// A pod's host-side interface: a veth whose other end is in another namespace.
    /// Never the uplink, `lo`, a bridge or a veth with both ends here.
    pub fn is_pod_veth(&self) -> bool {
        self.kind.as_deref() == Some("veth") && self.peer_in_other_netns
    }
}

/// Every link of this network namespace, by name and by index.
#[derive(Clone, Debug, Default)]
pub struct LinkTable {
    by_name: HashMap<String, Link>,
    names_by_index: HashMap<u32, String>,
}

impl LinkTable {
    pub fn from_links(links: impl IntoIterator<Item = Link>) -> Self {
        let mut table = Self::default();
        for link in links {
            table.names_by_index.insert(link.ifindex, link.name.clone());
            table.by_name.insert(link.name.clone(), link);
        }
        table
    }

    pub fn by_name(&self, name: &str) -> Option<&Link> {
        self.by_name.get(name)
    }

    pub fn by_index(&self, ifindex: u32) -> Option<&Link> {
        self.names_by_index
            .get(&ifindex)
            .and_then(|n| self.by_name.get(n))
    }

    /// Every link, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Link> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

fn netlink_error(what: &str, reason: impl std::fmt::Display) -> DatapathError {
    DatapathError::Netlink {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// Sends one dump request and collects every message of the answer.
pub(crate) fn dump(
    what: &str,
    request: RouteNetlinkMessage,
) -> Result<Vec<RouteNetlinkMessage>, DatapathError> {
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| netlink_error(what, e))?;
    socket.bind_auto().map_err(|e| netlink_error(what, e))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| netlink_error(what, e))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(request));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).map_err(|e| netlink_error(what, e))?;

    let mut out = Vec::new();
    let mut receive = vec![0u8; 64 * 1024];
    loop {
        let size = socket
            .recv(&mut &mut receive[..], 0)
            .map_err(|e| netlink_error(what, e))?;
        let mut offset = 0;
        while offset < size {
            let message: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&receive[offset..size])
                    .map_err(|e| netlink_error(what, e))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => return Err(netlink_error(what, format!("{e:?}"))),
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

fn link_of(message: &LinkMessage) -> Option<Link> {
    let mut name = None;
    let mut kind = None;
    let mut peer_in_other_netns = false;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::LinkNetNsId(_) => peer_in_other_netns = true,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        kind = Some(match k {
                            InfoKind::Veth => "veth".to_string(),
                            other => other.to_string(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Some(Link {
        ifindex: message.header.index,
        name: name?,
        kind,
        peer_in_other_netns,
    })
}

/// Every link of the calling thread's network namespace.
///
/// # Errors
/// [`DatapathError::Netlink`] when the dump fails.
pub fn dump_links() -> Result<LinkTable, DatapathError> {
    let messages = dump(
        "dump links",
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
    )?;
    Ok(LinkTable::from_links(messages.iter().filter_map(
        |m| match m {
            RouteNetlinkMessage::NewLink(link) => link_of(link),
            _ => None,
        },
    )))
}

/// Exact host routes of the main table: a /32 or /128 destination → its output
/// interface. A route through a gateway or a shorter prefix is never a pod's route.
///
/// # Errors
/// [`DatapathError::Netlink`] when a dump fails.
pub fn host_routes() -> Result<HashMap<IpAddr, u32>, DatapathError> {
    let mut out = HashMap::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut request = RouteMessage::default();
        request.header.address_family = family;
        for message in dump("dump routes", RouteNetlinkMessage::GetRoute(request))? {
            let RouteNetlinkMessage::NewRoute(route) = message else {
                continue;
            };
            let full = match route.header.address_family {
                AddressFamily::Inet => 32,
                AddressFamily::Inet6 => 128,
                _ => continue,
            };
            if route.header.destination_prefix_length != full {
                continue;
            }
            let mut destination = None;
            let mut oif = None;
            let mut table = u32::from(route.header.table);
            let mut via_gateway = false;
            for attribute in &route.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => {
                        destination = Some(IpAddr::V4(*a))
                    }
                    RouteAttribute::Destination(RouteAddress::Inet6(a)) => {
                        destination = Some(IpAddr::V6(*a))
                    }
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Gateway(_) | RouteAttribute::Via(_) => via_gateway = true,
                    _ => {}
                }
            }
            if table != RT_TABLE_MAIN || via_gateway {
                continue;
            }
            if let (Some(destination), Some(oif)) = (destination, oif) {
                out.insert(destination, oif);
            }
        }
    }
    Ok(out)
}

/// The addresses of this network namespace's interfaces, without loopback and IPv6
/// link-local ones: the node's own addresses, for kubelet probes.
///
/// # Errors
/// [`DatapathError::Netlink`] when the dump fails.
pub fn local_addresses() -> Result<Vec<IpAddr>, DatapathError> {
    let messages = dump(
        "dump addresses",
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
    )?;
    let mut out = Vec::new();
    for message in messages {
        let RouteNetlinkMessage::NewAddress(address) = message else {
            continue;
        };
        // IFA_LOCAL is the interface's own address on point-to-point links, where
        // IFA_ADDRESS is the peer's; elsewhere the two are equal.
        let mut local = None;
        let mut any = None;
        for attribute in &address.attributes {
            match attribute {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => any = Some(*a),
                _ => {}
            }
        }
        let Some(addr) = local.or(any) else { continue };
        let link_local_v6 = matches!(addr, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80);
        if !addr.is_loopback() && !link_local_v6 && !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

/// A subscription to link changes (RTNLGRP_LINK) in the calling thread's namespace.
pub struct LinkEvents {
    socket: Socket,
    buf: Vec<u8>,
}

impl LinkEvents {
    /// Subscribes; changes after this call are reported by [`LinkEvents::wait`].
    ///
    /// # Errors
    /// [`DatapathError::Netlink`] when the socket cannot be set up.
    pub fn subscribe() -> Result<Self, DatapathError> {
        let what = "subscribe to link changes";
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| netlink_error(what, e))?;
        socket.bind_auto().map_err(|e| netlink_error(what, e))?;
        socket
            .add_membership(libc::RTNLGRP_LINK)
            .map_err(|e| netlink_error(what, e))?;
        Ok(Self {
            socket,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Waits up to `timeout` for link changes; `true` when at least one arrived (or
    /// some were lost because the socket overflowed, which also calls for a look).
    ///
    /// # Errors
    /// [`DatapathError::Netlink`] when the socket fails.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, DatapathError> {
        let mut poll = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        if ready <= 0 {
            return Ok(false);
        }
        let mut changed = false;
        loop {
            match self.socket.recv(&mut &mut self.buf[..], libc::MSG_DONTWAIT) {
                Ok(_) => changed = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(changed),
                // ENOBUFS: notifications were dropped; whatever they said, look again.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                Err(e) => return Err(netlink_error("read link changes", e)),
            }
        }
    }
}
