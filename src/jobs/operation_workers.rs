//! The operation workers (docs/operations.md): `OPERATION_WORKERS` workers that run the
//! long-running operations (ticket imports) batch by batch (`crate::service::OperationWorkers`).
//!
//! Operations wait durably in the `operations` table, shared with every instance's workers, and
//! a crashed instance's operations are taken over when their lease runs out. While this task is
//! down or lagging, `google.longrunning.Operations` is NOT_SERVING in health: operations accepted
//! meanwhile make no progress here, and load balancers should know.

use std::time::Duration;

use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task};
use crate::service::OperationWorkers;

/// The task's name in metrics and logs.
pub const NAME: &str = "operation-workers";

/// The health name of the service whose operations the workers run.
pub const OPERATIONS_SERVICE: &str = "google.longrunning.Operations";

/// The task of `workers`; a worker that has not looked for work (or settled a batch) for the
/// periodic lag bound of `poll_interval` makes it lagging.
pub fn task(workers: OperationWorkers, poll_interval: Duration) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::Service(OPERATIONS_SERVICE),
        move |context| {
            let heartbeat = context.heartbeat;
            workers
                .clone()
                .run(context.stop, std::sync::Arc::new(move || heartbeat.beat()))
        },
    )
    .lagging_after(super::periodic_lag_bound(poll_interval))
}
