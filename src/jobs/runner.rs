//! The runner: takes the declared [`Task`]s (`task.rs`), starts them in one `JoinSet` its
//! supervisor owns (`supervisor.rs`), and hands back the [`RunningJobs`] that report a failure
//! and shut them down.
//!
//! A task that panics, returns an error, or returns while it was not told to stop has *died*:
//! the runner logs it at ERROR with the task's name and the cause, counts it, sets its state
//! gauge, and applies its [`HealthEffect`](crate::jobs::HealthEffect) until it runs again. Then its [`RestartPolicy`](crate::jobs::RestartPolicy)
//! decides: start it again after an exponential backoff, or give up. Giving up (a
//! [`RestartPolicy::StopProcess`](crate::jobs::RestartPolicy::StopProcess) task died, or a task died more times in a row than its policy
//! allows) is a [`JobFailure`], which [`RunningJobs::failed`] reports so that the process stops
//! with an error rather than running on without the task.
//!
//! A task that declares a lag bound ([`Task::lagging_after`]) and has not reported progress
//! through its [`Heartbeat`](crate::jobs::Heartbeat) within it is *lagging*: the gauge says so, its health effect applies,
//! and both are lifted at its next heartbeat. Lagging is not dying: nothing is restarted.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::supervisor::Supervisor;
use super::task::{JobFailure, Task};
use crate::telemetry::health::{Health, Held};
use crate::telemetry::metrics::Metrics;

/// How often lag is checked at most: a bound is noticed within a quarter of itself, or this.
const MAX_LAG_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest lag check interval, however short a bound.
const MIN_LAG_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// The tasks of one instance, before they start.
pub struct JobRunner {
    health: Health,
    metrics: Metrics,
    tasks: Vec<Task>,
}

impl std::fmt::Debug for JobRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRunner")
            .field("tasks", &self.tasks)
            .finish_non_exhaustive()
    }
}

impl JobRunner {
    /// A runner that applies health effects to `health` and exports its gauges in `metrics`.
    pub fn new(health: Health, metrics: Metrics) -> Self {
        Self {
            health,
            metrics,
            tasks: Vec::new(),
        }
    }

    pub fn add(&mut self, task: Task) {
        self.tasks.push(task);
    }

    /// Starts every task. Fails, starting none, when two tasks share a name or a task's health
    /// effect names a service health does not report.
    pub fn start(self) -> anyhow::Result<RunningJobs> {
        let mut names = HashSet::new();
        for task in &self.tasks {
            anyhow::ensure!(
                names.insert(task.name),
                "two background tasks are named `{}`",
                task.name
            );
            for held in task.health.held() {
                if let Held::Service(service) = held {
                    anyhow::ensure!(
                        self.health.reports(service),
                        "background task `{}` would take `{service}` down, which health does not report",
                        task.name
                    );
                }
            }
        }
        let lag_check = self
            .tasks
            .iter()
            .filter_map(|task| task.lag_bound)
            .min()
            .map(|bound| (bound / 4).clamp(MIN_LAG_CHECK_INTERVAL, MAX_LAG_CHECK_INTERVAL));
        let (failure_sender, failure) = watch::channel(None);
        let (shutdown, shutdown_requested) = oneshot::channel();
        let supervisor = Supervisor::new(self.tasks, &self.metrics, self.health, failure_sender);
        Ok(RunningJobs {
            shutdown: Some(shutdown),
            failure,
            supervisor: tokio::spawn(supervisor.run(lag_check, shutdown_requested)),
        })
    }
}

/// The started tasks.
#[derive(Debug)]
pub struct RunningJobs {
    shutdown: Option<oneshot::Sender<Duration>>,
    failure: watch::Receiver<Option<JobFailure>>,
    supervisor: JoinHandle<Vec<&'static str>>,
}

impl RunningJobs {
    /// Resolves once a task has died for good (or the runner itself stopped); stays pending
    /// while every task runs or waits for its restart.
    pub async fn failed(&mut self) -> JobFailure {
        loop {
            if let Some(failure) = self.failure.borrow_and_update().clone() {
                return failure;
            }
            if self.failure.changed().await.is_err() {
                // The supervisor returns only once told to shut down, which takes `self`.
                return JobFailure::Runner {
                    cause: "the supervisor ended unexpectedly".to_owned(),
                };
            }
        }
    }

    /// Cancels every task, waits up to `within` for all of them to return, and returns the
    /// names of those that did not return cleanly in time (each logged at ERROR; any still
    /// running is aborted).
    pub async fn shutdown(mut self, within: Duration) -> Vec<&'static str> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(within);
        }
        match (&mut self.supervisor).await {
            Ok(unclean) => unclean,
            Err(error) => {
                tracing::error!(%error, "the job runner's supervisor died: its tasks are aborted");
                vec!["job-runner"]
            }
        }
    }
}

