//! The event tail (docs/webhooks.md, "Watching events over gRPC"): the one reader of new events
//! that every caught-up WatchEvents stream of the instance follows
//! ([`crate::service::event_tail`]). It reads only while a stream waits on it, once per
//! `WATCH_POLL_INTERVAL_MS`, and returns at shutdown or when the instance drains (the streams
//! end then).
//!
//! A read that fails (the database away) is logged and told to the streams, and the next poll
//! tries again. While it is not running, caught-up streams hear of no new event, so
//! EventService is NOT_SERVING until it is restarted.

use tokio_util::sync::CancellationToken;

use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task, TaskContext};
use crate::service::event_tail::EventTail;

/// The task's name in metrics and logs.
pub const NAME: &str = "event-tail";

/// The tail's task; `event_service` is the API service that is NOT_SERVING while it is not
/// running, and `draining` ends it when the instance drains.
pub fn task(tail: EventTail, event_service: &'static str, draining: CancellationToken) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::Service(event_service),
        move |context| run(tail.clone(), draining.clone(), context),
    )
}

async fn run(
    tail: EventTail,
    draining: CancellationToken,
    context: TaskContext,
) -> anyhow::Result<()> {
    let heartbeat = context.heartbeat.clone();
    tail.run(context.stop.clone(), draining, move || heartbeat.beat())
        .await;
    // Drained but not stopped yet: a run returns only once stop is cancelled.
    context.stop.cancelled().await;
    Ok(())
}
