//! The `charges` table. Every query returns domain [`Charge`]s; the phases of a charge (inserted
//! pending, then finished) lock the row with `FOR UPDATE`, and the completer takes pending rows
//! with `FOR UPDATE SKIP LOCKED` so that two instances never work on the same charge.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::KeepPrepared;
use crate::db::schema::charges;
use crate::domain::{
    AccountId, Charge, ChargeId, ChargeStatus, Currency, FailureKind, Money, PageCursor, TicketId,
    UserId,
};
use crate::errors::AppResult;

#[derive(Clone, Debug, Queryable, Selectable, serde::Deserialize)]
#[diesel(table_name = charges, check_for_backend(diesel::pg::Pg))]
pub struct ChargeRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub customer_id: Uuid,
    pub ticket_id: Option<Uuid>,
    pub amount_minor: i64,
    pub amount_refunded_minor: i64,
    pub currency: String,
    pub payment_method: String,
    pub status: String,
    pub provider_payment_id: Option<String>,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub failure_kind: Option<String>,
    pub failure_param: Option<String>,
    pub attention_reason: Option<String>,
    pub attention_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = charges)]
pub struct NewCharge<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub customer_id: Uuid,
    pub ticket_id: Option<Uuid>,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub payment_method: &'a str,
    pub status: &'a str,
}

/// The columns a transition writes: all of its mutable state and bumped version (the update time
/// is PostgreSQL's, set beside it).
#[derive(Debug, AsChangeset)]
#[diesel(table_name = charges, treat_none_as_null = true)]
struct ChargeState<'a> {
    amount_refunded_minor: i64,
    status: &'a str,
    provider_payment_id: Option<&'a str>,
    failure_kind: Option<&'a str>,
    failure_code: Option<&'a str>,
    decline_code: Option<&'a str>,
    failure_param: Option<&'a str>,
    version: i64,
    // Every transition leaves PENDING or starts from a final state: no send is in flight after
    // it, so the send lease ends with it.
    send_lease_token: Option<Uuid>,
    send_lease_until: Option<DateTime<Utc>>,
}

/// A charge with the times the service reports.
#[derive(Clone, Debug)]
pub struct StoredCharge {
    pub charge: Charge,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when the completer (or reconciliation) could not settle it and an operator should look.
    pub attention: Option<Attention>,
}

/// Why a charge or refund waits for an operator, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attention {
    pub reason: String,
    pub since: DateTime<Utc>,
}

impl StoredCharge {
    /// The keyset position of the charge in a newest-first list.
    pub fn cursor(&self) -> PageCursor {
        PageCursor::at(self.created_at, self.charge.id.as_uuid())
    }
}

impl NewCharge<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> AppResult<StoredCharge> {
        KeepPrepared(
            diesel::insert_into(charges::table)
                .values(self)
                .returning(ChargeRow::as_returning()),
        )
        .get_result::<ChargeRow>(conn)
        .await?
        .into_domain()
    }
}

/// Which charges a list returns.
#[derive(Clone, Debug, Default)]
pub struct ChargeListFilter {
    pub customer_id: Option<UserId>,
    pub status: Option<ChargeStatus>,
    pub ticket_id: Option<TicketId>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Only those marked for an operator's attention.
    pub needs_attention: bool,
}

impl ChargeRow {
    /// The charge `id` of `account_id`; with `customer`, only if it is that customer's.
    pub async fn find(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        customer: Option<UserId>,
        id: ChargeId,
    ) -> AppResult<Option<StoredCharge>> {
        let mut query = charges::table
            .filter(charges::account_id.eq(account_id.as_uuid()))
            .filter(charges::id.eq(id.as_uuid()))
            .select(Self::as_select())
            .into_boxed();
        if let Some(customer) = customer {
            query = query.filter(charges::customer_id.eq(customer.as_uuid()));
        }
        query
            .first::<Self>(conn)
            .await
            .optional()?
            .map(Self::into_domain)
            .transpose()
    }

