//! The instance's one view of Redis's health: after a Redis failure, everything that calls
//! Redis leaves it alone for a pause, and health is told when Redis starts or stops failing.
//!
//! One view, not one per feature: a request whose admission waited for a silent Redis (the rate
//! limiter's timeout) must not wait for it again in the ticket cache, the caller states or the
//! sessions. Each feature counts its own failures ([`RedisBackoff::counting`]) on the shared
//! state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::telemetry::metrics::Counter;

/// After a Redis failure, leaves Redis alone for a pause, so that an outage costs the features
/// that can do without it (the ticket cache, the rate limiter) nothing, and counts failures for
/// operators (exported by [`crate::telemetry::metrics`]). Cheap to clone: clones share their
/// state, and so do the views [`Self::counting`] makes (only the counter differs).
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

    /// The same view of Redis's health, counting the failures it notes in `failures`: a
    /// feature's own count on the instance's shared state.
    pub fn counting(&self, failures: Counter) -> Self {
        Self {
            failures,
            ..self.clone()
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
