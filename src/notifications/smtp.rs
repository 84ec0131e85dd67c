//! The SMTP [`EmailSender`] (`EMAIL_PROVIDER=smtp`), on lettre's tokio transport: rustls (ring)
//! for STARTTLS or implicit TLS, optional authentication, and connections reused across messages
//! (at most `EMAIL_MAX_CONCURRENCY` kept, the bulkhead's bound).
//!
//! A connection is reused only after a conversation that ended. One cut off (its send's deadline
//! passed, its task aborted at shutdown) is closed with its transport, replies unread: lettre's
//! shared pool would hand it to the next message, whose every command would then read the reply
//! to the command before, and a message the relay refused could be recorded sent on a stale `354`.
//!
//! The server's answer decides what happens next: a 4xx reply (a full mailbox, greylisting, a
//! rate limit) and any failure to talk to it at all are worth retrying; a 5xx reply (no such
//! mailbox, a refused sender) is final, and the notification is dead with the server's words.
//!
//! Every send goes through the email circuit breaker. Only the relay's own trouble counts as a
//! failure: no connection, a timeout, a TLS failure, a 421 (the server is closing the channel).
//! A 5xx is the relay doing its job (a success for the breaker); any other 4xx is about the
//! message or the moment (a busy mailbox, greylisting), so it is neutral.
//!
//! The envelope is built from the message's `To` alone, and every header value is typed by
//! lettre and made single-line before it gets there: a subject or a name cannot add a recipient.

use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::message::single_line;
use super::{EmailSender, OutgoingEmail, SendError, SendFuture, Sent};
use crate::configuration::{EmailSettings, SmtpSettings, SmtpTls};
use crate::domain::idna_form;
use crate::resilience::breaker::{CallOutcome, CallResult, CircuitBreaker};
use crate::resilience::bulkhead::Bulkhead;

/// Sends through one SMTP relay.
pub struct SmtpSender {
    connections: Connections,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    bulkhead: Bulkhead,
    breaker: CircuitBreaker,
    /// Where the relay is, for the logs (never the credentials).
    relay: String,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender")
            .field("relay", &self.relay)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// A sender for the relay `smtp` describes; connects lazily (the relay may be down at
    /// start-up: notifications wait for it).
    pub fn new(email: &EmailSettings, smtp: &SmtpSettings) -> anyhow::Result<Self> {
        let from: Mailbox = email
            .from
            .parse()
            .context("EMAIL_FROM is not an email address")?;
        let reply_to = email
            .reply_to
            .as_deref()
            .map(str::parse::<Mailbox>)
            .transpose()
            .context("EMAIL_REPLY_TO is not an email address")?;
        let builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                .context("SMTP_HOST cannot be used with STARTTLS")?,
            SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                .context("SMTP_HOST cannot be used with implicit TLS")?,
        };
        // A pool of one per transport: a transport is one connection (see `Connections`).
        let mut builder = builder
            .port(smtp.port)
            .timeout(Some(smtp.timeout))
            .pool_config(PoolConfig::new().max_size(1));
        if let Some((username, password)) = &smtp.credentials {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            connections: Connections {
                builder,
                idle: Mutex::new(Vec::new()),
                keep: usize::try_from(email.max_concurrency.max(1)).unwrap_or(usize::MAX),
            },
            from,
            reply_to,
            bulkhead: super::bulkhead(email),
            breaker: super::breaker(email),
            relay: format!("{}:{}", smtp.host, smtp.port),
        })
    }

    /// The message as sent: typed headers, a text and an HTML part.
    fn message(&self, email: &OutgoingEmail) -> Result<Message, SendError> {
        // The same form every provider is sent.
        let address: Address = idna_form(&email.to_address).parse().map_err(|error| {
            SendError::Refused(format!("the recipient's address is refused: {error}"))
        })?;
        let name = single_line(&email.to_name);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new((!name.is_empty()).then_some(name), address))
            .subject(single_line(&email.subject))
            .message_id(Some(single_line(&email.message_id)));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        if let Some(root) = &email.thread_root {
            let root = single_line(root);
            builder = builder.in_reply_to(root.clone()).references(root);
        }
        if let Some(unsubscribe) = &email.list_unsubscribe {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                single_line(unsubscribe),
            ));
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|error| SendError::Permanent(format!("the message cannot be built: {error}")))
    }
}

