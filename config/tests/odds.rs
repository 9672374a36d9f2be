//! Config files and flags at the edges: empty files, byte order marks, unknown
//! extensions, huge broken files (bounded answers), negative numbers for numeric flags,
//! the operational log file against the flow-log file, and the log format.

use std::path::{Path, PathBuf};

use clap::Parser;
use config::{
    AgentConfig, ConfigError, FileKind, LogFormat, MAX_REPORTED, RunArgs, check_file, load,
};

/// Stands in for the agent's `run` subcommand.
#[derive(Parser, Debug)]
#[command(name = "netpol-agent-run")]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

fn parse(flags: &[&str]) -> RunArgs {
    let argv = std::iter::once("netpol-agent-run").chain(flags.iter().copied());
    Cli::try_parse_from(argv).expect("flags parse").run
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn with_config(path: &Path) -> RunArgs {
    RunArgs {
        config: Some(path.to_path_buf()),
        ..RunArgs::default()
    }
}

fn rendered(report: &config::FileReport) -> String {
    report
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn empty_yaml_and_empty_json_files_are_both_every_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in [
        ("empty.yaml", ""),
        ("empty.json", ""),
        ("blank.yaml", "\n  \n"),
        ("blank.json", " \n\t\n"),
        ("bom-only.json", "\u{feff}"),
    ] {
        let path = write(&dir, name, text);
        let report = check_file(&path).expect("readable");
        assert_eq!(report.kind, FileKind::AgentConfig, "{name}");
        assert!(
            report.diagnostics.is_empty(),
            "{name}: {}",
            rendered(&report)
        );
        let config = load(&with_config(&path), &no_env).expect(name);
        assert_eq!(config, AgentConfig::default(), "{name}");
    }
}

#[test]
fn a_byte_order_mark_is_accepted_in_yaml_json_and_addon_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bom = "\u{feff}";
    let yaml = write(&dir, "a.yaml", &format!("{bom}log_file_max_size: 7\n"));
    let json = write(
        &dir,
        "a.json",
        &format!("{bom}{{\"log_file_max_size\": 7}}"),
    );
    let addon = write(
        &dir,
        "addon.json",
        &format!(
            "{bom}{{\"enableNetworkPolicy\": \"true\", \"nodeAgent\": {{\"metricsBindAddr\": \"9100\"}}}}"
        ),
    );
    let bare = write(
        &dir,
        "addon",
        &format!("{bom}{{\"enableNetworkPolicy\": \"true\"}}"),
    );
    for path in [&yaml, &json] {
        let report = check_file(path).expect("readable");
        assert!(report.diagnostics.is_empty(), "{}", rendered(&report));
        let config = load(&with_config(path), &no_env).expect("loads");
        assert_eq!(config.log_file_max_size, 7, "{}", path.display());
    }
    for path in [&addon, &bare] {
        let report = check_file(path).expect("readable");
        assert_eq!(report.kind, FileKind::AddonConfig, "{}", path.display());
        assert!(report.diagnostics.is_empty(), "{}", rendered(&report));
    }
    let args = RunArgs {
        addon_config: Some(addon),
        ..RunArgs::default()
    };
    let config = load(&args, &no_env).expect("add-on loads");
    assert!(config.enable_network_policy);
    assert_eq!(config.metrics_bind_addr.port, 9100);
}

#[test]
fn a_byte_order_mark_does_not_shift_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "a.yaml", "\u{feff}log_levle: info\n");
    let report = check_file(&path).expect("readable");
    assert_eq!(report.diagnostics.len(), 1, "{}", rendered(&report));
    assert_eq!(report.diagnostics[0].pos, config::Pos::new(1, 1));
}

#[test]
fn an_unknown_extension_is_an_error_naming_the_accepted_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "agent.toml", "log_level = \"info\"\n");
    let report = check_file(&path).expect("readable");
    assert_eq!(report.diagnostics.len(), 1, "{}", rendered(&report));
    let message = report.diagnostics[0].to_string();
    for needle in ["\".toml\"", ".yaml", ".yml", ".json"] {
        assert!(message.contains(needle), "{needle} in {message}");
    }
    let err = load(&with_config(&path), &no_env).expect_err("refused");
    assert!(matches!(err, ConfigError::File { .. }), "{err}");
    assert!(err.to_string().contains(".yaml, .yml or .json"), "{err}");
}

/// Lines of a report or an error that are findings (`file:line:col: error: ...`), and
/// the line counting the rest.
fn finding_lines(text: &str) -> (usize, Vec<&str>) {
    let findings = text.lines().filter(|l| l.contains(": error: ")).count();
    let more = text.lines().filter(|l| l.contains("more error")).collect();
    (findings, more)
}

