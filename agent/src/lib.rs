//! netpol-agent as a library: the daemon (`daemon::run`), the enforcer that turns
//! cluster states into kernel state, the flow-log thread, the policy directory source,
//! the local lab and the Stars demo, and the inspection commands. `main.rs` only parses
//! the command line, sets up the operational log (`logging`) and calls into here.

pub mod binding;
pub mod daemon;
pub mod demo;
pub mod enforcer;
pub mod flowlog;
pub mod guard;
pub mod inspect;
pub mod lab;
pub mod links;
pub mod logging;
pub mod metrics;
pub mod source;
