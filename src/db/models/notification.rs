//! The `notifications` table: the transactional outbox of email notifications
//! (docs/notifications.md). A change writes its notification in its own transaction (see
//! [`NewNotification`]; CreateTicket folds it into the ticket's statement), and the notification
//! workers take the rows as a queue ([`queue`], the statements the webhook queue also runs).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Integer, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::db::queue::{self, AttemptFailed, QueueTable};
use crate::db::schema::notifications;
use crate::domain::NotificationKind;
use crate::errors::AppResult;

/// The `notifications` table as [`queue`] sees it.
pub const NOTIFICATION_QUEUE: QueueTable = QueueTable {
    table: "notifications",
    id_type: "uuid",
    done_state: "sent",
    done_at: "sent_at",
    claimed_columns: "id, kind, recipient_address, data, message_id, ticket_id, attempts",
    row_columns: "id, account_id, kind, recipient_user_id, recipient_address, message_id, \
                  ticket_id, state, attempts, next_attempt_at, last_error, outcome, \
                  redrive_count, created_at, sent_at, dead_at, provider_message_id",
};

/// What [`NotificationRow::send_outcome`] and the operators read of a stored notification (the
/// message's data and the lease stay in the table).
#[derive(Clone, Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = notifications, check_for_backend(diesel::pg::Pg))]
pub struct NotificationRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub kind: String,
    pub recipient_user_id: Uuid,
    pub recipient_address: String,
    pub message_id: String,
    pub ticket_id: Option<Uuid>,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub outcome: Option<String>,
    pub redrive_count: i32,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub dead_at: Option<DateTime<Utc>>,
    /// The email provider's id of the sent message (an API provider's; none over SMTP).
    pub provider_message_id: Option<String>,
}

/// A notification to write, inside the transaction of the change that causes it.
#[derive(Clone, Debug)]
pub struct NewNotification<'a> {
    pub id: Uuid,
    pub kind: NotificationKind,
    pub recipient_user_id: Uuid,
    pub recipient_address: &'a str,
    pub data: serde_json::Value,
    /// `<id@domain>`: fixed now, the same on every attempt.
    pub message_id: String,
}

impl NewNotification<'_> {
    /// The `Message-ID` of notification `id`: `<id@domain>`, where the domain is the host of the
    /// public base URL (a UUID and a host name: nothing a header could be injected through).
    pub fn message_id_for(id: Uuid, domain: &str) -> String {
        format!("<{id}@{domain}>")
    }
}

/// A notification a worker holds under a lease: what sending it needs, from the claim itself.
#[derive(Clone, Debug, QueryableByName)]
pub struct ClaimedNotification {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub recipient_address: String,
    #[diesel(sql_type = Jsonb)]
    pub data: serde_json::Value,
    #[diesel(sql_type = Text)]
    pub message_id: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub ticket_id: Option<Uuid>,
    /// The attempt this claim is (1 for the first): the worker's proof that the lease is its own.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
}

/// The queue as operators watch it (`/metrics`): what waits, and for how long the most overdue
/// has been due.
#[derive(Clone, Copy, Debug, PartialEq, QueryableByName)]
pub struct QueueStats {
    /// Notifications waiting to be sent (`received`), due or not.
    #[diesel(sql_type = BigInt)]
    pub depth: i64,
    /// Seconds since the longest-due notification became due; 0 when none is due.
    #[diesel(sql_type = Double)]
    pub oldest_due_age_seconds: f64,
}

impl NotificationRow {
    /// Every notification of `account_id` about ticket `ticket_id`, oldest first.
    pub async fn list_for_ticket(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        ticket_id: Uuid,
    ) -> AppResult<Vec<Self>> {
        Ok(notifications::table
            .filter(notifications::account_id.eq(account_id))
            .filter(notifications::ticket_id.eq(ticket_id))
            .order((notifications::created_at, notifications::id))
            .select(Self::as_select())
            .load(conn)
            .await?)
    }

