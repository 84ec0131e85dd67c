//! API key secrets: `sd_live_` and 256 random bits. Only their SHA-256 is stored; the first
//! characters are kept in clear so that a key can be recognised in a list.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// What every API key starts with, so that it is told apart from a JWT (and found by secret
/// scanners).
pub const API_KEY_PREFIX: &str = "sd_live_";

/// How many characters of the secret are shown in lists.
const SHOWN_CHARACTERS: usize = API_KEY_PREFIX.len() + 4;

/// A secret as presented by a caller or just generated. Never printed.
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    pub fn generate() -> Self {
        let mut bytes = [0_u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A presented bearer credential that looks like an API key.
    pub fn from_presented(raw: &str) -> Option<Self> {
        raw.starts_with(API_KEY_PREFIX)
            .then(|| Self(raw.to_owned()))
    }

    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }

    pub fn shown_prefix(&self) -> String {
        self.0.chars().take(SHOWN_CHARACTERS).collect()
    }

    /// The secret itself: only for the one response that hands it over.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}…)", self.shown_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_prefixed_and_never_printed_in_full() {
        let first = ApiKeySecret::generate();
        let second = ApiKeySecret::generate();
        assert_ne!(first.reveal(), second.reveal());
        assert!(first.reveal().starts_with(API_KEY_PREFIX));
        assert_eq!(first.reveal().len(), API_KEY_PREFIX.len() + 43);
        assert!(!format!("{first:?}").contains(&first.reveal()[SHOWN_CHARACTERS..]));
        assert_ne!(first.hash(), second.hash());
    }
}
