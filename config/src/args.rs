//! `RunArgs`: the flags of `netpol-agent run`, with the incumbent's names, for the agent to
//! flatten into its `run` subcommand. Values stay text here; [`crate::load`] parses them
//! with the same parsers as the environment, so a bad flag and a bad variable read alike.
//!
//! Boolean flags follow the incumbent (Go pflag): `--enable-network-policy` alone means
//! true, `--enable-network-policy=false` sets false. Numeric flags take negative numbers
//! as values (`--log-file-max-size -1`), so the answer names the setting's range rather
//! than an unknown flag `-1`.

use std::path::PathBuf;

/// Flags of `netpol-agent run`. Every setting flag is optional: unset means "keep what the
/// environment, the config file or the default says".
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct RunArgs {
    /// Config file, YAML or JSON (by extension); may also be an EKS add-on configuration
    /// JSON. Env: NETPOL_CONFIG.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// EKS add-on configuration JSON of the VPC CNI (`{"enableNetworkPolicy":"true",
    /// "nodeAgent":{…}}`), applied below the config file. Env: NETPOL_ADDON_CONFIG.
    #[arg(long, value_name = "FILE")]
    pub addon_config: Option<PathBuf>,

    /// Enforce NetworkPolicies [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_network_policy: Option<String>,
    /// The incumbent's IPv6 cluster mode [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_ipv6: Option<String>,
    /// standard|strict: what a new pod gets before its policies are in place (env
    /// NETWORK_POLICY_ENFORCING_MODE) [default: standard].
    #[arg(long, value_name = "MODE")]
    pub enforcing_mode: Option<String>,
    /// Write flow-log lines [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_policy_event_logs: Option<String>,
    /// Ship flow-log lines to CloudWatch Logs; needs --enable-policy-event-logs [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_cloudwatch_logs: Option<String>,
    /// Flow-log file [default: /var/log/aws-routed-eni/network-policy-agent.log].
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<String>,
    /// Rotate the flow-log file at this size, in MB [default: 200].
    #[arg(long, value_name = "MB", allow_negative_numbers = true)]
    pub log_file_max_size: Option<String>,
    /// Rotated flow-log files kept [default: 8].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub log_file_max_backups: Option<String>,
    /// Remove rotated flow-log files older than this many days, 0 = never [default: 30].
    #[arg(long, value_name = "DAYS", allow_negative_numbers = true)]
    pub log_file_max_age: Option<String>,
    /// Minimum age of the live flow-log file before rotation [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub log_file_min_age: Option<String>,
    /// Delay before a rotated file is compressed [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub log_file_compress_grace: Option<String>,
    /// Buffered flow-log lines reach the file at least this often [default: 1s].
    #[arg(long, value_name = "DURATION")]
    pub flow_log_flush_interval: Option<String>,
    /// all|deny|none: which verdicts become lines [default: all].
    #[arg(long, value_name = "SCOPE")]
    pub flow_log_scope: Option<String>,
    /// json|compat-v1.3: flow-log line format [default: json].
    #[arg(long, value_name = "FORMAT")]
    pub flow_log_format: Option<String>,
    /// true|false: flow records (packets and bytes per flow both ways, at flow end and
    /// every --flow-record-interval) in the flow log [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub flow_records: Option<String>,
    /// A record of a long flow at least this often, 0 = only at flow end [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub flow_record_interval: Option<String>,
    /// Fold repeated DENYs of a flow within this window, 0 = off [default: 1s].
    #[arg(long, value_name = "DURATION")]
    pub deny_fold_window: Option<String>,
    /// Kernel ring buffer bytes, a power of two [default: 4194304].
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub ring_buffer_size: Option<String>,
    /// Entries each kernel policy hash holds before the trie takes over, 1024 to
    /// 4194304 [default: 262144].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub policy_hash_entries: Option<String>,
    /// Metrics listen address [default: :8162].
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind_addr: Option<String>,
    /// Health probe listen address [default: :8163].
    #[arg(long, value_name = "ADDR")]
    pub health_probe_bind_addr: Option<String>,
    /// Conntrack sweep period, seconds or a duration [default: 300].
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub conntrack_cache_cleanup_period: Option<String>,
    /// Conntrack map entries, 32768 to 1048576 [default: 524288].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub conntrack_cache_table_size: Option<String>,
    /// trace|debug|info|warn|error: operational log level [default: debug].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// text|json: operational log format [default: json when the log is not a terminal,
    /// text on one].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Operational log file, rotated daily (PATH.YYYY-MM-DD); never the flow-log file
    /// [default: stderr].
    #[arg(long, value_name = "PATH")]
    pub operational_log_file: Option<String>,
    /// Accepted for compatibility with the incumbent [default: 3].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_concurrent_reconciles: Option<String>,
    /// Cluster name (env CLUSTER_NAME); names the CloudWatch log group.
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// This node's name (env MY_NODE_NAME).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// CloudWatch log group [default: /aws/eks/CLUSTER/cluster, or /aws/k8s-cluster/cluster].
    #[arg(long, value_name = "NAME")]
    pub cloudwatch_log_group: Option<String>,
    /// CloudWatch log stream [default: aws-network-policy-agent-audit-NODE].
    #[arg(long, value_name = "NAME")]
    pub cloudwatch_log_stream: Option<String>,
    /// Retention for a log group the agent creates (1, 3, 5, 7, 14, 30, … 3653 days).
    #[arg(long, value_name = "DAYS", allow_negative_numbers = true)]
    pub cloudwatch_retention_days: Option<String>,
    /// AWS Region for CloudWatch [default: the SDK's chain].
    #[arg(long, value_name = "REGION")]
    pub cloudwatch_region: Option<String>,
    /// CloudWatch Logs endpoint URL, e.g. a local test server.
    #[arg(long, value_name = "URL")]
    pub cloudwatch_endpoint: Option<String>,
    /// How often new lines are shipped to CloudWatch [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub cloudwatch_flush_interval: Option<String>,
    /// Watch this directory of Kubernetes YAML as the policy source [default: the Kubernetes API].
    #[arg(long, value_name = "DIR")]
    pub policy_dir: Option<String>,
    /// Kubeconfig for the Kubernetes API source [default: in-cluster].
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<String>,
    /// API server URL, overriding the kubeconfig's.
    #[arg(long, value_name = "URL")]
    pub apiserver: Option<String>,
    /// networkpolicy|policyendpoint: which API objects carry the policies (policyendpoint:
    /// the EKS controller's PolicyEndpoints) [default: networkpolicy].
    #[arg(long, value_name = "KIND")]
    pub policy_source: Option<String>,
    /// auto|tcx|netlink: how classifiers attach [default: auto].
    #[arg(long, value_name = "MODE")]
    pub attach_mode: Option<String>,
    /// Directory under bpffs for every pin [default: /sys/fs/bpf/netpol-agent].
    #[arg(long, value_name = "DIR")]
    pub bpffs_pin_dir: Option<String>,
    /// Host veth name prefix of the CNI (env AWS_VPC_K8S_CNI_VETHPREFIX) [default: eni].
    #[arg(long, value_name = "PREFIX")]
    pub veth_prefix: Option<String>,
    /// Unix socket of the VPC CNI's hook (EnforceNpToPod, DeletePodNp) [default:
    /// /var/run/aws-node/npa.sock with the Kubernetes API source, none with --policy-dir].
    #[arg(long, value_name = "PATH")]
    pub npa_socket_path: Option<String>,
}

