//! Map keys, map values, the flow event and their constants. Every struct is
//! `#[repr(C)]` with explicit padding and a size assert, because the kernel and
//! userspace read the same bytes.

use core::mem::{offset_of, size_of};

/// Bumped whenever a map layout changes: pins live under `.../v{ABI_VERSION}/`, so a
/// newer agent never reinterprets an older map.
pub const ABI_VERSION: u32 = 1;

/// Rules one rule list holds (the incumbent holds 24 per prefix).
pub const MAX_RULES_PER_LIST: usize = 64;

/// Direction as seen from the pod: traffic into it, or out of it.
pub const DIRECTION_INGRESS: u8 = 0;
pub const DIRECTION_EGRESS: u8 = 1;

/// Address family byte carried in keys and events.
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// IP protocol numbers the datapath knows; `PROTO_ANY` only appears in rules.
pub const PROTO_ANY: u8 = 0;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// What a pod's interface does in one direction before any rule is consulted.
pub const STATE_DEFAULT_ALLOW: u8 = 0;
pub const STATE_DEFAULT_DENY: u8 = 1;
pub const STATE_POLICIES_APPLIED: u8 = 2;

pub const VERDICT_DENY: u8 = 0;
pub const VERDICT_ACCEPT: u8 = 1;

/// Why a verdict was reached when no policy rule decided it (`policy_id == 0`), or
/// `REASON_POLICY` when the event's `policy_id` names the deciding rule's policy.
pub const REASON_POLICY: u8 = 0;
/// The pod is not isolated in this direction.
pub const REASON_DEFAULT_ALLOW: u8 = 1;
/// The pod is isolated in this direction and no rule matched the peer and port.
pub const REASON_NO_RULE_MATCHED: u8 = 2;
/// The pod is default-deny (strict mode, or its rules could not be programmed).
pub const REASON_DEFAULT_DENY: u8 = 3;
/// A packet left the pod with a source address that is not the pod's.
pub const REASON_SPOOFED_SOURCE: u8 = 4;
/// A non-first fragment arrived with no remembered first fragment.
pub const REASON_FRAGMENT_UNTRACKED: u8 = 5;

/// Which events the kernel sends; counters run regardless.
pub const EVENT_SCOPE_ALL: u8 = 0;
pub const EVENT_SCOPE_DENY: u8 = 1;
pub const EVENT_SCOPE_NONE: u8 = 2;

/// `PodRecord::addr_flags` bits.
pub const POD_HAS_IPV4: u8 = 1;
pub const POD_HAS_IPV6: u8 = 2;

/// Bits of the LPM key before the peer address: policy set, direction, family, padding.
pub const POLICY_KEY_FIXED_BITS: u32 = 64;

/// Map names, shared so userspace finds what the kernel declares.
pub mod map_names {
    pub const POD_RECORDS: &str = "POD_RECORDS";
    pub const POLICY_LPM: &str = "POLICY_LPM";
    pub const RULE_LISTS: &str = "RULE_LISTS";
    pub const CONNTRACK: &str = "CONNTRACK";
    pub const FRAGMENTS: &str = "FRAGMENTS";
    pub const FOLDS: &str = "FOLDS";
    pub const EVENTS: &str = "EVENTS";
    pub const SETTINGS: &str = "SETTINGS";
    pub const COUNTERS: &str = "COUNTERS";
}

/// Program names (the Rust function names in `datapath-ebpf`).
pub mod program_names {
    /// Attached to the host-side veth's TC egress: packets going into the pod.
    pub const POD_INGRESS: &str = "pod_ingress";
    /// Attached to the host-side veth's TC ingress: packets leaving the pod.
    pub const POD_EGRESS: &str = "pod_egress";
    /// Run by userspace through BPF_PROG_TEST_RUN to flush due DENY folds.
    pub const FOLD_FLUSH: &str = "fold_flush";
    /// A classifier that does nothing: the floor benchmarks subtract.
    pub const NOOP: &str = "noop";
}

/// One pod interface, keyed by the host-side ifindex in `POD_RECORDS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodRecord {
    /// Which rule set in `POLICY_LPM` applies; flipped to a fresh id on updates.
    pub policy_set: u32,
    /// Bumped when the pod's rules change, so conntrack entries made under older
    /// rules are re-evaluated.
    pub generation: u32,
    pub ingress_state: u8,
    pub egress_state: u8,
    pub addr_flags: u8,
    pub _pad: u8,
    pub ipv4: [u8; 4],
    pub ipv6: [u8; 16],
}
const _: () = assert!(size_of::<PodRecord>() == 32);
const _: () = assert!(offset_of!(PodRecord, ipv4) == 12);

/// The data part of a `POLICY_LPM` key (the kernel's LPM key adds a `u32` prefix
/// length in front). Matching covers `POLICY_KEY_FIXED_BITS` plus the peer prefix, so
/// an IPv6 `::/0` never matches an IPv4 peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// Big-endian so the bytes the trie compares are the same on every host.
    pub policy_set_be: u32,
    pub direction: u8,
    pub family: u8,
    pub _pad: [u8; 2],
    /// IPv4 peers use the first 4 bytes; the rest stay zero.
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<PolicyKey>() == 24);
const _: () = assert!(offset_of!(PolicyKey, addr) == 8);

