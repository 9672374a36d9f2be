//! `netpol-agent run`: the daemon. Loads (or re-adopts) the datapath, follows the policy
//! source, runs the flow-log pipeline and the CloudWatch shipper, serves metrics and
//! health, and on shutdown flushes lines and the checkpoint and exits with enforcement
//! left pinned in the kernel.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use config::AgentConfig;
use datapath::{AttachMode, Datapath, LoadOptions, PinLayout};
use datapath_common::{EVENT_SCOPE_ALL, EVENT_SCOPE_DENY, EVENT_SCOPE_NONE, Settings};
use exporter::{
    EnrichmentSnapshot, FileSinkConfig, FlowScope, KernelCounters, LineFormat, Pipeline,
    PipelineConfig, SharedStats, snapshot_handle,
};
use policy::{ClusterState, EnforcingMode, ResolveOptions};
use telemetry::{HttpConfig, HttpServers, Metrics, Readiness};
use tokio_util::sync::CancellationToken;

use crate::{flow_records::ConntrackChores, flowlog::FlowLogThread, guard::InstanceGuard, source};
use enforcer::Enforcer;

/// What the kernel's settings map should hold for this configuration.
pub fn kernel_settings(config: &AgentConfig) -> Settings {
    let event_scope = if !config.enable_policy_event_logs {
        EVENT_SCOPE_NONE
    } else {
        match config.flow_log_scope {
            config::FlowLogScope::All => EVENT_SCOPE_ALL,
            config::FlowLogScope::Deny => EVENT_SCOPE_DENY,
            config::FlowLogScope::None => EVENT_SCOPE_NONE,
        }
    };
    Settings {
        fold_window_ns: config.deny_fold_window.as_nanos() as u64,
        wakeup_threshold_bytes: datapath::DEFAULT_WAKEUP_THRESHOLD_BYTES
            .min(config.ring_buffer_size as u64 / 4),
        event_scope,
        ..Settings::default()
    }
}

pub fn load_options(config: &AgentConfig) -> LoadOptions {
    LoadOptions {
        pins: PinLayout::new(&config.bpffs_pin_dir),
        ring_bytes: config.ring_buffer_size,
        conntrack_entries: config.conntrack_cache_table_size,
        policy_hash_entries: config.policy_hash_entries,
        fold_entries: datapath::DEFAULT_FOLD_ENTRIES,
        attach_mode: match config.attach_mode {
            config::AttachMode::Auto => AttachMode::Auto,
            config::AttachMode::Tcx => AttachMode::Tcx,
            config::AttachMode::Netlink => AttachMode::Netlink,
        },
        settings: kernel_settings(config),
    }
}

pub fn pipeline_config(config: &AgentConfig) -> PipelineConfig {
    PipelineConfig {
        format: match config.flow_log_format {
            config::LineFormat::Json => LineFormat::Json,
            config::LineFormat::CompatV13 => LineFormat::Compat,
        },
        scope: match config.flow_log_scope {
            config::FlowLogScope::All => FlowScope::All,
            config::FlowLogScope::Deny => FlowScope::Deny,
            config::FlowLogScope::None => FlowScope::None,
        },
        sink: FileSinkConfig {
            max_file_bytes: config.log_file_max_size * 1024 * 1024,
            max_backups: config.log_file_max_backups as usize,
            max_age: Duration::from_secs(u64::from(config.log_file_max_age) * 86_400),
            min_file_age: config.log_file_min_age,
            compress_grace: config.log_file_compress_grace,
            flush_interval: config.flow_log_flush_interval,
            ..FileSinkConfig::default()
        },
        ..PipelineConfig::default()
    }
}

pub fn resolve_options(config: &AgentConfig) -> ResolveOptions {
    ResolveOptions {
        node_name: config.node_name.clone().unwrap_or_default(),
        node_addresses: node_addresses(),
        mode: match config.enforcing_mode {
            config::EnforcingMode::Standard => EnforcingMode::Standard,
            config::EnforcingMode::Strict => EnforcingMode::Strict,
        },
    }
}

/// This network namespace's own addresses (the node's, for kubelet probes).
fn node_addresses() -> Vec<IpAddr> {
    datapath::links::local_addresses().unwrap_or_else(|err| {
        tracing::warn!(error = %err, "reading the node's addresses failed; none are allowed as node-local");
        Vec::new()
    })
}