macro_rules! given {
    ($self:ident; $($field:ident),* $(,)?) => {
        vec![$((stringify!($field), $self.$field.as_deref())),*]
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| (key, v)))
            .collect()
    };
}

impl RunArgs {
    /// The setting flags that were given, as (setting key, text), in declaration order.
    #[must_use]
    pub fn given(&self) -> Vec<(&'static str, &str)> {
        given!(self;
            enable_network_policy, enable_ipv6, enforcing_mode, enable_policy_event_logs,
            enable_cloudwatch_logs, log_file, log_file_max_size, log_file_max_backups,
            log_file_max_age, log_file_min_age, log_file_compress_grace, flow_log_flush_interval,
            flow_log_scope, flow_log_format, flow_records, flow_record_interval,
            deny_fold_window, ring_buffer_size, policy_hash_entries,
            metrics_bind_addr,
            health_probe_bind_addr, conntrack_cache_cleanup_period, conntrack_cache_table_size,
            log_level, log_format, operational_log_file, max_concurrent_reconciles, cluster_name, node_name,
            cloudwatch_log_group, cloudwatch_log_stream, cloudwatch_retention_days,
            cloudwatch_region, cloudwatch_endpoint, cloudwatch_flush_interval, policy_dir,
            kubeconfig, apiserver, policy_source, attach_mode, bpffs_pin_dir, veth_prefix, npa_socket_path,
        )
    }
}
