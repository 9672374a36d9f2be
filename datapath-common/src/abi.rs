//! Map keys, map values, the flow event and their constants. Every struct is
//! `#[repr(C)]` with explicit padding and a size assert, because the kernel and
//! userspace read the same bytes.

use core::{
    mem::{offset_of, size_of},
    net::IpAddr,
};

/// Bumped whenever a map layout changes: pins live under `.../v{ABI_VERSION}/`, so a
/// newer agent never reinterprets an older map.
pub const ABI_VERSION: u32 = 5;

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
/// Only audit-mode policies select the pod in this direction: a packet their rules do
/// not admit passes and is reported as [`VERDICT_AUDIT`].
pub const STATE_POLICIES_AUDIT: u8 = 3;

pub const VERDICT_DENY: u8 = 0;
pub const VERDICT_ACCEPT: u8 = 1;
/// Passed, though the audit-mode policies selecting the pod would have dropped it.
pub const VERDICT_AUDIT: u8 = 2;
/// Set in a fold key's `direction` for AUDIT folds, so a flow's AUDIT and DENY
/// packets (audit switched off mid-flow) never share a fold.
pub const FOLD_DIRECTION_AUDIT: u8 = 2;

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

/// Bits of a policy trie key before the peer address: the selector (policy set and
/// direction, see [`policy_selector`]).
pub const POLICY_SELECTOR_BITS: u32 = 32;

/// The largest policy-set id: the selector keeps one bit for the direction.
pub const MAX_POLICY_SET: u32 = u32::MAX >> 1;

/// The first 32 bits of a policy trie key: the policy set with the direction in its
/// lowest bit. Sets and directions share one word so an IPv4 key is 8 bytes, which
/// the kernel's trie compares in one step per node.
#[inline(always)]
pub const fn policy_selector(policy_set: u32, direction: u8) -> u32 {
    (policy_set << 1) | (direction & 1) as u32
}

/// Map names, shared so userspace finds what the kernel declares.
pub mod map_names {
    /// Pod records by slot, and the slots of interfaces whose ifindex is past the
    /// directly indexed ones.
    pub const POD_SLOTS: &str = "POD_SLOTS";
    pub const POD_INDEX: &str = "POD_INDEX";
    /// The IPv4 and IPv6 policy tries: one per family so keys are short (8 and 20
    /// bytes) and an IPv6 `::/0` can never match an IPv4 peer.
    pub const POLICY_V4: &str = "POLICY_V4";
    pub const POLICY_V6: &str = "POLICY_V6";
    /// Entries of the [`super::HASHED_LENGTHS`], found by exact match.
    pub const POLICY_HASH_V4: &str = "POLICY_HASH_V4";
    pub const POLICY_HASH_V6: &str = "POLICY_HASH_V6";
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

/// Slots in `POD_SLOTS`. An interface whose ifindex is below [`DIRECT_POD_SLOTS`]
/// uses the slot of that number (an array lookup the verifier inlines: the cheapest
/// map read there is, on every packet); others get one of the remaining slots through
/// `POD_INDEX`.
pub const POD_SLOT_COUNT: u32 = 16384;
pub const DIRECT_POD_SLOTS: u32 = 12288;

/// One pod interface, in `POD_SLOTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodRecord {
    /// Which rule set in the policy tries applies; flipped to a fresh id on updates.
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
    /// Where this pod's policy entries are, by `[direction][family index]` (0: IPv4,
    /// 1: IPv6): a bit per [`HASHED_LENGTHS`] slot the entries use, and
    /// [`LOOKUP_TRIE`] if any entry has another length. The datapath probes only
    /// what is flagged.
    pub lookups: [[u8; 2]; 2],
    /// The host-side interface the record belongs to; 0 marks a free slot. The
    /// datapath's userspace sets it when it writes the record, and the programs
    /// ignore a slot whose ifindex is not the packet's.
    pub ifindex: u32,
}
const _: () = assert!(size_of::<PodRecord>() == 40);
const _: () = assert!(offset_of!(PodRecord, ipv4) == 12);
const _: () = assert!(offset_of!(PodRecord, lookups) == 32);

