//! Email notifications (docs/notifications.md): `PUBLIC_BASE_URL`, `EMAIL_*`, the provider's own
//! settings (`SMTP_*`, or `EMAIL_API_*` for an HTTP API) and the workers (`NOTIFICATION_*`).

use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use super::reader::Reader;
use super::webhooks::MAX_WEBHOOK_TOLERANCE_SECS;

/// Email notifications: where links point, how mail leaves, and the workers that send it
/// (docs/notifications.md).
#[derive(Clone, Debug)]
pub struct NotificationSettings {
    /// `PUBLIC_BASE_URL`: the address people open the desk at; links in messages start with it
    /// and its host is the domain of every `Message-ID`. Required with an email provider.
    pub public_base_url: Option<url::Url>,
    /// `EMAIL_PROVIDER`: `None` when unset or `none` (notifications are then held, unsent).
    pub email: Option<EmailSettings>,
    /// The workers that send queued notifications.
    pub workers: NotificationWorkerSettings,
}

impl NotificationSettings {
    /// The domain of the notifications' `Message-ID`s: the public base URL's host, or
    /// `supportdesk.invalid` (a reserved name) while none is configured.
    pub fn message_domain(&self) -> &str {
        self.public_base_url
            .as_ref()
            .and_then(url::Url::host_str)
            .unwrap_or("supportdesk.invalid")
    }
}

/// How mail leaves the service.
#[derive(Clone, Debug)]
pub struct EmailSettings {
    /// `EMAIL_FROM`: the sender (`Support <support@example.com>` or a bare address).
    pub from: String,
    /// `EMAIL_REPLY_TO`: where replies go, when not to the sender.
    pub reply_to: Option<String>,
    /// `EMAIL_MAX_CONCURRENCY`: messages this instance may have in flight to the provider at once.
    pub max_concurrency: u32,
    /// `EMAIL_BREAKER_FAILURES`: consecutive failures of the provider that open its circuit
    /// breaker.
    pub breaker_failure_threshold: u32,
    /// `EMAIL_BREAKER_COOL_DOWN_MS`: how long the breaker stays open before one probe.
    pub breaker_cool_down: Duration,
    /// The provider `EMAIL_PROVIDER` names.
    pub provider: EmailProviderSettings,
}

/// The email provider and its own settings.
#[derive(Clone, Debug)]
pub enum EmailProviderSettings {
    /// `EMAIL_PROVIDER=smtp`.
    Smtp(SmtpSettings),
    /// `EMAIL_PROVIDER=http`: an HTTP email API in Resend's dialect.
    Http(HttpEmailSettings),
}

/// An HTTP email API in Resend's dialect (`EMAIL_PROVIDER=http`; docs/notifications.md).
#[derive(Clone, Debug)]
pub struct HttpEmailSettings {
    /// `EMAIL_API_URL`: the API's base URL (`http://` or `https://`); messages are POSTed to
    /// `{EMAIL_API_URL}/emails`.
    pub url: url::Url,
    /// `EMAIL_API_KEY`: sent as `Authorization: Bearer`; a secret, never printed.
    pub api_key: SecretString,
    /// `EMAIL_API_TIMEOUT_MS`: how long one attempt may take, the answer included.
    pub timeout: Duration,
    /// `EMAIL_API_MAX_ATTEMPTS`: attempts per send, the first included, before the
    /// notification goes back to the queue.
    pub max_attempts: u32,
    /// `EMAIL_API_BACKOFF_BASE_MS`: the cap of the first retry's random delay; doubles.
    pub backoff_base: Duration,
    /// `EMAIL_API_BACKOFF_MAX_MS`: the largest cap of a retry's random delay.
    pub backoff_max: Duration,
    /// `EMAIL_API_RETRY_BUDGET_PERCENT`: retries may be at most this share of sends.
    pub retry_budget_percent: u32,
    /// `EMAIL_API_RETRY_BUDGET_MIN_PER_SEC`: retries a second allowed on top of the share.
    pub retry_budget_min_per_second: u32,
}

