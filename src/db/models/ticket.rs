//! The `tickets` table. Reads join the requester's email in the same query: a page of tickets
//! is one round trip, never one query per ticket. Deleted tickets are invisible to every query
//! here but the one that deletes them. Every query returns domain [`Ticket`]s: the rows never
//! leave this file.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use super::ticket_filter::FilterSql;
use super::{NewActivity, NewNotification};
use crate::db::schema::{tickets, users};
use crate::db::{KeepPrepared, PlannedPerCall};
use crate::domain::{
    AccountId, ChangeCursor, Email, FeedEntry, ListSnapshot, MATCH_END, MATCH_START, PageCursor,
    SearchCursor, SearchHit, SearchOrder, Tag, Ticket, TicketDescription, TicketFilter,
    TicketFilterExpr, TicketId, TicketOrderField, TicketPriority, TicketSearch, TicketStatus,
    TicketSubject, UserId, marked_snippet,
};
use crate::errors::AppResult;

/// Read by position from the DSL's queries; by name (`QueryableByName`) from a statement's
/// `RETURNING` written as SQL (bench/src/bin/bare.rs).
#[derive(Clone, Debug, Queryable, QueryableByName, Selectable, serde::Deserialize)]
#[diesel(table_name = tickets, check_for_backend(diesel::pg::Pg))]
pub struct TicketRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub subject: String,
    pub description: String,
    pub priority: String,
    pub status: String,
    pub requester_id: Uuid,
    pub assignee_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Absent from the event snapshots written before migration 40: no tags then.
    #[serde(default)]
    pub tags: Vec<Option<String>>,
    /// Custom field values by key, as written (a JSON object). Absent from the event snapshots
    /// written before migration 42: none then.
    #[serde(default = "no_custom_fields")]
    pub custom_fields: serde_json::Value,
    /// Absent from the event snapshots written before migration 42: no group then.
    #[serde(default)]
    pub group_id: Option<Uuid>,
}

fn no_custom_fields() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A ticket to insert ([`NewTicket::insert_recorded`]).
#[derive(Debug)]
pub struct NewTicket<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub subject: &'a str,
    pub description: &'a str,
    pub priority: &'a str,
    pub status: &'a str,
    pub requester_id: Uuid,
    pub assignee_id: Option<Uuid>,
    /// Normalized and sorted (`TagSet::to_strings`).
    pub tags: &'a [String],
    pub group_id: Option<Uuid>,
    /// Checked values by key (a JSON object).
    pub custom_fields: &'a serde_json::Value,
}

