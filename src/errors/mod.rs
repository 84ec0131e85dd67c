//! The service's one error type and the error policy, in one place.
//!
//! - Handlers and repositories return [`AppResult`]; nothing else builds a `tonic::Status`
//!   (middleware that rejects before a handler runs goes through [`AppError`] too).
//! - [`AppError`] maps to `tonic::Status` in one exhaustive `match`: a new variant does not compile
//!   until it has a status code, a reason and its details.
//! - Every status carries `google.rpc.ErrorInfo` with an UPPER_SNAKE_CASE `reason` and the domain
//!   `supportdesk`; clients branch on the reason, never on the message. Field errors add a
//!   `BadRequest` naming every offending field (at most 20 violations, each refused field at
//!   least once while room lasts, the others counted: an answer stays small enough for any
//!   proxy or client to carry); retryable errors add `RetryInfo`.
//! - A reason is a [`Reason`] variant: its text is written once (`errors/reason.rs`), code matches
//!   variants, and docs/errors.md's catalogue is checked against [`Reason::ALL`].
//! - This module is a leaf: of the crate it imports only `domain`, so every other module can
//!   import it (docs/architecture.md, "Imports point down"). Errors of other modules become an
//!   [`AppError`] through `From` impls that live beside them (`codec`'s `MalformedMessage`);
//!   those of the libraries every layer uses (diesel, bb8, redis) are in `conversions.rs`.
//! - The mapping itself is `status.rs`; the two response headers it writes are named there and
//!   listed with the others in `crate::wire::headers`.
//! - Database and pool failures are classified once, here: a lost or unreachable PostgreSQL is
//!   UNAVAILABLE (retryable), a statement cut short by the request's deadline is
//!   DEADLINE_EXCEEDED, anything unexpected is INTERNAL.
//! - Internal errors are logged with their whole cause chain and answered with a generic message:
//!   a client never sees SQL, hostnames or stack traces.

use std::fmt;
use std::time::Duration;

use crate::domain::{InvalidValue, RateQuota, SignatureRefusal};

mod conversions;
mod reason;
mod status;

