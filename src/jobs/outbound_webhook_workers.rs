//! The outbound webhook workers (docs/webhooks.md, "Webhooks we send"; the task keeps its name
//! `webhook-delivery-workers`):
//! `OUTBOUND_WEBHOOK_WORKERS` workers that deliver the events of the outbox to the endpoints that
//! subscribed (`crate::service::WebhookDeliveryWorkers`).
//!
//! Deliveries wait durably in their queue, shared with every instance's workers: nothing to take
//! out of service while they restart.

use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task};
use crate::service::WebhookDeliveryWorkers;

/// The task's name in metrics and logs.
pub const NAME: &str = "webhook-delivery-workers";

/// The task of `workers`.
pub fn task(workers: WebhookDeliveryWorkers) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::None,
        move |context| workers.clone().run(context.stop),
    )
}
