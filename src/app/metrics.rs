//! Counters for operators, served as OpenMetrics text (which Prometheus scrapes) on
//! `GET /metrics` from a listener of its own (`METRICS_LISTEN_ADDR`; nothing is served when it
//! is unset), never on the gRPC port. The registry and the encoding are `prometheus-client`'s.
//!
//! Each [`Metrics`] belongs to one running instance (no global recorder): the tests run many
//! instances in one process and read each one's exact counts. Counting is one relaxed atomic
//! add, so every event is counted exactly, however many requests race.
//!
//! Every RPC is counted by method and gRPC code, and timed in a histogram by method
//! ([`RpcMetrics`], recorded by the middleware). The job runner's series are labelled by task:
//! each task registers its [`TaskMetrics`] when the runner starts, and a task's series appear
//! from then on.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::breaker::{BreakerState, CallResult, CircuitBreaker};
use crate::domain::{FindingKind, NotificationKind};

/// The content type of `GET /metrics`.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label set of one label, and of two.
type OneLabel = [(&'static str, &'static str); 1];
type TwoLabels = [(&'static str, &'static str); 2];

/// A monotonic count; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Counter(PromCounter);

impl Counter {
    pub fn increment(&self) {
        self.0.inc();
    }

    /// Adds `amount` (bytes, for a count of bytes).
    pub fn add(&self, amount: u64) {
        self.0.inc_by(amount);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Gauge(PromGauge<u64, AtomicU64>);

impl Gauge {
    pub fn set(&self, value: u64) {
        self.0.set(value);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }

    /// Raises the value to `value` when it is higher: a gauge of the most ever seen.
    pub fn raise_to(&self, value: u64) {
        self.0
            .inner()
            .fetch_max(value, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Registers one family of counters labelled `label`, one series per value (all exported from
/// the start, at 0), and returns their counters in the order of `values`.
fn counters_by<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<OneLabel, PromCounter>::default();
    registry.register(name, help, family.clone());
    values.map(|value| Counter(family.get_or_create_owned(&[(label, value)])))
}

/// A value in seconds, with a fraction; clones share it.
#[derive(Clone, Debug, Default)]
pub struct SecondsGauge(PromGauge<f64, AtomicU64>);

impl SecondsGauge {
    pub fn set(&self, seconds: f64) {
        self.0.set(seconds);
    }

    pub fn get(&self) -> f64 {
        self.0.get()
    }
}

/// Registers one unlabelled counter.
fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.0.clone());
    counter
}

/// Registers one unlabelled gauge.
fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.0.clone());
    gauge
}

/// What the rate limiter counts.
#[derive(Debug)]
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
    /// The failure policy: 1 when undecided requests are let through.
    pub fail_open: Gauge,
}

impl RateLimitCounters {
    fn register(registry: &mut Registry) -> Self {
        let [allowed, refused, undecided] = counters_by(
            registry,
            "supportdesk_rate_limit_decisions",
            "Rate-limit decisions by outcome; undecided: Redis could not decide and the failure policy answered",
            "outcome",
            ["allowed", "refused", "undecided"],
        );
        Self {
            allowed,
            refused,
            undecided,
            fail_open: gauge(
                registry,
                "supportdesk_rate_limit_fail_open",
                "1 when undecided requests are let through (RATE_LIMIT_ON_REDIS_FAILURE=open), 0 when refused",
            ),
            redis_failures: counter(
                registry,
                "supportdesk_rate_limit_redis_failures",
                "Rate-limit calls to Redis that failed or timed out",
            ),
        }
    }

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
#[derive(Debug)]
pub struct TicketCacheCounters {
    /// Lookups Redis answered with an entry (a ticket or a tombstone).
    pub hits: Counter,
    /// Lookups Redis answered without a usable entry.
    pub misses: Counter,
    /// Reads and writes that failed in Redis.
    pub redis_failures: Counter,
}

impl TicketCacheCounters {
    fn register(registry: &mut Registry) -> Self {
        let [hits, misses] = counters_by(
            registry,
            "supportdesk_ticket_cache_lookups",
            "Ticket cache lookups Redis answered, by outcome",
            "outcome",
            ["hit", "miss"],
        );
        Self {
            hits,
            misses,
            redis_failures: counter(
                registry,
                "supportdesk_ticket_cache_redis_failures",
                "Ticket cache reads and writes that failed in Redis",
            ),
        }
    }

