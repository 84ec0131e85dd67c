//! The `events` table: the outbox of events the desk sends (docs/webhooks.md, "Webhooks we
//! send"). Rows are written by triggers in the statement of the change they report (migration
//! 22); here they are read back with the resource they carry, as the domain knows it.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::attachment::AttachmentRow;
use super::charge::{ChargeRow, StoredCharge};
use super::comment::CommentRow;
use super::corrupt;
use super::operation::OperationRow;
use super::refund::{RefundRow, StoredRefund};
use super::ticket::TicketRow;
use super::webhook_endpoint::EndpointSnapshot;
use crate::db::KeepPrepared;
use crate::domain::{self, EventCursor, EventResource, EventType, InvalidValue};
use crate::errors::AppResult;

/// What an event carries: its resource after the change.
#[derive(Clone, Debug)]
pub enum EventData {
    Ticket(domain::Ticket),
    Comment(domain::Comment),
    Attachment(Box<domain::Attachment>),
    Charge(Box<StoredCharge>),
    /// The charge after the refund, and the refund.
    Refund(Box<StoredCharge>, Box<StoredRefund>),
    Operation(Box<domain::Operation>),
    WebhookEndpoint(domain::WebhookEndpoint),
}

/// An event as stored, its snapshot read into the domain.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub id: Uuid,
    pub event_type: EventType,
    pub account_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub changed_fields: Vec<String>,
    pub data: EventData,
}

/// An event's row as a statement returns it.
#[derive(Clone, Debug, diesel::QueryableByName)]
pub struct EventRow {
    #[diesel(sql_type = SqlUuid)]
    pub event_id: Uuid,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = SqlUuid)]
    pub event_account_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    pub event_created_at: DateTime<Utc>,
    #[diesel(sql_type = Array<Nullable<Text>>)]
    pub changed_fields: Vec<Option<String>>,
    #[diesel(sql_type = Jsonb)]
    pub snapshot: serde_json::Value,
}

/// A ticket's snapshot: its row and its requester's email.
#[derive(serde::Deserialize)]
struct TicketSnapshot {
    #[serde(flatten)]
    row: TicketRow,
    requester_email: Option<String>,
}

/// A refund's snapshot: the charge's row, and the refund's under `refund`.
#[derive(serde::Deserialize)]
struct RefundSnapshot {
    #[serde(flatten)]
    charge: ChargeRow,
    refund: RefundRow,
}

/// An event this build cannot read: a type it does not know, or a snapshot its domain refuses
/// (written by another version, during a mixed deploy or after a rollback; or a corrupt row).
#[derive(Clone, Debug)]
pub struct Unreadable {
    pub event_id: Uuid,
    pub event_type: String,
    /// Why, as the reading said.
    pub problem: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "event {} ({}): {}",
            self.event_id, self.event_type, self.problem
        )
    }
}

impl EventRow {
    /// [`EventRow::into_domain`], or why this build cannot read the event.
    pub fn read(self) -> Result<StoredEvent, Unreadable> {
        let (event_id, event_type) = (self.event_id, self.event_type.clone());
        self.into_domain().map_err(|error| Unreadable {
            event_id,
            event_type,
            // An internal error's own message is generic; its cause says what.
            problem: std::error::Error::source(&error)
                .map_or_else(|| error.to_string(), ToString::to_string),
        })
    }