/// The running daemon's shared parts, for tests and the lab.
pub struct Running {
    pub enforcer: Arc<Mutex<Enforcer>>,
    pub stats: Arc<SharedStats>,
    pub readiness: Readiness,
    pub metrics_addr: std::net::SocketAddr,
    pub health_addr: std::net::SocketAddr,
}

/// Runs the daemon until `shutdown` is cancelled; `started` gets the running parts and
/// every configuration sent on `reload` (SIGHUP) is applied where it can be live.
///
/// # Errors
/// Start-up failures (another agent holds the node, bpffs missing, ports taken,
/// unwritable log directory); once running, errors are logged and retried.
pub async fn run(
    config: AgentConfig,
    shutdown: CancellationToken,
    started: Option<tokio::sync::oneshot::Sender<Running>>,
    reload: Option<tokio::sync::watch::Receiver<AgentConfig>>,
) -> Result<()> {
    let _guard = InstanceGuard::acquire(&config.bpffs_pin_dir, &config.log_file)?;
    let readiness = Readiness::default();
    let http_config = HttpConfig {
        metrics_addr: config.metrics_bind_addr.socket_addr(),
        health_addr: config.health_probe_bind_addr.socket_addr(),
    };
    let snapshot = snapshot_handle(EnrichmentSnapshot {
        node_name: config.node_name.clone().unwrap_or_default().into(),
        ..EnrichmentSnapshot::default()
    });
    exporter::sink::warn_if_min_file_age_below_tailer_refresh(config.log_file_min_age);
    let pipeline = Pipeline::new(pipeline_config(&config), snapshot.clone(), &config.log_file)
        .with_context(|| format!("flow-log file {}", config.log_file.display()))?;
    let stats = pipeline.shared_stats();
    let mut metrics = Metrics::default();
    exporter::metrics::register(metrics.registry_mut(), stats.clone());
    // The shipper is built before the servers so its metrics are on the same endpoint.
    let shipper = if config.enable_cloudwatch_logs {
        let shipper = build_shipper(&config)?;
        shipper.metrics().register(metrics.registry_mut());
        Some(shipper)
    } else {
        None
    };
    let source_metrics = k8s_source::SourceMetrics::default();
    if matches!(
        config.policy_source(),
        config::PolicySource::Kubernetes { .. }
    ) {
        source_metrics.register(metrics.registry_mut());
    }
    let enforcement_metrics = enforcer::metrics::EnforcementMetrics::default();
    enforcement_metrics.register(metrics.registry_mut());
    let hook_metrics = cni_hook::HookMetrics::default();
    hook_metrics.register(metrics.registry_mut());
    let metrics = Arc::new(metrics);
    let servers = HttpServers::bind(&http_config, metrics, readiness.clone())
        .await
        .context("another agent (a second netpol-agent, or the incumbent aws-network-policy-agent) may hold these ports")?;
    let (metrics_addr, health_addr) = (servers.metrics_addr(), servers.health_addr());
    let http_stop = shutdown.clone();
    let http = tokio::spawn(async move {
        servers
            .serve(async move { http_stop.cancelled().await })
            .await
    });

    let mut dp = Datapath::load(&load_options(&config)).context("loading the datapath")?;
    let reader = dp.take_event_reader().context("event reader")?;
    let binding = enforcer::binding::BindingOptions::new(&config.veth_prefix)
        .map_err(anyhow::Error::msg)
        .context("veth_prefix")?;
    let mut enforcer = Enforcer::new(dp, resolve_options(&config), snapshot)
        .with_binding(binding)
        .with_unbound_gauge(enforcement_metrics.pods_unbound.clone());
    // On a node (policies from the API), the incumbent agent's filters and pins are
    // taken over after our first complete apply; a lab or demo agent in a namespace
    // never touches the node's bpffs (deploy/README.md, "Migrating").
    if matches!(
        config.policy_source(),
        config::PolicySource::Kubernetes { .. }
    ) {
        enforcer = enforcer.with_incumbent_takeover(datapath::incumbent::INCUMBENT_PIN_ROOT);
    }
    let enforcer = Arc::new(Mutex::new(enforcer));
    // The VPC CNI's hook: bound before anything else runs, so a CNI ADD that comes
    // while we start waits in the socket's backlog instead of failing.
    let cni_hook_task = match config.cni_hook_socket() {
        Some(path) => {
            let server = cni_hook::HookServer::bind(&path).context("npa_socket_path")?;
            let hook = Arc::new(enforcer::cni::EnforcerHook::new(enforcer.clone()));
            Some(tokio::spawn(server.serve(
                hook,
                hook_metrics,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let links_changed = Arc::new(tokio::sync::Notify::new());
    let link_watcher = enforcer::link_watch::spawn_watcher(links_changed.clone(), shutdown.clone());
    let (ct_chores, record_inbox) = ConntrackChores::new(
        crate::flow_records::record_options(&config),
        config.conntrack_cache_cleanup_period,
    );
    let flow_log = FlowLogThread::spawn_with_records(
        reader,
        pipeline,
        crate::flowlog::DEFAULT_POLL_INTERVAL,
        record_inbox,
    )?;
    tracing::info!(pins = %config.bpffs_pin_dir.display(), log_file = %config.log_file.display(), %metrics_addr, %health_addr, "netpol-agent running");

    let (state_tx, mut state_rx) = tokio::sync::watch::channel::<Option<Arc<ClusterState>>>(None);
    let source_task = match config.policy_source() {
        config::PolicySource::Dir(dir) => {
            let dir = dir.to_path_buf();
            let stop = shutdown.clone();
            let (report_tx, mut report_rx) =
                tokio::sync::watch::channel(source::SourceReport::default());
            let (refused, gauge) = (
                readiness.clone(),
                enforcement_metrics.rejected_documents.clone(),
            );
            tokio::spawn(async move {
                while report_rx.changed().await.is_ok() {
                    let rejected = report_rx.borrow_and_update().rejected.clone();
                    gauge.set(rejected.len() as i64);
                    let detail = (!rejected.is_empty()).then(|| {
                        let lines: Vec<String> = rejected.iter().map(ToString::to_string).collect();
                        format!(
                            "{} document(s) refused, the others apply:\n  {}",
                            rejected.len(),
                            lines.join("\n  ")
                        )
                    });
                    refused.set_detail("policy-source", detail);
                }
            });
            tokio::spawn(async move { source::watch_dir(dir, state_tx, report_tx, stop).await })
        }
        config::PolicySource::Kubernetes {
            kubeconfig,
            apiserver,
        } => {
            let source = k8s_source::ClientSource::from_flag(kubeconfig.map(Path::to_path_buf));
            let client = k8s_source::client(&source, apiserver)
                .await
                .context("connecting to the Kubernetes API")?;
            // Blind (a watcher failing for over a minute): /readyz answers 503 with the
            // reason; the last applied state stays enforced.
            let (health_tx, mut health_rx) =
                tokio::sync::watch::channel(k8s_source::SourceHealth::default());
            let blind = readiness.clone();
            tokio::spawn(async move {
                while health_rx.changed().await.is_ok() {
                    let reason = health_rx.borrow_and_update().reason();
                    blind.set_not_ready_reason("kubernetes-api", reason);
                }
            });
            let options = k8s_source::SourceOptions {
                policy_source: match config.policy_source {
                    config::PolicyObjects::NetworkPolicy => k8s_source::PolicySource::NetworkPolicy,
                    config::PolicyObjects::PolicyEndpoint => {
                        k8s_source::PolicySource::PolicyEndpoint
                    }
                },
                // PolicyEndpoints name each selected pod's hostIP: pods of other
                // nodes are dropped as objects arrive.
                node_addresses: node_addresses(),
                ..k8s_source::SourceOptions::default()
            };
            tokio::spawn(k8s_source::run(
                client,
                options,
                source_metrics,
                state_tx,
                health_tx,
                shutdown.clone(),
            ))
        }
    };

    let table_file = crate::guard::run_file(&config.bpffs_pin_dir, "policies.json");
    let apply_task = {
        let (enforcer, readiness, stop, enable, links_changed, applied) = (
            enforcer.clone(),
            readiness.clone(),
            shutdown.clone(),
            config.enable_network_policy,
            links_changed.clone(),
            enforcement_metrics.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    changed = state_rx.changed() => if changed.is_err() { break },
                    () = links_changed.notified() => {
                        if enable {
                            let enforcer = enforcer.clone();
                            let _ = tokio::task::spawn_blocking(move || rebind(&enforcer)).await;
                        }
                        continue;
                    }
                }
                let Some(state) = state_rx.borrow_and_update().clone() else {
                    continue;
                };
                if !enable {
                    tracing::warn!(
                        "--enable-network-policy is false: policies are read but not enforced"
                    );
                    readiness.set_ready(true);
                    continue;
                }
                // Off the runtime's workers: a large state takes a while to resolve, and
                // health and metrics must answer meanwhile.
                let (enforcer, table_file, revision) =
                    (enforcer.clone(), table_file.clone(), state.revision);
                let started = std::time::Instant::now();
                let result = tokio::task::spawn_blocking(move || {
                    let mut e = enforcer
                        .lock()
                        .map_err(|_| anyhow::anyhow!("enforcer lock poisoned"))?;
                    let report = e.apply(&state)?;
                    if let Some(resolved) = e.last_resolution() {
                        write_policy_table(&table_file, &resolved.table);
                    }
                    Ok::<_, anyhow::Error>(report)
                })
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("apply task failed: {e}")));
                match result {
                    Ok(report) => {
                        let took = started.elapsed();
                        applied.apply_duration.observe(took.as_secs_f64());
                        applied
                            .applied_revision
                            .set(i64::try_from(revision).unwrap_or(i64::MAX));
                        tracing::info!(pods = report.local_pods, writes = report.map_writes, attached = ?report.attached, revision, ?took, "policies applied");
                        readiness.set_ready(true);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "applying policies failed; keeping the last enforced state")
                    }
                }
            }
        })
    };

    let housekeeper = enforcer
        .lock()
        .map_err(|_| anyhow::anyhow!("the enforcer's lock is poisoned"))?
        .datapath()
        .housekeeper()
        .context("opening the datapath's pins for housekeeping")?;
    let housekeeping = tokio::spawn(housekeeping(
        housekeeper,
        stats.clone(),
        config.deny_fold_window,
        ct_chores,
        shutdown.clone(),
    ));

    if let Some(reload) = reload {
        tokio::spawn(apply_reloads(
            enforcer.clone(),
            config.clone(),
            reload,
            shutdown.clone(),
        ));
    }

    let shipper = shipper.map(|s| {
        let stop = shutdown.clone();
        tokio::spawn(async move { s.run(stop).await })
    });

    if let Some(tx) = started {
        let _ = tx.send(Running {
            enforcer: enforcer.clone(),
            stats: stats.clone(),
            readiness: readiness.clone(),
            metrics_addr,
            health_addr,
        });
    }
    shutdown.cancelled().await;
    tracing::info!("shutting down: flushing flow logs, leaving enforcement pinned");
    let _ = source_task.await;
    let _ = apply_task.await;
    let _ = housekeeping.await;
    if let Some(task) = cni_hook_task {
        match task.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "the CNI hook stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "the CNI hook task failed"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(watcher) = link_watcher {
        let _ = watcher.join();
    }
    if let Some((_, pipeline)) = flow_log.stop() {
        drop(pipeline);
    }
    if let Some(task) = shipper {
        match task.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "CloudWatch shipper stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "CloudWatch shipper task failed"),
            Ok(Ok(())) => {}
        }
    }
    let _ = http.await;
    Ok(())
}

