//! `DATABASE_*`: the PostgreSQL pool.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::reader::Reader;

#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: may hold a password, hence secret.
    pub url: SecretString,
    /// `DATABASE_POOL_SIZE`
    pub pool_size: u32,
    /// `DATABASE_CONNECT_TIMEOUT_MS`: how long a request waits for a connection before it is
    /// answered UNAVAILABLE. Short on purpose: bb8's default of 30 s outlives every client.
    pub connect_timeout: Duration,
    /// `DATABASE_READ_REPLICA_URL`: a streaming replica of the primary the dashboard reads from
    /// while it is fresh enough (docs/dashboard.md); unset: every read goes to the primary.
    pub read_replica_url: Option<SecretString>,
    /// `DATABASE_READ_REPLICA_MAX_LAG_MS`: a replica further behind than this is passed over
    /// for the primary.
    pub read_replica_max_lag: Duration,
    /// `DATABASE_READ_REPLICA_LAG_SAMPLE_INTERVAL_MS`: how often the `replica-lag-sampler` task
    /// reads the replica's lag into `supportdesk_db_replica_lag_seconds` (with a replica only).
    pub read_replica_lag_sample_interval: Duration,
}

impl DatabaseSettings {
    /// The URL with the database name replaced: tests clone one database per test.
    pub fn with_database_name(&self, name: &str) -> SecretString {
        let url = self.url.expose_secret();
        let base = url.split('?').next().unwrap_or(url);
        let query = url.strip_prefix(base).unwrap_or("");
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        SecretString::from(format!("{server}/{name}{query}"))
    }
}

impl Reader<'_> {
    pub(super) fn database(&mut self) -> DatabaseSettings {
        let settings = DatabaseSettings {
            url: self.secret_url("DATABASE_URL", &["postgres", "postgresql"]),
            pool_size: self.parsed("DATABASE_POOL_SIZE", 10),
            connect_timeout: self.millis("DATABASE_CONNECT_TIMEOUT_MS", 2_000),
            read_replica_url: self
                .raw("DATABASE_READ_REPLICA_URL")
                .is_some()
                .then(|| self.secret_url("DATABASE_READ_REPLICA_URL", &["postgres", "postgresql"])),
            read_replica_max_lag: self.millis("DATABASE_READ_REPLICA_MAX_LAG_MS", 5_000),
            read_replica_lag_sample_interval: self
                .millis("DATABASE_READ_REPLICA_LAG_SAMPLE_INTERVAL_MS", 5_000),
        };
        self.positive("DATABASE_POOL_SIZE", settings.pool_size);
        settings
    }
}
