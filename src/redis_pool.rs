//! The Redis connection pool: bb8 over multiplexed connections, with short timeouts so a dead
//! or paused Redis costs a request milliseconds to a second, never a hang.

use bb8_redis::RedisConnectionManager;
use secrecy::ExposeSecret;

use crate::configuration::RedisSettings;

pub type RedisPool = bb8::Pool<RedisConnectionManager>;

/// A pool that connects lazily, so the service starts while Redis is down.
pub fn build_pool(settings: &RedisSettings) -> anyhow::Result<RedisPool> {
    let manager = RedisConnectionManager::new(settings.url.expose_secret())
        .map_err(|error| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {error}"))?;
    Ok(bb8::Pool::builder()
        .max_size(settings.pool_size)
        .connection_timeout(settings.connect_timeout)
        .build_unchecked(manager))
}

/// Key names under the configured prefix, so instances and tests can share one server.
#[derive(Clone, Debug)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
}
