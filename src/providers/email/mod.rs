//! Outgoing email's provider adapter: the [`EmailSender`] that hands a message to the configured
//! provider (`EMAIL_PROVIDER`: [`smtp`], or [`http`] for an email API in Resend's dialect). What
//! a notification says is rendered before it gets here (`domain::notification_message`); the
//! queue and the workers that call the sender are `db::queue` and `service::notification_worker`
//! (docs/notifications.md).
//!
//! The trait is object-safe, like the payment provider's (its method returns a boxed future):
//! the service holds one sender chosen at start-up as `Arc<dyn EmailSender>`, so switching
//! providers touches the file that implements the new one and [`sender_for`].
//!
//! A sender says when the message itself is about to go ([`HandOver`]): from then until the
//! provider answers, its outcome is unknown, and a send that ends without the answer is
//! [`SendError::Unknown`], which the workers resend at most once (docs/notifications.md, "A
//! provider that never answers").
//!
//! Every sender sits behind its own circuit breaker ([`EmailSender::breaker`], with
//! `EMAIL_BREAKER_FAILURES` and `EMAIL_BREAKER_COOL_DOWN_MS`) and its own bulkhead
//! ([`EmailSender::bulkhead`], `EMAIL_MAX_CONCURRENCY`). What counts against the breaker is the
//! provider's own trouble (no answer, a 5xx, a refused key), never a message it refused.

pub mod http;
pub mod smtp;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::configuration::{EmailProviderSettings, EmailSettings};
use crate::resilience::breaker::{BreakerConfig, CircuitBreaker};
use crate::resilience::bulkhead::Bulkhead;

/// The name NotificationService is health-checked by (`grpc.health.v1.Health`): NOT_SERVING
/// while no email provider is configured or its breaker is open. Written here until the proto
/// declares the service; then it is the generated server's `NamedService::NAME`.
pub const HEALTH_SERVICE_NAME: &str = "supportdesk.v1.NotificationService";

/// The provider's name in logs, metrics (`provider="email"`) and bulkhead errors.
pub const PROVIDER_NAME: &str = "email";

/// A message ready to send, in the provider's terms: the recipient, the rendered parts and the
/// identity headers. Every value is already single-line where a header needs one
/// ([`crate::domain::notification_message::single_line`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// The recipient's address (the only recipient: the envelope is built from it alone).
    pub to_address: String,
    /// The recipient's display name; empty for none.
    pub to_name: String,
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part (every value from users escaped).
    pub html: String,
    /// `<id@domain>`, the same on every attempt.
    pub message_id: String,
    /// The thread's root `<...@domain>` (`In-Reply-To` and `References`), when the message
    /// belongs to a ticket's thread.
    pub thread_root: Option<String>,
    /// The `List-Unsubscribe` header's value (`<https://...>`), for a kind a person may opt out
    /// of; none for the notices of their own requests.
    pub list_unsubscribe: Option<String>,
    /// A key of this notification that is the same on every attempt (and after a re-drive): an
    /// API provider's `Idempotency-Key`, so that a retry after a lost answer sends nothing twice.
    pub idempotency_key: String,
    /// The notification's id: an API provider carries it as the tag `notification_id` and gives
    /// it back in its bounce and complaint events, which is how they find the notification.
    pub notification_id: uuid::Uuid,
}

/// A message the provider accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// The provider's id of the message (an API's `id`), when it gives one: what its later
    /// events (a bounce, a complaint) name.
    pub provider_id: Option<String>,
}

