//! What health reports at start: liveness SERVING at once; every API service served (and
//! NotificationService) NOT_SERVING until the dependency probe's first answer; and the gates
//! that hold a service NOT_SERVING while what it depends on outside is missing or failing.

use std::sync::Arc;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::app::services::Services;
use crate::telemetry::health::{Health, LIVENESS_SERVICE, ServiceGate};
use crate::wire::proto::v1::{
    attachment_service_server, billing_service_server, webhook_service_server,
};

/// NotificationService's health name (`crate::providers::email::HEALTH_SERVICE_NAME`).
const NOTIFICATION_SERVICE: &str = crate::providers::email::HEALTH_SERVICE_NAME;

/// The health of the API services `served`, reported through `reporter`, gated by what
/// `services` depend on.
pub(super) async fn build(
    reporter: HealthReporter,
    served: &[&'static str],
    services: &Services,
) -> Health {
    // Liveness follows nothing: SERVING while the process answers at all.
    reporter
        .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
        .await;
    // BillingService serves only with a provider whose breaker is closed: an open breaker
    // refuses every charge, and load balancers should send billing traffic elsewhere.
    let billing_gate: ServiceGate = match services.payment_provider.clone() {
        Some(provider) => Arc::new(move || {
            provider.breaker().state() == crate::providers::payments::BreakerState::Closed
        }),
        None => Arc::new(|| false),
    };
    // WebhookService serves only with a signing secret: without one every delivery is
    // refused (the provider keeps retrying), so the provider's traffic belongs elsewhere.
    let webhooks_configured = services.payment_events.is_configured();
    let webhook_gate: ServiceGate = Arc::new(move || webhooks_configured);
    // AttachmentService serves while the store's breaker is closed (docs/attachments.md).
    let storage_gate: ServiceGate = match services.storage.clone() {
        Some(storage) => Arc::new(move || storage.is_available()),
        None => Arc::new(|| false),
    };
    // NotificationService serves while an email provider is configured and its breaker is
    // not open (half-open: the probe is how it recovers). Email being down takes nothing
    // else down: notifications wait in the outbox.
    let notification_gate: ServiceGate = match services.email_sender.clone() {
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
        .with_gate(billing_service_server::SERVICE_NAME, billing_gate)
        .with_gate(webhook_service_server::SERVICE_NAME, webhook_gate)
        .with_gate(attachment_service_server::SERVICE_NAME, storage_gate)
        .with_gate(NOTIFICATION_SERVICE, notification_gate);
    // Until the first probe says otherwise, nothing is known to work.
    health.set_all(ServingStatus::NotServing).await;
    health
}
