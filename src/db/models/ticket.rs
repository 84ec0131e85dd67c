//! The `tickets` table. Reads join the requester's email in the same query: a page of tickets
//! is one round trip, never one query per ticket.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::schema::{tickets, users};
use crate::domain::{
    AccountId, Email, PageCursor, Ticket, TicketDescription, TicketId, TicketPriority,
    TicketStatus, TicketSubject, UserId,
};
use crate::errors::AppResult;

#[derive(Clone, Debug, Queryable, Selectable)]
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
}

#[derive(Debug, Insertable)]
#[diesel(table_name = tickets)]
pub struct NewTicket<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub subject: &'a str,
    pub description: &'a str,
    pub priority: &'a str,
    pub status: &'a str,
    pub requester_id: Uuid,
    pub assignee_id: Option<Uuid>,
}

impl NewTicket<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<TicketRow> {
        diesel::insert_into(tickets::table)
            .values(self)
            .returning(TicketRow::as_returning())
            .get_result(conn)
            .await
    }
}

impl TicketRow {
    /// The ticket `id` of `account_id` with its requester's email; with `requester`, only if
    /// that user raised it.
    pub async fn find(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        requester: Option<UserId>,
        id: TicketId,
    ) -> QueryResult<Option<(Self, String)>> {
        let mut query = tickets::table
            .inner_join(users::table.on(users::id.eq(tickets::requester_id)))
            .filter(tickets::account_id.eq(account_id.as_uuid()))
            .filter(tickets::id.eq(id.as_uuid()))
            .select((Self::as_select(), users::email))
            .into_boxed();
        if let Some(requester) = requester {
            query = query.filter(tickets::requester_id.eq(requester.as_uuid()));
        }
        query.first(conn).await.optional()
    }

    /// Up to `limit` tickets of `account_id` (raised by `requester`, when given), newest first,
    /// strictly after `after`. Served by `tickets_account_created_idx`.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        requester: Option<UserId>,
        after: Option<PageCursor>,
        limit: i64,
    ) -> QueryResult<Vec<(Self, String)>> {
        let mut query = tickets::table
            .inner_join(users::table.on(users::id.eq(tickets::requester_id)))
            .filter(tickets::account_id.eq(account_id.as_uuid()))
            .select((Self::as_select(), users::email))
            .order((tickets::created_at.desc(), tickets::id.desc()))
            .limit(limit)
            .into_boxed();
        if let Some(requester) = requester {
            query = query.filter(tickets::requester_id.eq(requester.as_uuid()));
        }
        if let Some(cursor) = after {
            // The first bound lets the index range-scan; the second breaks ties on id.
            query = query
                .filter(tickets::created_at.le(cursor.created_at))
                .filter(
                    tickets::created_at
                        .lt(cursor.created_at)
                        .or(tickets::id.lt(cursor.id)),
                );
        }
        query.load(conn).await
    }

    /// The domain view of this row, given its requester's email.
    pub fn into_domain(self, requester_email: &str) -> AppResult<Ticket> {
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
            requester_email: Email::parse(requester_email)
                .map_err(|problem| corrupt("users.email", problem))?,
            assignee_id: self.assignee_id.map(UserId::from_uuid),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}