    /// The charge `id` of `account_id`, locked until the transaction ends: every decision on a
    /// charge is taken on the state it locked. A lock not granted within the transaction's
    /// `lock_timeout` is ABORTED `IDEMPOTENCY_KEY_IN_USE` (someone is working on it; retry).
    pub async fn lock(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        id: ChargeId,
    ) -> AppResult<Option<StoredCharge>> {
        charges::table
            .filter(charges::account_id.eq(account_id.as_uuid()))
            .filter(charges::id.eq(id.as_uuid()))
            .select(Self::as_select())
            .for_update()
            .first::<Self>(conn)
            .await
            .optional()?
            .map(Self::into_domain)
            .transpose()
    }

    /// The charge a provider payment belongs to, in whichever account, locked until the
    /// transaction ends: by our id (the payment's `metadata[charge_id]`) when the provider gave
    /// it, else by the payment id recorded on the charge. What webhook events are applied to.
    pub async fn lock_for_payment(
        conn: &mut AsyncPgConnection,
        charge_id: Option<Uuid>,
        provider_payment_id: &str,
    ) -> AppResult<Option<StoredCharge>> {
        let locked = match charge_id {
            Some(id) => {
                charges::table
                    .filter(charges::id.eq(id))
                    .select(Self::as_select())
                    .for_update()
                    .first::<Self>(conn)
                    .await
            }
            None => {
                charges::table
                    .filter(charges::provider_payment_id.eq(provider_payment_id))
                    .select(Self::as_select())
                    .for_update()
                    .first::<Self>(conn)
                    .await
            }
        };
        locked.optional()?.map(Self::into_domain).transpose()
    }

