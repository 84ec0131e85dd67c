//! Billing: the payment provider (`PAYMENT_PROVIDER_*`), the completer's pace and reconciliation
//! (`BILLING_*`; docs/billing.md).

use std::time::Duration;

use secrecy::SecretString;

use super::reader::Reader;

/// The payment provider billing charges and refunds through (docs/billing.md).
#[derive(Clone, Debug)]
pub struct PaymentProviderSettings {
    /// `PAYMENT_PROVIDER_URL`: the base URL of its Stripe-style API (`http://` or `https://`).
    pub url: url::Url,
    /// `PAYMENT_PROVIDER_SECRET_KEY`: sent as `Authorization: Bearer`; required with the URL.
    pub secret_key: SecretString,
    /// `PAYMENT_PROVIDER_TIMEOUT_MS`: how long one attempt may take, the answer included.
    pub timeout: Duration,
    /// `PAYMENT_PROVIDER_MAX_ATTEMPTS`: attempts per call, the first included.
    pub max_attempts: u32,
    /// `PAYMENT_PROVIDER_BACKOFF_BASE_MS`: the cap of the first retry's random delay; doubles.
    pub backoff_base: Duration,
    /// `PAYMENT_PROVIDER_BACKOFF_MAX_MS`: the largest cap of a retry's random delay.
    pub backoff_max: Duration,
    /// `PAYMENT_PROVIDER_RETRY_BUDGET_PERCENT`: retries may be at most this share of calls.
    pub retry_budget_percent: u32,
    /// `PAYMENT_PROVIDER_RETRY_BUDGET_MIN_PER_SEC`: retries a second allowed on top of the
    /// share, whatever the traffic (over the budget's 10-second window).
    pub retry_budget_min_per_second: u32,
    /// `PAYMENT_PROVIDER_BREAKER_FAILURES`: consecutive failures that open the circuit breaker.
    pub breaker_failure_threshold: u32,
    /// `PAYMENT_PROVIDER_BREAKER_COOL_DOWN_MS`: how long it stays open before one probe.
    pub breaker_cool_down: Duration,
    /// `PAYMENT_PROVIDER_CA_FILE`: a PEM file of CA certificates trusted for `https://` besides
    /// Mozilla's roots (a private CA, a TLS-inspecting proxy); read when the client is built.
    pub ca_file: Option<std::path::PathBuf>,
    /// `PAYMENT_PROVIDER_MAX_CONCURRENCY`: calls this instance may have in flight to the provider
    /// (its bulkhead); a charge or refund over the bound is refused at once, PROVIDER_BUSY.
    pub max_concurrency: usize,
    /// `PAYMENT_PROVIDER_KEY_RETENTION_SECS` (24 hours, Stripe's): how long the provider keeps
    /// an idempotency key. A charge or refund still pending this long after it was recorded is
    /// looked for at the provider before anything is sent again, by a client's retry or the
    /// completer.
    pub key_retention: Duration,
}

/// How often reconciliation runs, over what period, and what it leaves alone
/// (docs/billing.md, "Reconciliation").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconciliationSettings {
    /// `BILLING_RECONCILIATION_INTERVAL_MS` (an hour): how often a run starts.
    pub interval: Duration,
    /// `BILLING_RECONCILIATION_PERIOD_SECS` (48 hours): a run compares the charges and refunds
    /// created this long before it started.
    pub period: Duration,
    /// `BILLING_RECONCILIATION_SETTLE_MS` (10 minutes): rows younger than this are left to the
    /// request path and the completer.
    pub settle: Duration,
}