#[test]
fn fifty_thousand_unknown_keys_give_a_bounded_answer() {
    const KEYS: usize = 50_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = String::new();
    let mut json = String::from("{");
    for i in 0..KEYS {
        // Near a setting, so each one would get a "did you mean" search.
        yaml.push_str(&format!("log_file_max_siz{i}: 1\n"));
        json.push_str(&format!(
            "{}\"log_file_max_siz{i}\": 1",
            if i == 0 { "" } else { "," }
        ));
    }
    json.push('}');
    for (name, text) in [("many.yaml", &yaml), ("many.json", &json)] {
        let path = write(&dir, name, text);
        let report = check_file(&path).expect("readable");
        assert_eq!(report.diagnostics.len(), MAX_REPORTED, "{name}");
        assert_eq!(report.omitted, KEYS - MAX_REPORTED, "{name}");
        // The first ones, in file order, still say what was meant.
        assert_eq!(report.diagnostics[0].pos.line, 1, "{name}");
        assert!(
            report.diagnostics[0]
                .message
                .contains("did you mean \"log_file_max_size\""),
            "{name}: {}",
            report.diagnostics[0]
        );
        let err = load(&with_config(&path), &no_env).expect_err("refused");
        let text = err.to_string();
        let (findings, more) = finding_lines(&text);
        assert_eq!(findings, MAX_REPORTED, "{name}");
        assert_eq!(more.len(), 1, "{name}: {more:?}");
        assert!(
            more[0].contains(&(KEYS - MAX_REPORTED).to_string()),
            "{more:?}"
        );
        assert!(text.lines().count() <= MAX_REPORTED + 2, "{name}");
        assert!(
            text.starts_with(&format!("{} has {KEYS} error(s)", path.display())),
            "{name}: {}",
            text.lines().next().unwrap_or_default()
        );
    }
}

#[test]
fn fifty_thousand_unknown_addon_keys_give_a_bounded_answer() {
    const KEYS: usize = 50_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut json = String::from("{\"enableNetworkPolicy\": \"true\", \"nodeAgent\": {");
    for i in 0..KEYS {
        let sep = if i == 0 { "" } else { "," };
        json.push_str(&format!("{sep}\"enablePolicyEventLog{i}\": \"true\""));
    }
    json.push_str("}}");
    let path = write(&dir, "addon.json", &json);
    let report = check_file(&path).expect("readable");
    assert_eq!(report.kind, FileKind::AddonConfig);
    assert_eq!(report.diagnostics.len(), MAX_REPORTED);
    assert_eq!(report.omitted, KEYS - MAX_REPORTED);
    assert!(
        report.diagnostics[0]
            .message
            .contains("did you mean \"enablePolicyEventLogs\""),
        "{}",
        report.diagnostics[0]
    );
}

#[test]
fn a_huge_key_gets_no_hint_and_a_short_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = "log_file_max_size".repeat(60_000); // about 1 MB
    let path = write(
        &dir,
        "huge.json",
        &format!("{{\"{key}\": 1, \"{key}\": 2}}"),
    );
    let report = check_file(&path).expect("readable");
    assert_eq!(report.diagnostics.len(), 3, "unknown twice and a duplicate");
    for d in &report.diagnostics {
        assert!(d.message.len() < 300, "{} bytes", d.message.len());
        assert!(!d.message.contains("did you mean"), "{d}");
    }
}

fn load_flags(flags: &[&str]) -> Result<AgentConfig, ConfigError> {
    load(&parse(flags), &no_env)
}

#[test]
fn a_negative_size_names_the_real_range_with_or_without_equals() {
    for flags in [
        &["--log-file-max-size", "-1"][..],
        &["--log-file-max-size=-1"][..],
    ] {
        let err = load_flags(flags).expect_err("refused").to_string();
        assert!(err.contains("log_file_max_size"), "{flags:?}: {err}");
        assert!(
            err.contains("-1 MB is outside 1 to 1048576 MB"),
            "{flags:?}: {err}"
        );
        assert!(err.contains("flag --log-file-max-size"), "{flags:?}: {err}");
    }
    // The same words as a value in range of the type but not of the setting.
    let err = load_flags(&["--log-file-max-size", "0"]).expect_err("refused");
    assert!(
        err.to_string().contains("0 MB is outside 1 to 1048576 MB"),
        "{err}"
    );
    // And for the other numeric settings.
    for (flag, needle) in [
        (
            "--conntrack-cache-table-size",
            "between 32768 (32K) and 1048576",
        ),
        ("--policy-hash-entries", "between 1024 and 4194304"),
        ("--ring-buffer-size", "power of two from 4096"),
        ("--log-file-max-backups", "outside 0 to 10000"),
        ("--max-concurrent-reconciles", "at least 1"),
        ("--conntrack-cache-cleanup-period", "outside 1s to 86400s"),
        ("--cloudwatch-retention-days", "allowed days are 1, 3"),
    ] {
        let err = load_flags(&[flag, "-5"]).expect_err(flag).to_string();
        assert!(err.contains(needle), "{flag}: {err}");
    }
    // A flag after a numeric flag is still a flag, not its value.
    let argv = ["netpol-agent-run", "--log-file-max-size", "--enable-ipv6"];
    assert!(Cli::try_parse_from(argv).is_err());
}

