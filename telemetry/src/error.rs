//! The crate's one error type: binding or serving a listener, naming which one.

use std::io;
use std::net::SocketAddr;

/// Errors of the metrics and health listeners.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The metrics or health listener could not bind its address.
    #[error("binding the {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The metrics or health server stopped with an I/O error.
    #[error("serving {what}: {source}")]
    Serve {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}
