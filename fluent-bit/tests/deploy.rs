//! The agent's Kubernetes deployment files (`deploy/`) held against published schemas
//! (k8s-openapi's types) and against the agent's configuration: the ConfigMap's file is
//! one the config crate accepts, the ports and probes are the config's listen
//! addresses, the args are `netpol-agent run` flags, and the IAM policy allows exactly
//! the CloudWatch calls on the agent's log groups.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::Parser;
use common::*;
use config::{AgentConfig, RunArgs, Severity, defaults};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

const AGENT: &str = "netpol-agent";
const CONFIG_MAP: &str = "netpol-agent-config";
const CONFIG_KEY: &str = "config.yaml";

/// `netpol-agent` as the agent binary declares it: `run` flattens the config crate's
/// flags.
#[derive(Parser, Debug)]
#[command(name = "netpol-agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    Run(Box<RunArgs>),
}

fn daemonset() -> DaemonSet {
    let file = deploy_file("daemonset.yaml");
    strict(&file, &documents(&file), AGENT)
}

fn pod() -> PodSpec {
    daemonset().spec.template.spec.expect("pod spec")
}

fn container(pod: &PodSpec) -> &Container {
    pod.containers
        .iter()
        .find(|c| c.name == AGENT)
        .expect("netpol-agent container")
}

fn config_map_text() -> String {
    let file = deploy_file("configmap.yaml");
    let cm: ConfigMap = strict(&file, &documents(&file), CONFIG_MAP);
    cm.data
        .expect("data")
        .remove(CONFIG_KEY)
        .expect("config.yaml key")
}

/// The configuration the agent runs with: the ConfigMap's file loaded by the config
/// crate as `--config` would, with the DaemonSet's environment.
fn loaded_config() -> AgentConfig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_KEY);
    std::fs::write(&path, config_map_text()).unwrap();
    let args = RunArgs {
        config: Some(path),
        ..RunArgs::default()
    };
    let env = |name: &str| match name {
        "MY_NODE_NAME" => Some("ip-10-0-1-2.us-west-2.compute.internal".to_string()),
        "CLUSTER_NAME" => Some("my-cluster".to_string()),
        _ => None,
    };
    config::load(&args, &env).unwrap_or_else(|e| panic!("the ConfigMap's config: {e}"))
}

#[test]
fn manifests_are_kubernetes_objects_of_their_published_schemas() {
    let expect: [(&str, &[(&str, &str)]); 3] = [
        (
            "rbac.yaml",
            &[
                ("v1", "ServiceAccount"),
                ("rbac.authorization.k8s.io/v1", "ClusterRole"),
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ],
        ),
        ("configmap.yaml", &[("v1", "ConfigMap")]),
        ("daemonset.yaml", &[("apps/v1", "DaemonSet")]),
    ];
    for (name, want) in expect {
        let file = deploy_file(name);
        let docs = documents(&file);
        let got = kinds(&docs);
        let got: Vec<(&str, &str)> = got.iter().map(|(a, k)| (a.as_str(), k.as_str())).collect();
        assert_eq!(got, want, "{name}");
        for doc in &docs {
            match doc["kind"].as_str() {
                Some("ServiceAccount") => drop(strict_value::<ServiceAccount>(&file, doc)),
                Some("ClusterRole") => drop(strict_value::<ClusterRole>(&file, doc)),
                Some("ClusterRoleBinding") => drop(strict_value::<ClusterRoleBinding>(&file, doc)),
                Some("ConfigMap") => drop(strict_value::<ConfigMap>(&file, doc)),
                Some("DaemonSet") => drop(strict_value::<DaemonSet>(&file, doc)),
                other => panic!("{name}: unexpected kind {other:?}"),
            }
        }
    }
}

#[test]
fn strict_check_rejects_unknown_fields_wrong_types_and_wrong_kinds() {
    let file = deploy_file("daemonset.yaml");
    let original = documents(&file).remove(0);

    let mut unknown = original.clone();
    unknown["spec"]["template"]["spec"]["hostNetworking"] = true.into();
    let mut wrong_type = original.clone();
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
        "eighty".into();
    let mut wrong_version = original.clone();
    wrong_version["apiVersion"] = "extensions/v1beta1".into();
    for (doc, want) in [
        (unknown, ".spec.template.spec.hostNetworking: unknown field"),
        (
            wrong_type,
            "spec.template.spec.containers[0].ports[0].containerPort",
        ),
        (wrong_version, "is not apps/v1 DaemonSet"),
    ] {
        let err = try_strict_value::<DaemonSet>(&doc).expect_err(want);
        assert!(err.contains(want), "{err:?} should mention {want:?}");
    }
    assert!(try_strict_value::<DaemonSet>(&original).is_ok());
    assert!(first_difference(&original, &original, "").is_none());
}

