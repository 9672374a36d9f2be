//! The shipper's configuration, validated at start: where the files are, where the
//! events go (group, stream, region, endpoint), the message format, batching, retries.

use std::path::PathBuf;
use std::time::Duration;

use crate::batch::BatchLimits;
use crate::error::ShipperError;
use crate::event::MessageFormat;
use crate::limits::{
    MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_SPAN_MS, MAX_EVENT_BYTES, MAX_NAME_LEN,
    RETENTION_DAYS,
};
use crate::retry::BackoffConfig;

/// The live file's default name (the file sink's default).
pub const DEFAULT_LIVE_NAME: &str = "network-policy-agent.log";

/// The prefix of the per-node stream name: `aws-network-policy-agent-audit-<node name>`,
/// stable across restarts so that a restarted agent appends to the same stream.
pub const STREAM_PREFIX: &str = "aws-network-policy-agent-audit-";

/// Everything the shipper needs; build it with [`ShipperConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// The directory of the flow-log files.
    pub dir: PathBuf,
    /// The live file's name in `dir`.
    pub live_name: String,
    /// The cluster name (flag or `CLUSTER_NAME`).
    pub cluster_name: String,
    /// The node name (flag or `MY_NODE_NAME`).
    pub node_name: String,
    /// True for a self-managed cluster: group `/aws/k8s-cluster/cluster`.
    pub self_managed: bool,
    /// Overrides the log group.
    pub log_group: Option<String>,
    /// Overrides the log stream.
    pub log_stream: Option<String>,
    /// Retention set when the shipper creates the group; one of [`RETENTION_DAYS`].
    pub retention_days: Option<u32>,
    /// The AWS region; `None`: the default chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// An endpoint override (tests, private endpoints).
    pub endpoint_url: Option<String>,
    /// The message body.
    pub message_format: MessageFormat,
    /// Sends a partial batch once its oldest line waited this long.
    pub flush_interval: Duration,
    /// How often the live file is polled for new lines when caught up.
    pub poll_interval: Duration,
    /// Requests in flight at once on the stream (at least 2).
    pub max_in_flight: usize,
    /// Batch limits (the API's by default; smaller values for tests).
    pub batch: BatchLimits,
    /// Backoff of retried requests.
    pub backoff: BackoffConfig,
    /// Deadline of one HTTP attempt.
    pub request_timeout: Duration,
    /// Deadline of a TCP connect.
    pub connect_timeout: Duration,
    /// How long shutdown waits for in-flight requests before giving up (the lines stay
    /// on disk and are sent by the next run).
    pub shutdown_grace: Duration,
    /// Where the checkpoint is kept; `None`: `<dir>/.<live name>.cloudwatch-checkpoint`.
    pub checkpoint_path: Option<PathBuf>,
    /// fsync the checkpoint (and its directory) on each update.
    pub checkpoint_fsync: bool,
    /// Fixed credentials instead of the default chain (tests, local endpoints).
    pub credentials: Option<aws_sdk_cloudwatchlogs::config::Credentials>,
}

impl ShipperConfig {
    /// A configuration with the defaults: JSON bodies, 5 s flush interval, 4 requests in
    /// flight, the API's batch limits, backoff 200 ms doubling to 30 s.
    pub fn new(
        dir: impl Into<PathBuf>,
        cluster_name: impl Into<String>,
        node_name: impl Into<String>,
    ) -> Self {
        Self {
            dir: dir.into(),
            live_name: DEFAULT_LIVE_NAME.to_owned(),
            cluster_name: cluster_name.into(),
            node_name: node_name.into(),
            self_managed: false,
            log_group: None,
            log_stream: None,
            retention_days: None,
            region: None,
            endpoint_url: None,
            message_format: MessageFormat::Json,
            flush_interval: Duration::from_secs(5),
            poll_interval: Duration::from_millis(50),
            max_in_flight: 4,
            batch: BatchLimits::default(),
            backoff: BackoffConfig::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            checkpoint_path: None,
            checkpoint_fsync: true,
            credentials: None,
        }
    }

    /// The log group: the override, or `/aws/eks/<cluster>/cluster`, or
    /// `/aws/k8s-cluster/cluster` for a self-managed cluster (the EKS user guide's names).
    pub fn group_name(&self) -> String {
        match (&self.log_group, self.self_managed) {
            (Some(g), _) => g.clone(),
            (None, true) => "/aws/k8s-cluster/cluster".to_owned(),
            (None, false) => format!("/aws/eks/{}/cluster", self.cluster_name),
        }
    }

    /// The log stream: the override, or `aws-network-policy-agent-audit-<node name>` with
    /// the characters a stream may not hold (`:` and `*`) replaced by `_`.
    pub fn stream_name(&self) -> String {
        match &self.log_stream {
            Some(s) => s.clone(),
            None => format!("{STREAM_PREFIX}{}", self.node_name)
                .chars()
                .map(|c| if c == ':' || c == '*' { '_' } else { c })
                .collect(),
        }
    }

