//! Counters for operators, served as Prometheus text on `GET /metrics` from a listener of its
//! own (`METRICS_LISTEN_ADDR`; nothing is served when it is unset), never on the gRPC port.
//!
//! Each [`Metrics`] belongs to one running instance (no global recorder): the tests run many
//! instances in one process and read each one's exact counts. Counting is one relaxed atomic
//! add, so every event is counted exactly, however many requests race.
//!
//! The job runner's series are labelled by task: each task registers its [`TaskMetrics`] when
//! the runner starts, and a task's series appear from then on.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A monotonic count; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn increment(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        AtomicU64::load(&self.0, Ordering::Relaxed)
    }
}

/// What the rate limiter counts.
#[derive(Debug, Default)]
pub struct RateLimitCounters {
    /// Redis decided: within the quota.
    pub allowed: Counter,
    /// Redis decided: over the quota.
    pub refused: Counter,
    /// Redis could not decide (failed, too slow, or resting after a failure): the failure
    /// policy answered.
    pub undecided: Counter,
    /// Calls to Redis that failed (fewer than `undecided`: Redis rests after each).
    pub redis_failures: Counter,
    /// The failure policy: undecided requests are let through when true.
    pub fail_open: AtomicBool,
}

impl RateLimitCounters {
    /// Counts a decision Redis made.
    pub fn decided(&self, allowed: bool) {
        let counter = if allowed {
            &self.allowed
        } else {
            &self.refused
        };
        counter.increment();
    }
}

/// What the ticket cache counts.
#[derive(Debug, Default)]
pub struct TicketCacheCounters {
    /// Lookups Redis answered with an entry (a ticket or a tombstone).
    pub hits: Counter,
    /// Lookups Redis answered without a usable entry.
    pub misses: Counter,
    /// Reads and writes that failed in Redis.
    pub redis_failures: Counter,
}

impl TicketCacheCounters {
    /// Counts a lookup Redis answered.
    pub fn looked_up(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.increment();
    }
}

/// What password hashing counts: every argon2 verification that ran, by what it was checked
/// against. A login for an unknown email, a deactivated user or one without a password checks
/// the decoy, so its cost (one argon2 verification) is the cost of a wrong password.
#[derive(Debug, Default)]
pub struct PasswordCounters {
    /// Verifications against a user's stored hash.
    pub verified_against_stored: Counter,
    /// Verifications against the decoy hash.
    pub verified_against_decoy: Counter,
}

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
    /// Times the runner started the task again after it died.
    pub restarts: Counter,
    /// Times the task died: panicked, returned an error, or returned while not told to stop.
    pub failures: Counter,
}

impl TaskMetrics {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(TaskState::Running.index()),
            restarts: Counter::default(),
            failures: Counter::default(),
        }
    }

    pub fn state(&self) -> TaskState {
        TaskState::from_index(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, state: TaskState) {
        self.state.store(state.index(), Ordering::Relaxed);
    }
}

/// The job runner's tasks by name.
#[derive(Debug, Default)]
pub struct JobRunnerMetrics {
    tasks: Mutex<BTreeMap<&'static str, Arc<TaskMetrics>>>,
}

