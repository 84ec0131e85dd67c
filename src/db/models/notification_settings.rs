//! A user's notification settings: the notification columns of the `users` table
//! (`comment_notifications`), read and written apart from the identity queries of `user.rs`.
//! The notification workers read the same column inside their claim.

use diesel::prelude::*;
use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::KeepPrepared;
use crate::db::schema::users;
use crate::domain::{AccountId, UserId};
use crate::errors::AppResult;

/// What a user chose to receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotificationSettings {
    /// Emails about the desk's public comments on their tickets.
    pub comment_notifications: bool,
}

/// The changes an update asks for (`None`: unchanged).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotificationSettingsChanges {
    pub comment_notifications: Option<bool>,
}

/// The settings of user `user_id` of `account_id`; `None` when there is no such user.
pub async fn find(
    conn: &mut AsyncPgConnection,
    account_id: AccountId,
    user_id: UserId,
) -> AppResult<Option<NotificationSettings>> {
    Ok(users::table
        .filter(users::account_id.eq(account_id.as_uuid()))
        .filter(users::id.eq(user_id.as_uuid()))
        .select(users::comment_notifications)
        .first::<bool>(conn)
        .await
        .optional()?
        .map(|comment_notifications| NotificationSettings {
            comment_notifications,
        }))
}

/// Applies `changes` in one statement and returns the settings after it; `None` when there is no
/// such user. A value the user already has is written as it is (the row is left unchanged in
/// content: no `updated_at` is touched, the settings are not the user's profile).
pub async fn update(
    conn: &mut AsyncPgConnection,
    account_id: AccountId,
    user_id: UserId,
    changes: NotificationSettingsChanges,
) -> AppResult<Option<NotificationSettings>> {
    let Some(comment_notifications) = changes.comment_notifications else {
        return find(conn, account_id, user_id).await;
    };
    // Written as SQL and kept prepared: diesel caches no UPDATE, and this one is one round trip.
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        comment_notifications: bool,
    }
    let row = KeepPrepared(
        diesel::sql_query(
            "UPDATE users SET comment_notifications = $3 \
             WHERE account_id = $1 AND id = $2 RETURNING comment_notifications",
        )
        .bind::<SqlUuid, _>(account_id.as_uuid())
        .bind::<SqlUuid, _>(user_id.as_uuid())
        .bind::<diesel::sql_types::Bool, _>(comment_notifications),
    )
    .get_result::<Row>(conn)
    .await
    .optional()?;
    Ok(row.map(|row| NotificationSettings {
        comment_notifications: row.comment_notifications,
    }))
}