    /// Counts a lookup Redis answered.
    pub fn looked_up(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.increment();
    }
}

/// What password hashing counts: every argon2 verification that ran, by what it was checked
/// against. A login for an unknown email, a deactivated user or one without a password checks
/// the decoy, so its cost (one argon2 verification) is the cost of a wrong password.
#[derive(Debug)]
pub struct PasswordCounters {
    /// Verifications against a user's stored hash.
    pub verified_against_stored: Counter,
    /// Verifications against the decoy hash.
    pub verified_against_decoy: Counter,
}

impl PasswordCounters {
    fn register(registry: &mut Registry) -> Self {
        let [verified_against_stored, verified_against_decoy] = counters_by(
            registry,
            "supportdesk_password_verifications",
            "Argon2 password verifications run, by what the password was checked against (decoy: no usable stored hash, for an unknown email, a deactivated user or one without a password)",
            "against",
            ["stored", "decoy"],
        );
        Self {
            verified_against_stored,
            verified_against_decoy,
        }
    }
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
    fn register(registry: &mut Registry) -> Self {
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

/// What billing counts: its bulkhead, its completer and reconciliation.
#[derive(Debug)]
pub struct BillingCounters {
    /// Charges and refunds refused at once because the provider's bulkhead was full.
    pub provider_busy: Counter,
    /// Attempts the completer made on pending charges and refunds.
    pub completer_attempts: Counter,
    /// Charges and refunds the completer marked for an operator's attention.
    pub marked_for_attention: Counter,
    /// Pending charges and refunds marked for attention, as the completer last counted them.
    pub needing_attention: Gauge,
    /// Reconciliation runs that completed, and that failed (the provider or the database gave
    /// up mid-run).
    pub reconciliation_runs_completed: Counter,
    pub reconciliation_runs_failed: Counter,
    /// Reconciliation findings recorded, by kind (in `FindingKind::ALL`'s order).
    reconciliation_findings: [Counter; FindingKind::ALL.len()],
}

impl BillingCounters {
    fn register(registry: &mut Registry) -> Self {
        let [provider_busy] = counters_by(
            registry,
            "supportdesk_provider_bulkhead_refusals",
            "Requests refused at once (PROVIDER_BUSY) because this instance had as many calls in flight to the provider as it allows",
            "provider",
            ["payments"],
        );
        let [reconciliation_runs_completed, reconciliation_runs_failed] = counters_by(
            registry,
            "supportdesk_billing_reconciliation_runs",
            "Reconciliation runs against the provider's ledger, by outcome",
            "outcome",
            ["completed", "failed"],
        );
        Self {
            provider_busy,
            completer_attempts: counter(
                registry,
                "supportdesk_billing_completer_attempts",
                "Attempts the billing completer made to settle pending charges and refunds",
            ),
            marked_for_attention: counter(
                registry,
                "supportdesk_billing_marked_for_attention",
                "Pending charges and refunds the completer could not settle in time and marked for an operator",
            ),
            needing_attention: gauge(
                registry,
                "supportdesk_billing_needing_attention",
                "Pending charges and refunds marked for an operator's attention, as the completer last counted them",
            ),
            reconciliation_runs_completed,
            reconciliation_runs_failed,
            reconciliation_findings: counters_by(
                registry,
                "supportdesk_billing_reconciliation_findings",
                "Differences reconciliation found between the service and the provider's ledger, by kind (repaired or reported)",
                "kind",
                FindingKind::ALL.map(FindingKind::as_str),
            ),
        }
    }

    /// The counter of findings of `kind`.
    pub fn reconciliation_finding(&self, kind: FindingKind) -> &Counter {
        let index = FindingKind::ALL
            .iter()
            .position(|known| *known == kind)
            .unwrap_or_default();
        &self.reconciliation_findings[index]
    }
}

/// What this instance's webhook workers did with events they could not apply.
#[derive(Debug)]
pub struct WebhookCounters {
    /// Events quarantined: their fields named charges that disagree (docs/webhooks.md).
    pub quarantined: Counter,
}

impl WebhookCounters {
    fn register(registry: &mut Registry) -> Self {
        Self {
            quarantined: counter(
                registry,
                "supportdesk_webhook_events_quarantined",
                "Webhook events applied to no charge and filed under no account because their fields named charges that disagree",
            ),
        }
    }
}

/// What attachments did (docs/attachments.md): uploads by outcome and their bytes, objects
/// deleted from storage.
#[derive(Debug)]
pub struct AttachmentCounters {
    /// Uploads started (`started`), completed (`completed`), refused at completion because the
    /// object differed (`mismatch`) or was missing (`missing`).
    pub uploads: [Counter; 4],
    /// Bytes of the objects read back at completion: completed, refused.
    pub bytes: [Counter; 2],
    /// Objects deleted from storage by the sweeper, and deletions that failed (retried later).
    pub deletions: [Counter; 2],
    /// Uploads never completed that the sweeper removed.
    pub abandoned: Counter,
    /// Messages UploadAttachment received: each carries a piece of its file.
    pub direct_messages: Counter,
    /// The largest piece of a direct upload's file held at once, in bytes, since start.
    pub direct_largest_piece: Gauge,
    /// The most pieces one direct upload held at once (from their arrival until the store's
    /// connection let go of them), since start.
    pub direct_pieces_held: Gauge,
    /// The most bytes of its file one direct upload held at once, since start.
    pub direct_bytes_held: Gauge,
}

/// Indexes of [`AttachmentCounters::uploads`].
pub const UPLOAD_STARTED: usize = 0;
pub const UPLOAD_COMPLETED: usize = 1;
pub const UPLOAD_MISMATCH: usize = 2;
pub const UPLOAD_MISSING: usize = 3;

impl AttachmentCounters {
    fn register(registry: &mut Registry) -> Self {
        Self {
            uploads: counters_by(
                registry,
                "supportdesk_attachment_uploads",
                "Attachment uploads by outcome: started, completed, refused at completion (mismatch, missing).",
                "outcome",
                ["started", "completed", "mismatch", "missing"],
            ),
            bytes: counters_by(
                registry,
                "supportdesk_attachment_upload_bytes",
                "Bytes of uploaded objects read back at completion, by outcome (completed, refused).",
                "outcome",
                ["completed", "refused"],
            ),
            deletions: counters_by(
                registry,
                "supportdesk_attachment_object_deletions",
                "Objects the sweeper deleted from storage (deleted), or failed to (failed; retried).",
                "outcome",
                ["deleted", "failed"],
            ),
            abandoned: counter(
                registry,
                "supportdesk_attachment_abandoned_uploads",
                "Uploads never completed that the sweeper removed with their objects.",
            ),
            direct_messages: counter(
                registry,
                "supportdesk_attachment_direct_upload_messages",
                "Messages UploadAttachment received, each carrying a piece of its file.",
            ),
            direct_largest_piece: gauge(
                registry,
                "supportdesk_attachment_direct_upload_largest_piece_bytes",
                "The largest piece of a direct upload's file held, in bytes, since start.",
            ),
            direct_pieces_held: gauge(
                registry,
                "supportdesk_attachment_direct_upload_pieces_held_max",
                "The most pieces of its file one direct upload held at once, since start.",
            ),
            direct_bytes_held: gauge(
                registry,
                "supportdesk_attachment_direct_upload_bytes_held_max",
                "The most bytes of its file one direct upload held at once, since start.",
            ),
        }
    }
}

/// What the notification workers did, by the notification's kind (the queue itself is in
/// [`QueueGauges`]). A kind's series appear with its first event.
#[derive(Debug)]
pub struct NotificationCounters {
    sent: Family<OneLabel, PromCounter>,
    failed: Family<TwoLabels, PromCounter>,
}

impl NotificationCounters {
    fn register(registry: &mut Registry) -> Self {
        let counters = Self {
            sent: Family::default(),
            failed: Family::default(),
        };
        registry.register(
            "supportdesk_notifications_sent",
            "Notifications the email provider accepted, by kind.",
            counters.sent.clone(),
        );
        registry.register(
            "supportdesk_notifications_failed",
            "Notification attempts that did not send, by kind and outcome: retry (due again later), permanent (dead: refused for good, or its last attempt).",
            counters.failed.clone(),
        );
        counters
    }

    /// The `kind` label of a stored kind (`unknown` for one this build does not know).
    fn kind_label(kind: &str) -> &'static str {
        NotificationKind::parse(kind).map_or("unknown", NotificationKind::as_str)
    }

    /// Counts a notification of `kind` the provider accepted.
    pub fn sent(&self, kind: &str) {
        self.sent
            .get_or_create(&[("kind", Self::kind_label(kind))])
            .inc();
    }

    /// Counts an attempt of `kind` that did not send: `dead` when the notification is dead now,
    /// else it is due again later.
    pub fn failed(&self, kind: &str, dead: bool) {
        let outcome = if dead { "permanent" } else { "retry" };
        self.failed
            .get_or_create(&[("kind", Self::kind_label(kind)), ("outcome", outcome)])
            .inc();
    }
}

/// The time of each Redis call made on a request's behalf, by `purpose`: the admission script
/// (`admission.admit`, `admission.peek`) and the ticket cache (`ticket_cache.get`,
/// `ticket_cache.store`). Each purpose's histogram is a field: recording one costs no label
/// hashing on the hot path (docs/performance.md, "Per-RPC metrics").
#[derive(Debug)]
pub struct RedisTimings {
    pub admit: Timing,
    pub peek: Timing,
    pub cache_get: Timing,
    pub cache_store: Timing,
}

/// A Redis call's upper bounds: 100 µs doubling to about 0.8 s (14 buckets and +Inf), past the
/// 1 s the service waits for Redis at most.
fn redis_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 14))
}

