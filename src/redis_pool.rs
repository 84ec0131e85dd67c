//! Redis access: one multiplexed connection shared by every request, so concurrent commands are
//! pipelined over one socket instead of queueing for pooled connections, and a command costs
//! exactly its own round trip. bb8-redis makes that connection (with a short connect timeout and a
//! `PING` before it is handed out); it is taken again only after a failure. Short timeouts
//! elsewhere make a dead or paused Redis cost a request milliseconds, never a hang.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bb8_redis::RedisConnectionManager;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use secrecy::ExposeSecret;

use crate::app::metrics::Counter;
use crate::configuration::RedisSettings;
use crate::errors::AppResult;

/// The service's Redis: a shared multiplexed connection, re-made after a failure. Cheap to clone:
/// clones share the connection.
#[derive(Clone)]
pub struct Redis {
    connector: bb8::Pool<RedisConnectionManager>,
    shared: Arc<Mutex<Option<MultiplexedConnection>>>,
}

/// Connects lazily, so the service starts while Redis is down.
pub fn build_pool(settings: &RedisSettings) -> anyhow::Result<Redis> {
    let manager = RedisConnectionManager::new(settings.url.expose_secret())
        .map_err(|error| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {error}"))?;
    let connector = bb8::Pool::builder()
        // Connections are taken out only to be shared; a second one is made only while a
        // replacement for a failed one is on its way.
        .max_size(2)
        .connection_timeout(settings.connect_timeout)
        .build_unchecked(manager);
    Ok(Redis {
        connector,
        shared: Arc::new(Mutex::new(None)),
    })
}

impl Redis {
    /// The shared connection (made first if there is none). A command that fails on it, or is
    /// abandoned before its answer (a timeout), drops it, so the next caller connects afresh
    /// instead of waiting on a socket that may be dead.
    pub async fn get(&self) -> AppResult<SharedConnection> {
        let existing = self.slot().clone();
        let connection = match existing {
            Some(connection) => connection,
            None => {
                let fresh = (*self.connector.get().await?).clone();
                *self.slot() = Some(fresh.clone());
                fresh
            }
        };
        Ok(SharedConnection {
            connection,
            owner: self.clone(),
        })
    }

    /// Loads `scripts` into Redis's script cache, so that no call pays for a `NOSCRIPT` answer
    /// and a reload (two more round trips) the first time it runs one. Best effort: a script
    /// missing later (Redis restarted) is loaded again on demand by the `redis` crate.
    pub async fn load_scripts(&self, scripts: &[&redis::Script]) {
        let loaded = async {
            let mut connection = self.get().await?;
            for script in scripts {
                script.prepare_invoke().load_async(&mut connection).await?;
            }
            Ok::<_, crate::errors::AppError>(())
        };
        if let Err(error) = loaded.await {
            tracing::warn!(%error, "Redis scripts not loaded at start-up: loaded on first use");
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn discard(&self) {
        self.slot().take();
    }
}

/// A handle on the shared connection, used like any async Redis connection.
pub struct SharedConnection {
    connection: MultiplexedConnection,
    owner: Redis,
}

/// Drops the shared connection unless defused: armed while a command waits for its answer.
struct DiscardUnlessAnswered<'a> {
    owner: &'a Redis,
    answered: bool,
}

impl Drop for DiscardUnlessAnswered<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.owner.discard();
        }
    }
}

impl SharedConnection {
    fn guarded<'a, T: Send + 'a>(
        &'a mut self,
        request: impl FnOnce(&'a mut MultiplexedConnection) -> RedisFuture<'a, T> + Send + 'a,
    ) -> Pin<Box<dyn Future<Output = redis::RedisResult<T>> + Send + 'a>> {
        let owner = &self.owner;
        let answer = request(&mut self.connection);
        Box::pin(async move {
            let mut guard = DiscardUnlessAnswered {
                owner,
                answered: false,
            };
            let result = answer.await;
            // A Redis error reply (a script's error, a wrong type) leaves the connection good.
            guard.answered = match &result {
                Ok(_) => true,
                Err(error) => {
                    !(error.is_io_error()
                        || error.is_connection_dropped()
                        || error.is_unrecoverable_error()
                        || error.is_timeout())
                }
            };
            result
        })
    }
}

impl ConnectionLike for SharedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.guarded(move |connection| connection.req_packed_command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.guarded(move |connection| connection.req_packed_commands(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        self.connection.get_db()
    }
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
        self.key_of_parts(&[suffix])
    }

    /// [`RedisKeys::key`] of a suffix in parts, concatenated without the formatting machinery:
    /// the keys every request makes.
    pub fn key_of_parts(&self, parts: &[&str]) -> String {
        let length = parts.iter().map(|part| part.len()).sum::<usize>();
        let mut key = String::with_capacity(self.prefix.len() + length);
        key.push_str(&self.prefix);
        for part in parts {
            key.push_str(part);
        }
        key
    }
}

/// After a Redis failure, leaves Redis alone for a pause, so that an outage costs the features
/// that can do without it (the ticket cache, the rate limiter) nothing, and counts failures for
/// operators (exported by [`crate::app::metrics`]). Cheap to clone: clones share their state.
#[derive(Clone, Debug)]
pub struct RedisBackoff {
    pause: Duration,
    /// Unix milliseconds before which Redis is not tried again.
    resting_until: Arc<AtomicU64>,
    failures: Counter,
    /// Whether the last attempt failed.
    failing: Arc<AtomicBool>,
    /// Woken when Redis starts or stops failing, so that health can look at Redis at once.
    changed: Arc<tokio::sync::Notify>,
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
            failing: Arc::new(AtomicBool::new(false)),
            changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// How long Redis is left alone after a failure.
    pub fn pause(&self) -> Duration {
        self.pause
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
        self.failing.store(true, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Notes a success: after failures, Redis is back.
    pub fn succeeded(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            self.changed.notify_waiters();
        }
    }

    /// Redis answered someone else (the health probe): the pause ends now, so that what
    /// health reports and what this feature does agree.
    pub fn recovered(&self) {
        self.resting_until.store(0, Ordering::Relaxed);
        self.failing.store(false, Ordering::Relaxed);
    }

    /// Completes when Redis next starts or stops failing for this feature.
    pub async fn next_change(&self) {
        self.changed.notified().await;
    }

    /// How many failures since start.
    pub fn failures(&self) -> u64 {
        self.failures.get()
    }
}
