//! The event stream of WatchEvents (docs/webhooks.md, "Watching events over gRPC"): an
//! account's events from a cursor, in the order of the outbox, for as long as the client reads.
//!
//! A stream takes one of the places its account and the instance have for streams
//! (`WATCH_MAX_STREAMS_PER_ACCOUNT`, `WATCH_MAX_STREAMS_PER_INSTANCE`) before it touches the
//! pool, and its task gives it back when it ends.
//!
//! Each stream has a task of its own, per request and bounded in time (so not one of the job
//! runner's long-lived tasks), that reads a page of events, hands them one by one to a channel
//! of [`STREAM_BUFFER`] messages and reads the next page only once they are taken: a client that
//! stops reading holds the task at the channel (HTTP/2 flow control holds the channel), so a
//! stream costs at most a page and the buffer in memory, and no pooled connection while it
//! waits. Once caught up it follows the instance's shared tail ([`EventTail`], one read per poll
//! interval for all streams) and sends a heartbeat after a quiet spell; it reads pages of its own
//! again only to fill a gap (when it joins the tail, falls behind it, or the tail's read fails).
//! It ends (without error) after the stream's longest duration or when the
//! instance drains, even while its client reads nothing; the client resumes from the last
//! cursor it received. Its caller is re-checked while it runs ([`Standing`]): a revoked key,
//! a deactivated user, an ended session or an expired access token ends it UNAUTHENTICATED.
//!
//! An event this build cannot read (a type or snapshot of another version) is skipped, counted
//! (`supportdesk_events_unreadable_total{consumer="watch"}`) and logged, and the stream goes on.
//!
//! Why nothing else is skipped: a page holds only events of transactions older than the oldest one
//! still running (`pg_snapshot_xmin`), which can no longer commit; an event committed later always
//! sorts after the cursor (migration 16 explains the same for the change feed).

use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::Standing;
use crate::db::models::event::{EventRow, StoredEvent, Unreadable};
use crate::db::{self, Limits, PgPool};
use crate::domain::{EventCursor, EventType};
use crate::errors::{AppError, AppResult, Resource};
use crate::resilience::stream_limit::StreamLimits;
use crate::scope::RequestScope;
use crate::service::event_tail::{EventTail, TailNews};
use crate::telemetry::metrics::{Counter, Metrics};

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
                let locked = EventRow::lock_past_retention(conn, retention, SWEEP_BATCH).await?;
                if locked.is_empty() {
                    return AppResult::Ok((0, 0));
                }
                let batch = EventRow::delete_unowed(conn, &locked).await?;
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

/// A running stream: its messages, and why it was cut short when its caller lost the right to
/// read it (taken before any message still waiting, which that caller may no longer see).
pub struct Watch {
    pub messages: mpsc::Receiver<AppResult<FeedMessage>>,
    pub interrupted: oneshot::Receiver<AppError>,
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
    pub heartbeat: Duration,
    pub max_duration: Duration,
    /// How many streams may run at once, per account and per instance.
    pub places: StreamLimits,
}

#[derive(Clone)]
pub struct EventFeed {
    pool: PgPool,
    settings: FeedSettings,
    /// Cancelled when the instance drains: every stream ends, and its client reconnects
    /// elsewhere.
    draining: CancellationToken,
    /// Counts the events a stream skipped because this build cannot read them.
    unreadable: Counter,
    /// The instance's shared tail, which caught-up streams follow.
    tail: EventTail,
}

impl EventFeed {
    pub fn new(
        pool: PgPool,
        settings: FeedSettings,
        draining: CancellationToken,
        tail: EventTail,
    ) -> Self {
        Self {
            pool,
            settings,
            draining,
            unreadable: Counter::default(),
            tail,
        }
    }

    /// The same, counting the events its streams skip into `metrics`.
    pub fn counting_into(self, metrics: &Metrics) -> Self {
        Self {
            unreadable: metrics.events().unreadable_watched.clone(),
            ..self
        }
    }

    /// Starts a stream of the caller's account's events of `types` (empty: all) from `start`;
    /// with `end_when_caught_up`, it ends once it has sent every event there is. The caller is
    /// re-checked while it runs ([`Standing`]): once they may no longer read, the stream's task
    /// ends and [`Watch::interrupted`] says why.
    pub async fn watch(
        &self,
        scope: &RequestScope,
        start: WatchStart,
        types: Vec<EventType>,
        end_when_caught_up: bool,
    ) -> AppResult<Watch> {
        let caller = scope.caller()?;
        let valid_until = scope.valid_until();
        let place = self.settings.places.take(caller.account_id)?;
        let account_id = caller.account_id.as_uuid();
        let position = {
            let mut conn = db::connection(&self.pool).await?;
            match start {
                WatchStart::Cursor(cursor) => cursor,
                WatchStart::AfterEvent(id) => EventRow::position_of(&mut conn, account_id, id)
                    .await?
                    .ok_or_else(|| AppError::not_found(Resource::Event, id))?,
                WatchStart::Now => EventRow::horizon(&mut conn).await?,
            }
        };
        let types: Vec<String> = types.iter().map(|kind| kind.as_str().to_owned()).collect();
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let (interrupt, interrupted) = oneshot::channel();
        let standing = Standing::new(self.pool.clone(), caller.clone(), valid_until);
        let feed = self.clone();
        tokio::spawn(async move {
            let _place = place;
            tokio::select! {
                () = feed.send_from(account_id, position, types, end_when_caught_up, sender) => {}
                lost = standing.lost() => {
                    let _ = interrupt.send(lost);
                }
            }
        });
        Ok(Watch {
            messages: receiver,
            interrupted,
        })
    }

