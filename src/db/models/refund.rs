//! The `refunds` table: a refund is inserted pending, its amount already reserved on the charge,
//! before the provider is asked; the answer is recorded over it under a row lock.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::KeepPrepared;
use crate::db::schema::refunds;
use crate::domain::{AccountId, ChargeId, Currency, Money, RefundId, RefundStatus};
use crate::errors::AppResult;

#[derive(Clone, Debug, Queryable, Selectable, serde::Deserialize)]
#[diesel(table_name = refunds, check_for_backend(diesel::pg::Pg))]
pub struct RefundRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub charge_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    pub provider_refund_id: Option<String>,
    pub failure_code: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = refunds)]
pub struct NewRefund<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub charge_id: Uuid,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub status: &'a str,
}

/// A refund as the service sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRefund {
    pub id: RefundId,
    pub account_id: AccountId,
    pub charge_id: ChargeId,
    pub amount: Money,
    pub status: RefundStatus,
    pub provider_refund_id: Option<String>,
    pub failure_code: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the refund last changed (created, or settled), by PostgreSQL's clock.
    pub updated_at: DateTime<Utc>,
}

impl NewRefund<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> AppResult<StoredRefund> {
        KeepPrepared(
            diesel::insert_into(refunds::table)
                .values(self)
                .returning(RefundRow::as_returning()),
        )
        .get_result::<RefundRow>(conn)
        .await?
        .into_domain()
    }
}

impl RefundRow {
    /// The refund `id` of `account_id`.
    pub async fn find(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        id: RefundId,
    ) -> AppResult<Option<StoredRefund>> {
        refunds::table
            .filter(refunds::account_id.eq(account_id.as_uuid()))
            .filter(refunds::id.eq(id.as_uuid()))
            .select(Self::as_select())
            .first::<Self>(conn)
            .await
            .optional()?
            .map(Self::into_domain)
            .transpose()
    }

    /// The refund `id`, locked until the transaction ends.
    pub async fn lock(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        id: RefundId,
    ) -> AppResult<Option<StoredRefund>> {
        refunds::table
            .filter(refunds::account_id.eq(account_id.as_uuid()))
            .filter(refunds::id.eq(id.as_uuid()))
            .select(Self::as_select())
            .for_update()
            .first::<Self>(conn)
            .await
            .optional()?
            .map(Self::into_domain)
            .transpose()
    }

    /// Every refund of a charge, oldest first.
    /// Up to `limit` refunds of every account created from `from` until `until`, oldest first,
    /// after `after` (its creation time and id): a reconciliation run's share of the table.
    pub async fn list_created_between(
        conn: &mut AsyncPgConnection,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> AppResult<Vec<StoredRefund>> {
        let mut query = refunds::table
            .filter(refunds::created_at.ge(from))
            .filter(refunds::created_at.lt(until))
            .select(Self::as_select())
            .order((refunds::created_at.asc(), refunds::id.asc()))
            .limit(limit)
            .into_boxed();
        if let Some((at, id)) = after {
            query = query.filter(
                refunds::created_at
                    .gt(at)
                    .or(refunds::created_at.eq(at).and(refunds::id.gt(id))),
            );
        }
        query
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    pub async fn list_for_charge(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        charge_id: ChargeId,
    ) -> AppResult<Vec<StoredRefund>> {
        refunds::table
            .filter(refunds::account_id.eq(account_id.as_uuid()))
            .filter(refunds::charge_id.eq(charge_id.as_uuid()))
            .order((refunds::created_at.asc(), refunds::id.asc()))
            .select(Self::as_select())
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    /// Records the provider's answer over the locked refund.
    pub async fn finish(
        conn: &mut AsyncPgConnection,
        id: RefundId,
        status: RefundStatus,
        provider_refund_id: Option<&str>,
        failure_code: Option<&str>,
    ) -> AppResult<StoredRefund> {
        KeepPrepared(
            diesel::update(refunds::table.filter(refunds::id.eq(id.as_uuid())))
                .set((
                    refunds::status.eq(status.as_str()),
                    refunds::provider_refund_id.eq(provider_refund_id),
                    refunds::failure_code.eq(failure_code),
                    // PostgreSQL's clock, which a reading of the provider is compared with
                    // (`changed_since`): the time this transaction began, after the provider
                    // answered.
                    refunds::updated_at.eq(diesel::dsl::now),
                    // Finished: no send is in flight any more.
                    refunds::send_lease_token.eq(None::<Uuid>),
                    refunds::send_lease_until.eq(None::<DateTime<Utc>>),
                ))
                .returning(Self::as_returning()),
        )
        .get_result::<Self>(conn)
        .await?
        .into_domain()
    }

    pub fn into_domain(self) -> AppResult<StoredRefund> {
        let currency = Currency::parse(&self.currency)
            .map_err(|problem| corrupt("refunds.currency", problem))?;
        Ok(StoredRefund {
            id: RefundId::from_uuid(self.id),
            account_id: AccountId::from_uuid(self.account_id),
            charge_id: ChargeId::from_uuid(self.charge_id),
            amount: Money::new(self.amount_minor, currency)
                .map_err(|problem| corrupt("refunds.amount_minor", problem))?,
            status: RefundStatus::parse(&self.status)
                .map_err(|problem| corrupt("refunds.status", problem))?,
            provider_refund_id: self.provider_refund_id,
            failure_code: self.failure_code,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}