impl JobRunnerMetrics {
    /// The series of task `name`, registered on first use (state `running`, counts at 0).
    pub fn task(&self, name: &'static str) -> Arc<TaskMetrics> {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name)
            .or_insert_with(|| Arc::new(TaskMetrics::new()))
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

    fn snapshot(&self) -> Vec<(&'static str, Arc<TaskMetrics>)> {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, task)| (*name, task.clone()))
            .collect()
    }
}

/// What billing counts: its bulkhead and its completer.
#[derive(Debug, Default)]
pub struct BillingCounters {
    /// Charges and refunds refused at once because the provider's bulkhead was full.
    pub provider_busy: Counter,
    /// Attempts the completer made on pending charges and refunds.
    pub completer_attempts: Counter,
    /// Charges and refunds the completer marked for an operator's attention.
    pub marked_for_attention: Counter,
    /// Pending charges and refunds marked for attention, as the completer last counted them.
    pub needing_attention: AtomicU64,
    /// Reconciliation runs that completed, and that failed (the provider or the database gave
    /// up mid-run).
    pub reconciliation_runs_completed: Counter,
    pub reconciliation_runs_failed: Counter,
    /// Reconciliation findings recorded, by kind (in `FindingKind::ALL`'s order).
    pub reconciliation_findings: [Counter; FINDING_KINDS],
}

/// How many kinds of reconciliation finding there are.
const FINDING_KINDS: usize = crate::domain::FindingKind::ALL.len();

impl BillingCounters {
    /// The counter of findings of `kind`.
    pub fn reconciliation_finding(&self, kind: crate::domain::FindingKind) -> &Counter {
        let index = crate::domain::FindingKind::ALL
            .iter()
            .position(|known| *known == kind)
            .unwrap_or_default();
        &self.reconciliation_findings[index]
    }
}

/// What this instance's webhook workers did with events they could not apply.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    /// Events quarantined: their fields named charges that disagree (docs/webhooks.md).
    pub quarantined: Counter,
}

/// One instance's counters. Cheap to clone: clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct Metrics(Arc<Registry>);

#[derive(Debug, Default)]
struct Registry {
    rate_limit: RateLimitCounters,
    ticket_cache: TicketCacheCounters,
    passwords: PasswordCounters,
    job_runner: JobRunnerMetrics,
    billing: BillingCounters,
    webhooks: WebhookCounters,
}

impl Metrics {
    pub fn rate_limit(&self) -> &RateLimitCounters {
        &self.0.rate_limit
    }

    pub fn ticket_cache(&self) -> &TicketCacheCounters {
        &self.0.ticket_cache
    }

    pub fn passwords(&self) -> &PasswordCounters {
        &self.0.passwords
    }

    pub fn job_runner(&self) -> &JobRunnerMetrics {
        &self.0.job_runner
    }

    pub fn billing(&self) -> &BillingCounters {
        &self.0.billing
    }

