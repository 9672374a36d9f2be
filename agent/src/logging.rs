//! The operational log (never the flow log): stderr or a daily-rotated file, text or
//! JSON, colour only on a terminal, our crates at the configured level and third-party
//! crates (aya, kube, hyper, ...) at info unless `NETPOL_LOG` or `RUST_LOG` says otherwise.
//!
//! [`plan`] makes every decision from plain inputs, so tests check them without a
//! terminal; [`init`] carries a plan out.

use std::path::{Path, PathBuf};

use config::{LogFormat, LogLevel};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};

/// The targets of this workspace's crates: `--log-level` applies to these; every other
/// crate logs at info (or at `--log-level` when that is quieter).
pub const OUR_TARGETS: &[&str] = &[
    "netpol_agent",
    "agent",
    "datapath",
    "datapath_common",
    "policy",
    "exporter",
    "cloudwatch",
    "config",
    "k8s_source",
    "netlab",
];

/// Variables that, when set and not empty, replace the whole filter (EnvFilter syntax,
/// e.g. `debug` or `info,aya=debug`); the first one set wins.
pub const FILTER_VARS: &[&str] = &["NETPOL_LOG", "RUST_LOG"];

/// Where the operational log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard error.
    Stderr,
    /// A file rotated daily: lines go to `PATH.YYYY-MM-DD` (UTC dates).
    File(PathBuf),
}

/// Every decision about the operational log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// EnvFilter directives.
    pub filter: String,
    /// The variable the filter came from, if not from the level.
    pub filter_var: Option<&'static str>,
    /// Text or JSON.
    pub format: LogFormat,
    /// Whether text carries ANSI colours.
    pub ansi: bool,
    /// Where lines go.
    pub output: Output,
}

/// Why the operational log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `NETPOL_LOG` or `RUST_LOG` is not a valid filter.
    #[error(
        "{var}={filter:?} is not a valid log filter (e.g. `debug` or `info,aya=debug`): {source}"
    )]
    Filter {
        var: &'static str,
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    /// The operational log file cannot be created or written.
    #[error("operational log file {}: cannot write it in {}: {source}", path.display(), dir.display())]
    File {
        path: PathBuf,
        dir: PathBuf,
        source: tracing_appender::rolling::InitError,
    },
    /// Another subscriber was installed first.
    #[error("the operational log is already set up: {0}")]
    Installed(String),
}

/// The filter for `level`: our crates at `level`, the others at info, or at `level` when
/// it is quieter than info.
#[must_use]
pub fn filter_directives(level: LogLevel) -> String {
    let verbose = matches!(level, LogLevel::Trace | LogLevel::Debug);
    if !verbose {
        return level.as_str().to_string();
    }
    let mut directives = LogLevel::Info.as_str().to_string();
    for target in OUR_TARGETS {
        directives.push_str(&format!(",{target}={level}"));
    }
    directives
}

/// The format when none is configured: JSON unless the output is a terminal (a
/// DaemonSet's `kubectl logs`, a file, a pipe), text on a terminal.
#[must_use]
pub fn default_format(output_is_terminal: bool) -> LogFormat {
    if output_is_terminal {
        LogFormat::Text
    } else {
        LogFormat::Json
    }
}

/// Colours only for text on a terminal, and not when `NO_COLOR` is set (no-color.org).
#[must_use]
pub fn use_colour(format: LogFormat, output_is_terminal: bool, no_color: bool) -> bool {
    format == LogFormat::Text && output_is_terminal && !no_color
}

