//! PostgreSQL access: the bb8 pool of diesel-async connections, the embedded migrations, and the
//! statement limit that carries a request's deadline down to the server as
//! `statement_timeout`, so a query outliving its client is cancelled by PostgreSQL itself; and
//! the durable queue ([`queue`]) the background deliveries share.

pub mod models;
pub mod queue;
pub mod read_replica;
pub mod schema;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use diesel::sql_types::Text;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{
    AnsiTransactionManager, AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
    TransactionManager,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::{ExposeSecret, SecretString};

use crate::configuration::DatabaseSettings;
use crate::errors::{AppError, AppResult, Dependency};
use crate::telemetry::metrics::Timing;
use crate::telemetry::traces;

/// The bb8 pool of diesel-async connections, with the timer of its checkouts. Cheap to clone:
/// clones share the pool and the timer. Everything of bb8's pool is reached through it
/// (`Deref`); a checkout through [`connection`] or [`owned_connection`] is timed.
#[derive(Clone)]
pub struct PgPool {
    pool: bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>,
    /// Times each checkout once the metrics hand a histogram over ([`Self::time_checkouts_with`]).
    checkout_wait: Arc<OnceLock<Timing>>,
    refusals: Arc<Refusals>,
}

/// PostgreSQL refusing the pool's connections (down, restarting, unreachable), as bb8 reports
/// each failed attempt to connect.
///
/// bb8 keeps a checkout waiting for the whole connect timeout while its attempts fail, so with
/// PostgreSQL down every request would hold its caller that long to answer DATABASE_UNAVAILABLE
/// (and Envoy's retries of a keyed write three times that). With no connection in the pool, a
/// checkout fails as soon as an attempt is refused, and while the last refusal is more recent
/// than the connect timeout, at once. The attempts go on meanwhile (bb8's own retries, the
/// health probe's checkout every `HEALTH_PROBE_INTERVAL_MS`, the first checkout after the
/// window), so the first connection made after PostgreSQL is back ends it.
#[derive(Debug, Default)]
struct Refusals {
    /// The pool's connect timeout: how long a refusal answers for.
    window: Duration,
    last: std::sync::Mutex<Option<Instant>>,
    refused: tokio::sync::Notify,
}

/// bb8's error sink: where the pool's failed connection attempts are counted as refusals.
#[derive(Debug, Clone)]
struct RefusalSink(Arc<Refusals>);

impl bb8::ErrorSink<diesel_async::pooled_connection::PoolError> for RefusalSink {
    fn sink(&self, _: diesel_async::pooled_connection::PoolError) {
        *self.0.last.lock().expect("the refusals") = Some(Instant::now());
        self.0.refused.notify_waiters();
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<diesel_async::pooled_connection::PoolError>> {
        Box::new(self.clone())
    }
}

impl PgPool {
    /// Times every checkout through [`connection`] and [`owned_connection`] with `timing` from
    /// now on (the first timing handed over stays).
    pub fn time_checkouts_with(&self, timing: Timing) {
        let _ = self.checkout_wait.set(timing);
    }

    fn checked_out_after(&self, started: Instant) {
        if let Some(timing) = self.checkout_wait.get() {
            timing.observe(started.elapsed());
        }
    }

    /// Whether PostgreSQL refused a connection within the connect timeout and the pool has
    /// none. The refusal is looked at first: while there is none (the usual case) a checkout
    /// pays one uncontended lock for this, not a look at the pool's state.
    fn refusing(&self) -> bool {
        let refused_recently = self
            .refusals
            .last
            .lock()
            .expect("the refusals")
            .is_some_and(|at| at.elapsed() < self.refusals.window);
        refused_recently && self.pool.state().connections == 0
    }

