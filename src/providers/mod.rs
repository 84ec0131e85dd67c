//! The provider adapters: each speaks one outside party's protocol on the service's behalf, and
//! nothing else. An adapter sits behind its own bulkhead and circuit breaker
//! (`crate::resilience`), holds no SQL and knows nothing of tonic: the services above call it
//! between their transactions and turn its answers into theirs.
//!
//! - [`payments`]: the payment provider (a trait, and its Stripe-dialect HTTP client);
//! - [`email`]: the email provider (`EmailSender`: SMTP, or an HTTP API in Resend's dialect);
//! - [`storage`]: S3-compatible object storage for attachments;
//! - [`webhook_client`]: the SSRF-guarded HTTP client that delivers outbound webhooks to the
//!   endpoints customers register (the other party here is whoever the customer names).

pub mod email;
pub mod payments;
pub mod storage;
pub mod webhook_client;
