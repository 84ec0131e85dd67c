//! ExportTickets (docs/export-and-search.md): one REPEATABLE READ snapshot read by keyset in
//! batches, handed over through a channel of one batch, bounded by `EXPORT_MAX_DURATION_SECS`,
//! limited in number per account and per instance, ended when the instance drains and when its
//! caller may no longer read it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::TicketDesk;
use crate::auth::Standing;
use crate::db;
use crate::db::models::TicketRow;
use crate::domain::{Catalogue, Ticket, TicketFilter};
use crate::errors::{AppError, AppResult};
use crate::resilience::stream_limit::StreamLimits;
use crate::scope::RequestScope;

/// How many tickets an export reads per statement, and hands over at a time.
pub const EXPORT_BATCH: i64 = 500;

/// What an export's channel carries: a batch of tickets, then, once every batch was sent and the
/// snapshot ended well, `Finished`. A channel that closes without `Finished` was cut short.
#[derive(Debug)]
pub enum ExportBatch {
    Tickets(Vec<Ticket>),
    Finished,
}

/// Why an export was ended before its end by something other than its own reads: taken by the
/// stream before any batch still waiting.
#[derive(Debug)]
pub enum ExportInterruption {
    /// The caller may no longer read it (a revoked key, an ended session, an expired token).
    Lost(AppError),
    /// The instance began draining.
    Draining,
}

/// A running export: its batches, and why it was interrupted if it was.
pub struct Export {
    pub batches: mpsc::Receiver<AppResult<ExportBatch>>,
    pub interrupted: oneshot::Receiver<ExportInterruption>,
}

/// How exports run.
#[derive(Clone, Debug)]
pub struct ExportSettings {
    /// How long an export may hold its snapshot (`EXPORT_MAX_DURATION_SECS`).
    pub limit: Duration,
    /// How many may run at once, per account and per instance.
    pub places: StreamLimits,
    /// Cancelled when the instance drains: every export ends then.
    pub draining: CancellationToken,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            limit: Duration::from_secs(600),
            places: StreamLimits::new(
                "exports",
                (2, "EXPORT_MAX_CONCURRENT_PER_ACCOUNT"),
                (3, "EXPORT_MAX_CONCURRENT_PER_INSTANCE"),
            ),
            draining: CancellationToken::new(),
        }
    }
}

impl TicketDesk {
    /// Starts an export of every ticket `filter` selects that the caller may see, in the
    /// filter's order, from one REPEATABLE READ snapshot taken before this returns: tickets
    /// committed after it are not exported, every one committed before it is, once.
    ///
    /// The first batch is read here; the rest by a task that reads the next batch only once the
    /// previous one was taken from the channel (of one batch): a slow client holds a batch or
    /// two in memory, never the table. The task holds one pooled connection, for at most the
    /// export limit (PostgreSQL also ends the transaction when it sits idle that long); then the
    /// channel closes without [`ExportBatch::Finished`], which the caller reports as
    /// DEADLINE_EXCEEDED. The instance's drain and the caller's loss of standing end it sooner,
    /// said through [`Export::interrupted`], and give its connection back at once. The task
    /// holds one of the export places of its account and instance. It is per request and
    /// bounded, so it is not one of the job runner's long-lived tasks.
    pub async fn export(&self, scope: &RequestScope, filter: TicketFilter) -> AppResult<Export> {
        let caller = scope.caller()?;
        let valid_until = scope.valid_until();
        let place = self.exports.places.take(caller.account_id)?;
        // A customer's export shows only the custom fields they may see: the catalogue is read
        // once, before the snapshot (a field's visibility is not part of what is exported).
        let catalogue = match caller.restricted_to_user() {
            Some(_) => self.catalogue(caller.account_id).await?,
            None => Catalogue::default(),
        };
        let limit = self.exports.limit;
        let deadline = Instant::now() + limit;
        let mut conn = db::owned_connection(self.pool()).await?;
        db::begin_snapshot(&mut conn, limit).await?;
        let account_id = caller.account_id;
        let requester = caller.restricted_to_user();
        let first = match TicketRow::list(
            &mut conn,
            account_id,
            requester,
            &filter,
            None,
            EXPORT_BATCH,
        )
        .await
        {
            Ok(first) => first,
            Err(error) => return db::end(&mut conn, Err(error)).await,
        };
        let (sender, receiver) = mpsc::channel(1);
        let (interrupt, interrupted) = oneshot::channel();
        let standing = Standing::new(self.pool().clone(), caller.clone(), valid_until);
        let draining = self.exports.draining.clone();
        tokio::spawn(async move {
            let _place = place;
            let standing = standing.lost();
            tokio::pin!(standing);
            let reading = async {
                let mut batch = first;
                loop {
                    let full = i64::try_from(batch.len()).unwrap_or(i64::MAX) >= EXPORT_BATCH;
                    let after = batch
                        .last()
                        .map(|ticket| ticket.position(filter.order.field));
                    // A customer's export, as their reads, leaves out the desk's tags and the
                    // custom fields customers do not see.
                    let shown = if requester.is_some() {
                        batch
                            .into_iter()
                            .map(|ticket| ticket.as_seen_by_customer(&catalogue))
                            .collect()
                    } else {
                        batch
                    };
                    if !shown.is_empty()
                        && sender.send(Ok(ExportBatch::Tickets(shown))).await.is_err()
                    {
                        // The client went away: nothing more to read.
                        return Ok(());
                    }
                    if !full {
                        return Ok(());
                    }
                    batch = TicketRow::list(
                        &mut conn,
                        account_id,
                        requester,
                        &filter,
                        after,
                        EXPORT_BATCH,
                    )
                    .await?;
                }
            };
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, reading) => {
                    Ok(read.unwrap_or(Err(AppError::DeadlineExceeded)))
                }
                lost = &mut standing => Err(ExportInterruption::Lost(lost)),
                () = draining.cancelled() => Err(ExportInterruption::Draining),
            };
            let read = match read {
                Ok(read) => read,
                Err(why) => {
                    // A read-only snapshot has nothing to keep: given back now, not at the limit.
                    let _ = db::end(&mut conn, Err::<(), _>(AppError::DeadlineExceeded)).await;
                    drop(conn);
                    let _ = interrupt.send(why);
                    return;
                }
            };
            let last = match db::end(&mut conn, read).await {
                Ok(()) => Ok(ExportBatch::Finished),
                // Waited for, as `Finished` is: a slow reader's channel still holds the batch
                // before, and an error dropped for want of room would reach them as
                // DEADLINE_EXCEEDED, however early the read failed. A reader still behind at the
                // deadline gets DEADLINE_EXCEEDED, as it would have anyway.
                Err(error) => Err(error),
            };
            drop(conn);
            // The tickets are read, but a reader still behind may not take them after the drain
            // or once they may no longer read them.
            tokio::select! {
                _ = tokio::time::timeout_at(deadline, sender.send(last)) => {}
                lost = &mut standing => {
                    let _ = interrupt.send(ExportInterruption::Lost(lost));
                }
                () = draining.cancelled() => {
                    let _ = interrupt.send(ExportInterruption::Draining);
                }
            }
        });
        Ok(Export {
            batches: receiver,
            interrupted,
        })
    }
}