    /// The event, its snapshot read as the resource its type carries.
    pub fn into_domain(self) -> AppResult<StoredEvent> {
        let event_type = EventType::parse(&self.event_type)
            .map_err(|problem| corrupt("events.type", problem))?;
        let unreadable = |error: serde_json::Error| {
            corrupt(
                "events.snapshot",
                InvalidValue::new(format!("not a {event_type} snapshot: {error}")),
            )
        };
        let data = match event_type.resource() {
            EventResource::Ticket => {
                let snapshot: TicketSnapshot =
                    serde_json::from_value(self.snapshot).map_err(unreadable)?;
                let email = snapshot.requester_email.unwrap_or_default();
                EventData::Ticket(snapshot.row.into_domain(&email)?)
            }
            EventResource::Comment => {
                let row: CommentRow = serde_json::from_value(self.snapshot).map_err(unreadable)?;
                EventData::Comment(row.into_domain()?)
            }
            EventResource::Attachment => {
                let row: AttachmentRow =
                    serde_json::from_value(self.snapshot).map_err(unreadable)?;
                EventData::Attachment(Box::new(row.into_domain()?))
            }
            EventResource::Charge => {
                let row: ChargeRow = serde_json::from_value(self.snapshot).map_err(unreadable)?;
                EventData::Charge(Box::new(row.into_domain()?))
            }
            EventResource::Refund => {
                let snapshot: RefundSnapshot =
                    serde_json::from_value(self.snapshot).map_err(unreadable)?;
                EventData::Refund(
                    Box::new(snapshot.charge.into_domain()?),
                    Box::new(snapshot.refund.into_domain()?),
                )
            }
            EventResource::Operation => {
                let row: OperationRow =
                    serde_json::from_value(self.snapshot).map_err(unreadable)?;
                EventData::Operation(Box::new(row.into_domain()?))
            }
            EventResource::WebhookEndpoint => {
                let snapshot: EndpointSnapshot =
                    serde_json::from_value(self.snapshot).map_err(unreadable)?;
                EventData::WebhookEndpoint(snapshot.into_domain()?)
            }
        };
        Ok(StoredEvent {
            id: self.event_id,
            event_type,
            account_id: self.event_account_id,
            created_at: self.event_created_at,
            changed_fields: self.changed_fields.into_iter().flatten().collect(),
            data,
        })
    }
}

