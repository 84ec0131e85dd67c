//! `REDIS_*`: the Redis connection shared by the rate limiter, the caller states and the ticket
//! cache.

use std::time::Duration;

use secrecy::SecretString;

use super::reader::Reader;

#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `REDIS_URL`: may hold a password, hence secret.
    pub url: SecretString,
    /// `REDIS_KEY_PREFIX`: prepended to every key, so instances (and tests) can share a server.
    pub key_prefix: String,
    /// `REDIS_CONNECT_TIMEOUT_MS`
    pub connect_timeout: Duration,
    /// `REDIS_FAILURE_PAUSE_MS`: after a Redis failure (of any caller: the instance has one view
    /// of Redis's health), how long everything that calls Redis leaves it alone (answering by
    /// its failure policy) unless the health probe sees it back first.
    pub failure_pause: Duration,
}

impl Reader<'_> {
    pub(super) fn redis(&mut self) -> RedisSettings {
        RedisSettings {
            url: self.secret_url("REDIS_URL", &["redis", "rediss"]),
            key_prefix: self.parsed("REDIS_KEY_PREFIX", "supportdesk:".to_owned()),
            connect_timeout: self.millis("REDIS_CONNECT_TIMEOUT_MS", 1_000),
            failure_pause: self.millis("REDIS_FAILURE_PAUSE_MS", 2_000),
        }
    }
}
