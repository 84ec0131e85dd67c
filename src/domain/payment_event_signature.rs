//! The payment provider's webhook signature (Stripe's scheme, docs/webhooks.md "The signature"):
//! `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">[,v1=...]`.
//!
//! Verification is pure: it takes the header, the exact bytes received and the current time, and
//! either accepts or names one of four refusals. Every configured secret is tried against every
//! `v1` value, so a secret can be rotated (the provider signs with both during the overlap, and
//! the service accepts either). Comparison is constant-time (`Mac::verify_slice`), and a genuine
//! signature whose timestamp lies further than the tolerance from now is refused as stale, so a
//! captured delivery cannot be replayed later; re-stamping it with a new `t` breaks its `v1`.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The longest header accepted: far above a header with a few `v1` values (about 70 bytes each),
/// far below anything that costs to parse.
const MAX_SIGNATURE_HEADER_BYTES: usize = 2048;

/// The most `key=value` entries a header may hold (Stripe sends `t`, one `v1` per secret and
/// perhaps a `v0`).
const MAX_SIGNATURE_ENTRIES: usize = 16;

/// The bytes of an HMAC-SHA256, the length every `v1` must decode to.
const SIGNATURE_BYTES: usize = 32;

/// Why a delivery's signature was refused. Deliberately no more than this: the refusal tells an
/// attacker nothing about the secret or how close they came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureRefusal {
    /// No `Stripe-Signature` header (or an empty one).
    Missing,
    /// Not `t=<digits>,v1=<64 hex digits>...`: no `t`, two of them, no `v1`, a `v1` that is not
    /// hex of 32 bytes, too long, too many entries.
    Malformed,
    /// A genuine signature whose timestamp is further from now than the tolerance.
    Stale,
    /// No `v1` value is the signature of this body at this `t` under any configured secret.
    Mismatch,
}

/// A parsed `Stripe-Signature` header: the timestamp as sent and every `v1` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureHeader {
    timestamp: i64,
    signatures: Vec<[u8; SIGNATURE_BYTES]>,
}

impl SignatureHeader {
    /// Parses the header; entries of other schemes (`v0=...`) are ignored, as Stripe's libraries
    /// ignore them.
    pub fn parse(raw: &str) -> Result<Self, SignatureRefusal> {
        if raw.trim().is_empty() {
            return Err(SignatureRefusal::Missing);
        }
        if raw.len() > MAX_SIGNATURE_HEADER_BYTES {
            return Err(SignatureRefusal::Malformed);
        }
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for (index, entry) in raw.split(',').enumerate() {
            if index >= MAX_SIGNATURE_ENTRIES {
                return Err(SignatureRefusal::Malformed);
            }
            let (key, value) = entry
                .trim()
                .split_once('=')
                .ok_or(SignatureRefusal::Malformed)?;
            match key {
                "t" => {
                    if timestamp.is_some() {
                        return Err(SignatureRefusal::Malformed);
                    }
                    timestamp = Some(parse_timestamp(value)?);
                }
                "v1" => {
                    let mut signature = [0u8; SIGNATURE_BYTES];
                    hex::decode_to_slice(value, &mut signature)
                        .map_err(|_| SignatureRefusal::Malformed)?;
                    signatures.push(signature);
                }
                _ => {}
            }
        }
        match timestamp {
            Some(timestamp) if !signatures.is_empty() => Ok(Self {
                timestamp,
                signatures,
            }),
            _ => Err(SignatureRefusal::Malformed),
        }
    }

    /// The `t` the provider signed, in Unix seconds.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
}

/// Unix seconds in canonical decimal (no sign, no leading zeros): the bytes signed are
/// `"<t>."`, so two spellings of one number must not both pass.
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

/// The endpoint secrets and the tolerance deliveries are checked against.
#[derive(Clone)]
pub struct SignatureVerifier {
    secrets: Vec<SecretString>,
    tolerance: Duration,
}

