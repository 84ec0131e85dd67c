//! The `notifications` table: the transactional outbox of email notifications
//! (docs/notifications.md). A change writes its notification in its own transaction (see
//! [`NewNotification`]; CreateTicket folds it into the ticket's statement), and the notification
//! workers take the rows as a queue ([`queue`], the statements the webhook queue also runs).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Jsonb, Nullable, Text, Uuid as SqlUuid};
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
                  redrive_count, created_at, sent_at, dead_at",
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

/// A charge's receipt, to its customer, written in the transaction that records the charge's
/// success: `$1` id, `$2` Message-ID, `$3` the charge. Nothing when the
/// charge is not paid; nothing either when its receipt exists (`dedupe_key`), so the completer
/// and a webhook that both see the success write one.
const CHARGE_RECEIPT: &str = "INSERT INTO notifications \
         (id, account_id, kind, recipient_user_id, recipient_address, data, message_id, dedupe_key) \
     SELECT $1, c.account_id, 'charge_receipt', c.customer_id, u.email, \
         jsonb_build_object('charge_id', c.id::text, 'amount_minor', c.amount_minor, \
             'currency', c.currency), \
         $2, 'charge_receipt:' || c.id::text \
     FROM charges c JOIN users u ON u.account_id = c.account_id AND u.id = c.customer_id \
     WHERE c.id = $3 AND c.status IN ('succeeded', 'partially_refunded', 'refunded') \
     ON CONFLICT (dedupe_key) DO NOTHING";

/// A refund's notice, to the charge's customer: `$1` id, `$2` Message-ID, `$3` the refund.
/// Nothing unless the refund succeeded, and once per refund.
const REFUND_NOTICE: &str = "INSERT INTO notifications \
         (id, account_id, kind, recipient_user_id, recipient_address, data, message_id, dedupe_key) \
     SELECT $1, r.account_id, 'refund_notice', c.customer_id, u.email, \
         jsonb_build_object('charge_id', c.id::text, 'refund_id', r.id::text, \
             'amount_minor', r.amount_minor, 'currency', r.currency), \
         $2, 'refund_notice:' || r.id::text \
     FROM refunds r \
     JOIN charges c ON c.account_id = r.account_id AND c.id = r.charge_id \
     JOIN users u ON u.account_id = c.account_id AND u.id = c.customer_id \
     WHERE r.id = $3 AND r.status = 'succeeded' \
     ON CONFLICT (dedupe_key) DO NOTHING";

/// Receipts and refund notices: one statement each, in the transaction that records the
/// success, at most once per charge or refund whoever records it.
pub mod payment_notices {
    use super::*;

    /// Writes charge `charge_id`'s receipt unless it exists; true when this call wrote it.
    pub async fn charge_receipt(
        conn: &mut AsyncPgConnection,
        charge_id: Uuid,
        message_domain: &str,
    ) -> AppResult<bool> {
        let id = Uuid::now_v7();
        let written = KeepPrepared(
            diesel::sql_query(CHARGE_RECEIPT)
                .bind::<SqlUuid, _>(id)
                .bind::<Text, _>(NewNotification::message_id_for(id, message_domain))
                .bind::<SqlUuid, _>(charge_id),
        )
        .execute(conn)
        .await?;
        Ok(written == 1)
    }

    /// Writes refund `refund_id`'s notice unless it exists; true when this call wrote it.
    pub async fn refund_notice(
        conn: &mut AsyncPgConnection,
        refund_id: Uuid,
        message_domain: &str,
    ) -> AppResult<bool> {
        let id = Uuid::now_v7();
        let written = KeepPrepared(
            diesel::sql_query(REFUND_NOTICE)
                .bind::<SqlUuid, _>(id)
                .bind::<Text, _>(NewNotification::message_id_for(id, message_domain))
                .bind::<SqlUuid, _>(refund_id),
        )
        .execute(conn)
        .await?;
        Ok(written == 1)
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

    /// Marks the notification sent, if attempt `attempt` still holds it.
    pub async fn mark_sent(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        attempt: i32,
    ) -> AppResult<bool> {
        queue::mark_done(conn, &NOTIFICATION_QUEUE, &id.to_string(), attempt, "sent").await
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