    /// `checkout`, unless the pool is empty and PostgreSQL refuses: then DATABASE_UNAVAILABLE
    /// at once, or as soon as an attempt made meanwhile is refused.
    async fn checkout_unless_refused<C>(
        &self,
        checkout: impl Future<Output = Result<C, PoolRunError>>,
    ) -> AppResult<C> {
        if self.refusing() {
            return Err(self.refused());
        }
        let refused = async {
            loop {
                self.refusals.refused.notified().await;
                if self.pool.state().connections == 0 {
                    return;
                }
            }
        };
        // The checkout first: when a connection is free it is ready at once, and the refusals
        // are never waited on (no registration with their `Notify`, shared by every request).
        tokio::select! {
            biased;
            checked_out = checkout => checked_out.map_err(|error| checkout_failed(self, error)),
            () = refused => Err(self.refused()),
        }
    }

    fn refused(&self) -> AppError {
        AppError::Unavailable {
            dependency: Dependency::Database,
            source: anyhow::anyhow!("PostgreSQL refuses connections (the pool has none)"),
        }
    }
}

type PoolRunError = bb8::RunError<diesel_async::pooled_connection::PoolError>;

impl std::ops::Deref for PgPool {
    type Target = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

    fn deref(&self) -> &Self::Target {
        &self.pool
    }
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("state", &self.pool.state())
            .finish_non_exhaustive()
    }
}

pub type PooledConnection<'a> =
    bb8::PooledConnection<'a, AsyncDieselConnectionManager<AsyncPgConnection>>;

/// Every migration in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// A hash of `migrations/` computed by build.rs: test templates are keyed by it.
pub const MIGRATIONS_FINGERPRINT: &str = env!("MIGRATIONS_FINGERPRINT");

/// A pool that connects lazily: the service starts (and reports NOT_SERVING) while PostgreSQL is
/// down, and a request that cannot get a connection within `connect_timeout` fails fast.
///
/// A checkout costs no round trip (diesel-async's `Fast` recycling checks only that no
/// transaction was left open; a dead connection fails its first query and is replaced). Every
/// connection starts with `statement_timeout` at `longest_statement` (the longest request
/// deadline), which bounds the single reads that run outside a transaction; transactions lower
/// it to what is left of their request's deadline ([`Limits`]).
pub fn build_pool(settings: &DatabaseSettings, longest_statement: Duration) -> PgPool {
    let timeout_ms = longest_statement.as_millis().max(1);
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        Box::pin(async move {
            let mut connection = AsyncPgConnection::establish(&url).await?;
            diesel::sql_query(format!("SET statement_timeout = {timeout_ms}"))
                .execute(&mut connection)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            // A span per statement, only when traces are exported (docs/observability.md).
            if traces::enabled() {
                connection.set_instrumentation(traces::SqlSpans::default());
            }
            Ok(connection)
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.expose_secret(),
        config,
    );
    let refusals = Arc::new(Refusals {
        window: settings.connect_timeout,
        ..Refusals::default()
    });
    let pool = bb8::Pool::builder()
        .max_size(settings.pool_size)
        .connection_timeout(settings.connect_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .error_sink(Box::new(RefusalSink(refusals.clone())))
        .build_unchecked(manager);
    PgPool {
        pool,
        checkout_wait: Arc::default(),
        refusals,
    }
}

/// The key of the session-level advisory lock `migrate` holds while it migrates (an arbitrary
/// constant of this service: the ASCII bytes of `suppmigr`).
pub const MIGRATION_LOCK_KEY: i64 = 0x7375_7070_6d69_6772;

/// Applies every pending migration. diesel's migration harness is synchronous, so it runs on a
/// blocking thread through `AsyncConnectionWrapper` (on a runtime thread it would panic).
///
/// Safe to run twice and concurrently (a Kubernetes Job retried, two deploys racing, an
/// instance migrating at start while another does): the whole run holds the session-level
/// advisory lock [`MIGRATION_LOCK_KEY`], so a second run waits for the first, then finds nothing
/// pending. diesel runs each migration in its own transaction; the lock is released when the
/// run ends, and by PostgreSQL itself should the process die holding it.
pub async fn run_migrations(database_url: SecretString) -> anyhow::Result<Vec<String>> {
    tokio::task::spawn_blocking(move || {
        let mut connection: AsyncConnectionWrapper<AsyncPgConnection> =
            diesel::Connection::establish(database_url.expose_secret())
                .context("cannot connect to DATABASE_URL to migrate")?;
        diesel::connection::SimpleConnection::batch_execute(
            &mut connection,
            &format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"),
        )
        .context("cannot take the migration lock")?;
        let applied: anyhow::Result<Vec<String>> = connection
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|error| anyhow::anyhow!(error))
            .context("a migration failed");
        // Released at once rather than when the connection closes; a failure here changes
        // nothing (closing releases it).
        let _ = diesel::connection::SimpleConnection::batch_execute(
            &mut connection,
            &format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"),
        );
        applied
    })
    .await
    .context("the migration thread panicked")?
}

/// Creates the database `database_url` names when it does not exist yet, connecting to the same
/// server's `postgres` database to do so. Returns whether it created it. A concurrent creation
/// of the same database counts as existing.
pub async fn create_database_if_missing(database_url: &SecretString) -> anyhow::Result<bool> {
    let mut url = url::Url::parse(database_url.expose_secret())
        .map_err(|error| anyhow::anyhow!("DATABASE_URL is not a URL: {error}"))?;
    let name = percent_encoding::percent_decode_str(url.path().trim_start_matches('/'))
        .decode_utf8()
        .context("DATABASE_URL's database name is not UTF-8")?
        .into_owned();
    anyhow::ensure!(
        !name.is_empty() && !name.contains('/'),
        "DATABASE_URL names no database (its path should be /NAME)"
    );
    url.set_path("/postgres");
    let mut server = AsyncPgConnection::establish(url.as_str())
        .await
        .context("cannot connect to the `postgres` database of DATABASE_URL's server")?;
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let found: Found =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(&name)
            .get_result(&mut server)
            .await
            .context("cannot list the server's databases")?;
    if found.exists {
        return Ok(false);
    }
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match diesel::sql_query(format!("CREATE DATABASE {quoted}"))
        .execute(&mut server)
        .await
    {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") =>
        {
            Ok(false)
        }
        Err(error) => {
            Err(anyhow::anyhow!(error).context(format!("cannot create database {quoted}")))
        }
    }
}

/// The body of a [`transaction`], a [`savepoint`] or a [`with_connection`]: an async closure over
/// the connection, `async |conn| { ... }`. The trait names the future the closure returns, so that
/// the functions below can require it to be `Send` for every borrow of the connection (an
/// `AsyncFnOnce` bound alone cannot say so); it is implemented for every such closure.
pub trait Body<C, R>: AsyncFnOnce(C) -> R + FnOnce(C) -> <Self as Body<C, R>>::Fut {
    /// The closure's future.
    type Fut: Future<Output = R>;
}

impl<F, C, Fut, R> Body<C, R> for F
where
    F: AsyncFnOnce(C) -> R + FnOnce(C) -> Fut,
    Fut: Future<Output = R>,
{
    type Fut = Fut;
}

/// Runs `body` in one transaction on `connection`, opened in one round trip with its [`Limits`];
/// commits when the body succeeds and rolls back when it fails, answering the body's result,
/// whose error type takes `AppError` and diesel's errors. The one way the service runs a
/// transaction.
#[allow(
    clippy::manual_async_fn,
    reason = "the future is declared `Send` here, where the body's bounds prove it; an `async fn` leaves the proof to each caller, which fails for bodies that borrow (\"Send is not general enough\")"
)]
pub fn transaction<'a, 'conn, T, E, F>(
    connection: &'conn mut AsyncPgConnection,
    limits: Limits,
    body: F,
) -> impl Future<Output = Result<T, E>> + Send + 'conn
where
    for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> Result<T, E>
        + Body<&'r mut AsyncPgConnection, Result<T, E>, Fut: Send>
        + Send
        + 'a,
    T: Send,
    E: From<AppError> + From<diesel::result::Error> + Send,
    'a: 'conn,
{
    async move {
        let body = body;
        begin(&mut *connection, limits).await?;
        let result = body(&mut *connection).await;
        end(connection, result).await
    }
}

