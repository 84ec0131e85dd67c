//! The email provider's webhook, in Resend's dialect (docs/notifications.md, "The email
//! provider's webhook"): deliveries signed the Svix way, and the events that matter to the desk.
//!
//! **The signature.** Three headers: `svix-id` (the delivery's id, the same on every retry of one
//! event), `svix-timestamp` (Unix seconds) and `svix-signature`, space-separated `v1,<base64>`
//! entries, each an HMAC-SHA256 of `"{svix-id}.{svix-timestamp}.{body}"` under the secret (the
//! base64 after `whsec_`). Verification is pure and answers with the payment webhook's
//! [`SignatureRefusal`]s: missing, malformed, mismatch (constant-time comparison against every
//! `v1` entry), then stale (a timestamp further from now than the tolerance).
//!
//! **The events.** `email.bounced` whose `bounce.type` is `Permanent` (or says nothing) and
//! `email.complained` suppress the recipient; a transient bounce and every other type change
//! nothing. The event finds its notification by the `notification_id` tag the sender attaches
//! to every message (Resend gives tags back as an object; an array of `{name, value}` is read
//! too).

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;

use super::{InvalidValue, SignatureRefusal, SuppressionReason};

/// The prefix of a Svix endpoint secret.
const SVIX_SECRET_PREFIX: &str = "whsec_";

/// The longest `svix-signature` header accepted (a few entries of about 47 bytes each).
const MAX_SIGNATURE_HEADER_BYTES: usize = 2048;
/// The most entries one `svix-signature` may hold.
const MAX_SIGNATURE_ENTRIES: usize = 16;
/// The longest `svix-id` accepted (Svix's are `msg_` and 27 characters).
const MAX_ID_BYTES: usize = 256;
/// The bytes of an HMAC-SHA256.
const SIGNATURE_BYTES: usize = 32;
/// The longest detail kept from an event.
const MAX_DETAIL_CHARS: usize = 300;

/// The endpoint secret and the tolerance deliveries are checked against.
#[derive(Clone)]
pub struct SvixVerifier {
    key: SecretSlice<u8>,
    tolerance: Duration,
}

impl fmt::Debug for SvixVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvixVerifier")
            .field("key", &"(redacted)")
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl SvixVerifier {
    /// `secret`: `whsec_<base64>`, as the provider shows it.
    pub fn new(secret: &str, tolerance: Duration) -> Result<Self, InvalidValue> {
        Ok(Self {
            key: SecretSlice::from(decode_secret(secret)?),
            tolerance,
        })
    }

    /// Accepts `payload` when `signature` carries a `v1` signature of `"{id}.{timestamp}.{payload}"`
    /// under the secret, made within the tolerance of `now_unix`. Absent and empty headers are
    /// missing.
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        payload: &[u8],
        now_unix: i64,
    ) -> Result<(), SignatureRefusal> {
        let (Some(id), Some(timestamp), Some(signature)) =
            (present(id), present(timestamp), present(signature))
        else {
            return Err(SignatureRefusal::Missing);
        };
        if id.len() > MAX_ID_BYTES || !id.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(SignatureRefusal::Malformed);
        }
        let timestamp = parse_timestamp(timestamp)?;
        let signatures = parse_signatures(signature)?;
        let mac = signing_mac(self.key.expose_secret(), id, timestamp, payload);
        if !signatures
            .iter()
            .any(|signature| mac.clone().verify_slice(signature).is_ok())
        {
            return Err(SignatureRefusal::Mismatch);
        }
        if now_unix.abs_diff(timestamp) > self.tolerance.as_secs() {
            return Err(SignatureRefusal::Stale);
        }
        Ok(())
    }
}

/// A header that is there and not blank.
fn present(value: Option<&str>) -> Option<&str> {
    value.filter(|value| !value.trim().is_empty())
}

/// The key a `whsec_<base64>` secret stands for; at least 16 bytes.
fn decode_secret(secret: &str) -> Result<Vec<u8>, InvalidValue> {
    let key = secret
        .strip_prefix(SVIX_SECRET_PREFIX)
        .and_then(|encoded| BASE64.decode(encoded).ok())
        .ok_or_else(|| InvalidValue::new("must be `whsec_` followed by base64"))?;
    if key.len() < 16 {
        return Err(InvalidValue::new(
            "must hold at least 16 bytes after `whsec_`",
        ));
    }
    Ok(key)
}

