//! The `operations` table: long-running operations (docs/operations.md). A worker claims an
//! unfinished row whose lease is free or expired (`FOR UPDATE SKIP LOCKED`), and every batch it
//! commits moves the checkpoint (`rows_read`) in the same transaction, guarded by its lease and
//! the checkpoint it started from, so a batch is counted exactly once even when a lease expired
//! and another worker took over.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use super::corrupt;
use crate::db::KeepPrepared;
use crate::db::queue::QueueStats;
use crate::db::schema::operations;
use crate::domain::{
    AccountId, Actor, ApiKeyId, ImportFormat, InvalidValue, Operation, OperationFailure,
    OperationId, OperationKind, OperationState, PageCursor, RowError, UserId,
};
use crate::errors::{AppError, AppResult};

/// The columns every read returns (never the content, which only the worker reads).
#[derive(Clone, Debug, Queryable, QueryableByName, Selectable, serde::Deserialize)]
#[diesel(table_name = operations, check_for_backend(diesel::pg::Pg))]
pub struct OperationRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub kind: String,
    pub state: String,
    pub rows_total: i64,
    pub rows_read: i64,
    pub rows_imported: i64,
    pub rows_failed: i64,
    pub row_errors: Value,
    pub cancel_requested: bool,
    pub error_code: Option<i32>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
}

impl OperationRow {
    pub fn into_domain(self) -> AppResult<Operation> {
        let row_errors: Vec<RowError> =
            serde_json::from_value(self.row_errors).map_err(|error| {
                corrupt(
                    "operations.row_errors",
                    InvalidValue::new(error.to_string()),
                )
            })?;
        let state = OperationState::from_stored(&self.state).ok_or_else(|| {
            corrupt(
                "operations.state",
                InvalidValue::new(format!("`{}` is no state", self.state)),
            )
        })?;
        Ok(Operation {
            id: OperationId::from_uuid(self.id),
            account_id: AccountId::from_uuid(self.account_id),
            kind: OperationKind::from_stored(&self.kind).ok_or_else(|| {
                corrupt(
                    "operations.kind",
                    InvalidValue::new(format!("`{}` is no kind", self.kind)),
                )
            })?,
            state,
            rows_total: self.rows_total,
            rows_read: self.rows_read,
            rows_imported: self.rows_imported,
            rows_failed: self.rows_failed,
            row_errors,
            cancel_requested: self.cancel_requested,
            failure: self.error_code.map(|code| OperationFailure {
                code,
                message: self.error_message.unwrap_or_default(),
            }),
            created_at: self.created_at,
            updated_at: self.updated_at,
            done_at: self.done_at,
        })
    }
}

/// An operation as accepted: queued for a worker, or already failed (a file that is not of its
/// format at all is refused before any worker sees it).
pub struct NewOperation<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub kind: OperationKind,
    pub actor: Actor,
    pub format: ImportFormat,
    pub content: &'a str,
    pub rows_total: i64,
    /// Set for an operation that fails at once: its google.rpc.Code and message.
    pub failure: Option<OperationFailure>,
}

impl NewOperation<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> AppResult<Operation> {
        let (actor_user_id, actor_api_key_id) = super::comment::actor_columns(self.actor);
        let state = if self.failure.is_some() {
            OperationState::Failed
        } else {
            OperationState::Queued
        };
        diesel::insert_into(operations::table)
            .values((
                operations::id.eq(self.id),
                operations::account_id.eq(self.account_id),
                operations::kind.eq(self.kind.as_str()),
                operations::state.eq(state.as_str()),
                operations::actor_user_id.eq(actor_user_id),
                operations::actor_api_key_id.eq(actor_api_key_id),
                operations::format.eq(self.format.as_str()),
                // A failed operation never runs: its content is not kept.
                operations::content.eq(self.failure.is_none().then_some(self.content)),
                operations::rows_total.eq(self.rows_total),
                operations::error_code.eq(self.failure.as_ref().map(|failure| failure.code)),
                operations::error_message.eq(self
                    .failure
                    .as_ref()
                    .map(|failure| failure.message.as_str())),
                // PostgreSQL's clock, as every other instant of the row (created_at, the
                // lease): an instance whose own clock is off would date it before its creation.
                // (An expression diesel can keep prepared: raw SQL would be prepared anew on
                // every insert, a round trip more.)
                operations::done_at.eq(diesel::dsl::case_when(
                    self.failure.is_some().into_sql::<sql_types::Bool>(),
                    diesel::dsl::now.into_sql::<sql_types::Timestamptz>(),
                )),
            ))
            .returning(OperationRow::as_returning())
            .get_result::<OperationRow>(conn)
            .await?
            .into_domain()
    }
}

