//! Readers for Fluent Bit configuration files, as shipped in `fluent-bit/`: the classic
//! `[SECTION]` format ([`classic`]) and the YAML format ([`yaml`]) both become one
//! [`Config`] of [`Section`]s, so tests can hold either file against the agent's defaults
//! and compare the two formats with each other. [`vars`] expands `${VAR}` references the
//! way Fluent Bit does; [`time_format`] turns a parser's `Time_Format` into a strftime
//! pattern a Rust time library can parse with.
//!
//! The files themselves, and the Kubernetes manifests in `deploy/`, are checked by this
//! crate's integration tests.

pub mod classic;
pub mod error;
pub mod model;
pub mod time_format;
pub mod vars;
pub mod yaml;

pub use error::FluentBitError;
pub use model::{Config, Property, Section, SectionKind};

/// The directory holding the shipped Fluent Bit files (this crate's root).
#[must_use]
pub fn fluent_bit_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the agent's Kubernetes deployment files (`deploy/`).
#[must_use]
pub fn deploy_dir() -> std::path::PathBuf {
    fluent_bit_dir().join("..").join("deploy")
}
