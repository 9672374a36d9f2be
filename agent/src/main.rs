//! The `netpol-agent` command: parses the command line, sets up the operational log
//! (stderr, or its own daily-rotated file; never the flow-log file; see `agent::logging`)
//! and dispatches.

use std::{path::PathBuf, time::Duration};

use agent::lab::{
    self,
    probe::{Family, ProbeSpec, Protocol},
};
use agent::logging::{self, LogGuard, Output};
use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "netpol-agent",
    version,
    about = "Kubernetes NetworkPolicy agent with eBPF enforcement and flow logs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent on this node.
    Run(Box<config::RunArgs>),
    /// Check configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// A local lab: a node and pods as network namespaces, with real enforcement.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
        /// Where the lab keeps its state.
        #[arg(long, global = true, default_value = lab::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// What the kernel holds: programs, maps, pods, policy entries, conntrack, events.
    Ebpf {
        #[command(subcommand)]
        command: EbpfCommand,
        /// The agent's bpffs pin directory.
        #[arg(long, global = true, default_value = config::defaults::BPFFS_PIN_DIR)]
        bpffs_pin_dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        /// Name interfaces as this network namespace sees them (e.g. a lab's node).
        #[arg(long, global = true)]
        netns: Option<String>,
    },
    /// Why a connection is allowed or denied: each direction's verdict, the rule that
    /// allows or the policies that isolate, by the agent's own engine.
    Explain(agent::explain::ExplainArgs),
    /// The EKS guide's cautions and the usual policy mistakes; exit 1 on any warning,
    /// 2 when the input cannot be read.
    Lint(agent::lint::LintArgs),
    /// The Stars demo of the EKS user guide on the lab, step by step.
    Demo {
        #[arg(long, default_value = lab::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum EbpfCommand {
    /// Loaded programs and the interfaces they are attached to.
    Progs,
    /// Maps with their capacity and fill.
    Maps,
    /// Pod records: interface, states, addresses, policy set.
    Pods,
    /// Policy entries: peer prefix and rules (with policy names) per pod and direction.
    Policies,
    /// Conntrack entries.
    Conntrack,
    /// Follow the verdicts the agent writes (its flow-log file).
    Events {
        #[arg(long, default_value = config::defaults::LOG_FILE)]
        log_file: PathBuf,
        /// Stop after this long (default: follow until interrupted).
        #[arg(long, value_parser = config::parse_duration)]
        duration: Option<Duration>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a config file or an EKS add-on configuration JSON; every error with line and column.
    Validate { file: PathBuf },
}

#[derive(Subcommand)]
enum LabCommand {
    /// Build the lab from a directory of Kubernetes YAML (Namespaces, Pods, NetworkPolicies).
    Up {
        dir: PathBuf,
        /// NETWORK_POLICY_ENFORCING_MODE for the lab's agent.
        #[arg(long, default_value = "standard")]
        mode: String,
        #[arg(long, default_value = "1s")]
        deny_fold_window: String,
    },
    /// Replace policies and labels (and add or remove pods) while the lab is up.
    Apply { dir: PathBuf },
    /// Real connections between every pod pair, both families.
    Probe {
        #[arg(long, value_delimiter = ',', default_value = "80,81")]
        ports: Vec<u16>,
        #[arg(long, value_delimiter = ',', default_value = "tcp,udp")]
        protocols: Vec<Protocol>,
        #[arg(long, default_value = "1s", value_parser = config::parse_duration)]
        timeout: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Remove everything the lab made, even after a failure midway.
    Down,
    /// (internal) The servers inside one lab pod.
    #[command(hide = true)]
    Serve {
        #[arg(long = "listen")]
        listen: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Config {
            command: ConfigCommand::Validate { file },
        } => {
            let (diagnostics, omitted) = match config::check_file(&file) {
                Ok(report) => (report.diagnostics, report.omitted),
                Err(_) => (config::validate_file(&file), 0),
            };
            for d in &diagnostics {
                println!("{d}");
            }
            if omitted > 0 {
                println!(
                    "{}: ... and {omitted} more error(s) not shown (the first {} are)",
                    file.display(),
                    config::MAX_REPORTED
                );
            }
            if diagnostics.is_empty() {
                println!("{}: ok", file.display());
                Ok(())
            } else {
                bail!(
                    "{}: {} error(s)",
                    file.display(),
                    diagnostics.len() + omitted
                )
            }
        }
        Command::Lab { command, state_dir } => {
            let _log = init_interactive_log()?;
            lab_command(command, state_dir)
        }
        Command::Ebpf {
            command,
            bpffs_pin_dir,
            json,
            netns,
        } => {
            let pins = datapath::PinLayout::new(&bpffs_pin_dir);
            let _inside = netns.as_deref().map(netlab::enter_by_name).transpose()?;
            match command {
                EbpfCommand::Progs => agent::inspect::progs(&pins, json),
                EbpfCommand::Maps => agent::inspect::maps(&pins, json),
                EbpfCommand::Pods => agent::inspect::pods(&pins, json),
                EbpfCommand::Policies => agent::inspect::policies(&pins, json),
                EbpfCommand::Conntrack => agent::inspect::conntrack(&pins, json),
                EbpfCommand::Events { log_file, duration } => {
                    agent::inspect::events(&log_file, json, duration)
                }
            }
        }
        Command::Explain(args) => {
            let _log = init_interactive_log()?;
            agent::explain::run(&args)
        }
        Command::Lint(args) => {
            let log = init_interactive_log()?;
            // 1: warnings; 2: the input could not be read (as a usage error).
            let code = match agent::lint::run(&args) {
                Ok(true) => return Ok(()),
                Ok(false) => 1,
                Err(error) => {
                    eprintln!("Error: {error:#}");
                    2
                }
            };
            // `exit` runs no destructors: let the log write what it holds first.
            drop::<LogGuard>(log);
            std::process::exit(code)
        }
        Command::Demo { state_dir } => {
            let _log = init_interactive_log()?;
            println!(
                "Stars demo (EKS user guide) on a local lab: real namespaces, real eBPF enforcement, real flow logs."
            );
            agent::demo::run(&std::env::current_exe()?, &state_dir, |i, report| {
                print!("{}", agent::demo::render(i, report))
            })?;
            println!("\ndemo finished; the lab is cleaned up.");
            Ok(())
        }
    }
}

fn lab_command(command: LabCommand, state_dir: PathBuf) -> Result<()> {
    match command {
        LabCommand::Up {
            dir,
            mode,
            deny_fold_window,
        } => {
            let strict = match mode.as_str() {
                "strict" => true,
                "standard" => false,
                other => bail!("--mode {other:?}: expected standard or strict"),
            };
            let binary = std::env::current_exe()?;
            let state = lab::up(&lab::UpOptions {
                manifests: dir,
                binary,
                state_dir,
                strict,
                deny_fold_window,
            })?;
            for p in &state.pods {
                println!(
                    "{:30} {:16} {:24} {}",
                    p.pod.key(),
                    p.pod.ipv4,
                    p.pod.ipv6,
                    p.pod.host_if
                );
            }
            println!(
                "lab is up ({} mode); flow log: {}",
                state.mode,
                lab::LabState::flow_log(&state.state_dir).display()
            );
            Ok(())
        }
        LabCommand::Apply { dir } => {
            let state = lab::apply(&state_dir, &dir)?;
            println!("applied; {} pods", state.pods.len());
            Ok(())
        }
        LabCommand::Probe {
            ports,
            protocols,
            timeout,
            json,
        } => {
            let state = lab::LabState::load(&state_dir)?;
            let spec = ProbeSpec {
                ports,
                protocols,
                families: vec![Family::IPv4, Family::IPv6],
                timeout,
            };
            let probes = lab::probe::probe_all(&state.probe_targets(), &spec);
            if json {
                println!("{}", serde_json::json!({ "probes": probes }));
            } else {
                println!("{}", lab::probe::matrix_table(&probes));
            }
            Ok(())
        }
        LabCommand::Down => lab::down(&state_dir),
        LabCommand::Serve { listen } => {
            let mut ports = Vec::new();
            for l in listen {
                let (proto, port) = l
                    .split_once('/')
                    .ok_or_else(|| anyhow::anyhow!("--listen {l:?}: expected tcp/PORT"))?;
                ports.push((proto.to_ascii_uppercase(), port.parse()?));
            }
            lab::serve::serve(&ports)
        }
    }
}

fn run_daemon(args: config::RunArgs, config: config::AgentConfig) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let (reload_tx, reload_rx) = tokio::sync::watch::channel(config.clone());
        let signals = shutdown.clone();
        tokio::spawn(async move {
            let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else { return };
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = tokio::signal::ctrl_c() => break,
                    _ = hup.recv() => match config::load(&args, &config::process_env) {
                        Ok(next) => { let _ = reload_tx.send(next); }
                        Err(e) => tracing::error!(error = %e, "SIGHUP: the new configuration is invalid; keeping the current one"),
                    },
                }
            }
            signals.cancel();
        });
        agent::daemon::run(config, shutdown, None, Some(reload_rx)).await
    })
}

