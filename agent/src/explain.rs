//! `netpol-agent explain`: why a connection is allowed or denied, per direction, by
//! the agent's own engine (`policy::explain`), printed for people or as one JSON
//! object. Also owns the input `explain` and `lint` share: a policy directory (read
//! as the agent reads it) or the cluster through a kubeconfig (one complete list of
//! Namespaces, Pods and NetworkPolicies through the `k8s-source` watchers).
//!
//! With cluster policies (ClusterNetworkPolicy) in the input, each direction also
//! says which tier decided (Admin, NetworkPolicy, Baseline, Default, NodeLocal), the
//! cluster rule that decided, and the tier order as walked (an Admin Pass shows there).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use policy::explain::{
    ClusterMatch, DirectionVerdict, Endpoint, Explainer, Explanation, PeerEntry, Reason,
    StepOutcome, Target, TierStep, parse_source,
};
use policy::{ClusterState, Direction, EnforcingMode};
use serde_json::{Value, json};

/// How long the cluster may take to list everything once.
const LIST_DEADLINE: Duration = Duration::from_secs(60);

/// Where the cluster state comes from, and the enforcing mode to judge it in.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterInput {
    /// A directory of Kubernetes YAML (Namespaces, Pods, NetworkPolicies,
    /// ClusterNetworkPolicies), read as the agent's `--policy-dir` is.
    #[arg(
        long,
        conflicts_with = "kubeconfig",
        required_unless_present = "kubeconfig"
    )]
    pub policy_dir: Option<PathBuf>,
    /// Read the cluster through this kubeconfig (its current context).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// NETWORK_POLICY_ENFORCING_MODE to judge in: standard or strict.
    #[arg(long, default_value = "standard", value_parser = parse_mode)]
    pub mode: EnforcingMode,
}

/// `standard` or `strict`.
///
/// # Errors
/// Any other value, named.
pub fn parse_mode(s: &str) -> Result<EnforcingMode, String> {
    match s {
        "standard" => Ok(EnforcingMode::Standard),
        "strict" => Ok(EnforcingMode::Strict),
        other => Err(format!("{other:?}: expected standard or strict")),
    }
}

pub fn mode_name(mode: EnforcingMode) -> &'static str {
    match mode {
        EnforcingMode::Standard => "standard",
        EnforcingMode::Strict => "strict",
    }
}

impl ClusterInput {
    /// The cluster state. Documents of a policy directory that do not load are
    /// skipped as the agent skips them, each named on stderr.
    ///
    /// # Errors
    /// The directory cannot be read; the kubeconfig or the API server fails, or the
    /// first complete list takes longer than a minute.
    pub fn read(&self) -> Result<ClusterState> {
        match (&self.policy_dir, &self.kubeconfig) {
            (Some(dir), _) => read_policy_dir(dir),
            (None, Some(kubeconfig)) => read_cluster(kubeconfig),
            (None, None) => bail!("give --policy-dir DIR or --kubeconfig FILE"),
        }
    }
}

fn read_policy_dir(dir: &std::path::Path) -> Result<ClusterState> {
    let read = crate::source::DirReader::new(dir)
        .read()
        .map_err(anyhow::Error::msg)?
        .with_context(|| format!("--policy-dir {}: nothing to read", dir.display()))?;
    for rejected in &read.rejected {
        eprintln!("warning: {rejected} (skipped, as the agent skips it)");
    }
    Ok(read.state)
}

fn read_cluster(kubeconfig: &std::path::Path) -> Result<ClusterState> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let source = k8s_source::ClientSource::Kubeconfig(kubeconfig.to_path_buf());
        let client = k8s_source::client(&source, None)
            .await
            .with_context(|| format!("--kubeconfig {}", kubeconfig.display()))?;
        let (handle, snapshots) =
            k8s_source::KubeSource::start(client, k8s_source::SourceOptions::default());
        if tokio::time::timeout(LIST_DEADLINE, handle.wait_synced())
            .await
            .is_err()
        {
            let why = handle
                .health()
                .reason()
                .unwrap_or_else(|| "no answer".to_owned());
            bail!(
                "--kubeconfig {}: the cluster's Namespaces, Pods and NetworkPolicies were not listed within {} s: {why}",
                kubeconfig.display(),
                LIST_DEADLINE.as_secs()
            );
        }
        let state = snapshots.borrow().as_ref().clone();
        handle.shutdown();
        Ok(state)
    })
}

/// `netpol-agent explain` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ExplainArgs {
    /// The source: NAMESPACE/POD or an IP address.
    #[arg(long)]
    pub from: String,
    /// A destination: NAMESPACE/POD[:PORT[/PROTO]] or IP[:PORT[/PROTO]] ([IPv6]:PORT);
    /// repeat for several. Without a port, every port the pod declares.
    #[arg(long, required = true)]
    pub to: Vec<String>,
    #[command(flatten)]
    pub input: ClusterInput,
    /// One JSON object: "allowed" for all connections, and each connection's reasons.
    #[arg(long)]
    pub json: bool,
}

