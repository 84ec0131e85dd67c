//! The billing completer: finishes the charges and refunds left pending (docs/billing.md, "the
//! completer") every `BILLING_COMPLETER_INTERVAL_MS`. Declared only when a payment provider is
//! configured: without one there is nothing to complete.
//!
//! A pass that fails is logged and the next one tries again; the task counts as lagging after
//! [`super::periodic_lag_bound`] without a successful pass. It has no health effect: new charges
//! complete on the request path without it, and taking BillingService down would not finish the
//! pending ones (its loss shows in the metrics and the log).

use std::time::Duration;

use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task, TaskContext};
use crate::service::{Billing, Completed, CompleterPolicy};

/// The task's name in metrics and logs.
pub const NAME: &str = "billing-completer";

/// The completer of `billing`, every `interval`.
pub fn task(billing: Billing, interval: Duration) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::None,
        move |context| complete(billing.clone(), interval, context),
    )
    .lagging_after(super::periodic_lag_bound(interval))
}

/// Completes what is pending every `interval` until stopped.
async fn complete(
    billing: Billing,
    interval: Duration,
    context: TaskContext,
) -> anyhow::Result<()> {
    let policy = CompleterPolicy {
        provider_key_retention: billing.provider_key_retention(),
        ..CompleterPolicy::default()
    };
    loop {
        tokio::select! {
            () = context.stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
        match billing.complete_pending_until(&policy, &context.stop).await {
            Ok(completed) => {
                context.heartbeat.beat();
                if completed != Completed::default() {
                    tracing::info!(?completed, "pending charges and refunds finished");
                }
            }
            Err(error) => tracing::warn!(%error, "finishing pending charges failed; will retry"),
        }
    }
}
