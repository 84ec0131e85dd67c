//! The durable queue the service's background deliveries share: the payment provider's webhook
//! events (docs/webhooks.md) and the outgoing email notifications (docs/notifications.md). The
//! four other leased queues (webhook deliveries, operations, billing's send leases, storage
//! deletions) differ in what they lease and how a lease ends, and keep their own statements:
//! docs/architecture.md, "The queues behind the tasks", names each difference.
//!
//! A queue is a table with the same queue columns (`state`, `attempts`, `next_attempt_at`,
//! `lease_expires_at`, `last_error`, `outcome`, `redrive_count` and the times of the end
//! states), described by a [`QueueTable`]. A worker takes one row at a time:
//!
//! 1. **Claim** ([`claim_next`], one statement that commits at once): the due row that waited
//!    longest and that no live lease holds, its lease started and its attempt counted before any
//!    outside call (`FOR UPDATE SKIP LOCKED`: the workers of every instance share the queue).
//!    The worker acts on the row once PostgreSQL confirms the commit ([`claimed`]).
//! 2. The work, outside any transaction and holding no pooled connection.
//! 3. **Record** what happened, in one statement matched to the attempt number the claim
//!    returned: [`mark_done`], [`record_failure`] (due again after a backoff, or dead after the
//!    last attempt), [`record_dead`] (a permanent failure) or [`release`] (given back untried).
//!    A worker whose lease ran out and whose row another worker claimed meanwhile writes nothing.
//!
//! [`bury_abandoned`] ends the rows whose worker died during their last attempt, and
//! [`redrive_dead`] puts an account's dead row back in the queue.
//!
//! The statements are the same for every table; only the table's name and its few
//! differences are pushed into the SQL, from the `&'static str` constants of a [`QueueTable`]
//! (never from input). Each statement's text is fixed per table, so the connection keeps it
//! prepared ([`KeepPrepared`]): diesel never caches an `sql_query`.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{BigInt, Double, Integer, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::errors::AppResult;

/// A table that serves as a queue, as its statements need it. Every field is SQL written in the
/// source, never a value from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueTable {
    /// The table's name.
    pub table: &'static str,
    /// The SQL type of its `id` (`text`, `uuid`): ids travel as text and are cast to it, so the
    /// primary key's index still serves the lookup.
    pub id_type: &'static str,
    /// The state of a row whose work is done (`processed`, `sent`).
    pub done_state: &'static str,
    /// The column that records when it was done (`processed_at`, `sent_at`).
    pub done_at: &'static str,
    /// What [`claim_next`] returns of the claimed row: what the worker needs, in one statement.
    pub claimed_columns: &'static str,
    /// What [`redrive_dead`] returns of the re-driven row.
    pub row_columns: &'static str,
    /// More of the row that every record of an attempt's outcome ([`mark_done`],
    /// [`record_failure`], [`record_dead`], [`release`]) sets, as SQL `, column = value` (empty for none):
    /// the notifications' hand-over bookkeeping.
    pub record_also_sets: &'static str,
}

/// Where a failed attempt left its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptFailed {
    /// Due again after the backoff.
    Retrying,
    /// Out of attempts (or a permanent failure): dead until an admin re-drives it.
    Dead,
    /// The lease was no longer this worker's (another worker claimed the row): nothing written.
    LeaseLost,
}

#[derive(diesel::QueryableByName)]
struct StateRow {
    #[diesel(sql_type = Text)]
    state: String,
}

/// A statement whose rows the caller reads into its own table's type
/// (`.get_result::<ClaimedEvent>(conn)`, with [`optional`] for "no row").
pub type Statement = KeepPrepared<BoxedSqlQuery<'static, Pg, SqlQuery>>;

/// The row a claim ([`claim_next`]) returned, `None` when it took none, answered only once
/// PostgreSQL has committed the claim ([`crate::db::committed`], one more round trip when a row
/// was taken): the worker must not act on a claim a crash could forget.
pub async fn claimed<T>(
    conn: &mut AsyncPgConnection,
    result: QueryResult<T>,
) -> AppResult<Option<T>> {
    let claimed = optional(result)?;
    if claimed.is_some() {
        crate::db::committed(conn).await?;
    }
    Ok(claimed)
}