/// [`transaction`] on a pooled connection from `pool`, with its statements limited to `budget`
/// (what is left of the request's deadline).
#[allow(
    clippy::manual_async_fn,
    reason = "the future is declared `Send` here, where the body's bounds prove it; an `async fn` leaves the proof to each caller, which fails for bodies that borrow (\"Send is not general enough\")"
)]
pub fn pooled_transaction<'a, 'pool, T, F>(
    pool: &'pool PgPool,
    budget: Duration,
    body: F,
) -> impl Future<Output = AppResult<T>> + Send + 'pool
where
    for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> AppResult<T>
        + Body<&'r mut AsyncPgConnection, AppResult<T>, Fut: Send>
        + Send
        + 'a,
    T: Send,
    'a: 'pool,
{
    async move {
        let mut connection = connection(pool).await?;
        transaction(&mut connection, Limits::within(budget), body).await
    }
}

/// Runs `body` in a savepoint of the current transaction: a failure undoes the body's work and
/// keeps what the transaction did before (an idempotency key's claim, to store the failure on).
/// The savepoint is opened in the round trip that also lifts the lock wait the claim ran under
/// ([`Limits::waiting_for_locks_at_most`]): the body waits for its locks as long as the statement
/// timeout allows. It is never released: the commit ends it, and a release would cost a round
/// trip.
#[allow(
    clippy::manual_async_fn,
    reason = "the future is declared `Send` here, where the body's bounds prove it; an `async fn` leaves the proof to each caller, which fails for bodies that borrow (\"Send is not general enough\")"
)]
pub fn savepoint<'a, 'conn, T, E, F>(
    connection: &'conn mut AsyncPgConnection,
    body: F,
) -> impl Future<Output = Result<T, E>> + Send + 'conn
where
    for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> Result<T, E>
        + Body<&'r mut AsyncPgConnection, Result<T, E>, Fut: Send>
        + Send
        + 'a,
    T: Send,
    E: From<AppError> + Send,
    'a: 'conn,
{
    async move {
        let body = body;
        open_savepoint(&mut *connection).await?;
        let result = body(&mut *connection).await;
        if result.is_err() {
            roll_back_to_savepoint(connection).await?;
        }
        result
    }
}

