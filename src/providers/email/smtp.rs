//! The SMTP [`EmailSender`] (`EMAIL_PROVIDER=smtp`), on lettre's tokio SMTP connection: rustls
//! (ring) for STARTTLS or implicit TLS, optional authentication, and connections reused across
//! messages (at most `EMAIL_MAX_CONCURRENCY` kept, the bulkhead's bound).
//!
//! The conversation is driven here, command by command, rather than by lettre's transport,
//! for two reasons. Every wait is bounded: lettre's transport bounds only the TCP connect
//! (`SMTP_TIMEOUT_MS`), and waits for every reply, the one to the end of the message's data
//! included, for ever. And the caller learns the moment the message itself is about to go
//! ([`HandOver`]): until then a failure delivered nothing; from then until the relay replies to
//! the end of the data, the relay may deliver it whatever happens to us, so the caller records
//! that in PostgreSQL first, and a reply that never comes is an unknown outcome
//! ([`SendError::Unknown`]), not an ordinary failure to retry at will.
//!
//! | step | bounded by | no reply means |
//! |---|---|---|
//! | connect (TCP, greeting, EHLO), STARTTLS, AUTH, NOOP on a reused connection, MAIL, RCPT, DATA | `SMTP_TIMEOUT_MS` each | nothing was delivered: retried later |
//! | the message's data and the reply to its end | `SMTP_DATA_REPLY_TIMEOUT_SECS` (RFC 5321 §4.5.3.2.6's ten minutes by default) | the outcome is unknown: sent again at most once |
//!
//! A connection is reused only after a conversation that ended with the relay's acceptance.
//! One cut off (its send's deadline passed, its task aborted at shutdown) or ended by a refusal
//! is closed, replies unread: reused, its next message would read the reply to the command
//! before each of its own, and a message the relay refused could be recorded sent on a stale
//! `354`. A kept connection is asked `NOOP` before its next message.
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

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use lettre::address::Envelope;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::{Address, Message};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::{EmailSender, HandOver, OutgoingEmail, SendError, SendFuture, Sent};
use crate::configuration::{EmailSettings, SmtpSettings, SmtpTls};
use crate::domain::idna_form;
use crate::domain::notification_message::single_line;
use crate::resilience::breaker::{CallOutcome, CallResult, CircuitBreaker};
use crate::resilience::bulkhead::Bulkhead;

