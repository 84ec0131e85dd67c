//! The service's one error type and the error policy, in one place.
//!
//! - Handlers and repositories return [`AppResult`]; nothing else builds a `tonic::Status`
//!   (middleware that rejects before a handler runs goes through [`AppError`] too).
//! - [`AppError`] maps to `tonic::Status` in one exhaustive `match`: a new variant does not compile
//!   until it has a status code, a reason and its details.
//! - Every status carries `google.rpc.ErrorInfo` with an UPPER_SNAKE_CASE `reason` and the domain
//!   `supportdesk`; clients branch on the reason, never on the message. Field errors add a
//!   `BadRequest` naming every offending field; retryable errors add `RetryInfo`.
//! - A reason is a [`Reason`] variant: its text is written once (`errors/reason.rs`), code matches
//!   variants, and docs/errors.md's catalogue is checked against [`Reason::ALL`].
//! - This module is a leaf: of the crate it imports only `domain` and `wire::headers`, so every
//!   other module can import it (tests/api/cross_cutting/imports.rs). Errors of other modules become an
//!   [`AppError`] through `From` impls that live beside them (`codec`'s `MalformedMessage`).
//! - Database and pool failures are classified once, here: a lost or unreachable PostgreSQL is
//!   UNAVAILABLE (retryable), a statement cut short by the request's deadline is
//!   DEADLINE_EXCEEDED, anything unexpected is INTERNAL.
//! - Internal errors are logged with their whole cause chain and answered with a generic message:
//!   a client never sees SQL, hostnames or stack traces.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::PoolError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{InvalidValue, RateQuota, SignatureRefusal};
use crate::wire::headers::{HTTP_STATUS_HEADER, WWW_AUTHENTICATE_HEADER};

mod reason;

pub use reason::Reason;

/// The `domain` of every ErrorInfo this service sends.
pub const ERROR_DOMAIN: &str = "supportdesk";