/// Runs `body` on a pooled connection from `pool` without a transaction. For reads: under READ
/// COMMITTED a transaction would give them nothing (each statement sees its own snapshot either
/// way) and cost a BEGIN, a `set_config` and a COMMIT. Their statements are bounded by the
/// connection's `statement_timeout` (the longest request deadline).
#[allow(
    clippy::manual_async_fn,
    reason = "the future is declared `Send` here, where the body's bounds prove it; an `async fn` leaves the proof to each caller, which fails for bodies that borrow (\"Send is not general enough\")"
)]
pub fn with_connection<'a, 'pool, T, F>(
    pool: &'pool PgPool,
    body: F,
) -> impl Future<Output = AppResult<T>> + Send + 'pool
where
    for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> AppResult<T>
        + Body<&'r mut AsyncPgConnection, AppResult<T>, Fut: Send>
        + Send
        + 'a,
    T: Send,
    'a: 'pool,
{
    async move {
        let body = body;
        let mut connection = connection(pool).await?;
        body(&mut connection).await
    }
}

/// PostgreSQL's clock, now: the one clock every instance shares, for a time to compare with
/// times the database wrote (`now()`, the time its transaction began).
pub async fn now(pool: &PgPool) -> AppResult<chrono::DateTime<chrono::Utc>> {
    let mut connection = connection(pool).await?;
    Ok(
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamptz>("now()"))
            .get_result(&mut connection)
            .await?,
    )
}

