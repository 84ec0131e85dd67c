//! The one mapping of an [`AppError`] to a `tonic::Status`: its code, its ErrorInfo reason, the
//! details a client acts on (BadRequest, RetryInfo, QuotaFailure, PreconditionFailure), and the
//! response headers Envoy reads from it.
//!
//! Every answer it makes is small enough for any proxy or client to carry: an error travels in
//! HTTP/2 trailers (or the headers of a trailers-only answer), which Envoy, grpcio and grpc-java
//! refuse beyond 8 KiB or so, and a refusal they cannot read is retried elsewhere or reported as
//! RESOURCE_EXHAUSTED instead of the client's mistake. So the message, each value a detail
//! echoes, and the violations one error lists are bounded here, once, for every error
//! (docs/errors.md, "How large an error is").

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{AppError, Dependency, ERROR_DOMAIN, Reason, signature_refusal_reason};

/// The response header Envoy turns into the HTTP status of a success, or of an error whose reason
/// has a REST status of its own (deploy/envoy/envoy.yaml). Listed with every other header name in
/// `crate::wire::headers`.
pub const HTTP_STATUS_HEADER: &str = "x-http-status";

/// The challenge of every UNAUTHENTICATED answer (a REST 401's `WWW-Authenticate`).
pub const WWW_AUTHENTICATE_HEADER: &str = "www-authenticate";

/// Every answer with a RetryInfo carries its delay in this header too (whole seconds). Listed
/// with every other header name in `crate::wire::headers`.
pub const RETRY_AFTER_HEADER: &str = "retry-after";

/// The most violations (BadRequest's or PreconditionFailure's) one error lists; the others are
/// counted in ErrorInfo's `more_violations` and the message.
pub const MAX_LISTED_VIOLATIONS: usize = 20;

/// The most bytes the violations one error lists may hold (field paths, descriptions, each as
/// bounded by [`MAX_TEXT_BYTES`]): 20 short ones fit, a few long ones (a mask's description
/// listing every field) stop the list earlier.
const LISTED_VIOLATIONS_BYTES: usize = 2048;

/// The most bytes of an error's message, and of any text a detail carries (a description, a
/// field path, an id or provider's message it echoes): the message is sent twice (grpc-message,
/// percent-encoded, and inside grpc-status-details-bin).
const MAX_TEXT_BYTES: usize = 512;

/// The most bytes of one ErrorInfo metadata value (codes and counts: a provider's code is the
/// only one not ours).
const MAX_METADATA_VALUE_BYTES: usize = 128;

/// The ErrorInfo metadata key that says how many violations the error found beyond those it lists.
pub const MORE_VIOLATIONS_KEY: &str = "more_violations";

/// `text` cut to at most `max` bytes at a character boundary, `…` marking the cut.
pub(super) fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

/// Which of `violations` (each its group, the field or kind it is about with list indexes
/// dropped, and its size in bytes) one error lists, by index in their order: the first of each
/// group, so that every refused field is named while room lasts, then the others in order, at
/// most [`MAX_LISTED_VIOLATIONS`] within [`LISTED_VIOLATIONS_BYTES`]. Never none of a non-empty
/// list: each violation alone fits the budget.
pub(super) fn listed_violations(violations: &[(&str, usize)]) -> Vec<usize> {
    let mut listed = vec![false; violations.len()];
    let mut groups = std::collections::HashSet::new();
    let firsts = violations
        .iter()
        .enumerate()
        .filter(|(_, (group, _))| groups.insert(*group));
    let (mut count, mut bytes) = (0, 0);
    for (index, (_, size)) in firsts {
        if count < MAX_LISTED_VIOLATIONS && bytes + size <= LISTED_VIOLATIONS_BYTES {
            listed[index] = true;
            count += 1;
            bytes += size;
        }
    }
    for (index, (_, size)) in violations.iter().enumerate() {
        if listed[index] {
            continue;
        }
        if count == MAX_LISTED_VIOLATIONS || bytes + size > LISTED_VIOLATIONS_BYTES {
            break;
        }
        listed[index] = true;
        count += 1;
        bytes += size;
    }
    (0..violations.len())
        .filter(|index| listed[*index])
        .collect()
}