/// An operation a worker holds the lease of, with what it needs to run it.
#[derive(Debug)]
pub struct ClaimedOperation {
    pub operation: Operation,
    pub actor: Actor,
    pub format: ImportFormat,
    pub content: String,
    /// The failed attempts at the batch at the checkpoint that earlier holders recorded.
    pub batch_failures: u32,
    /// The claims since the last committed batch, this one included, that did not give the
    /// operation back cleanly (see [`OperationRow::release`]).
    pub claims_without_progress: u32,
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(embed)]
    operation: OperationRow,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Uuid>)]
    actor_user_id: Option<Uuid>,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Uuid>)]
    actor_api_key_id: Option<Uuid>,
    #[diesel(sql_type = sql_types::Text)]
    format: String,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Text>)]
    content: Option<String>,
    #[diesel(sql_type = sql_types::Integer)]
    batch_failures: i32,
    #[diesel(sql_type = sql_types::Integer)]
    claims_without_progress: i32,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = sql_types::BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct CancelFlag {
    #[diesel(sql_type = sql_types::Bool)]
    cancel_requested: bool,
}

/// What a renewed lease found: whether a cancellation was asked for, and the failed attempts at
/// the current batch recorded so far.
#[derive(Clone, Copy, Debug, QueryableByName)]
pub struct Renewal {
    #[diesel(sql_type = sql_types::Bool)]
    pub cancel_requested: bool,
    #[diesel(sql_type = sql_types::Integer)]
    batch_failures: i32,
}

impl Renewal {
    /// The failed attempts at the batch at the checkpoint, every holder's.
    pub fn batch_failures(&self) -> u32 {
        u32::try_from(self.batch_failures).unwrap_or(0)
    }
}

/// What one committed batch adds to an operation.
#[derive(Debug)]
pub struct BatchProgress<'a> {
    /// The checkpoint the batch started from.
    pub from_rows_read: i64,
    /// The checkpoint after it.
    pub to_rows_read: i64,
    pub imported: i64,
    pub failed: i64,
    /// The batch's refused rows, to append while the stored list is under `max_errors`.
    pub errors: &'a [RowError],
    pub max_errors: i64,
}

impl OperationRow {
    /// Serialises the start of imports in an account (a transaction-scoped advisory lock), so
    /// that counting the unfinished ones and inserting one cannot race.
    pub async fn lock_account_imports(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
    ) -> AppResult<()> {
        KeepPrepared(
            diesel::sql_query(
                "SELECT pg_advisory_xact_lock(hashtextextended('operations:' || $1::text, 0))",
            )
            .bind::<sql_types::Uuid, _>(account_id.as_uuid()),
        )
        .execute(conn)
        .await?;
        Ok(())
    }

    /// How many operations of `kind` the account has queued or running.
    pub async fn count_unfinished(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        kind: OperationKind,
    ) -> AppResult<i64> {
        Ok(KeepPrepared(
            diesel::sql_query(
                "SELECT count(*) AS count FROM operations WHERE account_id = $1 AND kind = $2 \
                 AND state IN ('queued', 'running')",
            )
            .bind::<sql_types::Uuid, _>(account_id.as_uuid())
            .bind::<sql_types::Text, _>(kind.as_str()),
        )
        .get_result::<Count>(conn)
        .await?
        .count)
    }

    /// The operation `id` of the account, if it has one.
    pub async fn find(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        id: OperationId,
    ) -> AppResult<Option<Operation>> {
        operations::table
            .filter(operations::account_id.eq(account_id.as_uuid()))
            .filter(operations::id.eq(id.as_uuid()))
            .select(Self::as_select())
            .first::<Self>(conn)
            .await
            .optional()?
            .map(Self::into_domain)
            .transpose()
    }

