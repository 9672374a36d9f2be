//! `load`: defaults equal the incumbent's, every incumbent flag parses, and precedence is
//! defaults < add-on JSON < config file < environment < flags, with errors naming where a
//! bad value came from. The environment is a closure: the process environment is never read.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use config::{
    AgentConfig, AttachMode, BindAddr, ConfigError, EnforcingMode, FlowLogScope, LineFormat,
    LogLevel, Origin, PolicyObjects, PolicySource, RunArgs, SETTINGS, load, load_with_origins,
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

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn defaults_equal_the_incumbents() {
    let c = load(&RunArgs::default(), &no_env).expect("defaults load");
    assert!(!c.enable_network_policy, "--enable-network-policy=false");
    assert!(!c.enable_ipv6, "--enable-ipv6=false");
    assert!(
        !c.enable_policy_event_logs,
        "--enable-policy-event-logs=false"
    );
    assert!(!c.enable_cloudwatch_logs, "--enable-cloudwatch-logs=false");
    assert_eq!(c.enforcing_mode, EnforcingMode::Standard);
    assert_eq!(
        c.log_file,
        PathBuf::from("/var/log/aws-routed-eni/network-policy-agent.log")
    );
    assert_eq!(c.log_file_max_size, 200, "MB");
    assert_eq!(c.log_file_max_backups, 8);
    assert_eq!(c.log_file_max_age, 30, "days");
    assert_eq!(c.metrics_bind_addr.to_string(), ":8162");
    assert_eq!(c.health_probe_bind_addr.to_string(), ":8163");
    assert_eq!(c.conntrack_cache_cleanup_period, Duration::from_secs(300));
    assert_eq!(c.conntrack_cache_table_size, 512 * 1024);
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.max_concurrent_reconciles, 3);
    assert_eq!(c.kubeconfig, None, "in-cluster");
    assert_eq!(c.apiserver, None);
    assert_eq!(
        c.policy_source(),
        PolicySource::Kubernetes {
            kubeconfig: None,
            apiserver: None
        }
    );
    assert_eq!(c.effective_log_group(), "/aws/k8s-cluster/cluster");
    assert_eq!(
        c.effective_log_stream("ip-10-0-0-1"),
        "aws-network-policy-agent-audit-ip-10-0-0-1"
    );
}

#[test]
fn defaults_of_our_own_settings() {
    let c = AgentConfig::default();
    assert_eq!(c.log_file_min_age, Duration::from_secs(30));
    assert_eq!(c.log_file_compress_grace, Duration::from_secs(60));
    assert_eq!(c.flow_log_flush_interval, Duration::from_secs(1));
    assert_eq!(c.flow_log_scope, FlowLogScope::All);
    assert_eq!(c.flow_log_format, LineFormat::Json);
    assert_eq!(c.deny_fold_window, Duration::from_secs(1));
    assert_eq!(c.ring_buffer_size, 4 * 1024 * 1024);
    assert_eq!(c.operational_log_file, None, "stderr");
    assert_eq!(c.attach_mode, AttachMode::Auto);
    assert_eq!(c.policy_source, PolicyObjects::NetworkPolicy);
    assert_eq!(c.bpffs_pin_dir, PathBuf::from("/sys/fs/bpf/netpol-agent"));
    assert_eq!(c.cloudwatch_flush_interval, Duration::from_secs(5));
    assert_eq!(c.cloudwatch_retention_days, None);
}

#[test]
fn the_incumbents_daemonset_args_parse_unchanged() {
    // The aws-eks-nodeagent container args of VPC CNI manifests, as deployed.
    let args = parse(&[
        "--enable-ipv6=false",
        "--enable-network-policy=false",
        "--enable-cloudwatch-logs=false",
        "--enable-policy-event-logs=false",
        "--log-file=/var/log/aws-routed-eni/network-policy-agent.log",
        "--metrics-bind-addr=:8162",
        "--health-probe-bind-addr=:8163",
        "--conntrack-cache-cleanup-period=300",
        "--log-level=debug",
    ]);
    let c = load(&args, &no_env).expect("valid");
    assert_eq!(c, AgentConfig::default(), "those args restate the defaults");
}

