//! Builds the running service: pools, health, reflection, the API services behind the middleware
//! stack, and the listener. [`Application::build`] binds (port 0 in tests picks a free port);
//! [`Application::run_until_stopped`] serves until its shutdown future resolves, then drains:
//! health goes NOT_SERVING first, in-flight RPCs finish within the drain timeout, pools close.
//! Every background task runs under the job runner (`crate::jobs`); one that dies for good stops
//! the service the same way, and `run_until_stopped` then returns the error naming it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::api::accounts::AccountApi;
use crate::api::api_keys::ApiKeyApi;
use crate::api::auth::AuthApi;
use crate::api::notifications::NotificationApi;
use crate::api::tickets::TicketApi;
use crate::api::users::UserApi;
use crate::api::webhooks::WebhookApi;
use crate::app::lifecycle;
use crate::app::metrics_endpoint::MetricsEndpoint;
use crate::auth::principals::{ChangeWindow, PrincipalStates};
use crate::auth::{Authenticator, PasswordHasher, SessionStore, TokenIssuer};
use crate::configuration::{AuthSettings, Settings, WebhookReceivingSettings};
use crate::db::{self, PgPool};
use crate::domain::PageTokenKeys;
use crate::idempotency::{FingerprintKey, IdempotencyPolicy};
use crate::jobs::dependency_probe::DependencyProbe;
use crate::jobs::{
    HealthEffect, JobRunner, RestartPolicy, SERVICE_BACKOFF, Task, billing_completer,
    billing_reconciler, idempotency_sweeper, queue_sampler,
};
use crate::middleware::MiddlewareLayer;
use crate::rate_limit::RateLimiter;
use crate::redis::connection::{self, Redis};
use crate::redis::keys::RedisKeys;
use crate::redis::ticket_cache::{self, TicketCache};
use crate::service::{Accounts, ApiKeys, Authentication, PasswordResets, TicketDesk, Users};
use crate::telemetry::health::{Health, LIVENESS_SERVICE};
use crate::telemetry::metrics::{Metrics, PoolSample};
use crate::wire::methods::MethodTable;
use crate::wire::proto;
use crate::wire::proto::google::longrunning::operations_server::OperationsServer;
use crate::wire::proto::v1::account_service_server::AccountServiceServer;
use crate::wire::proto::v1::api_key_service_server::ApiKeyServiceServer;
use crate::wire::proto::v1::auth_service_server::AuthServiceServer;
use crate::wire::proto::v1::billing_service_server::BillingServiceServer;
use crate::wire::proto::v1::dashboard_service_server::DashboardServiceServer;
use crate::wire::proto::v1::event_service_server::EventServiceServer;
use crate::wire::proto::v1::notification_service_server::NotificationServiceServer;
use crate::wire::proto::v1::ticket_service_server::TicketServiceServer;
use crate::wire::proto::v1::user_service_server::UserServiceServer;
use crate::wire::proto::v1::webhook_endpoint_service_server::WebhookEndpointServiceServer;
use crate::wire::proto::v1::webhook_service_server::WebhookServiceServer;

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    settings: Settings,
    database: PgPool,
    redis: Redis,
    metrics_endpoint: Option<MetricsEndpoint>,
    methods: &'static MethodTable,
    /// Wakes the webhook workers: notified when a delivery stores a new event or an admin
    /// re-drives a dead one, so a worker need not wait for its next poll. Shared by the
    /// receiving service and every worker.
    wake_webhook_workers: Arc<Notify>,
    /// Background tasks added with [`Application::with_task`], run beside the service's own.
    extra_tasks: Vec<Task>,
    /// The last check before a webhook delivery dials an address ([`Application::with_dial_seam`]).
    dial_seam: Arc<dyn crate::outbound::DialSeam>,
}

