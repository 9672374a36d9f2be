//! `AgentConfig`, the one resolved configuration the agent runs with, and its defaults.
//!
//! Every field is one setting, named like its flag (`log_file_max_size` is
//! `--log-file-max-size`, and the key `log_file_max_size` in a config file). Defaults marked
//! "incumbent" are the EKS network policy agent's own (its `pkg/config` and logger, v1.4.x).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::values::{
    AttachMode, BindAddr, EnforcingMode, FlowLogScope, LineFormat, LogFormat, LogLevel,
    PolicyObjects,
};

/// Default values, one named constant per setting that has one.
pub mod defaults {
    use std::time::Duration;

    use crate::values::{
        AttachMode, BindAddr, EnforcingMode, FlowLogScope, LineFormat, LogLevel, PolicyObjects,
    };

    /// Incumbent: `--enable-network-policy=false`.
    pub const ENABLE_NETWORK_POLICY: bool = false;
    /// Incumbent: `--enable-ipv6=false`.
    pub const ENABLE_IPV6: bool = false;
    /// Incumbent: `NETWORK_POLICY_ENFORCING_MODE` unset means standard.
    pub const ENFORCING_MODE: EnforcingMode = EnforcingMode::Standard;
    /// Incumbent: `--enable-policy-event-logs=false`.
    pub const ENABLE_POLICY_EVENT_LOGS: bool = false;
    /// Incumbent: `--enable-cloudwatch-logs=false`.
    pub const ENABLE_CLOUDWATCH_LOGS: bool = false;
    /// Incumbent: `--log-file` (the file the EKS guide and its Fluent Bit example read).
    pub const LOG_FILE: &str = "/var/log/aws-routed-eni/network-policy-agent.log";
    /// Incumbent: `--log-file-max-size=200` (MB).
    pub const LOG_FILE_MAX_SIZE_MB: u64 = 200;
    /// Incumbent: `--log-file-max-backups=8`.
    pub const LOG_FILE_MAX_BACKUPS: u32 = 8;
    /// Incumbent: 30 days (its logger's `MaxAge`).
    pub const LOG_FILE_MAX_AGE_DAYS: u32 = 30;
    /// Ours: a file is at least this old before it is rotated, so Fluent Bit's directory
    /// scan always discovers it.
    pub const LOG_FILE_MIN_AGE: Duration = Duration::from_secs(30);
    /// Ours: a rotated file is compressed only after this grace (Fluent Bit's Rotate_Wait is 5 s).
    pub const LOG_FILE_COMPRESS_GRACE: Duration = Duration::from_secs(60);
    /// Ours: buffered flow-log lines are written at least this often.
    pub const FLOW_LOG_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
    /// Ours: both verdicts are logged (the incumbent logs both when event logs are on).
    pub const FLOW_LOG_SCOPE: FlowLogScope = FlowLogScope::All;
    /// Ours: our JSON line.
    pub const FLOW_LOG_FORMAT: LineFormat = LineFormat::Json;
    /// Ours: no flow records unless asked (every DNS query would become a record, and
    /// CloudWatch bills per byte).
    pub const FLOW_RECORDS: bool = false;
    /// Ours: a long flow's record every minute, as VPC Flow Logs' shortest aggregation.
    pub const FLOW_RECORD_INTERVAL: Duration = Duration::from_secs(60);
    /// Ours: repeated DENYs of one flow within this window fold into one line with a count.
    pub const DENY_FOLD_WINDOW: Duration = Duration::from_secs(1);
    /// Ours: kernel ring buffer bytes (the incumbent's is 512 KiB and loses events past
    /// ~115k events/s).
    pub const RING_BUFFER_SIZE: u32 = 4 * 1024 * 1024;
    /// Ours: entries each policy hash (IPv4, IPv6) holds before entries overflow into
    /// the slower trie; the buckets cost 16 bytes per entry of capacity up front.
    pub const POLICY_HASH_ENTRIES: u32 = 256 * 1024;
    pub const POLICY_HASH_ENTRIES_RANGE: std::ops::RangeInclusive<u32> = 1024..=4 * 1024 * 1024;
    /// Incumbent: `--metrics-bind-addr=:8162`.
    pub const METRICS_BIND_ADDR: BindAddr = BindAddr::any(8162);
    /// Incumbent: `--health-probe-bind-addr=:8163`.
    pub const HEALTH_PROBE_BIND_ADDR: BindAddr = BindAddr::any(8163);
    /// Incumbent: `--conntrack-cache-cleanup-period=300` (seconds).
    pub const CONNTRACK_CACHE_CLEANUP_PERIOD: Duration = Duration::from_secs(300);
    /// Incumbent: `--conntrack-cache-table-size=524288` (512 Ki entries).
    pub const CONNTRACK_CACHE_TABLE_SIZE: u32 = 512 * 1024;
    /// Incumbent: the accepted table sizes, 32 Ki to 1 Mi entries.
    pub const CONNTRACK_CACHE_TABLE_SIZE_RANGE: std::ops::RangeInclusive<u32> =
        32 * 1024..=1024 * 1024;
    /// Incumbent: `--log-level=debug` (its current default; older releases used info).
    pub const LOG_LEVEL: LogLevel = LogLevel::Debug;
    /// Incumbent: `--max-concurrent-reconciles=3`.
    pub const MAX_CONCURRENT_RECONCILES: u32 = 3;
    /// Ours: how often the CloudWatch shipper sends what the file has gained.
    pub const CLOUDWATCH_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
    /// Ours: NetworkPolicies, which every cluster has.
    pub const POLICY_SOURCE: PolicyObjects = PolicyObjects::NetworkPolicy;
    /// Ours: TCX when the kernel has it, netlink otherwise.
    pub const ATTACH_MODE: AttachMode = AttachMode::Auto;
    /// Ours: every pin lives under this directory.
    pub const BPFFS_PIN_DIR: &str = "/sys/fs/bpf/netpol-agent";
    /// The VPC CNI's default host veth prefix.
    pub const VETH_PREFIX: &str = "eni";
    /// Where the VPC CNI plugin dials the agent (its `npaSocketPath`).
    pub const NPA_SOCKET_PATH: &str = "/var/run/aws-node/npa.sock";
    /// Incumbent: log group of an EKS cluster, `{cluster}` replaced by its name.
    pub const CLOUDWATCH_EKS_GROUP: &str = "/aws/eks/{cluster}/cluster";
    /// Incumbent: log group when the cluster name is unknown (self-managed clusters).
    pub const CLOUDWATCH_SELF_MANAGED_GROUP: &str = "/aws/k8s-cluster/cluster";
    /// Incumbent: log stream prefix; we append the node name.
    pub const CLOUDWATCH_STREAM_PREFIX: &str = "aws-network-policy-agent-audit-";
}