impl PodRecord {
    /// Flags the store of an entry of `family` and peer `prefix_len` in `direction`,
    /// so the datapath looks there.
    pub fn note_entry(&mut self, direction: u8, family: u8, prefix_len: u32) {
        self.lookups[(direction & 1) as usize][family_index(family)] |=
            lookup_flag(family, prefix_len);
    }

    /// Does the datapath look where an entry of `family` and `prefix_len` in
    /// `direction` lives?
    pub fn looks_up(&self, direction: u8, family: u8, prefix_len: u32) -> bool {
        self.lookups[(direction & 1) as usize][family_index(family)]
            & lookup_flag(family, prefix_len)
            != 0
    }
}

/// Peer prefix lengths whose entries live in the policy hashes (`POLICY_HASH_V4`,
/// `POLICY_HASH_V6`) instead of the tries, longest first, by family index (0: IPv4,
/// 1: IPv6): pod addresses, the usual subnets, and "everything". An exact-match probe
/// for each length a pod uses costs far less than a walk down a trie every pod
/// shares. All are whole bytes, so masking an address clears trailing bytes.
pub const HASHED_LENGTHS: [[u8; 5]; 2] = [[32, 24, 16, 8, 0], [128, 64, 56, 48, 0]];

/// `PodRecord::lookups` bit: some entry of that direction and family is in the trie.
pub const LOOKUP_TRIE: u8 = 0x80;

/// Index of `family` in `PodRecord::lookups` and [`HASHED_LENGTHS`].
#[inline(always)]
pub const fn family_index(family: u8) -> usize {
    if family == FAMILY_IPV4 { 0 } else { 1 }
}

/// The `PodRecord::lookups` bit that an entry of `family` and `prefix_len` needs:
/// its [`HASHED_LENGTHS`] slot, or [`LOOKUP_TRIE`].
pub const fn lookup_flag(family: u8, prefix_len: u32) -> u8 {
    let lengths = &HASHED_LENGTHS[family_index(family)];
    let mut i = 0;
    while i < lengths.len() {
        if lengths[i] as u32 == prefix_len {
            return 1 << i;
        }
        i += 1;
    }
    LOOKUP_TRIE
}

/// A policy entry's key as userspace handles it (planner, maps, inspection): the
/// datapath stores it in the hash of its family ([`HashedKeyV4`], [`HashedKeyV6`])
/// if its length is one of the [`HASHED_LENGTHS`], else in the family's trie
/// ([`PolicyKeyV4`], [`PolicyKeyV6`]). Its prefix length is the peer prefix's alone.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// Big-endian so it orders like the kernel's keys.
    pub policy_set_be: u32,
    pub direction: u8,
    pub family: u8,
    pub _pad: [u8; 2],
    /// IPv4 peers use the first 4 bytes; the rest stay zero.
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<PolicyKey>() == 24);

/// The key of the peer prefix `addr/prefix_len` in `policy_set` and `direction`, and
/// the prefix length the maps take with it: the one constructor the planner, the map
/// writers and the tests share. Bits past the prefix are cleared, so `10.1.2.3/16`
/// and `10.1.0.0/16` give the same key; a length past the family's width keeps every
/// bit.
pub fn policy_key(
    policy_set: u32,
    direction: u8,
    addr: IpAddr,
    prefix_len: u8,
) -> (PolicyKey, u32) {
    let mut key = PolicyKey {
        policy_set_be: policy_set.to_be(),
        direction,
        ..PolicyKey::default()
    };
    let width = match addr {
        IpAddr::V4(a) => {
            key.family = FAMILY_IPV4;
            key.addr[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            key.family = FAMILY_IPV6;
            key.addr = a.octets();
            16
        }
    };
    for (i, byte) in key.addr[..width].iter_mut().enumerate() {
        let kept = (prefix_len as usize).saturating_sub(8 * i).min(8);
        *byte &= !(0xffu16 >> kept) as u8;
    }
    (key, u32::from(prefix_len))
}

/// The data part of a `POLICY_V4` (`N` = 4) or `POLICY_V6` (`N` = 16) key (the
/// kernel's LPM key adds a `u32` prefix length in front): matching covers
/// [`POLICY_SELECTOR_BITS`] plus the peer prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrieKey<const N: usize> {
    /// [`policy_selector`], big-endian so the bits the trie compares are the same on
    /// every host.
    pub selector_be: u32,
    pub addr: [u8; N],
}
pub type PolicyKeyV4 = TrieKey<4>;
pub type PolicyKeyV6 = TrieKey<16>;
const _: () = assert!(size_of::<PolicyKeyV4>() == 8);
const _: () = assert!(size_of::<PolicyKeyV6>() == 20);