/// An SMTP relay (`EMAIL_PROVIDER=smtp`).
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// `SMTP_HOST`.
    pub host: String,
    /// `SMTP_PORT`: 587 with STARTTLS, 465 with implicit TLS, 25 without TLS by default.
    pub port: u16,
    /// `SMTP_TLS`: `starttls` (the default), `implicit` or `none` (local test servers only).
    pub tls: SmtpTls,
    /// `SMTP_USERNAME` and `SMTP_PASSWORD`: both or neither.
    pub credentials: Option<(String, SecretString)>,
    /// `SMTP_TIMEOUT_MS`: how long each step before the message's data may take (the connect,
    /// the greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA).
    pub timeout: Duration,
    /// `SMTP_DATA_REPLY_TIMEOUT_SECS`: how long the relay is given to reply to the end of the
    /// message's data (RFC 5321 §4.5.3.2.6: ten minutes). The relay may deliver a message whose
    /// reply never came, so giving up sooner is what makes copies; the claim's lease is extended
    /// for this wait when the data goes.
    pub data_reply_timeout: Duration,
}

/// The longest `SMTP_DATA_REPLY_TIMEOUT_SECS`: an hour.
const MAX_SMTP_DATA_REPLY_TIMEOUT_SECS: u64 = 3600;

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text: only for a server on the same machine (tests, a local relay).
    None,
    /// Plain text upgraded with STARTTLS, which the server must offer.
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
}

impl FromStr for SmtpTls {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "none" => Ok(Self::None),
            "starttls" => Ok(Self::StartTls),
            "implicit" => Ok(Self::Implicit),
            _ => Err("must be none, starttls or implicit".to_owned()),
        }
    }
}

/// The notification workers (docs/notifications.md, "Retries").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationWorkerSettings {
    /// `NOTIFICATION_WORKERS`: workers in this instance (with an email provider).
    pub workers: u32,
    /// `NOTIFICATION_LEASE_SECS`: how long a claimed notification is its worker's.
    pub lease: Duration,
    /// `NOTIFICATION_MAX_ATTEMPTS`: attempts after which a notification is dead.
    pub max_attempts: u32,
    /// `NOTIFICATION_RETRY_BASE_MS`: the cap of the first retry's random delay; doubles.
    pub retry_base: Duration,
    /// `NOTIFICATION_RETRY_MAX_MS`: the largest cap.
    pub retry_max: Duration,
    /// `NOTIFICATION_POLL_INTERVAL_MS`: how often an idle worker looks for due notifications.
    pub poll_interval: Duration,
}