/// The columns a change may set; `None` leaves a column as it is. Every change bumps the
/// version and the update time.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = tickets)]
pub struct TicketChangeset {
    pub subject: Option<String>,
    pub description: Option<String>,
    pub priority: Option<String>,
    pub status: Option<String>,
    pub assignee_id: Option<Option<Uuid>>,
    pub tags: Option<Vec<Option<String>>>,
    pub group_id: Option<Option<Uuid>>,
    /// All the values, as the locked row's values with the change applied: a change is decided
    /// on the locked row, so concurrent changes of different keys all land.
    pub custom_fields: Option<serde_json::Value>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A ticket list query, boxed so that filters can be added one by one.
pub type TicketListQuery<'a> = tickets::BoxedQuery<'a, Pg>;

/// A ticket of the change feed: the row, its requester's email and its position.
#[derive(QueryableByName)]
struct FeedRow {
    #[diesel(embed)]
    ticket: TicketRow,
    #[diesel(sql_type = sql_types::Text)]
    email: String,
    #[diesel(sql_type = sql_types::BigInt)]
    change_txid: i64,
}

/// A ticket a search found, with its requester's email, relevance and headline.
#[derive(QueryableByName)]
struct SearchRow {
    #[diesel(embed)]
    ticket: TicketRow,
    #[diesel(sql_type = sql_types::Text)]
    email: String,
    #[diesel(sql_type = sql_types::Float4)]
    relevance: f32,
    #[diesel(sql_type = sql_types::Text)]
    headline: String,
}

/// The columns of a ticket row as the feed and search select them (table alias `t`).
const TICKET_COLUMNS: &str = "t.id, t.account_id, t.subject, t.description, t.priority, t.status, \
     t.requester_id, t.assignee_id, t.created_at, t.updated_at, t.version, t.deleted_at, t.tags, \
     t.custom_fields, t.group_id";

/// The planner's estimate of the tickets a search's words match.
#[derive(QueryableByName)]
struct MatchesEstimate {
    #[diesel(sql_type = sql_types::BigInt)]
    count: i64,
}

/// The count of a requester's open tickets.
#[derive(QueryableByName)]
struct OpenTickets {
    #[diesel(sql_type = sql_types::BigInt)]
    count: i64,
}

impl NewTicket<'_> {
    /// Inserts the ticket of the requester whose address is `requester_email` together with its
    /// audit record and the acknowledgement to its requester (the outbox row, `notification`),
    /// in one statement (one round trip): the record and the notification are data-modifying
    /// CTEs of the ticket's insert, which run in the same snapshot, and PostgreSQL checks their
    /// foreign keys to the ticket at the end of the statement. A rolled-back creation leaves
    /// neither.
    ///
    /// Written out as SQL, as is [`TicketRow::count_open_for_requester`]: they are on
    /// CreateTicket's path, and diesel-async renders a DSL statement's text on every call
    /// (docs/performance.md, "The writes' SQL is written out").
    pub async fn insert_recorded(
        &self,
        conn: &mut AsyncPgConnection,
        requester_email: &Email,
        record: &NewActivity<'_>,
        notification: &NewNotification<'_>,
    ) -> AppResult<Ticket> {
        KeepPrepared(
            diesel::sql_query(
                "WITH written AS (INSERT INTO ticket_activities \
                 (id, account_id, ticket_id, actor_user_id, actor_api_key_id, action, changes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)), \
                 notified AS (INSERT INTO notifications \
                 (id, account_id, kind, recipient_user_id, recipient_address, data, message_id, \
                 ticket_id) VALUES ($16, $9, $17, $18, $19, $20, $21, $8)) \
                 INSERT INTO tickets \
                 (id, account_id, subject, description, priority, status, requester_id, \
                 assignee_id, tags, group_id, custom_fields) \
                 VALUES ($8, $9, $10, $11, $12, $13, $14, $15, $22, $23, $24) \
                 RETURNING id, account_id, subject, description, priority, status, requester_id, \
                 assignee_id, created_at, updated_at, version, deleted_at, tags, custom_fields, \
                 group_id",
            )
            .bind::<sql_types::Uuid, _>(record.id)
            .bind::<sql_types::Uuid, _>(record.account_id)
            .bind::<sql_types::Uuid, _>(record.ticket_id)
            .bind::<sql_types::Nullable<sql_types::Uuid>, _>(record.actor_user_id)
            .bind::<sql_types::Nullable<sql_types::Uuid>, _>(record.actor_api_key_id)
            .bind::<sql_types::Text, _>(record.action)
            .bind::<sql_types::Jsonb, _>(&record.changes)
            .bind::<sql_types::Uuid, _>(self.id)
            .bind::<sql_types::Uuid, _>(self.account_id)
            .bind::<sql_types::Text, _>(self.subject)
            .bind::<sql_types::Text, _>(self.description)
            .bind::<sql_types::Text, _>(self.priority)
            .bind::<sql_types::Text, _>(self.status)
            .bind::<sql_types::Uuid, _>(self.requester_id)
            .bind::<sql_types::Nullable<sql_types::Uuid>, _>(self.assignee_id)
            .bind::<sql_types::Uuid, _>(notification.id)
            .bind::<sql_types::Text, _>(notification.kind.as_str())
            .bind::<sql_types::Uuid, _>(notification.recipient_user_id)
            .bind::<sql_types::Text, _>(notification.recipient_address)
            .bind::<sql_types::Jsonb, _>(&notification.data)
            .bind::<sql_types::Text, _>(&notification.message_id)
            .bind::<sql_types::Array<sql_types::Text>, _>(self.tags)
            .bind::<sql_types::Nullable<sql_types::Uuid>, _>(self.group_id)
            .bind::<sql_types::Jsonb, _>(self.custom_fields),
        )
        .get_result::<TicketRow>(conn)
        .await?
        .into_domain(requester_email.as_str())
    }
}

impl TicketChangeset {
    /// The columns that differ between `before` and `after`; with `deletes`, the deletion.
    pub fn between(before: &Ticket, after: &Ticket, deletes: bool) -> Self {
        let differs = |old: &str, new: &str| (old != new).then(|| new.to_owned());
        Self {
            subject: differs(before.subject.as_str(), after.subject.as_str()),
            description: differs(before.description.as_str(), after.description.as_str()),
            priority: differs(before.priority.as_str(), after.priority.as_str()),
            status: differs(before.status.as_str(), after.status.as_str()),
            assignee_id: (before.assignee_id != after.assignee_id)
                .then(|| after.assignee_id.map(|id| id.as_uuid())),
            tags: (before.tags != after.tags)
                .then(|| after.tags.to_strings().into_iter().map(Some).collect()),
            group_id: (before.group_id != after.group_id).then_some(after.group_id),
            custom_fields: (before.custom_fields != after.custom_fields)
                .then(|| serde_json::Value::Object(after.custom_fields.clone())),
            deleted_at: deletes.then(Utc::now),
        }
    }
}

