//! The `notifications` table: the transactional outbox of email notifications
//! (docs/notifications.md). A change writes its notification in its own transaction (see
//! [`NewNotification`]; CreateTicket folds it into the ticket's statement), and the notification
//! workers take the rows as a queue ([`queue`], the statements the webhook queue also runs).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::KeepPrepared;
use crate::db::queue::{self, AttemptFailed, QueueTable};
use crate::db::schema::notifications;
use crate::domain::{AccountId, NotificationKind, NotificationState, PageCursor, SkipReason};
use crate::errors::AppResult;

/// The `notifications` table as [`queue`] sees it.
pub const NOTIFICATION_QUEUE: QueueTable = QueueTable {
    table: "notifications",
    id_type: "uuid",
    done_state: "sent",
    done_at: "sent_at",
    claimed_columns: CLAIMED_COLUMNS,
    row_columns: "id, account_id, kind, recipient_user_id, recipient_address, message_id, \
                  ticket_id, state, attempts, next_attempt_at, last_error, outcome, \
                  redrive_count, created_at, sent_at, dead_at, provider_message_id, \
                  skip_reason, skipped_at",
    record_also_sets: RECORD_FOLDS,
};

/// How many of a notification's hand-overs may end with an unknown outcome: the message is sent
/// again after the first (the provider may not have it), never after the second (docs/notifications.md,
/// "A provider that never answers").
pub const MAX_UNCONFIRMED_SENDS: i32 = 2;

/// SQL: 1 when the row's `handed_over_attempt` was left by an earlier attempt whose worker
/// stopped before recording what became of its message (killed, or cut off from PostgreSQL
/// until its lease ran out): a hand-over whose outcome is unknown, counted by whatever next
/// writes the row. An attempt's own hand-over (`= attempts`) is not counted.
macro_rules! left_over {
    () => {
        "(handed_over_attempt IS NOT NULL AND handed_over_attempt < attempts)::int"
    };
}

/// What every record of an attempt's outcome also sets: its own hand-over is settled (the
/// attempt learned what became of the message), and one an earlier attempt left is counted.
const RECORD_FOLDS: &str = concat!(
    ", unconfirmed_sends = unconfirmed_sends + ",
    left_over!(),
    ", handed_over_attempt = NULL"
);

/// What the claim returns: what sending needs, and whether the notification must be skipped
/// instead (`skip`), read in the claim's own statement so that the check costs no round trip:
/// `suppressed` when the account suppresses the recipient's address, `opted_out` when the
/// recipient turned this kind off (only the optional kinds, [`NotificationKind::is_optional`]:
/// `comment_added`), `link_expired` when the message carries a password link whose token has
/// expired by PostgreSQL's clock (the provider was away longer than the link lives: a mail whose
/// link answers "expired" only confuses), NULL to send.
const CLAIMED_COLUMNS: &str = concat!(
    "id, kind, recipient_address, data, message_id, ticket_id, attempts, \
     trace_context, pg_current_xact_id()::text AS claim_transaction, \
     unconfirmed_sends + ",
    left_over!(),
    " AS unconfirmed_sends, \
     CASE WHEN EXISTS (SELECT 1 FROM email_suppressions AS s \
                       WHERE s.account_id = notifications.account_id \
                         AND s.address = lower(notifications.recipient_address)) \
          THEN 'suppressed' \
          WHEN notifications.kind IN ('comment_added') AND EXISTS ( \
                SELECT 1 FROM users AS u \
                WHERE u.account_id = notifications.account_id \
                  AND u.id = notifications.recipient_user_id AND NOT u.comment_notifications) \
          THEN 'opted_out' \
          WHEN notifications.kind IN ('password_reset', 'invitation') AND EXISTS ( \
                SELECT 1 FROM password_tokens AS t \
                WHERE t.notification_id = notifications.id AND t.expires_at <= now()) \
          THEN 'link_expired' END AS skip"
);

/// The states an admin can re-drive a notification from, and what re-driving clears.
const REDRIVABLE_STATES: &str = "'dead', 'skipped'";
/// A re-driven notification is an operator's decision to send it again: an unknown outcome
/// counted before no longer stops it.
const REDRIVE_CLEARS: &str =
    ", skip_reason = NULL, skipped_at = NULL, unconfirmed_sends = 0, handed_over_attempt = NULL";

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
    pub skip_reason: Option<String>,
    pub skipped_at: Option<DateTime<Utc>>,
}

