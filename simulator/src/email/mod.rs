//! A local email API speaking Resend's dialect (the team's STACK-NOTES; where they are silent,
//! Resend's documentation decides), for the notification tests and local runs: `POST /emails`
//! with a bearer key, Resend's idempotency (the same key and body get the stored answer, another
//! body 409 `invalid_idempotent_request`, a key still running 409
//! `concurrent_idempotent_requests`), its error JSON `{statusCode, message, name}`, faults set at
//! run time (latency, 5xx, 429 with `retry-after`, any error answer, "accept, then drop the
//! connection without answering"), and a list of every email it accepted.
//!
//! It shares the payment simulator's HTTP server (`crate::server`: a handler can drop its
//! connection on purpose) and nothing else: its own state, its own control API under `/_sim`, its
//! own binary (`email-simulator`).
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use payment_simulator::email::{EmailSimulator, EmailSimulatorConfig};
//! let simulator = EmailSimulator::start(EmailSimulatorConfig::default()).await?;
//! let base_url = simulator.base_url(); // EMAIL_API_URL
//! let key = simulator.api_key(); // EMAIL_API_KEY
//! // ... send through it ...
//! let sent = simulator.emails().len();
//! # let _ = (base_url, key, sent);
//! # Ok(()) }
//! ```

mod api;
mod control;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The key the simulator accepts unless told otherwise.
pub const DEFAULT_EMAIL_API_KEY: &str = "re_test_simulator";

/// How an email simulator starts.
#[derive(Debug, Clone)]
pub struct EmailSimulatorConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The accepted API keys (`Authorization: Bearer <key>`).
    pub api_keys: Vec<String>,
    /// How long an idempotency key is kept (Resend: 24 hours).
    pub idempotency_key_max_age: Duration,
}

impl Default for EmailSimulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_keys: vec![DEFAULT_EMAIL_API_KEY.to_owned()],
            idempotency_key_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// An email the simulator accepted, as the request named it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedEmail {
    /// The id it answered (`{"id": ...}`).
    pub id: String,
    pub from: String,
    /// The recipients (a single string in the request becomes one entry).
    pub to: Vec<String>,
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
    /// `reply_to`, as a list like `to`.
    pub reply_to: Vec<String>,
    /// The custom headers (`Message-ID`, `In-Reply-To`, ...), as sent.
    pub headers: HashMap<String, String>,
    /// The tags (`name` → `value`), as sent.
    #[serde(default)]
    pub tags: HashMap<String, String>,
    /// The request's `Idempotency-Key`, if it had one.
    pub idempotency_key: Option<String>,
    pub created_at_unix_ms: u64,
}

/// One `POST /emails` as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailRequest {
    pub received_at_unix_ms: u64,
    pub idempotency_key: Option<String>,
    /// The W3C `traceparent` header, if any: the caller's trace.
    #[serde(default)]
    pub traceparent: Option<String>,
    /// The status answered; none when the connection was dropped without an answer.
    pub status: Option<u16>,
    /// True when the answer was the one stored under the idempotency key.
    pub replayed: bool,
    /// The fault the request met, if any (its `kind`).
    pub fault: Option<String>,
    /// The request's body as it arrived (UTF-8, lossily): a resend under the same key can be
    /// compared byte for byte.
    #[serde(default)]
    pub body: String,
}

/// What a request meets instead of (or besides) a normal answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EmailFaultAction {
    /// The request is handled after `millis`, its idempotency key held meanwhile (a retry with
    /// the key then gets 409 `concurrent_idempotent_requests`).
    Latency { millis: u64 },
    /// Answered `status` (500..=599) `application_error` without accepting; nothing stored under
    /// the key.
    ServerError { status: u16 },
    /// Answered 429 `rate_limit_exceeded` with `retry-after: retry_after_secs`, without
    /// accepting.
    RateLimit { retry_after_secs: u64 },
    /// Answered `status` (400..=599) with `name` and `message`, without accepting (a 422, a 401,
    /// a 403 as the provider would send them).
    Error {
        status: u16,
        name: String,
        message: String,
    },
    /// The email is **accepted** (listed, its answer stored under the key), then the connection
    /// is closed without an answer: the client's answer is lost.
    AcceptThenDrop,
}

