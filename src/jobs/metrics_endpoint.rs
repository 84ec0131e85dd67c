//! The `/metrics` endpoint's task: serves `GET /metrics` while `METRICS_LISTEN_ADDR` is set. The
//! serving itself is rendering, which belongs to `app/` (`app::metrics_endpoint`), above this
//! room: the task is given it as a function. It has no health effect: it serves operators, not
//! traffic.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task};

/// The task's name in metrics and logs.
pub const NAME: &str = "metrics-endpoint";

/// The task that runs `serve` until the stop it is given is cancelled.
pub fn task<F, Fut>(serve: F) -> Task
where
    F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::None,
        move |context| super::returns_ok(serve(context.stop)),
    )
}