/// A one-row result, `None` when the statement returned no row.
pub fn optional<T>(result: QueryResult<T>) -> AppResult<Option<T>> {
    match result {
        Ok(row) => Ok(Some(row)),
        Err(diesel::result::Error::NotFound) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// How much waits in a queue, as the queue sampler reads it (`crate::jobs::queue_sampler`,
/// docs/metrics.md "Queues"): every queue answers it in one statement.
#[derive(Clone, Copy, Debug, PartialEq, diesel::QueryableByName)]
pub struct QueueStats {
    /// Rows the queue has still to finish, due or not, held by a worker or not.
    #[diesel(sql_type = BigInt)]
    pub depth: i64,
    /// Seconds since the row that has waited longest for a worker became takeable (due, and no
    /// live lease on it); 0 when none is.
    #[diesel(sql_type = Double)]
    pub oldest_age_seconds: f64,
}

/// [`QueueStats`] of `queue`: its `received` rows; a row waits from the later of its due time and
/// the expiry of the lease it last had (a worker that died leaves it takeable from then). One
/// scan of the received rows (the queue's partial index finds them; a healthy queue holds few).
pub async fn stats(conn: &mut AsyncPgConnection, queue: &QueueTable) -> AppResult<QueueStats> {
    let table = queue.table;
    Ok(KeepPrepared(
        diesel::sql_query(format!(
            "SELECT count(*) AS depth, \
                 COALESCE(EXTRACT(EPOCH FROM now() - min(GREATEST(next_attempt_at, lease_expires_at)) \
                     FILTER (WHERE next_attempt_at <= now() \
                         AND (lease_expires_at IS NULL OR lease_expires_at <= now())))::float8, 0) \
                     AS oldest_age_seconds \
             FROM {table} WHERE state = 'received'"
        ))
        .into_boxed::<Pg>(),
    )
    .get_result(conn)
    .await?)
}

/// The claim of the due row of `queue` that has waited longest and that no live lease holds: its
/// lease now runs for `lease_millis` and its attempt is counted, committed before the work starts
/// (so a row that kills its worker still reaches the dead state). Its rows are the claimed row's
/// [`QueueTable::claimed_columns`], none when nothing is due.
pub fn claim_next(queue: &QueueTable, lease_millis: i64, max_attempts: i32) -> Statement {
    let table = queue.table;
    let returning = queue.claimed_columns;
    KeepPrepared(
        diesel::sql_query(format!(
            "UPDATE {table} \
             SET lease_expires_at = now() + make_interval(secs => $1::double precision / 1000), \
                 attempts = attempts + 1 \
             WHERE id = ( \
                 SELECT id FROM {table} \
                 WHERE state = 'received' AND next_attempt_at <= now() \
                   AND (lease_expires_at IS NULL OR lease_expires_at <= now()) \
                   AND attempts < $2 \
                 ORDER BY next_attempt_at \
                 LIMIT 1 \
                 FOR UPDATE SKIP LOCKED) \
             RETURNING {returning}"
        ))
        .into_boxed()
        .bind::<BigInt, _>(lease_millis)
        .bind::<Integer, _>(max_attempts),
    )
}

/// Marks dead the rows of `queue` whose worker died (its lease expired) during their last
/// attempt: the claim never takes them again, and nothing else would record their end.
pub async fn bury_abandoned(
    conn: &mut AsyncPgConnection,
    queue: &QueueTable,
    max_attempts: i32,
) -> AppResult<usize> {
    let table = queue.table;
    Ok(KeepPrepared(
        diesel::sql_query(format!(
            "UPDATE {table} \
             SET state = 'dead', dead_at = now(), lease_expires_at = NULL, \
                 last_error = 'the worker processing its last attempt stopped before finishing' \
             WHERE state = 'received' AND attempts >= $1 AND lease_expires_at <= now()"
        ))
        .bind::<Integer, _>(max_attempts),
    )
    .execute(conn)
    .await?)
}

/// Marks the claimed row done with `outcome`, if attempt `attempt` still holds it. False when it
/// does not: another worker owns the row now (inside a transaction, the caller rolls back).
pub async fn mark_done(
    conn: &mut AsyncPgConnection,
    queue: &QueueTable,
    id: &str,
    attempt: i32,
    outcome: &str,
) -> AppResult<bool> {
    let QueueTable {
        table,
        id_type,
        done_state,
        done_at,
        record_also_sets,
        ..
    } = *queue;
    let updated = KeepPrepared(
        diesel::sql_query(format!(
            "UPDATE {table} \
             SET state = '{done_state}', {done_at} = now(), outcome = $3, \
                 lease_expires_at = NULL{record_also_sets} \
             WHERE id = $1::{id_type} AND state = 'received' AND attempts = $2"
        ))
        .bind::<Text, _>(id)
        .bind::<Integer, _>(attempt)
        .bind::<Text, _>(outcome),
    )
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Records that attempt `attempt` failed with `error`: due again after `retry_in_millis`, or dead
/// once it was attempt `max_attempts`. The lease is cleared either way.
pub async fn record_failure(
    conn: &mut AsyncPgConnection,
    queue: &QueueTable,
    id: &str,
    attempt: i32,
    error: &str,
    retry_in_millis: i64,
    max_attempts: i32,
) -> AppResult<AttemptFailed> {
    let QueueTable {
        table,
        id_type,
        record_also_sets,
        ..
    } = *queue;
    let row = optional(
        KeepPrepared(
            diesel::sql_query(format!(
                "UPDATE {table} \
                 SET lease_expires_at = NULL, last_error = $3{record_also_sets}, \
                     state = CASE WHEN attempts >= $5 THEN 'dead' ELSE 'received' END, \
                     dead_at = CASE WHEN attempts >= $5 THEN now() END, \
                     next_attempt_at = CASE WHEN attempts >= $5 THEN next_attempt_at \
                         ELSE now() + make_interval(secs => $4::double precision / 1000) END \
                 WHERE id = $1::{id_type} AND state = 'received' AND attempts = $2 \
                 RETURNING state"
            ))
            .bind::<Text, _>(id)
            .bind::<Integer, _>(attempt)
            .bind::<Text, _>(error)
            .bind::<BigInt, _>(retry_in_millis)
            .bind::<Integer, _>(max_attempts),
        )
        .get_result::<StateRow>(conn)
        .await,
    )?;
    Ok(match row {
        Some(StateRow { state }) if state == "dead" => AttemptFailed::Dead,
        Some(_) => AttemptFailed::Retrying,
        None => AttemptFailed::LeaseLost,
    })
}

/// Records that attempt `attempt` failed for good with `error` (no retry can succeed): dead at
/// once, whatever attempts remain. False when the claim is no longer attempt `attempt`'s.
pub async fn record_dead(
    conn: &mut AsyncPgConnection,
    queue: &QueueTable,
    id: &str,
    attempt: i32,
    error: &str,
) -> AppResult<bool> {
    let QueueTable {
        table,
        id_type,
        record_also_sets,
        ..
    } = *queue;
    let updated = KeepPrepared(
        diesel::sql_query(format!(
            "UPDATE {table} \
             SET state = 'dead', dead_at = now(), lease_expires_at = NULL, last_error = $3\
                 {record_also_sets} \
             WHERE id = $1::{id_type} AND state = 'received' AND attempts = $2"
        ))
        .bind::<Text, _>(id)
        .bind::<Integer, _>(attempt)
        .bind::<Text, _>(error),
    )
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Gives a claimed row back untried (the worker is stopping): due at once for any worker, and the
/// attempt not counted.
pub async fn release(
    conn: &mut AsyncPgConnection,
    queue: &QueueTable,
    id: &str,
    attempt: i32,
) -> AppResult<()> {
    let QueueTable {
        table,
        id_type,
        record_also_sets,
        ..
    } = *queue;
    KeepPrepared(
        diesel::sql_query(format!(
            "UPDATE {table} \
             SET lease_expires_at = NULL{record_also_sets}, attempts = attempts - 1 \
             WHERE id = $1::{id_type} AND state = 'received' AND attempts = $2"
        ))
        .bind::<Text, _>(id)
        .bind::<Integer, _>(attempt),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Puts the account's dead row `id` back in the queue, due now, with a fresh count of attempts,
/// in one statement conditioned on the state (`last_error` stays for the record). Its rows are
/// the row's [`QueueTable::row_columns`], none when there is no such dead row (another state,
/// another account, none).
pub fn redrive_dead(queue: &QueueTable, account_id: Uuid, id: &str) -> Statement {
    redrive(queue, account_id, id, "'dead'", "")
}

/// [`redrive_dead`] for a table with end states of its own beside `dead`: the row is re-driven
/// from any state of `from_states` (SQL: `'dead', 'skipped'`), and `also_set` (SQL:
/// `, skipped_at = NULL`) clears what those states record. Both are written in the source.
pub fn redrive(
    queue: &QueueTable,
    account_id: Uuid,
    id: &str,
    from_states: &'static str,
    also_set: &'static str,
) -> Statement {
    let QueueTable {
        table,
        id_type,
        row_columns,
        ..
    } = *queue;
    KeepPrepared(
        diesel::sql_query(format!(
            "UPDATE {table} \
             SET state = 'received', attempts = 0, next_attempt_at = now(), \
                 lease_expires_at = NULL, dead_at = NULL, redrive_count = redrive_count + 1{also_set} \
             WHERE account_id = $1 AND id = $2::{id_type} AND state IN ({from_states}) \
             RETURNING {row_columns}"
        ))
        .into_boxed()
        .bind::<SqlUuid, _>(account_id)
        .bind::<Text, _>(id.to_owned()),
    )
}
