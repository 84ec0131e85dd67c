//! Which of the background tasks declared in `crate::jobs` this instance runs, each built from
//! the services it works with: the settings decide (a task whose provider or workers are not
//! configured is not run). Each task's name, restart policy, health effect and lag bound are in
//! its own file of `jobs/`, and nowhere here.

use std::sync::Arc;

use crate::app::metrics_endpoint::MetricsEndpoint;
use crate::app::services::{Services, password_token_key};
use crate::configuration::Settings;
use crate::db::PgPool;
use crate::jobs::dependency_probe::DependencyProbe;
use crate::jobs::{self, Task};
use crate::providers::webhook_client::{DialSeam, WebhookClient};
use crate::redis::connection::Redis;
use crate::resilience::breaker::CircuitBreaker;
use crate::service::{
    NotificationWorkers, OperationWorkers, PaymentEventWorkers, WebhookDeliveryWorkers,
};
use crate::telemetry::health::Health;
use crate::wire::convert::event::JsonEvents;
use crate::wire::proto::v1::{attachment_service_server, event_service_server};

/// The service's own tasks, as its settings call for them.
pub(super) fn service_tasks(
    settings: &Settings,
    services: &Services,
    database: &PgPool,
    redis: &Redis,
    health: &Health,
    metrics_endpoint: Option<MetricsEndpoint>,
    dial_seam: Arc<dyn DialSeam>,
) -> anyhow::Result<Vec<Task>> {
    let mut tasks = vec![jobs::dependency_probe::task(DependencyProbe {
        health: health.clone(),
        database: database.clone(),
        redis: redis.clone(),
        interval: settings.server.health_probe_interval,
        timeout: settings
            .database
            .connect_timeout
            .max(settings.redis.connect_timeout),
    })];
    if let Some(endpoint) = metrics_endpoint {
        // The queues' gauges are only read here: sampled only while they are served.
        tasks.push(jobs::queue_sampler::task(
            database.clone(),
            services.metrics.clone(),
            settings.server.queue_sample_interval,
        ));
        let endpoint = Arc::new(endpoint);
        let metrics = services.metrics.clone();
        tasks.push(jobs::metrics_endpoint::task(move |stop| {
            let endpoint = endpoint.clone();
            let metrics = metrics.clone();
            async move { endpoint.serve(metrics, stop).await }
        }));
    }
    tasks.extend(jobs::replica_lag_sampler::task(
        services.read_pools.clone(),
        settings.database.read_replica_lag_sample_interval,
    ));
    tasks.push(jobs::idempotency_sweeper::task(
        database.clone(),
        settings.idempotency.sweep_interval,
    ));
    tasks.push(jobs::event_tail::task(
        services.event_tail.clone(),
        event_service_server::SERVICE_NAME,
        services.draining_streams.clone(),
    ));
    tasks.push(jobs::event_sweeper::task(
        database.clone(),
        settings.outbound_webhooks.event_retention,
        settings.outbound_webhooks.event_sweep_interval,
    ));
    if let Some(storage) = &services.storage {
        tasks.push(jobs::storage_probe::task(
            storage.clone(),
            settings
                .attachments
                .storage
                .as_ref()
                .map_or(std::time::Duration::from_secs(2), |settings| {
                    settings.probe_interval
                }),
            attachment_service_server::SERVICE_NAME,
        ));
        tasks.push(jobs::attachment_sweeper::task(
            services.attachments.clone(),
            settings.attachments.sweep_interval,
        ));
    }
    let breakers: Vec<CircuitBreaker> = services
        .payment_provider
        .iter()
        .map(|provider| provider.breaker().clone())
        .chain(
            services
                .email_sender
                .iter()
                .map(|sender| sender.breaker().clone()),
        )
        .collect();
    tasks.push(jobs::health_gates::task(health.clone(), breakers));
    if let Some(billing) = &services.billing {
        tasks.push(jobs::billing_completer::task(
            billing.clone(),
            settings.billing_completer_interval,
        ));
        tasks.push(jobs::billing_reconciler::task(
            billing.clone(),
            settings.reconciliation.clone(),
        ));
    }
    if settings.webhook_workers.workers > 0 {
        let workers = PaymentEventWorkers::new(
            database.clone(),
            services
                .payment_provider
                .clone()
                .map(|provider| provider as Arc<dyn crate::providers::payments::PaymentProvider>),
            settings.webhook_workers.clone(),
            // The receiving side notifies it for each new event and each re-drive; the
            // workers also poll, to find events other instances stored.
            services.wake_payment_event_workers.clone(),
            services.metrics.clone(),
        )
        .with_message_domain(settings.notifications.message_domain());
        tasks.push(jobs::payment_event_workers::task(workers));
    }
    // Without an email provider there are no workers: notifications wait in the outbox.
    let notifications = &settings.notifications;
    if let (Some(sender), Some(public_base_url)) =
        (&services.email_sender, &notifications.public_base_url)
        && notifications.workers.workers > 0
    {
        let workers = NotificationWorkers::new(
            database.clone(),
            sender.clone(),
            notifications.workers.clone(),
            public_base_url.clone(),
            password_token_key(&settings.auth),
            services.metrics.clone(),
        )
        // The drain waits for the workers this long; a quarter of it is left to record.
        .sending_at_most_after_stop(settings.server.shutdown_drain_timeout * 3 / 4);
        tasks.push(jobs::notification_workers::task(workers));
    }
    if settings.operations.workers > 0 {
        tasks.push(jobs::operation_workers::task(
            OperationWorkers::new(
                database.clone(),
                settings.operations.clone(),
                settings.tickets.max_open_per_requester,
                services.wake_operation_workers.clone(),
            ),
            settings.operations.poll_interval,
        ));
    }
    if settings.outbound_webhooks.workers > 0 {
        let workers = WebhookDeliveryWorkers::new(
            database.clone(),
            WebhookClient::new(&settings.outbound_webhooks, dial_seam)?,
            services.endpoint_secrets.clone(),
            Arc::new(JsonEvents::new()?),
            settings.outbound_webhooks.clone(),
            services.wake_delivery_workers.clone(),
            settings.notifications.message_domain().to_owned(),
        )
        .counting_into(&services.metrics);
        tasks.push(jobs::outbound_webhook_workers::task(workers));
    }
    tasks.push(jobs::ticket_cache_repair::task(
        services.ticket_cache.clone(),
    ));
    Ok(tasks)
}
