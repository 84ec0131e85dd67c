//! `grpc.health.v1.Health`: the overall status (`""`) and one per API service, all driven by a
//! background probe of PostgreSQL and Redis. A dependency that stops answering flips them to
//! NOT_SERVING within one probe interval plus the probe's timeout; its return flips them back.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::db::PgPool;
use crate::redis_pool::{Redis, RedisBackoff};

/// Sets the overall status (`""`) and every API service's at once.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    services: Vec<String>,
}

impl Health {
    /// `services`: the full names of the API services served (tonic's `NamedService::NAME`).
    pub fn new(reporter: HealthReporter, services: Vec<String>) -> Self {
        Self { reporter, services }
    }

    pub async fn set_all(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for name in &self.services {
            self.reporter.set_service_status(name, status).await;
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
