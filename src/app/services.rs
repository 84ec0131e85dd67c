//! The domain services, wired to the pools and to each other: everything the API servers
//! (`servers.rs`), the health gates (`health.rs`) and the background tasks (`tasks.rs`) are
//! built from, constructed once by [`Services::build`].

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::principals::{ChangeWindow, PrincipalStates};
use crate::auth::{Authenticator, PasswordHasher, SessionStore, TokenIssuer};
use crate::configuration::{AuthSettings, Settings, WebhookReceivingSettings};
use crate::db::PgPool;
use crate::db::read_replica::ReadPools;
use crate::domain::PageTokenKeys;
use crate::idempotency::{FingerprintKey, IdempotencyPolicy};
use crate::providers::email::EmailSender;
use crate::providers::payments::StripeHttpProvider;
use crate::providers::storage::ObjectStorage;
use crate::rate_limit::RateLimiter;
use crate::redis::connection::Redis;
use crate::redis::keys::RedisKeys;
use crate::redis::ticket_cache::TicketCache;
use crate::resilience::stream_limit::StreamLimits;
use crate::service::event_tail::EventTail;
use crate::service::events::{EventFeed, FeedSettings};
use crate::service::outbound_webhooks::secrets::SecretBox;
use crate::service::{
    Accounts, ApiKeys, Attachments, Authentication, Billing, CustomFields, Dashboard,
    ExportSettings, Groups, Notifications, Operations, PasswordResets, PaymentEvents, Schedules,
    SlaPolicies, TicketDesk, Users, Views, WebhookEndpointAdmin,
};
use crate::telemetry::metrics::{Metrics, PoolSample};

/// The operations behind the RPCs and the background tasks, wired to the pools and to each
/// other.
pub(super) struct Services {
    pub(super) metrics: Metrics,
    pub(super) idempotency: IdempotencyPolicy,
    pub(super) page_tokens: PageTokenKeys,
    pub(super) authenticator: Authenticator,
    pub(super) limiter: RateLimiter,
    pub(super) accounts: Accounts,
    pub(super) api_keys: ApiKeys,
    pub(super) groups: Groups,
    pub(super) schedules: Schedules,
    pub(super) sla_policies: SlaPolicies,
    pub(super) views: Views,
    pub(super) authentication: Authentication,
    pub(super) resets: PasswordResets,
    pub(super) tickets: TicketDesk,
    pub(super) ticket_cache: TicketCache,
    pub(super) users: Users,
    pub(super) operations: Operations,
    /// Wakes this instance's idle operation workers at once when an operation is accepted here.
    pub(super) wake_operation_workers: Arc<Notify>,
    /// The payment provider, when one is configured; BillingService refuses without it.
    pub(super) payment_provider: Option<Arc<StripeHttpProvider>>,
    pub(super) billing: Option<Billing>,
    pub(super) payment_events: PaymentEvents,
    /// Wakes the webhook workers: notified when a delivery stores a new event or an admin
    /// re-drives a dead one, so a worker need not wait for its next poll. Shared by the
    /// receiving service and every worker.
    pub(super) wake_payment_event_workers: Arc<Notify>,
    pub(super) notifications: Notifications,
    /// The email provider's sender, whenever one is configured (its breaker drives
    /// NotificationService's health even on an instance that runs no worker).
    pub(super) email_sender: Option<Arc<dyn EmailSender>>,
    pub(super) storage: Option<Arc<ObjectStorage>>,
    pub(super) attachments: Attachments,
    pub(super) read_pools: ReadPools,
    pub(super) dashboard: Dashboard,
    pub(super) endpoint_secrets: Arc<SecretBox>,
    pub(super) webhook_endpoints: WebhookEndpointAdmin,
    pub(super) custom_fields: CustomFields,
    /// Wakes the webhook delivery workers when an admin re-drives a delivery.
    pub(super) wake_delivery_workers: Arc<Notify>,
    /// One reader of new events for all of this instance's caught-up streams.
    pub(super) event_tail: EventTail,
    pub(super) events: EventFeed,
    /// Cancelled when the instance drains: long-lived streams (WatchEvents, exports) end then,
    /// so that draining waits for none of them; their clients resume elsewhere.
    pub(super) draining_streams: CancellationToken,
}

