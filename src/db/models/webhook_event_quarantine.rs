//! The `webhook_event_quarantines` table: why an event was applied to no charge and filed under
//! no account (its fields name charges that disagree), and what it named, for operators.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::{webhook_event_quarantines, webhook_events};
use crate::errors::AppResult;

#[derive(Debug, Insertable)]
#[diesel(table_name = webhook_event_quarantines)]
pub struct NewWebhookEventQuarantine<'a> {
    pub event_id: &'a str,
    pub reason: &'a str,
    pub named_account_id: Uuid,
    pub named_charge_id: Uuid,
    pub payment_id: &'a str,
    pub payment_account_id: Option<Uuid>,
    pub payment_charge_id: Option<Uuid>,
}

impl NewWebhookEventQuarantine<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> AppResult<()> {
        diesel::insert_into(webhook_event_quarantines::table)
            .values(self)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// A quarantined event as operators list it.
#[derive(Clone, Debug, PartialEq, Eq, Queryable)]
pub struct QuarantinedEvent {
    pub event_id: String,
    pub event_type: String,
    pub reason: String,
    pub named_account_id: Uuid,
    pub named_charge_id: Uuid,
    pub payment_id: String,
    pub payment_account_id: Option<Uuid>,
    pub payment_charge_id: Option<Uuid>,
    pub quarantined_at: DateTime<Utc>,
}

/// The `limit` most recently quarantined events, newest first.
pub async fn most_recent(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> AppResult<Vec<QuarantinedEvent>> {
    Ok(webhook_event_quarantines::table
        .inner_join(webhook_events::table)
        .select((
            webhook_event_quarantines::event_id,
            webhook_events::event_type,
            webhook_event_quarantines::reason,
            webhook_event_quarantines::named_account_id,
            webhook_event_quarantines::named_charge_id,
            webhook_event_quarantines::payment_id,
            webhook_event_quarantines::payment_account_id,
            webhook_event_quarantines::payment_charge_id,
            webhook_event_quarantines::quarantined_at,
        ))
        .order((
            webhook_event_quarantines::quarantined_at.desc(),
            webhook_event_quarantines::event_id.desc(),
        ))
        .limit(limit)
        .load(conn)
        .await?)
}
