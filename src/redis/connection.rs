//! Redis access: one multiplexed connection shared by every request, so concurrent commands are
//! pipelined over one socket instead of queueing for pooled connections, and a command costs
//! exactly its own round trip. bb8-redis makes that connection (with a short connect timeout and a
//! `PING` before it is handed out); it is taken again only after a failure. Short timeouts
//! elsewhere make a dead or paused Redis cost a request milliseconds, never a hang.
//!
//! The handle carries the instance's one view of Redis's health ([`Redis::health`]): while it
//! says Redis is resting after a failure, [`Redis::get`] answers UNAVAILABLE at once, so that a
//! request that already waited for a silent Redis once never waits for it a second time,
//! whichever feature calls it next. Only the health probe asks Redis anyway
//! ([`Redis::get_while_resting`]), and ends the rest when Redis answers it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bb8_redis::RedisConnectionManager;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use secrecy::ExposeSecret;

use crate::configuration::RedisSettings;
use crate::errors::{AppError, AppResult, Dependency};
use crate::redis::backoff::RedisBackoff;
use crate::telemetry::metrics::Counter;

/// The service's Redis: a shared multiplexed connection, re-made after a failure. Cheap to clone:
/// clones share the connection.
#[derive(Clone)]
pub struct Redis {
    connector: bb8::Pool<RedisConnectionManager>,
    shared: Arc<Mutex<Option<MultiplexedConnection>>>,
    health: RedisBackoff,
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
        // Each feature counts its own failures on this state (`RedisBackoff::counting`).
        health: RedisBackoff::new(settings.failure_pause, Counter::default()),
    })
}

impl Redis {
    /// The shared connection (made first if there is none). A command that fails on it, or is
    /// abandoned before its answer (a timeout), drops it, so the next caller connects afresh
    /// instead of waiting on a socket that may be dead.
    pub async fn get(&self) -> AppResult<SharedConnection> {
        if self.health.resting() {
            return Err(AppError::Unavailable {
                dependency: Dependency::Redis,
                source: anyhow::anyhow!("Redis failed less than REDIS_FAILURE_PAUSE_MS ago"),
            });
        }
        self.get_while_resting().await
    }

    /// The shared connection even while Redis rests after a failure: for the health probe,
    /// whose answer ends the rest.
    pub async fn get_while_resting(&self) -> AppResult<SharedConnection> {
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

    /// The instance's one view of Redis's health, shared by everything that calls it.
    pub fn health(&self) -> &RedisBackoff {
        &self.health
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