impl Application {
    /// Creates the pools (connecting lazily) and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let methods = MethodTable::get().context("the method table cannot be read")?;
        let database = db::build_pool(&settings.database, settings.server.request_timeout);
        let redis = connection::build_pool(&settings.redis)?;
        let scripts: Vec<&redis::Script> = [
            crate::rate_limit::scripts().as_slice(),
            crate::auth::principals::scripts().as_slice(),
            crate::auth::sessions::scripts().as_slice(),
            ticket_cache::scripts().as_slice(),
        ]
        .concat();
        // Bounded: the service starts (NOT_SERVING) while Redis is down.
        let _ = tokio::time::timeout(
            settings.redis.connect_timeout * 2,
            redis.load_scripts(&scripts),
        )
        .await;
        let listener = TcpListener::bind(settings.server.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen_addr))?;
        let local_addr = listener.local_addr()?;
        let metrics_endpoint = MetricsEndpoint::bind(settings.server.metrics_listen_addr).await?;
        Ok(Self {
            listener,
            local_addr,
            settings,
            database,
            redis,
            metrics_endpoint,
            methods,
            wake_webhook_workers: Arc::new(Notify::new()),
            extra_tasks: Vec::new(),
            dial_seam: Arc::new(crate::outbound::DialAsAdmitted),
        })
    }

    /// Adds a background task, supervised by the job runner like the service's own (its name
    /// must differ from theirs: docs/architecture.md, "Background tasks").
    pub fn with_task(mut self, task: Task) -> Self {
        self.extra_tasks.push(task);
        self
    }

    /// Replaces the last check before a webhook delivery dials an address: tests put one there
    /// that records every address and refuses any outside 127.0.0.0/8, so that a broken address
    /// policy fails the test instead of reaching the network.
    pub fn with_dial_seam(mut self, seam: Arc<dyn crate::outbound::DialSeam>) -> Self {
        self.dial_seam = seam;
        self
    }

    /// Where `GET /metrics` is served, when `METRICS_LISTEN_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        let endpoint = self.metrics_endpoint.as_ref()?;
        endpoint.local_addr().ok()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What wakes the webhook workers: notified once for each new event stored and each dead
    /// event re-driven.
    pub fn webhook_wake(&self) -> Arc<Notify> {
        self.wake_webhook_workers.clone()
    }

    /// Serves until `shutdown` resolves, then drains and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let server_settings = self.settings.server.clone();
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .build_v1()?;
        // grpcurl 1.8 speaks only v1alpha.
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .build_v1alpha()?;

        let services = Services::build(&self.settings, &self.database, &self.redis);
        // Cancelled when the instance drains: long-lived streams (WatchEvents, exports) end then,
        // so that draining waits for none of them; their clients resume elsewhere.
        let drain = CancellationToken::new();
        let draining_streams = drain.clone();
        let max_bytes = server_settings.max_request_bytes;
        let accounts = AccountServiceServer::new(AccountApi::new(
            services.accounts,
            services.idempotency.clone(),
        ))
        .max_decoding_message_size(max_bytes)
        .compressed();
        let api_keys = ApiKeyServiceServer::new(ApiKeyApi::new(
            services.api_keys,
            services.idempotency.clone(),
            services.page_tokens.clone(),
        ))
        .max_decoding_message_size(max_bytes)
        .compressed();
        let auth = AuthServiceServer::new(AuthApi::new(services.authentication, services.resets))
            .max_decoding_message_size(max_bytes)
            .compressed();
        // Operations accepted here wake this instance's idle workers at once.
        let wake_operation_workers = Arc::new(Notify::new());
        let operations = crate::service::Operations::new(
            self.database.clone(),
            self.settings.operations.clone(),
            wake_operation_workers.clone(),
        );
        let tickets = TicketServiceServer::new(TicketApi::new(
            services
                .tickets
                .with_exports(crate::service::ExportSettings {
                    limit: self.settings.tickets.export_max_duration,
                    places: crate::resilience::stream_limit::StreamLimits::new(
                        "exports",
                        (
                            self.settings.tickets.export_max_per_account,
                            "EXPORT_MAX_CONCURRENT_PER_ACCOUNT",
                        ),
                        (
                            self.settings.tickets.export_max_per_instance,
                            "EXPORT_MAX_CONCURRENT_PER_INSTANCE",
                        ),
                    ),
                    draining: draining_streams.clone(),
                }),
            services.idempotency.clone(),
            services.page_tokens.clone(),
            operations.clone(),
        ))
        .max_decoding_message_size(max_bytes)
        .compressed();
        let operation_api = OperationsServer::new(crate::api::operations::OperationApi::new(
            operations,
            services.page_tokens.clone(),
        ))
        .max_decoding_message_size(max_bytes)
        .compressed();
        let provider = match &self.settings.payment_provider {
            Some(settings) => Some(std::sync::Arc::new(
                crate::billing::StripeHttpProvider::new(settings)?,
            )),
            None => None,
        };
        let billing = provider.clone().map(|provider| {
            crate::service::Billing::new(self.database.clone(), provider)
                .counting_into(services.metrics.clone())
                .with_message_domain(self.settings.notifications.message_domain())
        });
        let billing_api = BillingServiceServer::new(crate::api::billing::BillingApi::new(
            billing.clone(),
            services.idempotency.clone(),
            services.page_tokens.clone(),
        ))
        .max_decoding_message_size(max_bytes)
        .compressed();
        let webhooks = crate::service::Webhooks::new(
            self.database.clone(),
            webhook_verifier(&self.settings.webhook_receiving),
            self.wake_webhook_workers.clone(),
        );
        let webhooks_configured = webhooks.is_configured();
        let webhook_api =
            WebhookServiceServer::new(WebhookApi::new(webhooks, services.page_tokens.clone()))
                .max_decoding_message_size(max_bytes)
                .compressed();
        let notification_api = NotificationServiceServer::new(NotificationApi::new(
            crate::service::Notifications::new(
                self.database.clone(),
                email_webhook_verifier(&self.settings.email_webhook),
            ),
            services.page_tokens.clone(),
        ))
        .max_decoding_message_size(max_bytes)
        .compressed();
        let storage = match &self.settings.attachments.storage {
            Some(settings) => Some(Arc::new(crate::storage::ObjectStorage::new(settings)?)),
            None => None,
        };
        let attachments = crate::service::Attachments::new(
            self.database.clone(),
            storage.clone(),
            self.settings.attachments.clone(),
        )
        .counting_into(services.metrics.clone());
        let attachment_message_limit = crate::api::attachments::message_limit(max_bytes);
        let attachment_api =
            crate::wire::proto::v1::attachment_service_server::AttachmentServiceServer::new(
                crate::api::attachments::AttachmentApi::new(
                    attachments.clone(),
                    services.idempotency.clone(),
                    services.page_tokens.clone(),
                    attachment_message_limit,
                ),
            )
            // UploadAttachment's messages are the pieces Envoy cuts a REST body into.
            .max_decoding_message_size(attachment_message_limit)
            .compressed();
        let read_pools = crate::db::read_replica::ReadPools::new(
            self.database.clone(),
            &self.settings.database,
            self.settings.server.request_timeout,
            services.metrics.replica().clone(),
        );
        let dashboard = crate::service::Dashboard::new(read_pools.clone());
        let dashboard_api = DashboardServiceServer::new(crate::api::dashboard::DashboardApi::new(
            dashboard,
            services.page_tokens.clone(),
            self.methods,
        ))
        .max_decoding_message_size(max_bytes)
        .compressed();
        let endpoint_secrets = Arc::new(crate::outbound::SecretBox::new(
            self.settings.outbound_webhooks.secrets_key.as_ref(),
            &self.settings.auth.jwt_secret,
        ));
        let wake_delivery_workers = Arc::new(Notify::new());
        let webhook_endpoint_api = WebhookEndpointServiceServer::new(
            crate::api::webhook_endpoints::WebhookEndpointApi::new(
                crate::service::WebhookEndpointAdmin::new(
                    self.database.clone(),
                    endpoint_secrets.clone(),
                    self.settings.outbound_webhooks.clone(),
                    wake_delivery_workers.clone(),
                ),
                services.idempotency.clone(),
                services.page_tokens.clone(),
            ),
        )
        .max_decoding_message_size(max_bytes)
        .compressed();
        // One reader of new events for all of this instance's caught-up streams.
        let event_tail = crate::service::event_tail::EventTail::new(
            self.database.clone(),
            self.settings.outbound_webhooks.watch_poll_interval,
        );
        let event_api = EventServiceServer::new(crate::api::events::EventApi::new(
            crate::service::events::EventFeed::new(
                self.database.clone(),
                crate::service::events::FeedSettings {
                    heartbeat: self.settings.outbound_webhooks.watch_heartbeat,
                    max_duration: self.settings.outbound_webhooks.watch_max_duration,
                    places: crate::resilience::stream_limit::StreamLimits::new(
                        "event streams",
                        (
                            self.settings.outbound_webhooks.watch_max_per_account,
                            "WATCH_MAX_STREAMS_PER_ACCOUNT",
                        ),
                        (
                            self.settings.outbound_webhooks.watch_max_per_instance,
                            "WATCH_MAX_STREAMS_PER_INSTANCE",
                        ),
                    ),
                },
                draining_streams.clone(),
                event_tail.clone(),
            )
            .counting_into(&services.metrics),
        ))
        .max_decoding_message_size(max_bytes)
        .compressed();
        let users = UserServiceServer::new(UserApi::new(
            services.users,
            services.idempotency,
            services.page_tokens.clone(),
        ))
        .max_decoding_message_size(max_bytes)
        .compressed();
        let served = vec![
            served_name(&operation_api),
            served_name(&accounts),
            served_name(&api_keys),
            served_name(&attachment_api),
            served_name(&auth),
            served_name(&billing_api),
            served_name(&dashboard_api),
            served_name(&notification_api),
            served_name(&tickets),
            served_name(&users),
            served_name(&webhook_api),
            served_name(&webhook_endpoint_api),
            served_name(&event_api),
        ];
        ensure_served_as_declared(self.methods, &served)?;

        // The email provider's sender, whenever one is configured (its breaker drives
        // NotificationService's health even on an instance that runs no worker).
        let email_sender = match &self.settings.notifications.email {
            Some(email) => Some(crate::notifications::sender_for(email)?),
            None => None,
        };
        if let Some(provider) = &provider {
            provider.breaker().report_to(services.metrics.breakers());
        }
        if let Some(sender) = &email_sender {
            sender.breaker().report_to(services.metrics.breakers());
        }
        if let Some(storage) = &storage {
            storage.breaker().report_to(services.metrics.breakers());
        }

        let (reporter, health_service) = tonic_health::server::health_reporter();
        // Liveness follows nothing: SERVING while the process answers at all.
        reporter
            .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
            .await;
        // BillingService serves only with a provider whose breaker is closed: an open breaker
        // refuses every charge, and load balancers should send billing traffic elsewhere.
        let billing_gate: crate::telemetry::health::ServiceGate = match provider.clone() {
            Some(provider) => std::sync::Arc::new(move || {
                provider.breaker().state() == crate::billing::BreakerState::Closed
            }),
            None => std::sync::Arc::new(|| false),
        };
        // WebhookService serves only with a signing secret: without one every delivery is
        // refused (the provider keeps retrying), so the provider's traffic belongs elsewhere.
        let webhook_gate: crate::telemetry::health::ServiceGate =
            Arc::new(move || webhooks_configured);
        // AttachmentService serves while the store's breaker is closed (docs/attachments.md).
        let storage_gate: crate::telemetry::health::ServiceGate = match storage.clone() {
            Some(storage) => Arc::new(move || storage.is_available()),
            None => Arc::new(|| false),
        };
        // NotificationService serves while an email provider is configured and its breaker is
        // not open (half-open: the probe is how it recovers). Email being down takes nothing
        // else down: notifications wait in the outbox.
        let notification_gate: crate::telemetry::health::ServiceGate = match email_sender.clone() {
            Some(sender) => Arc::new(move || {
                sender.breaker().state() != crate::resilience::breaker::BreakerState::Open
            }),
            None => Arc::new(|| false),
        };
        let mut health_services: Vec<String> = served.iter().map(|&name| name.to_owned()).collect();
        if !served.contains(&NOTIFICATION_SERVICE) {
            health_services.push(NOTIFICATION_SERVICE.to_owned());
        }
        let health = Health::new(reporter, health_services)
            .with_gate(served_name(&billing_api), billing_gate)
            .with_gate(served_name(&webhook_api), webhook_gate)
            .with_gate(served_name(&attachment_api), storage_gate)
            .with_gate(NOTIFICATION_SERVICE, notification_gate);
        // Until the first probe says otherwise, nothing is known to work.
        health.set_all(ServingStatus::NotServing).await;

        let mut jobs = JobRunner::new(health.clone(), services.metrics.clone());
        let probe = DependencyProbe {
            health: health.clone(),
            database: self.database.clone(),
            redis: self.redis.clone(),
            interval: server_settings.health_probe_interval,
            timeout: self
                .settings
                .database
                .connect_timeout
                .max(self.settings.redis.connect_timeout),
        };
        // Without the probe, health says nothing true: everything is NOT_SERVING until it runs.
        jobs.add(Task::new(
            "dependency-probe",
            RestartPolicy::Restart(SERVICE_BACKOFF),
            HealthEffect::Everything,
            move |context| returns_ok(probe.clone().run(context.stop)),
        ));
        if let Some(endpoint) = self.metrics_endpoint {
            // The queues' gauges are only read here: sampled only while they are served.
            jobs.add(queue_sampler::task(
                self.database.clone(),
                services.metrics.clone(),
                server_settings.queue_sample_interval,
            ));
            let endpoint = Arc::new(endpoint);
            let metrics = services.metrics.clone();
            jobs.add(Task::new(
                "metrics-endpoint",
                RestartPolicy::Restart(SERVICE_BACKOFF),
                HealthEffect::None,
                move |context| {
                    let endpoint = endpoint.clone();
                    let metrics = metrics.clone();
                    async move {
                        endpoint.serve(metrics, context.stop).await;
                        Ok(())
                    }
                },
            ));
        }
        if let Some(sampler) = crate::jobs::replica_lag_sampler::task(
            read_pools,
            self.settings.database.read_replica_lag_sample_interval,
        ) {
            jobs.add(sampler);
        }
        jobs.add(idempotency_sweeper::task(
            self.database.clone(),
            self.settings.idempotency.sweep_interval,
        ));
        jobs.add(crate::jobs::event_tail::task(
            event_tail,
            served_name(&event_api),
            draining_streams.clone(),
        ));
        jobs.add(crate::jobs::event_sweeper::task(
            self.database.clone(),
            self.settings.outbound_webhooks.event_retention,
            self.settings.outbound_webhooks.event_sweep_interval,
        ));
        if let Some(storage) = storage {
            jobs.add(crate::jobs::storage_probe::task(
                storage.clone(),
                self.settings
                    .attachments
                    .storage
                    .as_ref()
                    .map_or(std::time::Duration::from_secs(2), |settings| {
                        settings.probe_interval
                    }),
                served_name(&attachment_api),
            ));
            jobs.add(crate::jobs::attachment_sweeper::task(
                attachments,
                self.settings.attachments.sweep_interval,
            ));
        }
        // Without the watcher, an opened breaker would leave BillingService (payments) or
        // NotificationService (email) SERVING until the next change of the dependencies.
        let breakers: Vec<crate::resilience::breaker::CircuitBreaker> = provider
            .iter()
            .map(|provider| provider.breaker().clone())
            .chain(email_sender.iter().map(|sender| sender.breaker().clone()))
            .collect();
        let gated_health = health.clone();
        jobs.add(Task::new(
            "health-gates",
            RestartPolicy::Restart(SERVICE_BACKOFF),
            HealthEffect::Services(&GATED_BY_BREAKERS),
            move |context| {
                returns_ok(gated_health.clone().watch_gates(
                    breakers.iter().map(|breaker| breaker.subscribe()).collect(),
                    std::time::Duration::from_millis(250),
                    context.stop,
                ))
            },
        ));
        if let Some(billing) = billing {
            jobs.add(billing_completer::task(
                billing.clone(),
                self.settings.billing_completer_interval,
            ));
            jobs.add(billing_reconciler::task(
                billing,
                self.settings.reconciliation.clone(),
            ));
        }
        if self.settings.webhook_workers.workers > 0 {
            let workers = crate::service::WebhookWorkers::new(
                self.database.clone(),
                provider
                    .clone()
                    .map(|provider| provider as Arc<dyn crate::billing::PaymentProvider>),
                self.settings.webhook_workers.clone(),
                // The receiving side notifies it for each new event and each re-drive; the
                // workers also poll, to find events other instances stored.
                self.wake_webhook_workers.clone(),
                services.metrics.clone(),
            )
            .with_message_domain(self.settings.notifications.message_domain());
            // Events wait durably in the queue, shared with every instance's workers: nothing
            // to take out of service while they restart.
            jobs.add(Task::new(
                "webhook-workers",
                RestartPolicy::Restart(SERVICE_BACKOFF),
                HealthEffect::None,
                move |context| workers.clone().run(context.stop),
            ));
        }
        // Without an email provider there are no workers: notifications wait in the outbox.
        let notifications = &self.settings.notifications;
        if let (Some(sender), Some(public_base_url)) =
            (&email_sender, &notifications.public_base_url)
            && notifications.workers.workers > 0
        {
            let workers = crate::service::NotificationWorkers::new(
                self.database.clone(),
                sender.clone(),
                notifications.workers.clone(),
                public_base_url.clone(),
                password_token_key(&self.settings.auth),
                services.metrics.clone(),
            )
            // The drain waits for the workers this long; a quarter of it is left to record.
            .sending_at_most_after_stop(self.settings.server.shutdown_drain_timeout * 3 / 4);
            // Notifications wait durably in the outbox, shared with every instance's workers:
            // nothing to take out of service while they restart.
            jobs.add(Task::new(
                "notification-workers",
                RestartPolicy::Restart(SERVICE_BACKOFF),
                HealthEffect::None,
                move |context| workers.clone().run(context.stop),
            ));
        }
        if self.settings.operations.workers > 0 {
            jobs.add(crate::jobs::operation_workers::task(
                crate::service::OperationWorkers::new(
                    self.database.clone(),
                    self.settings.operations.clone(),
                    self.settings.tickets.max_open_per_requester,
                    wake_operation_workers,
                ),
                self.settings.operations.poll_interval,
            ));
        }
        if self.settings.outbound_webhooks.workers > 0 {
            let workers = crate::service::WebhookDeliveryWorkers::new(
                self.database.clone(),
                crate::outbound::WebhookClient::new(
                    &self.settings.outbound_webhooks,
                    self.dial_seam.clone(),
                )?,
                endpoint_secrets,
                Arc::new(crate::api::webhook_endpoints::JsonEvents::new()?),
                self.settings.outbound_webhooks.clone(),
                wake_delivery_workers,
                self.settings.notifications.message_domain().to_owned(),
            )
            .counting_into(&services.metrics);
            // Deliveries wait durably in their queue, shared with every instance's workers.
            jobs.add(Task::new(
                "webhook-delivery-workers",
                RestartPolicy::Restart(SERVICE_BACKOFF),
                HealthEffect::None,
                move |context| workers.clone().run(context.stop),
            ));
        }
        // Entries written while Redis was away stay unsynced until their TTL without it.
        let ticket_cache = services.ticket_cache.clone();
        jobs.add(Task::new(
            "ticket-cache-repair",
            RestartPolicy::Restart(SERVICE_BACKOFF),
            HealthEffect::None,
            move |context| returns_ok(ticket_cache.clone().run_repairs(context.stop)),
        ));
        for task in self.extra_tasks {
            jobs.add(task);
        }
        let jobs = jobs.start()?;

        let server = Server::builder()
            .http2_keepalive_interval(Some(server_settings.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(server_settings.http2_keepalive_timeout))
            .max_concurrent_streams(Some(server_settings.max_concurrent_streams))
            // Above the service's own header limit, so that a direct gRPC client over it gets
            // RESOURCE_EXHAUSTED `HEADERS_TOO_LARGE` from the middleware rather than hyper's bare
            // HTTP 431; only beyond twice the limit does hyper refuse by itself.
            .http2_max_header_list_size(
                u32::try_from(server_settings.max_request_header_bytes.saturating_mul(2))
                    .unwrap_or(u32::MAX),
            )
            .concurrency_limit_per_connection(server_settings.max_concurrent_streams as usize)
            .layer(MiddlewareLayer::new(
                self.methods,
                &server_settings,
                services.authenticator.clone(),
                services.limiter.clone(),
                services.ticket_cache.clone(),
                services.metrics.rpcs().clone(),
            ))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(operation_api)
            .add_service(accounts)
            .add_service(api_keys)
            .add_service(attachment_api)
            .add_service(auth)
            .add_service(billing_api)
            .add_service(dashboard_api)
            .add_service(notification_api)
            .add_service(tickets)
            .add_service(users)
            .add_service(webhook_api)
            .add_service(webhook_endpoint_api)
            .add_service(event_api)
            .serve_with_incoming_shutdown(
                // `Server::tcp_nodelay` applies only to listeners tonic binds itself: without
                // this, Nagle's algorithm holds each response's last frame until the client's
                // delayed ACK, 40 ms on Linux.
                TcpIncoming::from(self.listener).with_nodelay(Some(true)),
                drain.clone().cancelled_owned(),
            );
        let stopped = lifecycle::serve_until_stopped(
            server,
            self.local_addr,
            jobs,
            health,
            drain,
            &server_settings,
            shutdown,
        )
        .await;
        // The pools close only once nothing can use them any more.
        drop(self.database);
        drop(self.redis);
        stopped
    }
}