impl EmailFaultAction {
    fn kind(&self) -> &'static str {
        match self {
            Self::Latency { .. } => "latency",
            Self::ServerError { .. } => "server_error",
            Self::RateLimit { .. } => "rate_limit",
            Self::Error { .. } => "error",
            Self::AcceptThenDrop => "accept_then_drop",
        }
    }
}

/// A fault for the next `times` requests to `POST /emails` (none: until cleared). Each request
/// takes at most one rule, the oldest with times left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailFaultRule {
    pub action: EmailFaultAction,
    #[serde(default)]
    pub times: Option<u32>,
}

impl EmailFaultRule {
    /// `action` for the next `times` requests.
    pub fn new(action: EmailFaultAction, times: u32) -> Self {
        Self {
            action,
            times: Some(times),
        }
    }
}

/// A rule in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveEmailFault {
    pub id: u64,
    pub rule: EmailFaultRule,
    /// Requests it still applies to; none for "until cleared".
    pub remaining: Option<u32>,
    /// Requests it applied to so far.
    pub applied: u32,
}

/// Why a fault rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEmailFault(String);

impl EmailFaultRule {
    fn validate(&self) -> Result<(), InvalidEmailFault> {
        let invalid = |message: &str| Err(InvalidEmailFault(message.to_owned()));
        if self.times == Some(0) {
            return invalid("times must be at least 1 (or left out)");
        }
        match &self.action {
            EmailFaultAction::ServerError { status } if !(500..=599).contains(status) => {
                invalid("server_error: status must be 500..=599")
            }
            EmailFaultAction::Error { status, .. } if !(400..=599).contains(status) => {
                invalid("error: status must be 400..=599")
            }
            EmailFaultAction::Latency { .. }
            | EmailFaultAction::ServerError { .. }
            | EmailFaultAction::RateLimit { .. }
            | EmailFaultAction::Error { .. }
            | EmailFaultAction::AcceptThenDrop => Ok(()),
        }
    }
}

/// An idempotency key's state.
#[derive(Debug, Clone)]
enum KeyState {
    /// Its first request is still being handled.
    Running,
    /// Its first request's answer.
    Saved { status: u16, body: String },
}

#[derive(Debug, Clone)]
struct KeyEntry {
    /// The request's body, parsed: another body under the key is refused.
    fingerprint: serde_json::Value,
    state: KeyState,
    created: std::time::Instant,
}

/// Everything one lock guards.
#[derive(Debug, Default)]
struct Book {
    emails: Vec<AcceptedEmail>,
    requests: Vec<EmailRequest>,
    /// By (API key, idempotency key).
    keys: HashMap<(String, String), KeyEntry>,
    faults: VecDeque<ActiveEmailFault>,
    next_fault_id: u64,
}

impl Book {
    fn take_fault(&mut self) -> Option<EmailFaultAction> {
        let fault = self
            .faults
            .iter_mut()
            .find(|fault| fault.remaining != Some(0))?;
        fault.applied += 1;
        if let Some(remaining) = &mut fault.remaining {
            *remaining -= 1;
        }
        let action = fault.rule.action.clone();
        self.faults.retain(|fault| fault.remaining != Some(0));
        Some(action)
    }
}

#[derive(Debug)]
struct Shared {
    config: EmailSimulatorConfig,
    book: Mutex<Book>,
    shutdown: CancellationToken,
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, Book> {
        // A poisoned lock only means a panic elsewhere; the record is still the best there is.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add_fault(&self, rule: EmailFaultRule) -> Result<ActiveEmailFault, InvalidEmailFault> {
        rule.validate()?;
        let mut book = self.book();
        book.next_fault_id += 1;
        let fault = ActiveEmailFault {
            id: book.next_fault_id,
            remaining: rule.times,
            rule,
            applied: 0,
        };
        book.faults.push_back(fault.clone());
        Ok(fault)
    }

