//! Access and refresh tokens, and the keys page tokens are signed with.

use std::time::Duration;

use secrecy::SecretString;

use super::reader::Reader;

#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// `JWT_SECRET`: the HS256 key access tokens are signed with; at least 32 bytes.
    pub jwt_secret: SecretString,
    /// `ACCESS_TOKEN_TTL_SECS`: how long an access token works.
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_SECS`: how long an unused refresh token (and so a session) lives.
    pub refresh_token_ttl: Duration,
    /// `PAGE_TOKEN_KEYS`: comma-separated keys (at least 32 bytes each) page tokens are signed
    /// with; the first signs, all verify, so a key is rotated by putting a new one first and
    /// dropping the old one a release later. Unset: one key derived from `JWT_SECRET`.
    pub page_token_keys: Vec<SecretString>,
    /// `REFRESH_TOKEN_REUSE_GRACE_SECS`: how long after a rotation the rotated token answers
    /// the same successor again (two tabs refreshing at once) instead of revoking the session;
    /// 0 turns the window off.
    pub refresh_reuse_grace: Duration,
}

impl Reader<'_> {
    pub(super) fn auth(&mut self) -> AuthSettings {
        let settings = AuthSettings {
            jwt_secret: self.secret_key("JWT_SECRET", 32),
            access_token_ttl: Duration::from_secs(self.parsed("ACCESS_TOKEN_TTL_SECS", 900)),
            refresh_token_ttl: Duration::from_secs(
                self.parsed("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600),
            ),
            page_token_keys: self.secret_keys("PAGE_TOKEN_KEYS", 32),
            refresh_reuse_grace: Duration::from_secs(
                self.parsed("REFRESH_TOKEN_REUSE_GRACE_SECS", 15),
            ),
        };
        self.positive_duration("ACCESS_TOKEN_TTL_SECS", settings.access_token_ttl);
        self.positive_duration("REFRESH_TOKEN_TTL_SECS", settings.refresh_token_ttl);
        // RFC 9700 allows a short window; a long one would let a thief's replay pass too.
        if settings.refresh_reuse_grace > Duration::from_secs(60) {
            self.problems
                .push("REFRESH_TOKEN_REUSE_GRACE_SECS must be at most 60".to_owned());
        }
        settings
    }
}