impl Reader<'_> {
    /// `EMAIL_*`, `SMTP_*`, `PUBLIC_BASE_URL` and `NOTIFICATION_*`.
    pub(super) fn notifications(&mut self) -> NotificationSettings {
        let workers = NotificationWorkerSettings {
            workers: self.parsed("NOTIFICATION_WORKERS", 2),
            lease: Duration::from_secs(self.parsed("NOTIFICATION_LEASE_SECS", 60)),
            max_attempts: self.parsed("NOTIFICATION_MAX_ATTEMPTS", 12),
            retry_base: self.millis("NOTIFICATION_RETRY_BASE_MS", 10_000),
            retry_max: self.millis("NOTIFICATION_RETRY_MAX_MS", 3_600_000),
            poll_interval: self.millis("NOTIFICATION_POLL_INTERVAL_MS", 1_000),
        };
        self.positive_duration("NOTIFICATION_LEASE_SECS", workers.lease);
        self.positive("NOTIFICATION_MAX_ATTEMPTS", workers.max_attempts);
        if workers.workers > 64 {
            self.problems
                .push("NOTIFICATION_WORKERS must be at most 64".to_owned());
        }
        if workers.retry_max < workers.retry_base {
            self.problems.push(
                "NOTIFICATION_RETRY_MAX_MS must not be less than NOTIFICATION_RETRY_BASE_MS"
                    .to_owned(),
            );
        }
        let public_base_url =
            self.raw("PUBLIC_BASE_URL")
                .and_then(|raw| match url::Url::parse(raw.trim()) {
                    Ok(url)
                        if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() =>
                    {
                        Some(url)
                    }
                    Ok(_) => {
                        self.problems.push(
                            "PUBLIC_BASE_URL must be an http:// or https:// URL with a host"
                                .to_owned(),
                        );
                        None
                    }
                    Err(error) => {
                        self.problems
                            .push(format!("PUBLIC_BASE_URL is not a valid URL: {error}"));
                        None
                    }
                });
        let provider = self.raw("EMAIL_PROVIDER");
        let email = match provider.as_deref().map(str::trim) {
            None | Some("none") => {
                for (key, provider) in [
                    ("SMTP_HOST", "smtp"),
                    ("EMAIL_FROM", "smtp or http"),
                    ("EMAIL_API_URL", "http"),
                    ("EMAIL_API_KEY", "http"),
                ] {
                    if self.raw(key).is_some() {
                        self.problems.push(format!(
                            "{key} is set but EMAIL_PROVIDER is not (set EMAIL_PROVIDER={provider})"
                        ));
                    }
                }
                None
            }
            Some(name @ ("smtp" | "http")) => {
                if public_base_url.is_none() && self.raw("PUBLIC_BASE_URL").is_none() {
                    self.problems.push(
                        "PUBLIC_BASE_URL is not set (required with EMAIL_PROVIDER: links and \
                         Message-IDs are built from it)"
                            .to_owned(),
                    );
                }
                let provider = if name == "smtp" {
                    EmailProviderSettings::Smtp(self.smtp())
                } else {
                    EmailProviderSettings::Http(self.email_api())
                };
                Some(self.email(provider))
            }
            Some(other) => {
                self.problems.push(format!(
                    "EMAIL_PROVIDER={other:?} is invalid: must be smtp, http or none"
                ));
                None
            }
        };
        NotificationSettings {
            public_base_url,
            email,
            workers,
        }
    }

    /// What every provider shares: the sender, the bound and the breaker.
    fn email(&mut self, provider: EmailProviderSettings) -> EmailSettings {
        let mailbox = |reader: &mut Self, key: &str| {
            let value = reader.raw(key)?;
            match value.trim().parse::<lettre::message::Mailbox>() {
                Ok(_) => Some(value.trim().to_owned()),
                Err(error) => {
                    reader
                        .problems
                        .push(format!("{key}={value:?} is not an email address: {error}"));
                    None
                }
            }
        };
        let from = mailbox(self, "EMAIL_FROM").unwrap_or_default();
        if self.raw("EMAIL_FROM").is_none() {
            self.problems
                .push("EMAIL_FROM is not set (required with EMAIL_PROVIDER)".to_owned());
        }
        let reply_to = mailbox(self, "EMAIL_REPLY_TO");
        let max_concurrency = self.parsed("EMAIL_MAX_CONCURRENCY", 4);
        self.positive("EMAIL_MAX_CONCURRENCY", max_concurrency);
        let breaker_failure_threshold = self.parsed("EMAIL_BREAKER_FAILURES", 5);
        self.positive("EMAIL_BREAKER_FAILURES", breaker_failure_threshold);
        EmailSettings {
            from,
            reply_to,
            max_concurrency,
            breaker_failure_threshold,
            breaker_cool_down: self.millis("EMAIL_BREAKER_COOL_DOWN_MS", 30_000),
            provider,
        }
    }

    /// `SMTP_*`.
    fn smtp(&mut self) -> SmtpSettings {
        let host = self.raw("SMTP_HOST").unwrap_or_else(|| {
            self.problems
                .push("SMTP_HOST is not set (required with EMAIL_PROVIDER=smtp)".to_owned());
            String::new()
        });
        let tls: SmtpTls = self.parsed("SMTP_TLS", SmtpTls::StartTls);
        let default_port = match tls {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
        };
        let port: u16 = self.parsed("SMTP_PORT", default_port);
        if port == 0 {
            self.problems
                .push("SMTP_PORT must be greater than 0".to_owned());
        }
        let credentials = match (self.raw("SMTP_USERNAME"), self.raw("SMTP_PASSWORD")) {
            (Some(username), Some(password)) => Some((username, SecretString::from(password))),
            (None, None) => None,
            (Some(_), None) => {
                self.problems
                    .push("SMTP_USERNAME is set but SMTP_PASSWORD is not".to_owned());
                None
            }
            (None, Some(_)) => {
                self.problems
                    .push("SMTP_PASSWORD is set but SMTP_USERNAME is not".to_owned());
                None
            }
        };
        // RFC 5321 §4.5.3.2.6's ten minutes by default.
        let data_reply_secs: u64 = self.parsed("SMTP_DATA_REPLY_TIMEOUT_SECS", 600);
        if !(1..=MAX_SMTP_DATA_REPLY_TIMEOUT_SECS).contains(&data_reply_secs) {
            self.problems.push(format!(
                "SMTP_DATA_REPLY_TIMEOUT_SECS must be between 1 and \
                 {MAX_SMTP_DATA_REPLY_TIMEOUT_SECS}"
            ));
        }
        let timeout = self.millis("SMTP_TIMEOUT_MS", 10_000);
        SmtpSettings {
            host,
            port,
            tls,
            credentials,
            timeout,
            data_reply_timeout: Duration::from_secs(data_reply_secs),
        }
    }

    /// `EMAIL_API_*`.
    fn email_api(&mut self) -> HttpEmailSettings {
        let url = match self.raw("EMAIL_API_URL") {
            None => {
                self.problems.push(
                    "EMAIL_API_URL is not set (required with EMAIL_PROVIDER=http)".to_owned(),
                );
                None
            }
            Some(raw) => match url::Url::parse(raw.trim()) {
                Ok(url)
                    if matches!(url.scheme(), "http" | "https")
                        && url.host_str().is_some_and(|host| !host.is_empty()) =>
                {
                    Some(url)
                }
                Ok(_) => {
                    self.problems.push(
                        "EMAIL_API_URL must be an http:// or https:// URL with a host".to_owned(),
                    );
                    None
                }
                Err(error) => {
                    self.problems
                        .push(format!("EMAIL_API_URL is not a valid URL: {error}"));
                    None
                }
            },
        };
        let api_key = self.raw("EMAIL_API_KEY").unwrap_or_else(|| {
            self.problems
                .push("EMAIL_API_KEY is not set (required with EMAIL_PROVIDER=http)".to_owned());
            String::new()
        });
        let max_attempts = self.parsed("EMAIL_API_MAX_ATTEMPTS", 3);
        self.positive("EMAIL_API_MAX_ATTEMPTS", max_attempts);
        let backoff_base = self.millis("EMAIL_API_BACKOFF_BASE_MS", 100);
        let backoff_max = self.millis("EMAIL_API_BACKOFF_MAX_MS", 2_000);
        if backoff_max < backoff_base {
            self.problems.push(
                "EMAIL_API_BACKOFF_MAX_MS must not be less than EMAIL_API_BACKOFF_BASE_MS"
                    .to_owned(),
            );
        }
        let retry_budget_percent = self.parsed("EMAIL_API_RETRY_BUDGET_PERCENT", 20);
        if retry_budget_percent > 100 {
            self.problems
                .push("EMAIL_API_RETRY_BUDGET_PERCENT must be between 0 and 100".to_owned());
        }
        HttpEmailSettings {
            // A placeholder when the URL is missing or malformed: the problem stops the start.
            url: url.unwrap_or_else(|| url::Url::parse("http://invalid.invalid/").expect("a URL")),
            api_key: SecretString::from(api_key.trim().to_owned()),
            timeout: self.millis("EMAIL_API_TIMEOUT_MS", 10_000),
            max_attempts,
            backoff_base,
            backoff_max,
            retry_budget_percent,
            retry_budget_min_per_second: self.parsed("EMAIL_API_RETRY_BUDGET_MIN_PER_SEC", 1),
        }
    }
}

