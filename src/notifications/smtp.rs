//! The SMTP [`EmailSender`] (`EMAIL_PROVIDER=smtp`), on lettre's tokio transport: rustls (ring)
//! for STARTTLS or implicit TLS, optional authentication, and a pool of connections reused across
//! messages (at most `EMAIL_MAX_CONCURRENCY`, the bulkhead's bound).
//!
//! The server's answer decides what happens next: a 4xx reply (a full mailbox, greylisting, a
//! rate limit) and any failure to talk to it at all are worth retrying; a 5xx reply (no such
//! mailbox, a refused sender) is final, and the notification is dead with the server's words.
//!
//! The envelope is built from the message's `To` alone, and every header value is typed by
//! lettre and made single-line before it gets there: a subject or a name cannot add a recipient.

use std::time::Duration;

use anyhow::Context;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::message::single_line;
use super::{EmailSender, OutgoingEmail, SendError, SendFuture};
use crate::bulkhead::Bulkhead;
use crate::configuration::{EmailSettings, SmtpSettings, SmtpTls};

/// Sends through one SMTP relay.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    bulkhead: Bulkhead,
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
    /// start-up: notifications wait for it). Call it on the tokio runtime: the connection pool
    /// starts its reaper there.
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
        let mut builder = builder
            .port(smtp.port)
            .timeout(Some(smtp.timeout))
            .pool_config(PoolConfig::new().max_size(email.max_concurrency.max(1)));
        if let Some((username, password)) = &smtp.credentials {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            reply_to,
            bulkhead: Bulkhead::new(
                "email",
                usize::try_from(email.max_concurrency).unwrap_or(1),
                Duration::from_secs(1),
            ),
            relay: format!("{}:{}", smtp.host, smtp.port),
        })
    }

    /// The message as sent: typed headers, a text and an HTML part.
    fn message(&self, email: &OutgoingEmail) -> Result<Message, SendError> {
        let address: Address = email.to_address.parse().map_err(|error| {
            SendError::Permanent(format!("the recipient's address is refused: {error}"))
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
        builder
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|error| SendError::Permanent(format!("the message cannot be built: {error}")))
    }
}

impl EmailSender for SmtpSender {
    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> SendFuture<'a> {
        Box::pin(async move {
            let message = self.message(email)?;
            match self.transport.send(message).await {
                Ok(_) => Ok(()),
                Err(error) => Err(classify(&error)),
            }
        })
    }

    fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }
}

/// A 5xx answer is final; everything else (a 4xx answer, a connection that failed) may pass later.
fn classify(error: &lettre::transport::smtp::Error) -> SendError {
    let message = format!("SMTP: {error}");
    if error.is_permanent() {
        SendError::Permanent(message)
    } else {
        SendError::Retry(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender() -> SmtpSender {
        let smtp = SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port: 2525,
            tls: SmtpTls::None,
            credentials: None,
            timeout: Duration::from_secs(5),
        };
        let email = EmailSettings {
            from: "Support <support@example.com>".to_owned(),
            reply_to: Some("help@example.com".to_owned()),
            max_concurrency: 2,
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
    }

    #[tokio::test]
    async fn a_malformed_recipient_is_refused_for_good() {
        let mut email = outgoing();
        email.to_address = "not an address".to_owned();
        assert!(matches!(
            sender().message(&email),
            Err(SendError::Permanent(_))
        ));
    }
}