/// A `POLICY_V4`/`POLICY_V6` value: the rule list and the entry's peer prefix length, which the
/// datapath weighs against a hashed match.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrieEntry {
    pub list_id: u32,
    pub prefix_len: u32,
}
const _: () = assert!(size_of::<TrieEntry>() == 8);

/// A `POLICY_HASH_V4` (`N` = 4) or `POLICY_HASH_V6` (`N` = 16) key: an entry of one
/// of the [`HASHED_LENGTHS`], its address masked to the prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashedKey<const N: usize> {
    pub selector_be: u32,
    pub prefix_len: u8,
    pub _pad: [u8; 3],
    pub addr: [u8; N],
}
pub type HashedKeyV4 = HashedKey<4>;
pub type HashedKeyV6 = HashedKey<16>;
const _: () = assert!(size_of::<HashedKeyV4>() == 12);
const _: () = assert!(size_of::<HashedKeyV6>() == 24);

/// Copies the first `prefix_len / 8` bytes of `addr` and zeroes the rest: the address
/// of a hashed entry (every hashed length is whole bytes).
#[inline(always)]
pub fn mask_whole_bytes<const N: usize>(addr: &[u8; N], prefix_len: u8) -> [u8; N] {
    let mut out = *addr;
    clear_past_prefix(&mut out, prefix_len);
    out
}

/// Zeroes the bytes of `addr` past the first `prefix_len / 8`, in place. Applied for
/// each of the [`HASHED_LENGTHS`] in turn (longest first), it masks an address for
/// every probe without a copy per probe.
#[inline(always)]
pub fn clear_past_prefix<const N: usize>(addr: &mut [u8; N], prefix_len: u8) {
    let keep = (prefix_len / 8) as usize;
    let mut i = keep;
    while i < N {
        addr[i] = 0;
        i += 1;
    }
}

/// `Rule::action`: a matching packet passes (NetworkPolicy rules, Accept rules).
pub const RULE_ACCEPT: u8 = 0;
/// `Rule::action`: a matching packet drops (Admin and Baseline Deny rules).
pub const RULE_DENY: u8 = 1;

/// One rule: a protocol (or any) and an inclusive destination-port range, what a
/// matching packet gets (`action`) and the policy it came from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    pub protocol: u8,
    /// `RULE_ACCEPT` or `RULE_DENY`.
    pub action: u8,
    pub port_min: u16,
    pub port_max: u16,
    pub _pad2: u16,
    pub policy_id: u32,
}
const _: () = assert!(size_of::<Rule>() == 12);

/// A deduplicated list of rules; policy entries hold ids into `RULE_LISTS`.
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

