//! The supervisor of the started tasks: one `JoinSet` of runs, restarts after their backoff,
//! the health effects and state gauges of tasks that died or lag, and the orderly shutdown. It
//! runs as one task of its own; `runner.rs` starts it and talks to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::task::{Heartbeat, JobFailure, RestartPolicy, Task, TaskContext};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::{Metrics, TaskMetrics, TaskState};

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

pub(super) struct Supervisor {
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
    /// A supervisor of `tasks`, none started yet, each with its series in `metrics`.
    pub(super) fn new(
        tasks: Vec<Task>,
        metrics: &Metrics,
        health: Health,
        failure: watch::Sender<Option<JobFailure>>,
    ) -> Self {
        let slots = tasks
            .into_iter()
            .map(|task| Slot {
                metrics: metrics.job_runner().task(task.name),
                heartbeat: Heartbeat::new(),
                started: Instant::now(),
                deaths_in_a_row: 0,
                holding: false,
                lagging: false,
                task,
            })
            .collect();
        Self {
            slots,
            running: JoinSet::new(),
            runs: HashMap::new(),
            restarts: JoinSet::new(),
            health,
            stop_tasks: CancellationToken::new(),
            failure,
        }
    }

    pub(super) async fn run(
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