    /// Up to `limit` operations of the account in `states` (and of `kind`), newest first, after
    /// `after`.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        states: &[OperationState],
        kind: Option<OperationKind>,
        after: Option<&PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<Operation>> {
        let states: Vec<&str> = states.iter().map(|state| state.as_str()).collect();
        let mut query = operations::table
            .filter(operations::account_id.eq(account_id.as_uuid()))
            .filter(operations::state.eq_any(states))
            .select(Self::as_select())
            .order((operations::created_at.desc(), operations::id.desc()))
            .limit(limit)
            .into_boxed();
        if let Some(kind) = kind {
            query = query.filter(operations::kind.eq(kind.as_str()));
        }
        if let Some(cursor) = after {
            query = query.filter(
                operations::created_at
                    .lt(cursor.at)
                    .or(operations::created_at
                        .eq(cursor.at)
                        .and(operations::id.lt(cursor.id))),
            );
        }
        query
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    /// Asks the account's operation `id` to stop: one no worker holds yet is cancelled at once;
    /// a running one is flagged, and its worker stops at the next batch boundary. A finished one
    /// is left as it is. `None`: the account has no such operation.
    pub async fn request_cancel(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        id: OperationId,
    ) -> AppResult<Option<Operation>> {
        let updated = KeepPrepared(
            diesel::sql_query(
                "UPDATE operations SET cancel_requested = true, updated_at = now(), \
                 state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END, \
                 done_at = CASE WHEN state = 'queued' THEN now() ELSE done_at END, \
                 content = CASE WHEN state = 'queued' THEN NULL ELSE content END \
                 WHERE account_id = $1 AND id = $2 AND state IN ('queued', 'running') \
                 RETURNING id, account_id, kind, state, rows_total, rows_read, rows_imported, \
                 rows_failed, row_errors, cancel_requested, error_code, error_message, \
                 created_at, updated_at, done_at",
            )
            .bind::<sql_types::Uuid, _>(account_id.as_uuid())
            .bind::<sql_types::Uuid, _>(id.as_uuid()),
        )
        .get_result::<Self>(conn)
        .await
        .optional()?;
        match updated {
            Some(row) => row.into_domain().map(Some),
            None => Self::find(conn, account_id, id).await,
        }
    }

    /// Deletes the account's finished operation `id`; an unfinished one is refused
    /// (`OPERATION_NOT_DONE`); `false` when there is no such operation. The delete itself
    /// requires a finished state, so that of two deletes at once only one deletes the row and
    /// the other is told it is not there.
    pub async fn delete_done(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        id: OperationId,
    ) -> AppResult<bool> {
        let unfinished = [
            OperationState::Queued.as_str(),
            OperationState::Running.as_str(),
        ];
        loop {
            let deleted = diesel::delete(
                operations::table
                    .filter(operations::account_id.eq(account_id.as_uuid()))
                    .filter(operations::id.eq(id.as_uuid()))
                    .filter(operations::state.ne_all(unfinished)),
            )
            .execute(conn)
            .await?;
            if deleted == 1 {
                return Ok(true);
            }
            let Some(operation) = Self::find(conn, account_id, id).await? else {
                return Ok(false);
            };
            // Finished between the delete and the read: the next delete takes it.
            if operation.state.is_done() {
                continue;
            }
            return Err(AppError::FailedPrecondition {
                reason: crate::errors::Reason::OperationNotDone,
                message: format!(
                    "the operation is {}; only a finished operation can be deleted",
                    operation.state
                ),
                violations: vec![crate::errors::PreconditionViolation {
                    kind: "OPERATION_STATE".to_owned(),
                    subject: id.name(),
                    description: format!(
                        "the operation is {}; cancel it and wait until it is done",
                        operation.state
                    ),
                }],
            });
        }
    }

    /// The operations queue as the queue sampler reads it ([`QueueStats`]): every unfinished
    /// operation (`queued` or `running`); one waits while no live lease holds it, since its
    /// creation or since its last lease ran out (its worker stopped or died).
    pub async fn queue_stats(conn: &mut AsyncPgConnection) -> AppResult<QueueStats> {
        Ok(KeepPrepared(diesel::sql_query(
            "SELECT count(*) AS depth, \
                 COALESCE(EXTRACT(EPOCH FROM now() - min(COALESCE(lease_expires_at, created_at)) \
                     FILTER (WHERE lease_expires_at IS NULL OR lease_expires_at < now()))::float8, 0) \
                     AS oldest_age_seconds \
             FROM operations WHERE state IN ('queued', 'running')",
        ))
        .get_result(conn)
        .await?)
    }

    /// Claims the oldest unfinished operation whose lease is free or expired, for `worker`
    /// until `lease` from now: marked RUNNING, its attempts counted.
    pub async fn claim(
        conn: &mut AsyncPgConnection,
        worker: Uuid,
        lease: std::time::Duration,
    ) -> AppResult<Option<ClaimedOperation>> {
        let claimed = KeepPrepared(
            diesel::sql_query(
                "UPDATE operations SET state = 'running', lease_owner = $1, \
                 lease_expires_at = now() + $2 * interval '1 millisecond', \
                 attempts = attempts + 1, claims_without_progress = claims_without_progress + 1, \
                 updated_at = now() \
                 WHERE id = (SELECT id FROM operations \
                   WHERE state IN ('queued', 'running') \
                   AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
                   ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, account_id, kind, state, rows_total, rows_read, rows_imported, \
                 rows_failed, row_errors, cancel_requested, error_code, error_message, \
                 created_at, updated_at, done_at, actor_user_id, actor_api_key_id, format, content, \
                 batch_failures, claims_without_progress",
            )
            .bind::<sql_types::Uuid, _>(worker)
            .bind::<sql_types::BigInt, _>(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)),
        )
        .get_result::<ClaimedRow>(conn)
        .await
        .optional()?;
        let Some(claimed) = claimed else {
            return Ok(None);
        };
        crate::db::committed(conn).await?;
        let actor = match (claimed.actor_user_id, claimed.actor_api_key_id) {
            (Some(user), _) => Actor::User(UserId::from_uuid(user)),
            (None, Some(key)) => Actor::ApiKey(ApiKeyId::from_uuid(key)),
            (None, None) => {
                return Err(corrupt(
                    "operations.actor_user_id",
                    InvalidValue::new("an operation without an actor"),
                ));
            }
        };
        let format = ImportFormat::from_stored(&claimed.format).ok_or_else(|| {
            corrupt(
                "operations.format",
                InvalidValue::new(format!("`{}` is no format", claimed.format)),
            )
        })?;
        Ok(Some(ClaimedOperation {
            operation: claimed.operation.into_domain()?,
            actor,
            format,
            content: claimed.content.unwrap_or_default(),
            batch_failures: u32::try_from(claimed.batch_failures).unwrap_or(0),
            claims_without_progress: u32::try_from(claimed.claims_without_progress).unwrap_or(0),
        }))
    }