impl Services {
    pub(super) fn build(
        settings: &Settings,
        database: &PgPool,
        redis: &Redis,
        draining_streams: &CancellationToken,
    ) -> anyhow::Result<Self> {
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
        let wake_operation_workers = Arc::new(Notify::new());
        let operations = Operations::new(
            database.clone(),
            settings.operations.clone(),
            wake_operation_workers.clone(),
        );
        let tickets = TicketDesk::new(
            database.clone(),
            ticket_cache.clone(),
            settings.tickets.max_open_per_requester,
            settings.notifications.message_domain(),
        )
        .with_exports(ExportSettings {
            limit: settings.tickets.export_max_duration,
            places: StreamLimits::new(
                "exports",
                (
                    settings.tickets.export_max_per_account,
                    "EXPORT_MAX_CONCURRENT_PER_ACCOUNT",
                ),
                (
                    settings.tickets.export_max_per_instance,
                    "EXPORT_MAX_CONCURRENT_PER_INSTANCE",
                ),
            ),
            draining: draining_streams.clone(),
        });
        let payment_provider = match &settings.payment_provider {
            Some(settings) => Some(Arc::new(StripeHttpProvider::new(settings)?)),
            None => None,
        };
        let billing = payment_provider.clone().map(|provider| {
            Billing::new(database.clone(), provider)
                .counting_into(metrics.clone())
                .with_message_domain(settings.notifications.message_domain())
        });
        let wake_payment_event_workers = Arc::new(Notify::new());
        let payment_events = PaymentEvents::new(
            database.clone(),
            webhook_verifier(&settings.webhook_receiving),
            wake_payment_event_workers.clone(),
        );
        let notifications = Notifications::new(
            database.clone(),
            email_webhook_verifier(&settings.email_webhook),
        );
        let storage = match &settings.attachments.storage {
            Some(settings) => Some(Arc::new(ObjectStorage::new(settings)?)),
            None => None,
        };
        let attachments = Attachments::new(
            database.clone(),
            storage.clone(),
            settings.attachments.clone(),
        )
        .counting_into(metrics.clone());
        let read_pools = ReadPools::new(
            database.clone(),
            &settings.database,
            settings.server.request_timeout,
            metrics.replica().clone(),
        );
        let dashboard = Dashboard::new(read_pools.clone());
        let endpoint_secrets = Arc::new(SecretBox::new(
            settings.outbound_webhooks.secrets_key.as_ref(),
            &settings.auth.jwt_secret,
        ));
        let wake_delivery_workers = Arc::new(Notify::new());
        let webhook_endpoints = WebhookEndpointAdmin::new(
            database.clone(),
            endpoint_secrets.clone(),
            settings.outbound_webhooks.clone(),
            wake_delivery_workers.clone(),
        );
        let outbound = &settings.outbound_webhooks;
        let event_tail = EventTail::new(database.clone(), outbound.watch_poll_interval);
        let events = EventFeed::new(
            database.clone(),
            FeedSettings {
                heartbeat: outbound.watch_heartbeat,
                max_duration: outbound.watch_max_duration,
                places: StreamLimits::new(
                    "event streams",
                    (
                        outbound.watch_max_per_account,
                        "WATCH_MAX_STREAMS_PER_ACCOUNT",
                    ),
                    (
                        outbound.watch_max_per_instance,
                        "WATCH_MAX_STREAMS_PER_INSTANCE",
                    ),
                ),
            },
            draining_streams.clone(),
            event_tail.clone(),
        )
        .counting_into(&metrics);
        let email_sender = match &settings.notifications.email {
            Some(email) => Some(crate::providers::email::sender_for(email)?),
            None => None,
        };
        if let Some(provider) = &payment_provider {
            provider.breaker().report_to(metrics.breakers());
        }
        if let Some(sender) = &email_sender {
            sender.breaker().report_to(metrics.breakers());
        }
        if let Some(storage) = &storage {
            storage.breaker().report_to(metrics.breakers());
        }
        Ok(Self {
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
            groups: Groups::new(database.clone()),
            schedules: Schedules::new(database.clone()),
            sla_policies: SlaPolicies::new(database.clone()),
            views: Views::new(database.clone()),
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
            tickets,
            ticket_cache,
            users: Users::new(database.clone(), hasher, sessions, principals).with_invitations(
                password_token_key(&settings.auth),
                settings.notifications.message_domain(),
            ),
            operations,
            wake_operation_workers,
            payment_provider,
            billing,
            payment_events,
            wake_payment_event_workers,
            notifications,
            email_sender,
            storage,
            attachments,
            read_pools,
            dashboard,
            endpoint_secrets,
            webhook_endpoints,
            custom_fields: CustomFields::new(database.clone()),
            wake_delivery_workers,
            event_tail,
            events,
            draining_streams: draining_streams.clone(),
            metrics,
        })
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
pub(super) fn password_token_key(auth: &AuthSettings) -> crate::domain::PasswordTokenKey {
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