impl RedisTimings {
    fn register(registry: &mut Registry) -> Self {
        let family =
            Family::<OneLabel, Histogram, fn() -> Histogram>::new_with_constructor(redis_histogram);
        registry.register_with_unit(
            "supportdesk_redis_call_duration",
            "Time from sending a Redis call to its answer (or error), by purpose: admission.admit, admission.peek (the admission script), ticket_cache.get, ticket_cache.store",
            prometheus_client::registry::Unit::Seconds,
            family.clone(),
        );
        let [admit, peek, cache_get, cache_store] = [
            "admission.admit",
            "admission.peek",
            "ticket_cache.get",
            "ticket_cache.store",
        ]
        .map(|purpose| Timing(family.get_or_create_owned(&[("purpose", purpose)])));
        Self {
            admit,
            peek,
            cache_get,
            cache_store,
        }
    }
}

/// One latency histogram; clones share it.
#[derive(Clone, Debug)]
pub struct Timing(Histogram);

impl Timing {
    /// Records one event that took `took`.
    pub fn observe(&self, took: Duration) {
        self.0.observe(took.as_secs_f64());
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
    fn register(registry: &mut Registry) -> Self {
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

/// The state of each outside provider's circuit breaker (`provider`: `payments`, `email`,
/// `storage`), read when `/metrics` is scraped: 1 for the current state, 0 for the others; and
/// the latency of each call to the provider, by how it ended, timed through the breaker every
/// call holds ([`CircuitBreaker::timed`]).
#[derive(Debug)]
pub struct BreakerGauges {
    states: Family<TwoLabels, PromGauge<u64, AtomicU64>>,
    latency: Family<TwoLabels, Histogram, fn() -> Histogram>,
    tracked: Mutex<Vec<(CircuitBreaker, [Gauge; BreakerState::ALL.len()])>>,
}

/// A provider call's upper bounds: 5 ms doubling to about 41 s (14 buckets and +Inf), past the
/// longest provider timeout.
fn provider_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl BreakerGauges {
    fn register(registry: &mut Registry) -> Self {
        let gauges = Self {
            states: Family::default(),
            latency: Family::new_with_constructor(provider_histogram),
            tracked: Mutex::default(),
        };
        registry.register(
            "supportdesk_provider_breaker_state",
            "The circuit breaker of each outside provider: 1 for its current state (closed, open, half_open), 0 for the others.",
            gauges.states.clone(),
        );
        registry.register_with_unit(
            "supportdesk_provider_call_duration",
            "Time of each call (each attempt) to an outside provider, by provider and outcome (ok, refused, failed, no_answer)",
            prometheus_client::registry::Unit::Seconds,
            gauges.latency.clone(),
        );
        gauges
    }

    /// Exports `breaker`'s state under its provider's name from now on, and times the calls
    /// made through it (every outcome's series exported from now on, empty).
    pub fn track(&self, breaker: &CircuitBreaker) {
        let provider = breaker.provider();
        let timings = CallResult::ALL.map(|result| {
            self.latency
                .get_or_create_owned(&[("provider", provider), ("outcome", result.as_str())])
        });
        breaker.time_calls_with(Arc::new(move |result, took| {
            let index = CallResult::ALL
                .iter()
                .position(|known| *known == result)
                .unwrap_or_default();
            timings[index].observe(took.as_secs_f64());
        }));
        let series = BreakerState::ALL.map(|state| {
            Gauge(
                self.states
                    .get_or_create_owned(&[("provider", provider), ("state", state.as_str())]),
            )
        });
        self.tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((breaker.clone(), series));
        self.refresh();
    }

    /// Reads every tracked breaker's state into its series.
    fn refresh(&self) {
        for (breaker, series) in self
            .tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let now = breaker.state();
            for (state, gauge) in BreakerState::ALL.into_iter().zip(series) {
                gauge.set(u64::from(state == now));
            }
        }
    }
}

/// The gRPC code names, by number, as the `code` label shows them.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Where `UNKNOWN` is in [`GRPC_CODES`]: what a status outside them is counted as.
const UNKNOWN_CODE_INDEX: usize = 2;

/// The name of gRPC code `code` (`OK`, `NOT_FOUND`, ...), `UNKNOWN` for a number that is none.
pub fn grpc_code_name(code: u16) -> &'static str {
    GRPC_CODES
        .get(usize::from(code))
        .copied()
        .unwrap_or(GRPC_CODES[UNKNOWN_CODE_INDEX])
}

/// The latency histogram's upper bounds: 1 ms doubling to about 16 s (15 buckets and +Inf).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every RPC answered, by method and gRPC code, and how long each took, by method. The method is
/// the declared path (`/supportdesk.v1.TicketService/GetTicket`), `unknown` for a path the
/// method table does not know, so the series are bounded by the API.
///
/// A declared RPC's series are found by its index in the method table, in an array filled on
/// first use: counting costs no hashing of labels on the hot path.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    requests: Family<TwoLabels, PromCounter>,
    latency: Family<OneLabel, Histogram, fn() -> Histogram>,
    by_index: Arc<[OnceLock<MethodSeries>; MAX_INDEXED_METHODS]>,
}