    /// The checkpoint's path.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.checkpoint_path
            .clone()
            .unwrap_or_else(|| crate::checkpoint::default_path(&self.dir, &self.live_name))
    }

    /// Checks every field against the API's and the shipper's rules.
    ///
    /// # Errors
    /// [`ShipperError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ShipperError> {
        let bad = |field, reason: String| Err(ShipperError::InvalidConfig { field, reason });
        let group = self.group_name();
        if group.is_empty() || group.len() > MAX_NAME_LEN {
            return bad(
                "log_group",
                format!("{group:?} must be 1 to {MAX_NAME_LEN} characters"),
            );
        }
        if let Some(c) = group
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._-/#".contains(*c)))
        {
            return bad(
                "log_group",
                format!("{group:?} holds {c:?}; allowed: [.-_/#A-Za-z0-9]"),
            );
        }
        if self.log_group.is_none() && !self.self_managed && self.cluster_name.is_empty() {
            return bad(
                "cluster_name",
                "empty (set CLUSTER_NAME or the log group)".into(),
            );
        }
        let stream = self.stream_name();
        if stream.is_empty() || stream.len() > MAX_NAME_LEN || stream.contains([':', '*']) {
            return bad(
                "log_stream",
                format!("{stream:?} must be 1 to {MAX_NAME_LEN} characters without ':' or '*'"),
            );
        }
        if self.log_stream.is_none() && self.node_name.is_empty() {
            return bad(
                "node_name",
                "empty (set MY_NODE_NAME or the log stream)".into(),
            );
        }
        if let Some(days) = self.retention_days
            && !RETENTION_DAYS.contains(&days)
        {
            return bad(
                "retention_days",
                format!("{days} is not one of {RETENTION_DAYS:?}"),
            );
        }
        if self.live_name.is_empty() || self.live_name.contains('/') {
            return bad(
                "live_name",
                format!("{:?} must be a plain file name", self.live_name),
            );
        }
        if self.max_in_flight < 2 {
            return bad("max_in_flight", format!("{} < 2", self.max_in_flight));
        }
        let b = &self.batch;
        if b.max_events == 0 || b.max_events > MAX_BATCH_EVENTS {
            return bad(
                "batch.max_events",
                format!("{} not in 1..={MAX_BATCH_EVENTS}", b.max_events),
            );
        }
        if b.max_bytes < MAX_EVENT_BYTES || b.max_bytes > MAX_BATCH_BYTES {
            return bad(
                "batch.max_bytes",
                format!(
                    "{} not in {MAX_EVENT_BYTES}..={MAX_BATCH_BYTES}",
                    b.max_bytes
                ),
            );
        }
        if b.max_span_ms <= 0 || b.max_span_ms > MAX_BATCH_SPAN_MS {
            return bad(
                "batch.max_span_ms",
                format!("{} not in 1..={MAX_BATCH_SPAN_MS}", b.max_span_ms),
            );
        }
        for (field, d) in [
            ("flush_interval", self.flush_interval),
            ("poll_interval", self.poll_interval),
            ("request_timeout", self.request_timeout),
            ("connect_timeout", self.connect_timeout),
            ("backoff.base", self.backoff.base),
        ] {
            if d.is_zero() {
                return bad(field, "must be more than zero".into());
            }
        }
        if self.backoff.cap < self.backoff.base {
            return bad("backoff.cap", "smaller than backoff.base".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ShipperConfig {
        ShipperConfig::new(
            "/var/log/aws-routed-eni",
            "prod",
            "ip-10-0-0-1.ec2.internal",
        )
    }

    #[test]
    fn group_follows_the_eks_guide_and_can_be_overridden() {
        let mut c = cfg();
        assert_eq!(c.group_name(), "/aws/eks/prod/cluster");
        c.self_managed = true;
        assert_eq!(c.group_name(), "/aws/k8s-cluster/cluster");
        c.log_group = Some("/mine".into());
        assert_eq!(c.group_name(), "/mine");
    }

    #[test]
    fn stream_is_stable_per_node_and_sanitised() {
        let mut c = cfg();
        assert_eq!(
            c.stream_name(),
            "aws-network-policy-agent-audit-ip-10-0-0-1.ec2.internal"
        );
        c.node_name = "a:b*c".into();
        assert_eq!(c.stream_name(), "aws-network-policy-agent-audit-a_b_c");
        c.validate().expect("sanitised stream is valid");
    }

    #[test]
    fn retention_must_be_an_allowed_value() {
        let mut c = cfg();
        for ok in [1, 14, 3653] {
            c.retention_days = Some(ok);
            c.validate().expect("allowed");
        }
        for bad in [0, 2, 10, 3654] {
            c.retention_days = Some(bad);
            assert!(
                matches!(
                    c.validate(),
                    Err(ShipperError::InvalidConfig {
                        field: "retention_days",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn invalid_names_and_limits_are_refused_with_the_field() {
        type Change = Box<dyn Fn(&mut ShipperConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "log_group",
                Box::new(|c| c.log_group = Some("bad group".into())),
            ),
            (
                "log_group",
                Box::new(|c| c.log_group = Some("g".repeat(513))),
            ),
            (
                "log_stream",
                Box::new(|c| c.log_stream = Some("a:b".into())),
            ),
            ("cluster_name", Box::new(|c| c.cluster_name.clear())),
            ("max_in_flight", Box::new(|c| c.max_in_flight = 1)),
            (
                "batch.max_events",
                Box::new(|c| c.batch.max_events = MAX_BATCH_EVENTS + 1),
            ),
            (
                "batch.max_bytes",
                Box::new(|c| c.batch.max_bytes = MAX_BATCH_BYTES + 1),
            ),
            (
                "batch.max_span_ms",
                Box::new(|c| c.batch.max_span_ms = MAX_BATCH_SPAN_MS + 1),
            ),
            (
                "flush_interval",
                Box::new(|c| c.flush_interval = Duration::ZERO),
            ),
        ];
        for (field, change) in cases {
            let mut c = cfg();
            change(&mut c);
            match c.validate() {
                Err(ShipperError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected an error, got {other:?}"),
            }
        }
        let mut c = cfg();
        c.log_group = Some("g".repeat(512));
        c.batch.max_events = MAX_BATCH_EVENTS;
        c.validate().expect("limits themselves are accepted");
    }
}
