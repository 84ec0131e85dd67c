//! Single-use tokens that set a password (a reset link, an invitation link).
//!
//! A token is `HMAC-SHA256(key, seed)` in URL-safe base64, where the seed is 256 random bits and
//! the key is derived from the server secret (`JWT_SECRET`). PostgreSQL keeps only the token's
//! SHA-256 (to find it when presented) and the outbox row keeps only the seed (to write the link
//! when the message is sent): neither, nor both, is enough to use the token without the key.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// The key tokens are derived with. Cheap to clone; never printed.
#[derive(Clone)]
pub struct PasswordTokenKey(Hmac<Sha256>);

impl PasswordTokenKey {
    /// The key derived from the server secret `secret`.
    pub fn derive(secret: &[u8]) -> Self {
        let mut derive = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
        derive.update(b"supportdesk password token v1");
        Self(
            Hmac::<Sha256>::new_from_slice(&derive.finalize().into_bytes())
                .expect("HMAC takes any key"),
        )
    }

    /// The token of `seed`.
    pub fn token(&self, seed: &PasswordTokenSeed) -> PasswordToken {
        let mut mac = self.0.clone();
        mac.update(seed.0.as_bytes());
        PasswordToken(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for PasswordTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordTokenKey([REDACTED])")
    }
}

/// What a token is derived from: 256 random bits, URL-safe base64 (stored in the outbox row).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordTokenSeed(String);

impl PasswordTokenSeed {
    pub fn generate() -> Self {
        let mut bytes = [0_u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A seed as stored.
    pub fn from_stored(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordTokenSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordTokenSeed([REDACTED])")
    }
}

/// A token, as put in a link or presented to `ResetPassword`. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordToken(String);

impl PasswordToken {
    pub fn from_presented(raw: &str) -> Self {
        Self(raw.trim().to_owned())
    }

    /// The SHA-256 PostgreSQL finds the token by.
    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }

    /// The token itself: only for the link that carries it.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordToken([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_token_per_key_and_its_hash_is_not_the_token() {
        let key = PasswordTokenKey::derive(b"a server secret of some length");
        let other = PasswordTokenKey::derive(b"another server secret entirely");
        let seed = PasswordTokenSeed::generate();
        let token = key.token(&seed);
        assert_eq!(
            token,
            key.token(&PasswordTokenSeed::from_stored(seed.as_str()))
        );
        assert_ne!(token, other.token(&seed));
        assert_ne!(token.reveal(), seed.as_str());
        assert_eq!(token.hash().len(), 32);
        assert_eq!(token.reveal().len(), 43);
        assert_ne!(seed, PasswordTokenSeed::generate());
        assert_eq!(format!("{token:?}"), "PasswordToken([REDACTED])");
    }
}
