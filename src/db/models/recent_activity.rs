//! The account's audit feed: the records of `ticket_activities` and `charge_activities` merged
//! newest first, keyset-paginated on (created_at, id). Each trail is read through its
//! `(account_id, created_at DESC, id DESC)` index (migration 000017) up to one page past the
//! cursor, and the two short lists are merged: a page costs two index ranges of at most a page.

use chrono::{DateTime, Utc};
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::domain::PageCursor;
use crate::errors::AppResult;

/// One record of either trail.
#[derive(Clone, Debug, PartialEq, Eq, diesel::QueryableByName)]
pub struct ActivityFeedRow {
    #[diesel(sql_type = sql_types::Uuid)]
    pub id: Uuid,
    /// `ticket` or `charge`.
    #[diesel(sql_type = sql_types::Text)]
    pub subject: String,
    /// The ticket's or the charge's id.
    #[diesel(sql_type = sql_types::Uuid)]
    pub subject_id: Uuid,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Uuid>)]
    pub actor_user_id: Option<Uuid>,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Uuid>)]
    pub actor_api_key_id: Option<Uuid>,
    #[diesel(sql_type = sql_types::Text)]
    pub action: String,
    #[diesel(sql_type = sql_types::Timestamptz)]
    pub created_at: DateTime<Utc>,
}

impl ActivityFeedRow {
    /// Up to `limit` records of the account after `after` (or from the newest), newest first.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        after: Option<&PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<Self>> {
        Ok(KeepPrepared(
            diesel::sql_query(
                "(SELECT id, 'ticket' AS subject, ticket_id AS subject_id, actor_user_id, \
                 actor_api_key_id, action, created_at FROM ticket_activities \
                 WHERE account_id = $1 AND (created_at, id) < \
                 (coalesce($2, 'infinity'::timestamptz), \
                 coalesce($3, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)) \
                 ORDER BY created_at DESC, id DESC LIMIT $4) \
                 UNION ALL \
                 (SELECT id, 'charge', charge_id, actor_user_id, actor_api_key_id, action, \
                 created_at FROM charge_activities \
                 WHERE account_id = $1 AND (created_at, id) < \
                 (coalesce($2, 'infinity'::timestamptz), \
                 coalesce($3, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)) \
                 ORDER BY created_at DESC, id DESC LIMIT $4) \
                 ORDER BY created_at DESC, id DESC LIMIT $4",
            )
            .bind::<sql_types::Uuid, _>(account_id)
            .bind::<sql_types::Nullable<sql_types::Timestamptz>, _>(after.map(|cursor| cursor.at))
            .bind::<sql_types::Nullable<sql_types::Uuid>, _>(after.map(|cursor| cursor.id))
            .bind::<sql_types::BigInt, _>(limit),
        )
        .load(conn)
        .await?)
    }
}
