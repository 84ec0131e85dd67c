//! Settings, read once at start-up from environment variables (and an optional dotenv-style
//! file) and validated as a whole: a missing or malformed setting stops the process with a
//! message naming every offending variable. Connection URLs are secrets and never print; every
//! secret may be given as a file instead (`NAME_FILE`, [`SECRET_SETTINGS`]).
//!
//! One file per section: each holds its settings and the reader of their variables, with the
//! checks that concern that section alone; this file assembles them.

mod attachments;
mod auth;
mod billing;
mod database;
mod idempotency;
mod log;
mod notifications;
mod operations;
mod outbound_webhooks;
mod password_reset;
mod rate_limits;
mod reader;
mod redis;
mod secret_files;
mod server;
mod telemetry;
mod tickets;
mod webhooks;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

pub use self::attachments::{AttachmentSettings, StorageSettings};
pub use self::auth::AuthSettings;
pub use self::billing::{PaymentProviderSettings, ReconciliationSettings};
pub use self::database::DatabaseSettings;
pub use self::idempotency::IdempotencySettings;
pub use self::log::{LogFormat, LogSettings};
pub use self::notifications::{
    EmailProviderSettings, EmailSettings, EmailWebhookSettings, HttpEmailSettings,
    NotificationSettings, NotificationWorkerSettings, SmtpSettings, SmtpTls,
};
pub use self::operations::OperationSettings;
pub use self::outbound_webhooks::{DEFAULT_RETRY_SCHEDULE, OutboundWebhookSettings};
pub use self::password_reset::PasswordResetSettings;
pub use self::rate_limits::RateLimitSettings;
use self::reader::Reader;
pub use self::redis::RedisSettings;
pub use self::secret_files::{FILE_SUFFIX, SECRET_SETTINGS};
pub use self::server::ServerSettings;
pub use self::telemetry::{TraceSampler, TraceSettings};
pub use self::tickets::TicketSettings;
pub use self::webhooks::{WebhookReceivingSettings, WebhookWorkerSettings};
pub use crate::domain::RateQuota;

/// Everything the service needs to run. Built by [`Settings::load`] or, in tests, by hand.
#[derive(Clone, Debug)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub tickets: TicketSettings,
    pub rate_limits: RateLimitSettings,
    pub idempotency: IdempotencySettings,
    pub log: LogSettings,
    /// Traces over OTLP (docs/observability.md, "Traces"); `None` when no
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set: no exporter, no tracing layer.
    pub traces: Option<TraceSettings>,
    /// The payment provider; `None` when `PAYMENT_PROVIDER_URL` is unset (billing unconfigured).
    pub payment_provider: Option<PaymentProviderSettings>,
    /// `BILLING_COMPLETER_INTERVAL_MS`: how often the completer looks for charges and refunds
    /// left pending (docs/billing.md).
    pub billing_completer_interval: Duration,
    /// Reconciliation against the provider's ledger (docs/billing.md, "Reconciliation").
    pub reconciliation: ReconciliationSettings,
    /// The workers that apply the payment provider's webhook events (docs/webhooks.md).
    pub webhook_workers: WebhookWorkerSettings,
    /// How payment webhooks are received (docs/webhooks.md).
    pub webhook_receiving: WebhookReceivingSettings,
    /// Email notifications (docs/notifications.md).
    pub notifications: NotificationSettings,
    /// How the email provider's webhook deliveries are verified (docs/notifications.md).
    pub email_webhook: EmailWebhookSettings,
    /// Attachments and the object storage they live in (docs/attachments.md).
    pub attachments: AttachmentSettings,
    /// Long-running operations and ticket imports (docs/operations.md).
    pub operations: OperationSettings,
    /// Password resets and invitations (docs/identity.md).
    pub password_reset: PasswordResetSettings,
    /// Webhooks sent to customers' endpoints (docs/webhooks.md, "Webhooks we send").
    pub outbound_webhooks: OutboundWebhookSettings,
}

/// Every setting that was missing or malformed, so one start-up names them all.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.problems.join("; "))
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Reads the process environment, falling back to `config_file` (dotenv syntax) for
    /// variables the environment does not set.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut values: HashMap<String, String> = HashMap::new();
        if let Some(path) = config_file {
            let entries = dotenvy::from_path_iter(path).map_err(|error| ConfigError {
                problems: vec![format!("config file {}: {error}", path.display())],
            })?;
            for entry in entries {
                let (key, value) = entry.map_err(|error| ConfigError {
                    problems: vec![format!("config file {}: {error}", path.display())],
                })?;
                values.insert(key, value);
            }
        }
        values.extend(std::env::vars());
        Self::from_lookup(|key| values.get(key).cloned())
    }

    /// Builds settings from any key → value source; every problem is collected, not just the
    /// first.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut reader = Reader::new(&lookup);
        let settings = Self {
            database: reader.database(),
            redis: reader.redis(),
            server: reader.server(),
            auth: reader.auth(),
            tickets: reader.tickets(),
            rate_limits: reader.rate_limits(),
            idempotency: reader.idempotency(),
            log: reader.log(),
            traces: reader.traces(),
            payment_provider: reader.payment_provider(),
            billing_completer_interval: reader.billing_completer_interval(),
            reconciliation: reader.reconciliation(),
            webhook_workers: reader.webhook_workers(),
            webhook_receiving: reader.webhook_receiving(),
            notifications: reader.notifications(),
            email_webhook: reader.email_webhook(),
            attachments: reader.attachments(),
            operations: reader.operations(),
            password_reset: reader.password_reset(),
            outbound_webhooks: reader.outbound_webhooks(),
        };
        let problems = reader.into_problems();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError { problems })
        }
    }
}

#[cfg(test)]
mod tests;