    /// Moves the checkpoint of `id` by one batch and renews `worker`'s lease, in the batch's own
    /// transaction. `None` when the worker no longer holds the lease at that checkpoint (it
    /// expired and another worker took over): the caller must roll the batch back. Otherwise,
    /// whether a cancellation was asked for.
    ///
    /// The lease runs from `clock_timestamp()`, not `now()`: `now()` is when the batch's
    /// transaction began, and a batch that waited on locks would commit a lease that is already
    /// (nearly) over, for another worker to claim while this one goes on to the next batch.
    pub async fn checkpoint(
        conn: &mut AsyncPgConnection,
        id: OperationId,
        worker: Uuid,
        lease: std::time::Duration,
        progress: &BatchProgress<'_>,
    ) -> AppResult<Option<bool>> {
        let errors = serde_json::to_value(progress.errors)
            .map_err(|error| AppError::internal(anyhow::anyhow!(error)))?;
        Ok(KeepPrepared(
            diesel::sql_query(
                "UPDATE operations SET rows_read = $4, rows_imported = rows_imported + $5, \
                 rows_failed = rows_failed + $6, \
                 row_errors = CASE WHEN jsonb_array_length(row_errors) >= $8 THEN row_errors \
                   ELSE (SELECT coalesce(jsonb_agg(e ORDER BY n), '[]') FROM \
                     jsonb_array_elements(row_errors || $7) WITH ORDINALITY AS t(e, n) \
                     WHERE n <= $8) END, \
                 lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond', \
                 batch_failures = 0, claims_without_progress = 0, updated_at = now() \
                 WHERE id = $1 AND lease_owner = $2 AND rows_read = $9 AND state = 'running' \
                 RETURNING cancel_requested",
            )
            .bind::<sql_types::Uuid, _>(id.as_uuid())
            .bind::<sql_types::Uuid, _>(worker)
            .bind::<sql_types::BigInt, _>(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
            .bind::<sql_types::BigInt, _>(progress.to_rows_read)
            .bind::<sql_types::BigInt, _>(progress.imported)
            .bind::<sql_types::BigInt, _>(progress.failed)
            .bind::<sql_types::Jsonb, _>(errors)
            .bind::<sql_types::BigInt, _>(progress.max_errors)
            .bind::<sql_types::BigInt, _>(progress.from_rows_read),
        )
        .get_result::<CancelFlag>(conn)
        .await
        .optional()?
        .map(|flag| flag.cancel_requested))
    }

    /// Renews `worker`'s lease on the running `id` for `lease` from now without moving its
    /// checkpoint: for a worker between two attempts at a batch that failed, so that no other
    /// worker claims the operation meanwhile. With `failed_attempt`, the attempt that just failed
    /// is recorded in the same statement, so the count outlives the worker. `None` when the
    /// worker no longer holds it.
    pub async fn renew_lease(
        conn: &mut AsyncPgConnection,
        id: OperationId,
        worker: Uuid,
        lease: std::time::Duration,
        failed_attempt: bool,
    ) -> AppResult<Option<Renewal>> {
        Ok(KeepPrepared(
            diesel::sql_query(
                "UPDATE operations \
                 SET lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond', \
                 batch_failures = batch_failures + $4 \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running' \
                 RETURNING cancel_requested, batch_failures",
            )
            .bind::<sql_types::Uuid, _>(id.as_uuid())
            .bind::<sql_types::Uuid, _>(worker)
            .bind::<sql_types::BigInt, _>(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
            .bind::<sql_types::Integer, _>(i32::from(failed_attempt)),
        )
        .get_result::<Renewal>(conn)
        .await
        .optional()?)
    }

    /// Gives up `worker`'s lease on `id` without finishing it (a shutdown): the next worker to
    /// look may take it over at once (by the database's clock, which the claim reads). A claim
    /// given back this way does not count as one without progress: the worker stopped because
    /// it was told to, not because of the batch.
    pub async fn release(
        conn: &mut AsyncPgConnection,
        id: OperationId,
        worker: Uuid,
    ) -> AppResult<()> {
        diesel::update(
            operations::table
                .filter(operations::id.eq(id.as_uuid()))
                .filter(operations::lease_owner.eq(worker)),
        )
        .set((
            operations::lease_expires_at.eq(diesel::dsl::sql::<
                sql_types::Nullable<sql_types::Timestamptz>,
            >("now()")),
            operations::claims_without_progress.eq(diesel::dsl::sql::<sql_types::Integer>(
                "greatest(claims_without_progress - 1, 0)",
            )),
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Ends `id` as `state` (with `failure` when FAILED) while `worker` holds its lease; drops
    /// the content. Whether the worker still held it.
    pub async fn finish(
        conn: &mut AsyncPgConnection,
        id: OperationId,
        worker: Uuid,
        state: OperationState,
        failure: Option<&OperationFailure>,
    ) -> AppResult<bool> {
        let finished = diesel::update(
            operations::table
                .filter(operations::id.eq(id.as_uuid()))
                .filter(operations::lease_owner.eq(worker))
                .filter(operations::state.eq(OperationState::Running.as_str())),
        )
        .set((
            operations::state.eq(state.as_str()),
            operations::error_code.eq(failure.map(|failure| failure.code)),
            operations::error_message.eq(failure.map(|failure| failure.message.as_str())),
            operations::content.eq(None::<String>),
            operations::lease_owner.eq(None::<Uuid>),
            operations::lease_expires_at.eq(None::<DateTime<Utc>>),
            operations::done_at.eq(diesel::dsl::now
                .into_sql::<sql_types::Timestamptz>()
                .nullable()),
            operations::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
        Ok(finished == 1)
    }
}