/// How many RPCs get array slots; any beyond (none today) are found by their labels.
const MAX_INDEXED_METHODS: usize = 256;

/// One RPC's series: its latency histogram and its counter of each code used so far.
#[derive(Debug)]
struct MethodSeries {
    latency: Histogram,
    codes: [OnceLock<PromCounter>; GRPC_CODES.len()],
}

/// The RPC an answer is counted under: its path and, for a declared RPC, its index in the method
/// table.
#[derive(Clone, Copy, Debug)]
pub struct RpcName {
    pub path: &'static str,
    pub index: Option<usize>,
}

impl RpcMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            by_index: Arc::new(std::array::from_fn(|_| OnceLock::new())),
        };
        registry.register(
            "supportdesk_rpc_requests",
            "RPCs answered, by method and gRPC code (refusals of the middleware included)",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "supportdesk_rpc_duration",
            "Time from receiving an RPC to sending its status, by method",
            prometheus_client::registry::Unit::Seconds,
            metrics.latency.clone(),
        );
        metrics
    }

    /// Counts an RPC answered with gRPC code `code` after `took`.
    pub fn answered(&self, rpc: RpcName, code: u16, took: Duration) {
        let code = Some(usize::from(code))
            .filter(|code| *code < GRPC_CODES.len())
            .unwrap_or(UNKNOWN_CODE_INDEX);
        let method = rpc.path;
        let Some(slot) = rpc.index.and_then(|index| self.by_index.get(index)) else {
            self.requests
                .get_or_create(&[("method", method), ("code", GRPC_CODES[code])])
                .inc();
            self.latency
                .get_or_create(&[("method", method)])
                .observe(took.as_secs_f64());
            return;
        };
        let series = slot.get_or_init(|| MethodSeries {
            latency: self.latency.get_or_create_owned(&[("method", method)]),
            codes: std::array::from_fn(|_| OnceLock::new()),
        });
        series.codes[code]
            .get_or_init(|| {
                self.requests
                    .get_or_create_owned(&[("method", method), ("code", GRPC_CODES[code])])
            })
            .inc();
        series.latency.observe(took.as_secs_f64());
    }

    /// How many RPCs of `method` were answered with the code named `code`.
    pub fn count(&self, method: &'static str, code: &'static str) -> u64 {
        self.requests
            .get(&[("method", method), ("code", code)])
            .map_or(0, |counter| counter.get())
    }
}

