//! The `email_events` table: the email provider's webhook deliveries taken, keyed by their
//! `svix-id`, so that a replay changes nothing (docs/notifications.md, "The email provider's
//! webhook"). Taking a delivery is one statement that also suppresses the recipient when the
//! event asks for it.

use diesel::sql_types::{Bool, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::domain::{EmailEvent, EmailEventEffect};
use crate::errors::AppResult;

/// What taking a delivery found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, diesel::QueryableByName)]
pub struct TakenEmailEvent {
    /// An earlier delivery with this `svix-id` was taken: nothing was written.
    #[diesel(sql_type = Bool)]
    pub duplicate: bool,
    /// The event names a notification of ours.
    #[diesel(sql_type = Bool)]
    pub found: bool,
    /// The recipient was newly put on the suppression list.
    #[diesel(sql_type = Bool)]
    pub suppressed: bool,
}

/// Takes a verified delivery in one statement: the delivery recorded by `svix_id` (a replay
/// inserts nothing, however concurrent: the primary key decides), filed under the account of the
/// notification the event names, and, when the event suppresses and this is its first delivery,
/// that notification's recipient put on that account's suppression list (the first cause kept).
pub async fn take(
    conn: &mut AsyncPgConnection,
    svix_id: &str,
    event: &EmailEvent,
) -> AppResult<TakenEmailEvent> {
    let reason = match event.effect {
        EmailEventEffect::Suppress(reason) => Some(reason.as_str()),
        EmailEventEffect::TransientBounce | EmailEventEffect::Ignored => None,
    };
    Ok(KeepPrepared(
        diesel::sql_query(
            "WITH target AS ( \
                 SELECT id, account_id, lower(recipient_address) AS address \
                 FROM notifications WHERE id = $3), \
             event AS ( \
                 INSERT INTO email_events (id, event_type, account_id, notification_id) \
                 SELECT $1, $2, target.account_id, target.id \
                 FROM (SELECT 1) AS delivery LEFT JOIN target ON true \
                 ON CONFLICT (id) DO NOTHING RETURNING id), \
             suppressed AS ( \
                 INSERT INTO email_suppressions \
                     (id, account_id, address, reason, detail, notification_id) \
                 SELECT $6, target.account_id, target.address, $4::text, $5, target.id \
                 FROM target, event WHERE $4::text IS NOT NULL \
                 ON CONFLICT (account_id, address) DO NOTHING RETURNING 1) \
             SELECT NOT EXISTS (SELECT 1 FROM event) AS duplicate, \
                    EXISTS (SELECT 1 FROM target) AS found, \
                    EXISTS (SELECT 1 FROM suppressed) AS suppressed",
        )
        .bind::<Text, _>(svix_id)
        .bind::<Text, _>(&event.event_type)
        .bind::<Nullable<SqlUuid>, _>(event.notification_id)
        .bind::<Nullable<Text>, _>(reason)
        .bind::<Text, _>(&event.detail)
        .bind::<SqlUuid, _>(Uuid::now_v7()),
    )
    .get_result::<TakenEmailEvent>(conn)
    .await?)
}
