//! The `charge_activities` table: the audit trail of charges, one row per transition, written in
//! the transition's own transaction.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::db::schema::charge_activities;
use crate::errors::AppResult;

#[derive(Debug, Insertable)]
#[diesel(table_name = charge_activities)]
pub struct NewChargeActivity<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub charge_id: Uuid,
    /// The user or API key that caused it; neither when the completer finished a charge.
    pub actor_user_id: Option<Uuid>,
    pub actor_api_key_id: Option<Uuid>,
    pub action: &'a str,
    pub changes: Value,
    /// The provider's webhook event that caused it; none for the service's own transitions.
    pub webhook_event_id: Option<&'a str>,
    /// The reconciliation run that made it, for a repair of drift from the provider's ledger.
    pub reconciliation_run_id: Option<Uuid>,
}

impl NewChargeActivity<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> AppResult<()> {
        KeepPrepared(diesel::insert_into(charge_activities::table).values(self))
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// The actions of a charge, oldest first: what tests and operators read the trail with.
pub async fn actions_of_charge(
    conn: &mut AsyncPgConnection,
    charge_id: Uuid,
) -> AppResult<Vec<String>> {
    Ok(charge_activities::table
        .filter(charge_activities::charge_id.eq(charge_id))
        .order((
            charge_activities::created_at.asc(),
            charge_activities::id.asc(),
        ))
        .select(charge_activities::action)
        .load(conn)
        .await?)
}
