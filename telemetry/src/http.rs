//! The metrics (`/metrics`, default `:8162`) and health (`/healthz`, `/readyz`,
//! default `:8163`) listeners, served by axum on the caller's tokio runtime.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::TelemetryError;
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

/// What `/readyz` reports: the flag the agent sets once enforcement is up, and the
/// reasons parts of the agent give for not being ready while it stays up (a policy
/// source that cannot see the API server, say). Ready (200) when the flag is set and
/// no reason is; else 503 with the reasons in the body. `/healthz` ignores both.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<ReadinessState>);

#[derive(Debug, Default)]
struct ReadinessState {
    ready: AtomicBool,
    /// By the name of who set them.
    not_ready: Mutex<BTreeMap<String, String>>,
    /// Shown in `/readyz`'s body without changing its status, by who set them.
    details: Mutex<BTreeMap<String, String>>,
}

impl Readiness {
    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Release);
    }

    /// `Some(reason)`: not ready because of `reason` (whatever `set_ready` says) until
    /// `who` calls again with `None`. Each `who` holds one reason.
    pub fn set_not_ready_reason(&self, who: &str, reason: Option<String>) {
        let mut reasons = self.reasons();
        match reason {
            Some(reason) => {
                reasons.insert(who.to_owned(), reason);
            }
            None => {
                reasons.remove(who);
            }
        }
    }

    /// `Some(text)`: shown after the status line of `/readyz` (either answer) until
    /// `who` calls again with `None`; readiness itself does not change.
    pub fn set_detail(&self, who: &str, detail: Option<String>) {
        let mut details = self
            .0
            .details
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match detail {
            Some(detail) => {
                details.insert(who.to_owned(), detail);
            }
            None => {
                details.remove(who);
            }
        }
    }

    /// The body of a `/readyz` answer: the status line (and reasons, when not ready),
    /// then every detail.
    pub fn body(&self) -> (bool, String) {
        let (ready, mut text) = match self.check() {
            Ok(()) => (true, "ready".to_owned()),
            Err(text) => (false, text),
        };
        let details = self
            .0
            .details
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (who, detail) in details.iter() {
            text.push_str(&format!("\n{who}: {detail}"));
        }
        (ready, text)
    }

    /// What `/readyz` answers: 200 when true.
    pub fn is_ready(&self) -> bool {
        self.check().is_ok()
    }

    /// `Err` with the body of a 503 answer: "not ready", then each reason given.
    ///
    /// # Errors
    /// Not ready: the flag is not set or a reason is.
    pub fn check(&self) -> Result<(), String> {
        let ready = self.0.ready.load(Ordering::Acquire);
        let reasons = self.reasons();
        if ready && reasons.is_empty() {
            return Ok(());
        }
        let mut text = String::from("not ready");
        for (who, reason) in reasons.iter() {
            text.push_str(&format!("\n{who}: {reason}"));
        }
        Err(text)
    }

    fn reasons(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A panic while holding the map cannot leave it inconsistent.
        self.0
            .not_ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
    /// [`TelemetryError::Bind`] naming the listener and address.
    pub async fn bind(
        config: &HttpConfig,
        metrics: Arc<Metrics>,
        readiness: Readiness,
    ) -> Result<Self, TelemetryError> {
        let bind = |what: &'static str, addr: SocketAddr| async move {
            let listener = TcpListener::bind(addr).await.map_err(|source| {
                // The system's words for EADDRNOTAVAIL ("Cannot assign requested address")
                // do not say which address is wrong, nor why.
                let source = if source.kind() == std::io::ErrorKind::AddrNotAvailable {
                    std::io::Error::new(
                        source.kind(),
                        format!(
                            "address not available: {} is not an address of this host ({source})",
                            addr.ip()
                        ),
                    )
                } else {
                    source
                };
                TelemetryError::Bind { what, addr, source }
            })?;
            let bound = listener
                .local_addr()
                .map_err(|source| TelemetryError::Bind { what, addr, source })?;
            Ok::<_, TelemetryError>((listener, bound))
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
    /// [`TelemetryError::Serve`] when a server stops with an I/O error.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TelemetryError> {
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
        m.map_err(|source| TelemetryError::Serve {
            what: "metrics",
            source,
        })?;
        h.map_err(|source| TelemetryError::Serve {
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

async fn serve_ready(State(readiness): State<Readiness>) -> (StatusCode, String) {
    match readiness.body() {
        (true, text) => (StatusCode::OK, text),
        (false, text) => (StatusCode::SERVICE_UNAVAILABLE, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_not_of_this_host_says_address_not_available() {
        // TEST-NET-1: bind() fails locally; nothing is ever sent.
        let addr: SocketAddr = "192.0.2.1:0".parse().expect("addr");
        if std::net::TcpListener::bind(addr).is_ok() {
            return; // this host has the address after all
        }
        let config = HttpConfig {
            metrics_addr: addr,
            health_addr: "127.0.0.1:0".parse().expect("addr"),
        };
        let metrics = Arc::new(Metrics::default());
        let err = HttpServers::bind(&config, metrics, Readiness::default())
            .await
            .expect_err("not an address of this host");
        let text = err.to_string();
        assert!(
            text.contains(
                "192.0.2.1:0: address not available: 192.0.2.1 is not an address of this host"
            ),
            "{text}"
        );
        assert!(text.starts_with("binding the metrics listener"), "{text}");
    }

    async fn ready(readiness: &Readiness) -> (StatusCode, String) {
        serve_ready(State(readiness.clone())).await
    }

    #[tokio::test]
    async fn a_reason_makes_readyz_503_with_it_until_cleared() {
        let readiness = Readiness::default();
        assert_eq!(
            ready(&readiness).await,
            (StatusCode::SERVICE_UNAVAILABLE, "not ready".to_owned())
        );
        readiness.set_ready(true);
        assert_eq!(
            ready(&readiness).await,
            (StatusCode::OK, "ready".to_owned())
        );
        readiness.set_not_ready_reason("kubernetes-api", Some("pods (forbidden)".into()));
        readiness.set_not_ready_reason("other", Some("second".into()));
        assert!(!readiness.is_ready());
        let (status, body) = ready(&readiness).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "not ready\nkubernetes-api: pods (forbidden)\nother: second"
        );
        readiness.set_not_ready_reason("kubernetes-api", None);
        readiness.set_not_ready_reason("other", None);
        assert!(readiness.is_ready());
        assert_eq!(
            ready(&readiness).await,
            (StatusCode::OK, "ready".to_owned())
        );
    }

    #[tokio::test]
    async fn details_show_in_readyz_without_changing_its_status() {
        let readiness = Readiness::default();
        readiness.set_ready(true);
        readiness.set_detail(
            "policy-source",
            Some("1 document refused: a.yaml doc 2".into()),
        );
        assert_eq!(
            ready(&readiness).await,
            (
                StatusCode::OK,
                "ready\npolicy-source: 1 document refused: a.yaml doc 2".to_owned()
            )
        );
        readiness.set_detail("policy-source", None);
        assert_eq!(
            ready(&readiness).await,
            (StatusCode::OK, "ready".to_owned())
        );
    }
}
