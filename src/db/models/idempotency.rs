//! The `idempotency_keys` table: outcomes of requests sent with an Idempotency-Key.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::db::schema::idempotency_keys;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = idempotency_keys, check_for_backend(diesel::pg::Pg))]
pub struct IdempotencyRow {
    pub id: Uuid,
    pub caller: String,
    pub rpc: String,
    pub key: String,
    pub request_hash: Vec<u8>,
    pub status_code: i32,
    pub status_message: String,
    pub status_details: Option<Vec<u8>>,
    pub response_body: Option<Vec<u8>>,
    pub response_metadata: Value,
    pub created_at: DateTime<Utc>,
    /// `None` while the key is kept until its outcome: its request stopped at a recovery point
    /// that must be resumed however late the retry ([`IdempotencyRow::record_recovery_point`]).
    pub expires_at: Option<DateTime<Utc>>,
    /// Where a request that commits in phases stopped (`None` once its outcome is stored).
    pub recovery_point: Option<String>,
}

/// A key to claim, before its outcome is known.
#[derive(Debug, Clone)]
pub struct NewIdempotencyKey {
    pub id: Uuid,
    pub caller: String,
    pub rpc: String,
    pub key: String,
    pub request_hash: Vec<u8>,
    /// Until the outcome is written in the same transaction: never visible to others.
    pub status_code: i32,
    /// How long the key is kept: it expires that long after now by PostgreSQL's clock, the one
    /// the sweep deletes by (an instance whose clock lagged would otherwise have its keys
    /// swept early, and a retry inside the promised retention executed again).
    pub kept_for: Duration,
}

/// The outcome written over a claimed key: every column, `None` as NULL.
#[derive(Debug)]
pub struct IdempotencyOutcome {
    pub status_code: i32,
    pub status_message: String,
    pub status_details: Option<Vec<u8>>,
    pub response_body: Option<Vec<u8>>,
    pub response_metadata: Value,
    /// Always `None`: a stored outcome ends the request's phases.
    pub recovery_point: Option<String>,
    /// How long after now (PostgreSQL's clock) a key kept until its outcome expires, now that
    /// it has one; a key that had an expiry keeps it.
    pub kept_for: Duration,
}

/// The id of a key this request claimed.
#[derive(QueryableByName)]
struct ClaimedId {
    #[diesel(sql_type = sql_types::Uuid)]
    id: Uuid,
}

impl NewIdempotencyKey {
    /// Inserts the key unless its scope has it already: `Some(id)` when this request owns it.
    /// Waits for a concurrent request holding the same key (bounded by `lock_timeout`).
    ///
    /// Written out as SQL, as is [`IdempotencyRow::record`]: every idempotent write runs both,
    /// and diesel-async renders a DSL statement's text on every call (docs/performance.md,
    /// "The writes' SQL is written out").
    pub async fn claim(&self, conn: &mut AsyncPgConnection) -> QueryResult<Option<Uuid>> {
        KeepPrepared(
            diesel::sql_query(
                "INSERT INTO idempotency_keys \
                 (id, caller, rpc, key, request_hash, status_code, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)) \
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind::<sql_types::Uuid, _>(self.id)
            .bind::<sql_types::Text, _>(&self.caller)
            .bind::<sql_types::Text, _>(&self.rpc)
            .bind::<sql_types::Text, _>(&self.key)
            .bind::<sql_types::Bytea, _>(&self.request_hash)
            .bind::<sql_types::Integer, _>(self.status_code)
            .bind::<sql_types::Double, _>(self.kept_for.as_secs_f64()),
        )
        .get_result::<ClaimedId>(conn)
        .await
        .optional()
        .map(|claimed| claimed.map(|claimed| claimed.id))
    }
}

impl IdempotencyRow {
    /// The key of this scope, and whether it has expired (by PostgreSQL's clock, which set its
    /// expiry and sweeps it) though not yet swept.
    pub async fn find(
        conn: &mut AsyncPgConnection,
        caller: &str,
        rpc: &str,
        key: &str,
    ) -> QueryResult<Option<(Self, bool)>> {
        let found: Option<(Self, Option<bool>)> = idempotency_keys::table
            .filter(idempotency_keys::caller.eq(caller))
            .filter(idempotency_keys::rpc.eq(rpc))
            .filter(idempotency_keys::key.eq(key))
            .select((
                Self::as_select(),
                idempotency_keys::expires_at.lt(diesel::dsl::now).nullable(),
            ))
            .first(conn)
            .await
            .optional()?;
        // A key kept until its outcome has no expiry: NULL, never expired.
        Ok(found.map(|(row, expired)| (row, expired.unwrap_or(false))))
    }

    pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::delete(idempotency_keys::table.find(id))
            .execute(conn)
            .await
    }

    pub async fn record(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        outcome: IdempotencyOutcome,
    ) -> QueryResult<usize> {
        KeepPrepared(
            diesel::sql_query(
                "UPDATE idempotency_keys SET status_code = $1, status_message = $2, \
                 status_details = $3, response_body = $4, response_metadata = $5, \
                 recovery_point = $6, \
                 expires_at = coalesce(expires_at, now() + make_interval(secs => $8)) WHERE id = $7",
            )
            .bind::<sql_types::Integer, _>(outcome.status_code)
            .bind::<sql_types::Text, _>(outcome.status_message)
            .bind::<sql_types::Nullable<sql_types::Bytea>, _>(outcome.status_details)
            .bind::<sql_types::Nullable<sql_types::Bytea>, _>(outcome.response_body)
            .bind::<sql_types::Jsonb, _>(outcome.response_metadata)
            .bind::<sql_types::Nullable<sql_types::Text>, _>(outcome.recovery_point)
            .bind::<sql_types::Uuid, _>(id)
            .bind::<sql_types::Double, _>(outcome.kept_for.as_secs_f64()),
        )
        .execute(conn)
        .await
    }

    /// Records, in the transaction that claimed the key, the phase its request reached: the
    /// claim then commits with that phase, before the outcome is known.
    /// With `kept_until_outcome`, the key stops expiring until the outcome is recorded.
    pub async fn record_recovery_point(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        recovery_point: &str,
        kept_until_outcome: bool,
    ) -> QueryResult<usize> {
        let key = idempotency_keys::table.find(id);
        if kept_until_outcome {
            KeepPrepared(diesel::update(key).set((
                idempotency_keys::recovery_point.eq(recovery_point),
                idempotency_keys::expires_at.eq(None::<DateTime<Utc>>),
            )))
            .execute(conn)
            .await
        } else {
            KeepPrepared(
                diesel::update(key).set(idempotency_keys::recovery_point.eq(recovery_point)),
            )
            .execute(conn)
            .await
        }
    }

    /// Deletes up to `batch` expired keys, oldest first; returns how many. A key kept until its
    /// outcome (no expiry) stays.
    pub async fn sweep(conn: &mut AsyncPgConnection, batch: i64) -> QueryResult<usize> {
        let expired: Vec<Uuid> = idempotency_keys::table
            .filter(idempotency_keys::expires_at.lt(diesel::dsl::now))
            .order(idempotency_keys::expires_at.asc())
            .select(idempotency_keys::id)
            .limit(batch)
            .load(conn)
            .await?;
        if expired.is_empty() {
            return Ok(0);
        }
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::id.eq_any(expired)))
            .execute(conn)
            .await
    }
}
