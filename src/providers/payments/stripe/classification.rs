//! What an attempt's answer means: success, a final error, or a failure worth retrying (and
//! whether its outcome is unknown), by the provider's status, its `Stripe-Should-Retry` header and
//! its error object.

use super::*;
use crate::resilience::retry::AttemptFailed;

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// A failed attempt, classified.
pub(super) struct Failure {
    pub(super) error: ProviderError,
    pub(super) retryable: bool,
    /// The provider's `Retry-After`: the next attempt waits at least this long.
    pub(super) retry_after: Option<Duration>,
    pub(super) breaker: CallOutcome,
}

impl AttemptFailed for Failure {
    type Error = ProviderError;

    fn breaker_outcome(&self) -> CallOutcome {
        self.breaker
    }

    fn worth_retrying(&self) -> bool {
        self.retryable
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    fn into_error(self) -> ProviderError {
        self.error
    }
}

impl Failure {
    pub(super) fn final_error(error: ProviderError) -> Self {
        Self {
            error,
            retryable: false,
            retry_after: None,
            breaker: CallOutcome::Failure,
        }
    }
}

/// The error a call ends with: when an earlier attempt's outcome was unknown and the last one got
/// no definitive answer either, the outcome is still unknown.
pub(super) fn resolve(
    last: ProviderError,
    outcome_unknown: Option<ProviderError>,
) -> ProviderError {
    match (outcome_unknown, last) {
        (_, last @ ProviderError::UnknownOutcome { .. }) => last,
        (
            Some(ProviderError::UnknownOutcome { detail }),
            last @ (ProviderError::Unavailable { .. }
            | ProviderError::RateLimited { .. }
            | ProviderError::CircuitOpen { .. }
            | ProviderError::DeadlineExceeded),
        ) => ProviderError::UnknownOutcome {
            detail: format!("{detail}; then {last}"),
        },
        (_, last) => last,
    }
}

/// A 4xx without the provider's error object (see [`classify`]).
fn not_from_the_provider(status: u16, answer: &Answer) -> ProviderError {
    let content_type = answer
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("no content type");
    ProviderError::Unavailable {
        detail: format!(
            "HTTP {status} ({content_type}) without the provider's error object: something in front \
             of the provider answered (check PAYMENT_PROVIDER_URL and any proxy on the way)"
        ),
    }
}

/// Whether a 4xx answer is the provider's own refusal (its error object), not a page of
/// something in front of it.
pub(super) fn is_providers_refusal(answer: &Answer) -> bool {
    answer.status.is_client_error()
        && serde_json::from_slice::<WireErrorBody>(&answer.body)
            .is_ok_and(|body| body.error.kind.is_some())
}

pub(super) fn unexpected(status: u16, detail: String) -> ProviderError {
    ProviderError::UnexpectedResponse { status, detail }
}

pub(super) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Turns an HTTP answer into the result or a classified failure.
pub(super) fn classify<T>(
    request: &HttpRequest,
    answer: Answer,
    parse: fn(&[u8]) -> Result<T, String>,
) -> Result<T, Failure> {
    let status = answer.status.as_u16();
    if answer.status.is_success() {
        return parse(&answer.body).map_err(|detail| {
            // A POST's answer that cannot be read still means the provider executed it.
            let error = if request.is_post() {
                ProviderError::UnknownOutcome {
                    detail: format!("the answer ({status}) could not be read: {detail}"),
                }
            } else {
                unexpected(status, detail)
            };
            Failure::final_error(error)
        });
    }
    let should_retry = answer
        .headers
        .get("stripe-should-retry")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| match value {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        });
    let replayed = answer
        .headers
        .get("idempotent-replayed")
        .is_some_and(|value| value.as_bytes() == b"true");
    let retry_after = answer
        .headers
        .get(http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let object = serde_json::from_slice::<WireErrorBody>(&answer.body)
        .map(|body| body.error)
        .unwrap_or_default();
    let message = object
        .message
        .clone()
        .unwrap_or_else(|| format!("HTTP {status} without an error message"));
    let code = object.code.clone().unwrap_or_default();

    let (error, retryable_by_status, breaker) = match answer.status {
        // Every error the provider answers is its error object, with a type. A 4xx without one
        // came from something in front of it (a proxy, a firewall, a wrong base URL): the
        // request did not reach the provider, so nothing was refused or charged, and what failed
        // is the way there. Taken for a refusal, it would fail a charge for good, or tell
        // reconciliation a payment does not exist.
        _ if answer.status.is_client_error()
            && object.kind.is_none()
            && !matches!(
                answer.status,
                StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS
            ) =>
        {
            (
                not_from_the_provider(status, &answer),
                true,
                CallOutcome::Failure,
            )
        }
        StatusCode::PAYMENT_REQUIRED => (
            ProviderError::Declined {
                code,
                decline_code: object.decline_code,
                message,
                payment_id: object.payment_intent.and_then(|value| match value {
                    serde_json::Value::String(id) => Some(id),
                    serde_json::Value::Object(fields) => fields
                        .get("id")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned),
                    serde_json::Value::Null
                    | serde_json::Value::Bool(_)
                    | serde_json::Value::Number(_)
                    | serde_json::Value::Array(_) => None,
                }),
            },
            false,
            CallOutcome::Success,
        ),
        // The first request with this key is still running: it may charge.
        StatusCode::CONFLICT => (
            request
                .no_answer(format!(
                    "a request with the same key is still running: {message}"
                ))
                .error,
            true,
            CallOutcome::Neutral,
        ),
        StatusCode::TOO_MANY_REQUESTS => (
            ProviderError::RateLimited { retry_after },
            true,
            // The provider is healthy and asking us to slow down; the backoff does that.
            CallOutcome::Neutral,
        ),
        _ if object.kind.as_deref() == Some("idempotency_error") => (
            ProviderError::IdempotencyConflict { message },
            false,
            CallOutcome::Success,
        ),
        _ if answer.status.is_client_error() => (
            ProviderError::InvalidRequest {
                status,
                code,
                param: object.param,
                message,
            },
            false,
            CallOutcome::Success,
        ),
        // Stripe: a 500 (and a gateway timeout) may come after execution began, so for a POST
        // the payment may exist. A replayed 500 is the saved answer of an execution that began:
        // retrying replays it again, so it is final, and only reading the payment back resolves it.
        StatusCode::INTERNAL_SERVER_ERROR | StatusCode::GATEWAY_TIMEOUT if request.is_post() => (
            ProviderError::UnknownOutcome {
                detail: format!("HTTP {status} after the request was accepted: {message}"),
            },
            !replayed,
            CallOutcome::Failure,
        ),
        _ if answer.status.is_server_error() => (
            ProviderError::Unavailable {
                detail: format!("HTTP {status}: {message}"),
            },
            true,
            CallOutcome::Failure,
        ),
        _ => (
            unexpected(status, format!("unexpected HTTP status: {message}")),
            false,
            CallOutcome::Failure,
        ),
    };
    // The provider's own opinion wins, except that a replayed saved answer never changes.
    let retryable = if replayed && matches!(error, ProviderError::UnknownOutcome { .. }) {
        false
    } else {
        should_retry.unwrap_or(retryable_by_status)
    };
    Err(Failure {
        error,
        retryable,
        retry_after,
        breaker,
    })
}
