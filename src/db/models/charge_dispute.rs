//! The `charge_disputes` table: one row per dispute the provider opened on a charge, keyed by the
//! provider's dispute id, so that every delivery of `charge.dispute.created` records it once.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::db::schema::charge_disputes;
use crate::errors::AppResult;

#[derive(Debug, Insertable)]
#[diesel(table_name = charge_disputes)]
pub struct NewChargeDispute<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub charge_id: Uuid,
    pub provider_dispute_id: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub reason: &'a str,
    pub status: &'a str,
    pub opened_at: DateTime<Utc>,
}

impl NewChargeDispute<'_> {
    /// Records the dispute unless it is already recorded; true when this call recorded it.
    pub async fn insert_once(&self, conn: &mut AsyncPgConnection) -> AppResult<bool> {
        let inserted = KeepPrepared(
            diesel::insert_into(charge_disputes::table)
                .values(self)
                .on_conflict(charge_disputes::provider_dispute_id)
                .do_nothing(),
        )
        .execute(conn)
        .await?;
        Ok(inserted == 1)
    }
}

/// The provider's ids of a charge's disputes, oldest first.
pub async fn disputes_of_charge(
    conn: &mut AsyncPgConnection,
    charge_id: Uuid,
) -> AppResult<Vec<String>> {
    Ok(charge_disputes::table
        .filter(charge_disputes::charge_id.eq(charge_id))
        .order((charge_disputes::opened_at.asc(), charge_disputes::id.asc()))
        .select(charge_disputes::provider_dispute_id)
        .load(conn)
        .await?)
}
