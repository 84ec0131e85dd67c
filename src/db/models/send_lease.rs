//! The send lease and retry bookkeeping that `charges` and `refunds` share (their columns
//! `send_lease_token`, `send_lease_until`, `attempts`, `next_attempt_at`, `last_attempt_error`,
//! `attention_reason`, `attention_since`; migration 000007).
//!
//! A pending charge or refund is sent to the provider only by whoever holds its **send lease**:
//! a token and an expiry, taken in one committed statement *before* the call and given back after
//! it, so no row lock, transaction or pooled connection waits on the provider. One holder at a
//! time across requests, instances and the completer; a holder that died is replaced once its
//! lease expires (it is longer than any call it covers). Times are PostgreSQL's `now()`, one
//! clock for every instance.

use std::time::Duration;

use chrono::{DateTime, Utc};

use diesel::sql_types::{Double, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::db::queue::QueueStats;
use crate::errors::AppResult;

/// Which table's rows are leased.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leased {
    Charges,
    Refunds,
}

/// A lease taken on a row: the token that proves it, and the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendLease {
    pub account_id: Uuid,
    pub id: Uuid,
    pub token: Uuid,
    /// Attempts counted so far, this one included.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// How long ago the row was created when the lease was taken, by PostgreSQL's clock (the one
    /// that wrote `created_at`): an instance whose own clock is off would misjudge it.
    pub age: Duration,
    /// PostgreSQL's `now()` when the lease was taken.
    pub claimed_at: DateTime<Utc>,
}

#[derive(diesel::QueryableByName)]
struct LeasedRow {
    #[diesel(sql_type = SqlUuid)]
    account_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Double)]
    age_seconds: f64,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    claimed_at: DateTime<Utc>,
}

#[derive(diesel::QueryableByName)]
struct MarkedRow {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    newly_marked: bool,
}

/// The statements, one per table: the table name is fixed text, so each is prepared once.
struct Statements {
    claim: &'static str,
    claim_due: &'static str,
    release: &'static str,
}

macro_rules! statements {
    ($table:literal) => {
        Statements {
            claim: concat!(
                "UPDATE ", $table, " SET send_lease_token = $1, ",
                "send_lease_until = now() + make_interval(secs => $2), attempts = attempts + 1 ",
                "WHERE account_id = $3 AND id = $4 AND status = 'pending' ",
                "AND (send_lease_until IS NULL OR send_lease_until <= now()) ",
                "RETURNING account_id, id, attempts, created_at, ",
                "GREATEST(EXTRACT(EPOCH FROM now() - created_at), 0)::float8 AS age_seconds, ",
                "now() AS claimed_at"
            ),
            claim_due: concat!(
                "UPDATE ", $table, " SET send_lease_token = $1, ",
                "send_lease_until = now() + make_interval(secs => $2), attempts = attempts + 1 ",
                "WHERE id = (SELECT id FROM ", $table, " ",
                "WHERE status = 'pending' AND next_attempt_at <= COALESCE($4, now()) ",
                "AND created_at <= now() - make_interval(secs => $3) ",
                "AND (send_lease_until IS NULL OR send_lease_until <= now()) ",
                "ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) ",
                "RETURNING account_id, id, attempts, created_at, ",
                "GREATEST(EXTRACT(EPOCH FROM now() - created_at), 0)::float8 AS age_seconds, ",
                "now() AS claimed_at"
            ),
            release: concat!(
                "UPDATE ", $table, " SET send_lease_token = NULL, send_lease_until = NULL, ",
                "next_attempt_at = now() + make_interval(secs => $3), last_attempt_error = $4, ",
                "attention_since = CASE WHEN attention_reason IS NULL AND $5::text IS NOT NULL ",
                "THEN now() ELSE attention_since END, ",
                "attention_reason = COALESCE(attention_reason, $5::text) ",
                "WHERE id = $1 AND send_lease_token = $2 ",
                "RETURNING (attention_reason IS NOT NULL AND attention_since = now()) AS newly_marked"
            ),
        }
    };
}

const CHARGES: Statements = statements!("charges");
const REFUNDS: Statements = statements!("refunds");

impl Leased {
    fn statements(self) -> &'static Statements {
        match self {
            Self::Charges => &CHARGES,
            Self::Refunds => &REFUNDS,
        }
    }
}