/// NotificationService's health name (`crate::notifications::HEALTH_SERVICE_NAME`).
const NOTIFICATION_SERVICE: &str = crate::notifications::HEALTH_SERVICE_NAME;

/// The services whose health follows a provider's circuit breaker (the `health-gates` task's):
/// BillingService (payments) and NotificationService (email).
const GATED_BY_BREAKERS: [&str; 2] = [
    <BillingServiceServer<crate::api::billing::BillingApi> as NamedService>::NAME,
    NOTIFICATION_SERVICE,
];

/// The name a tonic server is routed (and health-checked) by.
fn served_name<S: NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// Fails unless the services served are exactly the API services the proto declares: a service
/// added to the proto but not to the server, or the other way round, stops the start.
fn ensure_served_as_declared(methods: &MethodTable, served: &[&str]) -> anyhow::Result<()> {
    let mut served = served.to_vec();
    served.sort_unstable();
    let declared = methods.api_services();
    anyhow::ensure!(
        served == declared,
        "the services served ({served:?}) are not the API services of the proto ({declared:?})"
    );
    Ok(())
}

/// A task's run that cannot fail by itself: it returns once stopped.
async fn returns_ok(run: impl Future<Output = ()>) -> anyhow::Result<()> {
    run.await;
    Ok(())
}

