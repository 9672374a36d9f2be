//! The crate's error types: building a client, objects the policy model rejects, and
//! why an API call failed (`ErrorReason`, the closed set the metrics and health name).

use std::path::PathBuf;

/// Why no API client could be built.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("in-cluster configuration (service account) unavailable: {source}")]
    InCluster {
        #[source]
        source: kube::config::InClusterError,
    },
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("--apiserver {url:?} is not a URL: {source}")]
    ApiServerUrl {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("API client from {origin}: {source}")]
    Client {
        origin: String,
        #[source]
        source: kube::Error,
    },
}

/// Why an API object could not be turned into a model value. The object is then
/// ignored (a previous version, if any, stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{object}: encoding the manifest: {source}")]
    Encode {
        object: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{object}: rejected by the policy model: {source}")]
    Invalid {
        object: String,
        #[source]
        source: Box<policy::LoadError>,
    },
    #[error("{object}: the loader returned no object")]
    NotLoaded { object: String },
}

/// Why an API call failed: the `reason` label of `network_policy_source_errors`, a
/// closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorReason {
    /// 403: the agent's RBAC does not allow the call.
    Forbidden,
    /// 401: the API server refused the credentials (or none could be produced).
    Unauthorized,
    /// 410: the watch history or a list's continue token has expired; a relist follows.
    Gone,
    /// 404: the server does not serve the resource (its CRD is not installed). For an
    /// optional kind (ClusterPolicyEndpoints) this means "no objects", not a failure.
    NotFound,
    /// No connection to the API server, or it broke (refused, reset, TLS, DNS).
    Connect,
    /// A request timed out (client side, or answered 408/504).
    Timeout,
    /// An answer that is not the JSON expected.
    Decode,
    /// The server failed (5xx) or throttled (429).
    Server,
    /// Anything else (another 4xx, a request kube could not build).
    Other,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 9] = [
        Self::Forbidden,
        Self::Unauthorized,
        Self::Gone,
        Self::NotFound,
        Self::Connect,
        Self::Timeout,
        Self::Decode,
        Self::Server,
        Self::Other,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Forbidden => "forbidden",
            Self::Unauthorized => "unauthorized",
            Self::Gone => "gone",
            Self::NotFound => "not_found",
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Decode => "decode",
            Self::Server => "server",
            Self::Other => "other",
        }
    }

    /// The reason for an HTTP status code (of an answer or of a watch ERROR event).
    pub const fn from_status(code: u16) -> Self {
        match code {
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            410 => Self::Gone,
            408 | 504 => Self::Timeout,
            429 | 500..=599 => Self::Server,
            _ => Self::Other,
        }
    }

    /// The reason for a failed kube call.
    pub fn of(error: &kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => Self::from_status(status.code),
            kube::Error::SerdeError(_)
            | kube::Error::FromUtf8(_)
            | kube::Error::LinesCodecMaxLineLengthExceeded => Self::Decode,
            kube::Error::Auth(_) => Self::Unauthorized,
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
                if times_out(error) {
                    Self::Timeout
                } else {
                    Self::Connect
                }
            }
            _ => Self::Other,
        }
    }
}

impl std::fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Does an I/O timeout (the client's connect or read timeout) cause `error`?
fn times_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// One failed call or watch ERROR event, as the watchers log and report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) reason: ErrorReason,
    /// One line for people: the server's status and message, or the error chain.
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn from_kube(error: &kube::Error) -> Self {
        let message = match error {
            kube::Error::Api(status) => status_line(status),
            other => {
                let mut text = other.to_string();
                let mut next = std::error::Error::source(other);
                while let Some(e) = next {
                    text.push_str(": ");
                    text.push_str(&e.to_string());
                    next = e.source();
                }
                text
            }
        };
        Self {
            reason: ErrorReason::of(error),
            message,
        }
    }

    /// An ERROR event inside a watch stream.
    pub(crate) fn from_status(status: &kube::core::Status) -> Self {
        Self {
            reason: ErrorReason::from_status(status.code),
            message: status_line(status),
        }
    }

    pub(crate) fn decode(message: impl Into<String>) -> Self {
        Self {
            reason: ErrorReason::Decode,
            message: message.into(),
        }
    }
}

fn status_line(status: &kube::core::Status) -> String {
    format!("{} {}: {}", status.code, status.reason, status.message)
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("scripted", "Scripted")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn statuses_and_transport_errors_map_to_the_closed_set_of_reasons() {
        for (code, reason) in [
            (401, ErrorReason::Unauthorized),
            (403, ErrorReason::Forbidden),
            (410, ErrorReason::Gone),
            (504, ErrorReason::Timeout),
            (429, ErrorReason::Server),
            (500, ErrorReason::Server),
            (404, ErrorReason::NotFound),
            (400, ErrorReason::Other),
        ] {
            assert_eq!(ErrorReason::of(&api_error(code)), reason, "{code}");
        }
        let refused = kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        )));
        assert_eq!(ErrorReason::of(&refused), ErrorReason::Connect);
        let timed_out = kube::Error::ReadEvents(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "read timed out",
        ));
        assert_eq!(ErrorReason::of(&timed_out), ErrorReason::Timeout);
        let garbage = serde_json::from_str::<u8>("x").expect_err("not JSON");
        assert_eq!(
            ErrorReason::of(&kube::Error::SerdeError(garbage)),
            ErrorReason::Decode
        );
        let failure = Failure::from_kube(&api_error(403));
        assert_eq!(failure.message, "403 Scripted: scripted");
        assert_eq!(failure.to_string(), "403 Scripted: scripted (forbidden)");
    }
}
