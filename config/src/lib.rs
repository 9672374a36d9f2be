//! Typed configuration: defaults, file, environment, flags and the EKS add-on JSON.
//!
//! The agent flattens [`RunArgs`] into its `run` subcommand and calls [`load`]; its
//! `config validate FILE` calls [`validate_file`] (or [`check_file`] to also learn what the
//! file was recognised as) and prints each [`Diagnostic`] as `file.json:3:25: error: ...`.
//!
//! Precedence, lowest first: defaults (the incumbent's, see [`defaults`]) < EKS add-on
//! JSON < config file < environment < flags.

mod addon;
mod args;
mod error;
mod file;
mod json;
mod load;
mod model;
mod node;
mod settings;
mod validate;
mod values;
mod yaml;

pub use args::RunArgs;
pub use error::{ConfigError, Diagnostic, Origin, Pos, Problem, Severity};
pub use file::{
    FileKind, FileReport, Format, MAX_REPORTED, Origins, check_file, check_text, validate_file,
};
pub use load::{ADDON_CONFIG_ENV, CONFIG_ENV, Loaded, load, load_with_origins, process_env};
pub use model::{AgentConfig, PolicySource, defaults};
pub use settings::{SETTINGS, SettingInfo, setting};
pub use validate::{RETENTION_DAYS, check_log_group, check_log_stream, check_retention_days};
pub use values::{
    AttachMode, BindAddr, EnforcingMode, FlowLogScope, LineFormat, LogFormat, LogLevel,
    PolicyObjects, format_duration, parse_bool, parse_duration,
};
