//! The health gates' watcher: applies the providers' circuit breakers to health, the payment
//! provider's to BillingService and the email provider's to NotificationService
//! ([`Health::watch_gates`]). Without it, an opened breaker would leave those services SERVING
//! until the next change of the dependencies, so both are NOT_SERVING while it is not running.

use std::time::Duration;

use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task};
use crate::resilience::breaker::CircuitBreaker;
use crate::telemetry::health::Health;
use crate::wire::proto::v1::billing_service_server;

/// The task's name in metrics and logs.
pub const NAME: &str = "health-gates";

/// The services whose health follows a provider's circuit breaker: BillingService (payments)
/// and NotificationService (email).
pub const GATED_BY_BREAKERS: [&str; 2] = [
    billing_service_server::SERVICE_NAME,
    crate::providers::email::HEALTH_SERVICE_NAME,
];

/// How often the gates are looked at besides each breaker's change: a breaker's open →
/// half-open is only seen by looking.
const INTERVAL: Duration = Duration::from_millis(250);

/// The watcher of `health`'s gates, woken by each of `breakers`.
pub fn task(health: Health, breakers: Vec<CircuitBreaker>) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::Services(&GATED_BY_BREAKERS),
        move |context| {
            super::returns_ok(health.clone().watch_gates(
                breakers.iter().map(CircuitBreaker::subscribe).collect(),
                INTERVAL,
                context.stop,
            ))
        },
    )
}