#[test]
fn every_incumbent_flag_name_parses_and_takes_effect() {
    let args = parse(&[
        "--enable-network-policy=true",
        "--enable-policy-event-logs=true",
        "--enable-cloudwatch-logs=true",
        "--enable-ipv6=true",
        "--log-file=/tmp/np.log",
        "--log-file-max-size=50",
        "--log-file-max-backups=2",
        "--metrics-bind-addr=127.0.0.1:9162",
        "--health-probe-bind-addr=[::1]:9163",
        "--conntrack-cache-cleanup-period=120",
        "--conntrack-cache-table-size=65536",
        "--log-level=info",
        "--kubeconfig=/root/.kube/config",
        "--apiserver=https://127.0.0.1:6443",
        "--max-concurrent-reconciles=5",
    ]);
    let c = load(&args, &no_env).expect("valid");
    assert!(c.enable_network_policy && c.enable_policy_event_logs && c.enable_cloudwatch_logs);
    assert!(c.enable_ipv6);
    assert_eq!(c.log_file, PathBuf::from("/tmp/np.log"));
    assert_eq!(c.log_file_max_size, 50);
    assert_eq!(c.log_file_max_backups, 2);
    assert_eq!(c.metrics_bind_addr.to_string(), "127.0.0.1:9162");
    assert_eq!(c.health_probe_bind_addr.to_string(), "[::1]:9163");
    assert_eq!(c.conntrack_cache_cleanup_period, Duration::from_secs(120));
    assert_eq!(c.conntrack_cache_table_size, 65536);
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.kubeconfig, Some(PathBuf::from("/root/.kube/config")));
    assert_eq!(c.apiserver.as_deref(), Some("https://127.0.0.1:6443"));
    assert_eq!(c.max_concurrent_reconciles, 5);
}

#[test]
fn boolean_flags_alone_mean_true_like_go_pflag() {
    let c = load(
        &parse(&["--enable-network-policy", "--enable-policy-event-logs"]),
        &no_env,
    )
    .expect("valid");
    assert!(c.enable_network_policy);
    assert!(c.enable_policy_event_logs);
    let c = load(&parse(&["--enable-network-policy=False"]), &no_env).expect("valid");
    assert!(!c.enable_network_policy, "Go's ParseBool accepts False");
}

#[test]
fn every_setting_has_its_flag_in_run_args() {
    let command = <Cli as clap::CommandFactory>::command();
    let longs: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    for s in SETTINGS {
        assert!(longs.contains(&s.flag.to_string()), "{} missing", s.flag);
        // And the flag reaches its setting.
        let value = match s.key {
            "enable_network_policy" | "enable_ipv6" | "enable_policy_event_logs" => "true",
            _ => continue,
        };
        let c = load(&parse(&[&format!("{}={value}", s.flag)]), &no_env).expect("valid");
        let json = serde_json::to_value(&c).expect("serialize");
        assert_eq!(json[s.key], serde_json::Value::Bool(true), "{}", s.flag);
    }
    assert_eq!(
        longs.len(),
        SETTINGS.len() + 2,
        "plus --config and --addon-config"
    );
}

#[test]
fn our_flags_parse_to_typed_values() {
    let args = parse(&[
        "--enforcing-mode=strict",
        "--flow-log-scope=deny",
        "--flow-log-format=compat-v1.3",
        "--deny-fold-window=250ms",
        "--ring-buffer-size=1048576",
        "--log-file-max-age=7",
        "--log-file-min-age=45s",
        "--log-file-compress-grace=2m",
        "--flow-log-flush-interval=500ms",
        "--operational-log-file=/tmp/op.log",
        "--cluster-name=demo",
        "--node-name=node-1",
        "--cloudwatch-log-group=/netpol/demo",
        "--cloudwatch-log-stream=node-1",
        "--cloudwatch-retention-days=14",
        "--cloudwatch-region=eu-west-1",
        "--cloudwatch-endpoint=http://127.0.0.1:5000",
        "--cloudwatch-flush-interval=2s",
        "--policy-dir=/etc/netpol",
        "--attach-mode=netlink",
        "--bpffs-pin-dir=/sys/fs/bpf/test",
    ]);
    let c = load(&args, &no_env).expect("valid");
    assert_eq!(c.enforcing_mode, EnforcingMode::Strict);
    assert_eq!(c.flow_log_scope, FlowLogScope::Deny);
    assert_eq!(c.flow_log_format, LineFormat::CompatV13);
    assert_eq!(c.deny_fold_window, Duration::from_millis(250));
    assert_eq!(c.ring_buffer_size, 1 << 20);
    assert_eq!(c.log_file_max_age, 7);
    assert_eq!(c.log_file_min_age, Duration::from_secs(45));
    assert_eq!(c.log_file_compress_grace, Duration::from_secs(120));
    assert_eq!(c.flow_log_flush_interval, Duration::from_millis(500));
    assert_eq!(c.operational_log_file, Some(PathBuf::from("/tmp/op.log")));
    assert_eq!(c.effective_log_group(), "/netpol/demo");
    assert_eq!(c.effective_log_stream("x"), "node-1");
    assert_eq!(c.cloudwatch_retention_days, Some(14));
    assert_eq!(c.cloudwatch_region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        c.cloudwatch_endpoint.as_deref(),
        Some("http://127.0.0.1:5000")
    );
    assert_eq!(c.cloudwatch_flush_interval, Duration::from_secs(2));
    assert_eq!(
        c.policy_source(),
        PolicySource::Dir(std::path::Path::new("/etc/netpol"))
    );
    assert_eq!(c.attach_mode, AttachMode::Netlink);
    assert_eq!(c.bpffs_pin_dir, PathBuf::from("/sys/fs/bpf/test"));
}