pub type AppResult<T> = Result<T, AppError>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request names fields whose values cannot be accepted.
    #[error("invalid request: {0}")]
    InvalidArgument(FieldViolations),

    /// The request's bytes are not a protobuf message of the RPC's request type: the field being
    /// read (`ticket.subject`) when known, and the problem (`codec` builds it).
    #[error("the request message does not decode: {}{problem}", field.as_deref().map(|field| format!("{field}: ")).unwrap_or_default())]
    MalformedMessage {
        field: Option<String>,
        problem: String,
    },

    /// The caller did not say who it is, or said it in a way that cannot be believed.
    #[error("{message}")]
    Unauthenticated { reason: Reason, message: String },

    /// The caller is known but may not do this.
    #[error("{message}")]
    PermissionDenied { reason: Reason, message: String },

    /// What the request would create exists already.
    #[error("{message}")]
    AlreadyExists { reason: Reason, message: String },

    /// The request is valid but the resource is not in a state that allows it.
    #[error("{message}")]
    FailedPrecondition {
        reason: Reason,
        message: String,
        violations: Vec<PreconditionViolation>,
    },

    /// The caller used up a quota; `retry_after` says when to try again.
    #[error("too many requests: at most {} per {} s ({policy}); retry in {} s", quota.count, quota.window.as_secs(), retry_after.as_secs_f64().ceil())]
    RateLimited {
        subject: String,
        policy: &'static str,
        quota: RateQuota,
        retry_after: Duration,
    },

    /// The account already has `limit` imports queued or running; retry once one is done.
    #[error("the account already has {limit} imports queued or running; at most {limit} at once")]
    ImportLimit { account: String, limit: u32 },

    /// A concurrent change got there first (a stale etag); re-read and retry.
    #[error("{message}")]
    Aborted { reason: Reason, message: String },

    /// No such resource in the caller's account (which includes: it exists in another one).
    #[error("{resource} {id} not found")]
    NotFound { resource: Resource, id: String },

    /// A dependency cannot be reached now; retrying later may succeed.
    #[error("{dependency} is unavailable")]
    Unavailable {
        dependency: Dependency,
        #[source]
        source: anyhow::Error,
    },

    /// Object storage's circuit breaker is not closed: nothing was sent to the store;
    /// `retry_after` is what is left of its cool-down (STORAGE_UNAVAILABLE with RetryInfo).
    #[error("object storage is unavailable (its circuit breaker is open)")]
    StorageBreakerOpen { retry_after: Duration },

    /// The request's deadline passed before the work finished; nothing was committed.
    #[error("the request's deadline passed before it completed")]
    DeadlineExceeded,

    /// The request's header list (metadata) is larger than the service accepts; sending it
    /// again will not help.
    #[error("the request's headers are {size} bytes, more than the {limit} bytes allowed")]
    HeadersTooLarge { size: usize, limit: usize },

    /// The request message is larger than `MAX_REQUEST_BYTES`.
    #[error("the request message is larger than the {limit} bytes allowed")]
    MessageTooLarge { limit: usize },

    /// The payment provider declined the payment: no money moved, and the same payment will be
    /// declined again.
    #[error("the card was declined ({code})")]
    PaymentDeclined {
        /// The provider's code (`card_declined`, `expired_card`, ...).
        code: String,
        /// The issuer's reason (`insufficient_funds`, ...), when given.
        decline_code: Option<String>,
    },

    /// The payment provider cannot be reached, its breaker is open, or its answer was lost: the
    /// charge or refund is kept pending and is finished by a retry with the same key or by the
    /// completer; `retry_after` says when a retry is worth it.
    #[error("the payment provider is unavailable: {detail}")]
    PaymentProviderUnavailable {
        detail: String,
        retry_after: Duration,
    },

    /// The payment provider refused the request itself (not a decline): the charge or refund is
    /// failed, and the same request would be refused again. With a `field` it is the caller's
    /// value (INVALID_ARGUMENT naming it); without, the state the provider holds
    /// (FAILED_PRECONDITION).
    #[error("the payment provider refused the request ({provider_code}): {message}")]
    PaymentRefused {
        /// The provider's error code (`amount_too_large`, `resource_missing`, ...).
        provider_code: String,
        /// The provider's parameter, when it named one.
        provider_param: Option<String>,
        /// The request's field the refusal is about, as the client wrote it.
        field: Option<String>,
        /// What was refused (`charges/<id>`), for PreconditionFailure.
        subject: String,
        message: String,
    },

    /// This instance's bulkhead towards an outside provider is full: nothing was recorded or
    /// sent; retry after `retry_after`.
    #[error("{provider} already has as many calls in flight as this instance allows")]
    ProviderBusy {
        provider: &'static str,
        retry_after: Duration,
    },

    /// A webhook delivery whose signature cannot be believed: answered with the reason alone,
    /// which tells a forger nothing about the secret.
    #[error("{}", signature_refusal_message(*.0))]
    WebhookSignatureRefused(SignatureRefusal),

    /// No webhook signing secret is configured: deliveries are refused as unavailable, so the
    /// provider keeps retrying them until the operator sets one.
    #[error("webhooks are not configured on this deployment (no signing secret)")]
    WebhooksNotConfigured,

    /// A bug or an unexpected state: logged in full, answered generically.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The error reason of a refused signature (also what the refusal is logged as).
pub fn signature_refusal_reason(refusal: SignatureRefusal) -> Reason {
    match refusal {
        SignatureRefusal::Missing => Reason::WebhookSignatureMissing,
        SignatureRefusal::Malformed => Reason::WebhookSignatureMalformed,
        SignatureRefusal::Stale => Reason::WebhookSignatureStale,
        SignatureRefusal::Mismatch => Reason::WebhookSignatureMismatch,
    }
}

/// What a client is told about a refused signature: the reason in words, nothing more.
fn signature_refusal_message(refusal: SignatureRefusal) -> &'static str {
    match refusal {
        SignatureRefusal::Missing => "the webhook signature header is missing",
        SignatureRefusal::Malformed => "the webhook signature header is malformed",
        SignatureRefusal::Stale => "the webhook signature is stale",
        SignatureRefusal::Mismatch => "the webhook signature does not match",
    }
}

/// Resources that can be looked up by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    ApiKey,
    Attachment,
    Charge,
    Ticket,
    User,
    WebhookEvent,
    Notification,
    Suppression,
    Operation,
}

