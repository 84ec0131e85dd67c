//! `IDEMPOTENCY_*`: how long idempotency keys are kept, waited on and swept, and the key of
//! request fingerprints.

use std::time::Duration;

use secrecy::SecretString;

use super::reader::Reader;

#[derive(Clone, Debug)]
pub struct IdempotencySettings {
    /// `IDEMPOTENCY_KEY_TTL_SECS`: how long a key's outcome is kept for replays.
    pub retention: Duration,
    /// `IDEMPOTENCY_WAIT_MS`: how long a retry waits for the first request holding its key
    /// before answering ABORTED.
    pub wait: Duration,
    /// `IDEMPOTENCY_SWEEP_INTERVAL_SECS`: how often expired keys are deleted.
    pub sweep_interval: Duration,
    /// `IDEMPOTENCY_FINGERPRINT_KEY`: the HMAC key of request fingerprints; at least 32 bytes.
    pub fingerprint_key: SecretString,
}

impl Reader<'_> {
    pub(super) fn idempotency(&mut self) -> IdempotencySettings {
        let settings = IdempotencySettings {
            retention: Duration::from_secs(self.parsed("IDEMPOTENCY_KEY_TTL_SECS", 24 * 3600)),
            wait: self.millis("IDEMPOTENCY_WAIT_MS", 100),
            sweep_interval: Duration::from_secs(self.parsed("IDEMPOTENCY_SWEEP_INTERVAL_SECS", 60)),
            fingerprint_key: self.secret_key("IDEMPOTENCY_FINGERPRINT_KEY", 32),
        };
        self.positive_duration("IDEMPOTENCY_KEY_TTL_SECS", settings.retention);
        self.positive_duration("IDEMPOTENCY_SWEEP_INTERVAL_SECS", settings.sweep_interval);
        settings
    }
}
