//! The `idempotency_keys` table: outcomes of requests sent with an Idempotency-Key.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
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
    pub expires_at: DateTime<Utc>,
    /// Where a request that commits in phases stopped (`None` once its outcome is stored).
    pub recovery_point: Option<String>,
}

/// A key to claim, before its outcome is known.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = idempotency_keys)]
pub struct NewIdempotencyKey {
    pub id: Uuid,
    pub caller: String,
    pub rpc: String,
    pub key: String,
    pub request_hash: Vec<u8>,
    /// Until the outcome is written in the same transaction: never visible to others.
    pub status_code: i32,
    pub expires_at: DateTime<Utc>,
}

/// The outcome written over a claimed key.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = idempotency_keys, treat_none_as_null = true)]
pub struct IdempotencyOutcome {
    pub status_code: i32,
    pub status_message: String,
    pub status_details: Option<Vec<u8>>,
    pub response_body: Option<Vec<u8>>,
    pub response_metadata: Value,
    /// Always `None`: a stored outcome ends the request's phases.
    pub recovery_point: Option<String>,
}

impl NewIdempotencyKey {
    /// Inserts the key unless its scope has it already: `Some(id)` when this request owns it.
    /// Waits for a concurrent request holding the same key (bounded by `lock_timeout`).
    pub async fn claim(&self, conn: &mut AsyncPgConnection) -> QueryResult<Option<Uuid>> {
        KeepPrepared(
            diesel::insert_into(idempotency_keys::table)
                .values(self)
                .on_conflict_do_nothing()
                .returning(idempotency_keys::id),
        )
        .get_result(conn)
        .await
        .optional()
    }
}

impl IdempotencyRow {
    pub async fn find(
        conn: &mut AsyncPgConnection,
        caller: &str,
        rpc: &str,
        key: &str,
    ) -> QueryResult<Option<Self>> {
        idempotency_keys::table
            .filter(idempotency_keys::caller.eq(caller))
            .filter(idempotency_keys::rpc.eq(rpc))
            .filter(idempotency_keys::key.eq(key))
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()
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
        KeepPrepared(diesel::update(idempotency_keys::table.find(id)).set(outcome))
            .execute(conn)
            .await
    }

    /// Records, in the transaction that claimed the key, the phase its request reached: the
    /// claim then commits with that phase, before the outcome is known.
    pub async fn record_recovery_point(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        recovery_point: &str,
    ) -> QueryResult<usize> {
        KeepPrepared(
            diesel::update(idempotency_keys::table.find(id))
                .set(idempotency_keys::recovery_point.eq(recovery_point)),
        )
        .execute(conn)
        .await
    }

    /// Deletes up to `batch` expired keys, oldest first; returns how many.
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