#[test]
fn a_negative_size_in_a_file_names_the_real_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "a.yaml", "log_file_max_size: -1\n");
    let report = check_file(&path).expect("readable");
    assert_eq!(report.diagnostics.len(), 1, "{}", rendered(&report));
    assert!(
        report.diagnostics[0]
            .message
            .contains("-1 MB is outside 1 to 1048576 MB"),
        "{}",
        report.diagnostics[0]
    );
}

fn operational_problem(log_file: &Path, operational: &Path) -> Option<String> {
    let args = RunArgs {
        log_file: Some(log_file.display().to_string()),
        operational_log_file: Some(operational.display().to_string()),
        ..RunArgs::default()
    };
    load(&args, &no_env).err().map(|e| e.to_string())
}

#[test]
fn the_operational_log_file_must_not_be_the_flow_log_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).expect("mkdir");
    let log = flows.join("network-policy-agent.log");
    // Same text, and the same path spelled with `.` and `..` (the file need not exist).
    for same in [
        log.clone(),
        flows.join(".").join("network-policy-agent.log"),
        flows
            .join("..")
            .join("flows")
            .join("network-policy-agent.log"),
    ] {
        let err = operational_problem(&log, &same).expect("refused");
        assert!(err.contains("operational_log_file"), "{err}");
        assert!(err.contains("log_file "), "names the flow-log key: {err}");
        assert!(err.contains("must be different files"), "{err}");
    }
    // The same file on disk under another name: a symbolic link to the directory, a
    // hard link to the file.
    std::fs::write(&log, "").expect("create");
    let linked_dir = dir.path().join("linked");
    std::os::unix::fs::symlink(&flows, &linked_dir).expect("symlink");
    let hard = dir.path().join("hard.log");
    std::fs::hard_link(&log, &hard).expect("hard link");
    for same in [linked_dir.join("network-policy-agent.log"), hard] {
        let err = operational_problem(&log, &same).expect("refused");
        assert!(err.contains("must be different files"), "{err}");
    }
    // Another file is fine, existing or not.
    assert_eq!(operational_problem(&log, &flows.join("agent.log")), None);
    // A directory is not a log file.
    let err = operational_problem(&log, &flows).expect("refused");
    assert!(err.contains("is a directory"), "{err}");
    let err = operational_problem(&log, Path::new("/var/log/")).expect("refused");
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn the_operational_log_file_check_names_both_keys_in_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        &dir,
        "a.yaml",
        "log_file: /tmp/x/flows.log\noperational_log_file: /tmp/x/../x/flows.log\n",
    );
    let report = check_file(&path).expect("readable");
    assert_eq!(report.diagnostics.len(), 1, "{}", rendered(&report));
    let d = &report.diagnostics[0];
    assert_eq!(d.key.as_deref(), Some("operational_log_file"));
    assert_eq!(d.pos.line, 2);
    assert!(d.message.contains("log_file /tmp/x/flows.log"), "{d}");
}

#[test]
fn the_log_format_is_a_setting_with_a_flag_a_variable_and_a_key() {
    assert_eq!(
        AgentConfig::default().log_format,
        None,
        "unset: by terminal"
    );
    let c = load_flags(&["--log-format", "json"]).expect("flag");
    assert_eq!(c.log_format, Some(LogFormat::Json));
    let env = |name: &str| (name == "NETPOL_LOG_FORMAT").then(|| "text".to_string());
    let c = load(&RunArgs::default(), &env).expect("env");
    assert_eq!(c.log_format, Some(LogFormat::Text));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "a.yaml", "log_format: json\n");
    let c = load(&with_config(&path), &no_env).expect("file");
    assert_eq!(c.log_format, Some(LogFormat::Json));
    let err = load_flags(&["--log-format=logfmt"])
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("log_format") && err.contains("text, json"),
        "{err}"
    );
}