impl Resource {
    /// Its message type in the API, its NOT_FOUND reason, and its name in messages: one match,
    /// so a new resource is described completely or not at all.
    fn describe(self) -> (&'static str, Reason, &'static str) {
        match self {
            Self::ApiKey => ("supportdesk.v1.ApiKey", Reason::ApiKeyNotFound, "API key"),
            Self::Attachment => (
                "supportdesk.v1.Attachment",
                Reason::AttachmentNotFound,
                "attachment",
            ),
            Self::Charge => ("supportdesk.v1.Charge", Reason::ChargeNotFound, "charge"),
            Self::Ticket => ("supportdesk.v1.Ticket", Reason::TicketNotFound, "ticket"),
            Self::User => ("supportdesk.v1.User", Reason::UserNotFound, "user"),
            Self::WebhookEvent => (
                "supportdesk.v1.WebhookEvent",
                Reason::WebhookEventNotFound,
                "webhook event",
            ),
            Self::Notification => (
                "supportdesk.v1.Notification",
                Reason::NotificationNotFound,
                "notification",
            ),
            Self::Suppression => (
                "supportdesk.v1.Suppression",
                Reason::SuppressionNotFound,
                "suppressed address",
            ),
            Self::Operation => (
                "google.longrunning.Operation",
                Reason::OperationNotFound,
                "operation",
            ),
        }
    }

    fn type_name(self) -> &'static str {
        self.describe().0
    }

    fn not_found_reason(self) -> Reason {
        self.describe().1
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe().2)
    }
}

/// The services this one depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    Database,
    /// PostgreSQL answers, but every connection of the pool is busy.
    DatabaseConnections,
    Redis,
    /// Object storage (attachments).
    Storage,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Database => "the database",
            Self::DatabaseConnections => "a database connection",
            Self::Redis => "Redis",
            Self::Storage => "object storage",
        })
    }
}

/// One refused field: its path in the request (`ticket.subject`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// One unmet precondition: of what kind (`USER_ROLE`), about what (`users/<id>`), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreconditionViolation {
    pub kind: String,
    pub subject: String,
    pub description: String,
}

/// Every refused field of one request, so a client can fix them all in one round trip.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldViolations {
    violations: Vec<FieldViolation>,
    /// The ErrorInfo reason, when more precise than INVALID_ARGUMENT.
    reason: Option<Reason>,
}

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, problem: &InvalidValue) {
        self.violations.push(FieldViolation {
            field: field.into(),
            description: problem.description().to_owned(),
        });
    }

    /// Keeps the parsed value, or records why `field` was refused and returns `None`.
    pub fn check<T>(
        &mut self,
        field: impl Into<String>,
        parsed: Result<T, InvalidValue>,
    ) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(problem) => {
                self.add(field, &problem);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// How many fields were refused so far.
    pub fn len(&self) -> usize {
        self.violations.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldViolation> {
        self.violations.iter()
    }

    pub fn reason(&self) -> Reason {
        self.reason.unwrap_or(Reason::InvalidArgument)
    }

    /// The same violations under an ErrorInfo reason that says more than INVALID_ARGUMENT.
    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    /// `Ok(())` when nothing was refused; the error for all of them otherwise.
    pub fn into_result(self) -> AppResult<()> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(AppError::InvalidArgument(self))
        }
    }
}

impl fmt::Display for FieldViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .violations
            .iter()
            .map(|violation| format!("{} {}", violation.field, violation.description))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

impl AppError {
    /// Another request with the same idempotency key is still running.
    pub fn idempotency_key_in_use() -> Self {
        Self::Aborted {
            reason: Reason::IdempotencyKeyInUse,
            message: "a request with this idempotency key is still running; retry shortly"
                .to_owned(),
        }
    }

    /// A single refused field.
    pub fn invalid_field(field: impl Into<String>, problem: &InvalidValue) -> Self {
        let mut violations = FieldViolations::new();
        violations.add(field, problem);
        Self::InvalidArgument(violations)
    }

    /// A single refused field whose ErrorInfo reason says more than INVALID_ARGUMENT.
    pub fn invalid_field_reason(field: &str, reason: Reason, description: &str) -> Self {
        let mut violations = FieldViolations::new();
        violations.add(field, &InvalidValue::new(description));
        violations.reason = Some(reason);
        Self::InvalidArgument(violations)
    }

