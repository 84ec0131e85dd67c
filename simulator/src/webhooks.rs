//! Webhooks: every ledger event is POSTed, signed, to the configured endpoint until it answers
//! 2xx, with scriptable delivery faults.
//!
//! Signing is Stripe's: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`, one `v1` per
//! configured secret (several while secrets rotate), each the HMAC-SHA256 of `"<t>.<raw body>"`.
//! Failed deliveries (non-2xx or no answer) are retried on a compressed exponential schedule
//! (`base_delay * 2^(attempt-1)`, capped) up to `max_attempts`; each delivery runs on its own, so
//! order across events is not guaranteed, as on Stripe. The endpoint and secrets are read again
//! before every attempt, so a rotation applies to retries in progress.
//!
//! Delivery faults (`POST /_sim/webhooks/faults`) change how the next matching events are
//! delivered: twice, out of order, late, or with a first attempt whose signature or body is
//! corrupted. A corrupted attempt is answered (normally with 400) and logged like any other, and
//! the retries that follow are clean, so a correct receiver ends up with the event exactly as a
//! real one would.

use std::collections::VecDeque;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::new_id;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Where webhooks go and the secrets they are signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    /// An `http://` URL receiving the POSTs.
    pub url: String,
    /// `whsec_...` signing secrets; each adds a `v1` to the signature header.
    pub secrets: Vec<String>,
}

