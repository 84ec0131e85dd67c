//! The API servers: one tonic server per proto service, each with its message size limit and
//! compression, behind the middleware stack, beside health and reflection, in one router
//! ([`api_router`]). The services served must be exactly the API services the proto declares
//! ([`ensure_served_as_declared`]): a service added to one and not the other stops the start.

use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::pb::health_server::{Health as HealthApi, HealthServer};
use tower::layer::util::{Identity, Stack};

use crate::api::accounts::AccountApi;
use crate::api::api_keys::ApiKeyApi;
use crate::api::attachments::AttachmentApi;
use crate::api::auth::AuthApi;
use crate::api::billing::BillingApi;
use crate::api::custom_fields::CustomFieldApi;
use crate::api::dashboard::DashboardApi;
use crate::api::events::EventApi;
use crate::api::groups::GroupApi;
use crate::api::notifications::NotificationApi;
use crate::api::operations::OperationApi;
use crate::api::schedules::ScheduleApi;
use crate::api::sla_policies::SlaPolicyApi;
use crate::api::tickets::TicketApi;
use crate::api::users::UserApi;
use crate::api::views::ViewApi;
use crate::api::webhook_endpoints::WebhookEndpointApi;
use crate::api::webhooks::WebhookApi;
use crate::app::services::Services;
use crate::configuration::ServerSettings;
use crate::middleware::MiddlewareLayer;
use crate::wire::methods::MethodTable;
use crate::wire::proto;
use crate::wire::proto::google::longrunning::operations_server::OperationsServer;
use crate::wire::proto::v1::account_service_server::AccountServiceServer;
use crate::wire::proto::v1::api_key_service_server::ApiKeyServiceServer;
use crate::wire::proto::v1::attachment_service_server::AttachmentServiceServer;
use crate::wire::proto::v1::auth_service_server::AuthServiceServer;
use crate::wire::proto::v1::billing_service_server::BillingServiceServer;
use crate::wire::proto::v1::custom_field_service_server::CustomFieldServiceServer;
use crate::wire::proto::v1::dashboard_service_server::DashboardServiceServer;
use crate::wire::proto::v1::event_service_server::EventServiceServer;
use crate::wire::proto::v1::group_service_server::GroupServiceServer;
use crate::wire::proto::v1::notification_service_server::NotificationServiceServer;
use crate::wire::proto::v1::schedule_service_server::ScheduleServiceServer;
use crate::wire::proto::v1::sla_policy_service_server::SlaPolicyServiceServer;
use crate::wire::proto::v1::ticket_service_server::TicketServiceServer;
use crate::wire::proto::v1::user_service_server::UserServiceServer;
use crate::wire::proto::v1::view_service_server::ViewServiceServer;
use crate::wire::proto::v1::webhook_endpoint_service_server::WebhookEndpointServiceServer;
use crate::wire::proto::v1::webhook_service_server::WebhookServiceServer;

/// Every server of the instance behind the middleware stack, ready to serve.
pub(super) type ApiRouter = Router<Stack<MiddlewareLayer, Identity>>;

