//! The dependency probe: PostgreSQL and Redis asked every `HEALTH_PROBE_INTERVAL_MS`, and the
//! answer written into the health statuses ([`Health::set_all`]). A dependency that stops
//! answering flips them to NOT_SERVING within one interval plus the probe's timeout. Without the
//! probe, health says nothing true: everything is NOT_SERVING while it is not running.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::db::PgPool;
use crate::jobs::{HealthEffect, RestartPolicy, SERVICE_BACKOFF, Task};
use crate::redis::connection::Redis;
use crate::telemetry::health::Health;

/// The task's name in metrics and logs.
pub const NAME: &str = "dependency-probe";

/// The task of `probe`.
pub fn task(probe: DependencyProbe) -> Task {
    Task::new(
        NAME,
        RestartPolicy::Restart(SERVICE_BACKOFF),
        HealthEffect::Everything,
        move |context| super::returns_ok(probe.clone().run(context.stop)),
    )
}

/// Probes the dependencies every `interval` until `stop` is cancelled.
#[derive(Clone)]
pub struct DependencyProbe {
    pub health: Health,
    pub database: PgPool,
    pub redis: Redis,
    pub interval: Duration,
    /// How long one probe may take before its dependency counts as down.
    pub timeout: Duration,
}

impl DependencyProbe {
    pub async fn run(self, stop: CancellationToken) {
        let mut was_healthy = None;
        loop {
            let (database, redis) = tokio::join!(self.database_is_up(), self.redis_is_up());
            let healthy = database && redis;
            // Redis answering ends the instance's rest after a failure, so that health and every
            // caller agree (with `RATE_LIMIT_ON_REDIS_FAILURE=closed`, a resting limiter refuses
            // every request).
            if redis {
                self.redis.health().recovered();
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
                // A caller's failure, or its first success after failures: probe at once.
                () = self.redis.health().next_change() => {}
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
            let mut connection = self.redis.get_while_resting().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .ok()
        };
        matches!(tokio::time::timeout(self.timeout, probe).await, Ok(Some(_)))
    }
}
