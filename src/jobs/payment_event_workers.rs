//! The payment event workers (docs/webhooks.md; the task keeps its name `webhook-workers`): `WEBHOOK_WORKERS` workers that apply the payment
//! provider's webhook events (`crate::service::PaymentEventWorkers`); a panicking worker stops its
//! siblings and the task dies.
//!
//! Events wait durably in the queue, shared with every instance's workers: nothing to take out
//! of service while they restart.

use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task};
use crate::service::PaymentEventWorkers;

/// The task's name in metrics and logs.
pub const NAME: &str = "webhook-workers";

/// The task of `workers`.
pub fn task(workers: PaymentEventWorkers) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::None,
        move |context| workers.clone().run(context.stop),
    )
}