#[test]
fn cluster_role_reads_pods_namespaces_network_policies_and_policy_endpoints_and_nothing_else() {
    let file = deploy_file("rbac.yaml");
    let docs = documents(&file);
    let role: ClusterRole = strict(&file, &docs, AGENT);
    let mut granted = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    let mut want = BTreeSet::new();
    for (group, resource) in [
        ("", "pods"),
        ("", "namespaces"),
        ("networking.k8s.io", "networkpolicies"),
        ("networking.k8s.aws", "policyendpoints"),
        ("networking.k8s.aws", "clusterpolicyendpoints"),
    ] {
        for verb in ["get", "list", "watch"] {
            want.insert((group.to_string(), resource.to_string(), verb.to_string()));
        }
    }
    assert_eq!(granted, want);

    let sa: ServiceAccount = strict(&file, &docs, AGENT);
    let binding: ClusterRoleBinding = strict(&file, &docs, AGENT);
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.name, AGENT);
    let subjects = binding.subjects.expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), sa.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace, sa.metadata.namespace);

    let ds = daemonset();
    assert_eq!(ds.metadata.namespace, sa.metadata.namespace);
    assert_eq!(pod().service_account_name, sa.metadata.name);
}

#[test]
fn config_map_file_is_accepted_by_the_agents_config_crate() {
    let text = config_map_text();
    let report = config::check_text(Path::new(CONFIG_KEY), &text);
    assert_eq!(report.kind, config::FileKind::AgentConfig);
    assert!(
        report.diagnostics.is_empty(),
        "config.yaml findings: {:?}",
        report
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    assert!(
        !report
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    );
    let cfg = loaded_config();
    assert!(cfg.enable_network_policy && cfg.enable_policy_event_logs);
    assert!(
        !cfg.enable_cloudwatch_logs,
        "ship with Fluent Bit or the agent, not both: the default deployment leaves it to the user"
    );
    assert_eq!(cfg.log_file, Path::new(defaults::LOG_FILE));
    assert_eq!(
        cfg.log_file_compress_grace,
        defaults::LOG_FILE_COMPRESS_GRACE
    );
    assert_eq!(
        cfg.node_name.as_deref(),
        Some("ip-10-0-1-2.us-west-2.compute.internal")
    );
}

fn port_named(c: &Container, name: &str) -> i32 {
    c.ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no port named {name}"))
        .container_port
}

#[test]
fn ports_and_probes_are_the_agents_listen_addresses() {
    let cfg = loaded_config();
    assert_eq!(cfg.metrics_bind_addr, defaults::METRICS_BIND_ADDR);
    assert_eq!(cfg.health_probe_bind_addr, defaults::HEALTH_PROBE_BIND_ADDR);
    let pod = pod();
    assert_eq!(pod.host_network, Some(true));
    let c = container(&pod);
    let metrics = port_named(c, "metrics");
    let health = port_named(c, "health");
    assert_eq!(metrics, i32::from(cfg.metrics_bind_addr.port));
    assert_eq!(health, i32::from(cfg.health_probe_bind_addr.port));
    assert_eq!((metrics, health), (8162, 8163));
    for (probe, path) in [
        (&c.liveness_probe, "/healthz"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("{path}: no httpGet probe"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            IntOrString::Int(health),
            "{path} probes the health port"
        );
    }
}

#[test]
fn container_args_are_netpol_agent_run_flags_naming_the_mounted_config() {
    let pod = pod();
    let c = container(&pod);
    let mut argv = vec![AGENT.to_string()];
    argv.extend(c.args.clone().expect("args"));
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let Command::Run(args) = cli.command;
    let config_path = args.config.clone().expect("--config");
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| config_path.parent() == Some(Path::new(&m.mount_path)))
        .expect("--config is in a mounted directory");
    assert_eq!(mount.read_only, Some(true));
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    assert_eq!(
        volume.config_map.as_ref().map(|c| c.name.as_str()),
        Some(CONFIG_MAP)
    );
    assert_eq!(
        config_path.file_name().and_then(|n| n.to_str()),
        Some(CONFIG_KEY)
    );
    assert_eq!(
        c.image.as_deref(),
        Some(format!("netpol-agent:{}", env!("CARGO_PKG_VERSION")).as_str())
    );
}

/// The hostPath mounted at `dir`, asserting it is mounted at the same path.
fn host_mount<'a>(pod: &'a PodSpec, dir: &Path) -> (&'a str, Option<bool>) {
    let c = container(pod);
    let m = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| Path::new(&m.mount_path) == dir)
        .unwrap_or_else(|| panic!("nothing mounted at {}", dir.display()));
    let host = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == m.name)
        .and_then(|v| v.host_path.as_ref())
        .unwrap_or_else(|| panic!("{} is not a hostPath", m.name));
    assert_eq!(host.path, m.mount_path);
    (host.path.as_str(), m.read_only)
}

