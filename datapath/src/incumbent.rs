//! The EKS network policy agent ("the incumbent") on this node, and taking over from
//! it. It leaves clsact (legacy tc) bpf filters named `handle_ingress` (on a pod veth's
//! egress hook, towards the pod) and `handle_egress` (on its ingress hook), priority 1,
//! handle 0x1, and pins under `/sys/fs/bpf/globals/aws/{programs,maps}`. Found through
//! rtnetlink filter dumps (one per interface and hook) and a walk of that directory.
//!
//! Take-over never leaves an interface without enforcement: the incumbent's filters are
//! removed only from interfaces where our programs are attached and our pod record is
//! written; its pins go once none of its filters is left on the node.

use std::path::{Path, PathBuf};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcFilterBpf, TcFilterBpfOption, TcHandle, TcMessage, TcOption},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::{Datapath, DatapathError, links};

/// Where the incumbent pins its programs and maps.
pub const INCUMBENT_PIN_ROOT: &str = "/sys/fs/bpf/globals/aws";

/// The incumbent's program on the veth's egress hook (packets towards the pod).
pub const INCUMBENT_INGRESS_PROGRAM: &str = "handle_ingress";
/// The incumbent's program on the veth's ingress hook (packets from the pod).
pub const INCUMBENT_EGRESS_PROGRAM: &str = "handle_egress";

/// A clsact hook of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClsactHook {
    Ingress,
    Egress,
}

impl ClsactHook {
    fn parent(self) -> TcHandle {
        TcHandle {
            major: u16::MAX,
            minor: match self {
                Self::Ingress => TcHandle::MIN_INGRESS,
                Self::Egress => TcHandle::MIN_EGRESS,
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

/// One of the incumbent's filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncumbentFilter {
    pub ifindex: u32,
    pub interface: String,
    pub hook: ClsactHook,
    /// `handle_ingress` or `handle_egress`.
    pub program: String,
    pub priority: u16,
    /// The filter's protocol in host order (ETH_P_ALL, 0x0003, for the incumbent's).
    pub protocol: u16,
    pub handle: u32,
    /// The attached program's id, when the kernel reports it.
    pub program_id: Option<u32>,
}

impl std::fmt::Display for IncumbentFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {} ({} hook, priority {}, handle {:#x})",
            self.program,
            self.interface,
            self.hook.as_str(),
            self.priority,
            self.handle
        )
    }
}

/// What the incumbent left on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncumbentScan {
    pub filters: Vec<IncumbentFilter>,
    pub pin_root: PathBuf,
    /// Every pinned object (file) under the pin root, sorted.
    pub pins: Vec<PathBuf>,
}

impl IncumbentScan {
    /// Nothing of the incumbent's is on the node.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty() && self.pins.is_empty()
    }
}

/// An interface whose filters could not be taken over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakeOverFailure {
    pub interface: String,
    pub error: String,
}

/// What a take-over did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TakeOver {
    pub filters_removed: usize,
    pub pins_removed: usize,
    /// Interfaces whose incumbent filters were all removed, sorted.
    pub interfaces_taken_over: Vec<String>,
    /// Interfaces with incumbent filters where our programs do not enforce (not a pod
    /// we know, or not bound yet): left as they are, sorted.
    pub interfaces_left: Vec<String>,
    /// Interfaces where removing a filter failed.
    pub failures: Vec<TakeOverFailure>,
    /// Pins left because some incumbent filter is still on the node, or removing them
    /// failed (then named in `pin_error`).
    pub pins_kept: usize,
    pub pin_error: Option<String>,
}

/// The incumbent's filters on every interface of the calling thread's namespace.
///
/// # Errors
/// [`DatapathError::Netlink`] naming the interface and hook whose dump failed.
pub fn scan_filters() -> Result<Vec<IncumbentFilter>, DatapathError> {
    let mut interfaces: Vec<(u32, String)> = links::dump_links()?
        .iter()
        .map(|link| (link.ifindex, link.name.clone()))
        .collect();
    interfaces.sort();
    let mut found = Vec::new();
    for (ifindex, interface) in interfaces {
        for hook in [ClsactHook::Ingress, ClsactHook::Egress] {
            found.extend(filters_on(ifindex, &interface, hook)?);
        }
    }
    Ok(found)
}

