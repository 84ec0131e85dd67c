//! The runner: starts every declared [`Task`] in one `JoinSet` it owns, and supervises it.
//!
//! A task that panics, returns an error, or returns while it was not told to stop has *died*:
//! the runner logs it at ERROR with the task's name and the cause, counts it, sets its state
//! gauge, and applies its [`HealthEffect`] until it runs again. Then its [`RestartPolicy`]
//! decides: start it again after an exponential backoff, or give up. Giving up (a
//! [`RestartPolicy::StopProcess`] task died, or a task died more times in a row than its policy
//! allows) is a [`JobFailure`], which [`RunningJobs::failed`] reports so that the process stops
//! with an error rather than running on without the task.
//!
//! A task that declares a lag bound ([`Task::lagging_after`]) and has not reported progress
//! through its [`Heartbeat`] within it is *lagging*: the gauge says so, its health effect applies,
//! and both are lifted at its next heartbeat. Lagging is not dying: nothing is restarted.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::{Id, JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::health::{Health, Held};
use crate::app::metrics::{Metrics, TaskMetrics, TaskState};

/// How often lag is checked at most: a bound is noticed within a quarter of itself, or this.
const MAX_LAG_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest lag check interval, however short a bound.
const MIN_LAG_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// How long the runner waits before starting a task again after it died, and how many times in
/// a row it does so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after a first death.
    pub initial: Duration,
    /// Each death in a row doubles the wait, up to this. A run that lasted at least this long
    /// counts as a recovery: the next death waits `initial` again and counts as a first.
    pub max: Duration,
    /// The restarts in a row after which the runner gives up: the next death is a
    /// [`JobFailure::GaveUp`].
    pub give_up_after: u32,
}

impl Backoff {
    /// The wait before restart number `in_a_row` (1 for the first death of a streak).
    fn delay(&self, in_a_row: u32) -> Duration {
        let doublings = in_a_row.saturating_sub(1).min(31);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

/// What the runner does when a task dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Start it again after a backoff; give up after the backoff's bound.
    Restart(Backoff),
    /// Give up at once: the process stops with an error.
    StopProcess,
}

/// What health reports while a task is not running (between its death and its restart, or for
/// good) or is lagging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthEffect {
    /// Nothing: the service serves without it (its loss shows in metrics and logs).
    None,
    /// This API service (its full name, tonic's `NamedService::NAME`) is NOT_SERVING.
    Service(&'static str),
    /// Each of these API services is NOT_SERVING.
    Services(&'static [&'static str]),
    /// The overall status and every API service are NOT_SERVING.
    Everything,
}

impl HealthEffect {
    fn held(self) -> Vec<Held> {
        match self {
            Self::None => Vec::new(),
            Self::Service(name) => vec![Held::Service(name)],
            Self::Services(names) => names.iter().copied().map(Held::Service).collect(),
            Self::Everything => vec![Held::Everything],
        }
    }
}

/// How a running task reports progress; clones share it. Only tasks that declare a lag bound
/// need to call it.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last beat.
    last: Arc<AtomicU64>,
}

impl Heartbeat {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Reports progress now.
    pub fn beat(&self) {
        let millis = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(millis, Ordering::Relaxed);
    }

    /// The time since the last beat.
    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(AtomicU64::load(&self.last, Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// What a task is given each time it starts.
#[derive(Clone, Debug)]
pub struct TaskContext {
    /// Cancelled at shutdown: the task returns `Ok(())` soon after.
    pub stop: CancellationToken,
    /// Where it reports progress, if it declared a lag bound.
    pub heartbeat: Heartbeat,
}

type TaskFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
type StartTask = Box<dyn Fn(TaskContext) -> TaskFuture + Send + Sync>;

/// A long-lived background task, as declared to the runner.
pub struct Task {
    name: &'static str,
    policy: RestartPolicy,
    health: HealthEffect,
    lag_bound: Option<Duration>,
    start: StartTask,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("health", &self.health)
            .field("lag_bound", &self.lag_bound)
            .finish_non_exhaustive()
    }
}

impl Task {
    /// `name` labels its metrics and log lines (lower case, words joined by `-`); `start` makes
    /// one run of it, and is called again for each restart. A run returns `Ok(())` once its
    /// context's `stop` is cancelled, and only then.
    pub fn new<F, Fut>(
        name: &'static str,
        policy: RestartPolicy,
        health: HealthEffect,
        start: F,
    ) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            name,
            policy,
            health,
            lag_bound: None,
            start: Box::new(move |context| Box::pin(start(context))),
        }
    }