/// One instance's counters. Cheap to clone: clones share the counts.
#[derive(Clone, Debug)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    rate_limit: RateLimitCounters,
    ticket_cache: TicketCacheCounters,
    passwords: PasswordCounters,
    job_runner: JobRunnerMetrics,
    billing: BillingCounters,
    webhooks: WebhookCounters,
    attachments: AttachmentCounters,
    notifications: NotificationCounters,
    queues: QueueGauges,
    redis_calls: RedisTimings,
    breakers: BreakerGauges,
    rpcs: RpcMetrics,
    runtime_workers: Gauge,
    saturation: SaturationMetrics,
    replica: ReplicaMetrics,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let rpcs = RpcMetrics::register(&mut registry);
        let rate_limit = RateLimitCounters::register(&mut registry);
        let ticket_cache = TicketCacheCounters::register(&mut registry);
        let passwords = PasswordCounters::register(&mut registry);
        let billing = BillingCounters::register(&mut registry);
        let webhooks = WebhookCounters::register(&mut registry);
        let attachments = AttachmentCounters::register(&mut registry);
        let notifications = NotificationCounters::register(&mut registry);
        let queues = QueueGauges::register(&mut registry);
        let redis_calls = RedisTimings::register(&mut registry);
        let breakers = BreakerGauges::register(&mut registry);
        let job_runner = JobRunnerMetrics::register(&mut registry);
        let runtime_workers = gauge(
            &mut registry,
            "supportdesk_runtime_workers",
            "Worker threads of the async runtime (WORKER_THREADS; unset, one per core)",
        );
        let saturation = SaturationMetrics::register(&mut registry);
        let replica = ReplicaMetrics::register(&mut registry);
        Self(Arc::new(Inner {
            replica,
            saturation,
            rate_limit,
            ticket_cache,
            passwords,
            job_runner,
            billing,
            webhooks,
            attachments,
            notifications,
            queues,
            redis_calls,
            breakers,
            rpcs,
            runtime_workers,
            registry,
        }))
    }
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

    pub fn attachments(&self) -> &AttachmentCounters {
        &self.0.attachments
    }

    pub fn rpcs(&self) -> &RpcMetrics {
        &self.0.rpcs
    }

    pub fn saturation(&self) -> &SaturationMetrics {
        &self.0.saturation
    }

    pub fn notifications(&self) -> &NotificationCounters {
        &self.0.notifications
    }

    pub fn redis_calls(&self) -> &RedisTimings {
        &self.0.redis_calls
    }

    pub fn queues(&self) -> &QueueGauges {
        &self.0.queues
    }

    pub fn breakers(&self) -> &BreakerGauges {
        &self.0.breakers
    }

    pub fn replica(&self) -> &ReplicaMetrics {
        &self.0.replica
    }

    /// The OpenMetrics text of every family.
    pub fn render(&self) -> String {
        // Read on the runtime that serves /metrics: the service's own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let workers = u64::try_from(runtime.metrics().num_workers()).unwrap_or(u64::MAX);
            self.0.runtime_workers.set(workers);
        }
        self.0.saturation.sample();
        self.0.breakers.refresh();
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.0.registry);
        text
    }
}

// ---- the read replica ----

