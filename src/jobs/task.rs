//! What a background task declares: its name, how it is started, its [`RestartPolicy`] with its
//! [`Backoff`], its [`HealthEffect`] while it is not running, and the [`Heartbeat`] through which
//! it reports progress within its lag bound; and the [`JobFailure`] it ends in when it dies for
//! good. The runner and its supervisor both build on these, and this file on neither of them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::telemetry::health::Held;

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
    pub(super) fn delay(&self, in_a_row: u32) -> Duration {
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
    pub(super) fn held(self) -> Vec<Held> {
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
    pub(super) epoch: Instant,
    /// Milliseconds from `epoch` to the last beat.
    pub(super) last: Arc<AtomicU64>,
}

impl Heartbeat {
    pub(super) fn new() -> Self {
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
    pub(super) fn silent_for(&self) -> Duration {
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
    pub(super) name: &'static str,
    pub(super) policy: RestartPolicy,
    pub(super) health: HealthEffect,
    pub(super) lag_bound: Option<Duration>,
    pub(super) start: StartTask,
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
    /// A task whose policy is [`RestartPolicy::StopProcess`](crate::jobs::RestartPolicy::StopProcess) died.
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
