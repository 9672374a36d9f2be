//! Running iproute2 and friends, with errors that show the command and its stderr.

use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NetlabError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("`{command}` could not start: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("namespace {name}: {source}")]
    Namespace {
        name: String,
        source: std::io::Error,
    },
    #[error("interface {name} not found in namespace {namespace}")]
    Interface { name: String, namespace: String },
}

/// Runs `program args…`, returning stdout.
///
/// # Errors
/// The program could not start or exited non-zero (stderr is in the error).
pub fn run(program: &str, args: &[&str]) -> Result<String, NetlabError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NetlabError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetlabError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n NS args…` (or plain `ip` without a namespace).
///
/// # Errors
/// As [`run`].
pub fn ip(namespace: Option<&str>, args: &[&str]) -> Result<String, NetlabError> {
    let mut full: Vec<&str> = Vec::with_capacity(args.len() + 2);
    if let Some(ns) = namespace {
        full.extend(["-n", ns]);
    }
    full.extend_from_slice(args);
    run("ip", &full)
}