    pub fn webhooks(&self) -> &WebhookCounters {
        &self.0.webhooks
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let limit = self.rate_limit();
        let cache = self.ticket_cache();
        let mut text = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(text, "{name}{labels} {value}");
            }
        };
        family(
            "supportdesk_rate_limit_decisions_total",
            "counter",
            "Rate-limit decisions by outcome; undecided: Redis could not decide and the failure policy answered.",
            &[
                (r#"{outcome="allowed"}"#, limit.allowed.get()),
                (r#"{outcome="refused"}"#, limit.refused.get()),
                (r#"{outcome="undecided"}"#, limit.undecided.get()),
            ],
        );
        family(
            "supportdesk_rate_limit_fail_open",
            "gauge",
            "1 when undecided requests are let through (RATE_LIMIT_ON_REDIS_FAILURE=open), 0 when refused.",
            &[("", u64::from(limit.fail_open.load(Ordering::Relaxed)))],
        );
        family(
            "supportdesk_rate_limit_redis_failures_total",
            "counter",
            "Rate-limit calls to Redis that failed or timed out.",
            &[("", limit.redis_failures.get())],
        );
        family(
            "supportdesk_ticket_cache_lookups_total",
            "counter",
            "Ticket cache lookups Redis answered, by outcome.",
            &[
                (r#"{outcome="hit"}"#, cache.hits.get()),
                (r#"{outcome="miss"}"#, cache.misses.get()),
            ],
        );
        family(
            "supportdesk_ticket_cache_redis_failures_total",
            "counter",
            "Ticket cache reads and writes that failed in Redis.",
            &[("", cache.redis_failures.get())],
        );
        let passwords = self.passwords();
        family(
            "supportdesk_password_verifications_total",
            "counter",
            "Argon2 password verifications run, by what the password was checked against (decoy: no usable stored hash, for an unknown email, a deactivated user or one without a password).",
            &[
                (
                    r#"{against="stored"}"#,
                    passwords.verified_against_stored.get(),
                ),
                (
                    r#"{against="decoy"}"#,
                    passwords.verified_against_decoy.get(),
                ),
            ],
        );
        let billing = self.billing();
        family(
            "supportdesk_provider_bulkhead_refusals_total",
            "counter",
            "Requests refused at once (PROVIDER_BUSY) because this instance had as many calls in flight to the provider as it allows.",
            &[(r#"{provider="payments"}"#, billing.provider_busy.get())],
        );
        family(
            "supportdesk_billing_completer_attempts_total",
            "counter",
            "Attempts the billing completer made to settle pending charges and refunds.",
            &[("", billing.completer_attempts.get())],
        );
        family(
            "supportdesk_billing_marked_for_attention_total",
            "counter",
            "Pending charges and refunds the completer could not settle in time and marked for an operator.",
            &[("", billing.marked_for_attention.get())],
        );
        family(
            "supportdesk_billing_needing_attention",
            "gauge",
            "Pending charges and refunds marked for an operator's attention, as the completer last counted them.",
            &[("", billing.needing_attention.load(Ordering::Relaxed))],
        );
        family(
            "supportdesk_webhook_events_quarantined_total",
            "counter",
            "Webhook events applied to no charge and filed under no account because their fields named charges that disagree.",
            &[("", self.webhooks().quarantined.get())],
        );
        family(
            "supportdesk_billing_reconciliation_runs_total",
            "counter",
            "Reconciliation runs against the provider's ledger, by outcome.",
            &[
                (
                    r#"{outcome="completed"}"#,
                    billing.reconciliation_runs_completed.get(),
                ),
                (
                    r#"{outcome="failed"}"#,
                    billing.reconciliation_runs_failed.get(),
                ),
            ],
        );
        let kinds: Vec<(String, u64)> = crate::domain::FindingKind::ALL
            .into_iter()
            .map(|kind| {
                (
                    format!(r#"{{kind="{kind}"}}"#),
                    billing.reconciliation_finding(kind).get(),
                )
            })
            .collect();
        let kinds: Vec<(&str, u64)> = kinds
            .iter()
            .map(|(labels, value)| (labels.as_str(), *value))
            .collect();
        family(
            "supportdesk_billing_reconciliation_findings_total",
            "counter",
            "Differences reconciliation found between the service and the provider's ledger, by kind (repaired or reported).",
            &kinds,
        );
        let tasks = self.job_runner().snapshot();
        if !tasks.is_empty() {
            let mut states = Vec::new();
            let mut restarts = Vec::new();
            let mut failures = Vec::new();
            for (name, task) in &tasks {
                let name = label_value(name);
                let current = task.state();
                for state in TaskState::ALL {
                    states.push((
                        format!(r#"{{task="{name}",state="{}"}}"#, state.as_str()),
                        u64::from(state == current),
                    ));
                }
                restarts.push((format!(r#"{{task="{name}"}}"#), task.restarts.get()));
                failures.push((format!(r#"{{task="{name}"}}"#), task.failures.get()));
            }
            family(
                "supportdesk_job_runner_task_state",
                "gauge",
                "The state of each background task: 1 for its current state, 0 for the others.",
                &as_samples(&states),
            );
            family(
                "supportdesk_job_runner_task_restarts_total",
                "counter",
                "Times the job runner started a background task again after it died.",
                &as_samples(&restarts),
            );
            family(
                "supportdesk_job_runner_task_failures_total",
                "counter",
                "Times a background task died: it panicked, returned an error, or returned while not told to stop.",
                &as_samples(&failures),
            );
        }
        // Rendered on the runtime that serves /metrics: the service's own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let workers = u64::try_from(runtime.metrics().num_workers()).unwrap_or(u64::MAX);
            family(
                "supportdesk_runtime_workers",
                "gauge",
                "Worker threads of the async runtime (WORKER_THREADS; unset, one per core).",
                &[("", workers)],
            );
        }
        text
    }
}

/// Samples with owned labels, as the renderer takes them.
fn as_samples(samples: &[(String, u64)]) -> Vec<(&str, u64)> {
    samples
        .iter()
        .map(|(labels, value)| (labels.as_str(), *value))
        .collect()
}

/// `value` escaped as a label value of the text format (backslash, double quote, newline).
fn label_value(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// The bound metrics listener, before it serves.
#[derive(Debug)]
pub struct MetricsEndpoint {
    listener: TcpListener,
}

impl MetricsEndpoint {
    /// Binds `address` (port 0 picks a free port), or nothing when metrics are off.
    pub async fn bind(address: Option<SocketAddr>) -> anyhow::Result<Option<Self>> {
        let Some(address) = address else {
            return Ok(None);
        };
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for metrics on {address}"))?;
        Ok(Some(Self { listener }))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers `GET /metrics` with `metrics` until `stop`. Borrows the listener, so that the job
    /// runner can serve it again after a restart.
    pub async fn serve(&self, metrics: Metrics, stop: CancellationToken) {
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "metrics listener: accept failed");
                        continue;
                    }
                },
            };
            let metrics = metrics.clone();
            let answer = service_fn(move |request| {
                let response = respond(&metrics, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), answer);
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "metrics connection ended with an error");
                }
            });
        }
    }
}

fn respond<B>(metrics: &Metrics, request: &Request<B>) -> Response<Full<Bytes>> {
    let (status, content_type, body) =
        if request.method() == Method::GET && request.uri().path() == "/metrics" {
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics.render(),
            )
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "only GET /metrics is served here\n".to_owned(),
            )
        };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_typed_and_each_count_appears_once() {
        let metrics = Metrics::default();
        metrics.rate_limit().allowed.increment();
        metrics.rate_limit().allowed.increment();
        metrics.ticket_cache().misses.increment();
        let text = metrics.render();
        assert!(text.contains("supportdesk_rate_limit_decisions_total{outcome=\"allowed\"} 2\n"));
        assert!(text.contains("supportdesk_ticket_cache_lookups_total{outcome=\"miss\"} 1\n"));
        assert!(text.contains("supportdesk_rate_limit_fail_open 0\n"));
        assert!(
            !text.contains("supportdesk_job_runner"),
            "no task series before the runner registers one"
        );
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE line"
            );
        }
    }

    #[test]
    fn a_task_has_one_state_sample_per_state_with_one_set_and_its_counts() {
        let metrics = Metrics::default();
        let task = metrics.job_runner().task("webhook-workers");
        task.set_state(TaskState::Restarting);
        task.failures.increment();
        task.failures.increment();
        task.restarts.increment();
        let text = metrics.render();
        let states: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("supportdesk_job_runner_task_state{"))
            .collect();
        assert_eq!(
            states,
            [
                r#"supportdesk_job_runner_task_state{task="webhook-workers",state="running"} 0"#,
                r#"supportdesk_job_runner_task_state{task="webhook-workers",state="restarting"} 1"#,
                r#"supportdesk_job_runner_task_state{task="webhook-workers",state="lagging"} 0"#,
                r#"supportdesk_job_runner_task_state{task="webhook-workers",state="stopped"} 0"#,
                r#"supportdesk_job_runner_task_state{task="webhook-workers",state="failed"} 0"#,
            ]
        );
        assert!(
            text.contains(
                "supportdesk_job_runner_task_restarts_total{task=\"webhook-workers\"} 1\n"
            )
        );
        assert!(
            text.contains(
                "supportdesk_job_runner_task_failures_total{task=\"webhook-workers\"} 2\n"
            )
        );
        assert!(text.contains("# TYPE supportdesk_job_runner_task_state gauge\n"));
        assert!(text.contains("# TYPE supportdesk_job_runner_task_restarts_total counter\n"));
    }
}
