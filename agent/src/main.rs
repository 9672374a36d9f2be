//! The `netpol-agent` command: parses the command line, sets up the operational log
//! (stderr, or its own file; never the flow-log file) and dispatches.

use anyhow::Result;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "netpol-agent", version, about = "Kubernetes NetworkPolicy agent with eBPF enforcement and flow logs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent on this node.
    Run(Box<config::RunArgs>),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let config = config::load(&args, &config::process_env)?;
            init_tracing(&config.log_level.to_string());
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let shutdown = CancellationToken::new();
                let signals = shutdown.clone();
                tokio::spawn(async move {
                    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                    signals.cancel();
                });
                agent::daemon::run(config, shutdown, None).await
            })
        }
    }
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETPOL_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
