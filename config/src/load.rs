//! `load`: builds the `AgentConfig` from defaults < EKS add-on JSON < config file <
//! environment < flags, then validates the result, naming where each bad value came from.
//! The environment is a function so tests never touch the process environment.

use std::path::{Path, PathBuf};

use crate::args::RunArgs;
use crate::error::{ConfigError, Origin, Problem, Severity};
use crate::file::{MAX_REPORTED, Origins, apply_text};
use crate::model::AgentConfig;
use crate::settings::{SETTINGS, set_from_text};
use crate::validate::problems;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "NETPOL_CONFIG";
/// Environment variable naming the add-on JSON when `--addon-config` is not given.
pub const ADDON_CONFIG_ENV: &str = "NETPOL_ADDON_CONFIG";

/// The process environment, for [`load`] in the binary.
#[must_use]
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A loaded configuration and where each non-default value came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The configuration.
    pub config: AgentConfig,
    /// Origin of every setting not left at its default.
    pub origins: Origins,
}

/// Loads the configuration: defaults, then the add-on JSON (`--addon-config` or
/// `NETPOL_ADDON_CONFIG`), then the config file (`--config` or `NETPOL_CONFIG`), then each
/// setting's environment variable, then the flags.
///
/// # Errors
/// [`ConfigError::Read`] for an unreadable file, [`ConfigError::File`] with every error of
/// a bad file, [`ConfigError::Invalid`] with every bad environment variable, flag or value.
///
/// # Examples
/// ```
/// let args = config::RunArgs { log_level: Some("info".into()), ..Default::default() };
/// let env = |name: &str| (name == "CLUSTER_NAME").then(|| "prod".to_string());
/// let cfg = config::load(&args, &env).expect("valid");
/// assert_eq!(cfg.log_level, config::LogLevel::Info);
/// assert_eq!(cfg.cluster_name.as_deref(), Some("prod"));
/// ```
pub fn load(
    args: &RunArgs,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<AgentConfig, ConfigError> {
    load_with_origins(args, env).map(|loaded| loaded.config)
}

/// [`load`], also returning where each value came from (for `config show`).
///
/// # Errors
/// As [`load`].
pub fn load_with_origins(
    args: &RunArgs,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let mut config = AgentConfig::default();
    let mut origins = Origins::new();

    let addon = args.addon_config.clone().or_else(|| {
        env(ADDON_CONFIG_ENV)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    });
    let file = args
        .config
        .clone()
        .or_else(|| env(CONFIG_ENV).filter(|p| !p.is_empty()).map(PathBuf::from));
    for path in [addon, file].into_iter().flatten() {
        apply_file(&path, &mut config, &mut origins)?;
    }

    let mut bad = Vec::new();
    for info in SETTINGS {
        if let Some(text) = env(info.env) {
            let origin = Origin::Env {
                var: info.env.to_string(),
            };
            apply_text_value(&mut config, &mut origins, info.key, &text, origin, &mut bad);
        }
    }
    for (key, text) in args.given() {
        let origin = Origin::Flag {
            flag: format!("--{}", key.replace('_', "-")),
        };
        apply_text_value(&mut config, &mut origins, key, text, origin, &mut bad);
    }
    if !bad.is_empty() {
        return Err(ConfigError::Invalid { problems: bad });
    }

    let invalid: Vec<Problem> = problems(&config)
        .into_iter()
        .map(|(key, message)| Problem {
            origin: origins.get(key).cloned().unwrap_or(Origin::Default),
            key: key.to_string(),
            message,
        })
        .collect();
    if !invalid.is_empty() {
        return Err(ConfigError::Invalid { problems: invalid });
    }
    Ok(Loaded { config, origins })
}

fn apply_file(
    path: &Path,
    config: &mut AgentConfig,
    origins: &mut Origins,
) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let applied = apply_text(path, &text, config, origins);
    let mut errors: Vec<_> = applied
        .diagnostics
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    if errors.is_empty() && applied.omitted == 0 {
        Ok(())
    } else {
        errors.sort_by_key(|d| d.pos);
        let omitted = applied.omitted + errors.len().saturating_sub(MAX_REPORTED);
        errors.truncate(MAX_REPORTED);
        Err(ConfigError::File {
            path: path.to_path_buf(),
            diagnostics: errors,
            omitted,
        })
    }
}

fn apply_text_value(
    config: &mut AgentConfig,
    origins: &mut Origins,
    key: &str,
    text: &str,
    origin: Origin,
    bad: &mut Vec<Problem>,
) {
    let Some(info) = crate::settings::setting(key) else {
        return;
    };
    match set_from_text(config, info.key, text) {
        Some(Ok(())) => {
            origins.insert(info.key, origin);
        }
        Some(Err(message)) => bad.push(Problem {
            origin,
            key: info.key.to_string(),
            message,
        }),
        None => {}
    }
}
