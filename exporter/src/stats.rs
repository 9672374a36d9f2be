//! Counters shared between the pipeline thread, the compression thread and the
//! metrics endpoint, plus the kernel's counters as last passed in by the datapath.
//! The pipeline keeps plain per-event counters and publishes them here at each
//! flush, so the hot path touches no atomics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use datapath_common::abi::{Counters, DIRECTION_EGRESS, DIRECTION_INGRESS, VERDICT_DENY};

/// Counts owned by the pipeline thread; a snapshot readable as a plain struct.
///
/// After [`crate::pipeline::Pipeline::flush`], the accounting identity holds:
/// `events_received + records_received == lines_written + lines_lost_no_space +
/// lines_lost_write_error + events_filtered_scope + records_skipped_format`;
/// every event read from the ring is received (no queue stands between them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineCounters {
    /// Events handed to `on_event`.
    pub events_received: u64,
    pub events_accept: u64,
    pub events_deny: u64,
    /// Events not written because of the flow scope.
    pub events_filtered_scope: u64,
    /// Whole lines in the file.
    pub lines_written: u64,
    pub bytes_written: u64,
    /// Lines not written because the disk was full (space reservation failed).
    pub lines_lost_no_space: u64,
    /// Lines not written because of another write error.
    pub lines_lost_write_error: u64,
    /// Sum of `Count` over DENY lines written.
    pub denied_packets_written: u64,
    /// AUDIT events received (packets that passed but audit-mode policies would drop).
    pub events_audit: u64,
    /// Sum of `Count` over DENY events lost in userspace (disk full or write error).
    pub denied_packets_lost: u64,
    /// Sum of `Count` over DENY events filtered by scope (never, under `deny` or `all`).
    pub denied_packets_filtered: u64,
    /// Lines formatted and waiting for the next write group.
    pub lines_pending: u64,
    pub rotations: u64,
    pub rotation_errors: u64,
    /// Flow records handed to `on_record`.
    pub records_received: u64,
    /// Flow records not written because the line format has no record lines
    /// (`compat`).
    pub records_skipped_format: u64,
}

/// Conntrack and flow-record accounting, as the agent's conntrack sweep last
/// published it.
///
/// Every flow the datapath tracked is in exactly one place: alive in conntrack
/// (`conntrack_entries`), ended by the sweep (`conntrack_ended`, each with its final
/// record when records are on), deleted by the datapath itself (a flow its pod's new
/// rules deny), or evicted by the kernel's LRU when the table was full
/// (`conntrack_evicted`: counted, never reported as a record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConntrackCounters {
    /// Entries alive at the last sweep.
    pub conntrack_entries: u64,
    /// Entries the datapath created.
    pub conntrack_inserts: u64,
    /// Entries the datapath deleted itself.
    pub conntrack_removed_kernel: u64,
    /// Entries the sweep deleted (flows that ended).
    pub conntrack_ended: u64,
    /// Entries the LRU evicted (inserts minus removals minus live, since the agent
    /// started).
    pub conntrack_evicted: u64,
    /// Packets no conntrack entry counted (two CPUs opened one flow at once).
    pub conntrack_insert_race_packets: u64,
    /// Flow records made by the sweep.
    pub records_made: u64,
    /// Flow records dropped because the pipeline's record queue was full.
    pub records_lost_queue: u64,
}

/// The kernel's counters, summed over CPUs, as the datapath last read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Denied packets by direction: `[ingress, egress]`.
    pub drop_packets: [u64; 2],
    /// Denied bytes by direction: `[ingress, egress]`.
    pub drop_bytes: [u64; 2],
    pub events_submitted: u64,
    /// Events the ring buffer could not take.
    pub events_lost_ring: u64,
    /// Denied packets carried by those lost events.
    pub denied_packets_lost_ring: u64,
    /// Events the kernel did not send because of the event scope.
    pub events_filtered_scope: u64,
    /// Packets passed as AUDIT by direction: `[ingress, egress]`.
    pub audit_packets: [u64; 2],
    /// Audited packets carried by events the ring could not take.
    pub audited_packets_lost_ring: u64,
}

impl From<&Counters> for KernelCounters {
    fn from(c: &Counters) -> Self {
        let deny = usize::from(VERDICT_DENY);
        let (ing, eg) = (
            usize::from(DIRECTION_INGRESS),
            usize::from(DIRECTION_EGRESS),
        );
        Self {
            drop_packets: [c.packets[ing][deny], c.packets[eg][deny]],
            drop_bytes: [c.bytes[ing][deny], c.bytes[eg][deny]],
            events_submitted: c.events_submitted,
            events_lost_ring: c.events_lost,
            denied_packets_lost_ring: c.denied_packets_lost,
            events_filtered_scope: c.events_filtered_scope,
            audit_packets: [c.audited_packets[ing], c.audited_packets[eg]],
            audited_packets_lost_ring: c.audited_packets_lost,
        }
    }
}