/// Sends through one SMTP relay.
pub struct SmtpSender {
    relay: Relay,
    /// Connections whose last conversation ended with an acceptance, for the next message.
    idle: Mutex<Vec<AsyncSmtpConnection>>,
    /// The most idle connections kept.
    keep: usize,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    bulkhead: Bulkhead,
    breaker: CircuitBreaker,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender")
            .field("relay", &format!("{}:{}", self.relay.host, self.relay.port))
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// Where the relay is and how to talk to it (never printed: it holds the credentials).
struct Relay {
    host: String,
    port: u16,
    tls: SmtpTls,
    /// For STARTTLS and implicit TLS: the relay's name, checked against its certificate.
    tls_parameters: Option<TlsParameters>,
    credentials: Option<Credentials>,
    /// The name we greet the relay with (this machine's).
    hello: ClientId,
    /// `SMTP_TIMEOUT_MS`: each step before the message's data.
    command_timeout: Duration,
    /// `SMTP_DATA_REPLY_TIMEOUT_SECS`: the data and the reply to its end.
    data_reply_timeout: Duration,
}

/// How a conversation ended, when the relay did not accept the message.
enum Ending {
    /// The relay replied no (a 4xx or 5xx), before the data or to its end: what it said is known.
    Replied(lettre::transport::smtp::Error),
    /// No reply before the message's data went (no connection, TLS, a timeout, the connection
    /// cut): nothing was delivered.
    Unreached(String),
    /// The relay cannot take this message as it is (an address outside ASCII and no SMTPUTF8):
    /// nothing was sent.
    Untakeable(String),
    /// The hand-over could not be recorded: the data never went.
    NotHandedOver(String),
    /// The data went and no reply to its end came: the relay may deliver it.
    Unknown(String),
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
        let tls_parameters = match smtp.tls {
            SmtpTls::None => None,
            SmtpTls::StartTls | SmtpTls::Implicit => Some(
                TlsParameters::new(smtp.host.clone())
                    .context("SMTP_HOST cannot be used with TLS")?,
            ),
        };
        let credentials = smtp.credentials.as_ref().map(|(username, password)| {
            Credentials::new(username.clone(), password.expose_secret().to_owned())
        });
        Ok(Self {
            relay: Relay {
                host: smtp.host.clone(),
                port: smtp.port,
                tls: smtp.tls,
                tls_parameters,
                credentials,
                hello: ClientId::default(),
                command_timeout: smtp.timeout,
                data_reply_timeout: smtp.data_reply_timeout,
            },
            idle: Mutex::new(Vec::new()),
            keep: usize::try_from(email.max_concurrency.max(1)).unwrap_or(usize::MAX),
            from,
            reply_to,
            bulkhead: super::bulkhead(email),
            breaker: super::breaker(email),
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

    /// One conversation: a connection (kept or new), the envelope, the hand-over, then the data
    /// and the reply to its end. The connection goes back to the idle ones only after the relay
    /// accepted the message.
    async fn converse(
        &self,
        envelope: &Envelope,
        data: &[u8],
        hand_over: &dyn HandOver,
    ) -> Result<(), Ending> {
        let mut connection = self.connection().await?;
        let relay = &self.relay;
        let mut options = Vec::new();
        let outside_ascii = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|address: &Address| !AsRef::<str>::as_ref(address).is_ascii());
        if outside_ascii {
            if !connection
                .server_info()
                .supports_feature(Extension::SmtpUtfEight)
            {
                // The relay answered; it cannot take this one address. Only a local part stored
                // under an earlier release's rule gets here: domains go as IDNA.
                return Err(Ending::Untakeable(
                    "SMTP: the relay takes no address outside ASCII (no SMTPUTF8)".to_owned(),
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !data.is_ascii() {
            if !connection
                .server_info()
                .supports_feature(Extension::EightBitMime)
            {
                return Err(Ending::Untakeable(
                    "SMTP: the message is not ASCII and the relay offers no 8BITMIME".to_owned(),
                ));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let timeout = relay.command_timeout;
        before_data(
            "MAIL FROM",
            timeout,
            connection.command(Mail::new(envelope.from().cloned(), options)),
        )
        .await?;
        for recipient in envelope.to() {
            before_data(
                "RCPT TO",
                timeout,
                connection.command(Rcpt::new(recipient.clone(), Vec::new())),
            )
            .await?;
        }
        before_data("DATA", timeout, connection.command(Data)).await?;
        // The relay waits for the data: from the first byte of it, the outcome is the relay's.
        // Recorded first; not recorded, the data does not go (the connection is dropped without
        // the data's end, and the relay discards what it has).
        hand_over
            .handing_over(relay.data_reply_timeout)
            .await
            .map_err(Ending::NotHandedOver)?;
        match tokio::time::timeout(relay.data_reply_timeout, connection.message(data)).await {
            Ok(Ok(_accepted)) => {
                self.give_back(connection);
                Ok(())
            }
            Ok(Err(error)) if error.status().is_some() => Err(Ending::Replied(error)),
            Ok(Err(error)) => Err(Ending::Unknown(format!(
                "SMTP: the connection failed after the message was sent, before the relay \
                 replied: {error}"
            ))),
            Err(_elapsed) => Err(Ending::Unknown(format!(
                "SMTP: the relay did not reply to the end of the message within {} s",
                relay.data_reply_timeout.as_secs_f64()
            ))),
        }
    }

    /// A kept connection that still answers `NOOP`, or a new one: connected, greeted, secured
    /// and authenticated as configured, each step within `SMTP_TIMEOUT_MS`.
    async fn connection(&self) -> Result<AsyncSmtpConnection, Ending> {
        let relay = &self.relay;
        loop {
            let kept = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some(mut connection) = kept else { break };
            if !connection.has_broken()
                && tokio::time::timeout(relay.command_timeout, connection.test_connected())
                    .await
                    .unwrap_or(false)
            {
                return Ok(connection);
            }
        }
        let implicit = match relay.tls {
            SmtpTls::Implicit => relay.tls_parameters.clone(),
            SmtpTls::None | SmtpTls::StartTls => None,
        };
        let mut connection = before_data(
            "connect",
            relay.command_timeout,
            AsyncSmtpConnection::connect_tokio1(
                (relay.host.as_str(), relay.port),
                Some(relay.command_timeout),
                &relay.hello,
                implicit,
                None,
            ),
        )
        .await?;
        if let (SmtpTls::StartTls, Some(parameters)) = (relay.tls, &relay.tls_parameters) {
            before_data(
                "STARTTLS",
                relay.command_timeout,
                connection.starttls(parameters.clone(), &relay.hello),
            )
            .await?;
        }
        if let Some(credentials) = &relay.credentials {
            before_data(
                "AUTH",
                relay.command_timeout,
                connection.auth(DEFAULT_MECHANISMS, credentials),
            )
            .await?;
        }
        Ok(connection)
    }

    /// Keeps `connection`, whose conversation ended with an acceptance, for the next one; beyond
    /// `keep` it is dropped, which closes it.
    fn give_back(&self, connection: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.keep {
            idle.push(connection);
        }
    }
}

/// A step before the message's data, within `timeout`: a negative reply is the relay's answer;
/// anything else that goes wrong delivered nothing.
async fn before_data<T>(
    step: &str,
    timeout: Duration,
    future: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, Ending> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) if error.status().is_some() => Err(Ending::Replied(error)),
        Ok(Err(error)) => Err(Ending::Unreached(format!("SMTP: {step}: {error}"))),
        Err(_elapsed) => Err(Ending::Unreached(format!(
            "SMTP: {step}: no reply within {} ms",
            timeout.as_millis()
        ))),
    }
}

impl EmailSender for SmtpSender {
    /// One SMTP conversation, each step before the data within `SMTP_TIMEOUT_MS` and the data
    /// within `SMTP_DATA_REPLY_TIMEOUT_SECS` of its hand-over (the caller bounds the steps before
    /// the data by `deadline`): a relay that answered 4xx is asked again by the queue, later.
    fn send<'a>(
        &'a self,
        email: &'a OutgoingEmail,
        _deadline: Instant,
        hand_over: &'a dyn HandOver,
    ) -> SendFuture<'a> {
        Box::pin(async move {
            let message = self.message(email)?;
            let data = message.formatted();
            let permit = self
                .breaker
                .try_acquire()
                .map_err(|refused| SendError::CircuitOpen {
                    retry_after: refused.retry_after,
                })?;
            let started = Instant::now();
            let ending = self.converse(message.envelope(), &data, hand_over).await;
            let (result, outcome, answer) = match ending {
                Ok(()) => (CallResult::Ok, CallOutcome::Success, Ok(Sent::default())),
                Err(Ending::Untakeable(reason)) => (
                    CallResult::Refused,
                    CallOutcome::Success,
                    Err(SendError::Permanent(reason)),
                ),
                // Our own trouble (PostgreSQL), not the relay's.
                Err(Ending::NotHandedOver(reason)) => (
                    CallResult::Failed,
                    CallOutcome::Neutral,
                    Err(SendError::retry(format!(
                        "the send could not be recorded before the message went, so it did not \
                         go: {reason}"
                    ))),
                ),
                Err(Ending::Unreached(reason)) => (
                    CallResult::NoAnswer,
                    CallOutcome::Failure,
                    Err(SendError::retry(reason)),
                ),
                Err(Ending::Unknown(reason)) => (
                    CallResult::NoAnswer,
                    CallOutcome::Failure,
                    Err(SendError::Unknown(reason)),
                ),
                Err(Ending::Replied(error)) => {
                    let code = error
                        .status()
                        .and_then(|code| code.to_string().parse().ok());
                    let result = match code {
                        Some(500..=599) => CallResult::Refused,
                        Some(_) => CallResult::Failed,
                        None => CallResult::NoAnswer,
                    };
                    let (failure, outcome) = classify(code, format!("SMTP: {error}"));
                    (result, outcome, Err(failure))
                }
            };
            self.breaker.timed(result, started.elapsed());
            permit.record(outcome);
            answer
        })
    }

    fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
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
            data_reply_timeout: Duration::from_secs(5),
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

    #[test]
    fn injected_line_breaks_add_no_header_and_no_recipient() {
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
        let first = sender
            .send(&outgoing(), deadline, &super::super::NothingRecorded)
            .await
            .unwrap_err();
        assert!(matches!(first, SendError::Retry { .. }), "{first:?}");
        let second = sender
            .send(&outgoing(), deadline, &super::super::NothingRecorded)
            .await
            .unwrap_err();
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
