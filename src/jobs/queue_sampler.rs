//! The queue sampler: every `QUEUE_SAMPLE_INTERVAL_MS` it reads each background queue's depth
//! and how long its longest-waiting row has waited into `supportdesk_queue_depth{queue}` and
//! `supportdesk_queue_oldest_age_seconds{queue}` (docs/metrics.md, "Queues"): the webhook events,
//! the notifications, the long-running operations and the completer's pending charges and
//! refunds. Declared only while `/metrics` is served (`METRICS_LISTEN_ADDR`): the gauges are read
//! nowhere else.
//!
//! Sampled by a job rather than at scrape time: a scrape then never waits on PostgreSQL (nor
//! fails with it), and the statements run once an interval however many scrapers there are. One
//! statement per queue, on a connection checked out for the pass and given back before the
//! sleep. The queues are shared by every instance, so every instance reports the same values
//! (aggregate with `max`, not `sum`). A queue that fails to answer keeps its last values and is
//! logged; the task counts as lagging after [`super::periodic_lag_bound`] without a pass in which
//! every queue answered. It has no health effect: it only observes.

use std::time::Duration;

use crate::db::PgPool;
use crate::db::models::notification::NOTIFICATION_QUEUE;
use crate::db::models::operation::OperationRow;
use crate::db::models::send_lease;
use crate::db::models::webhook_event::WEBHOOK_QUEUE;
use crate::db::queue::{self, QueueStats};
use crate::errors::AppResult;
use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task, TaskContext};
use crate::telemetry::metrics::{Metrics, QueueName};

/// The task's name in metrics and logs.
pub const NAME: &str = "queue-sampler";

/// The sampler of `database`'s queues into `metrics`, every `interval`.
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
        if sample_every_queue(&database, &metrics).await {
            context.heartbeat.beat();
        }
        tokio::select! {
            () = context.stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// One pass: every queue read into its gauges. True when every queue answered.
async fn sample_every_queue(database: &PgPool, metrics: &Metrics) -> bool {
    let mut conn = match crate::db::connection(database).await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(%error, "sampling the queues failed: no connection; will retry");
            return false;
        }
    };
    let mut every_one = true;
    for name in QueueName::ALL {
        let stats: AppResult<QueueStats> = match name {
            QueueName::Webhooks => queue::stats(&mut conn, &WEBHOOK_QUEUE).await,
            QueueName::Notifications => queue::stats(&mut conn, &NOTIFICATION_QUEUE).await,
            QueueName::Operations => OperationRow::queue_stats(&mut conn).await,
            QueueName::Completer => send_lease::pending_stats(&mut conn).await,
        };
        match stats {
            Ok(stats) => metrics.queues().record(
                name,
                u64::try_from(stats.depth).unwrap_or_default(),
                stats.oldest_age_seconds.max(0.0),
            ),
            Err(error) => {
                every_one = false;
                tracing::warn!(%error, queue = name.as_str(), "sampling a queue failed; will retry");
            }
        }
    }
    every_one
}