impl fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureVerifier")
            .field(
                "secrets",
                &format_args!("{} (redacted)", self.secrets.len()),
            )
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl SignatureVerifier {
    /// `secrets`: at least one (`whsec_...`), all accepted.
    pub fn new(secrets: Vec<SecretString>, tolerance: Duration) -> Self {
        assert!(!secrets.is_empty(), "a verifier needs at least one secret");
        Self { secrets, tolerance }
    }

    /// Accepts `payload` when `header` carries a `v1` signature of it under one of the secrets,
    /// made within the tolerance of `now_unix`.
    pub fn verify(
        &self,
        header: Option<&str>,
        payload: &[u8],
        now_unix: i64,
    ) -> Result<(), SignatureRefusal> {
        let header = SignatureHeader::parse(header.ok_or(SignatureRefusal::Missing)?)?;
        let signed = self.secrets.iter().any(|secret| {
            let mac = signing_mac(secret.expose_secret().as_bytes(), header.timestamp, payload);
            header
                .signatures
                .iter()
                .any(|signature| mac.clone().verify_slice(signature).is_ok())
        });
        if !signed {
            return Err(SignatureRefusal::Mismatch);
        }
        let tolerance = self.tolerance.as_secs();
        if now_unix.abs_diff(header.timestamp) > tolerance {
            return Err(SignatureRefusal::Stale);
        }
        Ok(())
    }
}

