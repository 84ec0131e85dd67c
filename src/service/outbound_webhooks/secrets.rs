//! Endpoint signing secrets at rest: sealed with ChaCha20-Poly1305 under the key
//! `WEBHOOK_ENDPOINT_SECRETS_KEY` (or, when unset, a key derived from `JWT_SECRET` for this use
//! alone), so that a copy of the database signs nothing. A sealed secret is the 12-byte nonce
//! followed by the ciphertext and its tag.
//!
//! It is outbound webhooks' own business, not the HTTP client's: the endpoints service seals a
//! secret when an endpoint is made or rotated, and delivery opens it to sign each request.

use hmac::{Hmac, KeyInit, Mac};
use ring::aead::{CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::domain::SigningSecret;

/// What the derived key is for: another use of `JWT_SECRET` never derives the same key.
const DERIVATION_LABEL: &[u8] = b"supportdesk webhook endpoint secrets v1";

/// Seals and opens endpoint secrets.
pub struct SecretBox {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// A sealed secret that does not open: another key, or altered bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unopenable;

impl SecretBox {
    /// The box of `key` when set, else of the key derived from `jwt_secret`.
    pub fn new(key: Option<&SecretString>, jwt_secret: &SecretString) -> Self {
        let material = match key {
            Some(key) => Sha256Digest::of(key.expose_secret().as_bytes()),
            None => {
                let mut mac = Hmac::<Sha256>::new_from_slice(jwt_secret.expose_secret().as_bytes())
                    .expect("HMAC takes keys of any length");
                mac.update(DERIVATION_LABEL);
                mac.finalize().into_bytes().into()
            }
        };
        let key = UnboundKey::new(&CHACHA20_POLY1305, &material)
            .expect("a 32-byte key is a ChaCha20-Poly1305 key");
        Self {
            key: LessSafeKey::new(key),
            random: SystemRandom::new(),
        }
    }

    pub fn seal(&self, secret: &SigningSecret) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut sealed = secret.key().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                &mut sealed,
            )
            .expect("sealing a short secret cannot fail");
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        stored
    }

    pub fn open(&self, stored: &[u8]) -> Result<SigningSecret, Unopenable> {
        if stored.len() < NONCE_LEN {
            return Err(Unopenable);
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unopenable)?;
        let mut buffer = sealed.to_vec();
        let opened = self
            .key
            .open_in_place(nonce, ring::aead::Aad::empty(), &mut buffer)
            .map_err(|_| Unopenable)?;
        Ok(SigningSecret::from_key(opened.to_vec()))
    }
}

/// SHA-256 of a configured key, so any key of 32 bytes or more becomes exactly 32.
struct Sha256Digest;

impl Sha256Digest {
    fn of(bytes: &[u8]) -> [u8; 32] {
        use sha2::Digest as _;
        Sha256::digest(bytes).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_only() {
        let jwt = SecretString::from("jwt-secret-jwt-secret-jwt-secret-0123".to_owned());
        let sealing = SecretBox::new(None, &jwt);
        let secret = SigningSecret::generate();
        let stored = sealing.seal(&secret);
        assert_ne!(&stored[NONCE_LEN..NONCE_LEN + 32], secret.key());
        assert_eq!(sealing.open(&stored).unwrap(), secret);
        let other = SecretBox::new(
            Some(&SecretString::from(
                "another-key-another-key-another-key".to_owned(),
            )),
            &jwt,
        );
        assert_eq!(other.open(&stored), Err(Unopenable));
        let mut altered = stored.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(sealing.open(&altered), Err(Unopenable));
    }
}
