//! `grpc.health.v1.Health`: the overall status (`""`) and one per API service, all driven by a
//! background probe of PostgreSQL and Redis. A dependency that stops answering flips them to
//! NOT_SERVING within one probe interval plus the probe's timeout; its return flips them back.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use diesel_async::RunQueryDsl;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::db::PgPool;
use crate::redis_pool::{Redis, RedisBackoff};

/// Whether a service that depends on more than PostgreSQL and Redis can serve now (billing: its
/// payment provider is configured and the provider's circuit breaker is closed).
pub type ServiceGate = Arc<dyn Fn() -> bool + Send + Sync>;

/// Sets the overall status (`""`) and every API service's at once. A service with a gate is
/// SERVING only while the dependencies are up *and* its gate is open; the others follow the
/// dependencies alone.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    services: Vec<String>,
    gates: Vec<(String, ServiceGate)>,
    /// The status the dependencies last gave, so that a gate's change can be applied alone.
    overall: Arc<Mutex<ServingStatus>>,
}

impl Health {
    /// `services`: the full names of the API services served (tonic's `NamedService::NAME`).
    pub fn new(reporter: HealthReporter, services: Vec<String>) -> Self {
        Self {
            reporter,
            services,
            gates: Vec::new(),
            overall: Arc::new(Mutex::new(ServingStatus::NotServing)),
        }
    }

    /// Gates `service` by `gate` as well as by the dependencies.
    pub fn with_gate(mut self, service: &str, gate: ServiceGate) -> Self {
        self.gates.push((service.to_owned(), gate));
        self
    }

    pub async fn set_all(&self, status: ServingStatus) {
        *self.overall.lock().unwrap_or_else(PoisonError::into_inner) = status;
        self.reporter.set_service_status("", status).await;
        for name in &self.services {
            self.reporter
                .set_service_status(name, self.gated(name, status))
                .await;
        }
    }

    /// Re-applies the gates after one of them may have changed.
    pub async fn refresh_gates(&self) {
        let overall = *self.overall.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, _) in &self.gates {
            self.reporter
                .set_service_status(name, self.gated(name, overall))
                .await;
        }
    }

    /// Watches the gates every `interval` (a breaker's open → half-open is only seen by
    /// looking) and on every `changed` notification, until `stop`.
    pub async fn watch_gates(
        self,
        mut changed: Option<tokio::sync::watch::Receiver<crate::billing::BreakerState>>,
        interval: Duration,
        stop: CancellationToken,
    ) {
        let mut last: Vec<bool> = Vec::new();
        loop {
            let now: Vec<bool> = self.gates.iter().map(|(_, gate)| gate()).collect();
            if now != last {
                self.refresh_gates().await;
                last = now;
            }
            let change = async {
                // A dropped sender (no more changes) leaves the interval alone to poll.
                let still_sending = match changed.as_mut() {
                    Some(receiver) => receiver.changed().await.is_ok(),
                    None => false,
                };
                if !still_sending {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
                () = change => {}
            }
        }
    }

    fn gated(&self, service: &str, status: ServingStatus) -> ServingStatus {
        let closed = self
            .gates
            .iter()
            .any(|(name, gate)| name == service && !gate());
        if closed {
            ServingStatus::NotServing
        } else {
            status
        }
    }
}

/// Probes the dependencies every `interval` until `stop` is cancelled.
pub struct DependencyProbe {
    pub health: Health,
    pub database: PgPool,
    pub redis: Redis,
    pub interval: Duration,
    /// How long one probe may take before its dependency counts as down.
    pub timeout: Duration,
    /// The rate limiter's Redis backoff: a failure of the limiter, or its first success after
    /// failures, triggers a probe at once, and
    /// Redis answering the probe ends the limiter's pause, so that health and the limiter agree
    /// (with `RATE_LIMIT_ON_REDIS_FAILURE=closed`, a resting limiter refuses every request).
    pub limiter: RedisBackoff,
}

impl DependencyProbe {
    pub async fn run(self, stop: CancellationToken) {
        let mut was_healthy = None;
        loop {
            let (database, redis) = tokio::join!(self.database_is_up(), self.redis_is_up());
            let healthy = database && redis;
            if redis {
                self.limiter.recovered();
            }
            // Checked after the probe so that a shutdown which began meanwhile is not undone.
            if stop.is_cancelled() {
                return;
            }
            if was_healthy != Some(healthy) {
                if healthy {
                    tracing::info!("dependencies are up: serving");
                } else {
                    tracing::warn!(database, redis, "a dependency is down: not serving");
                }
                self.health
                    .set_all(if healthy {
                        ServingStatus::Serving
                    } else {
                        ServingStatus::NotServing
                    })
                    .await;
                was_healthy = Some(healthy);
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
                () = self.limiter.next_change() => {}
            }
        }
    }

    async fn database_is_up(&self) -> bool {
        let probe = async {
            let mut connection = self.database.get().await.ok()?;
            diesel::sql_query("SELECT 1")
                .execute(&mut *connection)
                .await
                .ok()
        };
        matches!(tokio::time::timeout(self.timeout, probe).await, Ok(Some(_)))
    }

    async fn redis_is_up(&self) -> bool {
        let probe = async {
            let mut connection = self.redis.get().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .ok()
        };
        matches!(tokio::time::timeout(self.timeout, probe).await, Ok(Some(_)))
    }
}
