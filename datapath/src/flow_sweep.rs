//! The conntrack sweep: ends flows (TCP close, idleness), reports them as flow records
//! when records are on (a final record per flow, and one every record interval for
//! long flows), and accounts for every entry the kernel's LRU evicted unseen.
//!
//! A flow's last counters are taken with one `BPF_MAP_LOOKUP_AND_DELETE_ELEM`, so no
//! packet counted before the delete is missed and none after it is counted twice (a
//! later packet opens a new entry, reported as a flow of its own). Periodic records
//! carry what passed since the flow's previous record, so a flow's records sum to its
//! totals.
//!
//! Eviction accounting: the datapath counts the entries it inserts and the ones it
//! deletes itself; this sweep counts its own deletes and the entries alive. Whatever
//! else left the map went to the LRU: `inserts - kernel deletes - sweep deletes -
//! live`, taken between this sweeper's first sweep and its latest (a telescoping sum,
//! so a count read while packets race the iteration is corrected by the next sweep).

use std::{
    collections::HashMap,
    os::fd::{AsFd, AsRawFd},
    time::Duration,
};

use aya::maps::{MapData, MapError};
use datapath_common::{
    CtValue, FlowKey, map_names,
    record::{FlowEnd, FlowRecord, flow_end},
};

use crate::{DatapathError, DatapathMaps};

/// What the sweep reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordOptions {
    /// Make flow records at all.
    pub enabled: bool,
    /// A record of an open flow at least this often (`Duration::ZERO`: only at the end).
    pub interval: Duration,
}

/// The counts of one sweep and of the sweeper's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepCounts {
    /// Entries alive after this sweep.
    pub live: u64,
    /// Entries this sweep deleted (flows that ended).
    pub removed: u64,
    /// Entries the sweeper deleted since it started.
    pub removed_total: u64,
    /// Entries the LRU evicted since the sweeper's first sweep (never decreases).
    pub evicted_total: u64,
}

/// What was reported of one open flow.
#[derive(Clone, Copy, Debug)]
struct Reported {
    /// The entry's `start_ns`: a different one is a new flow under the same key.
    flow_start_ns: u64,
    packets: [u64; 2],
    bytes: [u64; 2],
    /// End of the flow's last record (its start before the first).
    last_end_ns: u64,
}

/// Kernel counts at the first sweep, which evictions are counted from.
#[derive(Clone, Copy, Debug)]
struct Baseline {
    inserts: u64,
    kernel_removals: u64,
    live: u64,
}

/// Sweeps conntrack; keeps what was reported of each open flow between sweeps.
#[derive(Debug, Default)]
pub struct FlowSweeper {
    options: RecordOptions,
    reported: HashMap<FlowKey, Reported>,
    removed_total: u64,
    baseline: Option<Baseline>,
    evicted_total: u64,
}

impl FlowSweeper {
    pub fn new(options: RecordOptions) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    pub fn options(&self) -> RecordOptions {
        self.options
    }

    /// Ends and reports flows at `now_ns` (CLOCK_MONOTONIC): entries idle for longer
    /// than `idle` are deleted (records on or off); with records on, TCP flows closed
    /// both ways or reset are deleted too, each ended flow gets its final record, and
    /// open flows whose last record is `interval` old get a periodic one (if anything
    /// passed since). Records are appended to `records`.
    ///
    /// # Errors
    /// A failed map delete or counter read (the message names the map); records made
    /// before the failure are kept in `records`.
    pub fn sweep(
        &mut self,
        maps: &mut DatapathMaps,
        now_ns: u64,
        idle: Duration,
        records: &mut Vec<FlowRecord>,
    ) -> Result<SweepCounts, DatapathError> {
        let idle_ns = idle.as_nanos().min(u128::from(u64::MAX)) as u64;
        let entries = maps.conntrack();
        let mut live = 0u64;
        let mut removed = 0u64;
        let mut seen = std::collections::HashSet::with_capacity(if self.options.enabled {
            entries.len()
        } else {
            0
        });
        for entry in &entries {
            let end = flow_end(&entry.value, now_ns, idle_ns)
                .filter(|end| self.options.enabled || *end == FlowEnd::Idle);
            let Some(end) = end else {
                live += 1;
                if self.options.enabled {
                    self.maybe_periodic(&entry.key, &entry.value, now_ns, records);
                    seen.insert(entry.key);
                }
                continue;
            };
            // The last value, packets counted since the iteration read it included;
            // none means the kernel deleted it meanwhile.
            let Some(last) = lookup_and_delete(maps, &entry.key)? else {
                continue;
            };
            removed += 1;
            if self.options.enabled {
                let end = flow_end(&last, now_ns, idle_ns).unwrap_or(end);
                records.push(self.final_record(&entry.key, &last, end));
            }
        }
        if self.options.enabled {
            // Flows gone without a final record (evicted, or denied by new rules).
            self.reported.retain(|key, _| seen.contains(key));
        }
        self.removed_total += removed;
        let c = maps.counters()?;
        let base = *self.baseline.get_or_insert(Baseline {
            inserts: c.conntrack_inserts,
            kernel_removals: c.conntrack_removals,
            live: live + removed,
        });
        let evicted = (c.conntrack_inserts.wrapping_sub(base.inserts) as i128)
            - (c.conntrack_removals.wrapping_sub(base.kernel_removals) as i128)
            - self.removed_total as i128
            - (live as i128 - base.live as i128);
        self.evicted_total = self.evicted_total.max(evicted.max(0) as u64);
        Ok(SweepCounts {
            live,
            removed,
            removed_total: self.removed_total,
            evicted_total: self.evicted_total,
        })
    }

