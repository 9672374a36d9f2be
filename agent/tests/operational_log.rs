//! The operational log of the built `netpol-agent`, with stderr piped as in a DaemonSet:
//! no ANSI colour codes, JSON lines by default and with `--log-format json`, text with
//! `--log-format text`, a daily file with `--operational-log-file`, and a listen address
//! that is not this host's refused first with "address not available". Each run fails
//! before anything is loaded (no root, no bpffs needed).

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_netpol-agent");

/// TEST-NET-1: never one of this host's addresses, so `bind()` fails locally with
/// EADDRNOTAVAIL; nothing is ever sent to it.
const FOREIGN_ADDR: &str = "192.0.2.1:8162";

fn foreign_addr_is_not_local() -> bool {
    std::net::TcpListener::bind("192.0.2.1:0").is_err()
}

/// `netpol-agent run` with `args`, stdin closed, stdout and stderr piped, a clean
/// log environment.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("run")
        .args(args)
        .env_remove("NETPOL_LOG")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("NETPOL_CONFIG")
        .env_remove("NETPOL_ADDON_CONFIG")
        .env_remove("NETPOL_LOG_FORMAT")
        .env_remove("NETPOL_OPERATIONAL_LOG_FILE")
        .env_remove("RUST_BACKTRACE")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

#[test]
fn piped_stderr_gets_json_lines_without_colour_by_default() {
    if !foreign_addr_is_not_local() {
        return;
    }
    let out = run(&["--metrics-bind-addr", FOREIGN_ADDR]);
    assert!(!out.status.success());
    let stderr = stderr_of(&out);
    assert!(!stderr.contains("\x1b["), "ANSI codes in {stderr:?}");
    let lines = json_lines(&stderr);
    assert!(lines.len() >= 2, "{stderr}");
    assert_eq!(lines[0]["message"], "netpol-agent starting", "{stderr}");
    assert_eq!(lines[0]["level"], "INFO");
}

#[test]
fn json_format_makes_every_line_json_the_failure_included() {
    if !foreign_addr_is_not_local() {
        return;
    }
    let out = run(&["--log-format", "json", "--metrics-bind-addr", FOREIGN_ADDR]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    assert!(!stderr.contains("\x1b["), "ANSI codes in {stderr:?}");
    let lines = json_lines(&stderr);
    let error = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("an ERROR line in {stderr}"));
    let message = error["message"].as_str().expect("message");
    assert!(
        message.starts_with("address not available: metrics_bind_addr 192.0.2.1:8162"),
        "{message}"
    );
}

#[test]
fn text_format_on_a_pipe_has_no_colour() {
    if !foreign_addr_is_not_local() {
        return;
    }
    let out = run(&["--log-format=text", "--metrics-bind-addr", FOREIGN_ADDR]);
    assert!(!out.status.success());
    let stderr = stderr_of(&out);
    assert!(!stderr.contains("\x1b["), "ANSI codes in {stderr:?}");
    assert!(stderr.contains(" INFO "), "{stderr}");
    assert!(
        stderr.contains(
            "ERROR netpol_agent: address not available: metrics_bind_addr 192.0.2.1:8162"
        ),
        "{stderr}"
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(stderr.lines().next().unwrap_or("")).is_err()
    );
}

#[test]
fn an_address_of_another_host_is_refused_naming_it() {
    if !foreign_addr_is_not_local() {
        return;
    }
    let out = run(&[
        "--log-format=text",
        "--health-probe-bind-addr",
        "192.0.2.1:8163",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("address not available: health_probe_bind_addr 192.0.2.1:8163"),
        "{stderr}"
    );
}

#[test]
fn the_operational_log_file_gets_the_lines_and_stderr_the_failure() {
    if !foreign_addr_is_not_local() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("logs").join("agent.log");
    let out = run(&[
        "--operational-log-file",
        &path.display().to_string(),
        "--metrics-bind-addr",
        FOREIGN_ADDR,
    ]);
    assert_eq!(out.status.code(), Some(1));
    // The failure reaches stderr too (what `kubectl logs` shows), once, plainly.
    let stderr = stderr_of(&out);
    assert!(
        stderr.starts_with("Error: address not available"),
        "{stderr}"
    );
    // The file is `agent.log.YYYY-MM-DD`, JSON by default, never coloured.
    let files = dated_files(&path);
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).expect("read");
    assert!(!text.contains("\x1b["), "ANSI codes in {text:?}");
    let lines = json_lines(&text);
    assert_eq!(lines[0]["message"], "netpol-agent starting");
    assert!(
        lines.iter().any(|l| l["level"] == "ERROR"),
        "the failure is logged too: {text}"
    );
}

fn dated_files(path: &Path) -> Vec<std::path::PathBuf> {
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    std::fs::read_dir(path.parent().expect("dir"))
        .expect("log directory created")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}.20")))
        })
        .collect()
}

#[test]
fn an_unwritable_operational_log_directory_fails_at_start_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory under a regular file cannot be made, even by root.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").expect("write");
    let path = blocker.join("logs").join("agent.log");
    let out = run(&["--operational-log-file", &path.display().to_string()]);
    assert!(!out.status.success());
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!("operational log file {}", path.display())),
        "{stderr}"
    );
}

#[test]
fn the_operational_log_file_cannot_be_the_flow_log_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows.log");
    let same = dir.path().join(".").join("flows.log");
    let out = run(&[
        "--log-file",
        &flows.display().to_string(),
        "--operational-log-file",
        &same.display().to_string(),
    ]);
    assert!(!out.status.success());
    let stderr = stderr_of(&out);
    assert!(stderr.contains("operational_log_file"), "{stderr}");
    assert!(stderr.contains("must be different files"), "{stderr}");
    assert!(
        !dir.path().read_dir().expect("dir").any(|_| true),
        "nothing written"
    );
}

#[test]
fn a_negative_size_flag_names_the_range() {
    for args in [
        &["--log-file-max-size", "-1"][..],
        &["--log-file-max-size=-1"][..],
    ] {
        let out = run(args);
        assert!(!out.status.success());
        let stderr = stderr_of(&out);
        assert!(stderr.contains("1 to 1048576"), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("unexpected argument"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn config_validate_bounds_its_answer_for_a_huge_file() {
    const KEYS: usize = 50_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.yaml");
    let text: String = (0..KEYS).map(|i| format!("log_levl{i}: info\n")).collect();
    std::fs::write(&path, text).expect("write");
    let out = Command::new(BIN)
        .args(["config", "validate"])
        .arg(&path)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let errors = stdout.lines().filter(|l| l.contains(": error: ")).count();
    assert_eq!(errors, config::MAX_REPORTED, "{stdout}");
    assert!(
        stdout.lines().count() <= config::MAX_REPORTED + 1,
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "and {} more error(s)",
            KEYS - config::MAX_REPORTED
        )),
        "{stdout}"
    );
    let stderr = stderr_of(&out);
    assert!(stderr.contains(&format!("{KEYS} error(s)")), "{stderr}");
}
