//! netpol-agent as a library: the daemon (`daemon::run`) wiring the `enforcer` crate,
//! the flow-log thread, the policy directory source,
//! the local lab and the Stars demo, and the inspection commands. `main.rs` only parses
//! the command line, sets up the operational log (`logging`) and calls into here.

pub mod daemon;
pub mod demo;
pub mod explain;
pub mod flow_records;
pub mod flowlog;
pub mod guard;
pub mod inspect;
pub mod lab;
pub mod lint;
pub mod logging;
pub mod source;
