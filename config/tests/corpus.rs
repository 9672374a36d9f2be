//! `config validate` on a corpus of broken agent configs and EKS add-on JSONs
//! (tests/corpus/): every error is reported, each at its line and column and naming its key.

use std::path::{Path, PathBuf};

use config::{Diagnostic, FileKind, Severity, check_file, validate_file};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
}

/// One expected error: line, column, the key it must name (empty for pure syntax errors),
/// and a phrase the message must contain.
type Expect = (usize, usize, &'static str, &'static str);

fn check(name: &str, kind: FileKind, expected: &[Expect]) {
    let path = corpus(name);
    let report = check_file(&path).expect("readable");
    assert_eq!(report.kind, kind, "{name}: recognised as");
    let got: Vec<&Diagnostic> = report.diagnostics.iter().collect();
    let shown: Vec<String> = got.iter().map(ToString::to_string).collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "{name}: every error and nothing else:\n{}",
        shown.join("\n")
    );
    for (d, (line, column, key, needle)) in got.iter().zip(expected) {
        let place = format!("{}:{line}:{column}: error: ", path.display());
        let rendered = d.to_string();
        assert!(
            rendered.starts_with(&place),
            "{name}: expected at {line}:{column}, got {rendered}"
        );
        assert_eq!(d.severity, Severity::Error);
        if !key.is_empty() {
            assert_eq!(d.key.as_deref(), Some(*key), "{name}: {rendered}");
            assert!(
                rendered.contains(key),
                "{name}: message names the key: {rendered}"
            );
        }
        assert!(
            rendered.contains(needle),
            "{name}: expected {needle:?} in {rendered}"
        );
    }
}

#[test]
fn guide_example_with_trailing_comma_gets_a_trailing_comma_error_at_the_comma() {
    // Copied verbatim from the EKS user guide (CloudWatch Logs section, add-on example).
    let text = std::fs::read_to_string(corpus("addon-guide-trailing-comma.json")).expect("read");
    let column = text.find(", }").expect("the guide's stray comma") + 1;
    assert_eq!(column, 112);
    check(
        "addon-guide-trailing-comma.json",
        FileKind::AddonConfig,
        &[(1, 112, "nodeAgent", "trailing comma")],
    );
}

#[test]
fn guide_example_pasted_pretty_printed_gets_the_trailing_comma_on_its_line() {
    check(
        "addon-guide-trailing-comma-pretty.json",
        FileKind::AddonConfig,
        &[(
            5,
            35,
            "nodeAgent",
            "trailing comma after \"enableCloudWatchLogs\"",
        )],
    );
}

#[test]
fn guide_examples_without_the_comma_are_clean() {
    assert_eq!(validate_file(&corpus("good-addon-guide.json")), vec![]);
    assert_eq!(validate_file(&corpus("good-agent.yaml")), vec![]);
}

#[test]
fn addon_booleans_must_be_strings() {
    check(
        "addon-bool-not-string.json",
        FileKind::AddonConfig,
        &[
            (2, 26, "enableNetworkPolicy", "write \"true\" (in quotes)"),
            (
                4,
                30,
                "nodeAgent.enablePolicyEventLogs",
                "write \"false\" (in quotes)",
            ),
        ],
    );
}

#[test]
fn addon_ports_are_strings_without_a_colon() {
    check(
        "addon-port-forms.json",
        FileKind::AddonConfig,
        &[
            (4, 24, "nodeAgent.metricsBindAddr", "write \"8162\""),
            (5, 28, "nodeAgent.healthProbeBindAddr", "port number only"),
        ],
    );
}

#[test]
fn addon_unknown_keys_suggest_the_known_one() {
    check(
        "addon-unknown-keys.json",
        FileKind::AddonConfig,
        &[
            (
                2,
                3,
                "enableNetworkPolicies",
                "did you mean \"enableNetworkPolicy\"",
            ),
            (
                4,
                5,
                "nodeAgent.enablePolicyEventLog",
                "did you mean \"enablePolicyEventLogs\"",
            ),
        ],
    );
}

#[test]
fn addon_conntrack_values_are_integers_in_range() {
    check(
        "addon-conntrack-types.json",
        FileKind::AddonConfig,
        &[
            (
                3,
                36,
                "nodeAgent.conntrackCacheCleanupPeriod",
                "write 300 without quotes",
            ),
            (
                4,
                32,
                "nodeAgent.conntrackCacheTableSize",
                "outside 32768 to 1048576",
            ),
        ],
    );
}

#[test]
fn addon_env_values_are_strings_and_the_enforcing_mode_is_checked() {
    check(
        "addon-env-values.json",
        FileKind::AddonConfig,
        &[
            (
                4,
                38,
                "env.NETWORK_POLICY_ENFORCING_MODE",
                "standard, strict",
            ),
            (5, 23, "env.WARM_IP_TARGET", "write \"5\""),
        ],
    );
}

#[test]
fn addon_cloudwatch_without_event_logs_points_at_the_cloudwatch_key() {
    check(
        "addon-cloudwatch-without-event-logs.json",
        FileKind::AddonConfig,
        &[(
            4,
            29,
            "nodeAgent.enableCloudWatchLogs",
            "needs enable_policy_event_logs",
        )],
    );
}

#[test]
fn addon_missing_comma_stops_at_the_next_key() {
    check(
        "addon-missing-comma.json",
        FileKind::AddonConfig,
        &[(3, 3, "", "missing ','")],
    );
}

#[test]
fn addon_duplicate_keys_name_the_first_place() {
    check(
        "addon-duplicate-key.json",
        FileKind::AddonConfig,
        &[(
            4,
            5,
            "nodeAgent.metricsBindAddr",
            "first at line 3 column 5",
        )],
    );
}

