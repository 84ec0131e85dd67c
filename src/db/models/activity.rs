//! The `ticket_activities` table: the audit trail. A change that notifies someone (a ticket
//! solved) writes its notification in the record's own statement.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::NewNotification;
use super::comment::actor;
use crate::db::KeepPrepared;
use crate::db::schema::ticket_activities;
use crate::domain::{self, FieldChange, FieldChanges, PageCursor, TicketId};
use crate::errors::{AppError, AppResult};

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = ticket_activities, check_for_backend(diesel::pg::Pg))]
pub struct ActivityRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub ticket_id: Uuid,
    pub actor_user_id: Option<Uuid>,
    pub actor_api_key_id: Option<Uuid>,
    pub action: String,
    pub changes: Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = ticket_activities)]
pub struct NewActivity<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub ticket_id: Uuid,
    pub actor_user_id: Option<Uuid>,
    pub actor_api_key_id: Option<Uuid>,
    pub action: &'a str,
    pub changes: Value,
}

impl NewActivity<'_> {
    /// Inserts the record and, when there is one, the notification the change causes (the
    /// outbox row, `notification`) in the same statement: a data-modifying CTE, so the
    /// notification costs no round trip and exists exactly when the recorded change does.
    pub async fn insert_notifying(
        &self,
        conn: &mut AsyncPgConnection,
        notification: Option<&NewNotification<'_>>,
    ) -> QueryResult<usize> {
        let Some(notification) = notification else {
            return self.insert(conn).await;
        };
        KeepPrepared(
            diesel::sql_query(
                "WITH notified AS (INSERT INTO notifications \
                 (id, account_id, kind, recipient_user_id, recipient_address, data, message_id, \
                 ticket_id) VALUES ($8, $2, $9, $10, $11, $12, $13, $3)) \
                 INSERT INTO ticket_activities \
                 (id, account_id, ticket_id, actor_user_id, actor_api_key_id, action, changes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind::<sql_types::Uuid, _>(self.id)
            .bind::<sql_types::Uuid, _>(self.account_id)
            .bind::<sql_types::Uuid, _>(self.ticket_id)
            .bind::<sql_types::Nullable<sql_types::Uuid>, _>(self.actor_user_id)
            .bind::<sql_types::Nullable<sql_types::Uuid>, _>(self.actor_api_key_id)
            .bind::<sql_types::Text, _>(self.action)
            .bind::<sql_types::Jsonb, _>(&self.changes)
            .bind::<sql_types::Uuid, _>(notification.id)
            .bind::<sql_types::Text, _>(notification.kind.as_str())
            .bind::<sql_types::Uuid, _>(notification.recipient_user_id)
            .bind::<sql_types::Text, _>(notification.recipient_address)
            .bind::<sql_types::Jsonb, _>(&notification.data)
            .bind::<sql_types::Text, _>(&notification.message_id),
        )
        .execute(conn)
        .await
    }

    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<usize> {
        KeepPrepared(diesel::insert_into(ticket_activities::table).values(self))
            .execute(conn)
            .await
    }
}

/// `{"field": {"old": ..., "new": ...}}`, nulls for absent values.
pub fn changes_to_json(changes: &FieldChanges) -> Value {
    Value::Object(
        changes
            .iter()
            .map(|(field, change)| (field.clone(), json!({"old": change.old, "new": change.new})))
            .collect::<Map<_, _>>(),
    )
}

impl ActivityRow {
    /// Up to `limit` records of a ticket, newest first, after `after`.
    pub async fn list_for_ticket(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        ticket_id: Uuid,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<domain::TicketActivity>> {
        let mut query = ticket_activities::table
            .filter(ticket_activities::account_id.eq(account_id))
            .filter(ticket_activities::ticket_id.eq(ticket_id))
            .select(Self::as_select())
            .order((
                ticket_activities::created_at.desc(),
                ticket_activities::id.desc(),
            ))
            .limit(limit)
            .into_boxed();
        if let Some(cursor) = after {
            query = query
                .filter(ticket_activities::created_at.le(cursor.at))
                .filter(
                    ticket_activities::created_at
                        .lt(cursor.at)
                        .or(ticket_activities::id.lt(cursor.id)),
                );
        }
        query
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    fn into_domain(self) -> AppResult<domain::TicketActivity> {
        let corrupt = || AppError::internal(anyhow::anyhow!("malformed ticket_activities.changes"));
        let Value::Object(fields) = self.changes else {
            return Err(corrupt());
        };
        let text = |value: Option<&Value>| match value {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
        };
        let changes = fields
            .into_iter()
            .map(|(field, change)| {
                (
                    field,
                    FieldChange {
                        old: text(change.get("old")),
                        new: text(change.get("new")),
                    },
                )
            })
            .collect();
        Ok(domain::TicketActivity {
            id: self.id,
            ticket_id: TicketId::from_uuid(self.ticket_id),
            actor: actor(self.actor_user_id, self.actor_api_key_id)?,
            action: self.action,
            changes,
            created_at: self.created_at,
        })
    }
}
