//! The object storage probe: every `STORAGE_PROBE_INTERVAL_MS` it asks the store for the
//! attachments bucket through the store's circuit breaker, so that failures open the breaker
//! (AttachmentService NOT_SERVING in health) without waiting for a request to find out. While the
//! breaker is open it sends nothing; once the cool-down has ended it is the half-open probe,
//! whose answer closes the breaker (AttachmentService SERVING again) without a restart. While it
//! is not running, AttachmentService is NOT_SERVING.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task, TaskContext};
use crate::providers::storage::ObjectStorage;

/// The task's name in metrics and logs.
pub const NAME: &str = "storage-probe";

/// The probe of `storage`, every `interval`; `service` is AttachmentService's name.
pub fn task(storage: Arc<ObjectStorage>, interval: Duration, service: &'static str) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::Service(service),
        move |context| probe(storage.clone(), interval, context),
    )
    .lagging_after(super::periodic_lag_bound(interval))
}

async fn probe(
    storage: Arc<ObjectStorage>,
    interval: Duration,
    context: TaskContext,
) -> anyhow::Result<()> {
    let mut was_available = true;
    loop {
        let outcome = storage
            .probe(Instant::now() + interval.max(Duration::from_secs(1)))
            .await;
        context.heartbeat.beat();
        match outcome {
            Ok(()) if !was_available => tracing::info!("object storage answers again"),
            Ok(()) => {}
            Err(error) if was_available => {
                tracing::warn!(%error, "object storage does not answer: attachments are unavailable");
            }
            Err(_) => {}
        }
        was_available = storage.is_available();
        tokio::select! {
            () = context.stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}
