//! The service: the AWS SDK client (default credential chain, region, optional
//! endpoint), PutLogEvents, and the on-demand creation of the group and the stream.
//! Every failure comes back classified by [`FailureCause`].

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::Region;
use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;

use crate::config::ShipperConfig;
use crate::error::ShipperError;
use crate::event::Event;
use crate::retry::{FailureCause, classify_service_error};

/// A failed call, classified.
#[derive(Debug, Clone)]
pub struct CallError {
    /// The API operation.
    pub operation: &'static str,
    /// What to do about it.
    pub cause: FailureCause,
    /// The service's error code, when it answered.
    pub code: Option<String>,
    /// The full error text, for the operational log.
    pub detail: String,
}

/// Events the service accepted the call for but reported as rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejected {
    /// From `tooNewLogEventStartIndex` to the end.
    pub too_new: u64,
    /// Up to `tooOldLogEventEndIndex`.
    pub too_old: u64,
    /// Up to `expiredLogEventEndIndex`.
    pub expired: u64,
}

/// Counts the events `rejectedLogEventsInfo` names, given the batch length. The end
/// indexes are exclusive, as the CloudWatch agent reads them.
pub fn count_rejected(
    len: usize,
    too_new_start: Option<i32>,
    too_old_end: Option<i32>,
    expired_end: Option<i32>,
) -> Rejected {
    let clamp = |i: i32| usize::try_from(i).unwrap_or(0).min(len) as u64;
    let too_old = too_old_end.map_or(0, clamp);
    let expired = expired_end.map_or(0, clamp).saturating_sub(too_old);
    let too_new = too_new_start.map_or(0, |i| len as u64 - clamp(i));
    Rejected {
        too_new,
        too_old,
        expired,
    }
}

/// The CloudWatch Logs destination of one node.
#[derive(Debug, Clone)]
pub struct CloudWatchSink {
    client: Client,
    group: String,
    stream: String,
    retention_days: Option<u32>,
}

impl CloudWatchSink {
    /// Builds the SDK client from the default chain, with SDK retries off (the shipper
    /// retries by itself) and the configured timeouts.
    ///
    /// # Errors
    /// [`ShipperError::NoRegion`] when no region is configured or resolvable.
    pub async fn connect(config: &ShipperConfig) -> Result<Self, ShipperError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(config.connect_timeout)
                    .operation_attempt_timeout(config.request_timeout)
                    .build(),
            );
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(creds) = &config.credentials {
            loader = loader.credentials_provider(creds.clone());
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(ShipperError::NoRegion);
        }
        Ok(Self {
            client: Client::new(&sdk),
            group: config.group_name(),
            stream: config.stream_name(),
            retention_days: config.retention_days,
        })
    }

    /// The group events go to.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The stream events go to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Sends one batch (already within the limits and sorted).
    ///
    /// # Errors
    /// The classified failure.
    pub async fn put(&self, events: &[Event]) -> Result<Rejected, CallError> {
        let mut input = Vec::with_capacity(events.len());
        for e in events {
            let ev = InputLogEvent::builder()
                .timestamp(e.timestamp_ms)
                .message(e.message.clone())
                .build()
                .map_err(|err| CallError {
                    operation: "PutLogEvents",
                    cause: FailureCause::InvalidParameter,
                    code: None,
                    detail: err.to_string(),
                })?;
            input.push(ev);
        }
        let out = self
            .client
            .put_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .set_log_events(Some(input))
            .send()
            .await;
        match out {
            Ok(out) => Ok(out
                .rejected_log_events_info()
                .map_or_else(Rejected::default, |r| {
                    count_rejected(
                        events.len(),
                        r.too_new_log_event_start_index(),
                        r.too_old_log_event_end_index(),
                        r.expired_log_event_end_index(),
                    )
                })),
            Err(err) if err.code() == Some("DataAlreadyAcceptedException") => {
                Ok(Rejected::default())
            }
            Err(err) => Err(classify("PutLogEvents", &err)),
        }
    }

    /// Creates the group (with its retention) and the stream; "already exists" is success.
    ///
    /// # Errors
    /// The classified failure of a create call.
    pub async fn create_destination(&self) -> Result<(), CallError> {
        match self
            .client
            .create_log_group()
            .log_group_name(&self.group)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(group = %self.group, "created CloudWatch Logs group");
                if let Some(days) = self.retention_days {
                    let res = self
                        .client
                        .put_retention_policy()
                        .log_group_name(&self.group)
                        .retention_in_days(days as i32)
                        .send()
                        .await;
                    if let Err(err) = res {
                        let e = classify("PutRetentionPolicy", &err);
                        tracing::warn!(group = %self.group, days, error = %e.detail, "could not set the group's retention");
                    }
                }
            }
            Err(err) if err.code() == Some("ResourceAlreadyExistsException") => {}
            Err(err) => return Err(classify("CreateLogGroup", &err)),
        }
        match self
            .client
            .create_log_stream()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(group = %self.group, stream = %self.stream, "created CloudWatch Logs stream");
                Ok(())
            }
            Err(err) if err.code() == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(err) => Err(classify("CreateLogStream", &err)),
        }
    }
}

fn classify<E>(
    operation: &'static str,
    err: &SdkError<E, aws_sdk_cloudwatchlogs::config::http::HttpResponse>,
) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = DisplayErrorContext(err).to_string();
    let (cause, code) = match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().map(str::to_owned);
            (
                classify_service_error(code.as_deref(), se.raw().status().as_u16()),
                code,
            )
        }
        SdkError::TimeoutError(_) => (FailureCause::Timeout, None),
        SdkError::DispatchFailure(d) if d.is_timeout() => (FailureCause::Timeout, None),
        SdkError::DispatchFailure(d) if d.is_io() => (FailureCause::Connection, None),
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
            if mentions_credentials(&detail) =>
        {
            (FailureCause::Credentials, None)
        }
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (FailureCause::Connection, None)
        }
        _ => (FailureCause::Other, None),
    };
    CallError {
        operation,
        cause,
        code,
        detail,
    }
}

fn mentions_credentials(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("credential") || d.contains("identity")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_indexes_are_counted_as_exclusive_ends() {
        assert_eq!(count_rejected(10, None, None, None), Rejected::default());
        assert_eq!(
            count_rejected(10, Some(7), Some(2), None),
            Rejected {
                too_new: 3,
                too_old: 2,
                expired: 0
            }
        );
        assert_eq!(
            count_rejected(10, None, Some(2), Some(5)),
            Rejected {
                too_new: 0,
                too_old: 2,
                expired: 3
            }
        );
        assert_eq!(
            count_rejected(4, Some(-1), Some(99), None),
            Rejected {
                too_new: 4,
                too_old: 4,
                expired: 0
            },
            "indexes out of range are clamped"
        );
    }

    #[test]
    fn credential_failures_are_recognised_in_the_error_text() {
        assert!(mentions_credentials(
            "failed to load credentials: no providers in chain"
        ));
        assert!(mentions_credentials("identity resolver failed"));
        assert!(!mentions_credentials("connection refused"));
    }
}
