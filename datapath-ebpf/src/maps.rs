//! Every map the programs use, pinned by name so a restarted agent re-adopts them.
//! Sizes here are defaults; userspace sets the real ones at load.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use datapath_common::{
    Counters, CtValue, DIRECT_POD_SLOTS, FlowKey, FoldValue, FragKey, FragValue, HashedKeyV4,
    HashedKeyV6, POD_SLOT_COUNT, PodRecord, PolicyKeyV4, PolicyKeyV6, RuleList, Settings,
    TrieEntry,
};

/// `BPF_F_NO_PREALLOC`: memory follows the entries actually written.
const NO_PREALLOC: u32 = 1;

#[map(name = "POD_SLOTS")]
pub static POD_SLOTS: Array<PodRecord> = Array::pinned(POD_SLOT_COUNT, 0);

#[map(name = "POD_INDEX")]
pub static POD_INDEX: HashMap<u32, u32> =
    HashMap::pinned(POD_SLOT_COUNT - DIRECT_POD_SLOTS, NO_PREALLOC);

#[map(name = "POLICY_V4")]
pub static POLICY_V4: LpmTrie<PolicyKeyV4, TrieEntry> = LpmTrie::pinned(1 << 20, 0);

#[map(name = "POLICY_V6")]
pub static POLICY_V6: LpmTrie<PolicyKeyV6, TrieEntry> = LpmTrie::pinned(1 << 20, 0);

#[map(name = "POLICY_HASH_V4")]
pub static POLICY_HASH_V4: HashMap<HashedKeyV4, u32> = HashMap::pinned(1 << 18, NO_PREALLOC);

#[map(name = "POLICY_HASH_V6")]
pub static POLICY_HASH_V6: HashMap<HashedKeyV6, u32> = HashMap::pinned(1 << 18, NO_PREALLOC);

#[map(name = "RULE_LISTS")]
pub static RULE_LISTS: HashMap<u32, RuleList> = HashMap::pinned(65536, NO_PREALLOC);

#[map(name = "CONNTRACK")]
pub static CONNTRACK: LruHashMap<FlowKey, CtValue> = LruHashMap::pinned(65536, 0);

/// Where a new conntrack value is built before its insert: a per-CPU slot instead of
/// 104 bytes of the programs' 512-byte stack.
#[map(name = "CT_SCRATCH")]
pub static CT_SCRATCH: PerCpuArray<CtValue> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "FRAGMENTS")]
pub static FRAGMENTS: LruHashMap<FragKey, FragValue> = LruHashMap::pinned(8192, 0);

#[map(name = "FOLDS")]
pub static FOLDS: HashMap<FlowKey, FoldValue> = HashMap::pinned(65536, NO_PREALLOC);

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::pinned(1 << 20, 0);

#[map(name = "SETTINGS")]
pub static SETTINGS: Array<Settings> = Array::pinned(1, 0);

#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<Counters> = PerCpuArray::pinned(1, 0);
