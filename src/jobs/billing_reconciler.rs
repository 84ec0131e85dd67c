//! The billing reconciler: every `BILLING_RECONCILIATION_INTERVAL_MS`, one reconciliation run
//! over the last `BILLING_RECONCILIATION_PERIOD_SECS` (docs/billing.md, "Reconciliation").
//! Declared only when a payment provider is configured.
//!
//! A run that fails (the provider or the database away) is recorded `failed`, logged and counted,
//! and the next interval tries again; the task counts as lagging after
//! [`super::periodic_lag_bound`] without a successful run. It has no health effect: charges and
//! refunds go on without it, and its loss shows in the metrics and the log.

use std::time::Duration;

use crate::configuration::ReconciliationSettings;
use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task, TaskContext};
use crate::service::billing::reconciliation::period_ending_now;
use crate::service::{Billing, ReconciliationPolicy};

/// The task's name in metrics and logs.
pub const NAME: &str = "billing-reconciler";

/// The reconciler of `billing`, as `settings` say.
pub fn task(billing: Billing, settings: ReconciliationSettings) -> Task {
    let interval = settings.interval;
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::None,
        move |context| reconcile(billing.clone(), settings.clone(), context),
    )
    .lagging_after(super::periodic_lag_bound(interval))
}

/// Runs a reconciliation every interval until stopped.
async fn reconcile(
    billing: Billing,
    settings: ReconciliationSettings,
    context: TaskContext,
) -> anyhow::Result<()> {
    let policy = ReconciliationPolicy {
        settle: settings.settle,
        ..ReconciliationPolicy::default()
    };
    let period: Duration = settings.period;
    // The first run comes when the fleet's last one is an interval old, so that instances
    // restarted more often than the interval still reconcile; before any run, an interval in.
    let mut pause = match billing.next_reconciliation_in(settings.interval).await {
        Ok(due_in) => due_in.unwrap_or(settings.interval),
        Err(error) => {
            tracing::warn!(%error, "when the last reconciliation ran is unknown; waiting an interval");
            settings.interval
        }
    };
    loop {
        tokio::select! {
            () = context.stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
        pause = settings.interval;
        match billing
            .reconcile_until(period_ending_now(period), &policy, &context.stop)
            .await
        {
            Ok(None) => return Ok(()),
            Ok(Some(report)) => {
                context.heartbeat.beat();
                tracing::info!(run_id = %report.run_id, charges = report.charges_checked,
                    refunds = report.refunds_checked, findings = report.findings.len(),
                    "reconciliation run finished");
            }
            Err(error) => tracing::warn!(%error, "a reconciliation run failed; will retry"),
        }
    }
}
