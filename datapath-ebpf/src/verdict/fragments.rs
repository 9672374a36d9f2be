//! IP fragments: a first fragment's verdict is remembered by (family, protocol, id,
//! addresses); later fragments, which carry no ports, follow it, and drop without one.

use datapath_common::*;

use super::{Judged, globals::counters};
use crate::maps::FRAGMENTS;

impl Judged<'_> {
    #[inline(always)]
    fn frag_key(&self) -> FragKey {
        FragKey {
            family: self.pkt.family,
            protocol: self.pkt.protocol,
            _pad: [0; 2],
            id: self.pkt.frag_id,
            src: self.pkt.src,
            dst: self.pkt.dst,
        }
    }

    #[inline(always)]
    pub(super) fn remember_first_fragment(&self, verdict: u8) {
        let v = FragValue {
            src_port: self.pkt.src_port,
            dst_port: self.pkt.dst_port,
            verdict,
            _pad: [0; 3],
        };
        let _ = FRAGMENTS.insert(&self.frag_key(), &v, 0);
    }

    /// Later fragments follow their first fragment's verdict; without one they drop.
    #[inline(always)]
    pub(super) fn later_fragment(&self) -> u8 {
        let Some(first) = FRAGMENTS.get_ptr(&self.frag_key()) else {
            if let Some(c) = counters() {
                c.fragments_untracked += self.segs;
            }
            let key = self.flow_key();
            return self.refuse(&key, Decision::deny(0, REASON_FRAGMENT_UNTRACKED));
        };
        // SAFETY: map values stay valid for the duration of the program (RCU).
        let first = unsafe { *first };
        if first.verdict == VERDICT_ACCEPT {
            return VERDICT_ACCEPT;
        }
        let p = self.pkt;
        let key = oriented_flow_key(
            self.ifindex,
            p.family,
            p.protocol,
            self.direction,
            &p.src,
            first.src_port,
            &p.dst,
            first.dst_port,
        );
        let decision = self.evaluate(self.direction, &key);
        self.refuse(&key, decision)
    }
}
