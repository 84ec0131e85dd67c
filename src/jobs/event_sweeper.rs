//! The event sweeper (docs/webhooks.md, "Retention"): deletes the events recorded more than
//! `EVENT_RETENTION_DAYS` ago none of whose deliveries is still pending, with their deliveries
//! and attempts, every `EVENT_SWEEP_INTERVAL_SECS`.
//!
//! A pass that fails (the database away) is logged and the next one tries again. The service
//! serves without it (old events only take space), so it has no health effect.

use std::time::Duration;

use crate::db::PgPool;
use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task, TaskContext};

/// The task's name in metrics and logs.
pub const NAME: &str = "event-sweeper";

/// The sweeper of `database`'s events older than `retention`, every `interval`.
pub fn task(database: PgPool, retention: Duration, interval: Duration) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::None,
        move |context| sweep(database.clone(), retention, interval, context),
    )
    .lagging_after(super::periodic_lag_bound(interval))
}

async fn sweep(
    database: PgPool,
    retention: Duration,
    interval: Duration,
    context: TaskContext,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            () = context.stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
        match crate::service::events::sweep_past_retention(&database, retention).await {
            Ok(deleted) => {
                context.heartbeat.beat();
                if deleted > 0 {
                    tracing::info!(deleted, "events past their retention deleted");
                }
            }
            Err(error) => tracing::warn!(%error, "sweeping old events failed; will retry"),
        }
    }
}