    /// Declares the task lagging once it has not called [`Heartbeat::beat`] for `bound` (a
    /// run starts with a beat).
    pub fn lagging_after(mut self, bound: Duration) -> Self {
        self.lag_bound = Some(bound);
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// A task died for good: the process must stop.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobFailure {
    /// A task whose policy is [`RestartPolicy::StopProcess`] died.
    #[error("background task `{task}` died and is not restarted: {cause}")]
    Stopped { task: &'static str, cause: String },
    /// A task died more times in a row than its backoff allows.
    #[error(
        "background task `{task}` died {deaths} times in a row; giving up. The last time: {cause}"
    )]
    GaveUp {
        task: &'static str,
        deaths: u32,
        cause: String,
    },
    /// The runner itself stopped: nothing supervises the tasks any more.
    #[error("the job runner stopped: {cause}")]
    Runner { cause: String },
}

impl JobFailure {
    /// The task that died, unless the runner itself did.
    pub fn task(&self) -> Option<&'static str> {
        match self {
            Self::Stopped { task, .. } | Self::GaveUp { task, .. } => Some(task),
            Self::Runner { .. } => None,
        }
    }
}

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
        let slots = self
            .tasks
            .into_iter()
            .map(|task| Slot {
                metrics: self.metrics.job_runner().task(task.name),
                heartbeat: Heartbeat::new(),
                started: Instant::now(),
                deaths_in_a_row: 0,
                holding: false,
                lagging: false,
                task,
            })
            .collect();
        let (failure_sender, failure) = watch::channel(None);
        let (shutdown, shutdown_requested) = oneshot::channel();
        let supervisor = Supervisor {
            slots,
            running: JoinSet::new(),
            runs: HashMap::new(),
            restarts: JoinSet::new(),
            health: self.health,
            stop_tasks: CancellationToken::new(),
            failure: failure_sender,
        };
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

/// One declared task and where it stands.
struct Slot {
    task: Task,
    metrics: Arc<TaskMetrics>,
    heartbeat: Heartbeat,
    /// When its current (or last) run started.
    started: Instant,
    deaths_in_a_row: u32,
    /// Whether its health effect is applied now.
    holding: bool,
    lagging: bool,
}

struct Supervisor {
    slots: Vec<Slot>,
    running: JoinSet<anyhow::Result<()>>,
    /// Which slot each run in `running` belongs to.
    runs: HashMap<Id, usize>,
    /// Backoffs: each resolves to the slot to start again.
    restarts: JoinSet<usize>,
    health: Health,
    stop_tasks: CancellationToken,
    failure: watch::Sender<Option<JobFailure>>,
}