/// The operations behind the RPCs, wired to the pools and to each other.
struct Services {
    metrics: Metrics,
    idempotency: IdempotencyPolicy,
    page_tokens: PageTokenKeys,
    authenticator: Authenticator,
    limiter: RateLimiter,
    accounts: Accounts,
    api_keys: ApiKeys,
    authentication: Authentication,
    resets: PasswordResets,
    tickets: TicketDesk,
    ticket_cache: TicketCache,
    users: Users,
}

impl Services {
    fn build(settings: &Settings, database: &PgPool, redis: &Redis) -> Self {
        let tokens = TokenIssuer::new(&settings.auth.jwt_secret, settings.auth.access_token_ttl);
        let metrics = Metrics::default();
        let pool = database.clone();
        database.time_checkouts_with(metrics.saturation().checkout_duration.clone());
        metrics
            .saturation()
            .watch_database_pool(settings.database.pool_size, move || {
                let state = pool.state();
                let stats = &state.statistics;
                PoolSample {
                    connections: state.connections,
                    idle: state.idle_connections,
                    waiting: stats.pending_gets(),
                    direct: stats.get_direct,
                    waited: stats.get_waited,
                    timed_out: stats.get_timed_out,
                    wait_time: stats.get_wait_time,
                }
            });
        let hasher = PasswordHasher::new(&metrics);
        let sessions = SessionStore::new(
            redis.clone(),
            RedisKeys::new(settings.redis.key_prefix.clone()),
            database.clone(),
            settings.auth.access_token_ttl,
            settings.auth.refresh_token_ttl,
            settings.auth.refresh_reuse_grace,
            &settings.auth.jwt_secret,
        );
        let principals = PrincipalStates::new(
            redis.clone(),
            RedisKeys::new(settings.redis.key_prefix.clone()),
            ChangeWindow::for_requests_up_to(settings.server.request_timeout),
        );
        let ticket_cache = TicketCache::new(
            redis.clone(),
            RedisKeys::new(settings.redis.key_prefix.clone()),
            settings.tickets.cache_ttl,
            &metrics,
        );
        let limiter = RateLimiter::new(
            redis.clone(),
            RedisKeys::new(settings.redis.key_prefix.clone()),
            settings.rate_limits.clone(),
            &metrics,
        )
        .with_password_reset(settings.password_reset.clone());
        Self {
            page_tokens: page_token_keys(&settings.auth),
            idempotency: IdempotencyPolicy {
                retention: settings.idempotency.retention,
                wait: settings.idempotency.wait,
                fingerprint_key: FingerprintKey::new(&settings.idempotency.fingerprint_key),
            },
            authenticator: Authenticator::new(tokens.clone(), database.clone(), principals.clone()),
            limiter: limiter.clone(),
            accounts: Accounts::new(database.clone(), hasher.clone()),
            api_keys: ApiKeys::new(database.clone(), principals.clone()),
            authentication: Authentication::new(
                database.clone(),
                hasher.clone(),
                sessions.clone(),
                tokens,
                limiter.clone(),
            ),
            resets: PasswordResets::new(
                database.clone(),
                hasher.clone(),
                sessions.clone(),
                limiter,
                password_token_key(&settings.auth),
                settings.notifications.message_domain(),
            ),
            tickets: TicketDesk::new(
                database.clone(),
                ticket_cache.clone(),
                settings.tickets.max_open_per_requester,
                settings.notifications.message_domain(),
            ),
            ticket_cache,
            users: Users::new(database.clone(), hasher, sessions, principals).with_invitations(
                password_token_key(&settings.auth),
                settings.notifications.message_domain(),
            ),
            metrics,
        }
    }
}

