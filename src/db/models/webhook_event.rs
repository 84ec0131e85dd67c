//! The `webhook_events` table: every event the payment provider delivered, stored once by its
//! event id, and the queue the webhook workers take events from (docs/webhooks.md).
//!
//! The receiving side (storing a delivery, the admin RPCs' reads and re-drive) and the queue
//! (claiming due events under a lease, recording an attempt's outcome) share the row but not
//! their queries; each half below is written for its own callers.

// ----- Receiving and the admin RPCs -----

// ----- The queue -----
//
// A worker claims one due event in one statement that commits at once (the lease and the attempt
// are recorded before any provider call), processes it outside any transaction, and then either
// marks it processed inside the transaction that applies it, or records the failure. Both
// writes match the attempt number the claim returned: a worker whose lease ran out and whose
// event another worker claimed meanwhile writes nothing.

use diesel::sql_types::{BigInt, Binary, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::errors::AppResult;

/// An event a worker holds under a lease.
#[derive(Clone, Debug, diesel::QueryableByName)]
pub struct ClaimedEvent {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Binary)]
    pub payload: Vec<u8>,
    /// The attempt this claim is (1 for the first): the worker's proof that the lease is its own.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
}

/// Where a failed attempt left its event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptFailed {
    /// Due again after the backoff.
    Retrying,
    /// Out of attempts: dead until an admin re-drives it.
    Dead,
    /// The lease was no longer this worker's (another worker claimed the event): nothing written.
    LeaseLost,
}

#[derive(diesel::QueryableByName)]
struct StateRow {
    #[diesel(sql_type = Text)]
    state: String,
}

/// Claims the due event that has waited longest and that no live lease holds: its lease now
/// runs for `lease_millis` and its attempt is counted, committed before processing starts (so an
/// event that kills its worker still reaches the dead-letter state). `SKIP LOCKED`: workers of
/// every instance share the queue without waiting on one another.
pub async fn claim_next(
    conn: &mut AsyncPgConnection,
    lease_millis: i64,
    max_attempts: i32,
) -> AppResult<Option<ClaimedEvent>> {
    let claimed = diesel::sql_query(
        "UPDATE webhook_events \
         SET lease_expires_at = now() + make_interval(secs => $1::double precision / 1000), \
             attempts = attempts + 1 \
         WHERE id = ( \
             SELECT id FROM webhook_events \
             WHERE state = 'received' AND next_attempt_at <= now() \
               AND (lease_expires_at IS NULL OR lease_expires_at <= now()) \
               AND attempts < $2 \
             ORDER BY next_attempt_at \
             LIMIT 1 \
             FOR UPDATE SKIP LOCKED) \
         RETURNING id, event_type, payload, attempts",
    )
    .bind::<BigInt, _>(lease_millis)
    .bind::<Integer, _>(max_attempts)
    .get_result::<ClaimedEvent>(conn)
    .await;
    match claimed {
        Ok(event) => Ok(Some(event)),
        Err(diesel::result::Error::NotFound) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Marks dead the events whose worker died (its lease expired) during their last attempt: the
/// claim never takes them again, and nothing else would record their end.
pub async fn bury_abandoned(conn: &mut AsyncPgConnection, max_attempts: i32) -> AppResult<usize> {
    Ok(diesel::sql_query(
        "UPDATE webhook_events \
         SET state = 'dead', dead_at = now(), lease_expires_at = NULL, \
             last_error = 'the worker processing its last attempt stopped before finishing' \
         WHERE state = 'received' AND attempts >= $1 AND lease_expires_at <= now()",
    )
    .bind::<Integer, _>(max_attempts)
    .execute(conn)
    .await?)
}

/// Marks the claimed event processed with `outcome`, naming the charge it concerned (when
/// found), if attempt `attempt` still holds it. False when it does not: the caller's
/// transaction must roll back, another worker owns the event now.
pub async fn mark_processed(
    conn: &mut AsyncPgConnection,
    id: &str,
    attempt: i32,
    outcome: &str,
    charge: Option<(Uuid, Uuid)>,
) -> AppResult<bool> {
    let (account_id, charge_id) = charge.unzip();
    let updated = diesel::sql_query(
        "UPDATE webhook_events \
         SET state = 'processed', processed_at = now(), outcome = $3, lease_expires_at = NULL, \
             account_id = coalesce(account_id, $4), charge_id = coalesce(charge_id, $5) \
         WHERE id = $1 AND state = 'received' AND attempts = $2",
    )
    .bind::<Text, _>(id)
    .bind::<Integer, _>(attempt)
    .bind::<Text, _>(outcome)
    .bind::<Nullable<SqlUuid>, _>(account_id)
    .bind::<Nullable<SqlUuid>, _>(charge_id)
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Records that attempt `attempt` failed with `error`: due again after `retry_in_millis`, or dead
/// once it was attempt `max_attempts`. The lease is cleared either way.
pub async fn record_failure(
    conn: &mut AsyncPgConnection,
    id: &str,
    attempt: i32,
    error: &str,
    retry_in_millis: i64,
    max_attempts: i32,
) -> AppResult<AttemptFailed> {
    let row = diesel::sql_query(
        "UPDATE webhook_events \
         SET lease_expires_at = NULL, last_error = $3, \
             state = CASE WHEN attempts >= $5 THEN 'dead' ELSE 'received' END, \
             dead_at = CASE WHEN attempts >= $5 THEN now() END, \
             next_attempt_at = CASE WHEN attempts >= $5 THEN next_attempt_at \
                 ELSE now() + make_interval(secs => $4::double precision / 1000) END \
         WHERE id = $1 AND state = 'received' AND attempts = $2 \
         RETURNING state",
    )
    .bind::<Text, _>(id)
    .bind::<Integer, _>(attempt)
    .bind::<Text, _>(error)
    .bind::<BigInt, _>(retry_in_millis)
    .bind::<Integer, _>(max_attempts)
    .get_result::<StateRow>(conn)
    .await;
    match row {
        Ok(row) if row.state == "dead" => Ok(AttemptFailed::Dead),
        Ok(_) => Ok(AttemptFailed::Retrying),
        Err(diesel::result::Error::NotFound) => Ok(AttemptFailed::LeaseLost),
        Err(error) => Err(error.into()),
    }
}

/// Gives a claimed event back untried (the worker is stopping): due at once for any worker, and
/// the attempt not counted.
pub async fn release(conn: &mut AsyncPgConnection, id: &str, attempt: i32) -> AppResult<()> {
    diesel::sql_query(
        "UPDATE webhook_events SET lease_expires_at = NULL, attempts = attempts - 1 \
         WHERE id = $1 AND state = 'received' AND attempts = $2",
    )
    .bind::<Text, _>(id)
    .bind::<Integer, _>(attempt)
    .execute(conn)
    .await?;
    Ok(())
}