/// A stored notification in domain types, as the admin RPCs show it.
#[derive(Clone, Debug)]
pub struct StoredNotification {
    pub id: Uuid,
    pub kind: NotificationKind,
    pub state: NotificationState,
    pub recipient_user_id: Uuid,
    pub recipient_address: String,
    pub message_id: String,
    pub ticket_id: Option<Uuid>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub skip_reason: Option<SkipReason>,
    pub redrive_count: i32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub dead_at: Option<DateTime<Utc>>,
    pub skipped_at: Option<DateTime<Utc>>,
}

impl StoredNotification {
    /// The keyset position of the notification in a newest-first list.
    pub fn cursor(&self) -> PageCursor {
        PageCursor::at(self.created_at, self.id)
    }
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
    /// Why it must not be sent ([`SkipReason`]'s text), `None` to send it.
    #[diesel(sql_type = Nullable<Text>)]
    pub skip: Option<String>,
    /// The `traceparent` of the span whose transaction queued it (traces on only): its send's
    /// span joins that trace.
    #[diesel(sql_type = Nullable<Text>)]
    pub trace_context: Option<String>,
    /// The id of the claim's transaction, logged with the claim: PostgreSQL's
    /// `pg_xact_status` of it says afterwards whether the claim committed (a notification sent
    /// twice in one recorded attempt is investigated with it, docs/testing.md).
    #[diesel(sql_type = Text)]
    pub claim_transaction: String,
    /// Earlier hand-overs of the message whose outcome is unknown (the provider may have it),
    /// one left by a worker that stopped after handing it over included: at
    /// [`MAX_UNCONFIRMED_SENDS`] it is not sent again.
    #[diesel(sql_type = Integer)]
    pub unconfirmed_sends: i32,
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

    /// Puts the account's dead or skipped notification `id` back in the queue, due now, with a
    /// fresh count of attempts, in one statement conditioned on the state ([`queue::redrive`];
    /// the skip's reason and time are cleared, `last_error` stays for the record). `None` when
    /// there is no such notification in those states (another state, another account, none).
    pub async fn redrive(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        id: Uuid,
    ) -> AppResult<Option<StoredNotification>> {
        queue::optional(
            queue::redrive(
                &NOTIFICATION_QUEUE,
                account_id.as_uuid(),
                &id.to_string(),
                REDRIVABLE_STATES,
                REDRIVE_CLEARS,
            )
            .get_result::<Self>(conn)
            .await,
        )?
        .map(Self::into_domain)
        .transpose()
    }

    /// The notification `id` of `account_id`.
    pub async fn find_for_account(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        id: Uuid,
    ) -> AppResult<Option<StoredNotification>> {
        notifications::table
            .filter(notifications::account_id.eq(account_id.as_uuid()))
            .filter(notifications::id.eq(id))
            .select(Self::as_select())
            .first::<Self>(conn)
            .await
            .optional()?
            .map(Self::into_domain)
            .transpose()
    }

