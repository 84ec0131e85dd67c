//! The instance's shared tail of the event feed (docs/webhooks.md, "Watching events over
//! gRPC"): one reader that looks for new events of every account once per poll interval and
//! hands each page to every WatchEvents stream that is caught up, so that a thousand caught-up
//! streams cost PostgreSQL what one does (issue 67, item 1). Before, each stream read its own
//! account's next page every poll interval, one pooled connection and one query per stream.
//!
//! A page says which part of the outbox's order it covers, `(from, to]`: pages follow each
//! other without gaps (each `from` is the previous `to`), and a page holds every event of the
//! feed in its range. A stream that joins, or that fell behind (the broadcast keeps
//! [`TAIL_PAGES_KEPT`] pages), sees a page whose `from` is past its own position and reads the
//! gap itself (`service::events`), so nothing is skipped, and it sends only events past its
//! position, so nothing is sent twice.
//!
//! Why nothing is skipped: a read holds only events of transactions older than the oldest one
//! still running (`pg_snapshot_xmin`), which can no longer commit; an event committed later
//! sorts after the read's horizon. A page that is not full covers up to that horizon; a full
//! one up to its last event.
//!
//! The tail reads only while at least one stream waits on it: a stream busy sending (its client
//! slow or stopped) does not keep it polling, and with no stream the tail costs nothing. After a
//! pause with no subscriber at all it starts again from the horizon (streams read their own gap).
//! A read that fails (PostgreSQL away) is told to the streams, which each try a read of their
//! own, as they did before the tail: the first error ends them as it did. The task runs under
//! the job runner (`jobs::event_tail`) and returns when the instance stops or drains.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::db::models::event::{EventRow, TailRow};
use crate::db::{self, PgPool};
use crate::domain::EventCursor;
use crate::errors::AppResult;

/// The most events one read of the tail returns; a full page is followed by the next read at
/// once.
pub const TAIL_PAGE: i64 = 500;

/// How many pages the broadcast keeps for a stream that is busy sending; one that falls further
/// behind reads the gap itself.
pub const TAIL_PAGES_KEPT: usize = 32;

/// What the tail tells its streams.
#[derive(Debug)]
pub enum TailNews {
    /// Every event of the feed in `(from, to]`, in the outbox's order.
    Page {
        from: EventCursor,
        to: EventCursor,
        events: Vec<TailRow>,
    },
    /// The last read failed (PostgreSQL away, a statement timed out): each stream reads for
    /// itself once, and ends with that read's error as it did before the tail.
    Failed,
}

/// The shared tail: what streams subscribe to, and what its task runs.
#[derive(Clone)]
pub struct EventTail {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    poll_interval: Duration,
    pages: broadcast::Sender<Arc<TailNews>>,
    /// How many streams wait on the tail now.
    waiting: AtomicUsize,
    /// Wakes the idle tail when a stream starts waiting.
    wake: Notify,
}

impl EventTail {
    pub fn new(pool: PgPool, poll_interval: Duration) -> Self {
        let (pages, _) = broadcast::channel(TAIL_PAGES_KEPT);
        Self {
            inner: Arc::new(Inner {
                pool,
                poll_interval,
                pages,
                waiting: AtomicUsize::new(0),
                wake: Notify::new(),
            }),
        }
    }

    /// A receiver of every page read from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TailNews>> {
        self.inner.pages.subscribe()
    }

    /// Marks the caller as waiting for the next page until the guard is dropped: the tail reads
    /// only while some stream waits.
    pub fn waiting(&self) -> Waiting {
        if self.inner.waiting.fetch_add(1, Ordering::SeqCst) == 0 {
            self.inner.wake.notify_one();
        }
        Waiting {
            inner: self.inner.clone(),
        }
    }

    /// Reads and broadcasts pages while streams wait, until `stop` (shutdown) or `draining` (the
    /// streams end then) is cancelled. A failed read is logged, told to the streams, and tried
    /// again after the poll interval; it never ends the task.
    pub async fn run(&self, stop: CancellationToken, draining: CancellationToken, beat: impl Fn()) {
        let inner = &self.inner;
        let mut position: Option<EventCursor> = None;
        loop {
            // Idle until a stream waits.
            while inner.waiting.load(Ordering::SeqCst) == 0 {
                if inner.pages.receiver_count() == 0 {
                    // Nobody listens: start again from the horizon rather than read what every
                    // stream that comes will read for itself anyway.
                    position = None;
                }
                tokio::select! {
                    () = inner.wake.notified() => {}
                    () = stop.cancelled() => return,
                    () = draining.cancelled() => return,
                }
            }
            let read = self.read_after(position).await;
            beat();
            let full = match read {
                Ok((from, to, events)) => {
                    let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= TAIL_PAGE;
                    position = Some(to);
                    // No receiver (the last stream just ended) is not an error.
                    let _ = inner
                        .pages
                        .send(Arc::new(TailNews::Page { from, to, events }));
                    full
                }
                Err(error) => {
                    tracing::warn!(%error, "the event tail could not read; streams read for themselves");
                    let _ = inner.pages.send(Arc::new(TailNews::Failed));
                    false
                }
            };
            if !full {
                tokio::select! {
                    () = tokio::time::sleep(inner.poll_interval) => {}
                    () = stop.cancelled() => return,
                    () = draining.cancelled() => return,
                }
            }
        }
    }

    /// The next page after `position` (from the horizon when there is none yet): its range and
    /// its events.
    async fn read_after(
        &self,
        position: Option<EventCursor>,
    ) -> AppResult<(EventCursor, EventCursor, Vec<TailRow>)> {
        let mut conn = db::connection(&self.inner.pool).await?;
        let from = match position {
            Some(position) => position,
            None => EventRow::horizon(&mut conn).await?,
        };
        let read = EventRow::tail_after(&mut conn, from, TAIL_PAGE).await?;
        let full = i64::try_from(read.events.len()).unwrap_or(i64::MAX) >= TAIL_PAGE;
        let to = match read.events.last() {
            Some(last) if full => last.cursor,
            // Not full: every event before the horizon is in the page (or at or before `from`).
            _ => read.horizon.max(from),
        };
        Ok((from, to, read.events))
    }
}

/// A stream waiting on the tail; dropping it says it no longer does.
pub struct Waiting {
    inner: Arc<Inner>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}