/// The read replica as the dashboard's reads see it (`crate::db::read_replica`): its replay lag
/// at the last read that asked, and where reads went. Clones share the series.
#[derive(Clone, Debug, Default)]
pub struct ReplicaMetrics {
    /// The replica's replay lag at the last check, in seconds.
    pub lag_seconds: SecondsGauge,
    pub reads_from_replica: Counter,
    pub reads_from_primary: Counter,
    /// Reads sent to the primary because the replica lagged past the bound.
    pub fallbacks_lagging: Counter,
    /// Reads sent to the primary because the replica did not answer (or was passed over after
    /// failing).
    pub fallbacks_unreachable: Counter,
}

impl ReplicaMetrics {
    fn register(registry: &mut Registry) -> Self {
        let lag_seconds = SecondsGauge::default();
        registry.register_with_unit(
            "supportdesk_db_replica_lag",
            "How far the read replica's replay was behind the primary at the last read that asked (0 when caught up)",
            prometheus_client::registry::Unit::Seconds,
            lag_seconds.0.clone(),
        );
        let [reads_from_replica, reads_from_primary] = counters_by(
            registry,
            "supportdesk_db_replica_reads",
            "Reads that may use the read replica, by where they were served (replica, primary)",
            "target",
            ["replica", "primary"],
        );
        let [fallbacks_lagging, fallbacks_unreachable] = counters_by(
            registry,
            "supportdesk_db_replica_fallbacks",
            "Reads sent to the primary instead of the read replica, by reason (lagging: past DATABASE_READ_REPLICA_MAX_LAG_MS; unreachable: it did not answer)",
            "reason",
            ["lagging", "unreachable"],
        );
        Self {
            lag_seconds,
            reads_from_replica,
            reads_from_primary,
            fallbacks_lagging,
            fallbacks_unreachable,
        }
    }
}

// ---- saturation: the database pool and build info ----

/// How full the PostgreSQL pool is, sampled from bb8's own state and statistics at each scrape
/// (no cost on the request path), and the build's version. The pool is read through a function
/// startup hands over ([`Self::watch_database_pool`]): this module sits below `db`.
///
/// bb8 counts checkouts and the time they waited itself; its cumulative totals are exported as
/// counters (`rate(wait_seconds_total) / rate(checkouts_total{outcome="waited"})` is the mean
/// wait of the checkouts that waited).
pub struct SaturationMetrics {
    /// Reads the pool being watched, once startup hands it over.
    pool: OnceLock<Box<dyn Fn() -> PoolSample + Send + Sync>>,
    /// Held while a scrape samples, so that concurrent scrapes add each delta once.
    sampling: Mutex<()>,
    in_use: Gauge,
    idle: Gauge,
    max: Gauge,
    waiting: Gauge,
    /// Checkouts completed, in the order direct, waited, timed out.
    checkouts: [Counter; 3],
    wait_seconds: PromCounter<f64, AtomicU64>,
    /// The time of each checkout through `crate::db::connection`, waiting included: the pool
    /// records into it once startup hands it over (`PgPool::time_checkouts_with`).
    pub checkout_duration: Timing,
}

impl std::fmt::Debug for SaturationMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaturationMetrics")
            .field("watching_a_pool", &self.pool.get().is_some())
            .finish_non_exhaustive()
    }
}

/// The pool's state at one scrape, and its cumulative checkout totals (bb8's statistics).
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolSample {
    /// Open connections, checked out or idle.
    pub connections: u32,
    pub idle: u32,
    /// Checkouts waiting for a connection now.
    pub waiting: u64,
    /// Checkouts completed since start: at once, after waiting, and timed out.
    pub direct: u64,
    pub waited: u64,
    pub timed_out: u64,
    /// The time all checkouts spent waiting, since start.
    pub wait_time: Duration,
}