/// A conntrack entry: the flow's verdict state and its counters, both ways.
///
/// The counters are exact under concurrency (several CPUs may carry one flow): the CPU
/// that tracked the flow (`owner_cpu`) adds to `packets` and `bytes` with plain adds,
/// being their only writer, and any other CPU adds to `shared_packets` and
/// `shared_bytes` with atomic adds; a flow's totals are the sums ([`Self::total_packets`],
/// [`Self::total_bytes`]). The usual flow, steered to one CPU, thus counts without a
/// locked instruction. Userspace takes an entry's last value with one
/// lookup-and-delete when the flow ends.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    /// The last packet's time (coarse clock), refreshed at most once a clock tick
    /// (when `last_seen_jiffies` moves on).
    pub last_seen_ns: u64,
    /// The pod's `generation` when the flow was last allowed.
    pub generation: u32,
    /// The direction of the flow's first packet.
    pub origin_direction: u8,
    /// Non-zero once a TCP RST passed either way. Plain byte stores: setting a flag
    /// twice is harmless, and no store clobbers a neighbouring flag.
    pub rst_seen: u8,
    /// Non-zero once a TCP FIN passed, by direction (`DIRECTION_INGRESS`,
    /// `DIRECTION_EGRESS`).
    pub fin_seen: [u8; 2],
    pub policy_id: u32,
    /// The CPU that tracked the flow: the only writer of `packets` and `bytes`.
    pub owner_cpu: u32,
    /// The first packet's time (coarse clock).
    pub start_ns: u64,
    /// Wire packets (`max(1, gso_segs)`) by direction as seen from the pod, counted on
    /// `owner_cpu`.
    pub packets: [u64; 2],
    /// Bytes of the frames the datapath saw (Ethernet header included), by direction,
    /// counted on `owner_cpu`.
    pub bytes: [u64; 2],
    /// As `packets`, counted on every other CPU (atomic adds).
    pub shared_packets: [u64; 2],
    /// As `bytes`, counted on every other CPU (atomic adds).
    pub shared_bytes: [u64; 2],
    /// The low 32 bits of the kernel's tick count (`jiffies`) when `last_seen_ns` was
    /// written: a conntrack hit reads the tick count (an inlined load) and the clock
    /// (a helper call, ~30 ns) only when it moved on.
    pub last_seen_jiffies: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<CtValue>() == 104);
const _: () = assert!(offset_of!(CtValue, fin_seen) == 14);
const _: () = assert!(offset_of!(CtValue, packets) == 32);
const _: () = assert!(offset_of!(CtValue, bytes) == 48);
const _: () = assert!(offset_of!(CtValue, shared_packets) == 64);
const _: () = assert!(offset_of!(CtValue, shared_bytes) == 80);

impl CtValue {
    /// Wire packets by direction, from every CPU.
    pub const fn total_packets(&self) -> [u64; 2] {
        [
            self.packets[0].wrapping_add(self.shared_packets[0]),
            self.packets[1].wrapping_add(self.shared_packets[1]),
        ]
    }

    /// Frame bytes by direction, from every CPU.
    pub const fn total_bytes(&self) -> [u64; 2] {
        [
            self.bytes[0].wrapping_add(self.shared_bytes[0]),
            self.bytes[1].wrapping_add(self.shared_bytes[1]),
        ]
    }

    /// Has the flow ended as TCP ends: a RST either way, or a FIN both ways?
    pub const fn tcp_closed(&self) -> bool {
        self.rst_seen != 0 || (self.fin_seen[0] != 0 && self.fin_seen[1] != 0)
    }
}

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
    /// `VERDICT_DENY` or `VERDICT_AUDIT`.
    pub verdict: u8,
    pub _pad: [u8; 2],
    /// The low 32 bits of the tick count (`jiffies`) when `last_packet_ns` was written:
    /// a packet in the same tick takes that time instead of reading the clock.
    pub last_packet_jiffies: u32,
    pub _pad2: u32,
}
const _: () = assert!(size_of::<FoldValue>() == 56);
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