/// The resolved configuration of `netpol-agent run`.
///
/// Built by [`crate::load`] from defaults < EKS add-on JSON < config file < environment <
/// flags. Serialize it to show the effective configuration; it deserializes from the same
/// keys (unknown keys rejected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Enforce NetworkPolicies (`--enable-network-policy`). Off, the agent only serves
    /// metrics and health, like the incumbent.
    pub enable_network_policy: bool,
    /// The incumbent's IPv6 cluster mode (`--enable-ipv6`). Our datapath is dual-stack
    /// either way; this selects the node address family for the policy source.
    pub enable_ipv6: bool,
    /// What a new pod gets before its policies are programmed (env
    /// `NETWORK_POLICY_ENFORCING_MODE`, standard|strict).
    pub enforcing_mode: EnforcingMode,
    /// Write flow-log lines (`--enable-policy-event-logs`).
    pub enable_policy_event_logs: bool,
    /// Ship flow-log lines to CloudWatch Logs (`--enable-cloudwatch-logs`); needs
    /// `enable_policy_event_logs`.
    pub enable_cloudwatch_logs: bool,
    /// The flow-log file (`--log-file`), rotated by rename-then-create.
    pub log_file: PathBuf,
    /// Rotate the flow-log file at this size, in MB (`--log-file-max-size`).
    pub log_file_max_size: u64,
    /// Rotated flow-log files kept (`--log-file-max-backups`).
    pub log_file_max_backups: u32,
    /// Rotated flow-log files older than this many days are removed (`--log-file-max-age`);
    /// 0 keeps them regardless of age.
    pub log_file_max_age: u32,
    /// Minimum age of the live file before a rotation (`--log-file-min-age`).
    #[serde(with = "crate::values::duration_serde")]
    pub log_file_min_age: Duration,
    /// Wait this long after a rotation before compressing the rotated file
    /// (`--log-file-compress-grace`).
    #[serde(with = "crate::values::duration_serde")]
    pub log_file_compress_grace: Duration,
    /// Buffered flow-log lines reach the file at least this often
    /// (`--flow-log-flush-interval`).
    #[serde(with = "crate::values::duration_serde")]
    pub flow_log_flush_interval: Duration,
    /// Which verdicts become lines (`--flow-log-scope`, all|deny|none).
    pub flow_log_scope: FlowLogScope,
    /// Line format (`--flow-log-format`, json|compat-v1.3).
    pub flow_log_format: LineFormat,
    /// Flow records in the flow log (`--flow-records`): packets and bytes per flow both
    /// ways, at the flow's end and every `flow_record_interval`.
    pub flow_records: bool,
    /// A record of a long flow at least this often (`--flow-record-interval`); 0: only
    /// at the flow's end.
    #[serde(with = "crate::values::duration_serde")]
    pub flow_record_interval: Duration,
    /// Repeated DENYs of one flow within this window fold into one line with a count
    /// (`--deny-fold-window`); 0 disables folding.
    #[serde(with = "crate::values::duration_serde")]
    pub deny_fold_window: Duration,
    /// Kernel ring buffer size in bytes (`--ring-buffer-size`): a power of two, at least
    /// one page.
    pub ring_buffer_size: u32,
    /// Entries each kernel policy hash holds (`--policy-hash-entries`), 1024 to
    /// 4194304; past it, entries go to the trie (same verdicts, slower lookups).
    pub policy_hash_entries: u32,
    /// Metrics listen address (`--metrics-bind-addr`).
    pub metrics_bind_addr: BindAddr,
    /// Health probe listen address (`--health-probe-bind-addr`).
    pub health_probe_bind_addr: BindAddr,
    /// How often stale conntrack entries are swept (`--conntrack-cache-cleanup-period`,
    /// seconds or a duration).
    #[serde(with = "crate::values::duration_serde")]
    pub conntrack_cache_cleanup_period: Duration,
    /// Conntrack map entries (`--conntrack-cache-table-size`), 32768 to 1048576.
    pub conntrack_cache_table_size: u32,
    /// Operational log verbosity (`--log-level`).
    pub log_level: LogLevel,
    /// Operational log format (`--log-format`, text|json); unset means json when the
    /// operational log is not a terminal (a DaemonSet's `kubectl logs`, a file), text on one.
    pub log_format: Option<LogFormat>,
    /// Operational log file (`--operational-log-file`); unset means stderr. Rotated daily
    /// (lines go to `PATH.YYYY-MM-DD`). Never the flow-log file.
    pub operational_log_file: Option<PathBuf>,
    /// Accepted for compatibility with the incumbent (`--max-concurrent-reconciles`).
    pub max_concurrent_reconciles: u32,
    /// Cluster name (env `CLUSTER_NAME`, `--cluster-name`); names the CloudWatch group.
    pub cluster_name: Option<String>,
    /// This node's name (env `MY_NODE_NAME`, `--node-name`); selects local pods and names
    /// the CloudWatch stream.
    pub node_name: Option<String>,
    /// CloudWatch log group (`--cloudwatch-log-group`); unset means the incumbent's
    /// `/aws/eks/<cluster>/cluster`, or `/aws/k8s-cluster/cluster` without a cluster name.
    pub cloudwatch_log_group: Option<String>,
    /// CloudWatch log stream (`--cloudwatch-log-stream`); unset means
    /// `aws-network-policy-agent-audit-<node>`.
    pub cloudwatch_log_stream: Option<String>,
    /// Retention set on a log group the agent creates (`--cloudwatch-retention-days`);
    /// unset leaves the group's retention alone.
    pub cloudwatch_retention_days: Option<u32>,
    /// AWS Region for CloudWatch (`--cloudwatch-region`); unset uses the SDK's chain.
    pub cloudwatch_region: Option<String>,
    /// CloudWatch Logs endpoint URL (`--cloudwatch-endpoint`), e.g. a local test server.
    pub cloudwatch_endpoint: Option<String>,
    /// How often the shipper sends new lines (`--cloudwatch-flush-interval`).
    #[serde(with = "crate::values::duration_serde")]
    pub cloudwatch_flush_interval: Duration,
    /// Watch this directory of Kubernetes YAML (Namespaces, Pods, NetworkPolicies) as the
    /// policy source (`--policy-dir`); unset means the Kubernetes API.
    pub policy_dir: Option<PathBuf>,
    /// Kubeconfig for the Kubernetes API source (`--kubeconfig`); unset means in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// API server URL overriding the kubeconfig's (`--apiserver`).
    pub apiserver: Option<String>,
    /// Which API objects carry the policies when they come from the Kubernetes API
    /// (`--policy-source`): NetworkPolicies, or the EKS controller's PolicyEndpoints.
    /// Ignored with `policy_dir`.
    pub policy_source: PolicyObjects,
    /// How classifiers attach (`--attach-mode`, auto|tcx|netlink).
    pub attach_mode: AttachMode,
    /// Directory under bpffs that holds every pin of ours (`--bpffs-pin-dir`).
    pub bpffs_pin_dir: PathBuf,
    /// The CNI's host veth name prefix (`--veth-prefix`, env
    /// `AWS_VPC_K8S_CNI_VETHPREFIX` as the VPC CNI reads it): a pod's interface is the
    /// prefix and 11 hex digits of sha1("<namespace>.<name>").
    pub veth_prefix: String,
    /// Where the VPC CNI's hook is served (`--npa-socket-path`); unset means the CNI's
    /// `/var/run/aws-node/npa.sock` with the Kubernetes API source and no hook with a
    /// policy directory (the lab and tests, where no CNI calls). See
    /// [`AgentConfig::cni_hook_socket`].
    pub npa_socket_path: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        use defaults as d;
        Self {
            enable_network_policy: d::ENABLE_NETWORK_POLICY,
            enable_ipv6: d::ENABLE_IPV6,
            enforcing_mode: d::ENFORCING_MODE,
            enable_policy_event_logs: d::ENABLE_POLICY_EVENT_LOGS,
            enable_cloudwatch_logs: d::ENABLE_CLOUDWATCH_LOGS,
            log_file: PathBuf::from(d::LOG_FILE),
            log_file_max_size: d::LOG_FILE_MAX_SIZE_MB,
            log_file_max_backups: d::LOG_FILE_MAX_BACKUPS,
            log_file_max_age: d::LOG_FILE_MAX_AGE_DAYS,
            log_file_min_age: d::LOG_FILE_MIN_AGE,
            log_file_compress_grace: d::LOG_FILE_COMPRESS_GRACE,
            flow_log_flush_interval: d::FLOW_LOG_FLUSH_INTERVAL,
            flow_log_scope: d::FLOW_LOG_SCOPE,
            flow_log_format: d::FLOW_LOG_FORMAT,
            flow_records: d::FLOW_RECORDS,
            flow_record_interval: d::FLOW_RECORD_INTERVAL,
            deny_fold_window: d::DENY_FOLD_WINDOW,
            ring_buffer_size: d::RING_BUFFER_SIZE,
            policy_hash_entries: d::POLICY_HASH_ENTRIES,
            metrics_bind_addr: d::METRICS_BIND_ADDR,
            health_probe_bind_addr: d::HEALTH_PROBE_BIND_ADDR,
            conntrack_cache_cleanup_period: d::CONNTRACK_CACHE_CLEANUP_PERIOD,
            conntrack_cache_table_size: d::CONNTRACK_CACHE_TABLE_SIZE,
            log_level: d::LOG_LEVEL,
            log_format: None,
            operational_log_file: None,
            max_concurrent_reconciles: d::MAX_CONCURRENT_RECONCILES,
            cluster_name: None,
            node_name: None,
            cloudwatch_log_group: None,
            cloudwatch_log_stream: None,
            cloudwatch_retention_days: None,
            cloudwatch_region: None,
            cloudwatch_endpoint: None,
            cloudwatch_flush_interval: d::CLOUDWATCH_FLUSH_INTERVAL,
            policy_dir: None,
            kubeconfig: None,
            apiserver: None,
            attach_mode: d::ATTACH_MODE,
            bpffs_pin_dir: PathBuf::from(d::BPFFS_PIN_DIR),
            veth_prefix: d::VETH_PREFIX.to_string(),
            policy_source: d::POLICY_SOURCE,
            npa_socket_path: None,
        }
    }
}