impl SaturationMetrics {
    fn register(registry: &mut Registry) -> Self {
        let connections = Family::<OneLabel, PromGauge<u64, AtomicU64>>::default();
        registry.register(
            "supportdesk_db_pool_connections",
            "PostgreSQL pool connections by state (in_use: checked out; idle: open and free), sampled at scrape",
            connections.clone(),
        );
        let wait_seconds = PromCounter::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "supportdesk_db_pool_checkout_wait",
            "Total time checkouts of a PostgreSQL pool connection spent waiting for one to come free",
            prometheus_client::registry::Unit::Seconds,
            wait_seconds.clone(),
        );
        let checkout_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register_with_unit(
            "supportdesk_db_pool_checkout_duration",
            "Time each checkout of a PostgreSQL pool connection took, waiting for one to come free included",
            prometheus_client::registry::Unit::Seconds,
            checkout_duration.clone(),
        );
        let build_info = Family::<TwoLabels, PromGauge<u64, AtomicU64>>::default();
        registry.register(
            "supportdesk_build_info",
            "Always 1; its labels name the running build (version: the crate's version)",
            build_info.clone(),
        );
        build_info
            .get_or_create(&[
                ("version", env!("CARGO_PKG_VERSION")),
                ("name", env!("CARGO_PKG_NAME")),
            ])
            .set(1);
        Self {
            pool: OnceLock::new(),
            sampling: Mutex::new(()),
            in_use: Gauge(connections.get_or_create_owned(&[("state", "in_use")])),
            idle: Gauge(connections.get_or_create_owned(&[("state", "idle")])),
            max: gauge(
                registry,
                "supportdesk_db_pool_max_connections",
                "The most connections the PostgreSQL pool opens (DATABASE_POOL_SIZE)",
            ),
            waiting: gauge(
                registry,
                "supportdesk_db_pool_waiting",
                "Checkouts waiting for a PostgreSQL pool connection to come free, sampled at scrape",
            ),
            checkouts: counters_by(
                registry,
                "supportdesk_db_pool_checkouts",
                "PostgreSQL pool checkouts completed, by outcome (direct: a connection was free; waited: one came free in time; timed_out: none did)",
                "outcome",
                ["direct", "waited", "timed_out"],
            ),
            wait_seconds,
            checkout_duration: Timing(checkout_duration),
        }
    }

    /// Samples the pool of at most `max_size` connections through `read` at every scrape from
    /// now on.
    pub fn watch_database_pool(
        &self,
        max_size: u32,
        read: impl Fn() -> PoolSample + Send + Sync + 'static,
    ) {
        self.max.set(u64::from(max_size));
        let _ = self.pool.set(Box::new(read));
    }

    /// Reads the watched pool's state into the series.
    fn sample(&self) {
        let Some(read) = self.pool.get() else {
            return;
        };
        let _sampling = self.sampling.lock().unwrap_or_else(PoisonError::into_inner);
        let sample = read();
        self.idle.set(u64::from(sample.idle));
        self.in_use
            .set(u64::from(sample.connections.saturating_sub(sample.idle)));
        self.waiting.set(sample.waiting);
        let [direct, waited, timed_out] = &self.checkouts;
        for (counter, total) in [
            (direct, sample.direct),
            (waited, sample.waited),
            (timed_out, sample.timed_out),
        ] {
            counter.0.inc_by(total.saturating_sub(counter.get()));
        }
        let waited_for = sample.wait_time.as_secs_f64() - self.wait_seconds.get();
        if waited_for > 0.0 {
            self.wait_seconds.inc_by(waited_for);
        }
    }
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
            if wants_classic_text(request) {
                (
                    StatusCode::OK,
                    CLASSIC_TEXT,
                    classic_text(&metrics.render()),
                )
            } else {
                (StatusCode::OK, OPENMETRICS, metrics.render())
            }
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

// ---- the classic text format ----

/// The content type of the classic Prometheus text format (0.0.4).
const CLASSIC_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// True when the scraper accepts `text/plain` but not OpenMetrics (promtool, older scrapers).
/// Without an `Accept` header, or with `*/*`, OpenMetrics is served.
fn wants_classic_text<B>(request: &Request<B>) -> bool {
    let accept = request
        .headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    accept.contains("text/plain") && !accept.contains("application/openmetrics-text")
}

