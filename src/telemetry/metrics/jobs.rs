//! Background work: each job runner task's state and counts, and each durable queue's depth
//! and oldest wait.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::registry::Registry;

use super::instruments::{Counter, Gauge, OneLabel, SecondsGauge, TwoLabels};

/// Where a background task of the job runner stands (`crate::jobs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Running, and reporting progress within its bound when it declares one.
    Running,
    /// Died; waiting out its backoff before the runner starts it again.
    Restarting,
    /// Running, but it has not reported progress within its declared bound.
    Lagging,
    /// Stopped at shutdown.
    Stopped,
    /// Died for good (no restart declared, or its restarts ran out): the process is stopping.
    Failed,
}

impl TaskState {
    /// Every state, in the order they are exported.
    pub const ALL: [Self; 5] = [
        Self::Running,
        Self::Restarting,
        Self::Lagging,
        Self::Stopped,
        Self::Failed,
    ];

    /// The `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Lagging => "lagging",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }

    fn index(self) -> u8 {
        match self {
            Self::Running => 0,
            Self::Restarting => 1,
            Self::Lagging => 2,
            Self::Stopped => 3,
            Self::Failed => 4,
        }
    }

    fn from_index(index: u8) -> Self {
        Self::ALL
            .into_iter()
            .find(|state| state.index() == index)
            .unwrap_or(Self::Failed)
    }
}

/// One background task's state gauge and counts. Cheap to share through its `Arc`.
#[derive(Debug)]
pub struct TaskMetrics {
    state: AtomicU8,
    /// The `state` series, in [`TaskState::ALL`]'s order: 1 for the current state.
    state_series: [Gauge; 5],
    /// Times the runner started the task again after it died.
    pub restarts: Counter,
    /// Times the task died: panicked, returned an error, or returned while not told to stop.
    pub failures: Counter,
}

impl TaskMetrics {
    pub fn state(&self) -> TaskState {
        TaskState::from_index(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, state: TaskState) {
        self.state.store(state.index(), Ordering::Relaxed);
        for (known, series) in TaskState::ALL.into_iter().zip(&self.state_series) {
            series.set(u64::from(known == state));
        }
    }
}

/// The job runner's tasks by name.
#[derive(Debug)]
pub struct JobRunnerMetrics {
    tasks: Mutex<BTreeMap<&'static str, Arc<TaskMetrics>>>,
    states: Family<TwoLabels, PromGauge<u64, AtomicU64>>,
    restarts: Family<OneLabel, PromCounter>,
    failures: Family<OneLabel, PromCounter>,
}

impl JobRunnerMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            tasks: Mutex::default(),
            states: Family::default(),
            restarts: Family::default(),
            failures: Family::default(),
        };
        registry.register(
            "supportdesk_job_runner_task_state",
            "The state of each background task: 1 for its current state, 0 for the others",
            metrics.states.clone(),
        );
        registry.register(
            "supportdesk_job_runner_task_restarts",
            "Times the job runner started a background task again after it died",
            metrics.restarts.clone(),
        );
        registry.register(
            "supportdesk_job_runner_task_failures",
            "Times a background task died: it panicked, returned an error, or returned while not told to stop",
            metrics.failures.clone(),
        );
        metrics
    }

    /// The series of task `name`, registered on first use (state `running`, counts at 0).
    pub fn task(&self, name: &'static str) -> Arc<TaskMetrics> {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name)
            .or_insert_with(|| {
                let task = TaskMetrics {
                    state: AtomicU8::new(TaskState::Running.index()),
                    state_series: TaskState::ALL.map(|state| {
                        Gauge(
                            self.states
                                .get_or_create_owned(&[("task", name), ("state", state.as_str())]),
                        )
                    }),
                    restarts: Counter(self.restarts.get_or_create_owned(&[("task", name)])),
                    failures: Counter(self.failures.get_or_create_owned(&[("task", name)])),
                };
                task.set_state(TaskState::Running);
                Arc::new(task)
            })
            .clone()
    }

    /// The series of task `name`, if it was registered.
    pub fn get(&self, name: &str) -> Option<Arc<TaskMetrics>> {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }
}

/// The queues of background work the queue sampler reads (`crate::jobs::queue_sampler`), by
/// the `queue` label of their series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueName {
    /// The payment provider's webhook events (`webhook_events`).
    Webhooks,
    /// Outgoing email notifications (`notifications`).
    Notifications,
    /// Long-running operations (`operations`).
    Operations,
    /// Pending charges and refunds awaiting the billing completer.
    Completer,
}

impl QueueName {
    /// Every queue, in the order of their series.
    pub const ALL: [Self; 4] = [
        Self::Webhooks,
        Self::Notifications,
        Self::Operations,
        Self::Completer,
    ];

    /// The `queue` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhooks => "webhooks",
            Self::Notifications => "notifications",
            Self::Operations => "operations",
            Self::Completer => "completer",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Webhooks => 0,
            Self::Notifications => 1,
            Self::Operations => 2,
            Self::Completer => 3,
        }
    }
}

/// Each queue's depth and the age of what has waited longest in it, as the queue sampler last
/// read them. Every series exists from the start, at 0.
#[derive(Debug)]
pub struct QueueGauges {
    depth: [Gauge; QueueName::ALL.len()],
    oldest_age: [SecondsGauge; QueueName::ALL.len()],
}

impl QueueGauges {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let depth = Family::<OneLabel, PromGauge<u64, AtomicU64>>::default();
        registry.register(
            "supportdesk_queue_depth",
            "Rows each background queue has still to finish (webhooks, notifications, operations, completer), due or not, as last sampled",
            depth.clone(),
        );
        let oldest_age = Family::<OneLabel, PromGauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "supportdesk_queue_oldest_age",
            "How long the row that has waited longest for a worker in each queue has been takeable (0 when none is), as last sampled",
            prometheus_client::registry::Unit::Seconds,
            oldest_age.clone(),
        );
        Self {
            depth: QueueName::ALL
                .map(|queue| Gauge(depth.get_or_create_owned(&[("queue", queue.as_str())]))),
            oldest_age: QueueName::ALL.map(|queue| {
                SecondsGauge(oldest_age.get_or_create_owned(&[("queue", queue.as_str())]))
            }),
        }
    }

    /// Records what the sampler read of `queue`.
    pub fn record(&self, queue: QueueName, depth: u64, oldest_age_seconds: f64) {
        self.depth[queue.index()].set(depth);
        self.oldest_age[queue.index()].set(oldest_age_seconds);
    }

    /// The depth last recorded for `queue`.
    pub fn depth(&self, queue: QueueName) -> u64 {
        self.depth[queue.index()].get()
    }

    /// The oldest age last recorded for `queue`, in seconds.
    pub fn oldest_age_seconds(&self, queue: QueueName) -> f64 {
        self.oldest_age[queue.index()].get()
    }
}