    fn maybe_periodic(
        &mut self,
        key: &FlowKey,
        ct: &CtValue,
        now_ns: u64,
        records: &mut Vec<FlowRecord>,
    ) {
        let interval_ns = self.options.interval.as_nanos() as u64;
        let reported = self.reported_for(key, ct);
        if interval_ns == 0 || now_ns.saturating_sub(reported.last_end_ns) < interval_ns {
            return;
        }
        let record = delta_record(
            key,
            ct,
            reported,
            now_ns.max(reported.last_end_ns),
            FlowEnd::Open,
        );
        if record.packets == [0; 2] {
            return;
        }
        *reported = Reported {
            flow_start_ns: ct.start_ns,
            packets: ct.total_packets(),
            bytes: ct.total_bytes(),
            last_end_ns: record.end_ns,
        };
        records.push(record);
    }

    fn final_record(&mut self, key: &FlowKey, ct: &CtValue, end: FlowEnd) -> FlowRecord {
        let reported = *self.reported_for(key, ct);
        self.reported.remove(key);
        let end_ns = ct.last_seen_ns.max(reported.last_end_ns);
        delta_record(key, ct, &reported, end_ns, end)
    }

    /// What was reported of the flow in `ct`: nothing yet for a flow not seen before,
    /// or one that replaced an earlier flow under the same key.
    fn reported_for(&mut self, key: &FlowKey, ct: &CtValue) -> &mut Reported {
        let fresh = Reported {
            flow_start_ns: ct.start_ns,
            packets: [0; 2],
            bytes: [0; 2],
            last_end_ns: ct.start_ns,
        };
        let r = self.reported.entry(*key).or_insert(fresh);
        if r.flow_start_ns != ct.start_ns {
            *r = fresh;
        }
        r
    }
}

fn delta_record(
    key: &FlowKey,
    ct: &CtValue,
    reported: &Reported,
    end_ns: u64,
    end: FlowEnd,
) -> FlowRecord {
    let sub = |now: [u64; 2], then: [u64; 2]| {
        [
            now[0].saturating_sub(then[0]),
            now[1].saturating_sub(then[1]),
        ]
    };
    FlowRecord {
        key: *key,
        origin_direction: ct.origin_direction,
        policy_id: ct.policy_id,
        start_ns: reported.last_end_ns,
        end_ns,
        packets: sub(ct.total_packets(), reported.packets),
        bytes: sub(ct.total_bytes(), reported.bytes),
        end,
    }
}

/// `bpf_attr` as `BPF_MAP_LOOKUP_AND_DELETE_ELEM` reads it.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` (hash maps, Linux 5.14+).
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;

/// Takes the value of `key` and deletes it, in one step where the kernel can (hash
/// maps since Linux 5.14), else a lookup then a delete (a packet counted between the
/// two is lost to the record); `None` when it is not there.
fn lookup_and_delete(
    maps: &mut DatapathMaps,
    key: &FlowKey,
) -> Result<Option<CtValue>, DatapathError> {
    match lookup_and_delete_at_once(maps.conntrack_map(), key) {
        Err(io_error)
            if matches!(
                io_error.raw_os_error(),
                Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
            ) =>
        {
            let value = maps.conntrack_value(key)?;
            if value.is_some() {
                maps.remove_conntrack(key)?;
            }
            Ok(value)
        }
        Err(io_error) => Err(DatapathError::map(
            map_names::CONNTRACK,
            MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_lookup_and_delete_elem",
                io_error,
            }),
        )),
        Ok(value) => Ok(value),
    }
}