#[test]
fn addon_bad_string_values_are_each_reported() {
    check(
        "addon-yes-and-bad-path.json",
        FileKind::AddonConfig,
        &[
            (
                2,
                26,
                "enableNetworkPolicy",
                "\"yes\" is not \"true\" or \"false\"",
            ),
            (
                4,
                42,
                "nodeAgent.networkPolicyAgentLogFileLocation",
                "non-empty path",
            ),
            (5, 17, "nodeAgent.logLevel", "\"verbose\" is not one of"),
        ],
    );
}

#[test]
fn agent_unknown_keys_suggest_the_setting() {
    check(
        "agent-unknown-keys.yaml",
        FileKind::AgentConfig,
        &[
            (
                2,
                1,
                "log_file_maxsize",
                "did you mean \"log_file_max_size\"",
            ),
            (
                3,
                1,
                "metricsBindAddr",
                "did you mean \"metrics_bind_addr\"",
            ),
        ],
    );
}

#[test]
fn agent_values_are_strictly_typed() {
    check(
        "agent-wrong-types.yaml",
        FileKind::AgentConfig,
        &[
            (1, 24, "enable_network_policy", "write true without quotes"),
            (2, 20, "log_file_max_size", "write 200 without quotes"),
            (3, 12, "log_level", "found integer 3"),
        ],
    );
}

#[test]
fn agent_enums_and_addresses_list_what_is_accepted() {
    check(
        "agent-bad-enums-and-address.yaml",
        FileKind::AgentConfig,
        &[
            (1, 20, "metrics_bind_addr", "not an IP address"),
            (2, 17, "flow_log_scope", "all, deny, none"),
            (3, 18, "flow_log_format", "json, compat-v1.3"),
            (4, 17, "enforcing_mode", "standard, strict"),
            (5, 14, "attach_mode", "auto, tcx, netlink"),
        ],
    );
}

#[test]
fn agent_cloudwatch_names_and_retention_follow_the_api_rules() {
    check(
        "agent-cloudwatch-names.yaml",
        FileKind::AgentConfig,
        &[
            (
                3,
                28,
                "cloudwatch_retention_days",
                "allowed days are 1, 3, 5",
            ),
            (
                4,
                23,
                "cloudwatch_log_group",
                "letters, digits and . - _ / #",
            ),
            (5, 24, "cloudwatch_log_stream", "must not contain ':'"),
            (6, 22, "cloudwatch_endpoint", "http://"),
        ],
    );
}

#[test]
fn agent_sizes_out_of_range_are_each_reported() {
    check(
        "agent-sizes.yaml",
        FileKind::AgentConfig,
        &[
            (1, 20, "log_file_max_size", "outside 1 to 1048576 MB"),
            (2, 19, "ring_buffer_size", "power of two"),
            (3, 29, "conntrack_cache_table_size", "32768 (32K)"),
            (4, 33, "conntrack_cache_cleanup_period", "outside 1s"),
            (5, 19, "deny_fold_window", "outside 0s to 60s"),
        ],
    );
}

#[test]
fn agent_yaml_syntax_error_has_its_place() {
    check(
        "agent-bad-indentation.yaml",
        FileKind::AgentConfig,
        &[(2, 11, "", "YAML syntax error")],
    );
}

#[test]
fn agent_json_trailing_comma_does_not_hide_other_errors() {
    check(
        "agent-trailing-comma.json",
        FileKind::AgentConfig,
        &[
            (2, 16, "log_level", "\"loud\" is not one of"),
            (3, 31, "", "trailing comma after \"metrics_bind_addr\""),
        ],
    );
}

#[test]
fn agent_duplicate_keys_name_the_first_place() {
    check(
        "agent-duplicate-key.yaml",
        FileKind::AgentConfig,
        &[(3, 1, "log_level", "first at line 1 column 1")],
    );
}

#[test]
fn agent_colliding_ports_are_reported_at_the_second_address() {
    check(
        "agent-ports-collide.json",
        FileKind::AgentConfig,
        &[(
            3,
            29,
            "health_probe_bind_addr",
            "collides with metrics_bind_addr :9000",
        )],
    );
}

#[test]
fn agent_durations_must_parse_and_be_in_range() {
    check(
        "agent-durations.yaml",
        FileKind::AgentConfig,
        &[
            (1, 19, "log_file_min_age", "not a duration"),
            (2, 26, "flow_log_flush_interval", "outside 10ms to 60s"),
            (3, 28, "cloudwatch_flush_interval", "negative"),
        ],
    );
}

#[test]
fn agent_file_with_an_addon_key_says_they_cannot_be_mixed() {
    check(
        "agent-mixed-with-addon.yaml",
        FileKind::AgentConfig,
        &[(2, 1, "nodeAgent", "cannot be mixed")],
    );
}

#[test]
fn corpus_has_at_least_fifteen_broken_files_and_each_is_covered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut broken = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let diagnostics = validate_file(&path);
        if name.starts_with("good-") {
            assert_eq!(diagnostics, vec![], "{name}");
        } else {
            broken += 1;
            assert!(!diagnostics.is_empty(), "{name} should have errors");
            for d in &diagnostics {
                assert!(d.pos.line >= 1 && d.pos.column >= 1, "{d}");
            }
        }
    }
    assert!(broken >= 15, "only {broken} broken files");
}

#[test]
fn unreadable_file_is_one_diagnostic_naming_it() {
    let missing = corpus("does-not-exist.yaml");
    let diagnostics = validate_file(&missing);
    assert_eq!(diagnostics.len(), 1);
    assert!(
        diagnostics[0].to_string().contains("cannot read"),
        "{}",
        diagnostics[0]
    );
}
