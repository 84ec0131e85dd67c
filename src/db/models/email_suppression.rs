//! The `email_suppressions` table: the addresses an account sends no notification to
//! (docs/notifications.md, "Suppression"). Rows are written by the notification workers (a
//! permanent refusal, `notification::outbox::record_refused`) and by the email provider's
//! webhook (`email_event`); the admin RPCs list and delete them. The workers read them inside
//! their claim (`notification::NOTIFICATION_QUEUE`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::schema::email_suppressions;
use crate::domain::{AccountId, Email, PageCursor, SuppressionReason};
use crate::errors::AppResult;

/// A row as read.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = email_suppressions, check_for_backend(diesel::pg::Pg))]
pub struct SuppressionRow {
    pub id: Uuid,
    pub address: String,
    pub reason: String,
    pub detail: String,
    pub notification_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// A suppressed address in domain types.
#[derive(Clone, Debug)]
pub struct StoredSuppression {
    pub id: Uuid,
    pub address: String,
    pub reason: SuppressionReason,
    pub detail: String,
    pub notification_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl StoredSuppression {
    /// The keyset position of the suppression in a newest-first list.
    pub fn cursor(&self) -> PageCursor {
        PageCursor::at(self.created_at, self.id)
    }
}

impl SuppressionRow {
    /// Up to `limit` of the account's suppressions, newest first, after `after`.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        after: Option<&PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<StoredSuppression>> {
        let mut query = email_suppressions::table
            .filter(email_suppressions::account_id.eq(account_id.as_uuid()))
            .select(Self::as_select())
            .order((
                email_suppressions::created_at.desc(),
                email_suppressions::id.desc(),
            ))
            .limit(limit)
            .into_boxed();
        if let Some(cursor) = after {
            query = query.filter(
                email_suppressions::created_at
                    .lt(cursor.at)
                    .or(email_suppressions::created_at
                        .eq(cursor.at)
                        .and(email_suppressions::id.lt(cursor.id))),
            );
        }
        query
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    /// Takes `address` off the account's list; false when the account did not suppress it.
    pub async fn delete(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        address: &Email,
    ) -> AppResult<bool> {
        let deleted = diesel::delete(
            email_suppressions::table
                .filter(email_suppressions::account_id.eq(account_id.as_uuid()))
                .filter(email_suppressions::address.eq(address.as_str())),
        )
        .execute(conn)
        .await?;
        Ok(deleted == 1)
    }

    fn into_domain(self) -> AppResult<StoredSuppression> {
        Ok(StoredSuppression {
            id: self.id,
            address: self.address,
            reason: SuppressionReason::parse(&self.reason)
                .map_err(|problem| corrupt("email_suppressions.reason", problem))?,
            detail: self.detail,
            notification_id: self.notification_id,
            created_at: self.created_at,
        })
    }
}