#[test]
fn precedence_is_defaults_then_file_then_env_then_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "agent.yaml",
        "log_level: info\nlog_file_max_size: 100\nmetrics_bind_addr: \":9000\"\nflow_log_scope: deny\n",
    );
    let env = env_of(&[
        ("NETPOL_CONFIG", file.to_str().expect("utf-8")),
        ("NETPOL_LOG_FILE_MAX_SIZE", "150"),
        ("NETPOL_METRICS_BIND_ADDR", ":9001"),
        ("NETPOL_LOG_FILE_MAX_BACKUPS", "4"),
    ]);
    let args = parse(&["--metrics-bind-addr=:9002"]);
    let loaded = load_with_origins(&args, &env).expect("valid");
    let c = &loaded.config;
    // Default only.
    assert_eq!(c.health_probe_bind_addr, BindAddr::any(8163));
    assert_eq!(loaded.origins.get("health_probe_bind_addr"), None);
    // File over default.
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.flow_log_scope, FlowLogScope::Deny);
    assert!(matches!(loaded.origins["log_level"], Origin::File { .. }));
    // Env over file, and env over default.
    assert_eq!(c.log_file_max_size, 150);
    assert_eq!(c.log_file_max_backups, 4);
    assert_eq!(
        loaded.origins["log_file_max_size"],
        Origin::Env {
            var: "NETPOL_LOG_FILE_MAX_SIZE".into()
        }
    );
    // Flag over env over file.
    assert_eq!(c.metrics_bind_addr, BindAddr::any(9002));
    assert_eq!(
        loaded.origins["metrics_bind_addr"],
        Origin::Flag {
            flag: "--metrics-bind-addr".into()
        }
    );
}

#[test]
fn config_flag_beats_the_config_env_var() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from_env = write(&dir, "env.yaml", "log_level: warn\n");
    let from_flag = write(&dir, "flag.json", "{\"log_level\": \"error\"}\n");
    let env = env_of(&[("NETPOL_CONFIG", from_env.to_str().expect("utf-8"))]);
    let args = RunArgs {
        config: Some(from_flag),
        ..RunArgs::default()
    };
    assert_eq!(load(&args, &env).expect("valid").log_level, LogLevel::Error);
}

#[test]
fn incumbent_environment_variables_are_read() {
    let env = env_of(&[
        ("CLUSTER_NAME", "prod"),
        ("MY_NODE_NAME", "ip-10-0-0-1.ec2.internal"),
        ("NETWORK_POLICY_ENFORCING_MODE", "strict"),
    ]);
    let c = load(&RunArgs::default(), &env).expect("valid");
    assert_eq!(c.enforcing_mode, EnforcingMode::Strict);
    assert_eq!(c.effective_log_group(), "/aws/eks/prod/cluster");
    assert_eq!(
        c.effective_log_stream("unused"),
        "aws-network-policy-agent-audit-ip-10-0-0-1.ec2.internal"
    );
    // A flag still wins over the incumbent's variable.
    let c = load(&parse(&["--enforcing-mode=standard"]), &env).expect("valid");
    assert_eq!(c.enforcing_mode, EnforcingMode::Standard);
}

