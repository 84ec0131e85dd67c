//! The Redis connection pool: bb8 over multiplexed connections, with short timeouts so a dead
//! or paused Redis costs a request milliseconds to a second, never a hang.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bb8_redis::RedisConnectionManager;
use secrecy::ExposeSecret;

use crate::configuration::RedisSettings;
use crate::metrics::Counter;

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

    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
}

/// After a Redis failure, leaves Redis alone for a pause, so that an outage costs the features
/// that can do without it (the ticket cache, the rate limiter) nothing, and counts failures for
/// operators (exported by [`crate::metrics`]). Cheap to clone: clones share their state.
#[derive(Clone, Debug)]
pub struct RedisBackoff {
    pause: Duration,
    /// Unix milliseconds before which Redis is not tried again.
    resting_until: Arc<AtomicU64>,
    failures: Counter,
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

impl RedisBackoff {
    /// Rests for `pause` after each failure, counting failures in `failures`.
    pub fn new(pause: Duration, failures: Counter) -> Self {
        Self {
            pause,
            resting_until: Arc::new(AtomicU64::new(0)),
            failures,
        }
    }

    /// Whether Redis failed less than a pause ago.
    pub fn resting(&self) -> bool {
        now_millis() < AtomicU64::load(&self.resting_until, Ordering::Relaxed)
    }

    /// Notes a failure: Redis rests for a pause.
    pub fn failed(&self) {
        self.failures.increment();
        let pause = u64::try_from(self.pause.as_millis()).unwrap_or(u64::MAX);
        self.resting_until
            .store(now_millis().saturating_add(pause), Ordering::Relaxed);
    }

    /// How many failures since start.
    pub fn failures(&self) -> u64 {
        self.failures.get()
    }
}
