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

mod attachments;
mod billing;
mod database;
mod events;
mod instruments;
mod jobs;
mod notifications;
mod passwords;
mod providers;
mod rate_limit;
mod redis;
mod rpc;

use std::sync::Arc;

use prometheus_client::registry::Registry;

pub use attachments::{
    AttachmentCounters, UPLOAD_COMPLETED, UPLOAD_MISMATCH, UPLOAD_MISSING, UPLOAD_STARTED,
};
pub use billing::{BillingCounters, WebhookCounters};
pub use database::{PoolSample, ReplicaMetrics, SaturationMetrics};
pub use events::EventCounters;
use instruments::gauge;
pub use instruments::{Counter, Gauge, SecondsGauge, Timing};
pub use jobs::{JobRunnerMetrics, QueueGauges, QueueName, TaskMetrics, TaskState};
pub use notifications::NotificationCounters;
pub use passwords::PasswordCounters;
pub use providers::BreakerGauges;
pub use rate_limit::RateLimitCounters;
pub use redis::{RedisTimings, TicketCacheCounters};
pub use rpc::{RpcMetrics, RpcName, grpc_code_name};

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
    events: EventCounters,
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
        let events = EventCounters::register(&mut registry);
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
            events,
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

    pub fn events(&self) -> &EventCounters {
        &self.0.events
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
    fn notifications_are_counted_by_kind_and_queues_by_name() {
        let metrics = Metrics::default();
        metrics.notifications().sent("ticket_created");
        metrics.notifications().failed("ticket_created", false);
        metrics.notifications().failed("ticket_created", false);
        metrics.notifications().failed("no_such_kind", true);
        metrics.queues().record(QueueName::Webhooks, 7, 1.5);
        let text = metrics.render();
        for line in [
            r#"supportdesk_notifications_sent_total{kind="ticket_created"} 1"#,
            r#"supportdesk_notifications_failed_total{kind="ticket_created",outcome="retry"} 2"#,
            r#"supportdesk_notifications_failed_total{kind="unknown",outcome="permanent"} 1"#,
            r#"supportdesk_queue_depth{queue="webhooks"} 7"#,
            r#"supportdesk_queue_oldest_age_seconds{queue="webhooks"} 1.5"#,
            r#"supportdesk_queue_depth{queue="completer"} 0"#,
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing from:\n{text}"
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