/// One allow rule: a protocol (or any) and an inclusive destination-port range, and
/// the policy it came from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    pub protocol: u8,
    pub _pad: u8,
    pub port_min: u16,
    pub port_max: u16,
    pub _pad2: u16,
    pub policy_id: u32,
}
const _: () = assert!(size_of::<Rule>() == 12);

/// A deduplicated list of rules; `POLICY_LPM` values are ids into `RULE_LISTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleList {
    pub len: u32,
    pub rules: [Rule; MAX_RULES_PER_LIST],
}
const _: () = assert!(size_of::<RuleList>() == 4 + 12 * MAX_RULES_PER_LIST);

impl Default for RuleList {
    fn default() -> Self {
        Self {
            len: 0,
            rules: [Rule::default(); MAX_RULES_PER_LIST],
        }
    }
}

/// A flow as seen from its pod: both directions of one connection share a key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ifindex: u32,
    pub family: u8,
    pub protocol: u8,
    pub pod_port: u16,
    pub peer_port: u16,
    /// Zero in `CONNTRACK`; the direction of the denied packets in `FOLDS`.
    pub direction: u8,
    pub _pad: u8,
    pub pod_addr: [u8; 16],
    pub peer_addr: [u8; 16],
}
const _: () = assert!(size_of::<FlowKey>() == 44);
const _: () = assert!(offset_of!(FlowKey, pod_addr) == 12);

/// A conntrack entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    pub last_seen_ns: u64,
    /// The pod's `generation` when the flow was last allowed.
    pub generation: u32,
    /// The direction of the flow's first packet.
    pub origin_direction: u8,
    pub _pad: [u8; 3],
    pub policy_id: u32,
    pub _pad2: u32,
}
const _: () = assert!(size_of::<CtValue>() == 24);

/// Pending DENY packets of one flow, folded into one event per window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FoldValue {
    pub window_start_ns: u64,
    /// Time of the first packet still pending (0 when nothing is pending).
    pub first_pending_ns: u64,
    pub last_packet_ns: u64,
    /// Packets counted but not yet sent in an event; taken with an atomic exchange.
    pub pending_packets: u64,
    pub pending_bytes: u64,
    pub policy_id: u32,
    pub reason: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<FoldValue>() == 48);
const _: () = assert!(offset_of!(FoldValue, pending_packets) == 24);

/// Key of a remembered first fragment.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub family: u8,
    pub protocol: u8,
    pub _pad: [u8; 2],
    pub id: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}
const _: () = assert!(size_of::<FragKey>() == 40);

/// The verdict and ports of a first fragment, applied to the fragments that follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragValue {
    pub src_port: u16,
    pub dst_port: u16,
    pub verdict: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<FragValue>() == 8);

/// Runtime settings, index 0 of `SETTINGS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// DENY fold window; 0 turns folding off.
    pub fold_window_ns: u64,
    /// Wake the reader only when this many bytes are pending; 0 wakes on every event.
    pub wakeup_threshold_bytes: u64,
    pub event_scope: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(size_of::<Settings>() == 24);

/// Per-CPU counters, index 0 of `COUNTERS`; userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Wire packets (`max(1, gso_segs)`) by `[direction][verdict]`.
    pub packets: [[u64; 2]; 2],
    pub bytes: [[u64; 2]; 2],
    pub events_submitted: u64,
    /// Events the ring could not take.
    pub events_lost: u64,
    /// Denied packets carried by lost events.
    pub denied_packets_lost: u64,
    /// DENY events sent unfolded because the fold map was full.
    pub events_unfolded_fold_full: u64,
    /// Events not sent because of the event scope.
    pub events_filtered_scope: u64,
    pub fragments_untracked: u64,
    pub spoofed_packets: u64,
    /// Events sent with a forced wake-up (pending data passed the threshold).
    pub wakeups_forced: u64,
}
const _: () = assert!(size_of::<Counters>() == 16 * 8);

/// One verdict, sent through the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the first packet the event carries.
    pub timestamp_ns: u64,
    pub bytes: u64,
    /// Packets this event stands for (more than 1 for a folded DENY).
    pub count: u32,
    pub ifindex: u32,
    /// The deciding policy's id, or 0 when `reason` says why none decided.
    pub policy_id: u32,
    pub packet_len: u32,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub family: u8,
    pub protocol: u8,
    pub direction: u8,
    pub verdict: u8,
    pub reason: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(size_of::<FlowEvent>() == 80);
const _: () = assert!(offset_of!(FlowEvent, src_addr) == 32);
const _: () = assert!(offset_of!(FlowEvent, src_port) == 64);

#[cfg(feature = "user")]
mod pod_impls {
    // SAFETY: each type is repr(C), Copy, has explicit padding fields and no
    // invalid bit patterns, so any byte string of its size is a valid value.
    unsafe impl aya::Pod for super::PodRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PolicyKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RuleList {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CtValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FoldValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FragKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FragValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Settings {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Counters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowEvent {}
}
