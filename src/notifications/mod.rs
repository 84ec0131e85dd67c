//! Outgoing email: what a notification says ([`message`]), and the [`EmailSender`] adapter that
//! hands a message to the configured provider (`EMAIL_PROVIDER`; [`smtp`] today). The queue and
//! the workers that call it are `db::queue` and `service::notification_worker`
//! (docs/notifications.md).
//!
//! The trait is object-safe, like the payment provider's (its method returns a boxed future):
//! the service holds one sender chosen at start-up as `Arc<dyn EmailSender>`, so switching
//! providers touches the file that implements the new one and [`sender_for`].

pub mod message;
pub mod smtp;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::bulkhead::Bulkhead;
use crate::configuration::{EmailProviderSettings, EmailSettings};

/// A message ready to send, in the provider's terms: the recipient, the rendered parts and the
/// identity headers. Every value is already single-line where a header needs one
/// ([`message::single_line`]).
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
}

/// Why a message was not sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt later: a 4xx answer, a connection refused or cut, a timeout.
    #[error("{0}")]
    Retry(String),
    /// No attempt can succeed: a 5xx answer (an unknown mailbox, a refused sender) or a message
    /// the provider cannot take.
    #[error("{0}")]
    Permanent(String),
}

/// The future [`EmailSender::send`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// An email provider. A send either hands the message over (the provider accepted it) or says
/// whether trying again can help. The caller bounds it in time and in concurrency
/// ([`EmailSender::bulkhead`]) and holds no database connection across it.
pub trait EmailSender: Send + Sync + std::fmt::Debug {
    /// Sends `email`.
    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> SendFuture<'a>;

    /// The compartment bounding this instance's concurrent sends.
    fn bulkhead(&self) -> &Bulkhead;
}

/// The sender `settings` configure.
pub fn sender_for(settings: &EmailSettings) -> anyhow::Result<Arc<dyn EmailSender>> {
    match &settings.provider {
        EmailProviderSettings::Smtp(smtp) => Ok(Arc::new(smtp::SmtpSender::new(settings, smtp)?)),
    }
}