/// A violation as one error lists it: its field path and description, each bounded.
pub(super) type ListedViolation<'a> = (Cow<'a, str>, Cow<'a, str>);

impl super::FieldViolations {
    /// The violations this error lists (bounded as [`listed_violations`] says, each text
    /// bounded), and how many more it found.
    pub(super) fn listed(&self) -> (Vec<ListedViolation<'_>>, usize) {
        let bounded_violations: Vec<ListedViolation<'_>> = self
            .iter()
            .map(|violation| {
                (
                    bounded(&violation.field, MAX_TEXT_BYTES),
                    bounded(&violation.description, MAX_TEXT_BYTES),
                )
            })
            .collect();
        let sizes: Vec<(&str, usize)> = bounded_violations
            .iter()
            .map(|(field, description)| {
                let group = field.split('[').next().unwrap_or_default();
                (group, field.len() + description.len())
            })
            .collect();
        let chosen = listed_violations(&sizes);
        let more = bounded_violations.len() - chosen.len();
        let mut bounded_violations: Vec<Option<_>> =
            bounded_violations.into_iter().map(Some).collect();
        let listed = chosen
            .into_iter()
            .filter_map(|index| bounded_violations[index].take())
            .collect();
        (listed, more)
    }

    /// The error's message: the listed violations, and how many more there are.
    pub(super) fn summary(&self) -> String {
        let (listed, more) = self.listed();
        let more = if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        };
        let parts: Vec<String> = listed
            .iter()
            .map(|(field, description)| format!("{field} {description}"))
            .collect();
        // Room for "invalid request: " and the count, inside the message's bound.
        let room = MAX_TEXT_BYTES - 32 - more.len();
        format!("{}{more}", bounded(&parts.join("; "), room))
    }
}

/// How long a client should wait before retrying a request whose idempotency key is in use.
const IN_USE_RETRY_DELAY: Duration = Duration::from_millis(200);

/// How long a client should wait before sending again a request PostgreSQL rolled back in a
/// conflict: the transaction it conflicted with has usually committed by then.
const CONFLICT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// How long a client should wait before retrying an import refused for the account's limit.
const IMPORT_LIMIT_RETRY_DELAY: Duration = Duration::from_secs(5);

/// When a stream refused for its limit is worth starting again: streams end within their
/// longest duration, most far sooner.
const STREAM_LIMIT_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How long a client should wait before retrying after UNAVAILABLE.
const UNAVAILABLE_RETRY_DELAY: Duration = Duration::from_secs(1);

impl From<AppError> for Status {
    fn from(error: AppError) -> Self {
        Status::from(&error)
    }
}

impl AppError {
    /// Whether the error is the request's final answer, to be replayed for a retry with the same
    /// idempotency key; retryable ones (a dependency down, a deadline, a bug) are not.
    pub fn is_final(&self) -> bool {
        match self {
            Self::InvalidArgument(_)
            | Self::MalformedMessage { .. }
            | Self::Unauthenticated { .. }
            | Self::PermissionDenied { .. }
            | Self::AlreadyExists { .. }
            | Self::FailedPrecondition { .. }
            | Self::Aborted { .. }
            | Self::NotFound { .. }
            | Self::HeadersTooLarge { .. }
            | Self::MessageTooLarge { .. }
            | Self::PaymentDeclined { .. }
            | Self::PaymentRefused { .. }
            | Self::WebhookSignatureRefused(_) => true,
            Self::RateLimited { .. }
            | Self::ImportLimit { .. }
            | Self::StreamLimit { .. }
            | Self::ExportDrained { .. }
            | Self::WebhooksNotConfigured
            | Self::PaymentProviderUnavailable { .. }
            | Self::ProviderBusy { .. }
            | Self::Unavailable { .. }
            | Self::StorageBreakerOpen { .. }
            | Self::RateLimiterUndecided { .. }
            | Self::DeadlineExceeded
            | Self::TransactionConflict(_)
            | Self::Internal(_) => false,
        }
    }
}