    pub fn not_found(resource: Resource, id: impl fmt::Display) -> Self {
        Self::NotFound {
            resource,
            id: id.to_string(),
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }
}

/// How long a client should wait before retrying a request whose idempotency key is in use.
const IN_USE_RETRY_DELAY: Duration = Duration::from_millis(200);

/// How long a client should wait before retrying an import refused for the account's limit.
const IMPORT_LIMIT_RETRY_DELAY: Duration = Duration::from_secs(5);

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
            | Self::WebhooksNotConfigured
            | Self::PaymentProviderUnavailable { .. }
            | Self::ProviderBusy { .. }
            | Self::Unavailable { .. }
            | Self::StorageBreakerOpen { .. }
            | Self::DeadlineExceeded
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
                    details.set_bad_request(
                        violations
                            .iter()
                            .map(|violation| {
                                tonic_types::FieldViolation::new(
                                    &violation.field,
                                    &violation.description,
                                )
                            })
                            .collect::<Vec<_>>(),
                    );
                    (
                        Code::InvalidArgument,
                        violations.reason(),
                        error.to_string(),
                        HashMap::new(),
                    )
                }
                AppError::MalformedMessage { field, problem } => {
                    if let Some(field) = field {
                        details.set_bad_request(vec![tonic_types::FieldViolation::new(
                            field, problem,
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
                        subject,
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
                        account,
                        format!("at most {limit} imports queued or running at once"),
                    )]);
                    (
                        Code::ResourceExhausted,
                        Reason::ImportLimit,
                        error.to_string(),
                        HashMap::from([("limit".to_owned(), limit.to_string())]),
                    )
                }
                AppError::FailedPrecondition {
                    reason,
                    message,
                    violations,
                } => {
                    details.set_precondition_failure(
                        violations
                            .iter()
                            .map(|violation| {
                                tonic_types::PreconditionViolation::new(
                                    &violation.kind,
                                    &violation.subject,
                                    &violation.description,
                                )
                            })
                            .collect::<Vec<_>>(),
                    );
                    (
                        Code::FailedPrecondition,
                        *reason,
                        message.clone(),
                        HashMap::new(),
                    )
                }
                AppError::Aborted { reason, message } => {
                    if *reason == Reason::IdempotencyKeyInUse {
                        // The first request is still running: worth retrying soon.
                        details.set_retry_info(Some(IN_USE_RETRY_DELAY));
                    }
                    (Code::Aborted, *reason, message.clone(), HashMap::new())
                }
                AppError::NotFound { resource, id } => {
                    details.set_resource_info(resource.type_name(), id, "", "");
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
                                field, message,
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
                                    subject,
                                    message,
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
        details.set_error_info(reason.as_str(), ERROR_DOMAIN, metadata);
        let mut status = Status::with_error_details(code, message, details);
        declare_http_status_of(&mut status, reason);
        if code == Code::Unauthenticated {
            status.metadata_mut().insert(
                WWW_AUTHENTICATE_HEADER,
                tonic::metadata::MetadataValue::from_static(bearer_challenge(reason)),
            );
        }
        status
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

/// Database errors classified once: see the module's policy.
impl From<DieselError> for AppError {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::DatabaseError(kind, info) => match kind {
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                    Self::Unavailable {
                        dependency: Dependency::Database,
                        source: error.into(),
                    }
                }
                // SQLSTATE 57014 has no kind of its own in diesel; its message is fixed by
                // PostgreSQL and is what a `SET LOCAL statement_timeout` produces.
                DatabaseErrorKind::Unknown
                    if info
                        .message()
                        .contains("canceling statement due to statement timeout") =>
                {
                    Self::DeadlineExceeded
                }
                DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::SerializationFailure
                | DatabaseErrorKind::ReadOnlyTransaction
                | DatabaseErrorKind::RestrictViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::ExclusionViolation
                | DatabaseErrorKind::Unknown
                | _ => Self::Internal(error.into()),
            },
            DieselError::BrokenTransactionManager => Self::Unavailable {
                dependency: Dependency::Database,
                source: error.into(),
            },
            DieselError::NotFound
            | DieselError::InvalidCString(_)
            | DieselError::QueryBuilderError(_)
            | DieselError::DeserializationError(_)
            | DieselError::SerializationError(_)
            | DieselError::RollbackErrorOnCommit { .. }
            | DieselError::RollbackTransaction
            | DieselError::AlreadyInTransaction
            | DieselError::NotInTransaction
            | DieselError::IntegerConversion(_)
            // diesel's error is non-exhaustive: an unknown future variant is a bug until mapped.
            | _ => Self::Internal(error.into()),
        }
    }
}