/// [`now`] on a connection already held (in a transaction: the time the transaction began).
pub async fn now_in(
    connection: &mut AsyncPgConnection,
) -> AppResult<chrono::DateTime<chrono::Utc>> {
    Ok(
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamptz>("now()"))
            .get_result(connection)
            .await?,
    )
}

/// A pooled connection, or UNAVAILABLE once the pool's short connect timeout passes (at once
/// while PostgreSQL refuses connections: [`Refusals`]). The time the checkout took, waiting
/// included, goes to `supportdesk_db_pool_checkout_duration_seconds`.
pub async fn connection(pool: &PgPool) -> AppResult<PooledConnection<'_>> {
    let started = Instant::now();
    let checked_out = pool.checkout_unless_refused(pool.pool.get()).await;
    pool.checked_out_after(started);
    checked_out
}

/// [`connection`], owning its pool handle: for work that outlives the request's handler (an
/// export's stream), which must still end within a bound its caller sets.
pub async fn owned_connection(pool: &PgPool) -> AppResult<PooledConnection<'static>> {
    let started = Instant::now();
    let checked_out = pool.checkout_unless_refused(pool.pool.get_owned()).await;
    pool.checked_out_after(started);
    checked_out
}

/// What a failed checkout answers: UNAVAILABLE, saying whether the database or the pool was the
/// problem.
fn checkout_failed(pool: &PgPool, error: PoolRunError) -> AppError {
    let state = pool.state();
    match error {
        // Connections exist and none came free in time: PostgreSQL is up, the service is
        // at its connection limit. Worth telling apart from an unreachable database.
        bb8::RunError::TimedOut if state.connections > 0 && state.idle_connections == 0 => {
            AppError::Unavailable {
                dependency: Dependency::DatabaseConnections,
                source: anyhow::anyhow!(
                    "all {} database connections stayed in use for the connect timeout",
                    state.connections
                ),
            }
        }
        error @ (bb8::RunError::User(_) | bb8::RunError::TimedOut) => error.into(),
    }
}

/// What a transaction's statements may take, set in the round trip that opens it (`SET LOCAL`
/// semantics: the settings end with the transaction, so the pooled connection goes back
/// unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// What is left of the request's deadline: PostgreSQL cancels any statement still running
    /// when it runs out, so abandoned work does not go on in the database.
    statements: Duration,
    /// How long a statement may wait for a lock before failing with SQLSTATE 55P03; `None`: as
    /// long as the statement timeout allows.
    lock_wait: Option<Duration>,
}

impl Limits {
    pub fn within(budget: Duration) -> Self {
        Self {
            statements: budget,
            lock_wait: None,
        }
    }

    /// Lock waits bounded by `wait` until [`savepoint`] (or [`set_for_transaction`]) lifts
    /// the bound: for a first statement that must not queue long behind another request, such
    /// as an idempotency key's claim or a row lock.
    pub fn waiting_for_locks_at_most(self, wait: Duration) -> Self {
        Self {
            lock_wait: Some(wait),
            ..self
        }
    }

    /// The simple-protocol text that opens the transaction with these limits: one round trip.
    /// Only numbers are interpolated, and the current span's `traceparent` (hex digits and
    /// dashes, checked) when traces are on: the transaction-local `supportdesk.traceparent`,
    /// which a notification the transaction queues keeps as its `trace_context` (the column's
    /// default), so that its send joins this trace (docs/observability.md, "Traces").
    /// The transaction is also bounded while idle between its statements, by the same budget
    /// (`idle_in_transaction_session_timeout`): an instance cut off from PostgreSQL mid-transaction
    /// (its bytes held by a stalled network) would otherwise keep the transaction's row locks,
    /// and every other instance would be refused the same idempotency key or row, until the
    /// network healed; PostgreSQL ends such a session and releases them (found by the chaos run).
    fn begin_sql(&self) -> AppResult<String> {
        let statements = statement_timeout_ms(self.statements)?;
        let mut sql = match self.lock_wait {
            None => format!(
                "BEGIN; SELECT set_config('statement_timeout', '{statements}', true), \
                 set_config('idle_in_transaction_session_timeout', '{statements}', true)"
            ),
            Some(wait) => format!(
                "BEGIN; SELECT set_config('statement_timeout', '{statements}', true), \
                 set_config('idle_in_transaction_session_timeout', '{statements}', true), \
                 set_config('lock_timeout', '{}', true)",
                wait.as_millis()
            ),
        };
        if let Some(parent) = traces::current_traceparent() {
            sql.push_str(&format!(
                ", {}{parent}', true)",
                traces::TRACEPARENT_SETTING
            ));
        }
        Ok(sql)
    }
}

