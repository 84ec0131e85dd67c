//! Reads that may be served by a streaming replica (`DATABASE_READ_REPLICA_URL`,
//! docs/dashboard.md). Before each read the replica is asked how far behind the primary it is
//! (one round trip on the connection the read then uses); a replica further behind than
//! `DATABASE_READ_REPLICA_MAX_LAG_MS`, or one that does not answer, sends the read to the
//! primary. A replica that failed is passed over for [`REPLICA_PAUSE`], so that a dead replica
//! costs one short connect timeout per pause, not one per read.
//!
//! The lag is the age of the last transaction replayed while WAL received is still waiting to
//! be replayed, and zero once everything received is replayed: an idle primary does not make
//! the replica look stale.

use std::sync::Mutex;
use std::time::Duration;

use diesel::sql_types;
use diesel_async::RunQueryDsl;
use secrecy::SecretString;
use tokio::time::Instant;

use super::{PgPool, PooledConnection, build_pool, connection};
use crate::configuration::DatabaseSettings;
use crate::errors::AppResult;
use crate::telemetry::metrics::ReplicaMetrics;

/// How long a replica that failed is passed over.
pub const REPLICA_PAUSE: Duration = Duration::from_secs(1);

/// The longest a read waits for a replica connection before going to the primary.
const REPLICA_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Where a read was served, and how far behind the primary its data may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadSource {
    pub replica: bool,
    /// The replica's replay lag when read there; zero on the primary.
    pub staleness: Duration,
}

impl ReadSource {
    const PRIMARY: Self = Self {
        replica: false,
        staleness: Duration::ZERO,
    };
}

/// The primary's pool, and the replica's when one is configured.
#[derive(Clone)]
pub struct ReadPools {
    primary: PgPool,
    replica: Option<Replica>,
}

#[derive(Clone)]
struct Replica {
    pool: PgPool,
    max_lag: Duration,
    /// Until when the replica is passed over after a failure.
    paused_until: std::sync::Arc<Mutex<Option<Instant>>>,
    metrics: ReplicaMetrics,
}

impl std::fmt::Debug for ReadPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadPools")
            .field("replica", &self.replica.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(diesel::QueryableByName)]
struct Lag {
    #[diesel(sql_type = sql_types::Double)]
    seconds: f64,
}

/// The replica's replay lag, zero on a server that is not replaying (a primary).
const LAG_SQL: &str = "SELECT CASE \
     WHEN NOT pg_is_in_recovery() THEN 0 \
     WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 \
     ELSE coalesce(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 0) \
     END::float8 AS seconds";

impl ReadPools {
    /// Reads from `primary` alone.
    pub fn primary_only(primary: PgPool) -> Self {
        Self {
            primary,
            replica: None,
        }
    }

    /// Reads from the replica `settings` names (if any) while it is fresh, else from `primary`.
    pub fn new(
        primary: PgPool,
        settings: &DatabaseSettings,
        longest_statement: Duration,
        metrics: ReplicaMetrics,
    ) -> Self {
        let replica = settings.read_replica_url.as_ref().map(|url| {
            let replica_settings = DatabaseSettings {
                url: SecretString::clone(url),
                pool_size: settings.pool_size,
                connect_timeout: settings.connect_timeout.min(REPLICA_CONNECT_TIMEOUT),
                read_replica_url: None,
                read_replica_max_lag: settings.read_replica_max_lag,
                read_replica_lag_sample_interval: settings.read_replica_lag_sample_interval,
            };
            Replica {
                pool: build_pool(&replica_settings, longest_statement),
                max_lag: settings.read_replica_max_lag,
                paused_until: std::sync::Arc::default(),
                metrics,
            }
        });
        Self { primary, replica }
    }

    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// Whether a replica is configured.
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// Reads the replica's replay lag into `supportdesk_db_replica_lag_seconds` now, whether or
    /// not a read asks: the `replica-lag-sampler` task's pass, so that the gauge (and the
    /// alert on it) moves on an idle service. `None` without a replica. A replica that does not
    /// answer is passed over by reads for [`REPLICA_PAUSE`], as when a read finds it so; the
    /// gauge then keeps its last value.
    pub async fn sample_replica_lag(&self) -> Option<AppResult<Duration>> {
        let replica = self.replica.as_ref()?;
        let sampled = async {
            let mut connection = connection(&replica.pool).await?;
            let lag = diesel::sql_query(LAG_SQL)
                .get_result::<Lag>(&mut *connection)
                .await?;
            Ok(Duration::from_secs_f64(lag.seconds.max(0.0)))
        };
        let sampled: AppResult<Duration> = sampled.await;
        match &sampled {
            Ok(lag) => replica.metrics.lag_seconds.set(lag.as_secs_f64()),
            Err(_) => replica.pause(),
        }
        Some(sampled)
    }

    /// A connection for a read that tolerates the replica's bounded lag: the replica's when it
    /// answers and is within the bound, else the primary's.
    pub async fn connection(&self) -> AppResult<(PooledConnection<'_>, ReadSource)> {
        if let Some(replica) = &self.replica
            && let Some(found) = replica.fresh_connection().await
        {
            return Ok(found);
        }
        let connection = connection(&self.primary).await?;
        if let Some(replica) = &self.replica {
            replica.metrics.reads_from_primary.increment();
        }
        Ok((connection, ReadSource::PRIMARY))
    }
}

impl Replica {
    fn paused(&self) -> bool {
        let paused_until = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        paused_until.is_some_and(|until| Instant::now() < until)
    }

    fn pause(&self) {
        *self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Instant::now() + REPLICA_PAUSE);
    }

    async fn fresh_connection(&self) -> Option<(PooledConnection<'_>, ReadSource)> {
        if self.paused() {
            self.metrics.fallbacks_unreachable.increment();
            return None;
        }
        let mut connection = match connection(&self.pool).await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(%error, "the read replica cannot be reached: reading from the primary");
                self.metrics.fallbacks_unreachable.increment();
                self.pause();
                return None;
            }
        };
        let lag = match diesel::sql_query(LAG_SQL)
            .get_result::<Lag>(&mut *connection)
            .await
        {
            Ok(lag) => Duration::from_secs_f64(lag.seconds.max(0.0)),
            Err(error) => {
                tracing::warn!(%error, "the read replica did not answer: reading from the primary");
                self.metrics.fallbacks_unreachable.increment();
                self.pause();
                return None;
            }
        };
        self.metrics.lag_seconds.set(lag.as_secs_f64());
        if lag > self.max_lag {
            tracing::info!(?lag, max_lag = ?self.max_lag, "the read replica lags: reading from the primary");
            self.metrics.fallbacks_lagging.increment();
            return None;
        }
        self.metrics.reads_from_replica.increment();
        Some((
            connection,
            ReadSource {
                replica: true,
                staleness: lag,
            },
        ))
    }
}