/// The completer's queue as the queue sampler reads it ([`QueueStats`]): every pending charge
/// and refund; one waits once due (`next_attempt_at`) while no live send lease holds it, from
/// the later of its due time and its last lease's expiry.
pub async fn pending_stats(conn: &mut AsyncPgConnection) -> AppResult<QueueStats> {
    Ok(KeepPrepared(diesel::sql_query(
        "SELECT count(*) AS depth, \
             COALESCE(EXTRACT(EPOCH FROM now() - min(GREATEST(next_attempt_at, send_lease_until)) \
                 FILTER (WHERE next_attempt_at <= now() \
                     AND (send_lease_until IS NULL OR send_lease_until <= now())))::float8, 0) \
                 AS oldest_age_seconds \
         FROM (SELECT next_attempt_at, send_lease_until FROM charges WHERE status = 'pending' \
               UNION ALL \
               SELECT next_attempt_at, send_lease_until FROM refunds WHERE status = 'pending') \
              AS pending",
    ))
    .get_result(conn)
    .await?)
}

/// Takes the send lease of the pending row `id` of `account_id` for `lease`; `None` when the row
/// is not pending (or not there) or someone else holds a live lease on it.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    table: Leased,
    account_id: Uuid,
    id: Uuid,
    lease: Duration,
) -> AppResult<Option<SendLease>> {
    let token = Uuid::now_v7();
    let claimed = KeepPrepared(
        diesel::sql_query(table.statements().claim)
            .bind::<SqlUuid, _>(token)
            .bind::<Double, _>(lease.as_secs_f64())
            .bind::<SqlUuid, _>(account_id)
            .bind::<SqlUuid, _>(id),
    )
    .get_result::<LeasedRow>(conn)
    .await;
    leased(conn, claimed, token).await
}

/// Takes the send lease of the pending row that has been due longest, created at least `min_age`
/// ago and not leased: the completer's next piece of work. `SKIP LOCKED`, so instances share the
/// work without waiting on each other. Only rows due by `due_by` (the run's start, as PostgreSQL
/// told it: [`SendLease::claimed_at`] of the run's first claim; `None` for that first claim, which
/// takes PostgreSQL's `now()`): a row a run postponed is not taken again by the same run, however
/// short its backoff.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    table: Leased,
    min_age: Duration,
    lease: Duration,
    due_by: Option<DateTime<Utc>>,
) -> AppResult<Option<SendLease>> {
    let token = Uuid::now_v7();
    let claimed = KeepPrepared(
        diesel::sql_query(table.statements().claim_due)
            .bind::<SqlUuid, _>(token)
            .bind::<Double, _>(lease.as_secs_f64())
            .bind::<Double, _>(min_age.as_secs_f64())
            .bind::<Nullable<Timestamptz>, _>(due_by),
    )
    .get_result::<LeasedRow>(conn)
    .await;
    leased(conn, claimed, token).await
}

/// The lease a claim took, once PostgreSQL has committed it ([`crate::db::committed`]): the
/// provider is called on its strength.
async fn leased(
    conn: &mut AsyncPgConnection,
    claimed: Result<LeasedRow, diesel::result::Error>,
    token: Uuid,
) -> AppResult<Option<SendLease>> {
    match claimed {
        Ok(row) => {
            crate::db::committed(conn).await?;
            Ok(Some(SendLease {
                account_id: row.account_id,
                id: row.id,
                token,
                attempts: row.attempts,
                created_at: row.created_at,
                age: Duration::try_from_secs_f64(row.age_seconds).unwrap_or_default(),
                claimed_at: row.claimed_at,
            }))
        }
        Err(diesel::result::Error::NotFound) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// What became of a row whose send did not settle it.
#[derive(Clone, Debug)]
pub struct Unsettled<'a> {
    /// When it is due again.
    pub retry_in: Duration,
    /// Why this attempt did not settle it.
    pub error: &'a str,
    /// Set to mark the row for an operator's attention (kept if already marked).
    pub attention: Option<&'a str>,
}

/// Gives the lease back, the row still pending: due again after `retry_in`, with this attempt's
/// error. True when this call is the one that marked it for attention. A lease that is no longer
/// this holder's (it expired and was taken) is left alone.
pub async fn release(
    conn: &mut AsyncPgConnection,
    table: Leased,
    lease: SendLease,
    unsettled: &Unsettled<'_>,
) -> AppResult<bool> {
    let released = KeepPrepared(
        diesel::sql_query(table.statements().release)
            .bind::<SqlUuid, _>(lease.id)
            .bind::<SqlUuid, _>(lease.token)
            .bind::<Double, _>(unsettled.retry_in.as_secs_f64())
            .bind::<Text, _>(unsettled.error)
            .bind::<Nullable<Text>, _>(unsettled.attention),
    )
    .get_result::<MarkedRow>(conn)
    .await;
    match released {
        Ok(row) => Ok(row.newly_marked),
        Err(diesel::result::Error::NotFound) => Ok(false),
        Err(error) => Err(error.into()),
    }
}