fn build_shipper(config: &AgentConfig) -> Result<cloudwatch::Shipper> {
    let dir = config
        .log_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let live = config
        .log_file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("network-policy-agent.log")
        .to_string();
    let node = config.node_name.clone().unwrap_or_else(hostname);
    let mut sc = cloudwatch::ShipperConfig::new(
        dir,
        config.cluster_name.clone().unwrap_or_default(),
        node.clone(),
    );
    sc.live_name = live;
    sc.self_managed = config.cluster_name.is_none();
    sc.log_group = Some(config.effective_log_group());
    sc.log_stream = Some(config.effective_log_stream(&node));
    sc.retention_days = config.cloudwatch_retention_days;
    sc.region = config.cloudwatch_region.clone();
    sc.endpoint_url = config.cloudwatch_endpoint.clone();
    sc.flush_interval = config.cloudwatch_flush_interval;
    cloudwatch::Shipper::new(sc).context("CloudWatch shipper configuration")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown-node".into())
}

/// Periodic kernel-side chores on a handle of their own (never the enforcer's lock):
/// flush due DENY folds, publish kernel counters, sweep conntrack (ending flows,
/// making flow records when they are on).
async fn housekeeping(
    housekeeper: datapath::Housekeeper,
    stats: Arc<SharedStats>,
    fold_window: Duration,
    ct_chores: ConntrackChores,
    stop: CancellationToken,
) {
    let tick = (fold_window / 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    let housekeeper = Arc::new(Mutex::new((housekeeper, ct_chores)));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = interval.tick() => {}
        }
        let (housekeeper, stats) = (housekeeper.clone(), stats.clone());
        // Map walks and program runs block: off the runtime's workers.
        let chores = tokio::task::spawn_blocking(move || {
            let Ok(mut guard) = housekeeper.lock() else {
                return false;
            };
            let (h, ct_chores) = &mut *guard;
            if !fold_window.is_zero()
                && let Err(err) = h.flush_folds()
            {
                tracing::warn!(error = %err, "flushing DENY folds failed");
            }
            match h.counters() {
                Ok(c) => stats.kernel.store(&KernelCounters::from(&c)),
                Err(err) => tracing::warn!(error = %err, "reading kernel counters failed"),
            }
            if ct_chores.due(std::time::Instant::now()) {
                ct_chores.run(h.maps(), &stats);
            }
            true
        });
        if !matches!(chores.await, Ok(true)) {
            break;
        }
    }
}

