//! `cloudwatch-ship`: the agent's CloudWatch shipper on its own, configured from the
//! environment (`CW_DIR` required; `CW_ENDPOINT`, `CW_REGION`, `CW_GROUP`, `CW_STREAM`,
//! `CLUSTER_NAME`, `MY_NODE_NAME`, `CW_LIVE_NAME`, `CW_FORMAT`=json|incumbent,
//! `CW_FLUSH_MS`, `CW_MAX_EVENTS`, `CW_MAX_IN_FLIGHT`, `CW_BACKOFF_BASE_MS`,
//! `CW_BACKOFF_CAP_MS`, `CW_REQUEST_TIMEOUT_MS`). Stops on SIGTERM or SIGINT.

use std::process::ExitCode;
use std::time::Duration;

use cloudwatch::{MessageFormat, Shipper, ShipperConfig};
use tokio_util::sync::CancellationToken;

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
    let shutdown = CancellationToken::new();
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
