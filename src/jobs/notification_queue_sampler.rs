//! The notification queue sampler: every `NOTIFICATION_QUEUE_SAMPLE_INTERVAL_MS` it reads how
//! many notifications wait to be sent and how long the longest-due one has been due, into the
//! `supportdesk_notifications_queue_depth` and `..._oldest_due_age_seconds` gauges
//! (docs/metrics.md). Declared only while `/metrics` is served (`METRICS_LISTEN_ADDR`): the gauges
//! are read nowhere else.
//!
//! Sampled by a job rather than at scrape time: a scrape then never waits on PostgreSQL (nor
//! fails with it), and the query runs once an interval however many scrapers there are. The queue
//! is shared by every instance, so every instance reports the same values (aggregate with
//! `max`, not `sum`). A pass that fails is logged and the next one tries again; the task counts
//! as lagging after [`super::periodic_lag_bound`] without a successful pass. It has no health
//! effect: it only observes.

use std::time::Duration;

use crate::app::metrics::Metrics;
use crate::db::PgPool;
use crate::db::models::notification::outbox;
use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task, TaskContext};

/// The task's name in metrics and logs.
pub const NAME: &str = "notification-queue-sampler";

/// The sampler of `database`'s queue into `metrics`, every `interval`.
pub fn task(database: PgPool, metrics: Metrics, interval: Duration) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::None,
        move |context| sample(database.clone(), metrics.clone(), interval, context),
    )
    .lagging_after(super::periodic_lag_bound(interval))
}

/// Samples at once, then every `interval` until stopped.
async fn sample(
    database: PgPool,
    metrics: Metrics,
    interval: Duration,
    context: TaskContext,
) -> anyhow::Result<()> {
    loop {
        let stats = async {
            let mut conn = crate::db::connection(&database).await?;
            outbox::stats(&mut conn).await
        };
        match stats.await {
            Ok(stats) => {
                context.heartbeat.beat();
                let counters = metrics.notifications();
                counters
                    .queue_depth
                    .set(u64::try_from(stats.depth).unwrap_or_default());
                counters
                    .oldest_due_age
                    .set(stats.oldest_due_age_seconds.max(0.0));
            }
            Err(error) => {
                tracing::warn!(%error, "sampling the notification queue failed; will retry")
            }
        }
        tokio::select! {
            () = context.stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}
