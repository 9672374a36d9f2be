//! `netpol-agent lint`: the EKS user guide's cautions and the usual NetworkPolicy
//! mistakes (`policy::lint`), cluster policy findings included, over a policy directory
//! or the cluster, printed one line
//! per warning or as one JSON object; the caller exits 1 when there is any warning.

use anyhow::Result;
use policy::lint::{Warning, lint};
use serde_json::{Value, json};

use crate::explain::{ClusterInput, mode_name};

/// `netpol-agent lint` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct LintArgs {
    #[command(flatten)]
    pub input: ClusterInput,
    /// One JSON object: {"warnings": [...], "count": N, "mode": ...}.
    #[arg(long)]
    pub json: bool,
}

/// Runs `lint`, prints its report and says whether it found nothing.
///
/// # Errors
/// The input cannot be read.
pub fn run(args: &LintArgs) -> Result<bool> {
    let state = args.input.read()?;
    let warnings = lint(&state, args.input.mode);
    if args.json {
        println!("{}", to_json(&warnings, args.input.mode));
    } else {
        for w in &warnings {
            println!("{w}");
        }
        match warnings.len() {
            0 => println!("no warnings ({} mode)", mode_name(args.input.mode)),
            n => println!("{n} warning(s) ({} mode)", mode_name(args.input.mode)),
        }
    }
    Ok(warnings.is_empty())
}

/// The `--json` object.
pub fn to_json(warnings: &[Warning], mode: policy::EnforcingMode) -> Value {
    let items: Vec<Value> = warnings
        .iter()
        .map(|w| {
            json!({
                "code": w.caution.code(),
                "policies": w.policies.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "cluster_policies": w.cluster_policies,
                "pods": w.pods.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "message": w.message,
            })
        })
        .collect();
    json!({"count": warnings.len(), "mode": mode_name(mode), "warnings": items})
}