/// The verifier of webhook deliveries, or `None` when no signing secret is configured.
fn webhook_verifier(
    settings: &WebhookReceivingSettings,
) -> Option<crate::domain::SignatureVerifier> {
    (!settings.secrets.is_empty()).then(|| {
        crate::domain::SignatureVerifier::new(settings.secrets.clone(), settings.tolerance)
    })
}

/// The verifier of the email provider's webhook deliveries; `None` without a secret. The secret
/// was checked when the settings were read.
fn email_webhook_verifier(
    settings: &crate::configuration::EmailWebhookSettings,
) -> Option<crate::domain::SvixVerifier> {
    use secrecy::ExposeSecret;
    let secret = settings.secret.as_ref()?;
    match crate::domain::SvixVerifier::new(secret.expose_secret(), settings.tolerance) {
        Ok(verifier) => Some(verifier),
        Err(problem) => {
            tracing::error!(%problem, "EMAIL_WEBHOOK_SECRET is unusable: email webhooks are refused");
            None
        }
    }
}

/// The key password-reset and invitation tokens are derived with: from `JWT_SECRET` through a
/// label of its own, so the JWT key itself never signs anything else.
fn password_token_key(auth: &AuthSettings) -> crate::domain::PasswordTokenKey {
    use secrecy::ExposeSecret;
    crate::domain::PasswordTokenKey::derive(auth.jwt_secret.expose_secret().as_bytes())
}