impl Reader<'_> {
    /// Every knob is read and checked even without a URL, so a typo shows up before billing is
    /// switched on; the settings exist only with a URL.
    pub(super) fn payment_provider(&mut self) -> Option<PaymentProviderSettings> {
        let timeout = self.millis("PAYMENT_PROVIDER_TIMEOUT_MS", 3_000);
        let max_attempts = self.parsed("PAYMENT_PROVIDER_MAX_ATTEMPTS", 3);
        self.positive("PAYMENT_PROVIDER_MAX_ATTEMPTS", max_attempts);
        let backoff_base = self.millis("PAYMENT_PROVIDER_BACKOFF_BASE_MS", 100);
        let backoff_max = self.millis("PAYMENT_PROVIDER_BACKOFF_MAX_MS", 2_000);
        if backoff_max < backoff_base {
            self.problems.push(
                "PAYMENT_PROVIDER_BACKOFF_MAX_MS must not be less than PAYMENT_PROVIDER_BACKOFF_BASE_MS"
                    .to_owned(),
            );
        }
        let retry_budget_percent = self.parsed("PAYMENT_PROVIDER_RETRY_BUDGET_PERCENT", 20);
        if retry_budget_percent > 100 {
            self.problems
                .push("PAYMENT_PROVIDER_RETRY_BUDGET_PERCENT must be between 0 and 100".to_owned());
        }
        if self.raw("PAYMENT_PROVIDER_RETRY_BUDGET_BURST").is_some() {
            self.problems.push(
                "PAYMENT_PROVIDER_RETRY_BUDGET_BURST is gone: set PAYMENT_PROVIDER_RETRY_BUDGET_MIN_PER_SEC \
                 (retries a second allowed on top of the share; 1 allows the old default's 10 per \
                 10 seconds)"
                    .to_owned(),
            );
        }
        let retry_budget_min_per_second =
            self.parsed("PAYMENT_PROVIDER_RETRY_BUDGET_MIN_PER_SEC", 1);
        let breaker_failure_threshold = self.parsed("PAYMENT_PROVIDER_BREAKER_FAILURES", 5);
        self.positive(
            "PAYMENT_PROVIDER_BREAKER_FAILURES",
            breaker_failure_threshold,
        );
        let breaker_cool_down = self.millis("PAYMENT_PROVIDER_BREAKER_COOL_DOWN_MS", 10_000);
        let max_concurrency: u32 = self.parsed("PAYMENT_PROVIDER_MAX_CONCURRENCY", 16);
        self.positive("PAYMENT_PROVIDER_MAX_CONCURRENCY", max_concurrency);
        let key_retention =
            Duration::from_secs(self.parsed("PAYMENT_PROVIDER_KEY_RETENTION_SECS", 24 * 60 * 60));
        // Zero would make every charge older than the provider's keys at once: abandoned unsent.
        self.positive_duration("PAYMENT_PROVIDER_KEY_RETENTION_SECS", key_retention);
        let ca_file = self
            .raw("PAYMENT_PROVIDER_CA_FILE")
            .map(|path| std::path::PathBuf::from(path.trim()));

        let secret = self.raw("PAYMENT_PROVIDER_SECRET_KEY");
        let Some(raw_url) = self.raw("PAYMENT_PROVIDER_URL") else {
            if secret.is_some() {
                self.problems.push(
                    "PAYMENT_PROVIDER_SECRET_KEY is set but PAYMENT_PROVIDER_URL is not".to_owned(),
                );
            }
            return None;
        };
        let url = match url::Url::parse(raw_url.trim()) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                self.problems.push(
                    "PAYMENT_PROVIDER_URL must be a URL starting with http:// or https://"
                        .to_owned(),
                );
                None
            }
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                self.problems
                    .push("PAYMENT_PROVIDER_URL names no host".to_owned());
                None
            }
            Ok(url) => Some(url),
            Err(error) => {
                self.problems
                    .push(format!("PAYMENT_PROVIDER_URL is not a valid URL: {error}"));
                None
            }
        };
        let Some(secret) = secret else {
            self.problems.push(
                "PAYMENT_PROVIDER_SECRET_KEY is not set (required with PAYMENT_PROVIDER_URL)"
                    .to_owned(),
            );
            return None;
        };
        Some(PaymentProviderSettings {
            url: url?,
            secret_key: SecretString::from(secret.trim().to_owned()),
            timeout,
            max_attempts,
            backoff_base,
            backoff_max,
            retry_budget_percent,
            retry_budget_min_per_second,
            breaker_failure_threshold,
            breaker_cool_down,
            ca_file,
            max_concurrency: usize::try_from(max_concurrency).unwrap_or(usize::MAX),
            key_retention,
        })
    }

    /// `BILLING_COMPLETER_INTERVAL_MS`.
    pub(super) fn billing_completer_interval(&mut self) -> Duration {
        let interval = self.millis("BILLING_COMPLETER_INTERVAL_MS", 5_000);
        self.positive_duration("BILLING_COMPLETER_INTERVAL_MS", interval);
        interval
    }

    pub(super) fn reconciliation(&mut self) -> ReconciliationSettings {
        let settings = ReconciliationSettings {
            interval: self.millis("BILLING_RECONCILIATION_INTERVAL_MS", 60 * 60 * 1000),
            period: Duration::from_secs(
                self.parsed("BILLING_RECONCILIATION_PERIOD_SECS", 48 * 3600),
            ),
            settle: self.millis("BILLING_RECONCILIATION_SETTLE_MS", 10 * 60 * 1000),
        };
        self.positive_duration("BILLING_RECONCILIATION_INTERVAL_MS", settings.interval);
        self.positive_duration("BILLING_RECONCILIATION_PERIOD_SECS", settings.period);
        // A period no longer than the settle time would compare nothing.
        if settings.period <= settings.settle {
            self.problems.push(
                "BILLING_RECONCILIATION_PERIOD_SECS must be longer than BILLING_RECONCILIATION_SETTLE_MS"
                    .to_owned(),
            );
        }
        settings
    }
}