diesel::define_sql_function! {
    /// The snapshot of the statement that calls it, as text (migration 26).
    fn list_snapshot() -> sql_types::Text;
}

diesel::define_sql_function! {
    /// Whether the change of transaction `change_txid` was seen by `snapshot` (migration 26).
    fn seen_by_snapshot(change_txid: sql_types::BigInt, snapshot: sql_types::Text) -> sql_types::Bool;
}

/// What bounds the later pages of a list ordered by update time, read with its first page.
#[derive(Debug)]
pub struct FirstPageBound {
    /// The snapshot the first page was read in; `None` when too long for a page token.
    pub snapshot: Option<ListSnapshot>,
    /// When the first page was read, by PostgreSQL's clock (the one `updated_at` is written
    /// by): the bound of the later pages when there is no snapshot to carry.
    pub read_at: DateTime<Utc>,
}

impl TicketRow {
    /// The ticket `id` of `account_id` with its requester's email; with `requester`, only if
    /// that user raised it.
    pub async fn find(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        requester: Option<UserId>,
        id: TicketId,
    ) -> AppResult<Option<Ticket>> {
        let mut query = tickets::table
            .inner_join(users::table.on(users::id.eq(tickets::requester_id)))
            .filter(tickets::account_id.eq(account_id.as_uuid()))
            .filter(tickets::id.eq(id.as_uuid()))
            .filter(tickets::deleted_at.is_null())
            .select((Self::as_select(), users::email))
            .into_boxed();
        if let Some(requester) = requester {
            query = query.filter(tickets::requester_id.eq(requester.as_uuid()));
        }
        query
            .first::<(Self, String)>(conn)
            .await
            .optional()?
            .map(|(row, email)| row.into_domain(&email))
            .transpose()
    }

    /// The ticket `id` of `account_id` as last committed, deleted or not: `(ticket, deleted)`.
    /// For bringing the cache to what a write committed when the write's own answer was lost.
    pub async fn find_latest(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        id: TicketId,
    ) -> AppResult<Option<(Ticket, bool)>> {
        tickets::table
            .inner_join(users::table.on(users::id.eq(tickets::requester_id)))
            .filter(tickets::account_id.eq(account_id.as_uuid()))
            .filter(tickets::id.eq(id.as_uuid()))
            .select((Self::as_select(), users::email))
            .first::<(Self, String)>(conn)
            .await
            .optional()?
            .map(|(row, email)| {
                let deleted = row.deleted_at.is_some();
                Ok((row.into_domain(&email)?, deleted))
            })
            .transpose()
    }

    /// Like [`TicketRow::find`], and locks the row (and its requester's, which the open-ticket
    /// limit also locks) until the transaction ends, so that a change is decided on the state it
    /// will change.
    pub async fn find_for_update(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        requester: Option<UserId>,
        id: TicketId,
    ) -> AppResult<Option<Ticket>> {
        // Locking clauses cannot be boxed: one statement per shape.
        let candidates = tickets::table
            .inner_join(users::table.on(users::id.eq(tickets::requester_id)))
            .filter(tickets::account_id.eq(account_id.as_uuid()))
            .filter(tickets::id.eq(id.as_uuid()))
            .filter(tickets::deleted_at.is_null());
        let found: Option<(Self, String)> = match requester {
            Some(requester) => {
                candidates
                    .filter(tickets::requester_id.eq(requester.as_uuid()))
                    .select((Self::as_select(), users::email))
                    .for_update()
                    .first(conn)
                    .await
            }
            None => {
                candidates
                    .select((Self::as_select(), users::email))
                    .for_update()
                    .first(conn)
                    .await
            }
        }
        .optional()?;
        found
            .map(|(row, email)| row.into_domain(&email))
            .transpose()
    }