/// Runs `explain` and prints its report.
///
/// # Errors
/// The input cannot be read, or a `--from`/`--to` is malformed or names nothing.
pub fn run(args: &ExplainArgs) -> Result<()> {
    let state = args.input.read()?;
    let explainer = Explainer::new(&state, args.input.mode);
    let explanations = explain_all(&explainer, &args.from, &args.to)?;
    if args.json {
        println!("{}", to_json(&explanations, args.input.mode));
    } else {
        for e in &explanations {
            print!("{e}");
        }
        let allowed = explanations.iter().all(Explanation::allowed);
        let overall = if allowed { "allowed" } else { "denied" };
        println!("overall: {overall} ({} mode)", mode_name(args.input.mode));
    }
    Ok(())
}

/// Every connection from `from` to each of `to` (each port, each shared family).
///
/// # Errors
/// A malformed or unknown endpoint, named with its flag.
pub fn explain_all(explainer: &Explainer, from: &str, to: &[String]) -> Result<Vec<Explanation>> {
    let source: Endpoint = parse_source(from).with_context(|| "--from")?;
    let mut out = Vec::new();
    for input in to {
        let target = Target::parse(input).with_context(|| "--to")?;
        let ports = explainer.ports_of(input, &target).with_context(|| "--to")?;
        for (protocol, port) in ports {
            let found = explainer
                .explain(&source, &target.endpoint, protocol, port)
                .with_context(|| format!("--from {from} --to {input}"))?;
            out.extend(found);
        }
    }
    Ok(out)
}

fn cluster_json(m: &ClusterMatch) -> Value {
    json!({
        "policy": m.rule.policy,
        "tier": m.rule.tier.as_str(),
        "priority": m.rule.priority,
        "direction": m.rule.direction.as_str(),
        "rule": m.rule.rule_index,
        "name": m.rule.rule_name,
        "action": m.action.as_str(),
        "written": m.written.as_str(),
    })
}

fn step_json(step: &TierStep) -> Value {
    let (outcome, rule) = match &step.outcome {
        StepOutcome::Matched(m) => ("matched", cluster_json(m)),
        StepOutcome::NoMatch => ("no-match", Value::Null),
        StepOutcome::Selected => ("selected", Value::Null),
        StepOutcome::NotSelected => ("not-selected", Value::Null),
        StepOutcome::Decided => ("decided", Value::Null),
    };
    json!({"tier": step.tier.as_str(), "outcome": outcome, "rule": rule})
}

fn direction_json(v: &DirectionVerdict) -> Value {
    let allowed_by = match &v.reason {
        Reason::Allowed(rule) => {
            let field = match v.direction {
                Direction::Ingress => "from",
                Direction::Egress => "to",
            };
            let peer = match rule.peer {
                PeerEntry::Any => Value::from("any"),
                PeerEntry::Index(i) => Value::from(format!("{field}[{i}]")),
                PeerEntry::Unknown => Value::Null,
            };
            json!({
                "policy": rule.rule.policy.to_string(),
                "direction": rule.rule.direction.as_str(),
                "rule": rule.rule.rule_index,
                "peer": peer,
                "prefix": rule.prefix.to_string(),
            })
        }
        _ => Value::Null,
    };
    json!({
        "pod": v.pod.as_ref().map(ToString::to_string),
        "enforced": !matches!(v.reason, Reason::NotEnforced(_)),
        "allowed": v.allowed,
        "reason": v.reason.code(),
        "selected_by": v.selected_by.iter().map(|s| json!({
            "policy": s.policy.to_string(),
            "mode": s.mode.as_str(),
        })).collect::<Vec<_>>(),
        "isolated_by": v.isolated_by().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "allowed_by": allowed_by,
        "tier": v.tier.map(|t| t.as_str()),
        "cluster_rule": v.cluster_rule().map(cluster_json),
        "tiers": v.walk.iter().map(step_json).collect::<Vec<_>>(),
    })
}

/// The `--json` object: `allowed` (every connection passes both directions), the mode,
/// and per connection its ends, protocol, port, family and both directions' reasons.
pub fn to_json(explanations: &[Explanation], mode: EnforcingMode) -> Value {
    let connections: Vec<Value> = explanations
        .iter()
        .map(|e| {
            json!({
                "from": {"pod": e.from.pod.as_ref().map(ToString::to_string), "ip": e.from.ip.to_string()},
                "to": {"pod": e.to.pod.as_ref().map(ToString::to_string), "ip": e.to.ip.to_string()},
                "protocol": e.protocol.name(),
                "port": e.port,
                "family": if e.from.ip.is_ipv4() { "IPv4" } else { "IPv6" },
                "allowed": e.allowed(),
                "egress": direction_json(&e.egress),
                "ingress": direction_json(&e.ingress),
            })
        })
        .collect();
    json!({
        "allowed": explanations.iter().all(Explanation::allowed),
        "mode": mode_name(mode),
        "connections": connections,
    })
}