impl EventRow {
    /// Records a test event for one endpoint (`endpoint.test`, carrying the endpoint), and so
    /// (by the fan-out trigger) its one delivery; returns the delivery's id. Two statements:
    /// the trigger's rows are not visible to the statement whose insert fired it. The endpoint
    /// is locked as it is read (as the fan-out locks it): one whose deletion commits meanwhile
    /// is not found, rather than failing the event's foreign key.
    pub async fn insert_test(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        endpoint_id: Uuid,
    ) -> AppResult<Option<Uuid>> {
        #[derive(diesel::QueryableByName)]
        struct Inserted {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
        }
        let event: Option<Inserted> = diesel::sql_query(
            "INSERT INTO events (account_id, type, resource_id, snapshot, endpoint_id) \
             SELECT e.account_id, 'endpoint.test', e.id, \
                    to_jsonb(e) - 'secret_ciphertext' - 'previous_secret_ciphertext' \
                        - 'lease_token' - 'lease_until', e.id \
             FROM webhook_endpoints e WHERE e.account_id = $1 AND e.id = $2 \
             FOR KEY SHARE \
             RETURNING id",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(endpoint_id)
        .get_result(conn)
        .await
        .optional()?;
        let Some(event) = event else {
            return Ok(None);
        };
        let delivery: Inserted = diesel::sql_query(
            "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND event_id = $2",
        )
        .bind::<SqlUuid, _>(endpoint_id)
        .bind::<SqlUuid, _>(event.id)
        .get_result(conn)
        .await?;
        Ok(Some(delivery.id))
    }

    /// The position of event `id` of the account, to resume just after it.
    pub async fn position_of(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<EventCursor>> {
        let position: Option<Position> = diesel::sql_query(
            "SELECT txid, seq FROM events WHERE account_id = $1 AND id = $2 AND endpoint_id IS NULL",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .get_result(conn)
        .await
        .optional()?;
        Ok(position.map(Position::cursor))
    }

    /// Locks up to `limit` of the oldest events recorded more than `retention` ago (PostgreSQL's
    /// clock, which wrote them) none of whose deliveries is pending, skipping those another transaction holds; their ids. The first
    /// half of the retention sweep: [`Self::delete_unowed`], in the same transaction, deletes
    /// them.
    pub async fn lock_past_retention(
        conn: &mut AsyncPgConnection,
        retention: std::time::Duration,
        limit: i64,
    ) -> AppResult<Vec<Uuid>> {
        #[derive(QueryableByName)]
        struct Locked {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
        }
        let locked: Vec<Locked> = KeepPrepared(
            diesel::sql_query(
                "SELECT e.id FROM events e \
                 WHERE e.created_at < now() - make_interval(secs => $1) \
                   AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                                   WHERE d.event_id = e.id AND d.state = 'pending') \
                 ORDER BY e.created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            )
            .bind::<diesel::sql_types::Double, _>(retention.as_secs_f64())
            .bind::<BigInt, _>(limit),
        )
        .load(conn)
        .await?;
        Ok(locked.into_iter().map(|event| event.id).collect())
    }

    /// Deletes those of the events `ids` (locked by [`Self::lock_past_retention`]) none of whose
    /// deliveries is pending now, their deliveries and attempts with them; how many.
    ///
    /// A statement of its own, because its snapshot must be taken after the locks: a delivery
    /// put back in the queue by a redrive that committed while the locking statement ran is
    /// pending in this snapshot, and one that had not committed yet is still waiting for its
    /// event's lock ([`super::webhook_delivery::WebhookDeliveryRow::redrive_failed`] takes it
    /// first), so it changes nothing. One statement judging "none pending" from its own start
    /// would delete a delivery redriven in between, and the redrive with it.
    pub async fn delete_unowed(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> AppResult<usize> {
        Ok(KeepPrepared(
            diesel::sql_query(
                "DELETE FROM events e WHERE e.id = ANY ($1) \
                   AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                                   WHERE d.event_id = e.id AND d.state = 'pending')",
            )
            .bind::<Array<SqlUuid>, _>(ids),
        )
        .execute(conn)
        .await?)
    }

    /// The position of "now": after every event of a transaction that can no longer commit.
    /// It is the oldest running transaction's id before its first event (`seq` starts at 1), a
    /// cursor of the form clients get with events: a heartbeat sent before the first event
    /// carries it, and the client resumes from it.
    pub async fn horizon(conn: &mut AsyncPgConnection) -> AppResult<EventCursor> {
        let position: Position = diesel::sql_query(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS txid, \
                    0::bigint AS seq",
        )
        .get_result(conn)
        .await?;
        Ok(position.cursor())
    }

    /// The account's events after `after`, at most `limit`, in the outbox's order; only those of
    /// transactions older than the oldest still running, so that none committed later can sort
    /// before the last one returned. Test events (for one endpoint) are not in the feed. Each
    /// event is read on its own: one this build cannot read (a type or snapshot of another
    /// version) is its row's error, with its id, and the rest of the page reads.
    pub async fn after(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        after: EventCursor,
        types: &[String],
        limit: i64,
    ) -> AppResult<Vec<(EventCursor, Result<StoredEvent, Unreadable>)>> {
        #[derive(diesel::QueryableByName)]
        struct FeedRow {
            #[diesel(embed)]
            position: Position,
            #[diesel(embed)]
            event: EventRow,
        }
        let rows: Vec<FeedRow> = diesel::sql_query(
            "SELECT txid, seq, id AS event_id, type AS event_type, \
                    account_id AS event_account_id, created_at AS event_created_at, \
                    changed_fields, snapshot \
             FROM events \
             WHERE account_id = $1 AND (txid, seq) > ($2, $3) \
               AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
               AND endpoint_id IS NULL \
               AND (cardinality($4::text[]) = 0 OR type = ANY ($4::text[])) \
             ORDER BY txid, seq LIMIT $5",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<BigInt, _>(after.txid)
        .bind::<BigInt, _>(after.seq)
        .bind::<Array<Text>, _>(types)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.position.cursor(), row.event.read()))
            .collect())
    }

    /// The feed's events of every account after `after`, at most `limit`, in the outbox's order,
    /// with the same visibility rule as [`Self::after`] (only events of transactions older than
    /// the oldest still running, so none committed later can sort before the last one returned),
    /// and that horizon: one statement, one round trip, kept prepared. The instance's shared
    /// tail reads this once per poll interval for all its streams.
    pub async fn tail_after(
        conn: &mut AsyncPgConnection,
        after: EventCursor,
        limit: i64,
    ) -> AppResult<TailRead> {
        // The horizon is read once, in the CTE, and both filters and returns it: a row is
        // returned even when no event is new (the LEFT JOIN), so the tail learns how far it saw.
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = BigInt)]
            horizon: i64,
            #[diesel(sql_type = Nullable<BigInt>)]
            txid: Option<i64>,
            #[diesel(sql_type = Nullable<BigInt>)]
            seq: Option<i64>,
            #[diesel(sql_type = Nullable<SqlUuid>)]
            event_id: Option<Uuid>,
            #[diesel(sql_type = Nullable<Text>)]
            event_type: Option<String>,
            #[diesel(sql_type = Nullable<SqlUuid>)]
            event_account_id: Option<Uuid>,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            event_created_at: Option<DateTime<Utc>>,
            #[diesel(sql_type = Nullable<Array<Nullable<Text>>>)]
            changed_fields: Option<Vec<Option<String>>>,
            #[diesel(sql_type = Nullable<Jsonb>)]
            snapshot: Option<serde_json::Value>,
        }
        let rows: Vec<Row> = KeepPrepared(
            diesel::sql_query(
                "WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon) \
                 SELECT h.horizon, e.txid, e.seq, e.id AS event_id, e.type AS event_type, \
                        e.account_id AS event_account_id, e.created_at AS event_created_at, \
                        e.changed_fields, e.snapshot \
                 FROM h LEFT JOIN LATERAL ( \
                     SELECT txid, seq, id, type, account_id, created_at, changed_fields, snapshot \
                     FROM events \
                     WHERE (txid, seq) > ($1, $2) AND txid < h.horizon AND endpoint_id IS NULL \
                     ORDER BY txid, seq LIMIT $3) e ON true \
                 ORDER BY e.txid, e.seq",
            )
            .bind::<BigInt, _>(after.txid)
            .bind::<BigInt, _>(after.seq)
            .bind::<BigInt, _>(limit),
        )
        .load(conn)
        .await?;
        let horizon = EventCursor {
            txid: rows
                .as_slice()
                .first()
                .map_or(after.txid, |row| row.horizon),
            seq: 0,
        };
        let events = rows
            .into_iter()
            .filter_map(|row| {
                let cursor = EventCursor {
                    txid: row.txid?,
                    seq: row.seq?,
                };
                let event = EventRow {
                    event_id: row.event_id?,
                    event_type: row.event_type?,
                    event_account_id: row.event_account_id?,
                    event_created_at: row.event_created_at?,
                    changed_fields: row.changed_fields?,
                    snapshot: row.snapshot?,
                };
                Some(TailRow {
                    cursor,
                    account_id: event.event_account_id,
                    event_type: event.event_type.clone(),
                    event: event.read(),
                })
            })
            .collect();
        Ok(TailRead { events, horizon })
    }
}

/// One read of the instance's shared tail (`service::event_tail`): the feed's events of every
/// account after a position, and how far the read saw.
#[derive(Debug)]
pub struct TailRead {
    /// The events after the position, at most the limit, in the outbox's order, each with its
    /// cursor, its account and its type as stored (a stream filters on both).
    pub events: Vec<TailRow>,
    /// The oldest transaction still running when the statement ran (`pg_snapshot_xmin`), as
    /// the cursor just before its first event: every event of the feed before it is either
    /// in `events` or at or before the position read after (when `events` is not full).
    pub horizon: EventCursor,
}

/// An event of the tail, with what a stream filters on.
#[derive(Clone, Debug)]
pub struct TailRow {
    pub cursor: EventCursor,
    pub account_id: Uuid,
    pub event_type: String,
    pub event: Result<StoredEvent, Unreadable>,
}

/// A position in the outbox's order.
#[derive(diesel::QueryableByName)]
struct Position {
    #[diesel(sql_type = BigInt)]
    txid: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

impl Position {
    fn cursor(self) -> EventCursor {
        EventCursor {
            txid: self.txid,
            seq: self.seq,
        }
    }
}
