//! The writes a plan is made of, and the record a pod's interface starts with.

use datapath_common::{PodRecord, PolicyKey, RuleList, STATE_DEFAULT_ALLOW, STATE_DEFAULT_DENY};

use crate::model::PodRef;
use crate::resolve::EnforcingMode;

/// One write to the datapath's maps. `prefix_len` is the peer prefix's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    PutRuleList {
        id: u32,
        list: Box<RuleList>,
    },
    PutEntry {
        key: PolicyKey,
        prefix_len: u32,
        list_id: u32,
    },
    PutPod {
        pod: PodRef,
        record: PodRecord,
    },
    DeleteEntry {
        key: PolicyKey,
        prefix_len: u32,
    },
    DeleteRuleList {
        id: u32,
    },
    DeletePod {
        pod: PodRef,
    },
}

/// The record to write for a pod's interface before anything is resolved for it (it
/// may not have an address yet): default-allow in standard mode, default-deny in
/// strict mode.
pub fn initial_pod_record(mode: EnforcingMode) -> PodRecord {
    let state = match mode {
        EnforcingMode::Standard => STATE_DEFAULT_ALLOW,
        EnforcingMode::Strict => STATE_DEFAULT_DENY,
    };
    PodRecord {
        ingress_state: state,
        egress_state: state,
        ..PodRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_mode_initial_record_denies_both_directions() {
        let r = initial_pod_record(EnforcingMode::Strict);
        assert_eq!(
            (r.ingress_state, r.egress_state),
            (STATE_DEFAULT_DENY, STATE_DEFAULT_DENY)
        );
        let r = initial_pod_record(EnforcingMode::Standard);
        assert_eq!(
            (r.ingress_state, r.egress_state),
            (STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW)
        );
    }
}