    /// Up to `limit` of the account's notifications in `state` (and of `kind`, when given),
    /// newest first, after `after`.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        state: NotificationState,
        kind: Option<NotificationKind>,
        after: Option<&PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<StoredNotification>> {
        let mut query = notifications::table
            .filter(notifications::account_id.eq(account_id.as_uuid()))
            .filter(notifications::state.eq(state.as_str()))
            .select(Self::as_select())
            .order((notifications::created_at.desc(), notifications::id.desc()))
            .limit(limit)
            .into_boxed();
        if let Some(kind) = kind {
            query = query.filter(notifications::kind.eq(kind.as_str()));
        }
        if let Some(cursor) = after {
            query = query.filter(
                notifications::created_at
                    .lt(cursor.at)
                    .or(notifications::created_at
                        .eq(cursor.at)
                        .and(notifications::id.lt(cursor.id))),
            );
        }
        query
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    fn into_domain(self) -> AppResult<StoredNotification> {
        Ok(StoredNotification {
            id: self.id,
            kind: NotificationKind::parse(&self.kind)
                .map_err(|problem| corrupt("notifications.kind", problem))?,
            state: NotificationState::parse(&self.state)
                .map_err(|problem| corrupt("notifications.state", problem))?,
            recipient_user_id: self.recipient_user_id,
            recipient_address: self.recipient_address,
            message_id: self.message_id,
            ticket_id: self.ticket_id,
            attempts: self.attempts,
            last_error: self.last_error,
            skip_reason: self
                .skip_reason
                .as_deref()
                .map(SkipReason::parse)
                .transpose()
                .map_err(|problem| corrupt("notifications.skip_reason", problem))?,
            redrive_count: self.redrive_count,
            created_at: self.created_at,
            next_attempt_at: self.next_attempt_at,
            sent_at: self.sent_at,
            dead_at: self.dead_at,
            skipped_at: self.skipped_at,
        })
    }
}

/// What [`outbox::record_refused`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, QueryableByName)]
pub struct Refused {
    /// The notification is dead (false: the claim was no longer this attempt's; nothing written).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub dead: bool,
    /// Its address was newly suppressed (false: already suppressed, or nothing written).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub suppressed: bool,
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
        let claim = queue::claim_next(&NOTIFICATION_QUEUE, lease_millis, max_attempts)
            .get_result::<ClaimedNotification>(conn)
            .await;
        queue::claimed(conn, claim).await
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
        if let Some(provider_id) = provider_message_id {
            // Before the state changes, while the row is still this attempt's: a notification
            // read as sent always has the id its provider gave it (stored after, a reader could
            // see it sent without one). A second statement only for a provider that names its
            // messages; an id that does not fit the column is logged and dropped: the message is
            // sent either way.
            let stored = KeepPrepared(
                diesel::sql_query(
                    "UPDATE notifications SET provider_message_id = $2 \
                     WHERE id = $1 AND state = 'received' AND attempts = $3 \
                       AND char_length($2) BETWEEN 1 AND 256",
                )
                .bind::<SqlUuid, _>(id)
                .bind::<Text, _>(provider_id)
                .bind::<diesel::sql_types::Integer, _>(attempt),
            )
            .execute(conn)
            .await;
            if let Err(error) = stored {
                tracing::warn!(notification_id = %id, %error,
                    "the provider's id of a sent notification was not stored");
            }
        }
        let sent =
            queue::mark_done(conn, &NOTIFICATION_QUEUE, &id.to_string(), attempt, "sent").await?;
        Ok(sent)
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

