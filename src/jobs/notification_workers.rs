//! The notification workers (docs/notifications.md): `NOTIFICATION_WORKERS` workers that send
//! the email notifications queued in the outbox (`crate::service::NotificationWorkers`); a
//! panicking worker stops its siblings and the task dies. Declared only with an email provider:
//! without one, notifications wait in the outbox.
//!
//! Notifications wait durably in the outbox, shared with every instance's workers: nothing to
//! take out of service while they restart.

use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task};
use crate::service::NotificationWorkers;

/// The task's name in metrics and logs.
pub const NAME: &str = "notification-workers";

/// The task of `workers`.
pub fn task(workers: NotificationWorkers) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::None,
        move |context| workers.clone().run(context.stop),
    )
}