/// A link appeared or went: bind pods whose interface is there now.
fn rebind(enforcer: &Mutex<Enforcer>) {
    let Ok(mut e) = enforcer.lock() else { return };
    match e.rebind() {
        Ok(report) if !report.attached.is_empty() || !report.detached.is_empty() => {
            tracing::info!(attached = ?report.attached, detached = ?report.detached, unbound = report.without_interface.len(), "interfaces changed")
        }
        Ok(_) => {}
        Err(err) => {
            tracing::error!(error = %err, "binding pods to new interfaces failed; retried at the next change")
        }
    }
}

/// The policy id table, for `netpol-agent ebpf policies` to name what the maps hold.
fn write_policy_table(path: &Path, table: &policy::PolicyTable) {
    let map: std::collections::BTreeMap<u32, String> = table
        .iter()
        .map(|(id, _)| (id, table.describe(id)))
        .collect();
    let tmp = path.with_extension("tmp");
    let written = serde_json::to_vec(&map)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::debug!(path = %path.display(), error = %e, "could not write the policy table");
    }
}

/// SIGHUP: the kernel settings (event scope, DENY fold window) change live; settings
/// that need a restart are named in the operational log.
async fn apply_reloads(
    enforcer: Arc<Mutex<Enforcer>>,
    mut current: AgentConfig,
    mut reload: tokio::sync::watch::Receiver<AgentConfig>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = reload.changed() => if changed.is_err() { return },
        }
        let next = reload.borrow_and_update().clone();
        let settings = kernel_settings(&next);
        let held = enforcer.clone();
        let written = tokio::task::spawn_blocking(move || {
            held.lock()
                .map_err(|_| "enforcer lock poisoned".to_string())
                .and_then(|mut e| {
                    e.datapath()
                        .maps()
                        .set_settings(&settings)
                        .map_err(|e| e.to_string())
                })
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match written {
            Ok(()) => tracing::info!(
                event_scope = settings.event_scope,
                fold_window_ns = settings.fold_window_ns,
                "configuration reloaded"
            ),
            Err(e) => tracing::error!(error = %e, "reloading kernel settings failed"),
        }
        let mut restart_needed = Vec::new();
        if next.log_file != current.log_file {
            restart_needed.push("log_file");
        }
        if next.metrics_bind_addr != current.metrics_bind_addr {
            restart_needed.push("metrics_bind_addr");
        }
        if next.health_probe_bind_addr != current.health_probe_bind_addr {
            restart_needed.push("health_probe_bind_addr");
        }
        if next.policy_dir != current.policy_dir {
            restart_needed.push("policy_dir");
        }
        if next.enable_cloudwatch_logs != current.enable_cloudwatch_logs {
            restart_needed.push("enable_cloudwatch_logs");
        }
        if next.flow_log_format != current.flow_log_format {
            restart_needed.push("flow_log_format");
        }
        if !restart_needed.is_empty() {
            tracing::warn!(settings = ?restart_needed, "these settings changed but take effect only after a restart");
        }
        current = next;
    }
}
