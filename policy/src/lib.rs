//! Kubernetes NetworkPolicy semantics: cluster state in, per-pod datapath rule sets and their attribution out, plus ordered diffs.
