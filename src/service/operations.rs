//! Long-running operations as the API sees them (docs/operations.md): starting an import, and
//! reading, listing, cancelling, deleting and waiting for the caller's account's operations.
//! The work itself is done by [`super::OperationWorkers`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Page, paginate, rows_to_fetch};
use crate::configuration::OperationSettings;
use crate::db::models::{NewOperation, OperationRow};
use crate::db::{self, PgPool};
use crate::domain::{
    ImportFormat, Operation, OperationFailure, OperationFilter, OperationId, OperationKind,
    PageCursor, PageSize, read_rows,
};
use crate::errors::{AppError, AppResult, Resource};
use crate::idempotency::{self, KeyedWrite, Outcome};
use crate::scope::RequestScope;

/// The google.rpc.Code of a file that is not of its format at all.
const INVALID_ARGUMENT: i32 = 3;

/// How often WaitOperation looks again.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// The operations of the caller's account.
#[derive(Clone)]
pub struct Operations {
    pool: PgPool,
    settings: OperationSettings,
    /// Wakes this instance's idle workers when an operation is accepted.
    wake: Arc<Notify>,
}

impl Operations {
    pub fn new(pool: PgPool, settings: OperationSettings, wake: Arc<Notify>) -> Self {
        Self {
            pool,
            settings,
            wake,
        }
    }

    /// The largest file accepted inline.
    pub fn max_inline_bytes(&self) -> usize {
        self.settings.import_max_inline_bytes
    }

    /// Accepts an import of `content`: QUEUED for a worker, or FAILED at once when the file is
    /// not `format` at all. RESOURCE_EXHAUSTED (`IMPORT_LIMIT`) when the account already has
    /// `IMPORT_MAX_CONCURRENT` imports queued or running. With an idempotency key, a retry
    /// answers the operation the first request started.
    pub async fn start_import(
        &self,
        write: &KeyedWrite<'_, Operation>,
        format: ImportFormat,
        content: &str,
    ) -> AppResult<Outcome<Operation>> {
        let caller = write.caller()?;
        let (rows_total, failure) = match read_rows(format, content) {
            Ok(file) => (i64::try_from(file.rows.len()).unwrap_or(i64::MAX), None),
            Err(problem) => (
                0,
                Some(OperationFailure {
                    code: INVALID_ARGUMENT,
                    message: format!("content {problem}"),
                }),
            ),
        };
        let account_id = caller.account_id;
        let limit = self.settings.import_max_concurrent;
        let new = NewOperation {
            id: OperationId::generate().as_uuid(),
            account_id: account_id.as_uuid(),
            kind: OperationKind::ImportTickets,
            actor: caller.actor(),
            format,
            content,
            rows_total,
            failure,
        };
        let outcome = idempotency::transaction(
            &self.pool,
            write,
            |operation: &Operation| Ok(operation.clone()),
            async |conn| {
                if new.failure.is_none() {
                    OperationRow::lock_account_imports(conn, account_id).await?;
                    let unfinished = OperationRow::count_unfinished(
                        conn,
                        account_id,
                        OperationKind::ImportTickets,
                    )
                    .await?;
                    if unfinished >= i64::from(limit) {
                        return Err(AppError::ImportLimit {
                            account: format!("accounts/{account_id}"),
                            limit,
                        });
                    }
                }
                new.insert(conn).await
            },
        )
        .await?;
        if matches!(outcome, Outcome::Done(_)) {
            self.wake.notify_one();
        }
        Ok(outcome)
    }

    /// The account's operation `id`; NOT_FOUND for another account's.
    pub async fn get(&self, scope: &RequestScope, id: OperationId) -> AppResult<Operation> {
        let caller = scope.caller()?;
        db::with_connection(&self.pool, async |conn| {
            OperationRow::find(conn, caller.account_id, id).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::Operation, id.name()))
    }

    /// The account's operations the filter admits, newest first.
    pub async fn list(
        &self,
        scope: &RequestScope,
        filter: &OperationFilter,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<Operation>> {
        let caller = scope.caller()?;
        let states = filter.states();
        let rows = db::with_connection(&self.pool, async |conn| {
            OperationRow::list_for_account(
                conn,
                caller.account_id,
                &states,
                filter.kind,
                after.as_ref(),
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        Ok(paginate(rows, page_size, |operation: &Operation| {
            PageCursor::at(operation.created_at, operation.id.as_uuid())
        }))
    }

    /// Asks the account's operation `id` to stop (at its next batch boundary); a finished one
    /// is answered as it is. NOT_FOUND for another account's.
    pub async fn cancel(&self, scope: &RequestScope, id: OperationId) -> AppResult<Operation> {
        let caller = scope.caller()?;
        db::with_connection(&self.pool, async |conn| {
            OperationRow::request_cancel(conn, caller.account_id, id).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::Operation, id.name()))
    }

    /// Forgets the account's finished operation `id` (what it imported stays);
    /// FAILED_PRECONDITION for one still queued or running, NOT_FOUND for another account's.
    pub async fn delete(&self, scope: &RequestScope, id: OperationId) -> AppResult<()> {
        let caller = scope.caller()?;
        db::with_connection(&self.pool, async |conn| {
            OperationRow::delete_done(conn, caller.account_id, id).await
        })
        .await?
        .then_some(())
        .ok_or_else(|| AppError::not_found(Resource::Operation, id.name()))
    }

    /// The account's operation `id` once it is done, or as it is when `timeout` has passed.
    pub async fn wait(
        &self,
        scope: &RequestScope,
        id: OperationId,
        timeout: Duration,
    ) -> AppResult<Operation> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let operation = self.get(scope, id).await?;
            if operation.state.is_done() || tokio::time::Instant::now() + WAIT_POLL > until {
                return Ok(operation);
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }
}