    /// Puts the account's dead notification `id` back in the queue ([`queue::redrive_dead`]).
    pub async fn redrive_dead(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<Self>> {
        queue::optional(
            queue::redrive_dead(&NOTIFICATION_QUEUE, account_id, &id.to_string())
                .get_result::<Self>(conn)
                .await,
        )
    }
}

/// The queue's statements on `notifications`, for the notification workers.
pub mod outbox {
    use super::*;

    /// Claims the due notification that has waited longest ([`queue::claim_next`]).
    pub async fn claim_next(
        conn: &mut AsyncPgConnection,
        lease_millis: i64,
        max_attempts: i32,
    ) -> AppResult<Option<ClaimedNotification>> {
        queue::optional(
            queue::claim_next(&NOTIFICATION_QUEUE, lease_millis, max_attempts)
                .get_result::<ClaimedNotification>(conn)
                .await,
        )
    }

    /// Marks dead the notifications whose worker died during their last attempt.
    pub async fn bury_abandoned(
        conn: &mut AsyncPgConnection,
        max_attempts: i32,
    ) -> AppResult<usize> {
        queue::bury_abandoned(conn, &NOTIFICATION_QUEUE, max_attempts).await
    }

    /// Marks the notification sent, if attempt `attempt` still holds it, with the provider's id
    /// of the message when it gave one.
    pub async fn mark_sent(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        attempt: i32,
        provider_message_id: Option<&str>,
    ) -> AppResult<bool> {
        let sent =
            queue::mark_done(conn, &NOTIFICATION_QUEUE, &id.to_string(), attempt, "sent").await?;
        if sent && let Some(provider_id) = provider_message_id {
            // A second statement only for a provider that names its messages; an id that does
            // not fit the column is logged and dropped: the message is sent either way.
            let stored = KeepPrepared(
                diesel::sql_query(
                    "UPDATE notifications SET provider_message_id = $2 \
                     WHERE id = $1 AND char_length($2) BETWEEN 1 AND 256",
                )
                .bind::<SqlUuid, _>(id)
                .bind::<Text, _>(provider_id),
            )
            .execute(conn)
            .await;
            if let Err(error) = stored {
                tracing::warn!(notification_id = %id, %error,
                    "the provider's id of a sent notification was not stored");
            }
        }
        Ok(sent)
    }

    /// How deep the queue is and how overdue its oldest due notification (one index scan of
    /// the received rows).
    pub async fn stats(conn: &mut AsyncPgConnection) -> AppResult<QueueStats> {
        Ok(KeepPrepared(diesel::sql_query(
            "SELECT count(*) AS depth, \
                 COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at) \
                     FILTER (WHERE next_attempt_at <= now()))::double precision, 0) \
                     AS oldest_due_age_seconds \
             FROM notifications WHERE state = 'received'",
        ))
        .get_result(conn)
        .await?)
    }

    /// Records a failed attempt that may succeed later ([`queue::record_failure`]).
    pub async fn record_failure(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        attempt: i32,
        error: &str,
        retry_in_millis: i64,
        max_attempts: i32,
    ) -> AppResult<AttemptFailed> {
        queue::record_failure(
            conn,
            &NOTIFICATION_QUEUE,
            &id.to_string(),
            attempt,
            error,
            retry_in_millis,
            max_attempts,
        )
        .await
    }

    /// Records a permanent failure: dead at once ([`queue::record_dead`]).
    pub async fn record_dead(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        attempt: i32,
        error: &str,
    ) -> AppResult<bool> {
        queue::record_dead(conn, &NOTIFICATION_QUEUE, &id.to_string(), attempt, error).await
    }

    /// Gives a claimed notification back untried ([`queue::release`]).
    pub async fn release(conn: &mut AsyncPgConnection, id: Uuid, attempt: i32) -> AppResult<()> {
        queue::release(conn, &NOTIFICATION_QUEUE, &id.to_string(), attempt).await
    }
}
