//! The idempotency-key sweeper: deletes the keys whose retention has passed
//! (`IDEMPOTENCY_KEY_TTL_SECS`), every `IDEMPOTENCY_SWEEP_INTERVAL_SECS`, 500 at a time.
//!
//! A pass that fails (the database away) is logged and the next one tries again; the task
//! counts as lagging after [`super::periodic_lag_bound`] without a successful pass. The service
//! serves without it (expired keys only take space), so it has no health effect.

use std::time::Duration;

use crate::db::PgPool;
use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task, TaskContext};

/// The task's name in metrics and logs.
pub const NAME: &str = "idempotency-sweeper";

/// The most keys one statement deletes.
const BATCH: i64 = 500;

/// The sweeper of `database`, every `interval`.
pub fn task(database: PgPool, interval: Duration) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::None,
        move |context| sweep(database.clone(), interval, context),
    )
    .lagging_after(super::periodic_lag_bound(interval))
}

/// Sweeps every `interval` until stopped.
async fn sweep(database: PgPool, interval: Duration, context: TaskContext) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            () = context.stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
        match crate::idempotency::sweep_expired(&database, BATCH).await {
            Ok(deleted) => {
                context.heartbeat.beat();
                if deleted > 0 {
                    tracing::info!(deleted, "expired idempotency keys deleted");
                }
            }
            Err(error) => tracing::warn!(%error, "sweeping idempotency keys failed; will retry"),
        }
    }
}