impl EmailSender for SmtpSender {
    /// One SMTP conversation, bounded by `SMTP_TIMEOUT_MS` per command (the caller bounds the
    /// whole by `deadline`): a relay that answered 4xx is asked again by the queue, later.
    fn send<'a>(&'a self, email: &'a OutgoingEmail, _deadline: Instant) -> SendFuture<'a> {
        Box::pin(async move {
            let message = self.message(email)?;
            let permit = self
                .breaker
                .try_acquire()
                .map_err(|refused| SendError::CircuitOpen {
                    retry_after: refused.retry_after,
                })?;
            let started = Instant::now();
            let transport = self.connections.take();
            let answer = transport.send(message).await;
            // Only here, after the conversation's end: a send dropped before (see the module's
            // documentation) drops its transport instead.
            self.connections.give_back(transport);
            match answer {
                Ok(_) => {
                    self.breaker.timed(CallResult::Ok, started.elapsed());
                    permit.record(CallOutcome::Success);
                    Ok(Sent::default())
                }
                Err(error) if needs_smtputf8(&error) => {
                    // The relay answered; it cannot take this one address. Only a local part
                    // stored under an earlier release's rule gets here: domains go as IDNA.
                    self.breaker.timed(CallResult::Refused, started.elapsed());
                    permit.record(CallOutcome::Success);
                    Err(SendError::Permanent(format!(
                        "SMTP: the relay takes no address outside ASCII (no SMTPUTF8): {error}"
                    )))
                }
                Err(error) => {
                    let code = error
                        .status()
                        .and_then(|code| code.to_string().parse().ok());
                    let result = match code {
                        Some(500..=599) => CallResult::Refused,
                        Some(_) => CallResult::Failed,
                        None => CallResult::NoAnswer,
                    };
                    self.breaker.timed(result, started.elapsed());
                    let (failure, outcome) = classify(code, format!("SMTP: {error}"));
                    permit.record(outcome);
                    Err(failure)
                }
            }
        })
    }

    fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

/// The relay's connections, each in a lettre transport of its own (a pool of one) that a
/// conversation holds from its first command to its last reply and gives back only then.
struct Connections {
    builder: AsyncSmtpTransportBuilder,
    idle: Mutex<Vec<AsyncSmtpTransport<Tokio1Executor>>>,
    /// The most idle transports kept.
    keep: usize,
}

impl Connections {
    /// An idle transport, or a new one (which connects when first used). Call it on the tokio
    /// runtime: a new transport starts its idle-connection reaper there.
    fn take(&self) -> AsyncSmtpTransport<Tokio1Executor> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        idle.unwrap_or_else(|| self.builder.clone().build())
    }

    /// Keeps `transport`, whose conversation has ended, for the next one; beyond `keep` it is
    /// dropped, and lettre closes its connection.
    fn give_back(&self, transport: AsyncSmtpTransport<Tokio1Executor>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.keep {
            idle.push(transport);
        }
    }
}

/// Whether lettre refused to send because the envelope needs SMTPUTF8 and the relay does not
/// offer it: a client error lettre names only in its text.
fn needs_smtputf8(error: &lettre::transport::smtp::Error) -> bool {
    error.is_client() && error.to_string().contains("SMTPUTF8")
}

