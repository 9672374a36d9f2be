//! The VPC CNI's enforcement hook. On pod ADD the CNI plugin calls `EnforceNpToPod`
//! and on DEL `DeletePodNp` (service `rpc.NPBackend`) over the unix socket
//! `/var/run/aws-node/npa.sock`; an ADD that fails or cannot reach us fails the pod's
//! creation, which is how strict mode has its default deny in place before the
//! container starts.
//!
//! Modules: [`proto`] (the wire messages, field for field as the CNI's proto),
//! [`request`] (checks before anything touches the kernel), [`server`] (the socket and
//! the gRPC service over a [`PodHook`]), [`client`] (calls it as the CNI does; tests),
//! [`metrics`] (calls and refusals).
//!
//! # Examples
//! ```no_run
//! # async fn example(hook: std::sync::Arc<dyn cni_hook::PodHook>) -> Result<(), cni_hook::ServeError> {
//! let stop = tokio_util::sync::CancellationToken::new();
//! let server = cni_hook::HookServer::bind(cni_hook::DEFAULT_SOCKET_PATH.as_ref())?;
//! server.serve(hook, cni_hook::HookMetrics::default(), stop).await
//! # }
//! ```

pub mod client;
pub mod metrics;
pub mod proto;
pub mod request;
pub mod server;

pub use client::HookClient;
pub use metrics::HookMetrics;
pub use request::{EnforceRequest, HookMode, PodKey};
pub use server::{HookServer, ServeError};
/// The status a call answers with (re-exported so callers need no tonic of their own).
pub use tonic::{Code, Status};

/// Where the CNI plugin dials (amazon-vpc-cni-k8s `cmd/routed-eni-cni-plugin/cni.go`,
/// `npaSocketPath`; the incumbent's `main.go` serves the same constant).
pub const DEFAULT_SOCKET_PATH: &str = "/var/run/aws-node/npa.sock";

/// What the agent does when the CNI calls. Called off the async workers (the calls do
/// syscalls and may wait on the enforcer's lock).
pub trait PodHook: Send + Sync + 'static {
    /// Binds the pod to its host interfaces and attaches the programs with its initial
    /// record before returning: strict mode denies both ways unless the pod's policies
    /// are known, standard mode allows unless they are.
    ///
    /// # Errors
    /// The pod cannot be enforced (no interface, an attach or map write failed, the
    /// agent is not ready): the CNI then fails the pod's ADD.
    fn enforce(&self, request: &EnforceRequest) -> Result<(), HookError>;

    /// Detaches from the pod's interfaces and forgets the binding. A pod never seen is
    /// not an error.
    ///
    /// # Errors
    /// A detach or map delete failed.
    fn delete(&self, pod: &PodKey) -> Result<(), HookError>;
}

/// Why a hook call was refused; each maps to one gRPC status code.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The request itself is bad (`InvalidArgument`).
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// The agent cannot enforce yet (`Unavailable`; the kubelet retries the ADD).
    #[error("not ready: {reason}")]
    NotReady { reason: String },
    /// No host interface of the pod exists (`FailedPrecondition`).
    #[error("pod {pod}: no host interface (looked for {expected})")]
    NoInterface { pod: PodKey, expected: String },
    /// The kernel refused a change (`Internal`).
    #[error("pod {pod}: {reason}")]
    Enforcement { pod: PodKey, reason: String },
}

impl HookError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// The gRPC code the CNI sees.
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::InvalidArgument { .. } => tonic::Code::InvalidArgument,
            Self::NotReady { .. } => tonic::Code::Unavailable,
            Self::NoInterface { .. } => tonic::Code::FailedPrecondition,
            Self::Enforcement { .. } => tonic::Code::Internal,
        }
    }

    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidArgument { .. } => "invalid_argument",
            Self::NotReady { .. } => "not_ready",
            Self::NoInterface { .. } => "no_interface",
            Self::Enforcement { .. } => "enforcement",
        }
    }
}

impl From<HookError> for tonic::Status {
    fn from(e: HookError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}
