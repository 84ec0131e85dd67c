//! Background work: one runner, and one file per task. Everything that runs in the background
//! is declared here: each file below (but the runner's own `runner.rs`, `supervisor.rs` and
//! `task.rs`) holds one task's `NAME` and the `task(...)` function that declares it.
//!
//! The rules:
//!
//! 1. **Every long-lived task runs under the [`JobRunner`]**; nothing long-lived is started with
//!    a bare `tokio::spawn` (`Application::build` adds the service's tasks that its settings
//!    call for, and `ApplicationBuilder::with_task` any other, before it). A task that dies is
//!    seen: an ERROR log line with its name and cause, the `supportdesk_job_runner_*` metrics,
//!    and its declared health effect.
//! 2. **Each task declares**, in its own file here and nowhere else, a name (lower case, words
//!    joined by `-`; it labels the metrics), a [`RestartPolicy`] (restart after a capped
//!    exponential backoff, giving up after a bound; or stop the process), a [`HealthEffect`]
//!    while it is not running, and optionally a lag bound within which it reports progress
//!    through its [`Heartbeat`]. The work itself may live below, in `service/` (a worker's
//!    business logic) or wherever its state is (`redis::ticket_cache`'s repairs).
//! 3. **A run returns `Ok(())` once its [`TaskContext::stop`] is cancelled, and only then.**
//!    An error in one pass of a periodic job (the database away for a while) is logged and the
//!    next pass tries again; returning an error, panicking or returning early is dying.
//! 4. **Giving up stops the process**: `run_until_stopped` drains and returns an error naming the
//!    task, so the process exits non-zero rather than running on without it.
//! 5. **Imports point down**: jobs use `health`, `metrics` and the services they run, never
//!    `api/` or `middleware/` (a test below reads the sources).
//!
//! docs/architecture.md ("Background tasks") lists the tasks with their policies and effects.

pub mod attachment_sweeper;
pub mod billing_completer;
pub mod billing_reconciler;
pub mod dependency_probe;
pub mod event_sweeper;
pub mod event_tail;
pub mod health_gates;
pub mod idempotency_sweeper;
pub mod metrics_endpoint;
pub mod notification_workers;
pub mod operation_workers;
pub mod outbound_webhook_workers;
pub mod payment_event_workers;
pub mod queue_sampler;
pub mod replica_lag_sampler;
pub mod runner;
pub mod storage_probe;
mod supervisor;
pub mod task;
pub mod ticket_cache_repair;

use std::time::Duration;

pub use crate::telemetry::metrics::TaskState;
pub use runner::{JobRunner, RunningJobs};
pub use task::{Backoff, HealthEffect, Heartbeat, JobFailure, RestartPolicy, Task, TaskContext};

/// The service's own tasks' backoff: 1 s, doubling to 1 min; a sixth death within a minute of
/// the fifth restart stops the process (after about 31 s of crash-looping).
pub const SERVICE_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(60),
    give_up_after: 5,
};

/// How long a periodic job may go without a successful pass before it counts as lagging: three
/// of its intervals and five minutes more (a pass may wait on slow calls).
pub fn periodic_lag_bound(interval: Duration) -> Duration {
    interval.saturating_mul(3) + Duration::from_secs(5 * 60)
}

/// A task's run that cannot fail by itself: it returns once stopped.
async fn returns_ok(run: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    run.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Every source file of the room, by name.
    const SOURCES: [(&str, &str); 21] = [
        ("mod.rs", include_str!("mod.rs")),
        ("runner.rs", include_str!("runner.rs")),
        ("supervisor.rs", include_str!("supervisor.rs")),
        ("task.rs", include_str!("task.rs")),
        ("billing_completer.rs", include_str!("billing_completer.rs")),
        (
            "billing_reconciler.rs",
            include_str!("billing_reconciler.rs"),
        ),
        (
            "idempotency_sweeper.rs",
            include_str!("idempotency_sweeper.rs"),
        ),
        (
            "attachment_sweeper.rs",
            include_str!("attachment_sweeper.rs"),
        ),
        ("storage_probe.rs", include_str!("storage_probe.rs")),
        ("event_sweeper.rs", include_str!("event_sweeper.rs")),
        ("event_tail.rs", include_str!("event_tail.rs")),
        ("dependency_probe.rs", include_str!("dependency_probe.rs")),
        ("health_gates.rs", include_str!("health_gates.rs")),
        ("metrics_endpoint.rs", include_str!("metrics_endpoint.rs")),
        (
            "notification_workers.rs",
            include_str!("notification_workers.rs"),
        ),
        (
            "ticket_cache_repair.rs",
            include_str!("ticket_cache_repair.rs"),
        ),
        (
            "outbound_webhook_workers.rs",
            include_str!("outbound_webhook_workers.rs"),
        ),
        (
            "payment_event_workers.rs",
            include_str!("payment_event_workers.rs"),
        ),
        ("operation_workers.rs", include_str!("operation_workers.rs")),
        ("queue_sampler.rs", include_str!("queue_sampler.rs")),
        (
            "replica_lag_sampler.rs",
            include_str!("replica_lag_sampler.rs"),
        ),
    ];

    #[test]
    fn no_job_imports_the_api_or_the_middleware() {
        let forbidden = [concat!("crate::", "api"), concat!("crate::", "middleware")];
        for (file, source) in SOURCES {
            for path in forbidden {
                assert!(!source.contains(path), "src/jobs/{file} uses {path}");
            }
        }
    }

    #[test]
    fn every_source_file_of_the_room_is_checked() {
        let mut on_disk: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/jobs"))
                .expect("src/jobs")
                .map(|entry| {
                    entry
                        .expect("an entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
        on_disk.sort();
        let mut checked: Vec<&str> = SOURCES.iter().map(|(file, _)| *file).collect();
        checked.sort_unstable();
        assert_eq!(on_disk, checked);
    }
}