/// Decides everything: `env` reads variables (`NETPOL_LOG`, `RUST_LOG`, `NO_COLOR`),
/// `stderr_is_terminal` says whether standard error is one. A file is never a terminal.
#[must_use]
pub fn plan(
    level: LogLevel,
    format: Option<LogFormat>,
    file: Option<&Path>,
    stderr_is_terminal: bool,
    env: &impl Fn(&str) -> Option<String>,
) -> Plan {
    let (output, is_terminal) = match file {
        Some(path) => (Output::File(path.to_path_buf()), false),
        None => (Output::Stderr, stderr_is_terminal),
    };
    let from_var = FILTER_VARS
        .iter()
        .find_map(|var| env(var).filter(|v| !v.trim().is_empty()).map(|v| (*var, v)));
    let (filter, filter_var) = match from_var {
        Some((var, filter)) => (filter, Some(var)),
        None => (filter_directives(level), None),
    };
    let format = format.unwrap_or_else(|| default_format(is_terminal));
    let no_color = env("NO_COLOR").is_some_and(|v| !v.is_empty());
    Plan {
        filter,
        filter_var,
        format,
        ansi: use_colour(format, is_terminal, no_color),
        output,
    }
}

/// [`plan`] for this process: its environment and its standard error.
#[must_use]
pub fn plan_for_process(level: LogLevel, format: Option<LogFormat>, file: Option<&Path>) -> Plan {
    use std::io::IsTerminal;
    let env = |name: &str| std::env::var(name).ok();
    plan(level, format, file, std::io::stderr().is_terminal(), &env)
}

/// Keeps the file writer's thread running: hold it for the life of the process and drop
/// it before exiting, which writes what is still buffered.
#[must_use = "dropping the guard stops the operational log file's writer"]
pub struct LogGuard {
    _worker: Option<WorkerGuard>,
}

/// Installs the global subscriber `plan` describes. A file is opened (its directory
/// created) here, so an unwritable place fails at start-up, naming the path.
///
/// # Errors
/// A bad filter variable, an unwritable file, or a subscriber already installed.
pub fn init(plan: &Plan) -> Result<LogGuard, LoggingError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&plan.filter).map_err(|source| {
        LoggingError::Filter {
            var: plan.filter_var.unwrap_or("--log-level"),
            filter: plan.filter.clone(),
            source,
        }
    })?;
    let (writer, worker) = match &plan.output {
        Output::Stderr => (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
            None,
        ),
        Output::File(path) => {
            let appender = open_daily(path)?;
            // Lossless: past its buffer (128k lines) a write waits rather than drops.
            let (writer, guard) = NonBlockingBuilder::default()
                .lossy(false)
                .thread_name("netpol-agent-log")
                .finish(appender);
            (
                tracing_subscriber::fmt::writer::BoxMakeWriter::new(writer),
                Some(guard),
            )
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(plan.ansi);
    let installed = match plan.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| LoggingError::Installed(e.to_string()))?;
    Ok(LogGuard { _worker: worker })
}

