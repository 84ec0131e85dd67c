//! The attachment sweeper (docs/attachments.md, "Nothing orphaned"): every
//! `ATTACHMENT_SWEEP_INTERVAL_MS` it deletes the uploads still pending
//! `ATTACHMENT_ABANDON_GRACE_SECS` after their URL expired, and deletes from storage the objects
//! queued in `storage_deletions` (deleted attachments, abandoned and refused uploads).
//!
//! A pass that fails (the database or the store away) is logged and the next one tries again;
//! a queued object stays queued until the store confirms its deletion. The service serves
//! without the sweeper (objects only wait longer), so it has no health effect.

use std::time::Duration;

use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task, TaskContext};
use crate::service::Attachments;

/// The task's name in metrics and logs.
pub const NAME: &str = "attachment-sweeper";

/// The sweeper of `attachments`, every `interval`.
pub fn task(attachments: Attachments, interval: Duration) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::None,
        move |context| sweep(attachments.clone(), interval, context),
    )
    .lagging_after(super::periodic_lag_bound(interval))
}

async fn sweep(
    attachments: Attachments,
    interval: Duration,
    context: TaskContext,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            () = context.stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
        match attachments.sweep().await {
            Ok(report) => {
                context.heartbeat.beat();
                if report.abandoned + report.deleted + report.failed > 0 {
                    tracing::info!(?report, "attachment sweep");
                }
            }
            Err(error) => tracing::warn!(%error, "the attachment sweep failed; will retry"),
        }
    }
}