/// `run`: the configuration, the operational log, the listen addresses, then the daemon.
/// Once the log is up, a failure that stops the agent is logged (one JSON line when the
/// log is JSON) and, when the log is a file, also printed on stderr; the exit code is 1.
fn run(args: config::RunArgs) -> Result<()> {
    let config = config::load(&args, &config::process_env)?;
    let plan = logging::plan_for_process(
        config.log_level,
        config.log_format,
        config.operational_log_file.as_deref(),
    );
    let log = logging::init(&plan)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        filter = %plan.filter,
        format = %plan.format,
        "netpol-agent starting"
    );
    let Err(error) = check_listen_addresses(&config).and_then(|()| run_daemon(args, config)) else {
        return Ok(());
    };
    tracing::error!("{error:#}");
    // Writes what the file writer still holds; `exit` runs no destructors.
    drop::<LogGuard>(log);
    if plan.output != Output::Stderr {
        eprintln!("Error: {error:#}");
    }
    std::process::exit(1);
}

/// A listen address with a host that is not one of this host's (network namespace's)
/// addresses fails first with "address not available", naming the setting and the
/// address, before anything is loaded. Binding port 0 of the host tests the address
/// without touching the configured port.
fn check_listen_addresses(config: &config::AgentConfig) -> Result<()> {
    for (key, addr) in [
        ("metrics_bind_addr", config.metrics_bind_addr),
        ("health_probe_bind_addr", config.health_probe_bind_addr),
    ] {
        let Some(host) = addr.host else { continue };
        if let Err(e) = std::net::TcpListener::bind((host, 0))
            && e.kind() == std::io::ErrorKind::AddrNotAvailable
        {
            bail!(
                "address not available: {key} {addr}: {host} is not an address of this host ({e}); use one of its addresses or :{} for all",
                addr.port
            );
        }
    }
    Ok(())
}

/// The log of the interactive commands (lab, demo): warnings and errors, text on a
/// terminal and JSON otherwise, as for `run`.
fn init_interactive_log() -> Result<LogGuard> {
    let plan = logging::plan_for_process(config::LogLevel::Warn, None, None);
    Ok(logging::init(&plan)?)
}