/// How the email provider's webhook deliveries (Resend's, signed by Svix) are verified
/// (docs/notifications.md, "The email provider's webhook").
#[derive(Clone, Debug)]
pub struct EmailWebhookSettings {
    /// `EMAIL_WEBHOOK_SECRET`: the endpoint's signing secret (`whsec_<base64>`, as the provider
    /// shows it). Unset: every delivery is refused with UNAVAILABLE `WEBHOOKS_NOT_CONFIGURED`, so
    /// the provider keeps retrying.
    pub secret: Option<SecretString>,
    /// `EMAIL_WEBHOOK_TOLERANCE_SECS`: how far a delivery's `svix-timestamp` may be from now.
    pub tolerance: Duration,
}

impl Reader<'_> {
    /// `EMAIL_WEBHOOK_*`.
    pub(super) fn email_webhook(&mut self) -> EmailWebhookSettings {
        let tolerance_secs = self.parsed("EMAIL_WEBHOOK_TOLERANCE_SECS", 300);
        if !(1..=MAX_WEBHOOK_TOLERANCE_SECS).contains(&tolerance_secs) {
            self.problems.push(format!(
                "EMAIL_WEBHOOK_TOLERANCE_SECS must be between 1 and {MAX_WEBHOOK_TOLERANCE_SECS}"
            ));
        }
        let tolerance = Duration::from_secs(tolerance_secs);
        let secret = self.raw("EMAIL_WEBHOOK_SECRET").map(|value| {
            let value = value.trim().to_owned();
            if let Err(problem) = crate::domain::SvixVerifier::new(&value, tolerance) {
                // What is wrong with it, never what it is.
                self.problems
                    .push(format!("EMAIL_WEBHOOK_SECRET {}", problem.description()));
            }
            SecretString::from(value)
        });
        EmailWebhookSettings { secret, tolerance }
    }
}