/// Opens a transaction on `conn` with `limits`, in one round trip. Pair with [`end`];
/// [`transaction`] does both.
pub async fn begin(conn: &mut AsyncPgConnection, limits: Limits) -> AppResult<()> {
    let sql = limits.begin_sql()?;
    AnsiTransactionManager::begin_transaction_sql(conn, &sql).await?;
    Ok(())
}

/// Opens a read-only REPEATABLE READ transaction on `conn`: every statement in it sees the one
/// snapshot its first statement takes. Its statements, and its time idle between them (a client
/// slow to take what was read), are each bounded by `limit`, after which PostgreSQL ends it. Pair
/// with [`end`].
pub async fn begin_snapshot(conn: &mut AsyncPgConnection, limit: Duration) -> AppResult<()> {
    let millis = statement_timeout_ms(limit)?;
    let sql = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
         SELECT set_config('statement_timeout', '{millis}', true), \
         set_config('idle_in_transaction_session_timeout', '{millis}', true)"
    );
    AnsiTransactionManager::begin_transaction_sql(conn, &sql).await?;
    Ok(())
}

/// Ends the transaction [`begin`] opened: commits when `result` is a success, rolls back when it
/// is a failure (whose error is kept over a failed rollback's, as diesel-async does). A
/// connection whose transaction could not be ended is discarded by the pool.
pub async fn end<T, E>(conn: &mut AsyncPgConnection, result: Result<T, E>) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    match result {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(conn).await?;
            Ok(value)
        }
        Err(error) => match AnsiTransactionManager::rollback_transaction(conn).await {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(error),
            Err(rollback_error) => Err(rollback_error.into()),
        },
    }
}

/// The savepoint of [`savepoint`], opened with the lock wait lifted: one round trip.
pub async fn open_savepoint(conn: &mut AsyncPgConnection) -> AppResult<()> {
    conn.batch_execute("SELECT set_config('lock_timeout', '0', true); SAVEPOINT work")
        .await?;
    Ok(())
}

/// Undoes what was done since [`open_savepoint`], and leaves the transaction usable again after
/// a failed statement.
pub async fn roll_back_to_savepoint(conn: &mut AsyncPgConnection) -> AppResult<()> {
    conn.batch_execute("ROLLBACK TO SAVEPOINT work").await?;
    Ok(())
}

/// Returns once PostgreSQL has committed the statement `conn` last ran on its own (outside a
/// transaction): what a claim waits for before its worker acts on the row it took.
///
/// The statement's rows and completion do not say so. PostgreSQL sends them with the commit's
/// answer, except when it is stopped at once (`pg_ctl -m immediate`, or a crash of any of its
/// processes) while the commit waits for its WAL to reach the disk: the farewell notice each
/// connection is sent flushes what was pending, rows included, and crash recovery then forgets
/// the uncommitted claim (found by the chaos run: an email claimed, sent, then claimed and sent
/// again as the same first attempt; docs/reliability.md). A connection answers its next
/// statement only after the previous one's commit has ended, so one more round trip on the same
/// connection settles it: an error here leaves the row to the lease's expiry, untouched.
pub async fn committed(conn: &mut AsyncPgConnection) -> AppResult<()> {
    KeepPrepared(diesel::sql_query("SELECT 1"))
        .execute(conn)
        .await?;
    Ok(())
}