    fn reset(&self) {
        *self.book() = Book::default();
    }
}

/// Starts email simulators.
#[derive(Debug)]
pub struct EmailSimulator;

impl EmailSimulator {
    /// Binds `config.listen` and serves until the handle is shut down or dropped.
    pub async fn start(config: EmailSimulatorConfig) -> std::io::Result<EmailSimulatorHandle> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            book: Mutex::new(Book::default()),
            shutdown: CancellationToken::new(),
        });
        let router = api::routes()
            .merge(control::routes())
            .fallback(api::not_found)
            .with_state(Arc::clone(&shared));
        tokio::spawn(crate::server::serve(
            listener,
            router,
            shared.shutdown.clone(),
        ));
        tracing::info!(%addr, "email simulator listening");
        Ok(EmailSimulatorHandle { addr, shared })
    }
}

/// A running email simulator. Dropping it stops the server and its connections.
#[derive(Debug)]
pub struct EmailSimulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Drop for EmailSimulatorHandle {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl EmailSimulatorHandle {
    /// The bound address (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`: the `EMAIL_API_URL` to give the service.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first accepted key.
    pub fn api_key(&self) -> &str {
        self.shared
            .config
            .api_keys
            .first()
            .map_or(DEFAULT_EMAIL_API_KEY, String::as_str)
    }

    /// Stops serving.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Every email accepted, oldest first.
    pub fn emails(&self) -> Vec<AcceptedEmail> {
        self.shared.book().emails.clone()
    }

    /// Every `POST /emails`, in the order they were answered (or dropped).
    pub fn requests(&self) -> Vec<EmailRequest> {
        self.shared.book().requests.clone()
    }

    /// Adds a fault; see [`EmailFaultAction`].
    pub fn add_fault(&self, rule: EmailFaultRule) -> Result<ActiveEmailFault, InvalidEmailFault> {
        self.shared.add_fault(rule)
    }

    /// The faults in force.
    pub fn faults(&self) -> Vec<ActiveEmailFault> {
        self.shared.book().faults.iter().cloned().collect()
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.book().faults.clear();
    }

    /// Forgets the emails, the request log, the idempotency keys and the faults.
    pub fn reset(&self) {
        self.shared.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_used_up_oldest_first_and_one_without_times_stays() {
        let mut book = Book::default();
        let rule = |action, times| ActiveEmailFault {
            id: 0,
            rule: EmailFaultRule { action, times },
            remaining: times,
            applied: 0,
        };
        book.faults
            .push_back(rule(EmailFaultAction::ServerError { status: 500 }, Some(2)));
        book.faults
            .push_back(rule(EmailFaultAction::AcceptThenDrop, None));
        let taken: Vec<_> = (0..4).filter_map(|_| book.take_fault()).collect();
        assert_eq!(
            taken,
            [
                EmailFaultAction::ServerError { status: 500 },
                EmailFaultAction::ServerError { status: 500 },
                EmailFaultAction::AcceptThenDrop,
                EmailFaultAction::AcceptThenDrop,
            ]
        );
        assert_eq!(book.faults.len(), 1, "the used-up rule is gone");
        assert_eq!(book.faults[0].applied, 2);
    }

    #[test]
    fn statuses_out_of_their_range_and_zero_times_are_refused() {
        for (action, times) in [
            (EmailFaultAction::ServerError { status: 404 }, Some(1)),
            (
                EmailFaultAction::Error {
                    status: 200,
                    name: String::new(),
                    message: String::new(),
                },
                Some(1),
            ),
            (EmailFaultAction::AcceptThenDrop, Some(0)),
        ] {
            assert!(EmailFaultRule { action, times }.validate().is_err());
        }
        let json = r#"{"action":{"kind":"rate_limit","retry_after_secs":30},"times":1}"#;
        let rule: EmailFaultRule = serde_json::from_str(json).unwrap();
        assert_eq!(
            rule,
            EmailFaultRule::new(
                EmailFaultAction::RateLimit {
                    retry_after_secs: 30
                },
                1
            )
        );
    }
}