/// HMAC-SHA256 under `secret` of `"<timestamp>.<payload>"`, ready to finalize or verify.
fn signing_mac(secret: &[u8], timestamp: i64, payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// The `Stripe-Signature` header the provider would send for `payload` at `timestamp`, one `v1`
/// per secret: for tests and for the local tools that play the provider.
pub fn signature_header(payload: &[u8], secrets: &[&str], timestamp: i64) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        let tag = signing_mac(secret.as_bytes(), timestamp, payload)
            .finalize()
            .into_bytes();
        header.push_str(",v1=");
        header.push_str(&hex::encode(tag));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_795_000_000;
    const SECRET: &str = "whsec_current_secret";
    const OLD_SECRET: &str = "whsec_previous_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded","created":1795000000}"#;

    fn verifier(secrets: &[&str]) -> SignatureVerifier {
        SignatureVerifier::new(
            secrets
                .iter()
                .map(|secret| SecretString::from((*secret).to_owned()))
                .collect(),
            Duration::from_secs(300),
        )
    }

    #[test]
    fn a_delivery_signed_with_the_secret_now_is_accepted() {
        let header = signature_header(BODY, &[SECRET], NOW);
        assert_eq!(verifier(&[SECRET]).verify(Some(&header), BODY, NOW), Ok(()));
    }

    #[test]
    fn a_header_is_refused_for_what_is_wrong_with_it() {
        let verifier = verifier(&[SECRET]);
        let signed = signature_header(BODY, &[SECRET], NOW);
        let v1 = signed.split_once(",v1=").unwrap().1;
        for (header, refusal) in [
            (None, SignatureRefusal::Missing),
            (Some(String::new()), SignatureRefusal::Missing),
            (Some("  ".to_owned()), SignatureRefusal::Missing),
            (Some(format!("v1={v1}")), SignatureRefusal::Malformed),
            (Some(format!("t={NOW}")), SignatureRefusal::Malformed),
            (
                Some(format!("t={NOW},v0={v1}")),
                SignatureRefusal::Malformed,
            ),
            (
                Some(format!("t={NOW},v1=zz{}", &v1[2..])),
                SignatureRefusal::Malformed,
            ),
            (
                Some(format!("t={NOW},v1={}", &v1[2..])),
                SignatureRefusal::Malformed,
            ),
            (
                Some(format!("t=-{NOW},v1={v1}")),
                SignatureRefusal::Malformed,
            ),
            (
                Some(format!("t=0{NOW},v1={v1}")),
                SignatureRefusal::Malformed,
            ),
            (
                Some(format!("t={NOW},t={NOW},v1={v1}")),
                SignatureRefusal::Malformed,
            ),
            (Some(format!("t={NOW},v1")), SignatureRefusal::Malformed),
            (Some("garbage".to_owned()), SignatureRefusal::Malformed),
            (
                Some(format!("t={NOW}{}", ",v1=".repeat(20))),
                SignatureRefusal::Malformed,
            ),
        ] {
            assert_eq!(
                verifier.verify(header.as_deref(), BODY, NOW),
                Err(refusal),
                "{header:?}"
            );
        }
    }

    #[test]
    fn entries_of_other_schemes_are_ignored() {
        let signed = signature_header(BODY, &[SECRET], NOW);
        let header =
            format!("{signed},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39");
        assert_eq!(verifier(&[SECRET]).verify(Some(&header), BODY, NOW), Ok(()));
    }

    #[test]
    fn a_long_header_is_malformed_before_anything_is_computed() {
        let header = format!("t={NOW},{}", "x".repeat(MAX_SIGNATURE_HEADER_BYTES));
        assert_eq!(
            SignatureHeader::parse(&header),
            Err(SignatureRefusal::Malformed)
        );
    }

    #[test]
    fn a_wrong_secret_a_changed_body_or_a_new_timestamp_is_a_mismatch() {
        let verifier = verifier(&[SECRET]);
        let forged = signature_header(BODY, &["whsec_guessed"], NOW);
        assert_eq!(
            verifier.verify(Some(&forged), BODY, NOW),
            Err(SignatureRefusal::Mismatch)
        );
        let genuine = signature_header(BODY, &[SECRET], NOW);
        assert_eq!(
            verifier.verify(Some(&genuine), br#"{"id":"evt_2"}"#, NOW),
            Err(SignatureRefusal::Mismatch)
        );
        // A captured delivery replayed with a fresh `t` and its old `v1`.
        let restamped = genuine.replacen(&format!("t={NOW}"), &format!("t={}", NOW + 600), 1);
        assert_eq!(
            verifier.verify(Some(&restamped), BODY, NOW + 600),
            Err(SignatureRefusal::Mismatch)
        );
    }

    #[test]
    fn a_genuine_signature_outside_the_tolerance_is_stale_either_way() {
        let verifier = verifier(&[SECRET]);
        for signed_at in [NOW - 301, NOW + 301, 0] {
            let header = signature_header(BODY, &[SECRET], signed_at);
            assert_eq!(
                verifier.verify(Some(&header), BODY, NOW),
                Err(SignatureRefusal::Stale),
                "signed at {signed_at}"
            );
        }
        for signed_at in [NOW - 300, NOW + 300] {
            let header = signature_header(BODY, &[SECRET], signed_at);
            assert_eq!(verifier.verify(Some(&header), BODY, NOW), Ok(()));
        }
    }

    #[test]
    fn during_a_rotation_either_secret_and_a_header_with_both_are_accepted() {
        let rotating = verifier(&[SECRET, OLD_SECRET]);
        for secrets in [&[SECRET][..], &[OLD_SECRET], &[OLD_SECRET, SECRET]] {
            let header = signature_header(BODY, secrets, NOW);
            assert_eq!(
                rotating.verify(Some(&header), BODY, NOW),
                Ok(()),
                "{secrets:?}"
            );
        }
        let rotated = verifier(&[SECRET]);
        let old = signature_header(BODY, &[OLD_SECRET], NOW);
        assert_eq!(
            rotated.verify(Some(&old), BODY, NOW),
            Err(SignatureRefusal::Mismatch)
        );
    }

    #[test]
    fn the_verifier_never_prints_its_secrets() {
        let printed = format!("{:?}", verifier(&[SECRET, OLD_SECRET]));
        assert!(!printed.contains("whsec"), "{printed}");
    }

    proptest! {
        #[test]
        fn any_body_signed_now_is_accepted_and_any_flipped_byte_is_not(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            flip in any::<prop::sample::Index>(),
            skew in -300i64..=300,
        ) {
            let verifier = verifier(&[SECRET]);
            let header = signature_header(&body, &[SECRET], NOW + skew);
            prop_assert_eq!(verifier.verify(Some(&header), &body, NOW), Ok(()));
            if !body.is_empty() {
                let mut changed = body.clone();
                changed[flip.index(body.len())] ^= 0x01;
                prop_assert_eq!(
                    verifier.verify(Some(&header), &changed, NOW),
                    Err(SignatureRefusal::Mismatch)
                );
            }
        }

        #[test]
        fn no_header_text_makes_the_parser_panic(raw in "\\PC{0,300}") {
            let _ = SignatureHeader::parse(&raw);
        }
    }
}