/// The OpenMetrics text `openmetrics` in the classic text format: a counter's HELP and TYPE
/// name its samples' `_total` name, and the `# UNIT` and `# EOF` lines (which the classic
/// format does not have) are left out. Samples are the same in both formats.
fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, after) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {after}"))
        });
        match renamed {
            Some(renamed) => text.push_str(&renamed),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_text_names_counters_by_their_total_and_has_no_unit_or_eof() {
        let metrics = Metrics::default();
        metrics.rate_limit().allowed.increment();
        let rpc = RpcName {
            path: "/supportdesk.v1.TicketService/GetTicket",
            index: None,
        };
        metrics.rpcs().answered(rpc, 0, Duration::ZERO);
        let text = classic_text(&metrics.render());
        assert!(text.contains("# TYPE supportdesk_rate_limit_decisions_total counter\n"));
        assert!(text.contains("# HELP supportdesk_rate_limit_decisions_total Rate-limit"));
        assert!(text.contains("supportdesk_rate_limit_decisions_total{outcome=\"allowed\"} 1\n"));
        assert!(text.contains("# TYPE supportdesk_rpc_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE supportdesk_rate_limit_fail_open gauge\n"));
        assert!(!text.contains("# UNIT"));
        assert!(!text.contains("# EOF"));
    }

    /// The family a sample line belongs to, as its `# TYPE` line names it.
    fn family_of(sample: &str) -> &str {
        let name = sample.split(['{', ' ']).next().unwrap_or_default();
        ["_total", "_bucket", "_sum", "_count"]
            .into_iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name)
    }

    #[test]
    fn every_family_is_typed_and_each_count_appears_once() {
        let metrics = Metrics::default();
        metrics.rate_limit().allowed.increment();
        metrics.rate_limit().allowed.increment();
        metrics.ticket_cache().misses.increment();
        let text = metrics.render();
        assert!(text.contains("supportdesk_rate_limit_decisions_total{outcome=\"allowed\"} 2\n"));
        assert!(text.contains("supportdesk_rate_limit_decisions_total{outcome=\"refused\"} 0\n"));
        assert!(text.contains("supportdesk_ticket_cache_lookups_total{outcome=\"miss\"} 1\n"));
        assert!(text.contains("supportdesk_rate_limit_fail_open 0\n"));
        assert!(text.ends_with("# EOF\n"));
        let samples: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        assert!(
            !samples
                .iter()
                .any(|line| line.starts_with("supportdesk_job_runner")),
            "no task series before the runner registers one"
        );
        for line in samples {
            let family = family_of(line);
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family} has no TYPE line"
            );
            assert_eq!(
                text.lines().filter(|other| *other == line).count(),
                1,
                "{line} appears twice"
            );
        }
    }

    #[test]
    fn an_rpc_is_counted_by_method_and_code_and_timed_in_the_histogram() {
        let metrics = Metrics::default();
        let get_ticket = "/supportdesk.v1.TicketService/GetTicket";
        let indexed = RpcName {
            path: get_ticket,
            index: Some(7),
        };
        let by_labels = RpcName {
            path: get_ticket,
            index: None,
        };
        metrics
            .rpcs()
            .answered(indexed, 0, Duration::from_millis(3));
        metrics
            .rpcs()
            .answered(by_labels, 5, Duration::from_millis(40));
        metrics.rpcs().answered(indexed, 99, Duration::ZERO);
        assert_eq!(metrics.rpcs().count(get_ticket, "OK"), 1);
        assert_eq!(metrics.rpcs().count(get_ticket, "NOT_FOUND"), 1);
        assert_eq!(metrics.rpcs().count(get_ticket, "UNKNOWN"), 1);
        let text = metrics.render();
        assert!(text.contains(&format!(
            "supportdesk_rpc_requests_total{{method=\"{get_ticket}\",code=\"NOT_FOUND\"}} 1\n"
        )));
        assert!(text.contains("# TYPE supportdesk_rpc_duration_seconds histogram\n"));
        assert!(text.contains(&format!(
            "supportdesk_rpc_duration_seconds_count{{method=\"{get_ticket}\"}} 3\n"
        )));
        // 3 ms is under the 4 ms bucket's bound; 40 ms is not.
        assert!(text.contains(&format!(
            "supportdesk_rpc_duration_seconds_bucket{{le=\"0.004\",method=\"{get_ticket}\"}} 2\n"
        )), "{text}");
    }

    #[test]
    fn notifications_are_counted_by_kind_and_a_breaker_shows_its_state_at_each_scrape() {
        let metrics = Metrics::default();
        metrics.notifications().sent("ticket_created");
        metrics.notifications().failed("ticket_created", false);
        metrics.notifications().failed("ticket_created", false);
        metrics.notifications().failed("no_such_kind", true);
        metrics.queues().record(QueueName::Webhooks, 7, 1.5);
        let breaker = CircuitBreaker::new(
            "email",
            crate::breaker::BreakerConfig {
                failure_threshold: 1,
                cool_down: Duration::from_secs(60),
            },
        );
        metrics.breakers().track(&breaker);
        let text = metrics.render();
        for line in [
            r#"supportdesk_notifications_sent_total{kind="ticket_created"} 1"#,
            r#"supportdesk_notifications_failed_total{kind="ticket_created",outcome="retry"} 2"#,
            r#"supportdesk_notifications_failed_total{kind="unknown",outcome="permanent"} 1"#,
            r#"supportdesk_queue_depth{queue="webhooks"} 7"#,
            r#"supportdesk_queue_oldest_age_seconds{queue="webhooks"} 1.5"#,
            r#"supportdesk_queue_depth{queue="completer"} 0"#,
            r#"supportdesk_provider_breaker_state{provider="email",state="closed"} 1"#,
            r#"supportdesk_provider_breaker_state{provider="email",state="open"} 0"#,
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing from:\n{text}"
            );
        }
        breaker
            .try_acquire()
            .unwrap()
            .record(crate::breaker::CallOutcome::Failure);
        let text = metrics.render();
        assert!(
            text.contains(
                "supportdesk_provider_breaker_state{provider=\"email\",state=\"open\"} 1\n"
            )
        );
        assert!(text.contains(
            "supportdesk_provider_breaker_state{provider=\"email\",state=\"closed\"} 0\n"
        ));
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
        let mut states: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("supportdesk_job_runner_task_state{"))
            .collect();
        // A family's series come in no particular order.
        states.sort_unstable();
        assert_eq!(
            states,
            [
                r#"supportdesk_job_runner_task_state{task="webhook-workers",state="failed"} 0"#,
                r#"supportdesk_job_runner_task_state{task="webhook-workers",state="lagging"} 0"#,
                r#"supportdesk_job_runner_task_state{task="webhook-workers",state="restarting"} 1"#,
                r#"supportdesk_job_runner_task_state{task="webhook-workers",state="running"} 0"#,
                r#"supportdesk_job_runner_task_state{task="webhook-workers",state="stopped"} 0"#,
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
        assert!(text.contains("# TYPE supportdesk_job_runner_task_restarts counter\n"));
    }
}
