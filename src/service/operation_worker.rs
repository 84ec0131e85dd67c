//! The operation workers (docs/operations.md, "How an import runs"): each claims the oldest
//! unfinished operation whose lease is free or expired, and runs it batch by batch. A batch is one
//! transaction: its tickets, their audit records and the checkpoint (`rows_read`, guarded by the
//! worker's lease and the checkpoint it started from) commit together or not at all, so an
//! import that stops anywhere (a crash, a lost lease, a shutdown) resumes at the first row no
//! committed batch settled, and no row is imported twice. A cancellation is honoured between
//! batches, and between the attempts at a batch that failed.
//!
//! A failed batch is tried again after a pause that doubles from `OPERATION_POLL_INTERVAL_MS` to
//! half the lease, the worker holding the operation meanwhile (its lease renewed, the cancel flag
//! read). Each failed attempt is recorded on the operation's row by the renewal that follows it,
//! so the count belongs to the batch, not to the worker that saw it: a worker that stops, crashes
//! or loses its lease leaves it to the next. A batch whose failures reach [`BATCH_MAX_FAILURES`]
//! is poisoned (a row the database refuses every time): the operation ends FAILED, naming its
//! rows, and the batches before it stay imported. An attempt counts whatever its error (an
//! UNAVAILABLE too) once PostgreSQL answers the renewal after it; PostgreSQL out of reach says
//! nothing about the batch, and is waited out for as long as it lasts.
//!
//! A batch that never fails but never commits either (it crashes its worker, or outlives its
//! lease every time) is caught at the claim: an operation claimed more than
//! [`CLAIMS_WITHOUT_PROGRESS_MAX`] times since its last committed batch, by workers that did not
//! give it back cleanly, fails naming the batch.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::configuration::OperationSettings;
use crate::db::models::activity::changes_to_json;
use crate::db::models::comment::actor_columns;
use crate::db::models::custom_field::CustomFieldRow;
use crate::db::models::{
    BatchProgress, ClaimedOperation, GroupMemberRow, GroupRow, ImportedTickets, OperationRow,
    RequesterOpenTicketsRow, UserRow,
};
use crate::db::{self, Limits, PgPool};
use crate::domain::{
    AccountId, Actor, Catalogue, ImportFile, ImportRow, ImportTicket, Opening, OperationFailure,
    OperationId, OperationState, RowError, TicketId, UserId, read_rows,
};
use crate::errors::AppError;
use crate::resilience::worker_pool::poll_until_stopped;

/// The google.rpc.Code of a file that is not of its format at all.
const INVALID_ARGUMENT: i32 = 3;

/// The google.rpc.Code of an import stopped by a batch the database refuses every time.
const INTERNAL: i32 = 13;

/// How many times in a row one batch may fail, PostgreSQL reachable, before its import fails.
/// Error kinds do not tell a poisoned batch from bad luck: a deadlock with another import and a
/// check constraint a row violates both arrive as an internal error, and a constraint violated
/// by a race (an assignee deactivated meanwhile) passes on the next attempt, which validates the
/// rows again. What marks a poisoned batch is that it fails every time; five attempts over about
/// fifteen seconds (at the default poll interval) outlast any deadlock or lock queue.
pub const BATCH_MAX_FAILURES: u32 = 5;

/// How many claims since the last committed batch may end without that batch committing and
/// without the operation given back cleanly (a worker killed, hung, or overtaken when its lease
/// ran out) before the next claim fails the operation instead of running it. A shutdown's
/// give-back does not count, so rolling deploys never use these up.
pub const CLAIMS_WITHOUT_PROGRESS_MAX: u32 = 5;

/// How long a worker waits before it tries to finish an operation again (the database away).
const FINISH_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How a worker reports progress (a claim looked for, a batch settled): the job runner's
/// heartbeat, handed down by the task that runs the workers.
pub type Progress = Arc<dyn Fn() + Send + Sync>;