    /// Sends the account's events after `position` until the client goes away, the stream's
    /// longest duration passes or the instance drains. Every wait on the client (an event's or
    /// a heartbeat's send) is raced against the last two: a client that stops reading holds
    /// neither past its limit.
    ///
    /// It catches up with pages of its own; once one is short it follows the instance's shared
    /// tail ([`EventTail`]), and reads pages of its own again only to fill a gap: when it joins,
    /// when it fell behind the tail's broadcast, or when the tail's read failed. `position` is
    /// how far the stream has sent the account's events: it sends only events past it, so
    /// nothing is sent twice across a switch.
    async fn send_from(
        &self,
        account_id: Uuid,
        mut position: EventCursor,
        types: Vec<String>,
        end_when_caught_up: bool,
        sender: mpsc::Sender<AppResult<FeedMessage>>,
    ) {
        let mut stream = Stream {
            feed: self,
            account_id,
            types,
            sender,
            ends: Instant::now() + self.settings.max_duration,
            quiet_since: Instant::now(),
        };
        if stream.catch_up(&mut position).await == Step::Stop || end_when_caught_up {
            return;
        }
        let mut tail = self.tail.subscribe();
        loop {
            let heartbeat_due = stream.quiet_since + self.settings.heartbeat;
            let news = tokio::select! {
                news = async {
                    let _waiting = self.tail.waiting();
                    tail.recv().await
                } => news,
                () = tokio::time::sleep_until(heartbeat_due) => {
                    if stream.send(FeedMessage::Heartbeat(position)).await == Step::Stop {
                        return;
                    }
                    continue;
                }
                () = self.draining.cancelled() => return,
                () = tokio::time::sleep_until(stream.ends) => return,
                () = stream.sender.closed() => return,
            };
            let news = match news {
                Ok(news) => news,
                // Fell more than the broadcast keeps behind: the next page starts past this
                // stream's position, and it reads the gap itself.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            match &*news {
                TailNews::Page { from, to, events } => {
                    if *from > position && stream.catch_up(&mut position).await == Step::Stop {
                        return;
                    }
                    for row in events {
                        if row.cursor <= position
                            || row.account_id != account_id
                            || !(stream.types.is_empty() || stream.types.contains(&row.event_type))
                        {
                            continue;
                        }
                        position = row.cursor;
                        if stream.send_event(row.event.clone(), row.cursor).await == Step::Stop {
                            return;
                        }
                    }
                    // Every event of the account up to `to` has been sent: a heartbeat may
                    // carry it, and a client resuming from it misses nothing.
                    position = position.max(*to);
                }
                // As before the tail: the stream reads for itself, and ends with its error.
                TailNews::Failed => {
                    if stream.catch_up(&mut position).await == Step::Stop {
                        return;
                    }
                }
            }
        }
    }
}

/// Whether a stream goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Continue,
    Stop,
}

/// One running stream's task state.
struct Stream<'a> {
    feed: &'a EventFeed,
    account_id: Uuid,
    types: Vec<String>,
    sender: mpsc::Sender<AppResult<FeedMessage>>,
    ends: Instant,
    quiet_since: Instant,
}

impl Stream<'_> {
    /// Reads and sends pages of the account's own events after `position` until one is short
    /// (caught up: every event of the account before the read's horizon is sent). A failed read
    /// is sent to the client and ends the stream.
    async fn catch_up(&mut self, position: &mut EventCursor) -> Step {
        loop {
            let page = match db::connection(&self.feed.pool).await {
                Ok(mut conn) => {
                    EventRow::after(&mut conn, self.account_id, *position, &self.types, PAGE).await
                }
                Err(error) => Err(error),
            };
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    let _ = self.sender.send(Err(error)).await;
                    return Step::Stop;
                }
            };
            let caught_up = i64::try_from(page.len()).unwrap_or(i64::MAX) < PAGE;
            for (cursor, event) in page {
                *position = cursor;
                if self.send_event(event, cursor).await == Step::Stop {
                    return Step::Stop;
                }
            }
            if caught_up {
                return Step::Continue;
            }
            if Instant::now() >= self.ends || self.feed.draining.is_cancelled() {
                return Step::Stop;
            }
        }
    }

    /// Sends one event, or passes over one this build cannot read (a newer type during a mixed
    /// deploy, a snapshot of a version rolled back), so that it cannot end every stream of its
    /// account at every reconnect; a newer instance's streams send it.
    async fn send_event(
        &mut self,
        event: Result<StoredEvent, Unreadable>,
        cursor: EventCursor,
    ) -> Step {
        match event {
            Ok(event) => self.send(FeedMessage::Event(Box::new(event), cursor)).await,
            Err(unreadable) => {
                self.feed.unreadable.increment();
                tracing::warn!(account_id = %self.account_id, event_id = %unreadable.event_id,
                    event_type = %unreadable.event_type, problem = %unreadable.problem,
                    "WatchEvents skipped an event this build cannot read");
                Step::Continue
            }
        }
    }

    /// Sends one message, raced against the drain and the stream's end.
    async fn send(&mut self, message: FeedMessage) -> Step {
        let sent = tokio::select! {
            sent = self.sender.send(Ok(message)) => sent.is_ok(),
            () = self.feed.draining.cancelled() => false,
            () = tokio::time::sleep_until(self.ends) => false,
        };
        if !sent {
            // The client went away, the instance drains, or the stream's time is up.
            return Step::Stop;
        }
        self.quiet_since = Instant::now();
        Step::Continue
    }
}