pub use reason::Reason;
pub use status::{
    HTTP_STATUS_HEADER, MAX_LISTED_VIOLATIONS, MORE_VIOLATIONS_KEY, RETRY_AFTER_HEADER,
    WWW_AUTHENTICATE_HEADER, declare_http_status,
};

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

    /// As many streams of this kind (exports, event streams) run as the account or this
    /// instance allows (`subject`: `accounts/<id>` or `instance`); retry once one has ended.
    #[error("{subject} already has {limit} {kind} running; at most {limit} at once ({setting})")]
    StreamLimit {
        kind: &'static str,
        subject: String,
        limit: usize,
        setting: &'static str,
    },

    /// This instance began shutting down and ended an export before its end, after `exported`
    /// tickets: the client starts a new export (another instance takes it) from `resume`, the
    /// request fields that select what comes after the last ticket it received (none: from the
    /// start).
    #[error(
        "this instance is shutting down: the export ended after {exported} tickets; start a new one from the resume point in the details"
    )]
    ExportDrained {
        exported: u64,
        resume: Vec<(&'static str, String)>,
    },

    /// A concurrent change got there first (a stale etag); re-read and retry.
    #[error("{message}")]
    Aborted { reason: Reason, message: String },

    /// PostgreSQL rolled the request's transaction back to end a deadlock or a serialization
    /// failure with another transaction running at the same time: nothing was written, and the
    /// same request sent again will most likely succeed.
    #[error(
        "the request conflicted with another one running at the same time and nothing was written; retry it"
    )]
    TransactionConflict(#[source] anyhow::Error),

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

    /// The rate limiter could not reach Redis and its policy is to fail closed: the request was
    /// not counted, so it is refused. `retry_after` is the limiter's pause before it asks Redis
    /// again (REDIS_UNAVAILABLE with RetryInfo, as the `retry-after` header says).
    #[error("the rate limiter cannot reach Redis and refuses what it cannot count")]
    RateLimiterUndecided { retry_after: Duration },

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
    WebhookEndpoint,
    WebhookDelivery,
    Event,
    Notification,
    Suppression,
    Operation,
    Group,
    GroupMember,
    CustomField,
    View,
    Schedule,
    SlaPolicy,
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
            Self::WebhookEndpoint => (
                "supportdesk.v1.WebhookEndpoint",
                Reason::WebhookEndpointNotFound,
                "webhook endpoint",
            ),
            Self::Event => ("supportdesk.v1.Event", Reason::EventNotFound, "event"),
            Self::WebhookDelivery => (
                "supportdesk.v1.WebhookDelivery",
                Reason::WebhookDeliveryNotFound,
                "webhook delivery",
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
            Self::Group => ("supportdesk.v1.Group", Reason::GroupNotFound, "group"),
            Self::GroupMember => (
                "supportdesk.v1.GroupMember",
                Reason::GroupMemberNotFound,
                "group member",
            ),
            Self::Operation => (
                "google.longrunning.Operation",
                Reason::OperationNotFound,
                "operation",
            ),
            Self::CustomField => (
                "supportdesk.v1.CustomField",
                Reason::CustomFieldNotFound,
                "custom field",
            ),
            Self::View => ("supportdesk.v1.View", Reason::ViewNotFound, "view"),
            Self::Schedule => (
                "supportdesk.v1.Schedule",
                Reason::ScheduleNotFound,
                "schedule",
            ),
            Self::SlaPolicy => (
                "supportdesk.v1.SlaPolicy",
                Reason::SlaPolicyNotFound,
                "SLA policy",
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

/// The violations the error lists and how many more it found (`status.rs` bounds both): the
/// same words whether the client reads them or a log line does.
impl fmt::Display for FieldViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
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

    /// FAILED_PRECONDITION `reason`: the account `account_id` already has `count` of what
    /// `plural` names ("groups"), and may have at most `limit`. The violation's type is the
    /// reason, its subject the account.
    pub fn account_limit(
        reason: Reason,
        account_id: impl fmt::Display,
        count: i64,
        limit: i64,
        plural: &str,
    ) -> Self {
        Self::FailedPrecondition {
            reason,
            message: format!(
                "the account has {count} {plural}, the most it may have; delete one first"
            ),
            violations: vec![PreconditionViolation {
                kind: reason.as_str().to_owned(),
                subject: format!("accounts/{account_id}"),
                description: format!("at most {limit} {plural} per account"),
            }],
        }
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

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};
    use tonic_types::{ErrorDetails, StatusExt};

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

    /// The answer's header list as HTTP/2 counts it: name + value + 32 bytes a field.
    fn header_list_bytes(error: AppError) -> usize {
        let response = Status::from(error).into_http::<()>();
        response
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum()
    }

    #[test]
    fn an_error_naming_ten_thousand_fields_keeps_its_trailers_under_8_kib() {
        let mut violations = FieldViolations::new();
        for index in 0..10_000 {
            violations.add(
                format!("statuses[{index}]"),
                &InvalidValue::new("0 is not a ticket status to filter by"),
            );
        }
        violations.add("page_size", &InvalidValue::new("must not be negative"));
        let bytes = header_list_bytes(AppError::InvalidArgument(violations.clone()));
        assert!(bytes < 8 * 1024, "{bytes} bytes");
        let status = Status::from(AppError::InvalidArgument(violations));
        let details = status.get_error_details();
        let fields: Vec<&str> = details
            .bad_request()
            .expect("BadRequest")
            .field_violations
            .iter()
            .map(|violation| violation.field.as_str())
            .collect();
        // Every refused field is named, the first values of the list fill the rest.
        let mut expected: Vec<String> = (0..19).map(|index| format!("statuses[{index}]")).collect();
        expected.push("page_size".to_owned());
        assert_eq!(fields, expected);
        assert_eq!(
            details.error_info().unwrap().metadata["more_violations"],
            "9981"
        );
        assert!(
            status.message().ends_with("(and 9981 more)"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn an_error_echoing_huge_values_keeps_its_trailers_under_8_kib() {
        let huge = "\u{202e}x%".repeat(20_000);
        let mut violations = FieldViolations::new();
        for index in 0..50 {
            violations.add(
                format!("{huge}{index}"),
                &InvalidValue::new(format!("{huge:?} is not a field that can be read")),
            );
        }
        let errors = [
            AppError::InvalidArgument(violations),
            AppError::not_found(Resource::Ticket, &huge),
            AppError::FailedPrecondition {
                reason: Reason::IllegalTransition,
                message: huge.clone(),
                violations: (0..50)
                    .map(|_| PreconditionViolation {
                        kind: huge.clone(),
                        subject: huge.clone(),
                        description: huge.clone(),
                    })
                    .collect(),
            },
            AppError::PaymentRefused {
                provider_code: huge.clone(),
                provider_param: Some(huge.clone()),
                field: Some(huge.clone()),
                subject: huge.clone(),
                message: huge.clone(),
            },
            AppError::PaymentRefused {
                provider_code: huge.clone(),
                provider_param: Some(huge.clone()),
                field: None,
                subject: huge.clone(),
                message: huge.clone(),
            },
            AppError::PaymentDeclined {
                code: huge.clone(),
                decline_code: Some(huge.clone()),
            },
            AppError::MalformedMessage {
                field: Some(huge.clone()),
                problem: huge.clone(),
            },
            AppError::RateLimited {
                subject: huge.clone(),
                policy: "read",
                quota: RateQuota {
                    count: 1,
                    window: Duration::from_secs(1),
                },
                retry_after: Duration::from_secs(1),
            },
            AppError::ImportLimit {
                account: huge.clone(),
                limit: 2,
            },
            AppError::Unauthenticated {
                reason: Reason::InvalidCredentials,
                message: huge.clone(),
            },
        ];
        for error in errors {
            let described = format!("{error:?}").chars().take(60).collect::<String>();
            let bytes = header_list_bytes(error);
            assert!(bytes < 8 * 1024, "{described}: {bytes} bytes");
        }
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
