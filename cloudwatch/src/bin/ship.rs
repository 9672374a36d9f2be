//! `cloudwatch-ship`: the agent's CloudWatch shipper on its own, configured from the
//! environment (`CW_DIR` required; `CW_ENDPOINT`, `CW_REGION`, `CW_GROUP`, `CW_STREAM`,
//! `CLUSTER_NAME`, `MY_NODE_NAME`, `CW_LIVE_NAME`, `CW_FORMAT`=json|incumbent,
//! `CW_FLUSH_MS`, `CW_MAX_EVENTS`, `CW_MAX_IN_FLIGHT`, `CW_BACKOFF_BASE_MS`,
//! `CW_BACKOFF_CAP_MS`, `CW_REQUEST_TIMEOUT_MS`). Stops on SIGTERM or SIGINT.
//!
//! Flags, as the agent names them: `--metrics-bind-addr ADDR` serves `/metrics` (the
//! shipper's `cloudwatch_*` counters) and `--health-probe-bind-addr ADDR` serves
//! `/healthz` and `/readyz`, through the agent's own listeners (`telemetry`). Off
//! unless a flag is given (the agent's ports would clash on a node running both); with
//! one flag the other listener takes the agent's default address.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cloudwatch::{MessageFormat, Shipper, ShipperConfig};
use prometheus_client::registry::Registry;
use telemetry::{HttpConfig, HttpServers, Metrics, Readiness};
use tokio_util::sync::CancellationToken;

/// The listener addresses given on the command line; `None`: no listener.
fn http_flags(args: impl Iterator<Item = String>) -> Result<Option<HttpConfig>, String> {
    let mut config = HttpConfig::default();
    let mut any = false;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg, None),
        };
        let slot = match flag.as_str() {
            "--metrics-bind-addr" => &mut config.metrics_addr,
            "--health-probe-bind-addr" => &mut config.health_addr,
            other => return Err(format!("unknown argument {other}")),
        };
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{flag} needs an address"))?;
        *slot = parse_addr(&value).map_err(|e| format!("{flag} {value}: {e}"))?;
        any = true;
    }
    Ok(any.then_some(config))
}

/// `host:port`, or `:port` for every address, as the agent accepts.
fn parse_addr(v: &str) -> Result<SocketAddr, std::net::AddrParseError> {
    match v.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}").parse(),
        None => v.parse(),
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn millis(name: &str) -> Result<Option<Duration>, String> {
    var(name)
        .map(|v| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| format!("{name}={v}: {e}"))
        })
        .transpose()
}

fn config() -> Result<ShipperConfig, String> {
    let dir = var("CW_DIR").ok_or("CW_DIR is required")?;
    let mut c = ShipperConfig::new(
        dir,
        var("CLUSTER_NAME").unwrap_or_default(),
        var("MY_NODE_NAME").unwrap_or_default(),
    );
    c.endpoint_url = var("CW_ENDPOINT");
    c.region = var("CW_REGION");
    c.log_group = var("CW_GROUP");
    c.log_stream = var("CW_STREAM");
    if let Some(live) = var("CW_LIVE_NAME") {
        c.live_name = live;
    }
    c.message_format = match var("CW_FORMAT").as_deref() {
        None | Some("json") => MessageFormat::Json,
        Some("incumbent") => MessageFormat::Incumbent,
        Some(other) => return Err(format!("CW_FORMAT={other}: json or incumbent")),
    };
    if let Some(d) = millis("CW_FLUSH_MS")? {
        c.flush_interval = d;
    }
    if let Some(d) = millis("CW_BACKOFF_BASE_MS")? {
        c.backoff.base = d;
    }
    if let Some(d) = millis("CW_BACKOFF_CAP_MS")? {
        c.backoff.cap = d;
    }
    if let Some(d) = millis("CW_REQUEST_TIMEOUT_MS")? {
        c.request_timeout = d;
    }
    if let Some(n) = var("CW_MAX_EVENTS") {
        c.batch.max_events = n.parse().map_err(|e| format!("CW_MAX_EVENTS={n}: {e}"))?;
    }
    if let Some(n) = var("CW_MAX_IN_FLIGHT") {
        c.max_in_flight = n
            .parse()
            .map_err(|e| format!("CW_MAX_IN_FLIGHT={n}: {e}"))?;
    }
    Ok(c)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let shipper = match config()
        .map_err(|e| e.to_string())
        .and_then(|c| Shipper::new(c).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cloudwatch-ship: {e}");
            return ExitCode::from(2);
        }
    };
    let http = match http_flags(std::env::args().skip(1)) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cloudwatch-ship: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    if let Some(http) = http {
        let mut registry = Registry::default();
        shipper.metrics().register(&mut registry);
        let metrics = Arc::new(Metrics::from_registry(registry));
        let readiness = Readiness::default();
        let servers = match HttpServers::bind(&http, metrics, readiness.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cloudwatch-ship: {e}");
                return ExitCode::from(2);
            }
        };
        tracing::info!(metrics = %servers.metrics_addr(), health = %servers.health_addr(), "serving /metrics and health");
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = servers.serve(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "metrics or health listener failed");
            }
        });
        readiness.set_ready(true);
    }
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        signal.cancel();
    });
    match shipper.run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloudwatch-ship: {e}");
            ExitCode::FAILURE
        }
    }
}