diesel::define_sql_function! {
    /// PostgreSQL's `set_config(setting, value, is_local)`.
    fn set_config(setting: Text, value: Text, is_local: diesel::sql_types::Bool) -> Text;
}

/// Sets a PostgreSQL setting until the end of the current transaction. A typed query with owned
/// binds, so that the connection keeps it prepared: one round trip, not a prepare and an execute.
pub async fn set_for_transaction(
    conn: &mut AsyncPgConnection,
    setting: &'static str,
    value: String,
) -> AppResult<()> {
    diesel::select(set_config(setting, value, true))
        .execute(conn)
        .await?;
    Ok(())
}

/// The budget in whole milliseconds, at least 1: PostgreSQL reads 0 as "no timeout".
fn statement_timeout_ms(budget: Duration) -> AppResult<String> {
    let millis = budget.as_millis();
    if millis == 0 {
        return Err(AppError::DeadlineExceeded);
    }
    Ok(millis.to_string())
}

/// Makes `$wrapper(query)` run as `query` does, except that the connection keeps its prepared
/// statement (`true`) or prepares it afresh on every call (`false`).
macro_rules! statement_caching {
    ($wrapper:ident, $keep:literal) => {
        impl<Q> diesel::query_builder::QueryId for $wrapper<Q> {
            type QueryId = ();
            // Not static: a kept statement is keyed by its SQL and bind types, not its Rust type.
            const HAS_STATIC_QUERY_ID: bool = false;
        }

        impl<Q> diesel::query_builder::QueryFragment<diesel::pg::Pg> for $wrapper<Q>
        where
            Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
        {
            fn walk_ast<'b>(
                &'b self,
                out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
            ) -> diesel::QueryResult<()> {
                self.0.walk_ast(out)
            }

            fn is_safe_to_cache_prepared(
                &self,
                _backend: &diesel::pg::Pg,
            ) -> diesel::QueryResult<bool> {
                Ok($keep)
            }
        }

        impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for $wrapper<Q> {
            type SqlType = Q::SqlType;
        }
    };
}

/// A diesel statement that the connection keeps prepared, keyed by its SQL text: one round trip
/// per call instead of a prepare and an execute.
///
/// diesel never caches a DSL-built INSERT (each value may render `DEFAULT`), an UPDATE (a
/// changeset may skip columns) or an `ON CONFLICT DO UPDATE`, because their SQL could take many
/// shapes. Keyed by the SQL itself, a statement is prepared once per shape, so this is safe
/// exactly for statements with few shapes: a one-row insert (an optional value is `$n` or
/// `DEFAULT`), an update of a fixed set of columns or a changeset of a few optional ones. Never
/// for a multi-row insert or an `IN` list, whose shapes are unbounded. diesel-async builds the
/// SQL of every statement anyway, so the key costs nothing more.
#[derive(Debug, Clone, Copy)]
pub struct KeepPrepared<Q>(pub Q);
statement_caching!(KeepPrepared, true);

/// A diesel statement planned with its values on every call: prepared afresh (one round trip
/// more than [`KeepPrepared`]) so that PostgreSQL never serves it with a generic plan, one made
/// without the values. For statements whose best plan depends on them: a list filtered on
/// `tags: vip` (a tenth of the tickets) walks the newest tickets and stops at the page, one on a
/// rare tag reads the tag's few rows from its index; a generic plan is one of the two for both,
/// and the other 100 times slower (docs/tickets.md, "How many tickets a list holds").
#[derive(Debug, Clone, Copy)]
pub struct PlannedPerCall<Q>(pub Q);
statement_caching!(PlannedPerCall, false);

/// `EXPLAIN` of a diesel query, with the query's own binds: how tests (and operators) check that
/// a query the service runs is served by an index.
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
pub struct Explain<Q>(pub Q);

impl<Q> diesel::query_builder::QueryFragment<diesel::pg::Pg> for Explain<Q>
where
    Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql("EXPLAIN ");
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q> diesel::query_builder::Query for Explain<Q> {
    type SqlType = Text;
}
