//! What the rate limiter decided.

use prometheus_client::registry::Registry;

use super::instruments::{Counter, Gauge, counter, counters_by, gauge};

/// What the rate limiter counts.
#[derive(Debug)]
pub struct RateLimitCounters {
    /// Redis decided: within the quota.
    pub allowed: Counter,
    /// Redis decided: over the quota.
    pub refused: Counter,
    /// Redis could not decide (failed, too slow, or resting after a failure): the failure
    /// policy answered.
    pub undecided: Counter,
    /// Calls to Redis that failed (fewer than `undecided`: Redis rests after each).
    pub redis_failures: Counter,
    /// The failure policy: 1 when undecided requests are let through.
    pub fail_open: Gauge,
}

impl RateLimitCounters {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let [allowed, refused, undecided] = counters_by(
            registry,
            "supportdesk_rate_limit_decisions",
            "Rate-limit decisions by outcome; undecided: Redis could not decide and the failure policy answered",
            "outcome",
            ["allowed", "refused", "undecided"],
        );
        Self {
            allowed,
            refused,
            undecided,
            fail_open: gauge(
                registry,
                "supportdesk_rate_limit_fail_open",
                "1 when undecided requests are let through (RATE_LIMIT_ON_REDIS_FAILURE=open), 0 when refused",
            ),
            redis_failures: counter(
                registry,
                "supportdesk_rate_limit_redis_failures",
                "Rate-limit calls to Redis that failed or timed out",
            ),
        }
    }

    /// Counts a decision Redis made.
    pub fn decided(&self, allowed: bool) {
        let counter = if allowed {
            &self.allowed
        } else {
            &self.refused
        };
        counter.increment();
    }
}
