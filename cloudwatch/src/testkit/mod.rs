//! Test helpers shared by this crate's tests and the integration bench (feature
//! `testkit`): a fault-injecting CloudWatch Logs proxy that checks every batch against the
//! API limits, a moto server launcher, and readers of what the endpoint stored.

mod moto;
mod proxy;

pub use moto::{Moto, read_stream, sdk_client, test_credentials};
pub use proxy::{Fault, Proxy, ProxyOptions, PutRecord};

/// What a test helper can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// `NETPOL_MOTO_SERVER` is not set: run `eval "$(scripts/setup.sh)"` first.
    #[error("NETPOL_MOTO_SERVER is not set: run `eval \"$(scripts/setup.sh)\"` first")]
    MotoNotConfigured,
    /// A socket or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// moto did not accept connections in time.
    #[error("moto_server did not listen on {addr} within {secs} s")]
    MotoNotReady {
        /// Where it should listen.
        addr: std::net::SocketAddr,
        /// How long we waited.
        secs: u64,
    },
    /// Reading the stream back failed.
    #[error("GetLogEvents failed: {detail}")]
    ReadBack {
        /// The SDK's error text.
        detail: String,
    },
}
