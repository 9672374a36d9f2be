//! A loaded datapath in a test network namespace of its own, with veth interfaces
//! standing for pod interfaces, and shorthands to program pods and rules, run frames
//! through the programs (BPF_PROG_TEST_RUN with the interface in `ctx_in`) and
//! collect the events. Everything is removed on drop.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    time::Duration,
};

use datapath::{Datapath, EventReader, LoadOptions, PinLayout, frame_run};
use datapath_common::*;
use netlab::{NetNs, NsEntered, unique_name};

use crate::gate::require_root;

pub const ACT_PASS: i32 = -1;
pub const ACT_DROP: i32 = 2;

pub struct KernelFixture {
    // Field order is drop order: the datapath goes before we leave the namespace.
    pub dp: Option<Datapath>,
    /// Taken by tests that read from another thread.
    pub reader: Option<EventReader>,
    pins_root: std::path::PathBuf,
    _entered: NsEntered,
    pub ns: NetNs,
    next_list: u32,
    /// `PodRecord::lookups` of each policy set, from the entries written so far.
    lookups: HashMap<u32, [[u8; 2]; 2]>,
    /// Interfaces given a pod record.
    pods: BTreeSet<u32>,
}

/// Options a fixture starts with.
pub struct FixtureOptions {
    pub ring_bytes: u32,
    pub fold_window: Duration,
    pub event_scope: u8,
    pub wakeup_threshold_bytes: u64,
    pub fold_entries: u32,
    pub policy_hash_entries: u32,
}

impl Default for FixtureOptions {
    fn default() -> Self {
        Self {
            ring_bytes: 1 << 20,
            fold_window: Duration::ZERO,
            event_scope: EVENT_SCOPE_ALL,
            wakeup_threshold_bytes: 0,
            fold_entries: 4096,
            policy_hash_entries: LoadOptions::default().policy_hash_entries,
        }
    }
}

impl KernelFixture {
    /// A datapath in a fresh namespace, with `interfaces` created (veths).
    pub fn new(interfaces: &[&str]) -> Self {
        Self::with_options(interfaces, FixtureOptions::default())
    }