/// Per-CPU counters, index 0 of `COUNTERS`; userspace sums the CPUs. Ordered by how
/// often they change: every packet writes the first cache line and `audited_packets`,
/// every new flow also `events_submitted` and `conntrack_inserts`, all in the first
/// two lines (one more line touched costs a single-shot new flow a cache miss).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Wire packets (`max(1, gso_segs)`) by `[direction][verdict]`.
    pub packets: [[u64; 2]; 2],
    pub bytes: [[u64; 2]; 2],
    /// Wire packets that passed as AUDIT (also counted in `packets[d][ACCEPT]`), by
    /// direction.
    pub audited_packets: [u64; 2],
    pub events_submitted: u64,
    /// Conntrack entries the datapath created (inserts that found no entry).
    pub conntrack_inserts: u64,
    /// Events not sent because of the event scope.
    pub events_filtered_scope: u64,
    /// Events sent with a forced wake-up (pending data passed the threshold).
    pub wakeups_forced: u64,
    /// Packets no entry counted: two CPUs opened the same flow at the same instant,
    /// and the one whose insert lost dropped its packet from the flow's counters.
    pub conntrack_insert_races: u64,
    /// Conntrack entries the datapath deleted itself (a flow its pod's new rules deny).
    pub conntrack_removals: u64,
    /// Events the ring could not take.
    pub events_lost: u64,
    /// Denied packets carried by lost events.
    pub denied_packets_lost: u64,
    /// Audited packets carried by lost events.
    pub audited_packets_lost: u64,
    /// DENY events sent unfolded because the fold map was full.
    pub events_unfolded_fold_full: u64,
    pub fragments_untracked: u64,
    pub spoofed_packets: u64,
}
const _: () = assert!(size_of::<Counters>() == 22 * 8);
const _: () = assert!(offset_of!(Counters, conntrack_inserts) < 128);

/// One verdict, sent through the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// CLOCK_MONOTONIC of the first packet the event carries, read from the kernel's
    /// coarse clock (`bpf_ktime_get_coarse_ns`): tick resolution (4 ms at HZ=250), for a
    /// fraction of the precise clock's cost on every new flow.
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
    /// Padding in naturally aligned pieces, so zeroing it takes three plain stores
    /// (a `[u8; 7]` became a byte loop in a BPF `memset` call on every event).
    pub _pad8: u8,
    pub _pad16: u16,
    pub _pad32: u32,
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
    unsafe impl<const N: usize> aya::Pod for super::TrieKey<N> {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TrieEntry {}
    // SAFETY: as above.
    unsafe impl<const N: usize> aya::Pod for super::HashedKey<N> {}
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

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn policy_key_is_big_endian_set_and_family_tagged() {
        let (key, len) = policy_key(
            0x0102_0304,
            DIRECTION_EGRESS,
            IpAddr::V4(Ipv4Addr::new(10, 1, 0, 0)),
            16,
        );
        assert_eq!(key.policy_set_be.to_ne_bytes(), [1, 2, 3, 4]);
        assert_eq!(key.family, FAMILY_IPV4);
        assert_eq!(key.direction, DIRECTION_EGRESS);
        assert_eq!(key.addr, [10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(len, 16);
    }

    #[test]
    fn policy_key_clears_host_bits_to_the_bit() {
        let masked = |addr: IpAddr, len: u8| policy_key(7, DIRECTION_INGRESS, addr, len).0;
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 255, 3));
        assert_eq!(&masked(v4, 19).addr[..4], &[10, 1, 224, 0]);
        assert_eq!(&masked(v4, 0).addr[..4], &[0, 0, 0, 0]);
        assert_eq!(&masked(v4, 32).addr[..4], &[10, 1, 255, 3]);
        assert_eq!(
            masked(v4, 33),
            masked(v4, 32),
            "past the width keeps every bit"
        );
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x20, 0xffff, 0, 0, 0, 0, 1));
        let key = masked(v6, 36);
        assert_eq!(key.family, FAMILY_IPV6);
        assert_eq!(
            key.addr,
            [0xfd, 0, 0, 0x20, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            masked(v6, 128).addr,
            Ipv6Addr::new(0xfd00, 0x20, 0xffff, 0, 0, 0, 0, 1).octets()
        );
    }
}
