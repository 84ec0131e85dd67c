//! The `reconciliation_findings` table: what a reconciliation run found, one row per difference.
//! A repaired one is inserted in the transaction of the charge's transition, so a difference is
//! repaired and recorded exactly once; admins list their account's findings, newest first.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use super::corrupt;
use crate::db::schema::reconciliation_findings;
use crate::domain::{AccountId, FindingKind, PageCursor};
use crate::errors::AppResult;

#[derive(Debug, Insertable)]
#[diesel(table_name = reconciliation_findings)]
pub struct NewReconciliationFinding<'a> {
    pub id: Uuid,
    pub run_id: Uuid,
    pub kind: &'a str,
    pub account_id: Option<Uuid>,
    pub charge_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub provider_object_id: Option<&'a str>,
    pub details: Value,
    pub action: &'a str,
    pub repaired: bool,
}

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = reconciliation_findings, check_for_backend(diesel::pg::Pg))]
pub struct ReconciliationFindingRow {
    pub id: Uuid,
    pub run_id: Uuid,
    pub kind: String,
    pub account_id: Option<Uuid>,
    pub charge_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub provider_object_id: Option<String>,
    pub details: Value,
    pub action: String,
    pub repaired: bool,
    pub created_at: DateTime<Utc>,
}

/// A finding as the service reports it.
#[derive(Clone, Debug)]
pub struct StoredFinding {
    pub id: Uuid,
    pub run_id: Uuid,
    pub kind: FindingKind,
    pub charge_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub provider_object_id: Option<String>,
    pub details: Value,
    pub action: String,
    pub repaired: bool,
    pub created_at: DateTime<Utc>,
}

impl StoredFinding {
    /// The keyset position of the finding in a newest-first list.
    pub fn cursor(&self) -> PageCursor {
        PageCursor::at(self.created_at, self.id)
    }
}

impl NewReconciliationFinding<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> AppResult<()> {
        diesel::insert_into(reconciliation_findings::table)
            .values(self)
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl ReconciliationFindingRow {
    /// Up to `limit` findings of the account, newest first, after `after`; of one run only when
    /// `run_id` is given.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        run_id: Option<Uuid>,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<StoredFinding>> {
        let mut query = reconciliation_findings::table
            .filter(reconciliation_findings::account_id.eq(account_id.as_uuid()))
            .select(Self::as_select())
            .order((
                reconciliation_findings::created_at.desc(),
                reconciliation_findings::id.desc(),
            ))
            .limit(limit)
            .into_boxed();
        if let Some(run_id) = run_id {
            query = query.filter(reconciliation_findings::run_id.eq(run_id));
        }
        if let Some(cursor) = after {
            query = query.filter(
                reconciliation_findings::created_at.lt(cursor.at).or(
                    reconciliation_findings::created_at
                        .eq(cursor.at)
                        .and(reconciliation_findings::id.lt(cursor.id)),
                ),
            );
        }
        query
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    /// Whether an earlier run already reported this difference (the same kind on the same
    /// charge, refund or provider object) without repairing it: a report is made once, not
    /// every run.
    pub async fn already_reported(
        conn: &mut AsyncPgConnection,
        kind: FindingKind,
        charge_id: Option<Uuid>,
        refund_id: Option<Uuid>,
        provider_object_id: Option<&str>,
    ) -> AppResult<bool> {
        let mut query = reconciliation_findings::table
            .filter(reconciliation_findings::kind.eq(kind.as_str()))
            .filter(reconciliation_findings::repaired.eq(false))
            .into_boxed();
        query = match charge_id {
            Some(id) => query.filter(reconciliation_findings::charge_id.eq(id)),
            None => query.filter(reconciliation_findings::charge_id.is_null()),
        };
        query = match refund_id {
            Some(id) => query.filter(reconciliation_findings::refund_id.eq(id)),
            None => query.filter(reconciliation_findings::refund_id.is_null()),
        };
        query = match provider_object_id {
            Some(id) => query.filter(reconciliation_findings::provider_object_id.eq(id)),
            None => query.filter(reconciliation_findings::provider_object_id.is_null()),
        };
        Ok(diesel::select(diesel::dsl::exists(query))
            .get_result(conn)
            .await?)
    }

    /// Every finding of a run, oldest first, in whichever account: what tests and operators
    /// read a run with.
    pub async fn list_for_run(
        conn: &mut AsyncPgConnection,
        run_id: Uuid,
    ) -> AppResult<Vec<StoredFinding>> {
        reconciliation_findings::table
            .filter(reconciliation_findings::run_id.eq(run_id))
            .select(Self::as_select())
            .order((
                reconciliation_findings::created_at.asc(),
                reconciliation_findings::id.asc(),
            ))
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    pub fn into_domain(self) -> AppResult<StoredFinding> {
        Ok(StoredFinding {
            id: self.id,
            run_id: self.run_id,
            kind: FindingKind::parse(&self.kind)
                .map_err(|problem| corrupt("reconciliation_findings.kind", problem))?,
            charge_id: self.charge_id,
            refund_id: self.refund_id,
            provider_object_id: self.provider_object_id,
            details: self.details,
            action: self.action,
            repaired: self.repaired,
            created_at: self.created_at,
        })
    }
}