#[test]
fn addon_json_maps_onto_settings_below_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addon = write(
        &dir,
        "addon.json",
        r#"{"enableNetworkPolicy": "true",
            "env": {"NETWORK_POLICY_ENFORCING_MODE": "strict"},
            "nodeAgent": {"enablePolicyEventLogs": "true", "enableCloudWatchLogs": "true",
                          "healthProbeBindAddr": "9163", "metricsBindAddr": "9162",
                          "conntrackCacheCleanupPeriod": 60, "conntrackCacheTableSize": 65536,
                          "enableIpv6": "false",
                          "networkPolicyAgentLogFileLocation": "/tmp/addon.log"}}"#,
    );
    let file = write(&dir, "agent.yaml", "metrics_bind_addr: \":7000\"\n");
    let args = RunArgs {
        addon_config: Some(addon.clone()),
        config: Some(file),
        ..RunArgs::default()
    };
    let loaded = load_with_origins(&args, &no_env).expect("valid");
    let c = &loaded.config;
    assert!(c.enable_network_policy && c.enable_policy_event_logs && c.enable_cloudwatch_logs);
    assert_eq!(c.enforcing_mode, EnforcingMode::Strict);
    assert_eq!(c.health_probe_bind_addr, BindAddr::any(9163));
    assert_eq!(
        c.metrics_bind_addr,
        BindAddr::any(7000),
        "config file beats add-on"
    );
    assert_eq!(c.conntrack_cache_cleanup_period, Duration::from_secs(60));
    assert_eq!(c.conntrack_cache_table_size, 65536);
    assert_eq!(c.log_file, PathBuf::from("/tmp/addon.log"));
    assert!(
        matches!(&loaded.origins["health_probe_bind_addr"], Origin::File { path, pos } if *path == addon && pos.line == 4),
        "{:?}",
        loaded.origins["health_probe_bind_addr"]
    );
}

#[test]
fn bad_env_and_flags_are_all_reported_with_their_names() {
    let env = env_of(&[
        ("NETPOL_LOG_FILE_MAX_SIZE", "big"),
        ("NETWORK_POLICY_ENFORCING_MODE", "lenient"),
    ]);
    let args = parse(&["--log-level=loud", "--metrics-bind-addr=:99999"]);
    let err = load(&args, &env).expect_err("invalid");
    let ConfigError::Invalid { problems } = &err else {
        panic!("expected Invalid, got {err}");
    };
    let origins: Vec<String> = problems.iter().map(|p| p.origin.to_string()).collect();
    assert_eq!(
        origins,
        vec![
            "environment variable NETWORK_POLICY_ENFORCING_MODE",
            "environment variable NETPOL_LOG_FILE_MAX_SIZE",
            "flag --metrics-bind-addr",
            "flag --log-level",
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains("flag --log-level: log_level: \"loud\" is not one of"),
        "{text}"
    );
    assert!(text.contains("port \"99999\""), "{text}");
}

#[test]
fn semantic_errors_name_the_input_that_set_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "agent.yaml",
        "log_level: info\ncloudwatch_retention_days: 2\n",
    );
    let env = env_of(&[("NETPOL_CONFIG", file.to_str().expect("utf-8"))]);
    let args = parse(&["--conntrack-cache-table-size=10"]);
    let err = load(&args, &env).expect_err("invalid");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "{}:2:28: cloudwatch_retention_days: 2 is not",
            file.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("flag --conntrack-cache-table-size: conntrack_cache_table_size: 10 entries"),
        "{text}"
    );
}

#[test]
fn a_broken_config_file_fails_load_with_every_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(&dir, "agent.yaml", "log_level: loud\nbogus: 1\n");
    let args = RunArgs {
        config: Some(file.clone()),
        ..RunArgs::default()
    };
    match load(&args, &no_env) {
        Err(ConfigError::File {
            path, diagnostics, ..
        }) => {
            assert_eq!(path, file);
            assert_eq!(diagnostics.len(), 2, "{diagnostics:?}");
            assert_eq!(
                (diagnostics[0].pos.line, diagnostics[0].pos.column),
                (1, 12)
            );
            assert_eq!((diagnostics[1].pos.line, diagnostics[1].pos.column), (2, 1));
        }
        other => panic!("expected a file error, got {other:?}"),
    }
    let missing = RunArgs {
        config: Some(dir.path().join("missing.yaml")),
        ..RunArgs::default()
    };
    assert!(matches!(
        load(&missing, &no_env),
        Err(ConfigError::Read { .. })
    ));
}