/// The workers of this instance, run as one task by the job runner.
#[derive(Clone)]
pub struct OperationWorkers {
    pool: PgPool,
    settings: OperationSettings,
    max_open_per_requester: u32,
    wake: Arc<Notify>,
}

/// Why a batch did not commit.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    /// The worker no longer holds the lease at the checkpoint the batch started from.
    #[error("the lease was lost")]
    LostLease,
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<diesel::result::Error> for BatchError {
    fn from(error: diesel::result::Error) -> Self {
        Self::App(error.into())
    }
}

/// What a committed batch settled.
struct Settled {
    /// The tickets it created.
    imported: i64,
    /// Whether a cancellation was asked for, as the checkpoint read it.
    cancel_requested: bool,
}

/// Whether a worker still holds its operation, as a renewal of its lease found.
enum Hold {
    Held {
        cancel_requested: bool,
        /// The failed attempts at the current batch recorded on the row, every worker's.
        batch_failures: u32,
    },
    /// Another worker claimed it, or it is no longer running.
    Lost,
    /// PostgreSQL did not answer: the next checkpoint tells.
    Unknown,
}

/// What the pause between two attempts at a failed batch came to.
enum Pause {
    /// Try the batch again.
    Retry,
    /// The batch has failed [`BATCH_MAX_FAILURES`] times in all (this many): fail the import.
    Poisoned(u32),
    /// A cancellation was asked for: end the operation CANCELLED.
    Cancel,
    /// Shut down, or the operation went to another worker.
    Stop,
}

/// What a run of one operation came to.
enum Ran {
    /// Finished (succeeded, failed or cancelled).
    Finished,
    /// Stopped without finishing: shut down, or its lease went to another worker.
    Stopped,
}

