//! PostgreSQL: how full the pool is, and the read replica as the dashboard's reads see it.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::instruments::{
    Counter, Gauge, OneLabel, SecondsGauge, Timing, TwoLabels, counters_by, gauge,
};

/// The read replica as the dashboard's reads see it (`crate::db::read_replica`): its replay lag
/// at the last read that asked, and where reads went. Clones share the series.
#[derive(Clone, Debug, Default)]
pub struct ReplicaMetrics {
    /// The replica's replay lag at the last check, in seconds.
    pub lag_seconds: SecondsGauge,
    pub reads_from_replica: Counter,
    pub reads_from_primary: Counter,
    /// Reads sent to the primary because the replica lagged past the bound.
    pub fallbacks_lagging: Counter,
    /// Reads sent to the primary because the replica did not answer (or was passed over after
    /// failing).
    pub fallbacks_unreachable: Counter,
}

impl ReplicaMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let lag_seconds = SecondsGauge::default();
        registry.register_with_unit(
            "supportdesk_db_replica_lag",
            "How far the read replica's replay was behind the primary at the last read that asked (0 when caught up)",
            prometheus_client::registry::Unit::Seconds,
            lag_seconds.0.clone(),
        );
        let [reads_from_replica, reads_from_primary] = counters_by(
            registry,
            "supportdesk_db_replica_reads",
            "Reads that may use the read replica, by where they were served (replica, primary)",
            "target",
            ["replica", "primary"],
        );
        let [fallbacks_lagging, fallbacks_unreachable] = counters_by(
            registry,
            "supportdesk_db_replica_fallbacks",
            "Reads sent to the primary instead of the read replica, by reason (lagging: past DATABASE_READ_REPLICA_MAX_LAG_MS; unreachable: it did not answer)",
            "reason",
            ["lagging", "unreachable"],
        );
        Self {
            lag_seconds,
            reads_from_replica,
            reads_from_primary,
            fallbacks_lagging,
            fallbacks_unreachable,
        }
    }
}

// ---- saturation: the database pool and build info ----

/// How full the PostgreSQL pool is, sampled from bb8's own state and statistics at each scrape
/// (no cost on the request path), and the build's version. The pool is read through a function
/// startup hands over ([`Self::watch_database_pool`]): this module sits below `db`.
///
/// bb8 counts checkouts and the time they waited itself; its cumulative totals are exported as
/// counters (`rate(wait_seconds_total) / rate(checkouts_total{outcome="waited"})` is the mean
/// wait of the checkouts that waited).
pub struct SaturationMetrics {
    /// Reads the pool being watched, once startup hands it over.
    pool: OnceLock<Box<dyn Fn() -> PoolSample + Send + Sync>>,
    /// Held while a scrape samples, so that concurrent scrapes add each delta once.
    sampling: Mutex<()>,
    in_use: Gauge,
    idle: Gauge,
    max: Gauge,
    waiting: Gauge,
    /// Checkouts completed, in the order direct, waited, timed out.
    checkouts: [Counter; 3],
    wait_seconds: PromCounter<f64, AtomicU64>,
    /// The time of each checkout through `crate::db::connection`, waiting included: the pool
    /// records into it once startup hands it over (`PgPool::time_checkouts_with`).
    pub checkout_duration: Timing,
}

impl std::fmt::Debug for SaturationMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaturationMetrics")
            .field("watching_a_pool", &self.pool.get().is_some())
            .finish_non_exhaustive()
    }
}

/// The pool's state at one scrape, and its cumulative checkout totals (bb8's statistics).
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolSample {
    /// Open connections, checked out or idle.
    pub connections: u32,
    pub idle: u32,
    /// Checkouts waiting for a connection now.
    pub waiting: u64,
    /// Checkouts completed since start: at once, after waiting, and timed out.
    pub direct: u64,
    pub waited: u64,
    pub timed_out: u64,
    /// The time all checkouts spent waiting, since start.
    pub wait_time: Duration,
}

impl SaturationMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let connections = Family::<OneLabel, PromGauge<u64, AtomicU64>>::default();
        registry.register(
            "supportdesk_db_pool_connections",
            "PostgreSQL pool connections by state (in_use: checked out; idle: open and free), sampled at scrape",
            connections.clone(),
        );
        let wait_seconds = PromCounter::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "supportdesk_db_pool_checkout_wait",
            "Total time checkouts of a PostgreSQL pool connection spent waiting for one to come free",
            prometheus_client::registry::Unit::Seconds,
            wait_seconds.clone(),
        );
        let checkout_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register_with_unit(
            "supportdesk_db_pool_checkout_duration",
            "Time each checkout of a PostgreSQL pool connection took, waiting for one to come free included",
            prometheus_client::registry::Unit::Seconds,
            checkout_duration.clone(),
        );
        let build_info = Family::<TwoLabels, PromGauge<u64, AtomicU64>>::default();
        registry.register(
            "supportdesk_build_info",
            "Always 1; its labels name the running build (version: the crate's version)",
            build_info.clone(),
        );
        build_info
            .get_or_create(&[
                ("version", env!("CARGO_PKG_VERSION")),
                ("name", env!("CARGO_PKG_NAME")),
            ])
            .set(1);
        Self {
            pool: OnceLock::new(),
            sampling: Mutex::new(()),
            in_use: Gauge(connections.get_or_create_owned(&[("state", "in_use")])),
            idle: Gauge(connections.get_or_create_owned(&[("state", "idle")])),
            max: gauge(
                registry,
                "supportdesk_db_pool_max_connections",
                "The most connections the PostgreSQL pool opens (DATABASE_POOL_SIZE)",
            ),
            waiting: gauge(
                registry,
                "supportdesk_db_pool_waiting",
                "Checkouts waiting for a PostgreSQL pool connection to come free, sampled at scrape",
            ),
            checkouts: counters_by(
                registry,
                "supportdesk_db_pool_checkouts",
                "PostgreSQL pool checkouts completed, by outcome (direct: a connection was free; waited: one came free in time; timed_out: none did)",
                "outcome",
                ["direct", "waited", "timed_out"],
            ),
            wait_seconds,
            checkout_duration: Timing(checkout_duration),
        }
    }

    /// Samples the pool of at most `max_size` connections through `read` at every scrape from
    /// now on.
    pub fn watch_database_pool(
        &self,
        max_size: u32,
        read: impl Fn() -> PoolSample + Send + Sync + 'static,
    ) {
        self.max.set(u64::from(max_size));
        let _ = self.pool.set(Box::new(read));
    }

    /// Reads the watched pool's state into the series.
    pub(super) fn sample(&self) {
        let Some(read) = self.pool.get() else {
            return;
        };
        let _sampling = self.sampling.lock().unwrap_or_else(PoisonError::into_inner);
        let sample = read();
        self.idle.set(u64::from(sample.idle));
        self.in_use
            .set(u64::from(sample.connections.saturating_sub(sample.idle)));
        self.waiting.set(sample.waiting);
        let [direct, waited, timed_out] = &self.checkouts;
        for (counter, total) in [
            (direct, sample.direct),
            (waited, sample.waited),
            (timed_out, sample.timed_out),
        ] {
            counter.0.inc_by(total.saturating_sub(counter.get()));
        }
        let waited_for = sample.wait_time.as_secs_f64() - self.wait_seconds.get();
        if waited_for > 0.0 {
            self.wait_seconds.inc_by(waited_for);
        }
    }
}