/// What a failed conversation means, from the server's reply `code` (none: no reply at all, a
/// timeout, a TLS failure) and the enhanced status code in its text (RFC 3463), and what it says
/// of the relay's health, for the breaker. A 5xx is final, but only an address at fault
/// suppresses the address: a negative reply to any command is a 5xx (the greeting, AUTH, MAIL
/// FROM, the end of DATA), and a relay refusing *us* (bad credentials, our address on a
/// blocklist) would otherwise suppress every recipient of the queue.
fn classify(code: Option<u16>, message: String) -> (SendError, CallOutcome) {
    let enhanced = enhanced_status(&message);
    match (code, enhanced) {
        // The relay refuses the sender, not the recipient: authentication required or failed,
        // its security policy (5.7.x), or the desk's own address (5.1.7 bad sender's mailbox
        // syntax, 5.1.8 bad sender's system address: Exchange's "bad outbound sender", Postfix's
        // unknown sender domain). Its own trouble: tried again later, and counted.
        (Some(530 | 535), _) | (Some(500..=599), Some((7, _) | (1, 7 | 8))) => {
            (SendError::retry(message), CallOutcome::Failure)
        }
        // The address at fault: an unknown, disabled or malformed mailbox (5.1.x, 5.2.1), or,
        // from a relay that says no more, the replies RFC 5321 gives a refused mailbox.
        (Some(500..=599), Some((1, _) | (2, 1))) | (Some(550 | 551 | 553), None) => {
            (SendError::Refused(message), CallOutcome::Success)
        }
        // Final, and not the address's doing (a message too large, content refused, a
        // protocol error): this message is dead; the address keeps receiving.
        (Some(500..=599), _) => (SendError::Permanent(message), CallOutcome::Success),
        // "Service not available, closing transmission channel": the relay itself in trouble.
        (Some(421), _) => (SendError::retry(message), CallOutcome::Failure),
        (Some(400..=499), _) => (SendError::retry(message), CallOutcome::Neutral),
        (Some(_) | None, _) => (SendError::retry(message), CallOutcome::Failure),
    }
}