macro_rules! atomic_mirror {
    ($name:ident of $plain:ident { $($field:ident $(: [$n:literal])?),* $(,)? }) => {
        /// Atomic mirror of the plain struct of the same fields.
        #[derive(Debug, Default)]
        pub struct $name {
            $(pub $field: atomic_mirror!(@ty $($n)?),)*
        }
        impl $name {
            pub fn load(&self) -> $plain {
                $plain { $($field: atomic_mirror!(@load self.$field $(, $n)?),)* }
            }
            pub fn store(&self, v: &$plain) {
                $(atomic_mirror!(@store self.$field, v.$field $(, $n)?);)*
            }
        }
    };
    (@ty) => { AtomicU64 };
    (@ty $n:literal) => { [AtomicU64; $n] };
    (@load $a:expr) => { $a.load(Relaxed) };
    (@load $a:expr, $n:literal) => { std::array::from_fn(|i| $a[i].load(Relaxed)) };
    (@store $a:expr, $v:expr) => { $a.store($v, Relaxed) };
    (@store $a:expr, $v:expr, $n:literal) => { for i in 0..$n { $a[i].store($v[i], Relaxed) } };
}

atomic_mirror!(AtomicPipelineCounters of PipelineCounters {
    events_received, events_accept, events_deny, events_filtered_scope, lines_written,
    bytes_written, lines_lost_no_space, lines_lost_write_error, denied_packets_written,
    denied_packets_lost, denied_packets_filtered, lines_pending, rotations, rotation_errors,
    events_audit, records_received, records_skipped_format,
});

atomic_mirror!(AtomicConntrackCounters of ConntrackCounters {
    conntrack_entries, conntrack_inserts, conntrack_removed_kernel, conntrack_ended,
    conntrack_evicted, conntrack_insert_race_packets, records_made, records_lost_queue,
});

atomic_mirror!(AtomicKernelCounters of KernelCounters {
    drop_packets: [2], drop_bytes: [2], events_submitted, events_lost_ring,
    denied_packets_lost_ring, events_filtered_scope, audit_packets: [2], audited_packets_lost_ring,
});

/// Counters of the background compression and pruning thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HousekeepingCounters {
    pub files_compressed: u64,
    pub compression_errors: u64,
    pub files_pruned: u64,
}

atomic_mirror!(AtomicHousekeepingCounters of HousekeepingCounters {
    files_compressed, compression_errors, files_pruned,
});

/// Everything the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct SharedStats {
    pub pipeline: AtomicPipelineCounters,
    pub kernel: AtomicKernelCounters,
    pub housekeeping: AtomicHousekeepingCounters,
    pub conntrack: AtomicConntrackCounters,
    /// Nanoseconds from the kernel timestamp of the last line written to its write.
    pub lag_ns: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_counters_take_the_deny_column_by_direction() {
        let mut c = Counters::default();
        c.packets[usize::from(DIRECTION_INGRESS)][usize::from(VERDICT_DENY)] = 3;
        c.packets[usize::from(DIRECTION_EGRESS)][usize::from(VERDICT_DENY)] = 4;
        c.packets[usize::from(DIRECTION_EGRESS)][1] = 100;
        c.bytes[usize::from(DIRECTION_EGRESS)][usize::from(VERDICT_DENY)] = 400;
        c.events_lost = 9;
        let k = KernelCounters::from(&c);
        assert_eq!(k.drop_packets, [3, 4]);
        assert_eq!(k.drop_bytes, [0, 400]);
        assert_eq!(k.events_lost_ring, 9);
    }

    #[test]
    fn atomic_mirrors_round_trip() {
        let s = SharedStats::default();
        let k = KernelCounters {
            drop_packets: [1, 2],
            drop_bytes: [3, 4],
            events_submitted: 5,
            events_lost_ring: 6,
            denied_packets_lost_ring: 7,
            events_filtered_scope: 8,
            audit_packets: [9, 10],
            audited_packets_lost_ring: 12,
        };
        s.kernel.store(&k);
        assert_eq!(s.kernel.load(), k);
        let p = PipelineCounters {
            lines_written: 11,
            rotations: 2,
            ..Default::default()
        };
        s.pipeline.store(&p);
        assert_eq!(s.pipeline.load(), p);
    }
}