/// Where policies come from, as chosen by `policy_dir`, `kubeconfig` and `apiserver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource<'a> {
    /// A directory of Kubernetes YAML, watched for changes.
    Dir(&'a Path),
    /// The Kubernetes API: in-cluster unless a kubeconfig is given.
    Kubernetes {
        /// `--kubeconfig`, if given.
        kubeconfig: Option<&'a Path>,
        /// `--apiserver`, if given.
        apiserver: Option<&'a str>,
    },
}

impl AgentConfig {
    /// The policy source these settings select.
    #[must_use]
    pub fn policy_source(&self) -> PolicySource<'_> {
        match &self.policy_dir {
            Some(dir) => PolicySource::Dir(dir),
            None => PolicySource::Kubernetes {
                kubeconfig: self.kubeconfig.as_deref(),
                apiserver: self.apiserver.as_deref(),
            },
        }
    }

    /// The socket the CNI hook serves on: `--npa-socket-path` if given, else the CNI's
    /// own path when policies come from the Kubernetes API (a cluster node, where the
    /// CNI calls), else none.
    #[must_use]
    pub fn cni_hook_socket(&self) -> Option<PathBuf> {
        match (&self.npa_socket_path, self.policy_source()) {
            (Some(path), _) => Some(path.clone()),
            (None, PolicySource::Kubernetes { .. }) => {
                Some(PathBuf::from(defaults::NPA_SOCKET_PATH))
            }
            (None, PolicySource::Dir(_)) => None,
        }
    }

    /// The CloudWatch log group: the configured one, else the incumbent's
    /// `/aws/eks/<cluster>/cluster`, else `/aws/k8s-cluster/cluster`.
    #[must_use]
    pub fn effective_log_group(&self) -> String {
        match (&self.cloudwatch_log_group, &self.cluster_name) {
            (Some(group), _) => group.clone(),
            (None, Some(cluster)) => defaults::CLOUDWATCH_EKS_GROUP.replace("{cluster}", cluster),
            (None, None) => defaults::CLOUDWATCH_SELF_MANAGED_GROUP.to_string(),
        }
    }

    /// The CloudWatch log stream: the configured one, else
    /// `aws-network-policy-agent-audit-<node>`, with `fallback_id` (e.g. the host name)
    /// standing in for an unknown node name.
    #[must_use]
    pub fn effective_log_stream(&self, fallback_id: &str) -> String {
        match (&self.cloudwatch_log_stream, &self.node_name) {
            (Some(stream), _) => stream.clone(),
            (None, Some(node)) => format!("{}{node}", defaults::CLOUDWATCH_STREAM_PREFIX),
            (None, None) => format!("{}{fallback_id}", defaults::CLOUDWATCH_STREAM_PREFIX),
        }
    }

    /// The configuration as YAML, in the config-file format (for `config show`).
    ///
    /// # Errors
    /// Only if serialization fails, which these field types never do.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }
}
