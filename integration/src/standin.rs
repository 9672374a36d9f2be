//! A stand-in for the EKS network policy agent (the incumbent) for take-over tests:
//! two-instruction classifiers (pass all or drop all) loaded with bpf(2) under the
//! incumbent's program names, attached as it attaches them (clsact, priority 1, handle
//! 0x1, ETH_P_ALL, direct action), and pinned under a test bpffs directory laid out as
//! its `/sys/fs/bpf/globals/aws`. The directory is removed on drop.

use std::{
    ffi::CString,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use aya::programs::{
    SchedClassifier, TcAttachType,
    tc::{NlOptions, TcAttachOptions, TcHandle},
};
use datapath::incumbent::{INCUMBENT_EGRESS_PROGRAM, INCUMBENT_INGRESS_PROGRAM};
use netlab::{NetNs, unique_name};

/// What a stand-in program answers for every packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandInVerdict {
    /// TC_ACT_OK: the packet passes (ends classification).
    Pass,
    /// TC_ACT_SHOT: the packet is dropped.
    Drop,
}

impl StandInVerdict {
    fn action(self) -> i32 {
        match self {
            Self::Pass => 0,
            Self::Drop => 2,
        }
    }
}

/// The stand-in's pin directory (its `globals/aws`), removed on drop.
pub struct StandIn {
    root: PathBuf,
}

impl Default for StandIn {
    fn default() -> Self {
        Self::new()
    }
}

impl StandIn {
    pub fn new() -> Self {
        let root = PathBuf::from(format!("/sys/fs/bpf/{}", unique_name("npa-standin-")))
            .join("globals/aws");
        for dir in ["programs", "maps"] {
            std::fs::create_dir_all(root.join(dir)).expect("stand-in pin directory");
        }
        Self { root }
    }

    /// The directory standing for `/sys/fs/bpf/globals/aws`.
    pub fn pin_root(&self) -> &Path {
        &self.root
    }

    /// Attaches `handle_ingress` (egress hook) and `handle_egress` (ingress hook) to
    /// `interface` in `node`, both answering `verdict`, and pins them as the incumbent
    /// does (`programs/<pod>_handle_ingress`).
    pub fn attach(&self, node: &NetNs, interface: &str, verdict: StandInVerdict) {
        for (program, hook) in [
            (INCUMBENT_INGRESS_PROGRAM, TcAttachType::Egress),
            (INCUMBENT_EGRESS_PROGRAM, TcAttachType::Ingress),
        ] {
            let fd = load_classifier(program, verdict.action());
            let pin = self
                .root
                .join("programs")
                .join(format!("{interface}-default_{program}"));
            pin_object(&fd, &pin);
            let mut prog = SchedClassifier::from_pin(&pin).expect("stand-in from its pin");
            let _in_node = node.enter().expect("enter node");
            if let Err(e) = aya::programs::tc::qdisc_add_clsact(interface)
                && !matches!(&e, aya::programs::tc::TcError::NetlinkError(n) if n.raw_os_error() == Some(libc::EEXIST))
            {
                panic!("clsact on {interface}: {e}");
            }
            let id = prog
                .attach_with_options(
                    interface,
                    hook,
                    TcAttachOptions::Netlink(NlOptions {
                        priority: 1,
                        handle: TcHandle::new(0, 1),
                        classid: None,
                    }),
                )
                .expect("attach stand-in");
            let link = prog.take_link(id).expect("stand-in link");
            // The filter stays with the qdisc, as the incumbent's outlive its process.
            let _kept = std::mem::ManuallyDrop::new(link);
        }
    }

    /// Pins an array map as `maps/<name>` (the incumbent's global maps).
    pub fn pin_map(&self, name: &str) {
        let fd = create_array_map();
        pin_object(&fd, &self.root.join("maps").join(name));
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        // The unique directory above globals/aws.
        if let Some(top) = self.root.parent().and_then(Path::parent) {
            let _ = std::fs::remove_dir_all(top);
        }
    }
}

/// The stand-in's filters on `interface` as `tc` lists them (independent of the
/// agent's own netlink code): one line per filter naming its program.
pub fn tc_filter_names(node: &NetNs, interface: &str) -> Vec<String> {
    let mut names = Vec::new();
    for hook in ["ingress", "egress"] {
        let out = node
            .exec("tc", &["filter", "show", "dev", interface, hook])
            .expect("tc filter show");
        for line in out.lines() {
            for program in [INCUMBENT_INGRESS_PROGRAM, INCUMBENT_EGRESS_PROGRAM] {
                if line.contains(program) {
                    names.push(format!("{hook}:{program}"));
                }
            }
        }
    }
    names.sort();
    names
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_MAP_TYPE_ARRAY: u32 = 2;

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_MAP_CREATE, up to `map_name`.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` for BPF_OBJ_PIN.
#[repr(C)]
#[derive(Default)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

fn bpf<T>(command: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a live, initialised bpf_attr prefix of the size passed; the
    // kernel reads (and for some commands writes) only that many bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut T,
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    let fd = i32::try_from(fd).expect("fd fits i32");
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `r0 = action; exit`, a classifier named `name`.
fn load_classifier(name: &str, action: i32) -> OwnedFd {
    let mut insns = [0u8; 16];
    insns[0] = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K, dst r0
    insns[4..8].copy_from_slice(&action.to_le_bytes());
    insns[8] = 0x95; // BPF_JMP | BPF_EXIT
    let license = CString::new("GPL").unwrap();
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    attr.prog_name[..name.len()].copy_from_slice(name.as_bytes());
    owned(bpf(BPF_PROG_LOAD, &mut attr).unwrap_or_else(|e| panic!("load stand-in {name}: {e}")))
}

fn create_array_map() -> OwnedFd {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        ..MapCreateAttr::default()
    };
    owned(bpf(BPF_MAP_CREATE, &mut attr).expect("create stand-in map"))
}

fn pin_object(fd: &OwnedFd, path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c_path = CString::new(path.as_os_str().as_bytes()).expect("pin path");
    let mut attr = ObjPinAttr {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: u32::try_from(fd.as_raw_fd()).expect("fd"),
        ..ObjPinAttr::default()
    };
    bpf(BPF_OBJ_PIN, &mut attr).unwrap_or_else(|e| panic!("pin {}: {e}", path.display()));
}
