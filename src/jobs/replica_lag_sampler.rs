//! The replica lag sampler: with a read replica configured (`DATABASE_READ_REPLICA_URL`), every
//! `DATABASE_READ_REPLICA_LAG_SAMPLE_INTERVAL_MS` (5 s) it asks the replica how far its replay is
//! behind the primary and sets `supportdesk_db_replica_lag_seconds`. Reads that may use the
//! replica also set it when they ask; without this task an idle service would export the lag of
//! its last dashboard read for ever, and `SupportdeskReplicaLagging` could not fire.
//!
//! Declared whenever a replica is configured, metrics or not: a replica found unreachable here is
//! passed over by reads for a while, as when a read finds it so (`crate::db::read_replica`). A
//! pass that fails is logged and the next one tries again; the task counts as lagging after
//! [`super::periodic_lag_bound`] without a successful pass. It has no health effect: the
//! dashboard's reads fall back to the primary on their own.

use std::time::Duration;

use crate::db::read_replica::ReadPools;
use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task, TaskContext};

/// The task's name in metrics and logs.
pub const NAME: &str = "replica-lag-sampler";

/// The sampler of `pools`' replica, every `interval`; `None` without a replica.
pub fn task(pools: ReadPools, interval: Duration) -> Option<Task> {
    pools.has_replica().then(|| {
        Task::new(
            NAME,
            RestartPolicy::Restart(SERVICE_BACKOFF),
            HealthEffect::None,
            move |context| sample(pools.clone(), interval, context),
        )
        .lagging_after(super::periodic_lag_bound(interval))
    })
}

/// Samples at once, then every `interval` until stopped.
async fn sample(pools: ReadPools, interval: Duration, context: TaskContext) -> anyhow::Result<()> {
    loop {
        match pools.sample_replica_lag().await {
            Some(Ok(_)) => context.heartbeat.beat(),
            Some(Err(error)) => {
                tracing::warn!(%error, "sampling the read replica's lag failed; will retry");
            }
            None => return Ok(()),
        }
        tokio::select! {
            () = context.stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}