    /// Applies `changes` to the (locked) `ticket`, bumping its version: the ticket as stored.
    pub async fn apply(
        conn: &mut AsyncPgConnection,
        ticket: &Ticket,
        changes: &TicketChangeset,
    ) -> AppResult<Ticket> {
        // A changeset of eight optional columns: at most 256 shapes, each prepared once.
        KeepPrepared(
            diesel::update(tickets::table.find(ticket.id.as_uuid()))
                .set((
                    changes,
                    tickets::version.eq(tickets::version + 1),
                    tickets::updated_at.eq(diesel::dsl::now),
                ))
                .returning(Self::as_returning()),
        )
        .get_result::<Self>(conn)
        .await?
        .into_domain(ticket.requester_email.as_str())
    }

    /// How many open (not solved, not closed) tickets `requester` has.
    pub async fn count_open_for_requester(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        requester: Uuid,
    ) -> QueryResult<i64> {
        let done: &[&str] = &[TicketStatus::Solved.as_str(), TicketStatus::Closed.as_str()];
        KeepPrepared(
            diesel::sql_query(
                "SELECT count(*) AS count FROM tickets WHERE account_id = $1 \
                 AND requester_id = $2 AND deleted_at IS NULL AND status <> ALL($3)",
            )
            .bind::<sql_types::Uuid, _>(account_id.as_uuid())
            .bind::<sql_types::Uuid, _>(requester)
            .bind::<sql_types::Array<sql_types::Text>, _>(done),
        )
        .get_result::<OpenTickets>(conn)
        .await
        .map(|open| open.count)
    }