/// The keys of `PAGE_TOKEN_KEYS`, or one derived from `JWT_SECRET` when none are set: an
/// HMAC of a fixed label, so the JWT key itself never signs anything else.
fn page_token_keys(auth: &AuthSettings) -> PageTokenKeys {
    use hmac::{Hmac, KeyInit, Mac};
    use secrecy::ExposeSecret;
    if auth.page_token_keys.is_empty() {
        let mut derive =
            Hmac::<sha2::Sha256>::new_from_slice(auth.jwt_secret.expose_secret().as_bytes())
                .expect("HMAC takes keys of any length");
        derive.update(b"supportdesk page tokens v1");
        PageTokenKeys::new(vec![derive.finalize().into_bytes().to_vec()])
    } else {
        PageTokenKeys::new(
            auth.page_token_keys
                .iter()
                .map(|key| key.expose_secret().as_bytes().to_vec())
                .collect(),
        )
    }
}

/// gzip and zstd on every API service: a request compressed with either is accepted, and a
/// response is compressed with the first of them the client lists in `grpc-accept-encoding`
/// (uncompressed when it lists none). Implemented by each generated server.
trait Compressed {
    fn compressed(self) -> Self;
}

macro_rules! compressed {
    ($($server:ident),* $(,)?) => {$(
        impl<T> Compressed for $server<T> {
            fn compressed(self) -> Self {
                self.accept_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Zstd)
                    .send_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Zstd)
            }
        }
    )*};
}

use crate::wire::proto::v1::attachment_service_server::AttachmentServiceServer;

compressed!(
    AccountServiceServer,
    ApiKeyServiceServer,
    AttachmentServiceServer,
    AuthServiceServer,
    BillingServiceServer,
    DashboardServiceServer,
    EventServiceServer,
    NotificationServiceServer,
    OperationsServer,
    TicketServiceServer,
    UserServiceServer,
    WebhookEndpointServiceServer,
    WebhookServiceServer,
);