#[test]
fn bpffs_and_the_flow_log_directory_are_host_mounts_the_config_points_into() {
    let cfg = loaded_config();
    let pod = pod();
    let (bpffs, ro) = host_mount(&pod, Path::new("/sys/fs/bpf"));
    assert_ne!(ro, Some(true), "pins are written");
    assert!(cfg.bpffs_pin_dir.starts_with(bpffs));
    assert!(Path::new(defaults::BPFFS_PIN_DIR).starts_with(bpffs));
    let log_dir = cfg.log_file.parent().expect("log file directory");
    let (logs, ro) = host_mount(&pod, log_dir);
    assert_eq!(
        Path::new(logs),
        Path::new(defaults::LOG_FILE).parent().unwrap()
    );
    assert_ne!(ro, Some(true), "the agent writes its flow log");
}

/// The agent's instance-lock directory, read from its source (`agent/src/guard.rs`,
/// `const LOCK_DIR`): the agent crate is a binary with the whole datapath behind it, too
/// heavy to link for a constant.
fn agent_lock_dir() -> String {
    let guard = fluent_bit_config::fluent_bit_dir().join("../agent/src/guard.rs");
    let text = read(&guard);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("const LOCK_DIR: &str = "))
        .unwrap_or_else(|| panic!("{}: no `const LOCK_DIR: &str = \"...\";`", guard.display()));
    line.split('"').nth(1).expect("quoted LOCK_DIR").to_string()
}

#[test]
fn the_instance_lock_directory_is_a_writable_host_mount() {
    let pod = pod();
    let lock_dir = agent_lock_dir();
    assert!(lock_dir.starts_with('/'), "{lock_dir}");
    let (host, ro) = host_mount(&pod, Path::new(&lock_dir));
    assert_eq!(host, lock_dir);
    assert_ne!(ro, Some(true));
}

#[test]
fn node_and_cluster_names_reach_the_variables_the_config_reads() {
    let pod = pod();
    let env: BTreeMap<String, _> = container(&pod)
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e))
        .collect();
    let node_var = config::setting("node_name").expect("node_name setting").env;
    let cluster_var = config::setting("cluster_name")
        .expect("cluster_name setting")
        .env;
    assert_eq!(node_var, "MY_NODE_NAME");
    let node = env
        .get(node_var)
        .unwrap_or_else(|| panic!("{node_var} not set"));
    let field = node
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("node name from the downward API");
    assert_eq!(field.field_path, "spec.nodeName");
    assert!(
        env.contains_key(cluster_var),
        "{cluster_var} names the log group"
    );
}