/// A daily appender writing `path.YYYY-MM-DD` in `path`'s directory (created if needed).
fn open_daily(path: &Path) -> Result<RollingFileAppender, LoggingError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(name)
        .build(&dir)
        .map_err(|source| LoggingError::File {
            path: path.to_path_buf(),
            dir,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn debug_applies_to_our_crates_and_third_parties_stay_at_info() {
        let filter = filter_directives(LogLevel::Debug);
        assert!(filter.starts_with("info,"), "{filter}");
        for target in ["agent", "datapath", "policy", "exporter", "cloudwatch"] {
            assert!(filter.contains(&format!(",{target}=debug")), "{filter}");
        }
        for target in ["config", "k8s_source", "netlab", "netpol_agent"] {
            assert!(filter.contains(&format!(",{target}=debug")), "{filter}");
        }
        for other in ["aya", "kube", "hyper", "rustls", "tower", "h2", "aws_"] {
            assert!(!filter.contains(other), "{other} in {filter}");
        }
        assert!(filter_directives(LogLevel::Trace).contains(",datapath=trace"));
        // The filter parses, and aya's debug lines are off while ours are on.
        let parsed = tracing_subscriber::EnvFilter::try_new(&filter).expect("valid");
        let text = parsed.to_string();
        assert!(text.contains("datapath=debug"), "{text}");
    }

    #[test]
    fn quieter_levels_apply_to_every_crate() {
        assert_eq!(filter_directives(LogLevel::Info), "info");
        assert_eq!(filter_directives(LogLevel::Warn), "warn");
        assert_eq!(filter_directives(LogLevel::Error), "error");
    }

    #[test]
    fn a_filter_variable_replaces_the_level() {
        let env = |name: &str| (name == "RUST_LOG").then(|| "debug,aya=trace".to_string());
        let plan = plan(LogLevel::Info, None, None, false, &env);
        assert_eq!(plan.filter, "debug,aya=trace");
        assert_eq!(plan.filter_var, Some("RUST_LOG"));
        let both = |name: &str| match name {
            "NETPOL_LOG" => Some("warn".to_string()),
            "RUST_LOG" => Some("trace".to_string()),
            _ => None,
        };
        let plan = super::plan(LogLevel::Info, None, None, false, &both);
        assert_eq!(
            (plan.filter.as_str(), plan.filter_var),
            ("warn", Some("NETPOL_LOG"))
        );
        let empty = |name: &str| (name == "RUST_LOG").then(String::new);
        let plan = super::plan(LogLevel::Debug, None, None, false, &empty);
        assert_eq!(plan.filter, filter_directives(LogLevel::Debug));
        assert_eq!(plan.filter_var, None);
    }

    #[test]
    fn json_by_default_unless_on_a_terminal() {
        assert_eq!(default_format(false), LogFormat::Json);
        assert_eq!(default_format(true), LogFormat::Text);
        let piped = plan(LogLevel::Debug, None, None, false, &no_env);
        assert_eq!((piped.format, piped.ansi), (LogFormat::Json, false));
        let tty = plan(LogLevel::Debug, None, None, true, &no_env);
        assert_eq!((tty.format, tty.ansi), (LogFormat::Text, true));
        let forced = plan(LogLevel::Debug, Some(LogFormat::Text), None, false, &no_env);
        assert_eq!((forced.format, forced.ansi), (LogFormat::Text, false));
        let json_tty = plan(LogLevel::Debug, Some(LogFormat::Json), None, true, &no_env);
        assert_eq!((json_tty.format, json_tty.ansi), (LogFormat::Json, false));
    }

    #[test]
    fn colour_only_for_text_on_a_terminal_without_no_color() {
        assert!(use_colour(LogFormat::Text, true, false));
        assert!(!use_colour(LogFormat::Text, false, false));
        assert!(!use_colour(LogFormat::Text, true, true));
        assert!(!use_colour(LogFormat::Json, true, false));
        let no_color = |name: &str| (name == "NO_COLOR").then(|| "1".to_string());
        let plan = plan(LogLevel::Info, None, None, true, &no_color);
        assert_eq!((plan.format, plan.ansi), (LogFormat::Text, false));
    }

    #[test]
    fn a_file_is_never_coloured_and_json_by_default() {
        let file = Path::new("/var/log/netpol-agent/agent.log");
        let plan_ = plan(LogLevel::Info, None, Some(file), true, &no_env);
        assert_eq!(plan_.output, Output::File(file.to_path_buf()));
        assert_eq!((plan_.format, plan_.ansi), (LogFormat::Json, false));
        let text = plan(
            LogLevel::Info,
            Some(LogFormat::Text),
            Some(file),
            true,
            &no_env,
        );
        assert_eq!((text.format, text.ansi), (LogFormat::Text, false));
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory under a regular file cannot be made, even by root.
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, "").expect("write");
        let path = blocker.join("logs").join("agent.log");
        let err = open_daily(&path).expect_err("cannot create").to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("cannot write"), "{err}");
    }

    #[test]
    fn a_writable_directory_gets_a_dated_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("agent.log");
        let mut appender = open_daily(&path).expect("opens");
        std::io::Write::write_all(&mut appender, b"line\n").expect("writes");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("sub"))
            .expect("created")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("agent.log.20"), "{names:?}");
    }
}