/// The subject and detail of the first permanent enhanced status code (`5.x.y`) in a reply's
/// text, as `(x, y)`.
fn enhanced_status(text: &str) -> Option<(u16, u16)> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find_map(|word| {
            let mut parts = word.split('.');
            let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
            let three_digits = |part: &str| (1..=3).contains(&part.len());
            (class == "5"
                && parts.next().is_none()
                && three_digits(subject)
                && three_digits(detail))
            .then(|| Some((subject.parse().ok()?, detail.parse().ok()?)))
            .flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    fn sender() -> SmtpSender {
        sender_on(2525)
    }

    fn sender_on(port: u16) -> SmtpSender {
        let smtp = SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port,
            tls: SmtpTls::None,
            credentials: None,
            timeout: Duration::from_secs(5),
        };
        let email = EmailSettings {
            from: "Support <support@example.com>".to_owned(),
            reply_to: Some("help@example.com".to_owned()),
            max_concurrency: 2,
            breaker_failure_threshold: 1,
            breaker_cool_down: Duration::from_secs(60),
            provider: crate::configuration::EmailProviderSettings::Smtp(smtp.clone()),
        };
        SmtpSender::new(&email, &smtp).unwrap()
    }

    fn outgoing() -> OutgoingEmail {
        OutgoingEmail {
            to_address: "ann@example.com".to_owned(),
            to_name: "Ann\r\nBcc: attacker@example.com".to_owned(),
            subject: "Help\r\nBcc: attacker@example.com".to_owned(),
            text: "text".to_owned(),
            html: "<p>html</p>".to_owned(),
            message_id: "<n1@desk.example.com>".to_owned(),
            thread_root: Some("<ticket-t1@desk.example.com>".to_owned()),
            list_unsubscribe: Some("<https://desk.example.com/unsubscribe/u1>".to_owned()),
            idempotency_key: "notification-n1".to_owned(),
            notification_id: uuid::Uuid::nil(),
        }
    }

    // The pooled transport starts its idle-connection reaper on the runtime: a runtime it needs.
    #[tokio::test]
    async fn injected_line_breaks_add_no_header_and_no_recipient() {
        let message = sender().message(&outgoing()).unwrap();
        let recipients: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(recipients, ["ann@example.com"]);
        let formatted = String::from_utf8(message.formatted()).unwrap();
        let headers = formatted.split("\r\n\r\n").next().unwrap();
        assert!(
            !headers
                .lines()
                .any(|line| line.to_ascii_lowercase().starts_with("bcc:")),
            "{headers}"
        );
        assert!(
            headers.contains("Message-ID: <n1@desk.example.com>"),
            "{headers}"
        );
        assert!(
            headers.contains("In-Reply-To: <ticket-t1@desk.example.com>"),
            "{headers}"
        );
        assert!(
            headers.contains("References: <ticket-t1@desk.example.com>"),
            "{headers}"
        );
        assert!(headers.contains("Reply-To: help@example.com"), "{headers}");
        assert!(
            headers.contains("List-Unsubscribe: <https://desk.example.com/unsubscribe/u1>"),
            "{headers}"
        );
    }

    #[test]
    fn only_a_refused_address_suppresses_and_a_relay_refusing_the_sender_is_its_own_trouble() {
        let verdict = |code, text: &str| classify(Some(code), text.to_owned());
        let refused = |text: &str| (SendError::Refused(text.to_owned()), CallOutcome::Success);
        let dead = |text: &str| (SendError::Permanent(text.to_owned()), CallOutcome::Success);
        let relays = |text: &str| (SendError::retry(text), CallOutcome::Failure);
        for (code, text) in [
            (550, "550 5.1.1 No such mailbox here"),
            (553, "553 5.1.3 Bad recipient address syntax"),
            (550, "550 5.2.1 Mailbox disabled"),
            (550, "550 Requested action not taken: mailbox unavailable"),
        ] {
            assert_eq!(verdict(code, text), refused(text), "{text}");
        }
        for (code, text) in [
            (535, "535 5.7.8 Authentication credentials invalid"),
            (530, "530 Authentication required"),
            (
                554,
                "554 5.7.1 Service unavailable; client host blocked using a blocklist",
            ),
            (550, "550 5.7.1 Relaying denied"),
            (550, "550 5.1.8 Access denied, bad outbound sender"),
            (
                550,
                "550 5.1.8 <support@desk.example>: Sender address rejected: Domain not found",
            ),
            (
                553,
                "553 5.1.7 The sender address <support@> is not a valid address",
            ),
        ] {
            assert_eq!(verdict(code, text), relays(text), "{text}");
        }
        for (code, text) in [
            (552, "552 5.3.4 Message size exceeds fixed limit"),
            (554, "554 5.6.0 Message content rejected"),
            (554, "554 Transaction failed"),
            (500, "500 Syntax error, command unrecognized"),
        ] {
            assert_eq!(verdict(code, text), dead(text), "{text}");
        }
        // An address is no status code, nor is a transient one.
        assert_eq!(enhanced_status("from 10.5.1.1 port 25"), None);
        assert_eq!(enhanced_status("4.7.1 Try again later"), None);
    }

    #[test]
    fn a_refusal_is_the_relay_answering_and_a_closing_channel_is_its_own_trouble() {
        let verdict = |code| classify(code, String::new());
        assert_eq!(
            verdict(Some(550)),
            (SendError::Refused(String::new()), CallOutcome::Success),
            "a 5xx is the relay doing its job"
        );
        assert_eq!(
            verdict(Some(450)),
            (SendError::retry(""), CallOutcome::Neutral),
            "a busy mailbox says nothing of the relay"
        );
        assert_eq!(
            verdict(Some(421)),
            (SendError::retry(""), CallOutcome::Failure),
            "421: the relay is closing the channel"
        );
        assert_eq!(verdict(None), (SendError::retry(""), CallOutcome::Failure));
    }

    #[tokio::test]
    async fn a_relay_that_cannot_be_reached_counts_against_the_breaker_until_it_refuses_sends() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sender = sender_on(port);
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = sender.send(&outgoing(), deadline).await.unwrap_err();
        assert!(matches!(first, SendError::Retry { .. }), "{first:?}");
        let second = sender.send(&outgoing(), deadline).await.unwrap_err();
        assert!(
            matches!(second, SendError::CircuitOpen { .. }),
            "a threshold of one: open after the first failure, {second:?}"
        );
    }

    #[tokio::test]
    async fn a_malformed_recipient_is_refused_for_good() {
        let mut email = outgoing();
        email.to_address = "not an address".to_owned();
        assert!(matches!(
            sender().message(&email),
            Err(SendError::Refused(_))
        ));
    }
}