/// The kernel's internal "operation not supported" (not exported to libc).
const ENOTSUPP: i32 = 524;

fn lookup_and_delete_at_once(
    map: &MapData,
    key: &FlowKey,
) -> Result<Option<CtValue>, std::io::Error> {
    let mut value = CtValue::default();
    let attr = ElemAttr {
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(key) as u64,
        value: std::ptr::from_mut(&mut value) as u64,
        flags: 0,
    };
    // SAFETY: attr is a valid bpf_attr prefix for this command; key and value point at
    // live values of the map's key and value sizes (the map was opened as
    // HashMap<FlowKey, CtValue>, which checked both).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            std::ptr::from_ref(&attr),
            size_of::<ElemAttr>(),
        )
    };
    if rc == 0 {
        return Ok(Some(value));
    }
    let io_error = std::io::Error::last_os_error();
    if io_error.raw_os_error() == Some(libc::ENOENT) {
        return Ok(None);
    }
    Err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(start_ns: u64, packets: [u64; 2], bytes: [u64; 2]) -> CtValue {
        CtValue {
            start_ns,
            last_seen_ns: start_ns,
            packets,
            bytes,
            ..CtValue::default()
        }
    }

    #[test]
    fn periodic_records_carry_what_passed_since_the_last_and_sum_to_the_final() {
        let mut s = FlowSweeper::new(RecordOptions {
            enabled: true,
            interval: Duration::from_nanos(100),
        });
        let key = FlowKey::default();
        let mut out = Vec::new();
        s.maybe_periodic(&key, &ct(1000, [1, 0], [60, 0]), 1050, &mut out);
        assert!(out.is_empty(), "not due before the interval");
        s.maybe_periodic(&key, &ct(1000, [2, 1], [120, 60]), 1100, &mut out);
        s.maybe_periodic(&key, &ct(1000, [2, 1], [120, 60]), 1250, &mut out);
        assert_eq!(out.len(), 1, "nothing passed: no record");
        s.maybe_periodic(&key, &ct(1000, [5, 4], [300, 4000]), 1300, &mut out);
        let mut last = ct(1000, [6, 5], [360, 4060]);
        last.last_seen_ns = 1320;
        out.push(s.final_record(&key, &last, FlowEnd::TcpFin));
        let starts: Vec<_> = out.iter().map(|r| (r.start_ns, r.end_ns)).collect();
        assert_eq!(starts, [(1000, 1100), (1100, 1300), (1300, 1320)]);
        let sum = out.iter().fold(([0; 2], [0; 2]), |(p, b), r| {
            (
                [p[0] + r.packets[0], p[1] + r.packets[1]],
                [b[0] + r.bytes[0], b[1] + r.bytes[1]],
            )
        });
        assert_eq!(sum, ([6, 5], [360, 4060]));
        assert_eq!(out[2].end, FlowEnd::TcpFin);
        assert!(s.reported.is_empty(), "the ended flow is forgotten");
    }

    #[test]
    fn a_new_flow_under_a_reported_key_starts_from_zero() {
        let mut s = FlowSweeper::new(RecordOptions {
            enabled: true,
            interval: Duration::from_nanos(10),
        });
        let key = FlowKey::default();
        let mut out = Vec::new();
        s.maybe_periodic(&key, &ct(0, [9, 9], [900, 900]), 20, &mut out);
        let record = s.final_record(&key, &ct(50, [1, 0], [70, 0]), FlowEnd::Idle);
        assert_eq!((record.packets, record.bytes), ([1, 0], [70, 0]));
        assert_eq!(record.start_ns, 50);
    }

    #[test]
    fn records_count_what_other_cpus_added_to_the_shared_counters() {
        let mut s = FlowSweeper::new(RecordOptions {
            enabled: true,
            interval: Duration::from_nanos(100),
        });
        let key = FlowKey::default();
        let mut out = Vec::new();
        let mut open = ct(0, [3, 1], [300, 60]);
        open.shared_packets = [2, 0];
        open.shared_bytes = [150, 0];
        s.maybe_periodic(&key, &open, 100, &mut out);
        assert_eq!((out[0].packets, out[0].bytes), ([5, 1], [450, 60]));
        let mut last = open;
        last.shared_packets = [2, 4];
        last.shared_bytes = [150, 400];
        let record = s.final_record(&key, &last, FlowEnd::Idle);
        assert_eq!((record.packets, record.bytes), ([0, 4], [0, 400]));
    }
}