/// A connection that cannot be had within the pool's short timeout means the database is down
/// or saturated: retryable, never a 30-second hang.
impl From<bb8::RunError<PoolError>> for AppError {
    fn from(error: bb8::RunError<PoolError>) -> Self {
        Self::Unavailable {
            dependency: Dependency::Database,
            source: anyhow::Error::new(error),
        }
    }
}

/// Redis failures: a connection that cannot be had, or one that broke, is UNAVAILABLE; anything
/// else (a script error, a wrong type) is a bug.
impl From<redis::RedisError> for AppError {
    fn from(error: redis::RedisError) -> Self {
        if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout()
        {
            Self::Unavailable {
                dependency: Dependency::Redis,
                source: error.into(),
            }
        } else {
            Self::Internal(error.into())
        }
    }
}

impl From<bb8::RunError<redis::RedisError>> for AppError {
    fn from(error: bb8::RunError<redis::RedisError>) -> Self {
        match error {
            bb8::RunError::User(error) => error.into(),
            bb8::RunError::TimedOut => Self::Unavailable {
                dependency: Dependency::Redis,
                source: anyhow::anyhow!("timed out waiting for a Redis connection"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details_of(error: AppError) -> (Code, ErrorDetails) {
        let status = Status::from(error);
        (status.code(), status.get_error_details())
    }

    #[test]
    fn every_refused_field_is_named_in_bad_request() {
        let mut violations = FieldViolations::new();
        violations.add("ticket.subject", &InvalidValue::new("must not be empty"));
        violations.add(
            "ticket.description",
            &InvalidValue::new("must not be empty"),
        );
        let (code, details) = details_of(AppError::InvalidArgument(violations));
        assert_eq!(code, Code::InvalidArgument);
        let fields: Vec<&str> = details
            .bad_request()
            .expect("BadRequest")
            .field_violations
            .iter()
            .map(|violation| violation.field.as_str())
            .collect();
        assert_eq!(fields, ["ticket.subject", "ticket.description"]);
        assert_eq!(
            details.error_info().unwrap().reason,
            Reason::InvalidArgument.as_str()
        );
    }

    #[test]
    fn internal_errors_hide_their_cause_from_the_client() {
        let status = Status::from(AppError::internal(anyhow::anyhow!(
            "relation \"secret_table\" does not exist"
        )));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret_table"));
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().domain, ERROR_DOMAIN);
        assert_eq!(
            details.error_info().unwrap().reason,
            Reason::Internal.as_str()
        );
    }

    #[test]
    fn headers_too_large_is_resource_exhausted_with_the_limit() {
        let (code, details) = details_of(AppError::HeadersTooLarge {
            size: 50_000,
            limit: 40_960,
        });
        assert_eq!(code, Code::ResourceExhausted);
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, Reason::HeadersTooLarge.as_str());
        assert_eq!(info.metadata["limit"], "40960");
    }

    #[test]
    fn a_refused_webhook_signature_carries_its_reason_and_nothing_else() {
        for refusal in [
            SignatureRefusal::Missing,
            SignatureRefusal::Malformed,
            SignatureRefusal::Stale,
            SignatureRefusal::Mismatch,
        ] {
            let status = Status::from(AppError::WebhookSignatureRefused(refusal));
            assert_eq!(status.code(), Code::InvalidArgument);
            let details = status.get_error_details();
            assert_eq!(
                details.error_info().unwrap().reason,
                signature_refusal_reason(refusal).as_str()
            );
            assert!(details.error_info().unwrap().metadata.is_empty());
            assert!(details.bad_request().is_none());
            assert!(details.retry_info().is_none());
        }
    }

    #[test]
    fn unavailable_tells_the_client_when_to_retry() {
        let (code, details) = details_of(AppError::Unavailable {
            dependency: Dependency::Database,
            source: anyhow::anyhow!("connection refused"),
        });
        assert_eq!(code, Code::Unavailable);
        assert!(details.retry_info().is_some());
        assert_eq!(
            details.error_info().unwrap().reason,
            Reason::DatabaseUnavailable.as_str()
        );
    }
}
