//! The `ticket_comments` table; a public comment from the desk writes its requester's
//! notification in the comment's own statement.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{NewNotification, corrupt};
use crate::db::KeepPrepared;
use crate::db::schema::ticket_comments;
use crate::domain::{self, Actor, ApiKeyId, CommentBody, PageCursor, TicketId, UserId};
use crate::errors::{AppError, AppResult};

#[derive(Clone, Debug, Queryable, QueryableByName, Selectable, serde::Deserialize)]
#[diesel(table_name = ticket_comments, check_for_backend(diesel::pg::Pg))]
pub struct CommentRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub ticket_id: Uuid,
    pub author_user_id: Option<Uuid>,
    pub author_api_key_id: Option<Uuid>,
    pub body: String,
    pub public: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = ticket_comments)]
pub struct NewComment<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub ticket_id: Uuid,
    pub author_user_id: Option<Uuid>,
    pub author_api_key_id: Option<Uuid>,
    pub body: &'a str,
    pub public: bool,
}

impl NewComment<'_> {
    /// Inserts the comment and, when there is one, the notification it causes (the outbox row,
    /// `notification`) in the same statement: a data-modifying CTE, so the notification costs no
    /// round trip and exists exactly when the comment does.
    pub async fn insert_notifying(
        &self,
        conn: &mut AsyncPgConnection,
        notification: Option<&NewNotification<'_>>,
    ) -> AppResult<domain::Comment> {
        let Some(notification) = notification else {
            return self.insert(conn).await;
        };
        KeepPrepared(
            diesel::sql_query(
                "WITH notified AS (INSERT INTO notifications \
                 (id, account_id, kind, recipient_user_id, recipient_address, data, message_id, \
                 ticket_id) VALUES ($8, $2, $9, $10, $11, $12, $13, $3)) \
                 INSERT INTO ticket_comments \
                 (id, account_id, ticket_id, author_user_id, author_api_key_id, body, public) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 RETURNING id, account_id, ticket_id, author_user_id, author_api_key_id, body, \
                 public, created_at",
            )
            .bind::<sql_types::Uuid, _>(self.id)
            .bind::<sql_types::Uuid, _>(self.account_id)
            .bind::<sql_types::Uuid, _>(self.ticket_id)
            .bind::<sql_types::Nullable<sql_types::Uuid>, _>(self.author_user_id)
            .bind::<sql_types::Nullable<sql_types::Uuid>, _>(self.author_api_key_id)
            .bind::<sql_types::Text, _>(self.body)
            .bind::<sql_types::Bool, _>(self.public)
            .bind::<sql_types::Uuid, _>(notification.id)
            .bind::<sql_types::Text, _>(notification.kind.as_str())
            .bind::<sql_types::Uuid, _>(notification.recipient_user_id)
            .bind::<sql_types::Text, _>(notification.recipient_address)
            .bind::<sql_types::Jsonb, _>(&notification.data)
            .bind::<sql_types::Text, _>(&notification.message_id),
        )
        .get_result::<CommentRow>(conn)
        .await?
        .into_domain()
    }

    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> AppResult<domain::Comment> {
        KeepPrepared(
            diesel::insert_into(ticket_comments::table)
                .values(self)
                .returning(CommentRow::as_returning()),
        )
        .get_result(conn)
        .await?
        .into_domain()
    }
}

impl CommentRow {
    /// Up to `limit` comments of a ticket, oldest first, after `after`; internal notes only
    /// when `with_internal`.
    pub async fn list_for_ticket(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        ticket_id: Uuid,
        with_internal: bool,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<domain::Comment>> {
        let mut query = ticket_comments::table
            .filter(ticket_comments::account_id.eq(account_id))
            .filter(ticket_comments::ticket_id.eq(ticket_id))
            .select(Self::as_select())
            .order((ticket_comments::created_at.asc(), ticket_comments::id.asc()))
            .limit(limit)
            .into_boxed();
        if !with_internal {
            query = query.filter(ticket_comments::public.eq(true));
        }
        if let Some(cursor) = after {
            query = query
                .filter(ticket_comments::created_at.ge(cursor.at))
                .filter(
                    ticket_comments::created_at
                        .gt(cursor.at)
                        .or(ticket_comments::id.gt(cursor.id)),
                );
        }
        query
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    /// Whether comment `id` of the account's ticket is public: `None` when the ticket has no
    /// such comment.
    pub async fn is_public(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        ticket_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<bool>> {
        Ok(ticket_comments::table
            .filter(ticket_comments::account_id.eq(account_id))
            .filter(ticket_comments::ticket_id.eq(ticket_id))
            .filter(ticket_comments::id.eq(id))
            .select(ticket_comments::public)
            .first(conn)
            .await
            .optional()?)
    }

    pub(super) fn into_domain(self) -> AppResult<domain::Comment> {
        Ok(domain::Comment {
            id: self.id,
            ticket_id: TicketId::from_uuid(self.ticket_id),
            author: actor(self.author_user_id, self.author_api_key_id)?,
            body: CommentBody::parse(&self.body)
                .map_err(|problem| corrupt("ticket_comments.body", problem))?,
            public: self.public,
            created_at: self.created_at,
        })
    }
}

/// The actor of a row with a user column and an API key column, exactly one of them set.
pub(crate) fn actor(user: Option<Uuid>, api_key: Option<Uuid>) -> AppResult<Actor> {
    match (user, api_key) {
        (Some(user), None) => Ok(Actor::User(UserId::from_uuid(user))),
        (None, Some(key)) => Ok(Actor::ApiKey(ApiKeyId::from_uuid(key))),
        (Some(_), Some(_)) | (None, None) => Err(AppError::internal(anyhow::anyhow!(
            "a row has both or neither of its actor columns"
        ))),
    }
}

/// The two actor columns of `actor`.
pub(crate) fn actor_columns(actor: Actor) -> (Option<Uuid>, Option<Uuid>) {
    match actor {
        Actor::User(user) => (Some(user.as_uuid()), None),
        Actor::ApiKey(key) => (None, Some(key.as_uuid())),
    }
}