/// The router of every API server built from `services`, with `health` and reflection, behind
/// the middleware stack; and the names of the API services it serves.
pub(super) fn api_router(
    services: &Services,
    health: HealthServer<impl HealthApi>,
    methods: &'static MethodTable,
    settings: &ServerSettings,
) -> anyhow::Result<(ApiRouter, Vec<&'static str>)> {
    let max_bytes = settings.max_request_bytes;
    let operations = OperationsServer::new(OperationApi::new(
        services.operations.clone(),
        services.page_tokens.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let accounts = AccountServiceServer::new(AccountApi::new(
        services.accounts.clone(),
        services.idempotency.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let api_keys = ApiKeyServiceServer::new(ApiKeyApi::new(
        services.api_keys.clone(),
        services.idempotency.clone(),
        services.page_tokens.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let groups = GroupServiceServer::new(GroupApi::new(
        services.groups.clone(),
        services.idempotency.clone(),
        services.page_tokens.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let schedules = ScheduleServiceServer::new(ScheduleApi::new(
        services.schedules.clone(),
        services.idempotency.clone(),
        services.page_tokens.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let sla_policies = SlaPolicyServiceServer::new(SlaPolicyApi::new(
        services.sla_policies.clone(),
        services.idempotency.clone(),
        services.page_tokens.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let views = ViewServiceServer::new(ViewApi::new(
        services.views.clone(),
        services.idempotency.clone(),
        services.page_tokens.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let attachment_message_limit = crate::api::attachments::message_limit(max_bytes);
    let attachments = AttachmentServiceServer::new(AttachmentApi::new(
        services.attachments.clone(),
        services.idempotency.clone(),
        services.page_tokens.clone(),
        attachment_message_limit,
    ))
    // UploadAttachment's messages are the pieces Envoy cuts a REST body into.
    .max_decoding_message_size(attachment_message_limit)
    .compressed();
    let auth = AuthServiceServer::new(AuthApi::new(
        services.authentication.clone(),
        services.resets.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let billing = BillingServiceServer::new(BillingApi::new(
        services.billing.clone(),
        services.idempotency.clone(),
        services.page_tokens.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let dashboard = DashboardServiceServer::new(DashboardApi::new(
        services.dashboard.clone(),
        services.page_tokens.clone(),
        methods,
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let notifications = NotificationServiceServer::new(NotificationApi::new(
        services.notifications.clone(),
        services.page_tokens.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let tickets = TicketServiceServer::new(TicketApi::new(
        services.tickets.clone(),
        services.views.clone(),
        services.idempotency.clone(),
        services.page_tokens.clone(),
        services.operations.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let users = UserServiceServer::new(UserApi::new(
        services.users.clone(),
        services.idempotency.clone(),
        services.page_tokens.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let webhooks = WebhookServiceServer::new(WebhookApi::new(
        services.payment_events.clone(),
        services.page_tokens.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let webhook_endpoints = WebhookEndpointServiceServer::new(WebhookEndpointApi::new(
        services.webhook_endpoints.clone(),
        services.idempotency.clone(),
        services.page_tokens.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let custom_fields = CustomFieldServiceServer::new(CustomFieldApi::new(
        services.custom_fields.clone(),
        services.idempotency.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .compressed();
    let events = EventServiceServer::new(EventApi::new(services.events.clone()))
        .max_decoding_message_size(max_bytes)
        .compressed();
    let served = vec![
        served_name(&operations),
        served_name(&accounts),
        served_name(&api_keys),
        served_name(&attachments),
        served_name(&auth),
        served_name(&billing),
        served_name(&custom_fields),
        served_name(&dashboard),
        served_name(&groups),
        served_name(&notifications),
        served_name(&schedules),
        served_name(&sla_policies),
        served_name(&tickets),
        served_name(&users),
        served_name(&views),
        served_name(&webhooks),
        served_name(&webhook_endpoints),
        served_name(&events),
    ];
    ensure_served_as_declared(methods, &served)?;
    // grpcurl 1.8 speaks only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let router = Server::builder()
        .http2_keepalive_interval(Some(settings.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(settings.http2_keepalive_timeout))
        .max_concurrent_streams(Some(settings.max_concurrent_streams))
        // Above the service's own header limit, so that a direct gRPC client over it gets
        // RESOURCE_EXHAUSTED `HEADERS_TOO_LARGE` from the middleware rather than hyper's bare
        // HTTP 431; only beyond twice the limit does hyper refuse by itself.
        .http2_max_header_list_size(
            u32::try_from(settings.max_request_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
        )
        .concurrency_limit_per_connection(settings.max_concurrent_streams as usize)
        .layer(MiddlewareLayer::new(
            methods,
            settings,
            services.authenticator.clone(),
            services.limiter.clone(),
            services.ticket_cache.clone(),
            services.metrics.rpcs().clone(),
        ))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(operations)
        .add_service(accounts)
        .add_service(api_keys)
        .add_service(attachments)
        .add_service(auth)
        .add_service(billing)
        .add_service(custom_fields)
        .add_service(dashboard)
        .add_service(groups)
        .add_service(schedules)
        .add_service(sla_policies)
        .add_service(views)
        .add_service(notifications)
        .add_service(tickets)
        .add_service(users)
        .add_service(webhooks)
        .add_service(webhook_endpoints)
        .add_service(events);
    Ok((router, served))
}

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

compressed!(
    AccountServiceServer,
    ApiKeyServiceServer,
    AttachmentServiceServer,
    AuthServiceServer,
    BillingServiceServer,
    CustomFieldServiceServer,
    DashboardServiceServer,
    EventServiceServer,
    GroupServiceServer,
    ScheduleServiceServer,
    SlaPolicyServiceServer,
    ViewServiceServer,
    NotificationServiceServer,
    OperationsServer,
    TicketServiceServer,
    UserServiceServer,
    WebhookEndpointServiceServer,
    WebhookServiceServer,
);