/// Unix seconds in canonical decimal: `"{id}.{timestamp}."` is what was signed, so two spellings
/// of one number must not both pass.
fn parse_timestamp(raw: &str) -> Result<i64, SignatureRefusal> {
    let canonical = !raw.is_empty()
        && raw.len() <= 18
        && raw.bytes().all(|byte| byte.is_ascii_digit())
        && (raw == "0" || !raw.starts_with('0'));
    if !canonical {
        return Err(SignatureRefusal::Malformed);
    }
    raw.parse().map_err(|_| SignatureRefusal::Malformed)
}

/// Every `v1` entry of a `svix-signature` header; entries of other versions are ignored, as
/// Svix's libraries ignore them.
fn parse_signatures(raw: &str) -> Result<Vec<[u8; SIGNATURE_BYTES]>, SignatureRefusal> {
    if raw.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(SignatureRefusal::Malformed);
    }
    let mut signatures = Vec::new();
    for (index, entry) in raw.split_ascii_whitespace().enumerate() {
        if index >= MAX_SIGNATURE_ENTRIES {
            return Err(SignatureRefusal::Malformed);
        }
        let (version, value) = entry.split_once(',').ok_or(SignatureRefusal::Malformed)?;
        if version != "v1" {
            continue;
        }
        let decoded = BASE64
            .decode(value)
            .map_err(|_| SignatureRefusal::Malformed)?;
        let signature: [u8; SIGNATURE_BYTES] = decoded
            .try_into()
            .map_err(|_| SignatureRefusal::Malformed)?;
        signatures.push(signature);
    }
    if signatures.is_empty() {
        return Err(SignatureRefusal::Malformed);
    }
    Ok(signatures)
}

/// HMAC-SHA256 under `key` of `"{id}.{timestamp}.{payload}"`, ready to finalize or verify.
pub(super) fn signing_mac(key: &[u8], id: &str, timestamp: i64, payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// The `svix-signature` header the provider would send for `payload` (`v1,<base64>`): for tests
/// and for the local tools that play the provider.
pub fn svix_signature(secret: &str, id: &str, timestamp: i64, payload: &[u8]) -> String {
    let key = decode_secret(secret).expect("a whsec_ secret");
    let tag = signing_mac(&key, id, timestamp, payload)
        .finalize()
        .into_bytes();
    format!("v1,{}", BASE64.encode(tag))
}

/// What an event asks of the desk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailEventEffect {
    /// Put the recipient on the account's suppression list.
    Suppress(SuppressionReason),
    /// Nothing: a transient bounce (the provider retries it itself).
    TransientBounce,
    /// Nothing: a type the desk does not act on (`email.sent`, `email.delivered`, ...).
    Ignored,
}

/// A delivered event, as far as the desk reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailEvent {
    /// `email.bounced`, `email.complained`, ...
    pub event_type: String,
    /// The notification its `notification_id` tag names, when it names one.
    pub notification_id: Option<Uuid>,
    pub effect: EmailEventEffect,
    /// What the provider said (the bounce's message), for the suppression's record.
    pub detail: String,
}

impl EmailEvent {
    /// Reads an event from the exact bytes the provider signed: a JSON object with a string
    /// `type`; anything else is refused.
    pub fn parse(payload: &[u8]) -> Result<Self, InvalidValue> {
        let value: Value = serde_json::from_slice(payload)
            .map_err(|_| InvalidValue::new("is not a JSON object"))?;
        let event_type = value
            .get("type")
            .and_then(Value::as_str)
            .filter(|kind| !kind.is_empty() && kind.len() <= 100)
            .ok_or_else(|| InvalidValue::new("has no `type` (a string of 1 to 100 bytes)"))?
            .to_owned();
        let data = value.get("data").unwrap_or(&Value::Null);
        let bounce = data.get("bounce").unwrap_or(&Value::Null);
        let effect = match event_type.as_str() {
            "email.bounced" => match bounce.get("type").and_then(Value::as_str) {
                None | Some("Permanent") => {
                    EmailEventEffect::Suppress(SuppressionReason::HardBounce)
                }
                Some(_) => EmailEventEffect::TransientBounce,
            },
            "email.complained" => EmailEventEffect::Suppress(SuppressionReason::Complaint),
            _ => EmailEventEffect::Ignored,
        };
        let detail = bounce
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or(&event_type)
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_DETAIL_CHARS)
            .collect();
        Ok(Self {
            event_type,
            notification_id: notification_tag(data.get("tags").unwrap_or(&Value::Null)),
            effect,
            detail,
        })
    }
}