/// When failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failed attempt; it doubles after each further one.
    pub base_delay: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// How long one attempt waits for the receiver's answer.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            max_attempts: 8,
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt number `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// How the next matching events are delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeliveryFault {
    /// The event is delivered twice, as two independent deliveries (same event id).
    Duplicate,
    /// The event is held back and delivered after the next event's first attempt (or after
    /// `REORDER_WINDOW` if no other event comes).
    Reorder,
    /// The first attempt starts this late.
    Delay {
        /// The delay.
        millis: u64,
    },
    /// The first attempt is signed with a secret the receiver does not know.
    BadSignature,
    /// The first attempt's body is altered after signing (`"livemode":false` becomes `true`).
    MangledBody,
}

/// A delivery fault for the next `times` events (of `event_type`, if given), or until cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFaultRule {
    /// What happens.
    pub fault: DeliveryFault,
    /// Only events of this type; any when none.
    #[serde(default)]
    pub event_type: Option<String>,
    /// How many events; none means until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

impl DeliveryFaultRule {
    /// A fault for the next `times` events of any type.
    pub fn new(fault: DeliveryFault, times: u32) -> Self {
        Self {
            fault,
            event_type: None,
            times: Some(times),
        }
    }
}

/// One POST to the endpoint, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// The event delivered.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// 1, or 2 for the second copy of a duplicated event.
    pub copy: u32,
    /// 1 for the first attempt of this copy.
    pub attempt: u32,
    /// When it was sent, in Unix milliseconds.
    pub sent_at_unix_ms: u64,
    /// The receiver's HTTP status; none when no answer came.
    pub status: Option<u16>,
    /// Why no answer came (connection refused, timeout).
    pub error: Option<String>,
    /// `bad_signature` or `mangled_body` when this attempt was corrupted on purpose.
    pub corruption: Option<String>,
    /// The `Stripe-Signature` header sent.
    pub signature: String,
}

impl DeliveryAttempt {
    /// Whether the receiver accepted it.
    pub fn succeeded(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
    }
}

/// How long a reordered event waits for a later one to overtake it.
pub const REORDER_WINDOW: Duration = Duration::from_secs(2);

/// The `Stripe-Signature` header for `payload` sent at `timestamp`: one `v1` per secret.
pub fn signature_header(payload: &[u8], secrets: &[String], timestamp: i64) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex::encode(hmac_sha256(secret, timestamp, payload)));
    }
    header
}

fn hmac_sha256(secret: &str, timestamp: i64, payload: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().to_vec()
}

/// Why a signature was refused by [`verify_signature`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// No `t=` or no `v1=` in the header.
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    /// `t` is further from now than the tolerance.
    #[error("the signature's timestamp is outside the tolerance")]
    TooOld,
    /// No `v1` matches the secret.
    #[error("no signature matches the secret")]
    NoMatch,
}

/// Checks a `Stripe-Signature` header the way Stripe's libraries do (constant-time comparison,
/// timestamp tolerance), for receivers in tests.
pub fn verify_signature(
    payload: &[u8],
    header: &str,
    secret: &str,
    tolerance: Duration,
    now_unix: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.extend(hex::decode(value).ok()),
            Some(_) | None => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now_unix.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return Err(SignatureError::TooOld);
    }
    let matches = signatures.iter().any(|signature| {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        mac.verify_slice(signature).is_ok()
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

/// The endpoint, the pending delivery faults and the delivery log.
#[derive(Debug, Default)]
pub(crate) struct WebhookBook {
    pub(crate) endpoint: Option<WebhookEndpoint>,
    pub(crate) faults: VecDeque<(DeliveryFaultRule, Option<u32>)>,
    pub(crate) deliveries: Vec<DeliveryAttempt>,
}

impl WebhookBook {
    pub(crate) fn add_fault(&mut self, rule: DeliveryFaultRule) {
        let remaining = rule.times;
        self.faults.push_back((rule, remaining));
    }

    pub(crate) fn clear_faults(&mut self) {
        self.faults.clear();
    }

    pub(crate) fn faults(&self) -> Vec<DeliveryFaultRule> {
        self.faults.iter().map(|(rule, _)| rule.clone()).collect()
    }

    /// Takes one use of the oldest fault matching `event_type`.
    pub(crate) fn take_fault(&mut self, event_type: &str) -> Option<DeliveryFault> {
        let index = self.faults.iter().position(|(rule, _)| {
            rule.event_type
                .as_deref()
                .is_none_or(|wanted| wanted == event_type)
        })?;
        let (rule, remaining) = &mut self.faults[index];
        let fault = rule.fault.clone();
        if let Some(remaining) = remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                self.faults.remove(index);
            }
        }
        Some(fault)
    }
}

/// A first attempt corrupted on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Corruption {
    BadSignature,
    MangledBody,
}

impl Corruption {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Corruption::BadSignature => "bad_signature",
            Corruption::MangledBody => "mangled_body",
        }
    }

    /// The body and signature header of a corrupted attempt.
    pub(crate) fn apply(
        self,
        payload: &[u8],
        secrets: &[String],
        timestamp: i64,
    ) -> (Vec<u8>, String) {
        match self {
            Corruption::BadSignature => {
                let unknown_secret = new_id("whsec_corrupted");
                (
                    payload.to_vec(),
                    signature_header(payload, &[unknown_secret], timestamp),
                )
            }
            Corruption::MangledBody => {
                let text = String::from_utf8_lossy(payload);
                let mangled = if text.contains("\"livemode\":false") {
                    text.replacen("\"livemode\":false", "\"livemode\":true", 1)
                } else {
                    format!("{text} ")
                };
                (
                    mangled.into_bytes(),
                    signature_header(payload, secrets, timestamp),
                )
            }
        }
    }
}

/// What one delivery task does.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryPlan {
    pub(crate) copy: u32,
    pub(crate) initial_delay: Duration,
    pub(crate) corruption: Option<Corruption>,
}

impl Default for DeliveryPlan {
    fn default() -> Self {
        Self {
            copy: 1,
            initial_delay: Duration::ZERO,
            corruption: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_each_rotated_secret_and_not_with_others() {
        let secrets = vec!["whsec_old".to_owned(), "whsec_new".to_owned()];
        let header = signature_header(b"{\"a\":1}", &secrets, 1_700_000_000);
        assert_eq!(header.matches(",v1=").count(), 2);
        for secret in &secrets {
            assert_eq!(
                verify_signature(
                    b"{\"a\":1}",
                    &header,
                    secret,
                    Duration::from_secs(300),
                    1_700_000_100
                ),
                Ok(())
            );
        }
        assert_eq!(
            verify_signature(
                b"{\"a\":1}",
                &header,
                "whsec_other",
                Duration::from_secs(300),
                1_700_000_100
            ),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify_signature(
                b"{\"a\":2}",
                &header,
                "whsec_new",
                Duration::from_secs(300),
                1_700_000_100
            ),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify_signature(
                b"{\"a\":1}",
                &header,
                "whsec_new",
                Duration::from_secs(300),
                1_700_000_301
            ),
            Err(SignatureError::TooOld)
        );
    }

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_payload() {
        // Computed independently: printf '12.{}' | openssl dgst -sha256 -hmac whsec_test
        let header = signature_header(b"{}", &["whsec_test".to_owned()], 12);
        assert_eq!(
            header,
            "t=12,v1=af237b033edb42cd78d7ae826c46e5f7b0f626ba5215b9ac9ce6131f7da4aafa"
        );
    }

    #[test]
    fn the_retry_delay_doubles_up_to_its_cap() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            max_attempts: 5,
            attempt_timeout: Duration::from_secs(1),
        };
        let delays: Vec<_> = (1..=5).map(|attempt| policy.delay_after(attempt)).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500].map(Duration::from_millis));
    }
}