impl From<&AppError> for Status {
    fn from(error: &AppError) -> Self {
        let mut details = ErrorDetails::new();
        let (code, reason, message, metadata): (Code, Reason, String, HashMap<String, String>) =
            match error {
                AppError::InvalidArgument(violations) => {
                    let (listed, more) = violations.listed();
                    details.set_bad_request(
                        listed
                            .iter()
                            .map(|(field, description)| {
                                tonic_types::FieldViolation::new(
                                    field.as_ref(),
                                    description.as_ref(),
                                )
                            })
                            .collect::<Vec<_>>(),
                    );
                    (
                        Code::InvalidArgument,
                        violations.reason(),
                        error.to_string(),
                        more_violations(more),
                    )
                }
                AppError::MalformedMessage { field, problem } => {
                    if let Some(field) = field {
                        details.set_bad_request(vec![tonic_types::FieldViolation::new(
                            bounded(field, MAX_TEXT_BYTES),
                            bounded(problem, MAX_TEXT_BYTES),
                        )]);
                    }
                    (
                        Code::InvalidArgument,
                        Reason::MalformedMessage,
                        error.to_string(),
                        HashMap::new(),
                    )
                }
                AppError::Unauthenticated { reason, message } => (
                    Code::Unauthenticated,
                    *reason,
                    message.clone(),
                    HashMap::new(),
                ),
                AppError::PermissionDenied { reason, message } => (
                    Code::PermissionDenied,
                    *reason,
                    message.clone(),
                    HashMap::new(),
                ),
                AppError::AlreadyExists { reason, message } => (
                    Code::AlreadyExists,
                    *reason,
                    message.clone(),
                    HashMap::new(),
                ),
                AppError::RateLimited {
                    subject,
                    policy,
                    quota,
                    retry_after,
                } => {
                    details.set_retry_info(Some(*retry_after));
                    details.set_quota_failure(vec![tonic_types::QuotaViolation::new(
                        bounded(subject, MAX_TEXT_BYTES),
                        format!(
                            "at most {} requests per {} s ({policy} quota)",
                            quota.count,
                            quota.window.as_secs()
                        ),
                    )]);
                    (
                        Code::ResourceExhausted,
                        Reason::RateLimited,
                        error.to_string(),
                        HashMap::from([("policy".to_owned(), (*policy).to_owned())]),
                    )
                }
                AppError::ImportLimit { account, limit } => {
                    details.set_retry_info(Some(IMPORT_LIMIT_RETRY_DELAY));
                    details.set_quota_failure(vec![tonic_types::QuotaViolation::new(
                        bounded(account, MAX_TEXT_BYTES),
                        format!("at most {limit} imports queued or running at once"),
                    )]);
                    (
                        Code::ResourceExhausted,
                        Reason::ImportLimit,
                        error.to_string(),
                        HashMap::from([("limit".to_owned(), limit.to_string())]),
                    )
                }
                AppError::StreamLimit {
                    subject,
                    limit,
                    setting,
                    ..
                } => {
                    details.set_retry_info(Some(STREAM_LIMIT_RETRY_DELAY));
                    details.set_quota_failure(vec![tonic_types::QuotaViolation::new(
                        subject,
                        format!("at most {limit} at once ({setting})"),
                    )]);
                    (
                        Code::ResourceExhausted,
                        Reason::StreamLimit,
                        error.to_string(),
                        HashMap::from([
                            ("limit".to_owned(), limit.to_string()),
                            ("setting".to_owned(), (*setting).to_owned()),
                        ]),
                    )
                }
                AppError::ExportDrained { exported, resume } => {
                    let mut metadata =
                        HashMap::from([("exported".to_owned(), exported.to_string())]);
                    metadata.extend(
                        resume
                            .iter()
                            .map(|(field, value)| ((*field).to_owned(), value.clone())),
                    );
                    (
                        Code::Unavailable,
                        Reason::InstanceDraining,
                        error.to_string(),
                        metadata,
                    )
                }
                AppError::FailedPrecondition {
                    reason,
                    message,
                    violations,
                } => {
                    let bounded_violations: Vec<[Cow<'_, str>; 3]> = violations
                        .iter()
                        .map(|violation| {
                            [
                                bounded(&violation.kind, MAX_TEXT_BYTES),
                                bounded(&violation.subject, MAX_TEXT_BYTES),
                                bounded(&violation.description, MAX_TEXT_BYTES),
                            ]
                        })
                        .collect();
                    let sizes: Vec<(&str, usize)> = bounded_violations
                        .iter()
                        .map(|texts| (texts[0].as_ref(), texts.iter().map(|text| text.len()).sum()))
                        .collect();
                    let listed = listed_violations(&sizes);
                    let more = violations.len() - listed.len();
                    details.set_precondition_failure(
                        listed
                            .into_iter()
                            .map(|index| {
                                let [kind, subject, description] = &bounded_violations[index];
                                tonic_types::PreconditionViolation::new(
                                    kind.as_ref(),
                                    subject.as_ref(),
                                    description.as_ref(),
                                )
                            })
                            .collect::<Vec<_>>(),
                    );
                    (
                        Code::FailedPrecondition,
                        *reason,
                        message.clone(),
                        more_violations(more),
                    )
                }
                AppError::Aborted { reason, message } => {
                    if *reason == Reason::IdempotencyKeyInUse {
                        // The first request is still running: worth retrying soon.
                        details.set_retry_info(Some(IN_USE_RETRY_DELAY));
                    }
                    (Code::Aborted, *reason, message.clone(), HashMap::new())
                }
                AppError::TransactionConflict(source) => {
                    tracing::warn!(error = ?source, "the transaction was rolled back in a conflict");
                    details.set_retry_info(Some(CONFLICT_RETRY_DELAY));
                    (
                        Code::Aborted,
                        Reason::TransactionConflict,
                        error.to_string(),
                        HashMap::new(),
                    )
                }
                AppError::NotFound { resource, id } => {
                    details.set_resource_info(
                        resource.type_name(),
                        bounded(id, MAX_TEXT_BYTES),
                        "",
                        "",
                    );
                    (
                        Code::NotFound,
                        resource.not_found_reason(),
                        error.to_string(),
                        HashMap::from([("resource".to_owned(), resource.to_string())]),
                    )
                }
                AppError::Unavailable { dependency, source } => {
                    tracing::warn!(error = ?source, "{dependency} is unavailable");
                    details.set_retry_info(Some(UNAVAILABLE_RETRY_DELAY));
                    let (reason, message) = match dependency {
                        Dependency::Database => (
                            Reason::DatabaseUnavailable,
                            "the database is unavailable; retry later",
                        ),
                        Dependency::DatabaseConnections => (
                            Reason::DatabaseBusy,
                            "every database connection is busy; retry shortly",
                        ),
                        Dependency::Redis => (
                            Reason::RedisUnavailable,
                            "Redis is unavailable; retry later",
                        ),
                        Dependency::Storage => (
                            Reason::StorageUnavailable,
                            "object storage is unavailable; attachments cannot be uploaded or \
                             checked now; retry later",
                        ),
                    };
                    (
                        Code::Unavailable,
                        reason,
                        message.to_owned(),
                        HashMap::new(),
                    )
                }
                AppError::RateLimiterUndecided { retry_after } => {
                    details.set_retry_info(Some(*retry_after));
                    (
                        Code::Unavailable,
                        Reason::RedisUnavailable,
                        "Redis is unavailable; retry later".to_owned(),
                        HashMap::new(),
                    )
                }
                AppError::StorageBreakerOpen { retry_after } => {
                    details.set_retry_info(Some((*retry_after).max(Duration::from_secs(1))));
                    (
                        Code::Unavailable,
                        Reason::StorageUnavailable,
                        "object storage is unavailable; attachments cannot be uploaded or \
                         checked now; retry later"
                            .to_owned(),
                        HashMap::from([("provider".to_owned(), "storage".to_owned())]),
                    )
                }
                AppError::PaymentDeclined { code, decline_code } => {
                    let mut metadata = HashMap::from([("code".to_owned(), code.clone())]);
                    if let Some(decline_code) = decline_code {
                        metadata.insert("decline_code".to_owned(), decline_code.clone());
                    }
                    (
                        Code::FailedPrecondition,
                        Reason::CardDeclined,
                        error.to_string(),
                        metadata,
                    )
                }
                AppError::PaymentProviderUnavailable {
                    detail,
                    retry_after,
                } => {
                    tracing::warn!(%detail, "the payment provider is unavailable");
                    details.set_retry_info(Some(*retry_after));
                    (
                        Code::Unavailable,
                        Reason::PaymentProviderUnavailable,
                        "the payment provider is unavailable; retry later with the same idempotency key"
                            .to_owned(),
                        HashMap::new(),
                    )
                }
                AppError::PaymentRefused {
                    provider_code,
                    provider_param,
                    field,
                    subject,
                    message,
                } => {
                    let mut metadata =
                        HashMap::from([("provider_code".to_owned(), provider_code.clone())]);
                    if let Some(param) = provider_param {
                        metadata.insert("provider_param".to_owned(), param.clone());
                    }
                    match field {
                        Some(field) => {
                            details.set_bad_request(vec![tonic_types::FieldViolation::new(
                                bounded(field, MAX_TEXT_BYTES),
                                bounded(message, MAX_TEXT_BYTES),
                            )]);
                            (
                                Code::InvalidArgument,
                                Reason::PaymentRefused,
                                error.to_string(),
                                metadata,
                            )
                        }
                        None => {
                            details.set_precondition_failure(vec![
                                tonic_types::PreconditionViolation::new(
                                    "PROVIDER_STATE",
                                    bounded(subject, MAX_TEXT_BYTES),
                                    bounded(message, MAX_TEXT_BYTES),
                                ),
                            ]);
                            (
                                Code::FailedPrecondition,
                                Reason::RefusedByProvider,
                                error.to_string(),
                                metadata,
                            )
                        }
                    }
                }
                AppError::ProviderBusy {
                    provider,
                    retry_after,
                } => {
                    details.set_retry_info(Some(*retry_after));
                    (
                        Code::Unavailable,
                        Reason::ProviderBusy,
                        format!(
                            "{provider} is busy on this instance; retry after the delay (nothing was recorded)"
                        ),
                        HashMap::from([("provider".to_owned(), (*provider).to_owned())]),
                    )
                }
                AppError::HeadersTooLarge { limit, .. } => (
                    Code::ResourceExhausted,
                    Reason::HeadersTooLarge,
                    error.to_string(),
                    HashMap::from([("limit".to_owned(), limit.to_string())]),
                ),
                // RESOURCE_EXHAUSTED, as gRPC's own implementations answer a message over the
                // limit, and the reason Envoy uses for a REST body over its limit.
                AppError::MessageTooLarge { limit } => (
                    Code::ResourceExhausted,
                    Reason::RequestTooLarge,
                    error.to_string(),
                    HashMap::from([("limit".to_owned(), limit.to_string())]),
                ),
                AppError::WebhookSignatureRefused(refusal) => (
                    Code::InvalidArgument,
                    signature_refusal_reason(*refusal),
                    error.to_string(),
                    HashMap::new(),
                ),
                AppError::WebhooksNotConfigured => (
                    Code::Unavailable,
                    Reason::WebhooksNotConfigured,
                    error.to_string(),
                    HashMap::new(),
                ),
                AppError::DeadlineExceeded => (
                    Code::DeadlineExceeded,
                    Reason::DeadlineExceeded,
                    error.to_string(),
                    HashMap::new(),
                ),
                AppError::Internal(source) => {
                    tracing::error!(error = ?source, "internal error");
                    (
                        Code::Internal,
                        Reason::Internal,
                        "internal error; quote the x-request-id of this response when reporting it"
                            .to_owned(),
                        HashMap::new(),
                    )
                }
            };
        let metadata: HashMap<String, String> = metadata
            .into_iter()
            .map(|(key, value)| {
                let value = bounded(&value, MAX_METADATA_VALUE_BYTES).into_owned();
                (key, value)
            })
            .collect();
        details.set_error_info(reason.as_str(), ERROR_DOMAIN, metadata);
        let retry_delay = details.retry_info().and_then(|info| info.retry_delay);
        let message = bounded(&message, MAX_TEXT_BYTES).into_owned();
        let mut status = Status::with_error_details(code, message, details);
        declare_http_status_of(&mut status, reason);
        // What RetryInfo says, also as HTTP says it (RFC 9110 `Retry-After`, whole seconds, at
        // least 1): REST clients and proxies read the header, not the body's details.
        if let Some(delay) = retry_delay {
            let seconds = (delay.as_secs() + u64::from(delay.subsec_nanos() > 0)).max(1);
            if let Ok(value) = tonic::metadata::MetadataValue::try_from(seconds.to_string()) {
                status.metadata_mut().insert(RETRY_AFTER_HEADER, value);
            }
        }
        if code == Code::Unauthenticated {
            status.metadata_mut().insert(
                WWW_AUTHENTICATE_HEADER,
                tonic::metadata::MetadataValue::from_static(bearer_challenge(reason)),
            );
        }
        status
    }
}

/// ErrorInfo's metadata saying how many violations an error found beyond those it lists; none
/// when it lists them all.
fn more_violations(more: usize) -> HashMap<String, String> {
    if more == 0 {
        HashMap::new()
    } else {
        HashMap::from([(MORE_VIOLATIONS_KEY.to_owned(), more.to_string())])
    }
}

/// The `WWW-Authenticate` challenge of an UNAUTHENTICATED answer (RFC 6750; REST clients get it
/// as the 401's header): credentials go in `authorization: Bearer`, for tokens and API keys alike.
/// `error="invalid_token"` when the credentials sent were refused; none when there were none to
/// refuse (RFC 6750 3.1), or when the refused secret was not an `authorization` credential (a
/// password link's token).
const fn bearer_challenge(reason: Reason) -> &'static str {
    if matches!(
        reason,
        Reason::MissingCredentials
            | Reason::PasswordTokenInvalid
            | Reason::PasswordTokenExpired
            | Reason::PasswordTokenUsed
    ) {
        r#"Bearer realm="supportdesk""#
    } else {
        r#"Bearer realm="supportdesk", error="invalid_token""#
    }
}

/// The REST status an error reason is answered with when the one Envoy derives from its gRPC
/// code would mislead: a decline is 402 Payment Required, as the payment provider itself answers.
const HTTP_STATUS_OF_REASON: &[(Reason, &str)] = &[(Reason::CardDeclined, "402")];

/// Marks `status` with `x-http-status` when its reason has a REST status of its own, for Envoy's
/// response filter to apply (deploy/envoy/envoy.yaml). For statuses read back (replays): a
/// replayed decline is 402 too. Fresh errors are marked as they are made.
pub fn declare_http_status(status: &mut Status) {
    let reason = status
        .get_error_details()
        .error_info()
        .and_then(|info| Reason::parse(&info.reason));
    if let Some(reason) = reason {
        declare_http_status_of(status, reason);
    }
}

fn declare_http_status_of(status: &mut Status, reason: Reason) {
    if let Some((_, http)) = HTTP_STATUS_OF_REASON
        .iter()
        .find(|(declared, _)| *declared == reason)
    {
        status.metadata_mut().insert(
            HTTP_STATUS_HEADER,
            tonic::metadata::MetadataValue::from_static(http),
        );
    }
}