/// The `notification_id` tag of `tags`: `{"notification_id": "..."}` or
/// `[{"name": "notification_id", "value": "..."}]`.
fn notification_tag(tags: &Value) -> Option<Uuid> {
    let raw = match tags {
        Value::Object(map) => map.get("notification_id").and_then(Value::as_str),
        Value::Array(entries) => entries
            .iter()
            .find(|entry| entry.get("name").and_then(Value::as_str) == Some("notification_id"))
            .and_then(|entry| entry.get("value").and_then(Value::as_str)),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => None,
    }?;
    Uuid::parse_str(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW: i64 = 1_795_000_000;
    const BODY: &[u8] = br#"{"type":"email.bounced","data":{"tags":{"notification_id":"0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c"}}}"#;

    fn verifier() -> SvixVerifier {
        SvixVerifier::new(SECRET, Duration::from_secs(300)).unwrap()
    }

    fn verify(id: &str, timestamp: &str, signature: &str) -> Result<(), SignatureRefusal> {
        verifier().verify(Some(id), Some(timestamp), Some(signature), BODY, NOW)
    }

    #[test]
    fn a_genuine_signature_passes_alone_or_among_others() {
        let good = svix_signature(SECRET, "msg_1", NOW, BODY);
        assert_eq!(verify("msg_1", &NOW.to_string(), &good), Ok(()));
        let other = svix_signature("whsec_b3RoZXJfc2VjcmV0X29mXzI0X2J5dGVz", "msg_1", NOW, BODY);
        assert_eq!(
            verify("msg_1", &NOW.to_string(), &format!("v2,abc {other} {good}")),
            Ok(())
        );
    }

    #[test]
    fn each_refusal_is_named() {
        let good = svix_signature(SECRET, "msg_1", NOW, BODY);
        assert_eq!(
            verifier().verify(Some("msg_1"), None, Some(&good), BODY, NOW),
            Err(SignatureRefusal::Missing)
        );
        assert_eq!(
            verify("msg_1", "0123", &good),
            Err(SignatureRefusal::Malformed)
        );
        assert_eq!(
            verify("msg_1", &NOW.to_string(), "v1,not base64!"),
            Err(SignatureRefusal::Malformed)
        );
        assert_eq!(
            verify("msg_2", &NOW.to_string(), &good),
            Err(SignatureRefusal::Mismatch)
        );
        let old = svix_signature(SECRET, "msg_1", NOW - 301, BODY);
        assert_eq!(
            verify("msg_1", &(NOW - 301).to_string(), &old),
            Err(SignatureRefusal::Stale)
        );
    }

    #[test]
    fn a_secret_must_be_whsec_and_base64_of_enough_bytes() {
        assert!(SvixVerifier::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Duration::ZERO).is_err());
        assert!(SvixVerifier::new("whsec_c2hvcnQ=", Duration::ZERO).is_err());
        assert!(SvixVerifier::new("whsec_***", Duration::ZERO).is_err());
    }

    #[test]
    fn bounces_and_complaints_suppress_and_other_events_do_not() {
        let event = EmailEvent::parse(BODY).unwrap();
        assert_eq!(
            event.effect,
            EmailEventEffect::Suppress(SuppressionReason::HardBounce)
        );
        assert_eq!(
            event.notification_id.unwrap().to_string(),
            "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c"
        );
        let transient =
            br#"{"type":"email.bounced","data":{"bounce":{"type":"Transient","message":"full"}}}"#;
        assert_eq!(
            EmailEvent::parse(transient).unwrap().effect,
            EmailEventEffect::TransientBounce
        );
        let complaint = br#"{"type":"email.complained","data":{"tags":[{"name":"notification_id","value":"0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c"}]}}"#;
        let complaint = EmailEvent::parse(complaint).unwrap();
        assert_eq!(
            complaint.effect,
            EmailEventEffect::Suppress(SuppressionReason::Complaint)
        );
        assert!(complaint.notification_id.is_some());
        assert_eq!(
            EmailEvent::parse(br#"{"type":"email.delivered"}"#)
                .unwrap()
                .effect,
            EmailEventEffect::Ignored
        );
        assert!(EmailEvent::parse(b"[]").is_err());
        assert!(EmailEvent::parse(br#"{"data":{}}"#).is_err());
    }
}
