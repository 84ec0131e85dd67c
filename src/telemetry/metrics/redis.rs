//! The ticket cache's hits and misses, and the time of each Redis call made on a request's
//! behalf.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::instruments::{Counter, OneLabel, Timing, counter, counters_by};

/// What the ticket cache counts.
#[derive(Debug)]
pub struct TicketCacheCounters {
    /// Lookups Redis answered with an entry (a ticket or a tombstone).
    pub hits: Counter,
    /// Lookups Redis answered without a usable entry.
    pub misses: Counter,
    /// Reads and writes that failed in Redis.
    pub redis_failures: Counter,
}

impl TicketCacheCounters {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let [hits, misses] = counters_by(
            registry,
            "supportdesk_ticket_cache_lookups",
            "Ticket cache lookups Redis answered, by outcome",
            "outcome",
            ["hit", "miss"],
        );
        Self {
            hits,
            misses,
            redis_failures: counter(
                registry,
                "supportdesk_ticket_cache_redis_failures",
                "Ticket cache reads and writes that failed in Redis",
            ),
        }
    }

    /// Counts a lookup Redis answered.
    pub fn looked_up(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.increment();
    }
}

/// The time of each Redis call made on a request's behalf, by `purpose`: the admission script
/// (`admission.admit`, `admission.peek`) and the ticket cache (`ticket_cache.get`,
/// `ticket_cache.store`). Each purpose's histogram is a field: recording one costs no label
/// hashing on the hot path (docs/performance.md, "Per-RPC metrics").
#[derive(Debug)]
pub struct RedisTimings {
    pub admit: Timing,
    pub peek: Timing,
    pub cache_get: Timing,
    pub cache_store: Timing,
}

/// A Redis call's upper bounds: 100 µs doubling to about 0.8 s (14 buckets and +Inf), past the
/// 1 s the service waits for Redis at most.
fn redis_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 14))
}

impl RedisTimings {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let family =
            Family::<OneLabel, Histogram, fn() -> Histogram>::new_with_constructor(redis_histogram);
        registry.register_with_unit(
            "supportdesk_redis_call_duration",
            "Time from sending a Redis call to its answer (or error), by purpose: admission.admit, admission.peek (the admission script), ticket_cache.get, ticket_cache.store",
            prometheus_client::registry::Unit::Seconds,
            family.clone(),
        );
        let [admit, peek, cache_get, cache_store] = [
            "admission.admit",
            "admission.peek",
            "ticket_cache.get",
            "ticket_cache.store",
        ]
        .map(|purpose| Timing(family.get_or_create_owned(&[("purpose", purpose)])));
        Self {
            admit,
            peek,
            cache_get,
            cache_store,
        }
    }
}