impl Supervisor {
    async fn run(
        mut self,
        lag_check: Option<Duration>,
        mut shutdown: oneshot::Receiver<Duration>,
    ) -> Vec<&'static str> {
        for index in 0..self.slots.len() {
            self.start(index).await;
        }
        let mut lag_ticks = lag_check.map(|every| {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        let within = loop {
            let lag_tick = async {
                match lag_ticks.as_mut() {
                    Some(ticks) => {
                        ticks.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                within = &mut shutdown => break within.unwrap_or(Duration::ZERO),
                Some(ended) = self.running.join_next_with_id() => self.ended(ended).await,
                Some(due) = self.restarts.join_next() => {
                    if let Ok(index) = due {
                        self.restart(index).await;
                    }
                }
                () = lag_tick => self.check_lag().await,
            }
        };
        self.stop(within).await
    }

    /// Starts a run of slot `index`.
    async fn start(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.heartbeat.beat();
        slot.started = Instant::now();
        slot.lagging = false;
        let run = (slot.task.start)(TaskContext {
            stop: self.stop_tasks.clone(),
            heartbeat: slot.heartbeat.clone(),
        });
        let handle = self.running.spawn(run);
        self.runs.insert(handle.id(), index);
        self.release(index).await;
        self.slots[index].metrics.set_state(TaskState::Running);
    }

    async fn restart(&mut self, index: usize) {
        let slot = &self.slots[index];
        slot.metrics.restarts.increment();
        tracing::warn!(
            task = slot.task.name,
            restart = slot.deaths_in_a_row,
            "restarting a background task"
        );
        self.start(index).await;
    }

    /// A run ended while nothing asked it to: the task died.
    async fn ended(&mut self, ended: Result<(Id, anyhow::Result<()>), JoinError>) {
        let (id, cause) = match ended {
            Ok((id, Ok(()))) => (id, "returned while not told to stop".to_owned()),
            Ok((id, Err(error))) => (id, format!("returned an error: {error:#}")),
            Err(error) => (error.id(), join_error_cause(error)),
        };
        let Some(index) = self.runs.remove(&id) else {
            return;
        };
        let slot = &mut self.slots[index];
        let name = slot.task.name;
        let ran_for = slot.started.elapsed();
        slot.metrics.failures.increment();
        tracing::error!(task = name, %cause, ?ran_for, "a background task died");
        let failure = match slot.task.policy {
            RestartPolicy::StopProcess => Some(JobFailure::Stopped { task: name, cause }),
            RestartPolicy::Restart(backoff) => {
                slot.deaths_in_a_row = if ran_for >= backoff.max {
                    1
                } else {
                    slot.deaths_in_a_row.saturating_add(1)
                };
                if slot.deaths_in_a_row > backoff.give_up_after {
                    Some(JobFailure::GaveUp {
                        task: name,
                        deaths: slot.deaths_in_a_row,
                        cause,
                    })
                } else {
                    let delay = backoff.delay(slot.deaths_in_a_row);
                    tracing::warn!(
                        task = name,
                        ?delay,
                        "a background task restarts after its backoff"
                    );
                    self.restarts.spawn(async move {
                        tokio::time::sleep(delay).await;
                        index
                    });
                    None
                }
            }
        };
        // Health first: once the state or the failure is reported, whoever reads it finds the
        // health effect already applied (and the process may be stopping).
        self.hold(index).await;
        let Some(failure) = failure else {
            self.slots[index].metrics.set_state(TaskState::Restarting);
            return;
        };
        self.slots[index].metrics.set_state(TaskState::Failed);
        tracing::error!(task = name, %failure, "a background task died for good: the process stops");
        self.failure.send_if_modified(|reported| {
            let first = reported.is_none();
            if first {
                *reported = Some(failure);
            }
            first
        });
    }

    /// Marks running tasks silent past their bound as lagging, and lagging ones that beat
    /// again as running.
    async fn check_lag(&mut self) {
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            let Some(bound) = slot.task.lag_bound else {
                continue;
            };
            let state = slot.metrics.state();
            if !matches!(state, TaskState::Running | TaskState::Lagging) {
                continue;
            }
            let silent = slot.heartbeat.silent_for();
            // Health before the gauge: whoever sees the state finds its health effect applied.
            if !slot.lagging && silent > bound {
                slot.lagging = true;
                tracing::warn!(
                    task = slot.task.name,
                    ?silent,
                    ?bound,
                    "a background task is lagging"
                );
                self.hold(index).await;
                self.slots[index].metrics.set_state(TaskState::Lagging);
            } else if slot.lagging && silent <= bound {
                slot.lagging = false;
                tracing::info!(task = slot.task.name, "a lagging background task caught up");
                self.release(index).await;
                self.slots[index].metrics.set_state(TaskState::Running);
            }
        }
    }

    async fn hold(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let held = slot.task.health.held();
        if !held.is_empty() && !slot.holding {
            slot.holding = true;
            for held in held {
                self.health.hold(slot.task.name, held).await;
            }
        }
    }

    async fn release(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if slot.holding {
            slot.holding = false;
            self.health.release(slot.task.name).await;
        }
    }

    /// Cancels every task and waits up to `within` for them; returns the names of the tasks
    /// that did not return `Ok(())` in time.
    async fn stop(mut self, within: Duration) -> Vec<&'static str> {
        self.stop_tasks.cancel();
        self.restarts.abort_all();
        for slot in &self.slots {
            if slot.metrics.state() == TaskState::Restarting {
                slot.metrics.set_state(TaskState::Stopped);
            }
        }
        let deadline = Instant::now() + within;
        let mut unclean = Vec::new();
        loop {
            let ended =
                match tokio::time::timeout_at(deadline, self.running.join_next_with_id()).await {
                    Ok(Some(ended)) => ended,
                    Ok(None) => break,
                    Err(_) => {
                        let mut late: Vec<&'static str> = self
                            .runs
                            .values()
                            .map(|index| self.slots[*index].task.name)
                            .collect();
                        late.sort_unstable();
                        tracing::error!(tasks = ?late, ?within,
                        "background tasks did not stop in time: aborted");
                        self.running.abort_all();
                        unclean.extend(late);
                        break;
                    }
                };
            let (id, cause) = match ended {
                Ok((id, Ok(()))) => (id, None),
                Ok((id, Err(error))) => (id, Some(format!("returned an error: {error:#}"))),
                Err(error) => (error.id(), Some(join_error_cause(error))),
            };
            let Some(index) = self.runs.remove(&id) else {
                continue;
            };
            let slot = &self.slots[index];
            match cause {
                None => slot.metrics.set_state(TaskState::Stopped),
                Some(cause) => {
                    slot.metrics.failures.increment();
                    slot.metrics.set_state(TaskState::Failed);
                    tracing::error!(task = slot.task.name, %cause,
                        "a background task failed while stopping");
                    unclean.push(slot.task.name);
                }
            }
        }
        unclean
    }
}

/// Why a run's task ended without returning: its panic's message, or its cancellation.
fn join_error_cause(error: JoinError) -> String {
    if !error.is_panic() {
        return "was cancelled".to_owned();
    }
    let payload = error.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    format!("panicked: {message}")
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

    use super::*;

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