#[test]
fn container_holds_only_the_capabilities_its_header_explains() {
    let pod = pod();
    let sc = container(&pod)
        .security_context
        .clone()
        .expect("securityContext");
    assert_ne!(sc.privileged, Some(true));
    let caps = sc.capabilities.expect("capabilities");
    assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
    let added: BTreeSet<String> = caps.add.into_iter().flatten().collect();
    let want: BTreeSet<String> = ["BPF", "NET_ADMIN", "SYS_ADMIN"].map(String::from).into();
    assert_eq!(added, want);
    let text = read(&deploy_file("daemonset.yaml"));
    for cap in &added {
        let explained = text.lines().take_while(|l| l.starts_with('#')).any(|l| {
            l.trim_start_matches('#')
                .trim_start()
                .starts_with(&format!("{cap} "))
        });
        assert!(explained, "the header says why {cap} is needed");
    }
    assert_eq!(sc.read_only_root_filesystem, Some(true));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Policy {
    version: String,
    statement: Vec<Statement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Statement {
    sid: Option<String>,
    effect: String,
    action: Vec<String>,
    resource: Vec<String>,
}

#[test]
fn iam_policy_allows_exactly_the_cloudwatch_calls_on_the_agents_log_groups() {
    let text = read(&deploy_file("iam-policy.json"));
    let policy: Policy = serde_json::from_str(&text).expect("IAM policy shape");
    assert_eq!(policy.version, "2012-10-17");
    let mut actions = BTreeSet::new();
    let mut resources = Vec::new();
    for s in &policy.statement {
        assert_eq!(s.effect, "Allow", "{:?}", s.sid);
        actions.extend(s.action.iter().cloned());
        resources.extend(s.resource.iter().cloned());
    }
    let want: BTreeSet<String> = [
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:PutRetentionPolicy",
    ]
    .map(String::from)
    .into();
    assert_eq!(actions, want);
    assert!(
        resources.iter().all(|r| r.starts_with("arn:aws:logs:")),
        "{resources:?}"
    );

    let agent = AgentConfig {
        cluster_name: Some("prod-east".into()),
        node_name: Some("ip-10-0-1-2".into()),
        ..AgentConfig::default()
    };
    let group_arn = format!(
        "arn:aws:logs:us-west-2:123456789012:log-group:{}",
        agent.effective_log_group()
    );
    let stream_arn = format!("{group_arn}:log-stream:{}", agent.effective_log_stream("x"));
    let allows = |arn: &str| resources.iter().any(|r| iam_match(r, arn));
    assert!(allows(&group_arn), "{group_arn}");
    assert!(allows(&stream_arn), "{stream_arn}");
    for other in [
        "arn:aws:logs:us-west-2:123456789012:log-group:/aws/lambda/f",
        "arn:aws:logs:us-west-2:123456789012:log-group:/aws/eks/prod-east/other",
        "arn:aws:logs:us-west-2:123456789012:log-group:/aws/eks/prod-east/cluster-copy:log-stream:s",
        "arn:aws:s3:::bucket",
    ] {
        assert!(!allows(other), "{other} must not be allowed");
    }
}

#[test]
fn iam_wildcards_match_like_iam() {
    assert!(iam_match("a*c", "abbbc"));
    assert!(iam_match("a*c", "ac"));
    assert!(iam_match("a?c", "abc"));
    assert!(!iam_match("a?c", "ac"));
    assert!(iam_match("x:*:y", "x:1:2:y"));
    assert!(!iam_match("abc", "abcd"));
}

#[test]
fn deployed_line_format_is_the_one_the_fluent_bit_parser_reads() {
    // The parser's Time_Key is `timestamp`, a key of the JSON line; the compat-v1.3
    // line calls it `ts`.
    assert_eq!(loaded_config().flow_log_format, config::LineFormat::Json);
    let parsers = fluent_bit_config::classic::parse(&read(&fb_file(PARSERS))).unwrap();
    let parser = parsers
        .find(fluent_bit_config::SectionKind::Parser, "netpol_flow_json")
        .expect("netpol_flow_json");
    assert_eq!(parser.get("time_key"), Some("timestamp"));
}

#[test]
fn fluent_bit_and_the_agent_are_deployed_for_the_same_cluster() {
    let fb_file = fb_file("daemonset.yaml");
    let fb: DaemonSet = strict(&fb_file, &documents(&fb_file), "fluent-bit-netpol");
    let fb_pod = fb.spec.template.spec.expect("pod spec");
    let value = |pod: &PodSpec, name: &str| {
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| panic!("{name} has no value"))
    };
    assert_eq!(
        value(&fb_pod, "CLUSTER_NAME"),
        value(&pod(), "CLUSTER_NAME")
    );
}

#[test]
fn eks_variant_patches_the_incumbent_container_to_run_netpol_agent_on_policy_endpoints() {
    let file = deploy_file("daemonset-eks.yaml");
    let ds: DaemonSet = strict(&file, &documents(&file), "aws-node");
    assert_eq!(ds.metadata.namespace.as_deref(), Some("kube-system"));
    let pod = ds.spec.template.spec.expect("pod spec");
    assert_eq!(
        pod.containers.len(),
        1,
        "only the agent's container is patched"
    );
    let c = &pod.containers[0];
    assert_eq!(
        c.name, "aws-eks-nodeagent",
        "the incumbent's container name"
    );
    assert_eq!(
        c.command.as_deref(),
        Some(&["netpol-agent".to_string()][..])
    );
    let mut argv = vec![AGENT.to_string()];
    argv.extend(c.args.clone().expect("args"));
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let Command::Run(args) = cli.command;
    let config = config::load(&args, &|_: &str| None::<String>).expect("the args load");
    assert_eq!(config.policy_source, config::PolicyObjects::PolicyEndpoint);
    assert!(config.enable_network_policy);
    assert_eq!(
        config.log_file,
        Path::new("/var/log/aws-routed-eni/network-policy-agent.log")
    );
}
