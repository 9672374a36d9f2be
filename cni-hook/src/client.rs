//! Calls the hook as the CNI plugin does: dial the unix socket (2 s, as the plugin's
//! `npAgentConnTimeout`), then `EnforceNpToPod` or `DeletePodNp`. For tests and
//! diagnostics.

use std::{path::PathBuf, time::Duration};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::{
    codegen::http::uri::PathAndQuery,
    transport::{Channel, Endpoint, Uri},
};
use tonic_prost::ProstCodec;

use crate::proto::{
    DELETE_PATH, DeleteNpReply, DeleteNpRequest, ENFORCE_PATH, EnforceNpReply, EnforceNpRequest,
};

/// The CNI plugin's dial timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct HookClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl HookClient {
    /// Dials the socket at `path`.
    ///
    /// # Errors
    /// Nothing listens there (within [`CONNECT_TIMEOUT`]).
    pub async fn connect(path: impl Into<PathBuf>) -> Result<Self, tonic::transport::Error> {
        let path = path.into();
        // The authority is unused: the connector dials the socket.
        let channel = Endpoint::from_static("http://npa.sock")
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }))
            .await?;
        Ok(Self {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    /// `EnforceNpToPod`, as on pod ADD.
    ///
    /// # Errors
    /// The status the agent answered with.
    pub async fn enforce_np_to_pod(
        &mut self,
        request: EnforceNpRequest,
    ) -> Result<EnforceNpReply, tonic::Status> {
        self.unary(request, ENFORCE_PATH).await
    }

    /// `DeletePodNp`, as on pod DEL.
    ///
    /// # Errors
    /// The status the agent answered with.
    pub async fn delete_pod_np(
        &mut self,
        request: DeleteNpRequest,
    ) -> Result<DeleteNpReply, tonic::Status> {
        self.unary(request, DELETE_PATH).await
    }

    async fn unary<Q, R>(&mut self, request: Q, path: &'static str) -> Result<R, tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("CNI hook not ready: {e}")))?;
        let response = self
            .grpc
            .unary(
                tonic::Request::new(request),
                PathAndQuery::from_static(path),
                ProstCodec::<Q, R>::default(),
            )
            .await?;
        Ok(response.into_inner())
    }
}