#[test]
fn effective_config_round_trips_through_yaml_and_loads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut original = AgentConfig {
        enable_network_policy: true,
        flow_log_scope: FlowLogScope::Deny,
        deny_fold_window: Duration::from_millis(250),
        cluster_name: Some("demo".into()),
        cloudwatch_retention_days: Some(30),
        policy_dir: Some(PathBuf::from("/etc/netpol")),
        ..AgentConfig::default()
    };
    original.health_probe_bind_addr = "127.0.0.1:9163".parse().expect("addr");
    let yaml = original.to_yaml().expect("yaml");
    let file = write(&dir, "effective.yaml", &yaml);
    let args = RunArgs {
        config: Some(file),
        ..RunArgs::default()
    };
    assert_eq!(load(&args, &no_env).expect("loads back"), original);
    let via_serde: AgentConfig = serde_yaml::from_str(&yaml).expect("serde reads it too");
    assert_eq!(via_serde, original);
}

/// A valid, non-default text value for every setting.
fn sample(key: &str) -> &'static str {
    match key {
        "enable_network_policy" | "enable_ipv6" | "enable_policy_event_logs" => "true",
        // Needs enable_policy_event_logs, which the sample set also turns on.
        "enable_cloudwatch_logs" => "true",
        "enforcing_mode" => "strict",
        "log_file" => "/tmp/flow.log",
        "log_file_max_size" => "10",
        "log_file_max_backups" => "1",
        "log_file_max_age" => "2",
        "log_file_min_age" => "5s",
        "log_file_compress_grace" => "10s",
        "flow_log_flush_interval" => "200ms",
        "flow_log_scope" => "deny",
        "flow_log_format" => "compat-v1.3",
        "deny_fold_window" => "0",
        "flow_records" => "true",
        "flow_record_interval" => "10s",
        "ring_buffer_size" => "65536",
        "policy_hash_entries" => "4096",
        "metrics_bind_addr" => ":9100",
        "health_probe_bind_addr" => ":9101",
        "conntrack_cache_cleanup_period" => "60",
        "conntrack_cache_table_size" => "32768",
        "log_level" => "warn",
        "log_format" => "text",
        "operational_log_file" => "/tmp/op.log",
        "max_concurrent_reconciles" => "1",
        "cluster_name" => "c1",
        "node_name" => "n1",
        "cloudwatch_log_group" => "/g",
        "cloudwatch_log_stream" => "s",
        "cloudwatch_retention_days" => "7",
        "cloudwatch_region" => "us-east-1",
        "cloudwatch_endpoint" => "http://127.0.0.1:1",
        "cloudwatch_flush_interval" => "1s",
        "policy_dir" => "/tmp/policies",
        "kubeconfig" => "/tmp/kubeconfig",
        "apiserver" => "https://127.0.0.1:6443",
        "policy_source" => "policyendpoint",
        "attach_mode" => "tcx",
        "bpffs_pin_dir" => "/sys/fs/bpf/x",
        "veth_prefix" => "abc",
        "npa_socket_path" => "/run/test/npa.sock",
        other => panic!("no sample for {other}: add one"),
    }
}

#[test]
fn every_flag_reaches_its_setting() {
    let flags: Vec<String> = SETTINGS
        .iter()
        .map(|s| format!("{}={}", s.flag, sample(s.key)))
        .collect();
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let loaded = load_with_origins(&parse(&refs), &no_env).expect("valid");
    for s in SETTINGS {
        assert_eq!(
            loaded.origins.get(s.key),
            Some(&Origin::Flag {
                flag: s.flag.to_string()
            }),
            "{}",
            s.flag
        );
    }
    let defaults = serde_json::to_value(AgentConfig::default()).expect("serialize");
    let got = serde_json::to_value(&loaded.config).expect("serialize");
    for s in SETTINGS {
        assert_ne!(
            got[s.key], defaults[s.key],
            "{} changed its setting",
            s.flag
        );
    }
}

#[test]
fn every_environment_variable_reaches_its_setting() {
    let pairs: Vec<(&str, &str)> = SETTINGS.iter().map(|s| (s.env, sample(s.key))).collect();
    let loaded = load_with_origins(&RunArgs::default(), &env_of(&pairs)).expect("valid");
    for s in SETTINGS {
        assert_eq!(
            loaded.origins.get(s.key),
            Some(&Origin::Env {
                var: s.env.to_string()
            }),
            "{}",
            s.env
        );
    }
}
