//! Attaching the pod programs to interfaces. TCX (kernel 6.6+) links are pinned, so
//! they outlive the agent and a restarted agent swaps the program inside them
//! atomically. Below 6.6, or when forced, clsact filters through netlink at a fixed
//! priority and handle, which a restarted agent replaces in place.

use std::path::{Path, PathBuf};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    links::{FdLink, PinnedLink},
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
};
use datapath_common::program_names;

use crate::{DatapathError, PinLayout};

/// How programs are attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX where the kernel has it (6.6+), netlink below.
    #[default]
    Auto,
    Tcx,
    Netlink,
}

impl AttachMode {
    pub(crate) fn use_tcx(self) -> bool {
        match self {
            Self::Auto => aya::util::KernelVersion::current()
                .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0)),
            Self::Tcx => true,
            Self::Netlink => false,
        }
    }
}

/// What is attached to one interface.
#[derive(Debug, Default)]
pub(crate) struct Attached {
    pub tcx: bool,
    pub netlink: bool,
}

/// Our clsact filters' fixed place, so a restarted agent finds and replaces them.
const NETLINK_PRIORITY: u16 = 20;
const NETLINK_HANDLE: TcHandle = TcHandle::new(0, 0x6e70);

fn attach_type(program: &str) -> TcAttachType {
    // pod_ingress sees packets the host sends into the veth (towards the pod).
    if program == program_names::POD_INGRESS {
        TcAttachType::Egress
    } else {
        TcAttachType::Ingress
    }
}

pub(crate) fn ifindex(interface: &str) -> Result<u32, DatapathError> {
    let c = std::ffi::CString::new(interface).map_err(|_| DatapathError::Interface {
        interface: interface.into(),
        reason: "name contains NUL".into(),
    })?;
    // SAFETY: c is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(DatapathError::Interface {
            interface: interface.into(),
            reason: std::io::Error::last_os_error().to_string(),
        });
    }
    Ok(index)
}

/// The name of interface `ifindex` in the current network namespace; `None` when no
/// interface has that index (any more).
pub fn interface_name(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    Some(
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn attach_error(
    program: &'static str,
    interface: &str,
    e: aya::programs::ProgramError,
) -> DatapathError {
    DatapathError::Attach {
        program,
        interface: interface.into(),
        source: Box::new(e),
    }
}

fn pin_error(path: &Path, e: impl std::fmt::Display) -> DatapathError {
    DatapathError::Pin {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Attaches with TCX and pins the link, or swaps the program into an existing pin.
pub(crate) fn attach_tcx(
    prog: &mut SchedClassifier,
    name: &'static str,
    interface: &str,
    pin: &Path,
) -> Result<(), DatapathError> {
    if pin.exists() {
        return replace_pinned(prog, name, pin);
    }
    let id = prog
        .attach_with_options(
            interface,
            attach_type(name),
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|e| attach_error(name, interface, e))?;
    let link = prog
        .take_link(id)
        .map_err(|e| attach_error(name, interface, e))?;
    let fd_link: FdLink = link.try_into().map_err(|e| pin_error(pin, e))?;
    fd_link.pin(pin).map_err(|e| pin_error(pin, e))?;
    Ok(())
}

/// Atomically replaces the program behind a pinned TCX link.
pub(crate) fn replace_pinned(
    prog: &mut SchedClassifier,
    name: &'static str,
    pin: &Path,
) -> Result<(), DatapathError> {
    let pinned = PinnedLink::from_pin(pin).map_err(|e| pin_error(pin, e))?;
    let link: SchedClassifierLink = FdLink::from(pinned)
        .try_into()
        .map_err(|e| pin_error(pin, e))?;
    let id = prog
        .attach_to_link(link)
        .map_err(|e| attach_error(name, &pin.display().to_string(), e))?;
    // The pin keeps the link attached; our fd can go.
    drop(
        prog.take_link(id)
            .map_err(|e| attach_error(name, &pin.display().to_string(), e))?,
    );
    Ok(())
}

/// Attaches through a clsact qdisc, replacing our filter if a previous agent left it.
pub(crate) fn attach_netlink(
    prog: &mut SchedClassifier,
    name: &'static str,
    interface: &str,
) -> Result<(), DatapathError> {
    if let Err(e) = tc::qdisc_add_clsact(interface)
        && !matches!(&e, tc::TcError::NetlinkError(n) if n.raw_os_error() == Some(libc::EEXIST))
    {
        return Err(DatapathError::Interface {
            interface: interface.into(),
            reason: format!("adding clsact: {e}"),
        });
    }
    let options = || NlOptions {
        priority: NETLINK_PRIORITY,
        handle: NETLINK_HANDLE,
        classid: None,
    };
    let id = match prog.attach_with_options(
        interface,
        attach_type(name),
        TcAttachOptions::Netlink(options()),
    ) {
        Ok(id) => id,
        Err(_) => {
            let existing = SchedClassifierLink::attached(
                interface,
                attach_type(name),
                NETLINK_PRIORITY,
                NETLINK_HANDLE,
                None,
            )
            .map_err(|e| DatapathError::Interface {
                interface: interface.into(),
                reason: e.to_string(),
            })?;
            prog.attach_to_link(existing)
                .map_err(|e| attach_error(name, interface, e))?
        }
    };
    let link = prog
        .take_link(id)
        .map_err(|e| attach_error(name, interface, e))?;
    // A clsact filter lives as long as the qdisc, not as long as this process: the
    // agent owns it by its fixed priority and handle (see detach_netlink), so the
    // link object must not detach it when the agent exits.
    let _owned_by_priority_and_handle = std::mem::ManuallyDrop::new(link);
    Ok(())
}

pub(crate) fn detach_netlink(name: &'static str, interface: &str) -> Result<(), DatapathError> {
    tc::qdisc_detach_program(interface, attach_type(name), name).map_err(|e| {
        DatapathError::Interface {
            interface: interface.into(),
            reason: format!("detaching {name}: {e}"),
        }
    })
}

/// Removes a link pin, which detaches the link.
pub(crate) fn unpin_link(path: &Path) -> Result<(), DatapathError> {
    if !path.exists() {
        return Ok(());
    }
    let pinned = PinnedLink::from_pin(path).map_err(|e| pin_error(path, e))?;
    drop(pinned.unpin().map_err(|e| pin_error(path, e))?);
    Ok(())
}

/// Every link pin under our directory: (ifindex, program name, path).
pub(crate) fn pinned_links(pins: &PinLayout) -> Result<Vec<(u32, String, PathBuf)>, DatapathError> {
    let dir = pins.links_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(pin_error(&dir, e)),
    };
    let mut links = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| pin_error(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((ifindex, program)) = PinLayout::parse_link_name(&name) {
            links.push((ifindex, program.to_string(), entry.path()));
        }
    }
    links.sort();
    Ok(links)
}
