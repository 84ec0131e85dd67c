//! The event stream of WatchEvents (docs/webhooks.md, "Watching events over gRPC"): an
//! account's events from a cursor, in the order of the outbox, for as long as the client reads.
//!
//! Each stream has a task of its own, per request and bounded in time (so not one of the job
//! runner's long-lived tasks), that reads a page of events, hands them one by one to a channel
//! of [`STREAM_BUFFER`] messages and reads the next page only once they are taken: a client that
//! stops reading holds the task at the channel (HTTP/2 flow control holds the channel), so a
//! stream costs at most a page and the buffer in memory, and no pooled connection while it
//! waits. Once caught up it looks again every poll interval and sends a heartbeat after a
//! quiet spell. It ends (without error) after the stream's longest duration or when the
//! instance drains; the client resumes from the last cursor it received.
//!
//! Why nothing is skipped: a page holds only events of transactions older than the oldest one
//! still running (`pg_snapshot_xmin`), which can no longer commit; an event committed later always
//! sorts after the cursor (migration 16 explains the same for the change feed).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::models::event::{Events, StoredEvent};
use crate::db::{self, Limits, PgPool};
use crate::domain::{EventCursor, EventType};
use crate::errors::{AppError, AppResult, Resource};

/// The most messages waiting in a stream's channel.
pub const STREAM_BUFFER: usize = 16;

/// The most events read at once.
pub const PAGE: i64 = 100;

/// The most events one statement of the retention sweep deletes.
const SWEEP_BATCH: i64 = 500;

/// The most batches one pass of the sweep deletes: a backlog is worked off over several passes.
const SWEEP_BATCHES_PER_PASS: usize = 20;

/// How long one batch's statements may take together.
const SWEEP_BATCH_BUDGET: Duration = Duration::from_secs(30);

/// Deletes the events recorded more than `retention` ago none of whose deliveries is pending
/// (with their deliveries and attempts), in batches; returns how many. "Ago" by PostgreSQL's
/// clock, which wrote `created_at`: an instance whose clock ran ahead deleted events still
/// within their retention.
pub async fn sweep_past_retention(pool: &PgPool, retention: Duration) -> AppResult<usize> {
    let mut conn = db::connection(pool).await?;
    let mut deleted = 0;
    for _ in 0..SWEEP_BATCHES_PER_PASS {
        let (locked, batch) = db::transaction(
            &mut conn,
            Limits::within(SWEEP_BATCH_BUDGET),
            async |conn| {
                let locked = Events::lock_past_retention(conn, retention, SWEEP_BATCH).await?;
                if locked.is_empty() {
                    return AppResult::Ok((0, 0));
                }
                let batch = Events::delete_unowed(conn, &locked).await?;
                AppResult::Ok((locked.len(), batch))
            },
        )
        .await?;
        deleted += batch;
        if i64::try_from(locked).unwrap_or(i64::MAX) < SWEEP_BATCH {
            break;
        }
    }
    Ok(deleted)
}

/// One message of a stream.
#[derive(Debug)]
pub enum FeedMessage {
    Event(Box<StoredEvent>, EventCursor),
    Heartbeat(EventCursor),
}

/// Where a stream starts.
#[derive(Clone, Debug)]
pub enum WatchStart {
    /// After this position.
    Cursor(EventCursor),
    /// Just after this event of the account.
    AfterEvent(Uuid),
    /// From now: events of transactions that commit from here on (and of those running now).
    Now,
}

/// How streams behave.
#[derive(Clone, Debug)]
pub struct FeedSettings {
    pub poll_interval: Duration,
    pub heartbeat: Duration,
    pub max_duration: Duration,
}

#[derive(Clone)]
pub struct EventFeed {
    pool: PgPool,
    settings: FeedSettings,
    /// Cancelled when the instance drains: every stream ends, and its client reconnects
    /// elsewhere.
    draining: CancellationToken,
}

impl EventFeed {
    pub fn new(pool: PgPool, settings: FeedSettings, draining: CancellationToken) -> Self {
        Self {
            pool,
            settings,
            draining,
        }
    }

    /// Starts a stream of the caller's account's events of `types` (empty: all) from `start`;
    /// with `end_when_caught_up`, it ends once it has sent every event there is.
    pub async fn watch(
        &self,
        caller: &Caller,
        start: WatchStart,
        types: Vec<EventType>,
        end_when_caught_up: bool,
    ) -> AppResult<mpsc::Receiver<AppResult<FeedMessage>>> {
        let account_id = caller.account_id.as_uuid();
        let mut position = {
            let mut conn = db::connection(&self.pool).await?;
            match start {
                WatchStart::Cursor(cursor) => cursor,
                WatchStart::AfterEvent(id) => Events::position_of(&mut conn, account_id, id)
                    .await?
                    .ok_or_else(|| AppError::not_found(Resource::Event, id))?,
                WatchStart::Now => Events::horizon(&mut conn).await?,
            }
        };
        let types: Vec<String> = types.iter().map(|kind| kind.as_str().to_owned()).collect();
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let feed = self.clone();
        tokio::spawn(async move {
            let ends = Instant::now() + feed.settings.max_duration;
            let mut quiet_since = Instant::now();
            loop {
                let page = match db::connection(&feed.pool).await {
                    Ok(mut conn) => {
                        Events::after(&mut conn, account_id, position, &types, PAGE).await
                    }
                    Err(error) => Err(error),
                };
                let page = match page {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                };
                let caught_up = i64::try_from(page.len()).unwrap_or(i64::MAX) < PAGE;
                for (cursor, event) in page {
                    position = cursor;
                    let sent = tokio::select! {
                        sent = sender.send(Ok(FeedMessage::Event(Box::new(event), cursor))) => sent.is_ok(),
                        () = feed.draining.cancelled() => return,
                        () = tokio::time::sleep_until(ends) => return,
                    };
                    if !sent {
                        // The client went away.
                        return;
                    }
                    quiet_since = Instant::now();
                }
                if caught_up {
                    if end_when_caught_up {
                        return;
                    }
                    if quiet_since.elapsed() >= feed.settings.heartbeat {
                        if sender
                            .send(Ok(FeedMessage::Heartbeat(position)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        quiet_since = Instant::now();
                    }
                    tokio::select! {
                        () = tokio::time::sleep(feed.settings.poll_interval) => {}
                        () = feed.draining.cancelled() => return,
                        () = tokio::time::sleep_until(ends) => return,
                        () = sender.closed() => return,
                    }
                } else if Instant::now() >= ends || feed.draining.is_cancelled() {
                    return;
                }
            }
        });
        Ok(receiver)
    }
}