    /// Ends the claimed notification unsent, on purpose, with `reason`, if attempt `attempt`
    /// still holds it.
    pub async fn mark_skipped(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        attempt: i32,
        reason: SkipReason,
    ) -> AppResult<bool> {
        let updated = KeepPrepared(
            diesel::sql_query(
                "UPDATE notifications \
                 SET state = 'skipped', skip_reason = $3, skipped_at = now(), \
                     lease_expires_at = NULL, unconfirmed_sends = unconfirmed_sends + \
                     (handed_over_attempt IS NOT NULL AND handed_over_attempt < attempts)::int, \
                     handed_over_attempt = NULL \
                 WHERE id = $1 AND state = 'received' AND attempts = $2",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<Integer, _>(attempt)
            .bind::<Text, _>(reason.as_str()),
        )
        .execute(conn)
        .await?;
        Ok(updated == 1)
    }

    /// Records that the provider refused the recipient for good: the notification dead with
    /// `error` (as [`record_dead`]) and its address on the account's suppression list
    /// (`smtp_permanent_failure`, the first cause kept), in one statement, if attempt `attempt`
    /// still holds it.
    pub async fn record_refused(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        attempt: i32,
        error: &str,
    ) -> AppResult<Refused> {
        Ok(KeepPrepared(
            diesel::sql_query(
                "WITH dead AS ( \
                     UPDATE notifications \
                     SET state = 'dead', dead_at = now(), lease_expires_at = NULL, \
                         last_error = $3, unconfirmed_sends = unconfirmed_sends + \
                         (handed_over_attempt IS NOT NULL AND handed_over_attempt < attempts)::int, \
                         handed_over_attempt = NULL \
                     WHERE id = $1 AND state = 'received' AND attempts = $2 \
                     RETURNING id, account_id, lower(recipient_address) AS address), \
                 suppressed AS ( \
                     INSERT INTO email_suppressions \
                         (id, account_id, address, reason, detail, notification_id) \
                     SELECT $4, account_id, address, 'smtp_permanent_failure', $3, id FROM dead \
                     ON CONFLICT (account_id, address) DO NOTHING \
                     RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM dead) AS dead, \
                        EXISTS (SELECT 1 FROM suppressed) AS suppressed",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<Integer, _>(attempt)
            .bind::<Text, _>(error)
            .bind::<SqlUuid, _>(Uuid::now_v7()),
        )
        .get_result::<Refused>(conn)
        .await?)
    }

    /// Records, before the message's body goes to the provider, that attempt `attempt` hands it
    /// over: from here until the attempt records what the provider answered, its outcome is
    /// unknown (the provider may deliver it), and PostgreSQL says so to whoever claims the
    /// notification next. One statement, matched to the claim's attempt as every record is; it
    /// also counts a hand-over an earlier attempt left unsettled, and extends the lease to
    /// `lease_millis` from now (never shortening it) to cover the wait for the answer. False,
    /// and the body must not go, when the attempt no longer holds the notification or its
    /// earlier hand-overs of unknown outcome reached [`MAX_UNCONFIRMED_SENDS`].
    pub async fn hand_over(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        attempt: i32,
        lease_millis: i64,
    ) -> AppResult<bool> {
        let updated = KeepPrepared(
            diesel::sql_query(concat!(
                "UPDATE notifications \
                 SET unconfirmed_sends = unconfirmed_sends + ",
                left_over!(),
                ", handed_over_attempt = attempts, \
                     lease_expires_at = GREATEST(lease_expires_at, \
                         now() + make_interval(secs => $3::double precision / 1000)) \
                 WHERE id = $1 AND state = 'received' AND attempts = $2 \
                   AND unconfirmed_sends + ",
                left_over!(),
                " < $4"
            ))
            .bind::<SqlUuid, _>(id)
            .bind::<Integer, _>(attempt)
            .bind::<diesel::sql_types::BigInt, _>(lease_millis)
            .bind::<Integer, _>(MAX_UNCONFIRMED_SENDS),
        )
        .execute(conn)
        .await?;
        Ok(updated == 1)
    }

    /// Records that attempt `attempt`, which handed the message over ([`hand_over`]), never
    /// learned what became of it (no answer within the bound, the connection lost after the
    /// body went, the instance stopping): one more unknown outcome, with `error`. Due again after
    /// `retry_in_millis` (sent once more, under the same `Message-ID` and idempotency key), or
    /// dead when that makes [`MAX_UNCONFIRMED_SENDS`] (never sent a third time) or it was
    /// attempt `max_attempts`. Nothing is written when the attempt no longer holds the
    /// notification.
    pub async fn record_unknown(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        attempt: i32,
        error: &str,
        retry_in_millis: i64,
        max_attempts: i32,
    ) -> AppResult<AttemptFailed> {
        #[derive(QueryableByName)]
        struct State {
            #[diesel(sql_type = Text)]
            state: String,
        }
        let row = queue::optional(
            KeepPrepared(
                diesel::sql_query(
                    "UPDATE notifications \
                     SET lease_expires_at = NULL, handed_over_attempt = NULL, \
                         unconfirmed_sends = unconfirmed_sends + 1, \
                         last_error = CASE WHEN unconfirmed_sends + 1 >= $6 \
                             THEN $3 || ' (a second send whose outcome is unknown: not sent again)' \
                             ELSE $3 END, \
                         state = CASE WHEN unconfirmed_sends + 1 >= $6 OR attempts >= $5 \
                             THEN 'dead' ELSE 'received' END, \
                         dead_at = CASE WHEN unconfirmed_sends + 1 >= $6 OR attempts >= $5 \
                             THEN now() END, \
                         next_attempt_at = CASE WHEN unconfirmed_sends + 1 >= $6 OR attempts >= $5 \
                             THEN next_attempt_at \
                             ELSE now() + make_interval(secs => $4::double precision / 1000) END \
                     WHERE id = $1 AND state = 'received' AND attempts = $2 \
                       AND handed_over_attempt = $2 \
                     RETURNING state",
                )
                .bind::<SqlUuid, _>(id)
                .bind::<Integer, _>(attempt)
                .bind::<Text, _>(error)
                .bind::<diesel::sql_types::BigInt, _>(retry_in_millis)
                .bind::<Integer, _>(max_attempts)
                .bind::<Integer, _>(MAX_UNCONFIRMED_SENDS),
            )
            .get_result::<State>(conn)
            .await,
        )?;
        Ok(match row {
            Some(State { state }) if state == "dead" => AttemptFailed::Dead,
            Some(_) => AttemptFailed::Retrying,
            None => AttemptFailed::LeaseLost,
        })
    }

    /// Gives a claimed notification back untried ([`queue::release`]).
    pub async fn release(conn: &mut AsyncPgConnection, id: Uuid, attempt: i32) -> AppResult<()> {
        queue::release(conn, &NOTIFICATION_QUEUE, &id.to_string(), attempt).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_lets_recipients_opt_out_of_exactly_the_optional_kinds() {
        for kind in [
            NotificationKind::TicketCreated,
            NotificationKind::CommentAdded,
            NotificationKind::TicketSolved,
        ] {
            let listed = CLAIMED_COLUMNS.contains(&format!("'{}'", kind.as_str()));
            assert_eq!(listed, kind.is_optional(), "{kind}");
        }
    }
}
