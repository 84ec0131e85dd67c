//! The ticket cache repair: stores the ticket cache entries written while Redis was away
//! (`TicketCache::run_repairs`). Without it, those entries stay unsynced until their TTL; it
//! has no health effect, since a stale entry lasts its TTL at worst.

use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task};
use crate::redis::ticket_cache::TicketCache;

/// The task's name in metrics and logs.
pub const NAME: &str = "ticket-cache-repair";

/// The repairs of `cache`.
pub fn task(cache: TicketCache) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::None,
        move |context| super::returns_ok(cache.clone().run_repairs(context.stop)),
    )
}