impl Drop for RunningJobs {
    fn drop(&mut self) {
        // Dropped without a shutdown (the server failed): stop now, waiting for nothing.
        if self.shutdown.is_some() {
            self.supervisor.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    //! On tokio's paused clock: every backoff and bound passes in virtual time, exactly.

    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    use tokio::sync::Notify;
    use tonic_health::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_server::Health as _;
    use tonic_health::server::{HealthReporter, HealthService};

    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use tokio::time::Instant;

    use crate::telemetry::metrics::{TaskMetrics, TaskState};

    use super::*;
    use crate::jobs::{Backoff, HealthEffect, RestartPolicy, TaskContext};

    const TICKETS: &str = "supportdesk.v1.TicketService";
    const USERS: &str = "supportdesk.v1.UserService";

    const BACKOFF: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(4),
        give_up_after: 4,
    };

    /// A runner's surroundings: health serving both services, and the metrics.
    struct Fixture {
        health: Health,
        server: HealthService,
        metrics: Metrics,
    }

    impl Fixture {
        async fn new() -> Self {
            let reporter = HealthReporter::new();
            let server = HealthService::from_health_reporter(reporter.clone());
            let health = Health::new(reporter, vec![TICKETS.to_owned(), USERS.to_owned()]);
            health.set_all(ServingStatus::Serving).await;
            Self {
                health,
                server,
                metrics: Metrics::default(),
            }
        }

        fn start(&self, tasks: Vec<Task>) -> RunningJobs {
            let mut runner = JobRunner::new(self.health.clone(), self.metrics.clone());
            for task in tasks {
                runner.add(task);
            }
            runner.start().expect("the tasks start")
        }

        fn task(&self, name: &str) -> Arc<TaskMetrics> {
            self.metrics
                .job_runner()
                .get(name)
                .expect("the task is registered")
        }

        async fn serving(&self, service: &str) -> bool {
            let status = self
                .server
                .check(tonic::Request::new(HealthCheckRequest {
                    service: service.to_owned(),
                }))
                .await
                .expect("a known service")
                .into_inner()
                .status;
            status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        }
    }

    /// Polls `condition` in virtual time; fails after a virtual minute.
    async fn until(what: &str, mut condition: impl FnMut() -> bool) {
        let started = Instant::now();
        while !condition() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what} did not happen"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What `jobs` report as their failure; fails after ten virtual minutes.
    async fn failure_of(jobs: &mut RunningJobs) -> JobFailure {
        tokio::time::timeout(Duration::from_secs(600), jobs.failed())
            .await
            .expect("the runner reports a failure")
    }

    /// When each run of a task started.
    #[derive(Clone, Default)]
    struct Runs(Arc<Mutex<Vec<Instant>>>);

    impl Runs {
        /// Records a start; returns its number (1 for the first).
        fn started(&self) -> usize {
            let mut runs = self.0.lock().expect("runs");
            runs.push(Instant::now());
            runs.len()
        }

        fn count(&self) -> usize {
            self.0.lock().expect("runs").len()
        }

        /// The time between each start and the next.
        fn gaps(&self) -> Vec<Duration> {
            let runs = self.0.lock().expect("runs");
            runs.windows(2).map(|pair| pair[1] - pair[0]).collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_is_restarted_after_its_backoff_and_its_restart_is_counted() {
        let fixture = Fixture::new().await;
        let runs = Runs::default();
        let counted = runs.clone();
        let jobs = fixture.start(vec![Task::new(
            "flaky",
            RestartPolicy::Restart(BACKOFF),
            HealthEffect::Service(TICKETS),
            move |context| {
                let run = counted.started();
                async move {
                    assert!(run > 1, "the first run dies");
                    context.stop.cancelled().await;
                    Ok(())
                }
            },
        )]);
        let task = fixture.task("flaky");

        until("the task restarting", || {
            task.state() == TaskState::Restarting
        })
        .await;
        assert_eq!(task.failures.get(), 1);
        assert_eq!(task.restarts.get(), 0, "not before its backoff");
        assert!(
            !fixture.serving(TICKETS).await,
            "its service is down meanwhile"
        );
        assert!(fixture.serving(USERS).await, "the others are not");
        assert!(fixture.serving("").await);

        until("the task running again", || {
            task.state() == TaskState::Running
        })
        .await;
        assert_eq!(runs.count(), 2);
        assert_eq!(task.restarts.get(), 1);
        assert_eq!(task.failures.get(), 1);
        let gap = runs.gaps()[0];
        assert!(
            gap >= BACKOFF.initial && gap < BACKOFF.initial * 2,
            "restarted after the initial backoff, not {gap:?}"
        );
        assert!(fixture.serving(TICKETS).await, "its service is back");
        assert!(jobs.shutdown(Duration::from_secs(1)).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_declaring_several_services_takes_each_down_while_it_is_not_running() {
        const BOTH: [&str; 2] = [TICKETS, USERS];
        let fixture = Fixture::new().await;
        let runs = Runs::default();
        let counted = runs.clone();
        let jobs = fixture.start(vec![Task::new(
            "gates",
            RestartPolicy::Restart(BACKOFF),
            HealthEffect::Services(&BOTH),
            move |context| {
                let run = counted.started();
                async move {
                    assert!(run > 1, "the first run dies");
                    context.stop.cancelled().await;
                    Ok(())
                }
            },
        )]);
        let task = fixture.task("gates");
        until("the task restarting", || {
            task.state() == TaskState::Restarting
        })
        .await;
        assert!(!fixture.serving(TICKETS).await);
        assert!(!fixture.serving(USERS).await);
        assert!(fixture.serving("").await, "the server is not held");
        until("the task running again", || {
            task.state() == TaskState::Running
        })
        .await;
        assert!(fixture.serving(TICKETS).await);
        assert!(fixture.serving(USERS).await);
        assert!(jobs.shutdown(Duration::from_secs(1)).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_keeps_failing_past_its_bound_ends_the_runner_with_an_error_naming_it() {
        let fixture = Fixture::new().await;
        let runs = Runs::default();
        let counted = runs.clone();
        let mut jobs = fixture.start(vec![Task::new(
            "sweeper",
            RestartPolicy::Restart(BACKOFF),
            HealthEffect::None,
            move |_| {
                counted.started();
                async { Err(anyhow::anyhow!("the table is gone")) }
            },
        )]);

        let failure = failure_of(&mut jobs).await;
        assert_eq!(
            failure,
            JobFailure::GaveUp {
                task: "sweeper",
                deaths: 5,
                cause: "returned an error: the table is gone".to_owned(),
            }
        );
        assert!(failure.to_string().contains("`sweeper`"));
        let task = fixture.task("sweeper");
        assert_eq!(task.state(), TaskState::Failed);
        assert_eq!(task.failures.get(), 5);
        assert_eq!(task.restarts.get(), 4);
        let gaps = runs.gaps();
        let least = [1, 2, 4, 4].map(Duration::from_secs);
        assert_eq!(gaps.len(), least.len());
        for (gap, least) in gaps.iter().zip(least) {
            assert!(
                *gap >= least && *gap < least + Duration::from_secs(1),
                "backoffs double up to the cap: {gaps:?}"
            );
        }
        assert!(jobs.shutdown(Duration::from_secs(1)).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_lasted_the_backoff_cap_starts_a_new_streak() {
        let fixture = Fixture::new().await;
        let runs = Runs::default();
        let counted = runs.clone();
        let mut jobs = fixture.start(vec![Task::new(
            "slow-to-die",
            RestartPolicy::Restart(BACKOFF),
            HealthEffect::None,
            move |_| {
                let run = counted.started();
                async move {
                    // Runs 1 to 6 each last the cap; later ones die at once.
                    if run <= 6 {
                        tokio::time::sleep(BACKOFF.max).await;
                    }
                    Err(anyhow::anyhow!("run {run} died"))
                }
            },
        )]);

        let failure = failure_of(&mut jobs).await;
        // Each long run's death is a first one; the sixth starts the streak that the deaths of
        // four quick runs after it take past the bound.
        assert!(
            matches!(
                failure,
                JobFailure::GaveUp {
                    task: "slow-to-die",
                    deaths: 5,
                    ..
                }
            ),
            "{failure:?}"
        );
        assert_eq!(runs.count(), 6 + 4);
        assert_eq!(fixture.task("slow-to-die").restarts.get(), 9);
        assert!(jobs.shutdown(Duration::from_secs(1)).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_process_task_that_dies_ends_the_runner_at_once_and_holds_health_down() {
        let fixture = Fixture::new().await;
        let runs = Runs::default();
        let counted = runs.clone();
        let mut jobs = fixture.start(vec![
            Task::new(
                "probe",
                RestartPolicy::StopProcess,
                HealthEffect::Everything,
                move |_| {
                    counted.started();
                    async { Ok(()) }
                },
            ),
            Task::new(
                "steady",
                RestartPolicy::Restart(BACKOFF),
                HealthEffect::None,
                |context| async move {
                    context.stop.cancelled().await;
                    Ok(())
                },
            ),
        ]);

        let failure = failure_of(&mut jobs).await;
        assert_eq!(
            failure,
            JobFailure::Stopped {
                task: "probe",
                cause: "returned while not told to stop".to_owned(),
            }
        );
        let probe = fixture.task("probe");
        assert_eq!(probe.state(), TaskState::Failed);
        assert_eq!((probe.failures.get(), probe.restarts.get()), (1, 0));
        assert_eq!(runs.count(), 1, "never restarted");
        assert!(!fixture.serving("").await);
        assert!(!fixture.serving(USERS).await);
        assert_eq!(fixture.task("steady").state(), TaskState::Running);
        assert!(jobs.shutdown(Duration::from_secs(1)).await.is_empty());
        assert_eq!(fixture.task("steady").state(), TaskState::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cancels_every_task_awaits_it_and_names_the_one_that_does_not_stop() {
        let fixture = Fixture::new().await;
        let cleaned_up = Arc::new(AtomicBool::new(false));
        let cleaning = cleaned_up.clone();
        let jobs = fixture.start(vec![
            Task::new(
                "tidy",
                RestartPolicy::Restart(BACKOFF),
                HealthEffect::None,
                move |context| {
                    let cleaning = cleaning.clone();
                    async move {
                        context.stop.cancelled().await;
                        // Cleaning up takes a while, within the bound.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        cleaning.store(true, Ordering::Relaxed);
                        Ok(())
                    }
                },
            ),
            Task::new(
                "stubborn",
                RestartPolicy::Restart(BACKOFF),
                HealthEffect::None,
                |_| std::future::pending(),
            ),
            Task::new(
                "waiting-to-restart",
                RestartPolicy::Restart(BACKOFF),
                HealthEffect::None,
                |_| async { Err(anyhow::anyhow!("down")) },
            ),
        ]);
        let waiting = fixture.task("waiting-to-restart");
        until("a task restarting", || {
            waiting.state() == TaskState::Restarting
        })
        .await;

        let unclean = jobs.shutdown(Duration::from_secs(2)).await;
        assert_eq!(unclean, ["stubborn"]);
        assert!(cleaned_up.load(Ordering::Relaxed), "tidy was awaited");
        assert_eq!(fixture.task("tidy").state(), TaskState::Stopped);
        assert_eq!(waiting.state(), TaskState::Stopped);
        assert_eq!(waiting.restarts.get(), 0, "not restarted once stopping");
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_silent_past_its_bound_is_lagging_until_it_reports_again() {
        let fixture = Fixture::new().await;
        let progress = Arc::new(Notify::new());
        let waiting = progress.clone();
        let bound = Duration::from_secs(5);
        let jobs = fixture.start(vec![
            Task::new(
                "repairs",
                RestartPolicy::Restart(BACKOFF),
                HealthEffect::Service(TICKETS),
                move |context| {
                    let waiting = waiting.clone();
                    async move {
                        loop {
                            tokio::select! {
                                () = context.stop.cancelled() => return Ok(()),
                                () = waiting.notified() => context.heartbeat.beat(),
                            }
                        }
                    }
                },
            )
            .lagging_after(bound),
        ]);
        let started = Instant::now();
        let task = fixture.task("repairs");

        until("the task lagging", || task.state() == TaskState::Lagging).await;
        assert!(started.elapsed() > bound, "not before its bound");
        assert!(!fixture.serving(TICKETS).await);
        assert!(fixture.serving(USERS).await);
        assert_eq!(
            (task.failures.get(), task.restarts.get()),
            (0, 0),
            "not dead"
        );

        progress.notify_one();
        until("the task running", || task.state() == TaskState::Running).await;
        assert!(fixture.serving(TICKETS).await);
        assert!(jobs.shutdown(Duration::from_secs(1)).await.is_empty());
    }

    #[tokio::test]
    async fn two_tasks_of_one_name_or_a_service_health_does_not_report_are_refused() {
        let fixture = Fixture::new().await;
        let idle = |_: TaskContext| std::future::pending();
        let mut runner = JobRunner::new(fixture.health.clone(), fixture.metrics.clone());
        for _ in 0..2 {
            runner.add(Task::new(
                "twin",
                RestartPolicy::StopProcess,
                HealthEffect::None,
                idle,
            ));
        }
        let error = runner.start().expect_err("a duplicate name");
        assert_eq!(error.to_string(), "two background tasks are named `twin`");

        let mut runner = JobRunner::new(fixture.health.clone(), fixture.metrics.clone());
        runner.add(Task::new(
            "misdeclared",
            RestartPolicy::StopProcess,
            HealthEffect::Service("supportdesk.v1.NoSuchService"),
            idle,
        ));
        let error = runner.start().expect_err("an unknown service");
        assert!(error.to_string().contains("supportdesk.v1.NoSuchService"));
    }
}