    pub fn with_options(interfaces: &[&str], opts: FixtureOptions) -> Self {
        require_root();
        let ns = NetNs::create(&unique_name("npt")).expect("create test namespace");
        for name in interfaces {
            // veth rather than dummy: this kernel has no dummy driver.
            let peer = format!("{name}-p");
            ns.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer])
                .expect("add test interface");
            ns.ip(&["link", "set", name, "up"])
                .expect("set test interface up");
        }
        let entered = ns.enter().expect("enter test namespace");
        let pins_root =
            std::path::PathBuf::from(format!("/sys/fs/bpf/{}", unique_name("netpol-test-")));
        let load = LoadOptions {
            pins: PinLayout::new(&pins_root),
            ring_bytes: opts.ring_bytes,
            conntrack_entries: 4096,
            fold_entries: opts.fold_entries,
            policy_hash_entries: opts.policy_hash_entries,
            settings: Settings {
                fold_window_ns: opts.fold_window.as_nanos() as u64,
                wakeup_threshold_bytes: opts.wakeup_threshold_bytes,
                event_scope: opts.event_scope,
                ..Settings::default()
            },
            ..LoadOptions::default()
        };
        let mut dp = match Datapath::load(&load) {
            Ok(dp) => dp,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&pins_root);
                panic!("load datapath: {e}");
            }
        };
        let reader = dp.take_event_reader().expect("event reader");
        Self {
            dp: Some(dp),
            reader: Some(reader),
            pins_root,
            _entered: entered,
            ns,
            next_list: 1,
            lookups: HashMap::new(),
            pods: BTreeSet::new(),
        }
    }

    pub fn dp(&mut self) -> &mut Datapath {
        self.dp.as_mut().expect("datapath present")
    }

    pub fn ifindex(&self, interface: &str) -> u32 {
        self.ns.ifindex(interface).expect("interface exists")
    }

    /// Writes a pod record for `ifindex`.
    pub fn set_pod(&mut self, ifindex: u32, addrs: &[IpAddr], ingress_state: u8, egress_state: u8) {
        let mut rec = self.dp().maps().pod(ifindex).unwrap_or_default();
        rec.ingress_state = ingress_state;
        rec.egress_state = egress_state;
        rec.addr_flags = 0;
        for addr in addrs {
            match addr {
                IpAddr::V4(a) => {
                    rec.ipv4 = a.octets();
                    rec.addr_flags |= POD_HAS_IPV4;
                }
                IpAddr::V6(a) => {
                    rec.ipv6 = a.octets();
                    rec.addr_flags |= POD_HAS_IPV6;
                }
            }
        }
        self.dp().maps().put_pod(ifindex, &rec).expect("put pod");
        self.pods.insert(ifindex);
    }

    /// Bumps the pod's generation (its rules changed).
    pub fn bump_generation(&mut self, ifindex: u32) {
        let mut rec = self.dp().maps().pod(ifindex).expect("pod record");
        rec.generation += 1;
        self.dp().maps().put_pod(ifindex, &rec).expect("put pod");
    }

    /// Points the pod at `policy_set`, flagging the stores its entries so far use.
    pub fn set_policy_set(&mut self, ifindex: u32, policy_set: u32) {
        let mut rec = self.dp().maps().pod(ifindex).expect("pod record");
        rec.policy_set = policy_set;
        rec.lookups = self.lookups.get(&policy_set).copied().unwrap_or_default();
        self.dp().maps().put_pod(ifindex, &rec).expect("put pod");
    }

    /// Writes a policy entry for `prefix` in `policy_set`/`direction` with `rules`,
    /// and flags its store in the records of the pods using that set (as the
    /// planner does).
    pub fn put_entry(&mut self, policy_set: u32, direction: u8, prefix: &str, rules: &[Rule]) {
        let (addr, bits) = parse_prefix(prefix);
        let list = self.next_list;
        self.next_list += 1;
        let maps = self.dp().maps();
        maps.put_rule_list(list, rules).expect("put rule list");
        let (key, len) = datapath_common::policy_key(policy_set, direction, addr, bits);
        maps.put_entry(&key, len, list).expect("put entry");
        let mut flags = PodRecord {
            lookups: self.lookups.get(&policy_set).copied().unwrap_or_default(),
            ..PodRecord::default()
        };
        flags.note_entry(direction, key.family, len);
        self.lookups.insert(policy_set, flags.lookups);
        for ifindex in self.pods.clone() {
            if let Some(mut rec) = self.dp().maps().pod(ifindex)
                && rec.policy_set == policy_set
            {
                rec.lookups = flags.lookups;
                self.dp().maps().put_pod(ifindex, &rec).expect("put pod");
            }
        }
    }

    /// Runs `frame` through the program for `direction` as if on `ifindex`.
    pub fn run(&self, direction: u8, ifindex: u32, frame: &[u8]) -> i32 {
        self.run_segs(direction, ifindex, frame, 1)
    }

    pub fn run_segs(&self, direction: u8, ifindex: u32, frame: &[u8], gso_segs: u32) -> i32 {
        let name = program_for(direction);
        let prog = self
            .dp
            .as_ref()
            .expect("datapath")
            .program(name)
            .expect("program");
        frame_run::run_frame(prog, frame, ifindex, gso_segs, 1)
            .expect("test run")
            .action
    }

    /// Every event pending in the ring.
    pub fn events(&mut self) -> Vec<FlowEvent> {
        let mut out = Vec::new();
        self.reader
            .as_mut()
            .expect("reader not taken")
            .drain(usize::MAX, |e| out.push(*e));
        out
    }

    pub fn counters(&mut self) -> Counters {
        self.dp().maps().counters().expect("counters")
    }
}

pub fn program_for(direction: u8) -> &'static str {
    if direction == DIRECTION_INGRESS {
        program_names::POD_INGRESS
    } else {
        program_names::POD_EGRESS
    }
}

impl Drop for KernelFixture {
    fn drop(&mut self) {
        if let Some(dp) = self.dp.take()
            && let Err(e) = dp.remove_all()
        {
            eprintln!("fixture: removing the datapath failed: {e}");
        }
        // Whatever removal left (a failed test can leave pins mid-write) goes too.
        let _ = std::fs::remove_dir_all(&self.pins_root);
    }
}

/// The programs' clock (re-exported for the tests).
pub use datapath_common::clock::coarse_monotonic_now_ns as coarse_now_ns;

/// Waits until the programs' clock reads at least `at_ns`, so a test that needs a
/// window to be over does not sit on a tick boundary. Panics after a minute.
pub fn wait_for_coarse_clock(at_ns: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while coarse_now_ns() < at_ns {
        assert!(
            std::time::Instant::now() < deadline,
            "the coarse clock did not reach {at_ns}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// "10.0.0.0/8" → (10.0.0.0, 8).
pub fn parse_prefix(prefix: &str) -> (IpAddr, u8) {
    let (addr, bits) = prefix.split_once('/').expect("prefix has a length");
    (
        addr.parse().expect("prefix address"),
        bits.parse().expect("prefix length"),
    )
}

/// A rule: protocol (or PROTO_ANY), inclusive port range, policy id.
pub fn rule(protocol: u8, port_min: u16, port_max: u16, policy_id: u32) -> Rule {
    Rule {
        protocol,
        port_min,
        port_max,
        policy_id,
        ..Rule::default()
    }
}

/// An event's addresses as IpAddrs.
pub fn event_addrs(e: &FlowEvent) -> (IpAddr, IpAddr) {
    use exporter::enrich::event_addr;
    (
        event_addr(e.family, &e.src_addr),
        event_addr(e.family, &e.dst_addr),
    )
}