/// Why a message was not sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt later: a 4xx answer from an SMTP server, no answer at all, a 5xx
    /// or 429 from an API, a refused API key. `not_before`: the provider asked to wait at least
    /// this long (an API's `retry-after`).
    #[error("{reason}")]
    Retry {
        reason: String,
        not_before: Option<Duration>,
    },
    /// No attempt can succeed, and the recipient's address is at fault: a 5xx answer from an
    /// SMTP server (an unknown mailbox, a refused recipient). The address is suppressed.
    #[error("{0}")]
    Refused(String),
    /// No attempt can succeed, and the message is at fault, not the address: a 400 or 422 from
    /// an API, or a message the provider cannot take.
    #[error("{0}")]
    Permanent(String),
    /// The message went to the provider and no answer came (none within the bound, the
    /// connection lost after it went): the provider may deliver it. The workers resend it at
    /// most once after this (docs/notifications.md).
    #[error("{0}")]
    Unknown(String),
    /// Nothing was sent: the provider's circuit breaker is open (or its one probe is in flight).
    /// Not an attempt: the notification goes back to the queue untried.
    #[error("the email provider's circuit breaker is open; a probe in {retry_after:?}")]
    CircuitOpen { retry_after: Duration },
}

impl SendError {
    /// A failure worth another attempt, with no wish of the provider's about when.
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry {
            reason: reason.into(),
            not_before: None,
        }
    }
}

/// The future [`EmailSender::send`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Sent, SendError>> + Send + 'a>>;

/// The future [`HandOver::handing_over`] returns: `Err` with why the hand-over could not be
/// recorded.
pub type HandOverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// What a sender calls the moment the provider is ready for the message itself, before the
/// first byte of it goes (an SMTP relay's `354`; an API request about to be sent): the caller
/// records that the outcome is unknown from here, and extends its claim to cover the wait. A
/// sender calls it at most once per send, and sends nothing when it fails.
pub trait HandOver: Send + Sync {
    /// The message is about to go, and its answer will be awaited at most `wait`.
    fn handing_over(&self, wait: Duration) -> HandOverFuture<'_>;
}

/// A hand-over recorded nowhere: for the senders' own tests.
#[cfg(test)]
pub(crate) struct NothingRecorded;

#[cfg(test)]
impl HandOver for NothingRecorded {
    fn handing_over(&self, _wait: Duration) -> HandOverFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

/// An email provider. A send either hands the message over (the provider accepted it) or says
/// whether trying again can help. The caller bounds it in concurrency
/// ([`EmailSender::bulkhead`]) and holds no database connection across it; the sender asks its
/// [`EmailSender::breaker`] before each attempt and records how the attempt went.
pub trait EmailSender: Send + Sync + std::fmt::Debug {
    /// Sends `email`, giving up by `deadline` (no retry is started that could not end by then),
    /// calling `hand_over` before the message itself goes; after that the wait for the answer
    /// is the sender's own bound, which it gave `hand_over`.
    fn send<'a>(
        &'a self,
        email: &'a OutgoingEmail,
        deadline: Instant,
        hand_over: &'a dyn HandOver,
    ) -> SendFuture<'a>;

    /// The compartment bounding this instance's concurrent sends.
    fn bulkhead(&self) -> &Bulkhead;

    /// The provider's circuit breaker: health and metrics read it, the workers ask it before
    /// claiming work.
    fn breaker(&self) -> &CircuitBreaker;
}

/// The sender `settings` configure.
pub fn sender_for(settings: &EmailSettings) -> anyhow::Result<Arc<dyn EmailSender>> {
    match &settings.provider {
        EmailProviderSettings::Smtp(smtp) => Ok(Arc::new(smtp::SmtpSender::new(settings, smtp)?)),
        EmailProviderSettings::Http(api) => Ok(Arc::new(http::HttpSender::new(settings, api)?)),
    }
}

/// The breaker `settings` configure, shared by every provider's sender.
fn breaker(settings: &EmailSettings) -> CircuitBreaker {
    CircuitBreaker::new(
        PROVIDER_NAME,
        BreakerConfig {
            failure_threshold: settings.breaker_failure_threshold,
            cool_down: settings.breaker_cool_down,
        },
    )
}

/// The bulkhead `settings` configure: `EMAIL_MAX_CONCURRENCY` sends in flight.
fn bulkhead(settings: &EmailSettings) -> Bulkhead {
    Bulkhead::new(
        PROVIDER_NAME,
        usize::try_from(settings.max_concurrency).unwrap_or(1),
        Duration::from_secs(1),
    )
}