/// The incumbent's filters on one hook of one interface.
fn filters_on(
    ifindex: u32,
    interface: &str,
    hook: ClsactHook,
) -> Result<Vec<IncumbentFilter>, DatapathError> {
    let mut request = TcMessage::default();
    request.header.index = ifindex_i32(ifindex, interface)?;
    request.header.parent = hook.parent();
    let what = format!("dump tc filters on {interface} ({} hook)", hook.as_str());
    let messages = match links::dump(&what, RouteNetlinkMessage::GetTrafficFilter(request)) {
        Ok(messages) => messages,
        // The interface went while we looked: nothing of it to take over.
        Err(_) if crate::interface_name(ifindex).is_none() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewTrafficFilter(filter) => {
                incumbent_filter(filter, ifindex, interface, hook)
            }
            _ => None,
        })
        .collect())
}

fn ifindex_i32(ifindex: u32, interface: &str) -> Result<i32, DatapathError> {
    i32::try_from(ifindex).map_err(|_| DatapathError::Interface {
        interface: interface.into(),
        reason: format!("ifindex {ifindex} does not fit netlink's tc header"),
    })
}

/// A dumped filter, when it is one of the incumbent's: kind bpf, named as its
/// programs. The dump's first message per priority is the chain head without a
/// handle; it carries no program and is skipped.
fn incumbent_filter(
    message: &TcMessage,
    ifindex: u32,
    interface: &str,
    hook: ClsactHook,
) -> Option<IncumbentFilter> {
    let mut bpf = false;
    let mut program = None;
    let mut program_id = None;
    for attribute in &message.attributes {
        match attribute {
            TcAttribute::Kind(kind) => bpf = kind == TcFilterBpf::KIND,
            TcAttribute::Options(options) => {
                for option in options {
                    match option {
                        TcOption::Bpf(TcFilterBpfOption::ProgName(name)) => {
                            program = Some(name.clone())
                        }
                        TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => program_id = Some(*id),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let program = program?;
    let handle = u32::from(message.header.handle);
    if !bpf
        || handle == 0
        || !(program == INCUMBENT_INGRESS_PROGRAM || program == INCUMBENT_EGRESS_PROGRAM)
    {
        return None;
    }
    Some(IncumbentFilter {
        ifindex,
        interface: interface.to_string(),
        hook,
        program,
        priority: (message.header.info >> 16) as u16,
        protocol: u16::from_be((message.header.info & 0xffff) as u16),
        handle,
        program_id,
    })
}

/// Removes one of the incumbent's filters (exactly it: its priority, protocol and
/// handle). A filter already gone counts as removed.
///
/// # Errors
/// [`DatapathError::Interface`] naming the interface and the filter.
pub fn remove_filter(filter: &IncumbentFilter) -> Result<(), DatapathError> {
    let fail = |reason: String| DatapathError::Interface {
        interface: filter.interface.clone(),
        reason: format!("removing the incumbent's filter {filter}: {reason}"),
    };
    let mut message = TcMessage::default();
    message.header.index = ifindex_i32(filter.ifindex, &filter.interface)?;
    message.header.parent = filter.hook.parent();
    message.header.handle = TcHandle::from(filter.handle);
    message.header.info = (u32::from(filter.priority) << 16) | u32::from(filter.protocol.to_be());
    message
        .attributes
        .push(TcAttribute::Kind(TcFilterBpf::KIND.to_string()));
    match acked_request(RouteNetlinkMessage::DelTrafficFilter(message)) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Sends one request asking for an acknowledgement and waits for it.
fn acked_request(request: RouteNetlinkMessage) -> std::io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(request));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut receive = vec![0u8; 64 * 1024];
    loop {
        let size = socket.recv(&mut &mut receive[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let message: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&receive[offset..size])
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if let NetlinkPayload::Error(e) = &message.payload {
                return match e.code {
                    None => Ok(()),
                    Some(_) => Err(e.to_io()),
                };
            }
            let length = message.header.length as usize;
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

/// Every pinned object under `root` (files, at any depth), sorted; empty when the
/// directory does not exist.
///
/// # Errors
/// [`DatapathError::Pin`] naming a directory that cannot be read.
pub fn scan_pins(root: &Path) -> Result<Vec<PathBuf>, DatapathError> {
    let mut pins = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(pin_error(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| pin_error(&dir, e))?;
            let kind = entry.file_type().map_err(|e| pin_error(&entry.path(), e))?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else {
                pins.push(entry.path());
            }
        }
    }
    pins.sort();
    Ok(pins)
}

fn pin_error(path: &Path, e: impl std::fmt::Display) -> DatapathError {
    DatapathError::Pin {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Removes the incumbent's pin directory and everything under it; returns how many
/// pins went. Refuses a root that is not on bpffs (a wrong configuration must not
/// delete ordinary files).
///
/// # Errors
/// [`DatapathError::Pin`] naming the root (not on bpffs) or the path that could not go.
pub fn remove_pins(root: &Path) -> Result<usize, DatapathError> {
    if !root.exists() {
        return Ok(0);
    }
    if !crate::pins::is_bpffs(root) {
        return Err(pin_error(
            root,
            "not on bpffs; refusing to remove what is there as the incumbent's pins",
        ));
    }
    let count = scan_pins(root)?.len();
    std::fs::remove_dir_all(root).map_err(|e| pin_error(root, e))?;
    Ok(count)
}

/// Looks for the incumbent: its filters in the calling thread's namespace and its pins
/// under `pin_root`.
///
/// # Errors
/// As [`scan_filters`] and [`scan_pins`].
pub fn scan(pin_root: &Path) -> Result<IncumbentScan, DatapathError> {
    Ok(IncumbentScan {
        filters: scan_filters()?,
        pin_root: pin_root.to_path_buf(),
        pins: scan_pins(pin_root)?,
    })
}

/// Removes the incumbent's filters from every interface where `enforces(ifindex)`
/// says our programs enforce, interface by interface (a failure is recorded and the
/// others go on), then its pins when none of its filters is left.
pub fn take_over(scan: &IncumbentScan, enforces: impl Fn(u32) -> bool) -> TakeOver {
    let mut report = TakeOver::default();
    let mut by_interface: std::collections::BTreeMap<(u32, &str), Vec<&IncumbentFilter>> =
        std::collections::BTreeMap::new();
    for filter in &scan.filters {
        by_interface
            .entry((filter.ifindex, filter.interface.as_str()))
            .or_default()
            .push(filter);
    }
    for ((ifindex, interface), filters) in by_interface {
        if !enforces(ifindex) {
            report.interfaces_left.push(interface.to_string());
            continue;
        }
        let mut failed = None;
        for filter in filters {
            match remove_filter(filter) {
                Ok(()) => report.filters_removed += 1,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        match failed {
            None => report.interfaces_taken_over.push(interface.to_string()),
            Some(error) => report.failures.push(TakeOverFailure {
                interface: interface.to_string(),
                error,
            }),
        }
    }
    report.interfaces_taken_over.sort();
    report.interfaces_left.sort();
    if report.interfaces_left.is_empty() && report.failures.is_empty() {
        match remove_pins(&scan.pin_root) {
            Ok(n) => report.pins_removed = n,
            Err(e) => {
                report.pins_kept = scan.pins.len();
                report.pin_error = Some(e.to_string());
            }
        }
    } else {
        report.pins_kept = scan.pins.len();
    }
    report
}

impl Datapath {
    /// Our programs are attached to `ifindex` and its pod record is written.
    pub fn enforces(&mut self, ifindex: u32) -> bool {
        self.attached_ifindexes().contains(&ifindex) && self.maps().pod(ifindex).is_some()
    }

    /// Takes over from the incumbent on this node (see [`take_over`]): its filters go
    /// from every interface we enforce, its pins under `pin_root` once none of its
    /// filters is left. Logs what was found and what was done.
    ///
    /// # Errors
    /// Only the scan's (a netlink dump or the pin directory failing); failures on one
    /// interface are in the report.
    pub fn take_over_incumbent(&mut self, pin_root: &Path) -> Result<TakeOver, DatapathError> {
        let found = scan(pin_root)?;
        if found.is_empty() {
            tracing::debug!(pin_root = %pin_root.display(), "no incumbent network policy agent found");
            return Ok(TakeOver::default());
        }
        let attached = self.attached_ifindexes();
        let enforced: std::collections::BTreeSet<u32> = found
            .filters
            .iter()
            .map(|f| f.ifindex)
            .filter(|i| attached.contains(i) && self.maps().pod(*i).is_some())
            .collect();
        let report = take_over(&found, |i| enforced.contains(&i));
        log_take_over(&found, &report);
        Ok(report)
    }
}

fn log_take_over(found: &IncumbentScan, report: &TakeOver) {
    tracing::info!(
        filters_found = found.filters.len(),
        pins_found = found.pins.len(),
        filters_removed = report.filters_removed,
        pins_removed = report.pins_removed,
        interfaces = ?report.interfaces_taken_over,
        pin_root = %found.pin_root.display(),
        "took over from the incumbent network policy agent"
    );
    for failure in &report.failures {
        tracing::error!(interface = %failure.interface, error = %failure.error, "taking over an interface from the incumbent failed; its filters stay");
    }
    if !report.interfaces_left.is_empty() {
        tracing::warn!(interfaces = ?report.interfaces_left, "the incumbent's filters stay on interfaces our programs do not enforce");
    }
    if report.pins_kept > 0 {
        tracing::warn!(pins = report.pins_kept, pin_root = %found.pin_root.display(), error = report.pin_error.as_deref().unwrap_or("some of its filters stay"), "the incumbent's pins are kept");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: &str, name: &str, handle: u32, info: u32) -> TcMessage {
        let mut m = TcMessage::default();
        m.header.handle = TcHandle::from(handle);
        m.header.info = info;
        m.attributes.push(TcAttribute::Kind(kind.into()));
        m.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgName(name.into())),
            TcOption::Bpf(TcFilterBpfOption::ProgId(77)),
        ]));
        m
    }

    #[test]
    fn the_incumbents_filter_is_recognised_with_its_place() {
        // priority 1, protocol ETH_P_ALL in network order.
        let info = (1 << 16) | u32::from(0x0003u16.to_be());
        let f = incumbent_filter(
            &message("bpf", "handle_ingress", 1, info),
            7,
            "eni1",
            ClsactHook::Egress,
        )
        .expect("recognised");
        assert_eq!(
            (
                f.priority,
                f.protocol,
                f.handle,
                f.program_id,
                f.program.as_str()
            ),
            (1, 0x0003, 1, Some(77), "handle_ingress")
        );
        assert_eq!(
            f.to_string(),
            "handle_ingress on eni1 (egress hook, priority 1, handle 0x1)"
        );
    }

    #[test]
    fn other_filters_are_not_the_incumbents() {
        let info = 1 << 16;
        for m in [
            message("bpf", "pod_ingress", 1, info),
            message("u32", "handle_ingress", 1, info),
            // The chain head of a priority: no handle.
            message("bpf", "handle_egress", 0, info),
        ] {
            assert_eq!(incumbent_filter(&m, 7, "eni1", ClsactHook::Ingress), None);
        }
    }

    #[test]
    fn pins_of_a_missing_root_are_none_and_removing_it_is_a_no_op() {
        let root = Path::new("/nonexistent/netpol-agent-test/globals/aws");
        assert_eq!(scan_pins(root).unwrap(), Vec::<PathBuf>::new());
        assert_eq!(remove_pins(root).unwrap(), 0);
    }

    #[test]
    fn a_root_off_bpffs_is_refused_and_kept() {
        let dir = std::env::temp_dir().join(format!("incumbent-pins-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("maps")).unwrap();
        std::fs::write(dir.join("maps/global_aws_conntrack_map"), b"").unwrap();
        let err = remove_pins(&dir).unwrap_err().to_string();
        let kept = dir.join("maps/global_aws_conntrack_map").exists();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("not on bpffs"), "{err}");
        assert!(err.contains(&dir.display().to_string()), "{err}");
        assert!(kept, "nothing is removed off bpffs");
    }
}
