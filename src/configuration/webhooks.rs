//! The payment provider's webhooks: how deliveries are verified (`PAYMENT_WEBHOOK_*`) and how the
//! workers apply them (`WEBHOOK_*`; docs/webhooks.md).

use std::time::Duration;

use secrecy::SecretString;

use super::reader::Reader;

/// How the webhook workers take events from the queue, retry them and give up on them
/// (docs/webhooks.md, "Settings").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookWorkerSettings {
    /// `WEBHOOK_WORKERS`: workers in this instance; 0 receives events but processes none.
    pub workers: u32,
    /// `WEBHOOK_LEASE_SECS`: how long a claimed event is its worker's before another may take it.
    pub lease: Duration,
    /// `WEBHOOK_MAX_ATTEMPTS`: attempts after which an event is dead.
    pub max_attempts: u32,
    /// `WEBHOOK_RETRY_BASE_MS`: the cap of the first retry's random delay; doubles per attempt.
    pub retry_base: Duration,
    /// `WEBHOOK_RETRY_MAX_MS`: the largest cap.
    pub retry_max: Duration,
    /// `WEBHOOK_POLL_INTERVAL_MS`: how often an idle worker looks for due events without being
    /// woken (events received by other instances, retries coming due).
    pub poll_interval: Duration,
}

/// How the payment provider's webhook deliveries are verified.
#[derive(Clone, Debug)]
pub struct WebhookReceivingSettings {
    /// `PAYMENT_WEBHOOK_SECRET`: the endpoint's signing secrets (`whsec_...`), comma-separated;
    /// several during a rotation, every one accepted. Empty when unset: every delivery is then
    /// refused with UNAVAILABLE `WEBHOOKS_NOT_CONFIGURED`, so the provider keeps retrying.
    pub secrets: Vec<SecretString>,
    /// `PAYMENT_WEBHOOK_TOLERANCE_SECS`: how far a signature's timestamp may be from now.
    pub tolerance: Duration,
}

/// The prefix of the payment provider's webhook signing secrets.
const WEBHOOK_SECRET_PREFIX: &str = "whsec_";
/// The fewest characters a signing secret has after its prefix (Stripe's have 32).
const MIN_WEBHOOK_SECRET_CHARS: usize = 16;
/// The largest tolerance accepted: beyond an hour a captured delivery stays replayable too long.
const MAX_WEBHOOK_TOLERANCE_SECS: u64 = 3600;

impl Reader<'_> {
    pub(super) fn webhook_receiving(&mut self) -> WebhookReceivingSettings {
        let secrets = match self.raw("PAYMENT_WEBHOOK_SECRET") {
            None => Vec::new(),
            Some(value) => {
                let secrets: Vec<&str> = value.split(',').map(str::trim).collect();
                let malformed = secrets.iter().position(|secret| {
                    secret
                        .strip_prefix(WEBHOOK_SECRET_PREFIX)
                        .is_none_or(|rest| rest.chars().count() < MIN_WEBHOOK_SECRET_CHARS)
                });
                if let Some(position) = malformed {
                    // Which one, never what it is.
                    self.problems.push(format!(
                        "PAYMENT_WEBHOOK_SECRET: secret {} of {} must be `{WEBHOOK_SECRET_PREFIX}` \
                         followed by at least {MIN_WEBHOOK_SECRET_CHARS} characters",
                        position + 1,
                        secrets.len()
                    ));
                }
                secrets
                    .into_iter()
                    .map(|secret| SecretString::from(secret.to_owned()))
                    .collect()
            }
        };
        let tolerance_secs = self.parsed("PAYMENT_WEBHOOK_TOLERANCE_SECS", 300);
        if !(1..=MAX_WEBHOOK_TOLERANCE_SECS).contains(&tolerance_secs) {
            self.problems.push(format!(
                "PAYMENT_WEBHOOK_TOLERANCE_SECS must be between 1 and {MAX_WEBHOOK_TOLERANCE_SECS}"
            ));
        }
        WebhookReceivingSettings {
            secrets,
            tolerance: Duration::from_secs(tolerance_secs),
        }
    }

    pub(super) fn webhook_workers(&mut self) -> WebhookWorkerSettings {
        let settings = WebhookWorkerSettings {
            workers: self.parsed("WEBHOOK_WORKERS", 2),
            lease: Duration::from_secs(self.parsed("WEBHOOK_LEASE_SECS", 60)),
            max_attempts: self.parsed("WEBHOOK_MAX_ATTEMPTS", 8),
            retry_base: self.millis("WEBHOOK_RETRY_BASE_MS", 5_000),
            retry_max: self.millis("WEBHOOK_RETRY_MAX_MS", 600_000),
            poll_interval: self.millis("WEBHOOK_POLL_INTERVAL_MS", 1_000),
        };
        self.positive_duration("WEBHOOK_LEASE_SECS", settings.lease);
        self.positive("WEBHOOK_MAX_ATTEMPTS", settings.max_attempts);
        // More workers than this would only wait for pooled connections.
        if settings.workers > 64 {
            self.problems
                .push("WEBHOOK_WORKERS must be at most 64".to_owned());
        }
        if settings.retry_max < settings.retry_base {
            self.problems.push(
                "WEBHOOK_RETRY_MAX_MS must not be less than WEBHOOK_RETRY_BASE_MS".to_owned(),
            );
        }
        settings
    }
}
