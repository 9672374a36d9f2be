//! Retry policy (pure): classifies a failed request by cause and computes capped
//! exponential backoff with full jitter (the arithmetic is the shared `backoff`
//! crate's; which causes wait, and at least how long, is this policy's).

use std::time::Duration;

use backoff::{Exponential, jittered};

/// Why a request failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCause {
    /// ThrottlingException or similar: back off and retry.
    Throttled,
    /// A 5xx answer or ServiceUnavailableException: back off and retry.
    Server,
    /// No answer in time: back off and retry.
    Timeout,
    /// Connection refused, reset or closed: back off and retry.
    Connection,
    /// Credentials missing, expired or refused: back off (the SDK refreshes) and log loudly.
    Credentials,
    /// The group or the stream does not exist: create them, then resend.
    NotFound,
    /// The request is invalid as built: split it or drop it, never resend it as is.
    InvalidParameter,
    /// Anything else: back off and retry, logged loudly.
    Other,
}

impl FailureCause {
    /// All causes, in the order metrics list them.
    pub const ALL: [FailureCause; 8] = [
        Self::Throttled,
        Self::Server,
        Self::Timeout,
        Self::Connection,
        Self::Credentials,
        Self::NotFound,
        Self::InvalidParameter,
        Self::Other,
    ];

    /// The label value used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::Server => "server",
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::Credentials => "credentials",
            Self::NotFound => "not_found",
            Self::InvalidParameter => "invalid_parameter",
            Self::Other => "other",
        }
    }

    /// True for causes answered by waiting and sending the same request again.
    pub fn is_retried_as_is(self) -> bool {
        !matches!(self, Self::NotFound | Self::InvalidParameter)
    }
}

/// Classifies a service's error answer from its error code and HTTP status.
pub fn classify_service_error(code: Option<&str>, status: u16) -> FailureCause {
    match code.unwrap_or("") {
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "LimitExceededException" => FailureCause::Throttled,
        "ResourceNotFoundException" => FailureCause::NotFound,
        "InvalidParameterException" | "SerializationException" | "ValidationException" => {
            FailureCause::InvalidParameter
        }
        "ServiceUnavailableException" | "InternalFailure" | "InternalServerError" => {
            FailureCause::Server
        }
        "UnrecognizedClientException"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "InvalidClientTokenId"
        | "AccessDeniedException"
        | "AccessDenied" => FailureCause::Credentials,
        _ if status == 429 => FailureCause::Throttled,
        _ if status >= 500 => FailureCause::Server,
        _ if status == 401 || status == 403 => FailureCause::Credentials,
        _ => FailureCause::Other,
    }
}

/// Exponential backoff with full jitter: the n-th wait is uniform in
/// `[0, min(cap, base * 2^n)]`; credential failures wait at least `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
        }
    }
}

/// The backoff state of one request.
#[derive(Debug, Clone)]
pub struct Backoff {
    curve: Exponential,
    attempt: u32,
}

impl Backoff {
    /// A fresh backoff.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            curve: Exponential::new(config.base, config.cap),
            attempt: 0,
        }
    }

    /// The ceiling of the next wait.
    pub fn ceiling(&self) -> Duration {
        self.curve.ceiling(self.attempt)
    }

    /// The next wait, given a uniform random fraction in `[0, 1)`.
    pub fn next_delay(&mut self, cause: FailureCause, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let delay = jittered(ceiling, FULL_JITTER, unit);
        if cause == FailureCause::Credentials {
            delay.max(self.curve.first().min(self.curve.cap()))
        } else {
            delay
        }
    }
}

/// Full jitter: a wait is anywhere from zero to its ceiling.
const FULL_JITTER: f64 = 1.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_are_classified_by_code_then_status() {
        let rows = [
            (Some("ThrottlingException"), 400, FailureCause::Throttled),
            (
                Some("ResourceNotFoundException"),
                400,
                FailureCause::NotFound,
            ),
            (
                Some("InvalidParameterException"),
                400,
                FailureCause::InvalidParameter,
            ),
            (
                Some("ServiceUnavailableException"),
                503,
                FailureCause::Server,
            ),
            (
                Some("ExpiredTokenException"),
                400,
                FailureCause::Credentials,
            ),
            (
                Some("UnrecognizedClientException"),
                400,
                FailureCause::Credentials,
            ),
            (None, 500, FailureCause::Server),
            (None, 503, FailureCause::Server),
            (None, 429, FailureCause::Throttled),
            (None, 403, FailureCause::Credentials),
            (Some("Mystery"), 400, FailureCause::Other),
        ];
        for (code, status, want) in rows {
            assert_eq!(
                classify_service_error(code, status),
                want,
                "{code:?} {status}"
            );
        }
    }

    #[test]
    fn only_not_found_and_invalid_parameter_are_not_resent_as_is() {
        for cause in FailureCause::ALL {
            let want = !matches!(
                cause,
                FailureCause::NotFound | FailureCause::InvalidParameter
            );
            assert_eq!(cause.is_retried_as_is(), want, "{cause:?}");
        }
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let cfg = BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
        };
        let mut b = Backoff::new(cfg);
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            ceilings.push(b.ceiling().as_millis());
            b.next_delay(FailureCause::Server, 0.5);
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        for _ in 0..100 {
            b.next_delay(FailureCause::Server, 0.5);
        }
        assert_eq!(
            b.ceiling(),
            Duration::from_millis(1000),
            "no overflow after many attempts"
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let cfg = BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
        };
        assert_eq!(
            Backoff::new(cfg).next_delay(FailureCause::Throttled, 0.0),
            Duration::ZERO
        );
        assert_eq!(
            Backoff::new(cfg).next_delay(FailureCause::Throttled, 0.999_999),
            Duration::from_millis(100).mul_f64(0.999_999)
        );
    }

    #[test]
    fn credential_failures_never_spin() {
        let cfg = BackoffConfig::default();
        let d = Backoff::new(cfg).next_delay(FailureCause::Credentials, 0.0);
        assert_eq!(d, cfg.base);
    }
}