impl OperationWorkers {
    pub fn new(
        pool: PgPool,
        settings: OperationSettings,
        max_open_per_requester: u32,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            settings,
            max_open_per_requester,
            wake,
        }
    }

    /// Runs `OPERATION_WORKERS` workers until `stop`.
    pub async fn run(self, stop: CancellationToken, heartbeat: Progress) -> anyhow::Result<()> {
        let workers = self.settings.workers;
        crate::resilience::worker_pool::run("operation worker", workers, stop, |worker, stop| {
            self.clone().run_worker(worker, stop, heartbeat.clone())
        })
        .await
    }

    async fn run_worker(self, worker: u32, stop: CancellationToken, heartbeat: Progress) {
        let (this, stop_ref, beat) = (&self, &stop, &heartbeat);
        poll_until_stopped(
            &stop,
            self.settings.poll_interval,
            Some(&self.wake),
            move || async move {
                // Looking for work is progress: an idle worker is not lagging.
                beat();
                this.work_once(stop_ref, beat).await
            },
            |error| tracing::warn!(worker, %error, "operations cannot be claimed; will retry"),
        )
        .await;
    }

    /// Claims one operation and runs it until it finishes or the worker stops; false when none
    /// was waiting.
    pub async fn work_once(
        &self,
        stop: &CancellationToken,
        heartbeat: &Progress,
    ) -> Result<bool, AppError> {
        let worker = Uuid::now_v7();
        let claimed = {
            let mut conn = db::connection(&self.pool).await?;
            OperationRow::claim(&mut conn, worker, self.settings.lease).await?
        };
        let Some(claimed) = claimed else {
            return Ok(false);
        };
        let id = claimed.operation.id;
        tracing::info!(operation = %id.name(), rows_read = claimed.operation.rows_read, "operation claimed");
        match self.run_claimed(worker, claimed, stop, heartbeat).await {
            Ran::Finished => tracing::info!(operation = %id.name(), "operation finished"),
            Ran::Stopped => {
                // Another instance (or this one, restarted) takes over at once.
                let released = db::with_connection(&self.pool, async |conn| {
                    OperationRow::release(conn, id, worker).await
                })
                .await;
                match released {
                    Ok(()) => {
                        tracing::info!(operation = %id.name(), "operation given back unfinished")
                    }
                    Err(error) => {
                        tracing::warn!(operation = %id.name(), %error, "the lease was not released; it runs out by itself")
                    }
                }
            }
        }
        Ok(true)
    }

    async fn run_claimed(
        &self,
        worker: Uuid,
        claimed: ClaimedOperation,
        stop: &CancellationToken,
        heartbeat: &Progress,
    ) -> Ran {
        let operation = &claimed.operation;
        let file = match read_rows(claimed.format, &claimed.content) {
            Ok(file) => file,
            Err(problem) => {
                let failure = OperationFailure {
                    code: INVALID_ARGUMENT,
                    message: format!("content {problem}"),
                };
                return self.fail(worker, operation.id, &failure, stop).await;
            }
        };
        // Values are checked against the catalogue as it is when the import is taken up (each
        // pickup reads it again), as CreateTicket checks against the one it reads first.
        let catalogue = match self.catalogue_for(operation.account_id, &file).await {
            Ok(catalogue) => catalogue,
            Err(error) => {
                tracing::warn!(operation = %operation.id.name(), %error, "the catalogue of custom fields could not be read; the operation is given back");
                return Ran::Stopped;
            }
        };
        if let Err(problem) = file.check_field_columns(&catalogue) {
            let failure = OperationFailure {
                code: INVALID_ARGUMENT,
                message: format!("content {problem}"),
            };
            return self.fail(worker, operation.id, &failure, stop).await;
        }
        let rows = file.rows;
        let run = ImportRun {
            worker,
            id: operation.id,
            account_id: operation.account_id,
            actor: claimed.actor,
            catalogue: &catalogue,
        };
        let mut position = usize::try_from(operation.rows_read).unwrap_or(usize::MAX);
        let mut rows_imported = operation.rows_imported;
        let mut cancel_requested = operation.cancel_requested;
        let batch_rows = usize::try_from(self.settings.import_batch_rows).unwrap_or(1);
        let batch_at = |position: usize| {
            &rows[position.min(rows.len())..rows.len().min(position + batch_rows)]
        };
        if claimed.claims_without_progress > CLAIMS_WITHOUT_PROGRESS_MAX && position < rows.len() {
            tracing::error!(
                operation = %operation.id.name(),
                claims = claimed.claims_without_progress - 1,
                "an import batch was taken up again and again and never committed; the operation fails"
            );
            let failure = stalled_batch(
                batch_at(position),
                &rows,
                claimed.claims_without_progress - 1,
                rows_imported,
            );
            return self.fail(worker, operation.id, &failure, stop).await;
        }
        // Failed attempts at the batch at `position`, every worker's (they set the pause).
        let mut failed_attempts: u32 = claimed.batch_failures;
        loop {
            // Every row settled: a cancellation asked for during the last batch came too late to
            // stop anything, and reporting CANCELLED would hide that the import is whole.
            if position >= rows.len() {
                return self
                    .finish(worker, operation.id, OperationState::Succeeded, None, stop)
                    .await;
            }
            if cancel_requested {
                return self
                    .finish(worker, operation.id, OperationState::Cancelled, None, stop)
                    .await;
            }
            if stop.is_cancelled() {
                return Ran::Stopped;
            }
            let batch = batch_at(position);
            match self.import_batch(&run, batch, position).await {
                Ok(settled) => {
                    position += batch.len();
                    rows_imported += settled.imported;
                    cancel_requested = settled.cancel_requested;
                    failed_attempts = 0;
                    heartbeat();
                }
                Err(BatchError::LostLease) => {
                    tracing::warn!(operation = %operation.id.name(), "the operation's lease went to another worker");
                    return Ran::Stopped;
                }
                Err(BatchError::App(error)) => {
                    failed_attempts = failed_attempts.saturating_add(1);
                    let pause = self.retry_pause(failed_attempts);
                    tracing::warn!(
                        operation = %operation.id.name(),
                        %error,
                        attempt = failed_attempts,
                        pause_ms = pause.as_millis(),
                        "an import batch failed; will retry it"
                    );
                    match self
                        .pause_holding(worker, operation.id, pause, stop, heartbeat)
                        .await
                    {
                        Pause::Retry => {}
                        Pause::Poisoned(failures) => {
                            tracing::error!(
                                operation = %operation.id.name(),
                                error = ?anyhow::Error::from(error),
                                attempts = failures,
                                "an import batch failed every time; the operation fails"
                            );
                            let failure = poisoned_batch(batch, &rows, failures, rows_imported);
                            return self.fail(worker, operation.id, &failure, stop).await;
                        }
                        Pause::Cancel => cancel_requested = true,
                        Pause::Stop => return Ran::Stopped,
                    }
                }
            }
        }
    }

    /// The pause before the `attempt`th retry of a batch: the poll interval, doubled at each
    /// attempt, at most half the lease (so that a lease renewed before the pause outlasts it).
    fn retry_pause(&self, attempt: u32) -> Duration {
        let longest = self.settings.lease / 2;
        let doublings = attempt.saturating_sub(1).min(16);
        self.settings
            .poll_interval
            .saturating_mul(1 << doublings)
            .min(longest)
    }

    /// Waits `pause` after a failed attempt at a batch while holding the operation: the lease is
    /// renewed before the pause (the failed attempt may have used most of it), recording the
    /// failure, and after it (the next attempt gets a whole lease); each renewal reads the cancel
    /// flag. Poisoned instead of a pause once the recorded failures reach
    /// [`BATCH_MAX_FAILURES`].
    async fn pause_holding(
        &self,
        worker: Uuid,
        id: OperationId,
        pause: Duration,
        stop: &CancellationToken,
        heartbeat: &Progress,
    ) -> Pause {
        match self.renew_lease(worker, id, true, heartbeat).await {
            Hold::Held {
                cancel_requested: true,
                ..
            } => return Pause::Cancel,
            Hold::Held { batch_failures, .. } if batch_failures >= BATCH_MAX_FAILURES => {
                return Pause::Poisoned(batch_failures);
            }
            Hold::Lost => return Pause::Stop,
            Hold::Held { .. } | Hold::Unknown => {}
        }
        tokio::select! {
            () = stop.cancelled() => return Pause::Stop,
            () = tokio::time::sleep(pause) => {}
        }
        match self.renew_lease(worker, id, false, heartbeat).await {
            Hold::Held {
                cancel_requested: true,
                ..
            } => Pause::Cancel,
            Hold::Lost => Pause::Stop,
            Hold::Held { .. } | Hold::Unknown => Pause::Retry,
        }
    }

    /// Renews `worker`'s lease on `id` (recording a failed attempt at its batch with
    /// `failed_attempt`); a renewal that PostgreSQL answered is progress (the worker is alive and
    /// holds its operation) and beats the heartbeat.
    async fn renew_lease(
        &self,
        worker: Uuid,
        id: OperationId,
        failed_attempt: bool,
        heartbeat: &Progress,
    ) -> Hold {
        let lease = self.settings.lease;
        let renewed = db::with_connection(&self.pool, async |conn| {
            OperationRow::renew_lease(conn, id, worker, lease, failed_attempt).await
        })
        .await;
        match renewed {
            Ok(Some(renewal)) => {
                heartbeat();
                Hold::Held {
                    cancel_requested: renewal.cancel_requested,
                    batch_failures: renewal.batch_failures(),
                }
            }
            Ok(None) => {
                tracing::warn!(operation = %id.name(), "the operation's lease went to another worker");
                Hold::Lost
            }
            Err(error) => {
                tracing::warn!(operation = %id.name(), %error, "the operation's lease cannot be renewed");
                Hold::Unknown
            }
        }
    }

    /// Ends the operation FAILED with `failure`, as [`Self::finish`] does.
    async fn fail(
        &self,
        worker: Uuid,
        id: OperationId,
        failure: &OperationFailure,
        stop: &CancellationToken,
    ) -> Ran {
        self.finish(worker, id, OperationState::Failed, Some(failure), stop)
            .await
    }

    /// Ends the operation, retrying while the database is away; stopped when told to stop or
    /// when the lease went elsewhere.
    async fn finish(
        &self,
        worker: Uuid,
        id: OperationId,
        state: OperationState,
        failure: Option<&OperationFailure>,
        stop: &CancellationToken,
    ) -> Ran {
        loop {
            let finished = db::with_connection(&self.pool, async |conn| {
                OperationRow::finish(conn, id, worker, state, failure).await
            })
            .await;
            match finished {
                Ok(true) => return Ran::Finished,
                Ok(false) => return Ran::Stopped,
                Err(error) => {
                    tracing::warn!(operation = %id.name(), %error, "an operation cannot be finished; will retry");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return Ran::Stopped,
                () = tokio::time::sleep(FINISH_RETRY_PAUSE) => {}
            }
        }
    }

    /// The account's catalogue of custom fields when `file` sets any (one query); an empty one
    /// otherwise.
    async fn catalogue_for(
        &self,
        account_id: AccountId,
        file: &ImportFile,
    ) -> Result<Catalogue, AppError> {
        let sets_values = !file.field_columns.is_empty()
            || file.rows.iter().any(|row| {
                row.cells
                    .as_ref()
                    .is_ok_and(|cells| !cells.custom_fields.is_empty())
            });
        if !sets_values {
            return Ok(Catalogue::default());
        }
        db::with_connection(&self.pool, async |conn| {
            CustomFieldRow::catalogue_for_account(conn, account_id.as_uuid()).await
        })
        .await
    }

    /// Settles `batch` (rows from `position` on) in one transaction: every row validated as
    /// CreateTicket validates it, the valid ones inserted, the refused ones reported, and the
    /// checkpoint moved.
    async fn import_batch(
        &self,
        run: &ImportRun<'_>,
        batch: &[ImportRow],
        position: usize,
    ) -> Result<Settled, BatchError> {
        let ImportRun {
            worker,
            id,
            account_id,
            actor,
            catalogue,
        } = *run;
        let lease = self.settings.lease;
        let max_open = i64::from(self.max_open_per_requester);
        let max_errors = i64::from(self.settings.import_max_row_errors);
        let mut conn = db::connection(&self.pool).await?;
        db::transaction(&mut conn, Limits::within(lease), async |conn| {
            let mut errors: Vec<RowError> = Vec::new();
            let mut failed_rows: i64 = 0;
            let mut candidates = Vec::new();
            for row in batch {
                match row.validate(catalogue) {
                    Ok(ticket) => candidates.push(ticket),
                    Err(row_errors) => {
                        failed_rows += 1;
                        errors.extend(row_errors);
                    }
                }
            }
            // Assignees: active agents or admins of the account, as CreateTicket requires.
            let named: Vec<Uuid> = candidates
                .iter()
                .filter_map(|ticket| ticket.assignee.map(|id| id.as_uuid()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let agents: HashSet<Uuid> = if named.is_empty() {
                HashSet::new()
            } else {
                UserRow::active_agents_among(conn, account_id, &named)
                    .await?
                    .into_iter()
                    .collect()
            };
            let mut refused = BTreeMap::new();
            candidates.retain(|ticket| match ticket.assignee {
                Some(assignee) if !agents.contains(&assignee.as_uuid()) => {
                    refused.insert(
                        ticket.row,
                        RowError {
                            row: ticket.row,
                            field: "assignee_id".to_owned(),
                            reason: "names no active agent or admin of this account".to_owned(),
                        },
                    );
                    false
                }
                Some(_) | None => true,
            });
            refuse_outside_groups(conn, account_id, &mut candidates, &mut refused).await?;
            // Requesters: found or added by email, and locked, as CreateTicket does.
            let emails: Vec<&str> = candidates
                .iter()
                .map(|ticket| ticket.requester_email.as_str())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let requesters: BTreeMap<String, Uuid> = if emails.is_empty() {
                BTreeMap::new()
            } else {
                UserRow::find_or_insert_customers(conn, account_id, &emails)
                    .await?
                    .into_iter()
                    .map(|(id, email)| (email, id))
                    .collect()
            };
            let requester_ids: Vec<Uuid> = requesters.values().copied().collect();
            // Their open tickets from the counter the tickets' trigger keeps (migration 000021):
            // counting their tickets instead grew with every batch this import committed. Read
            // after the lock above, so it holds every change since the previous batch too.
            let mut open: BTreeMap<Uuid, i64> = if requester_ids.is_empty() {
                BTreeMap::new()
            } else {
                RequesterOpenTicketsRow::for_requesters(conn, account_id, &requester_ids)
                    .await?
                    .into_iter()
                    .collect()
            };
            let (actor_user_id, actor_api_key_id) = actor_columns(actor);
            let mut tickets = ImportedTickets::default();
            for ticket in candidates {
                let Some(requester) = requesters.get(ticket.requester_email.as_str()).copied()
                else {
                    return Err(BatchError::App(AppError::internal(anyhow::anyhow!(
                        "the requester of row {} was neither found nor added",
                        ticket.row
                    ))));
                };
                // The open-ticket rule holds for imports: an imported ticket is NEW, so it
                // counts, and a row beyond the requester's limit is refused.
                let count = open.entry(requester).or_insert(0);
                if *count >= max_open {
                    refused.insert(
                        ticket.row,
                        RowError {
                            row: ticket.row,
                            field: "requester_email".to_owned(),
                            reason: format!(
                                "the requester has {count} open tickets; at most {max_open} \
                                 may be open at once"
                            ),
                        },
                    );
                    continue;
                }
                *count += 1;
                let ticket_id = TicketId::generate();
                let changes = Opening {
                    subject: &ticket.subject,
                    priority: ticket.priority,
                    requester: UserId::from_uuid(requester),
                    assignee: ticket.assignee,
                    group: ticket.group,
                    tags: &ticket.tags,
                    custom_fields: &ticket.custom_fields,
                }
                .changes();
                tickets.ids.push(ticket_id.as_uuid());
                tickets.subjects.push(ticket.subject.as_str().to_owned());
                tickets
                    .descriptions
                    .push(ticket.description.as_str().to_owned());
                tickets.priorities.push(ticket.priority.as_str());
                tickets.requester_ids.push(requester);
                tickets
                    .assignee_ids
                    .push(ticket.assignee.map(|id| id.as_uuid()));
                tickets.activity_ids.push(Uuid::now_v7());
                tickets.tags.push(ticket.tags.to_strings().join(","));
                tickets.group_ids.push(ticket.group);
                tickets
                    .custom_fields
                    .push(serde_json::Value::Object(ticket.custom_fields));
                tickets.changes.push(changes_to_json(&changes));
            }
            let imported = tickets
                .insert(conn, account_id, (actor_user_id, actor_api_key_id))
                .await?;
            failed_rows += i64::try_from(refused.len()).unwrap_or(i64::MAX);
            errors.extend(refused.into_values());
            errors.sort_by_key(|error| error.row);
            let from = i64::try_from(position).unwrap_or(i64::MAX);
            let progress = BatchProgress {
                from_rows_read: from,
                to_rows_read: from + i64::try_from(batch.len()).unwrap_or(i64::MAX),
                imported: i64::try_from(imported).unwrap_or(i64::MAX),
                failed: failed_rows,
                errors: &errors,
                max_errors,
            };
            let cancel_requested = OperationRow::checkpoint(conn, id, worker, lease, &progress)
                .await?
                .ok_or(BatchError::LostLease)?;
            Ok(Settled {
                imported: progress.imported,
                cancel_requested,
            })
        })
        .await
    }
}

/// What every batch of one claimed import shares: whose lease it runs under, and what its rows
/// are checked against.
#[derive(Clone, Copy)]
struct ImportRun<'a> {
    worker: Uuid,
    id: OperationId,
    account_id: AccountId,
    actor: Actor,
    catalogue: &'a Catalogue,
}

/// Refuses the `candidates` whose group is no live group of the account (`group_id`) or whose
/// assignee is not a member of their group (`assignee_id`), as CreateTicket refuses them; the
/// groups and memberships kept are held `FOR KEY SHARE` until the batch commits, so a group's
/// deletion or a member's removal waits for the batch and then sees its tickets. Two statements
/// a batch, only when its rows name groups.
async fn refuse_outside_groups(
    conn: &mut diesel_async::AsyncPgConnection,
    account_id: AccountId,
    candidates: &mut Vec<ImportTicket>,
    refused: &mut BTreeMap<i64, RowError>,
) -> Result<(), AppError> {
    let named: Vec<Uuid> = candidates
        .iter()
        .filter_map(|ticket| ticket.group)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    let live: HashSet<Uuid> = GroupRow::share_live_among(conn, account_id.as_uuid(), &named)
        .await?
        .into_iter()
        .collect();
    candidates.retain(|ticket| match ticket.group {
        Some(group) if !live.contains(&group) => {
            refused.insert(
                ticket.row,
                RowError {
                    row: ticket.row,
                    field: "group_id".to_owned(),
                    reason: "names no group of this account".to_owned(),
                },
            );
            false
        }
        Some(_) | None => true,
    });
    let assignments: Vec<(Uuid, Uuid)> = candidates
        .iter()
        .filter_map(|ticket| Some((ticket.group?, ticket.assignee?.as_uuid())))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if assignments.is_empty() {
        return Ok(());
    }
    let members: HashSet<(Uuid, Uuid)> =
        GroupMemberRow::share_among(conn, account_id.as_uuid(), &assignments)
            .await?
            .into_iter()
            .collect();
    candidates.retain(|ticket| match (ticket.group, ticket.assignee) {
        (Some(group), Some(assignee)) if !members.contains(&(group, assignee.as_uuid())) => {
            refused.insert(
                ticket.row,
                RowError {
                    row: ticket.row,
                    field: "assignee_id".to_owned(),
                    reason: format!(
                        "users/{assignee} is not a member of groups/{group}; add them to the \
                         group or choose a member"
                    ),
                },
            );
            false
        }
        (Some(_) | None, Some(_) | None) => true,
    });
    Ok(())
}

/// How an import stopped by `batch` (of `rows`) fails: its rows named as an editor numbers
/// them, how often it failed, and what stays imported. The cause is in the log only: it may hold
/// SQL, which a client never sees.
fn poisoned_batch(
    batch: &[ImportRow],
    rows: &[ImportRow],
    attempts: u32,
    rows_imported: i64,
) -> OperationFailure {
    stopped_at(
        batch,
        rows,
        &format!("their batch failed {attempts} times in a row"),
        rows_imported,
    )
}

/// How an import fails whose `batch` was taken up `claims` times by workers that neither
/// committed it nor gave it back (each crashed, hung or lost its lease on it).
fn stalled_batch(
    batch: &[ImportRow],
    rows: &[ImportRow],
    claims: u32,
    rows_imported: i64,
) -> OperationFailure {
    stopped_at(
        batch,
        rows,
        &format!(
            "{claims} workers in a row took their batch up and stopped before it committed, \
             none of them told to"
        ),
        rows_imported,
    )
}

/// An import stopped at `batch` for `why`: its rows named as an editor numbers them, and what
/// stays imported.
fn stopped_at(
    batch: &[ImportRow],
    rows: &[ImportRow],
    why: &str,
    rows_imported: i64,
) -> OperationFailure {
    let number = |row: Option<&ImportRow>| row.map_or(0, |row| row.number);
    let (first, last) = (number(batch.first()), number(batch.last()));
    let end = number(rows.last());
    OperationFailure {
        code: INTERNAL,
        message: format!(
            "rows {first} to {last} could not be imported: {why}. The import stopped there: the \
             {rows_imported} tickets imported from the rows before them stay, and rows {first} \
             to {end} were not read"
        ),
    }
}