    /// The ids of the tickets a list holds, in order: `filter` and `requester` (a customer's
    /// restriction) applied, strictly after `after`. Every combination is served by an index
    /// (see migrations/*_ticketing), which `tests/api/tickets/queries.rs` checks with EXPLAIN.
    pub fn list_query<'a>(
        account_id: AccountId,
        requester: Option<UserId>,
        filter: &TicketFilter,
        after: Option<PageCursor>,
        limit: i64,
    ) -> TicketListQuery<'a> {
        let mut query = tickets::table
            .filter(tickets::account_id.eq(account_id.as_uuid()))
            .filter(tickets::deleted_at.is_null())
            .limit(limit)
            .into_boxed();
        if let Some(requester) = requester.or(filter.requester) {
            query = query.filter(tickets::requester_id.eq(requester.as_uuid()));
        }
        if requester.is_some() && filter.requester.is_some() && requester != filter.requester {
            // A customer asking for someone else's tickets gets none.
            query = query.filter(tickets::id.is_null());
        }
        if !filter.statuses.is_empty() {
            query = query.filter(
                tickets::status.eq_any(
                    filter
                        .statuses
                        .iter()
                        .map(TicketStatus::as_str)
                        .collect::<Vec<_>>(),
                ),
            );
        }
        if !filter.priorities.is_empty() {
            query = query.filter(
                tickets::priority.eq_any(
                    filter
                        .priorities
                        .iter()
                        .map(TicketPriority::as_str)
                        .collect::<Vec<_>>(),
                ),
            );
        }
        if let Some(assignee) = filter.assignee {
            query = query.filter(tickets::assignee_id.eq(assignee.as_uuid()));
        }
        if let Some(after) = filter.created_after {
            query = query.filter(tickets::created_at.ge(after.get()));
        }
        if let Some(before) = filter.created_before {
            query = query.filter(tickets::created_at.lt(before.get()));
        }
        if !filter.expr.is_empty() {
            query = query.filter(FilterSql::new(&filter.expr, "tickets", Utc::now()));
        }
        let descending = filter.order.descending;
        match filter.order.field {
            TicketOrderField::Created => {
                query = if descending {
                    query.order((tickets::created_at.desc(), tickets::id.desc()))
                } else {
                    query.order((tickets::created_at.asc(), tickets::id.asc()))
                };
                if let Some(cursor) = after {
                    // The first bound lets the index range-scan; the second breaks ties on id.
                    query = if descending {
                        query.filter(tickets::created_at.le(cursor.at)).filter(
                            tickets::created_at
                                .lt(cursor.at)
                                .or(tickets::id.lt(cursor.id)),
                        )
                    } else {
                        query.filter(tickets::created_at.ge(cursor.at)).filter(
                            tickets::created_at
                                .gt(cursor.at)
                                .or(tickets::id.gt(cursor.id)),
                        )
                    };
                }
            }
            TicketOrderField::Updated => {
                query = if descending {
                    query.order((tickets::updated_at.desc(), tickets::id.desc()))
                } else {
                    query.order((tickets::updated_at.asc(), tickets::id.asc()))
                };
                if let Some(cursor) = after {
                    if let Some(until) = cursor.until {
                        query = query.filter(tickets::updated_at.le(until));
                    }
                    // Only tickets whose last change the first page's snapshot saw: one changed
                    // since, or changing then (its time earlier than the read, its commit later),
                    // would otherwise move across the cursor and be listed again.
                    if let Some(snapshot) = &cursor.snapshot {
                        query = query.filter(seen_by_snapshot(
                            tickets::change_txid,
                            snapshot.as_str().to_owned(),
                        ));
                    }
                    query = if descending {
                        query.filter(tickets::updated_at.le(cursor.at)).filter(
                            tickets::updated_at
                                .lt(cursor.at)
                                .or(tickets::id.lt(cursor.id)),
                        )
                    } else {
                        query.filter(tickets::updated_at.ge(cursor.at)).filter(
                            tickets::updated_at
                                .gt(cursor.at)
                                .or(tickets::id.gt(cursor.id)),
                        )
                    };
                }
            }
        }
        query
    }

    /// A page of ListTickets: [`Self::list`], and with the first page of a list ordered by
    /// update time, what bounds the later pages (docs/tickets.md), from the same statement;
    /// `None` when the page is empty. One query.
    pub async fn list_page(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        requester: Option<UserId>,
        filter: &TicketFilter,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<(Vec<Ticket>, Option<FirstPageBound>)> {
        if filter.order.field != TicketOrderField::Updated || after.is_some() {
            let tickets = Self::list(conn, account_id, requester, filter, after, limit).await?;
            return Ok((tickets, None));
        }
        let query = Self::list_query(account_id, requester, filter, after, limit)
            .inner_join(users::table.on(users::id.eq(tickets::requester_id)))
            .select((
                Self::as_select(),
                users::email,
                list_snapshot(),
                diesel::dsl::now.into_sql::<sql_types::Timestamptz>(),
            ));
        let rows = if filter.expr.is_empty() {
            query
                .load::<(Self, String, String, DateTime<Utc>)>(conn)
                .await?
        } else {
            PlannedPerCall(query)
                .load::<(Self, String, String, DateTime<Utc>)>(conn)
                .await?
        };
        // One too long for a token (hundreds of transactions running at once) is left out:
        // the later pages are then bounded by the time of the read, as in earlier releases.
        let bound = rows
            .as_slice()
            .first()
            .map(|(_, _, snapshot, read_at)| FirstPageBound {
                snapshot: ListSnapshot::parse(snapshot)
                    .inspect_err(|problem| {
                        tracing::warn!(%problem, bytes = snapshot.len(),
                            "the first page's snapshot does not fit a page token; later pages are bounded by time");
                    })
                    .ok(),
                read_at: *read_at,
            });
        let tickets = rows
            .into_iter()
            .map(|(row, email, _, _)| row.into_domain(&email))
            .collect::<AppResult<Vec<_>>>()?;
        Ok((tickets, bound))
    }

    /// A page of tickets with their requesters' emails: one query.
    pub async fn list(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        requester: Option<UserId>,
        filter: &TicketFilter,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<Ticket>> {
        // The join keeps the order of the boxed query; nothing to re-sort. Typed filters each
        // have an index of their own, which a generic plan uses as well as a custom one; the
        // filter language's best plan depends on its values (`tags: vip` against a rare tag),
        // so such a list is planned with them on every call.
        let query = Self::list_query(account_id, requester, filter, after, limit)
            .inner_join(users::table.on(users::id.eq(tickets::requester_id)))
            .select((Self::as_select(), users::email));
        let rows = if filter.expr.is_empty() {
            query.load::<(Self, String)>(conn).await?
        } else {
            PlannedPerCall(query).load::<(Self, String)>(conn).await?
        };
        rows.into_iter()
            .map(|(row, email)| row.into_domain(&email))
            .collect()
    }

    /// The change feed of `account_id` after `after`, oldest change first: at most `limit`
    /// tickets, deleted ones included, each in its latest state.
    ///
    /// Only rows written by transactions older than the oldest transaction still running
    /// (`pg_snapshot_xmin` of this statement's snapshot) are returned: every such transaction
    /// has ended, so no row can later appear with a position at or before the last one
    /// returned. A change whose transaction is still open holds back the changes after it; it
    /// never lets them pass (docs/export-and-search.md, "The change feed").
    ///
    /// `filter` may only name fields that never change (the service refuses the others): a
    /// ticket then matches in every change or in none, and no ticket leaves the feed silently.
    pub async fn changes(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        filter: &TicketFilterExpr,
        after: ChangeCursor,
        limit: i64,
    ) -> AppResult<Vec<FeedEntry>> {
        let select = format!(
            "SELECT {TICKET_COLUMNS}, u.email, t.change_txid FROM tickets t \
             JOIN users u ON u.id = t.requester_id \
             WHERE t.account_id = $1 AND (t.change_txid, t.id) > ($2, $3) \
             AND t.change_txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        );
        let rows = if filter.is_empty() {
            KeepPrepared(
                diesel::sql_query(format!("{select} ORDER BY t.change_txid, t.id LIMIT $4"))
                    .bind::<sql_types::Uuid, _>(account_id.as_uuid())
                    .bind::<sql_types::BigInt, _>(after.txid)
                    .bind::<sql_types::Uuid, _>(after.id)
                    .bind::<sql_types::BigInt, _>(limit),
            )
            .load::<FeedRow>(conn)
            .await?
        } else {
            let mut next = 4;
            let mut param = || {
                let number = next;
                next += 1;
                format!("${number}")
            };
            let query = diesel::sql_query(select)
                .into_boxed()
                .bind::<sql_types::Uuid, _>(account_id.as_uuid())
                .bind::<sql_types::BigInt, _>(after.txid)
                .bind::<sql_types::Uuid, _>(after.id);
            let query = FilterSql::new(filter, "t", Utc::now()).append_to(query, &mut param);
            query
                .sql(format!(" ORDER BY t.change_txid, t.id LIMIT {}", param()))
                .bind::<sql_types::BigInt, _>(limit)
                .load::<FeedRow>(conn)
                .await?
        };
        rows.into_iter()
            .map(|row| {
                let deleted = row.ticket.deleted_at.is_some();
                let position = ChangeCursor {
                    txid: row.change_txid,
                    id: row.ticket.id,
                };
                Ok(FeedEntry {
                    ticket: row.ticket.into_domain(&row.email)?,
                    deleted,
                    position,
                })
            })
            .collect()
    }

    /// The tickets of `account_id` matching `search` (with `requester`, a customer's
    /// restriction) after `after`, at most `limit`, and the order they come in: best match
    /// first when the words match at most [`crate::domain::MAX_MATCHES_RANKED`] tickets of the scope by the
    /// planner's estimate, else newest first; the next pages keep the order of the first
    /// (docs/export-and-search.md, "Order"). Matched through the GIN index on
    /// `search_document`, or, newest first, by walking the scope's `created_at` index until
    /// the page is full; the headline is computed for the returned rows only.
    pub async fn search(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        requester: Option<UserId>,
        search: &TicketSearch,
        after: Option<SearchCursor>,
        limit: i64,
    ) -> AppResult<(SearchOrder, Vec<SearchHit>)> {
        let filter = &search.filter;
        let order = match after {
            Some(after) => after.order(),
            None => SearchOrder::for_estimated_matches(
                Self::search_matches_estimate(
                    conn,
                    account_id,
                    requester.or(filter.requester),
                    search,
                )
                .await?,
            ),
        };
        let mut query = diesel::sql_query(format!(
            "SELECT s.*, ts_headline('english', \
             s.subject || E'\\n' || s.description || E'\\n' || s.public_comments, \
             websearch_to_tsquery('english', $1), \
             'StartSel={MATCH_START}, StopSel={MATCH_END}, MaxWords=35, MinWords=15, \
             MaxFragments=2, FragmentDelimiter=\" … \"') AS headline \
             FROM (SELECT {TICKET_COLUMNS}, t.public_comments, u.email, \
             ts_rank(t.search_document, websearch_to_tsquery('english', $1)) AS relevance \
             FROM tickets t JOIN users u ON u.id = t.requester_id \
             WHERE t.account_id = $2 AND t.deleted_at IS NULL \
             AND t.search_document @@ websearch_to_tsquery('english', $1)"
        ))
        .into_boxed()
        .bind::<sql_types::Text, _>(search.text.as_str().to_owned())
        .bind::<sql_types::Uuid, _>(account_id.as_uuid());
        let mut next = 3;
        let mut param = || {
            let number = next;
            next += 1;
            format!("${number}")
        };
        if let Some(requester) = requester.or(filter.requester) {
            query = query
                .sql(format!(" AND t.requester_id = {}", param()))
                .bind::<sql_types::Uuid, _>(requester.as_uuid());
        }
        if requester.is_some() && filter.requester.is_some() && requester != filter.requester {
            // A customer asking for someone else's tickets gets none.
            query = query.sql(" AND false");
        }
        if !filter.statuses.is_empty() {
            let statuses: Vec<String> = filter
                .statuses
                .iter()
                .map(|status| status.as_str().to_owned())
                .collect();
            query = query
                .sql(format!(" AND t.status = ANY({})", param()))
                .bind::<sql_types::Array<sql_types::Text>, _>(statuses);
        }
        if !filter.priorities.is_empty() {
            let priorities: Vec<String> = filter
                .priorities
                .iter()
                .map(|priority| priority.as_str().to_owned())
                .collect();
            query = query
                .sql(format!(" AND t.priority = ANY({})", param()))
                .bind::<sql_types::Array<sql_types::Text>, _>(priorities);
        }
        if let Some(assignee) = filter.assignee {
            query = query
                .sql(format!(" AND t.assignee_id = {}", param()))
                .bind::<sql_types::Uuid, _>(assignee.as_uuid());
        }
        if let Some(created_after) = filter.created_after {
            query = query
                .sql(format!(" AND t.created_at >= {}", param()))
                .bind::<sql_types::Timestamptz, _>(created_after.get());
        }
        if let Some(created_before) = filter.created_before {
            query = query
                .sql(format!(" AND t.created_at < {}", param()))
                .bind::<sql_types::Timestamptz, _>(created_before.get());
        }
        query = FilterSql::new(&filter.expr, "t", Utc::now()).append_to(query, &mut param);
        query = query.sql(") s");
        match after {
            Some(SearchCursor::Relevance { relevance, id }) => {
                let (relevance_param, again, id_param) = (param(), param(), param());
                query = query
                    .sql(format!(
                        " WHERE s.relevance < {relevance_param} \
                         OR (s.relevance = {again} AND s.id > {id_param})"
                    ))
                    .bind::<sql_types::Float4, _>(relevance)
                    .bind::<sql_types::Float4, _>(relevance)
                    .bind::<sql_types::Uuid, _>(id);
            }
            Some(SearchCursor::Newest { created_at, id }) => {
                let (created_param, id_param) = (param(), param());
                query = query
                    .sql(format!(
                        " WHERE (s.created_at, s.id) < ({created_param}, {id_param})"
                    ))
                    .bind::<sql_types::Timestamptz, _>(created_at)
                    .bind::<sql_types::Uuid, _>(id);
            }
            None => {}
        }
        let order_by = match order {
            SearchOrder::Relevance => "s.relevance DESC, s.id",
            SearchOrder::Newest => "s.created_at DESC, s.id DESC",
        };
        query = query
            .sql(format!(" ORDER BY {order_by} LIMIT {}", param()))
            .bind::<sql_types::BigInt, _>(limit);
        let rows = query.load::<SearchRow>(conn).await?;
        let hits = rows
            .into_iter()
            .map(|row| {
                Ok(SearchHit {
                    ticket: row.ticket.into_domain(&row.email)?,
                    relevance: row.relevance,
                    snippet: marked_snippet(&row.headline),
                })
            })
            .collect::<AppResult<Vec<_>>>()?;
        Ok((order, hits))
    }

    /// The planner's estimate of how many tickets of `account_id` (of `requester`'s, with one)
    /// match the words of `search`: planning only, nothing is read from the table
    /// (`ticket_search_matches_estimate`, migration 2026-11-27-000020).
    async fn search_matches_estimate(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        requester: Option<UserId>,
        search: &TicketSearch,
    ) -> AppResult<i64> {
        let estimate = diesel::sql_query(
            "SELECT ticket_search_matches_estimate($1, $2, websearch_to_tsquery('english', $3)) \
             AS count",
        )
        .bind::<sql_types::Uuid, _>(account_id.as_uuid())
        .bind::<sql_types::Nullable<sql_types::Uuid>, _>(requester.map(|user| user.as_uuid()))
        .bind::<sql_types::Text, _>(search.text.as_str())
        .get_result::<MatchesEstimate>(conn)
        .await?;
        Ok(estimate.count)
    }

    /// The domain view of this row, given its requester's email.
    pub(super) fn into_domain(self, requester_email: &str) -> AppResult<Ticket> {
        Ok(Ticket {
            id: TicketId::from_uuid(self.id),
            account_id: AccountId::from_uuid(self.account_id),
            subject: TicketSubject::parse(&self.subject)
                .map_err(|problem| corrupt("tickets.subject", problem))?,
            description: TicketDescription::parse(&self.description)
                .map_err(|problem| corrupt("tickets.description", problem))?,
            priority: TicketPriority::parse(&self.priority)
                .map_err(|problem| corrupt("tickets.priority", problem))?,
            status: TicketStatus::parse(&self.status)
                .map_err(|problem| corrupt("tickets.status", problem))?,
            requester_id: UserId::from_uuid(self.requester_id),
            requester_email: Email::from_stored(requester_email),
            assignee_id: self.assignee_id.map(UserId::from_uuid),
            tags: self
                .tags
                .into_iter()
                .flatten()
                .map(Tag::from_stored)
                .collect(),
            group_id: self.group_id,
            // As stored, never checked again (a field changed or retired since stays readable);
            // the column's CHECK keeps it an object.
            custom_fields: match self.custom_fields {
                serde_json::Value::Object(values) => values,
                serde_json::Value::Null
                | serde_json::Value::Bool(_)
                | serde_json::Value::Number(_)
                | serde_json::Value::String(_)
                | serde_json::Value::Array(_) => serde_json::Map::new(),
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// A batch of imported tickets, one array per column, each with its audit record ("created",
/// by the importer): written by one statement (`INSERT … SELECT FROM unnest(…)`).
#[derive(Debug, Default)]
pub struct ImportedTickets {
    pub ids: Vec<Uuid>,
    pub subjects: Vec<String>,
    pub descriptions: Vec<String>,
    pub priorities: Vec<&'static str>,
    pub requester_ids: Vec<Uuid>,
    pub assignee_ids: Vec<Option<Uuid>>,
    pub activity_ids: Vec<Uuid>,
    pub changes: Vec<serde_json::Value>,
    /// Each ticket's tags joined by commas (a tag holds none): one text per ticket, as unnest
    /// cannot give a row an array of its own.
    pub tags: Vec<String>,
    pub group_ids: Vec<Option<Uuid>>,
    /// Each ticket's custom field values, an object of stored values.
    pub custom_fields: Vec<serde_json::Value>,
}

impl ImportedTickets {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Inserts the batch, NEW, into the account, recorded as created by `actor`.
    pub async fn insert(
        &self,
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        actor: (Option<Uuid>, Option<Uuid>),
    ) -> AppResult<usize> {
        if self.is_empty() {
            return Ok(0);
        }
        Ok(KeepPrepared(
            diesel::sql_query(
                "WITH input AS (SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[], \
                 $5::text[], $6::uuid[], $7::uuid[], $8::uuid[], $9::jsonb[], $14::text[], \
                 $15::uuid[], $16::jsonb[]) \
                 AS t(id, subject, description, priority, requester_id, assignee_id, \
                 activity_id, changes, tags, group_id, custom_fields)), \
                 written AS (INSERT INTO ticket_activities \
                 (id, account_id, ticket_id, actor_user_id, actor_api_key_id, action, changes) \
                 SELECT activity_id, $1, id, $10, $11, $12, changes FROM input) \
                 INSERT INTO tickets (id, account_id, subject, description, priority, status, \
                 requester_id, assignee_id, tags, group_id, custom_fields) \
                 SELECT id, $1, subject, description, priority, $13, requester_id, assignee_id, \
                 string_to_array(tags, ','), group_id, custom_fields FROM input",
            )
            .bind::<sql_types::Uuid, _>(account_id.as_uuid())
            .bind::<sql_types::Array<sql_types::Uuid>, _>(&self.ids)
            .bind::<sql_types::Array<sql_types::Text>, _>(&self.subjects)
            .bind::<sql_types::Array<sql_types::Text>, _>(&self.descriptions)
            .bind::<sql_types::Array<sql_types::Text>, _>(&self.priorities)
            .bind::<sql_types::Array<sql_types::Uuid>, _>(&self.requester_ids)
            .bind::<sql_types::Array<sql_types::Nullable<sql_types::Uuid>>, _>(&self.assignee_ids)
            .bind::<sql_types::Array<sql_types::Uuid>, _>(&self.activity_ids)
            .bind::<sql_types::Array<sql_types::Jsonb>, _>(&self.changes)
            .bind::<sql_types::Nullable<sql_types::Uuid>, _>(actor.0)
            .bind::<sql_types::Nullable<sql_types::Uuid>, _>(actor.1)
            .bind::<sql_types::Text, _>(crate::domain::TicketAction::Created.as_str())
            .bind::<sql_types::Text, _>(TicketStatus::New.as_str())
            .bind::<sql_types::Array<sql_types::Text>, _>(&self.tags)
            .bind::<sql_types::Array<sql_types::Nullable<sql_types::Uuid>>, _>(&self.group_ids)
            .bind::<sql_types::Array<sql_types::Jsonb>, _>(&self.custom_fields),
        )
        .execute(conn)
        .await?)
    }
}
