//! The unix socket and the `rpc.NPBackend` gRPC service over a [`PodHook`]. Binding
//! creates the socket's directory, replaces a stale socket (never another kind of
//! file) and leaves the socket readable and writable by its owner only (the CNI plugin
//! runs as root). Requests are checked ([`crate::request`]) before the hook sees them;
//! the hook runs on the blocking pool.

use std::{
    convert::Infallible,
    io,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    task::{Context, Poll},
};

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{
    body::Body,
    codegen::{BoxFuture, StdError, http},
    server::{Grpc, NamedService, UnaryService},
};
use tonic_prost::ProstCodec;

use crate::{
    EnforceRequest, HookError, HookMetrics, PodHook, PodKey,
    proto::{
        DELETE_PATH, DeleteNpReply, DeleteNpRequest, ENFORCE_PATH, EnforceNpReply,
        EnforceNpRequest, SERVICE_NAME,
    },
};

/// Mode of the socket file: owner only.
const SOCKET_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("CNI hook socket {path}: {action}: {source}")]
    Socket {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("CNI hook socket {path}: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error("CNI hook server on {path}: {source}")]
    Transport {
        path: PathBuf,
        source: tonic::transport::Error,
    },
}

/// A bound socket, not serving yet.
pub struct HookServer {
    path: PathBuf,
    listener: UnixListener,
}

impl HookServer {
    /// Binds `path` (in the calling thread's mount namespace; needs a tokio runtime).
    ///
    /// # Errors
    /// The directory cannot be created, the path holds something other than a socket,
    /// or binding or setting the mode failed.
    pub fn bind(path: &Path) -> Result<Self, ServeError> {
        let fail = |action, source| ServeError::Socket {
            path: path.to_owned(),
            action,
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail("creating its directory", e))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                tracing::info!(path = %path.display(), "removing a stale CNI hook socket");
                std::fs::remove_file(path).map_err(|e| fail("removing the stale socket", e))?;
            }
            Ok(meta) => {
                return Err(ServeError::Refused {
                    path: path.to_owned(),
                    reason: format!(
                        "exists and is not a socket ({:?}); not removed",
                        meta.file_type()
                    ),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail("looking at the path", e)),
        }
        let listener = UnixListener::bind(path).map_err(|e| fail("binding", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(|e| fail("setting its mode", e))?;
        Ok(Self {
            path: path.to_owned(),
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves until `shutdown`, then removes the socket file.
    ///
    /// # Errors
    /// The gRPC server failed.
    pub async fn serve(
        self,
        hook: Arc<dyn PodHook>,
        metrics: HookMetrics,
        shutdown: CancellationToken,
    ) -> Result<(), ServeError> {
        let Self { path, listener } = self;
        tracing::info!(path = %path.display(), "serving the CNI hook (rpc.NPBackend)");
        let service = NpBackendService {
            inner: Arc::new(Inner { hook, metrics }),
        };
        let result = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(listener),
                shutdown.cancelled_owned(),
            )
            .await;
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the CNI hook socket");
        }
        result.map_err(|source| ServeError::Transport { path, source })
    }
}

struct Inner {
    hook: Arc<dyn PodHook>,
    metrics: HookMetrics,
}

impl Inner {
    async fn enforce(&self, request: EnforceNpRequest) -> Result<EnforceNpReply, HookError> {
        let request = EnforceRequest::try_from(request)?;
        let hook = Arc::clone(&self.hook);
        let pod = request.pod.clone();
        tracing::info!(%pod, mode = ?request.mode, interfaces = request.interface_count, "EnforceNpToPod");
        run_blocking(pod, move || hook.enforce(&request)).await?;
        Ok(EnforceNpReply { success: true })
    }

    async fn delete(&self, request: DeleteNpRequest) -> Result<DeleteNpReply, HookError> {
        let pod = PodKey::try_from(request)?;
        let hook = Arc::clone(&self.hook);
        tracing::info!(%pod, "DeletePodNp");
        let key = pod.clone();
        run_blocking(pod, move || hook.delete(&key)).await?;
        Ok(DeleteNpReply { success: true })
    }

    fn outcome<T>(
        &self,
        method: &'static str,
        result: Result<T, HookError>,
    ) -> Result<T, tonic::Status> {
        match result {
            Ok(reply) => {
                self.metrics.count(method, "ok");
                Ok(reply)
            }
            Err(e) => {
                self.metrics.count(method, e.kind());
                tracing::warn!(method, error = %e, "CNI hook call refused");
                Err(e.into())
            }
        }
    }
}

async fn run_blocking(
    pod: PodKey,
    call: impl FnOnce() -> Result<(), HookError> + Send + 'static,
) -> Result<(), HookError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result,
        Err(e) => Err(HookError::Enforcement {
            pod,
            reason: format!("the hook call did not finish: {e}"),
        }),
    }
}

/// The `rpc.NPBackend` service, as tonic's generated server would be.
#[derive(Clone)]
struct NpBackendService {
    inner: Arc<Inner>,
}

impl NamedService for NpBackendService {
    const NAME: &'static str = SERVICE_NAME;
}

struct EnforceMethod(Arc<Inner>);

impl UnaryService<EnforceNpRequest> for EnforceMethod {
    type Response = EnforceNpReply;
    type Future = BoxFuture<tonic::Response<EnforceNpReply>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<EnforceNpRequest>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move {
            let result = inner.enforce(request.into_inner()).await;
            inner
                .outcome("EnforceNpToPod", result)
                .map(tonic::Response::new)
        })
    }
}

struct DeleteMethod(Arc<Inner>);

impl UnaryService<DeleteNpRequest> for DeleteMethod {
    type Response = DeleteNpReply;
    type Future = BoxFuture<tonic::Response<DeleteNpReply>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<DeleteNpRequest>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move {
            let result = inner.delete(request.into_inner()).await;
            inner
                .outcome("DeletePodNp", result)
                .map(tonic::Response::new)
        })
    }
}

impl<B> tower::Service<http::Request<B>> for NpBackendService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        match request.uri().path() {
            ENFORCE_PATH => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<EnforceNpReply, EnforceNpRequest>::default());
                Ok(grpc.unary(EnforceMethod(inner), request).await)
            }),
            DELETE_PATH => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<DeleteNpReply, DeleteNpRequest>::default());
                Ok(grpc.unary(DeleteMethod(inner), request).await)
            }),
            _ => Box::pin(async move { Ok(tonic::Status::unimplemented("").into_http()) }),
        }
    }
}