    /// The account of charge `id`, in whichever account it is; `None` when it is not ours.
    pub async fn account_of(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<Option<Uuid>> {
        Ok(charges::table
            .filter(charges::id.eq(id))
            .select(charges::account_id)
            .first(conn)
            .await
            .optional()?)
    }

    /// Pending charges and refunds marked for an operator's attention, in every account.
    pub async fn count_needing_attention(conn: &mut AsyncPgConnection) -> AppResult<u64> {
        use crate::db::schema::refunds;
        let charges: i64 = charges::table
            .filter(charges::status.eq(ChargeStatus::Pending.as_str()))
            .filter(charges::attention_reason.is_not_null())
            .count()
            .get_result(conn)
            .await?;
        let refunds: i64 = refunds::table
            .filter(refunds::status.eq("pending"))
            .filter(refunds::attention_reason.is_not_null())
            .count()
            .get_result(conn)
            .await?;
        Ok(u64::try_from(charges + refunds).unwrap_or_default())
    }

    /// Up to `limit` charges of every account created from `from` until `until`, oldest first,
    /// after `after`: a reconciliation run's share of the table, read in short queries.
    pub async fn list_created_between(
        conn: &mut AsyncPgConnection,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<StoredCharge>> {
        let mut query = charges::table
            .filter(charges::created_at.ge(from))
            .filter(charges::created_at.lt(until))
            .select(Self::as_select())
            .order((charges::created_at.asc(), charges::id.asc()))
            .limit(limit)
            .into_boxed();
        if let Some(cursor) = after {
            query = query.filter(
                charges::created_at.gt(cursor.at).or(charges::created_at
                    .eq(cursor.at)
                    .and(charges::id.gt(cursor.id))),
            );
        }
        query
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    /// Whether a charge `id` exists in any account.
    pub async fn exists_anywhere(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<bool> {
        Ok(diesel::select(diesel::dsl::exists(
            charges::table.filter(charges::id.eq(id)),
        ))
        .get_result(conn)
        .await?)
    }

    /// Marks the charge for an operator's attention with `reason`, unless it already is (a reason
    /// the completer set is kept). True when it was newly marked.
    pub async fn mark_for_attention(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        id: ChargeId,
        reason: &str,
    ) -> AppResult<bool> {
        let marked = diesel::update(charges::table)
            .filter(charges::account_id.eq(account_id.as_uuid()))
            .filter(charges::id.eq(id.as_uuid()))
            .filter(charges::attention_reason.is_null())
            .set((
                charges::attention_reason.eq(reason),
                charges::attention_since.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        Ok(marked > 0)
    }

    /// Writes the state of `after` over the locked row. Its update time is PostgreSQL's (the
    /// transaction's start), the clock provider readings are timed by ([`crate::db::now`]): a
    /// reading taken before a charge last changed may be older than what changed it.
    pub async fn save(conn: &mut AsyncPgConnection, after: &Charge) -> AppResult<StoredCharge> {
        // `treat_none_as_null`: every column is always set, so the statement has one shape.
        KeepPrepared(
            diesel::update(charges::table)
                .filter(charges::account_id.eq(after.account_id.as_uuid()))
                .filter(charges::id.eq(after.id.as_uuid()))
                .set((
                    ChargeState {
                        amount_refunded_minor: after.amount_refunded.amount_minor(),
                        status: after.status.as_str(),
                        provider_payment_id: after.provider_payment_id.as_deref(),
                        failure_kind: after.failure_kind.map(FailureKind::as_str),
                        failure_code: after.failure_code.as_deref(),
                        decline_code: after.decline_code.as_deref(),
                        failure_param: after.failure_param.as_deref(),
                        version: after.version,
                        send_lease_token: None,
                        send_lease_until: None,
                    },
                    charges::updated_at.eq(diesel::dsl::now),
                    // A mark the completer set on a pending charge it could not settle ends with
                    // the pending state (no transition stays PENDING); a mark reconciliation set
                    // on a settled charge stays.
                    charges::attention_reason.eq(diesel::dsl::sql::<
                        diesel::sql_types::Nullable<diesel::sql_types::Text>,
                    >(
                        "CASE WHEN status = 'pending' THEN NULL ELSE attention_reason END",
                    )),
                    charges::attention_since.eq(diesel::dsl::sql::<
                        diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
                    >(
                        "CASE WHEN status = 'pending' THEN NULL ELSE attention_since END",
                    )),
                ))
                .returning(Self::as_returning()),
        )
        .get_result::<Self>(conn)
        .await?
        .into_domain()
    }

    /// Up to `limit` charges of the account, newest first, after `after`, as `filter` says.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        filter: &ChargeListFilter,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<StoredCharge>> {
        let mut query = charges::table
            .filter(charges::account_id.eq(account_id.as_uuid()))
            .select(Self::as_select())
            .order((charges::created_at.desc(), charges::id.desc()))
            .limit(limit)
            .into_boxed();
        if let Some(customer) = filter.customer_id {
            query = query.filter(charges::customer_id.eq(customer.as_uuid()));
        }
        if let Some(status) = filter.status {
            query = query.filter(charges::status.eq(status.as_str()));
        }
        if let Some(ticket) = filter.ticket_id {
            query = query.filter(charges::ticket_id.eq(ticket.as_uuid()));
        }
        if let Some(from) = filter.created_after {
            query = query.filter(charges::created_at.ge(from));
        }
        if let Some(until) = filter.created_before {
            query = query.filter(charges::created_at.lt(until));
        }
        if filter.needs_attention {
            query = query.filter(charges::attention_reason.is_not_null());
        }
        if let Some(cursor) = after {
            query = query.filter(
                charges::created_at.lt(cursor.at).or(charges::created_at
                    .eq(cursor.at)
                    .and(charges::id.lt(cursor.id))),
            );
        }
        query
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    pub fn into_domain(self) -> AppResult<StoredCharge> {
        let currency = Currency::parse(&self.currency)
            .map_err(|problem| corrupt("charges.currency", problem))?;
        let money =
            |minor, column| Money::new(minor, currency).map_err(|problem| corrupt(column, problem));
        Ok(StoredCharge {
            charge: Charge {
                id: ChargeId::from_uuid(self.id),
                account_id: AccountId::from_uuid(self.account_id),
                customer_id: UserId::from_uuid(self.customer_id),
                ticket_id: self.ticket_id.map(TicketId::from_uuid),
                amount: money(self.amount_minor, "charges.amount_minor")?,
                amount_refunded: money(
                    self.amount_refunded_minor,
                    "charges.amount_refunded_minor",
                )?,
                payment_method: self.payment_method,
                status: ChargeStatus::parse(&self.status)
                    .map_err(|problem| corrupt("charges.status", problem))?,
                provider_payment_id: self.provider_payment_id,
                failure_kind: self
                    .failure_kind
                    .as_deref()
                    .map(FailureKind::parse)
                    .transpose()
                    .map_err(|problem| corrupt("charges.failure_kind", problem))?,
                failure_code: self.failure_code,
                decline_code: self.decline_code,
                failure_param: self.failure_param,
                version: self.version,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
            attention: self
                .attention_reason
                .zip(self.attention_since)
                .map(|(reason, since)| Attention { reason, since }),
        })
    }
}
