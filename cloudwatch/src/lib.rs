//! CloudWatch Logs shipper: reads the flow-log files from a checkpoint and sends batches
//! at the API limits.
//!
//! Data flow: [`files`] names the set → [`reader`] yields whole lines in order from a
//! [`checkpoint`] → [`event`] makes each line an event → [`batch`] packs them at the
//! [`limits`] → [`shipper`] keeps several calls in flight through [`sink`], retried by the
//! [`retry`] policy, and commits the checkpoint in file order; [`metrics`] counts it all.
//!
//! The agent calls [`Shipper::new`] with a [`ShipperConfig`], registers
//! [`Shipper::metrics`], and awaits [`Shipper::run`] with a cancellation token.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod event;
pub mod files;
pub mod limits;
pub mod metrics;
pub mod reader;
pub mod retry;
pub mod shipper;
pub mod sink;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::ShipperConfig;
pub use error::ShipperError;
pub use event::MessageFormat;
pub use metrics::Metrics;
pub use shipper::Shipper;
