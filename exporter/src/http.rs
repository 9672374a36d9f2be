//! The metrics (`/metrics`, default `:8162`) and health (`/healthz`, `/readyz`,
//! default `:8163`) listeners, served by axum on the caller's tokio runtime.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::ExporterError;
use crate::metrics::Metrics;

/// The incumbent's metrics address.
pub const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8162);
/// The incumbent's health-probe address.
pub const DEFAULT_HEALTH_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8163);
/// Content type of the OpenMetrics text prometheus-client writes.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Listener addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    pub metrics_addr: SocketAddr,
    pub health_addr: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            metrics_addr: DEFAULT_METRICS_ADDR,
            health_addr: DEFAULT_HEALTH_ADDR,
        }
    }
}

/// The readiness flag `/readyz` reports; the agent sets it once enforcement is up.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Both listeners, bound and ready to serve.
#[derive(Debug)]
pub struct HttpServers {
    metrics_listener: TcpListener,
    health_listener: TcpListener,
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

impl HttpServers {
    /// Binds both addresses (port 0 picks a free port; see the `*_addr` getters).
    ///
    /// # Errors
    /// [`ExporterError::Bind`] naming the listener and address.
    pub async fn bind(
        config: &HttpConfig,
        metrics: Arc<Metrics>,
        readiness: Readiness,
    ) -> Result<Self, ExporterError> {
        let bind = |what: &'static str, addr: SocketAddr| async move {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ExporterError::Bind { what, addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| ExporterError::Bind { what, addr, source })?;
            Ok::<_, ExporterError>((listener, bound))
        };
        let (metrics_listener, metrics_addr) = bind("metrics", config.metrics_addr).await?;
        let (health_listener, health_addr) = bind("health", config.health_addr).await?;
        Ok(Self {
            metrics_listener,
            health_listener,
            metrics_addr,
            health_addr,
            metrics,
            readiness,
        })
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The bound health address.
    pub fn health_addr(&self) -> SocketAddr {
        self.health_addr
    }

    /// Serves until `shutdown` completes, then finishes open requests.
    ///
    /// # Errors
    /// [`ExporterError::Serve`] when a server stops with an I/O error.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ExporterError> {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            // Either a `true` or a dropped sender ends the wait.
            let _ = rx.wait_for(|v| *v).await;
        };
        let metrics_app = Router::new()
            .route("/metrics", get(serve_metrics))
            .with_state(self.metrics);
        let health_app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(serve_ready))
            .with_state(self.readiness);
        let metrics = axum::serve(self.metrics_listener, metrics_app)
            .with_graceful_shutdown(stopped(rx.clone()));
        let health =
            axum::serve(self.health_listener, health_app).with_graceful_shutdown(stopped(rx));
        let (m, h) = tokio::join!(metrics, health);
        m.map_err(|source| ExporterError::Serve {
            what: "metrics",
            source,
        })?;
        h.map_err(|source| ExporterError::Serve {
            what: "health",
            source,
        })
    }
}

async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed").into_response(),
    }
}

async fn serve_ready(State(readiness): State<Readiness>) -> (StatusCode, &'static str) {
    if readiness.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
