//! The `webhook_events` table: every event the payment provider delivered, stored once by its
//! event id, and the queue the webhook workers take events from (docs/webhooks.md).
//!
//! The receiving side (storing a delivery, the admin RPCs' reads and re-drive) and the queue
//! (claiming due events under a lease, recording an attempt's outcome) share the row but not
//! their queries; each half below is written for its own callers.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bytea, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::KeepPrepared;
use crate::db::schema::webhook_events;
use crate::domain::{
    AccountId, ChargeId, ProviderEvent, TextPageCursor, WebhookEventId, WebhookEventState,
};
use crate::errors::AppResult;

// ----- Receiving and the admin RPCs -----

/// A stored event as the admin RPCs show it (the payload and the lease stay in the table).
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_events, check_for_backend(diesel::pg::Pg))]
pub struct WebhookEventRow {
    pub id: String,
    pub event_type: String,
    pub provider_created_at: DateTime<Utc>,
    pub account_id: Option<Uuid>,
    pub charge_id: Option<Uuid>,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub outcome: Option<String>,
    pub redrive_count: i32,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub dead_at: Option<DateTime<Utc>>,
}

/// A stored event in domain types.
#[derive(Clone, Debug)]
pub struct StoredWebhookEvent {
    pub id: WebhookEventId,
    pub event_type: String,
    pub state: WebhookEventState,
    pub account_id: Option<AccountId>,
    pub charge_id: Option<ChargeId>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub outcome: Option<String>,
    pub redrive_count: i32,
    pub provider_created_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub dead_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
}

impl StoredWebhookEvent {
    /// The keyset position of the event in a newest-first list.
    pub fn cursor(&self) -> TextPageCursor {
        TextPageCursor {
            at: self.received_at,
            id: self.id.as_str().to_owned(),
        }
    }
}

/// What storing a delivery did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The first delivery of the event: a new row, `received`.
    New,
    /// An earlier delivery had stored it: nothing was written.
    Duplicate,
}

/// The one statement that stores a delivery (see [`WebhookEventRow::store_delivery`]), written
/// as a query type of its own rather than `sql_query` so that diesel prepares it once per
/// connection and a delivery costs one round trip, not a prepare and an execute.
struct StoreDelivery<'a> {
    event: &'a ProviderEvent,
    payload: &'a [u8],
}

/// [`StoreDelivery`]'s statement never changes: one cache entry for every delivery.
struct StoreDeliveryStatement;

impl QueryId for StoreDelivery<'_> {
    type QueryId = StoreDeliveryStatement;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for StoreDelivery<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO webhook_events \
             (id, event_type, payload, provider_created_at, account_id, charge_id) SELECT ",
        );
        out.push_bind_param::<Text, _>(self.event.id.as_str())?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.event.event_type)?;
        out.push_sql(", ");
        out.push_bind_param::<Bytea, _>(&self.payload)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.event.created_at)?;
        // The charge the metadata names and the charge of the payment the object names: filed
        // under their account when they are one charge (or only one is ours), under none when
        // they differ (the worker quarantines such an event; docs/webhooks.md).
        out.push_sql(
            ", owner.account_id, owner.id FROM (SELECT 1) AS delivery LEFT JOIN LATERAL (\
             SELECT (array_agg(account_id))[1] AS account_id, (array_agg(id))[1] AS id FROM (\
             SELECT account_id, id FROM charges WHERE id = ",
        );
        out.push_bind_param::<Nullable<SqlUuid>, _>(&self.event.charge_id)?;
        out.push_sql(" UNION SELECT account_id, id FROM charges WHERE provider_payment_id = ");
        out.push_bind_param::<Nullable<Text>, _>(&self.event.payment_intent)?;
        out.push_sql(
            ") AS named HAVING count(*) = 1) AS owner ON true ON CONFLICT (id) DO NOTHING",
        );
        Ok(())
    }
}

impl WebhookEventRow {
    /// Stores a verified delivery in one statement: the row keyed by the provider's event id
    /// (a second delivery, however concurrent, inserts nothing: the primary key decides, not a
    /// read before the write), with the account and charge it concerns resolved in the same
    /// statement from what the signed payload names: our charge id from its metadata and the
    /// charge recording the provider's payment intent. NULL when neither is ours, or when they
    /// are two different charges (the event is then quarantined by the worker, never shown to
    /// either account).
    pub async fn store_delivery(
        conn: &mut AsyncPgConnection,
        event: &ProviderEvent,
        payload: &[u8],
    ) -> AppResult<Stored> {
        let inserted = StoreDelivery { event, payload }.execute(conn).await?;
        Ok(if inserted == 0 {
            Stored::Duplicate
        } else {
            Stored::New
        })
    }

    /// The event `id` of `account_id`; events whose account is unknown belong to none.
    pub async fn find_for_account(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        id: &WebhookEventId,
    ) -> AppResult<Option<StoredWebhookEvent>> {
        webhook_events::table
            .filter(webhook_events::account_id.eq(account_id.as_uuid()))
            .filter(webhook_events::id.eq(id.as_str()))
            .select(Self::as_select())
            .first::<Self>(conn)
            .await
            .optional()?
            .map(Self::into_domain)
            .transpose()
    }

    /// Up to `limit` of the account's events in `state`, newest received first, after `after`.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        state: WebhookEventState,
        after: Option<&TextPageCursor>,
        limit: i64,
    ) -> AppResult<Vec<StoredWebhookEvent>> {
        let mut query = webhook_events::table
            .filter(webhook_events::account_id.eq(account_id.as_uuid()))
            .filter(webhook_events::state.eq(state.as_str()))
            .select(Self::as_select())
            .order((
                webhook_events::received_at.desc(),
                webhook_events::id.desc(),
            ))
            .limit(limit)
            .into_boxed();
        if let Some(cursor) = after {
            query = query.filter(
                webhook_events::received_at
                    .lt(cursor.at)
                    .or(webhook_events::received_at
                        .eq(cursor.at)
                        .and(webhook_events::id.lt(cursor.id.clone()))),
            );
        }
        query
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    /// Puts the account's dead event `id` back in the queue, due now, with a fresh count of
    /// attempts, in one statement conditioned on the state (`last_error` stays for the record).
    /// `None` when there is no such dead event (another state, another account, none).
    pub async fn redrive_dead(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        id: &WebhookEventId,
    ) -> AppResult<Option<StoredWebhookEvent>> {
        KeepPrepared(
            diesel::update(
                webhook_events::table
                    .filter(webhook_events::account_id.eq(account_id.as_uuid()))
                    .filter(webhook_events::id.eq(id.as_str()))
                    .filter(webhook_events::state.eq(WebhookEventState::Dead.as_str())),
            )
            .set((
                webhook_events::state.eq(WebhookEventState::Received.as_str()),
                webhook_events::attempts.eq(0),
                webhook_events::next_attempt_at.eq(diesel::dsl::now),
                webhook_events::lease_expires_at.eq(None::<DateTime<Utc>>),
                webhook_events::dead_at.eq(None::<DateTime<Utc>>),
                webhook_events::redrive_count.eq(webhook_events::redrive_count + 1),
            ))
            .returning(Self::as_returning()),
        )
        .get_result::<Self>(conn)
        .await
        .optional()?
        .map(Self::into_domain)
        .transpose()
    }

    fn into_domain(self) -> AppResult<StoredWebhookEvent> {
        Ok(StoredWebhookEvent {
            id: WebhookEventId::parse(&self.id)
                .map_err(|problem| corrupt("webhook_events.id", problem))?,
            event_type: self.event_type,
            state: WebhookEventState::parse(&self.state)
                .map_err(|problem| corrupt("webhook_events.state", problem))?,
            account_id: self.account_id.map(AccountId::from_uuid),
            charge_id: self.charge_id.map(ChargeId::from_uuid),
            attempts: self.attempts,
            last_error: self.last_error,
            outcome: self.outcome,
            redrive_count: self.redrive_count,
            provider_created_at: self.provider_created_at,
            received_at: self.received_at,
            processed_at: self.processed_at,
            dead_at: self.dead_at,
            next_attempt_at: self.next_attempt_at,
        })
    }
}

// ----- The queue -----
//
// A worker claims one due event in one statement that commits at once (the lease and the attempt
// are recorded before any provider call), processes it outside any transaction, and then either
// marks it processed inside the transaction that applies it, or records the failure. Both
// writes match the attempt number the claim returned: a worker whose lease ran out and whose
// event another worker claimed meanwhile writes nothing.
//
// Each statement's text is fixed, so the connection keeps it prepared ([`KeepPrepared`]): diesel
// never caches an `sql_query`, and a worker would otherwise pay a prepare on every event.

/// An event a worker holds under a lease.
#[derive(Clone, Debug, diesel::QueryableByName)]
pub struct ClaimedEvent {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Bytea)]
    pub payload: Vec<u8>,
    /// The attempt this claim is (1 for the first): the worker's proof that the lease is its own.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
}

/// Where a failed attempt left its event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptFailed {
    /// Due again after the backoff.
    Retrying,
    /// Out of attempts: dead until an admin re-drives it.
    Dead,
    /// The lease was no longer this worker's (another worker claimed the event): nothing written.
    LeaseLost,
}

#[derive(diesel::QueryableByName)]
struct StateRow {
    #[diesel(sql_type = Text)]
    state: String,
}

/// Claims the due event that has waited longest and that no live lease holds: its lease now
/// runs for `lease_millis` and its attempt is counted, committed before processing starts (so an
/// event that kills its worker still reaches the dead-letter state). `SKIP LOCKED`: workers of
/// every instance share the queue without waiting on one another.
pub async fn claim_next(
    conn: &mut AsyncPgConnection,
    lease_millis: i64,
    max_attempts: i32,
) -> AppResult<Option<ClaimedEvent>> {
    let claimed = KeepPrepared(
        diesel::sql_query(
            "UPDATE webhook_events \
         SET lease_expires_at = now() + make_interval(secs => $1::double precision / 1000), \
             attempts = attempts + 1 \
         WHERE id = ( \
             SELECT id FROM webhook_events \
             WHERE state = 'received' AND next_attempt_at <= now() \
               AND (lease_expires_at IS NULL OR lease_expires_at <= now()) \
               AND attempts < $2 \
             ORDER BY next_attempt_at \
             LIMIT 1 \
             FOR UPDATE SKIP LOCKED) \
         RETURNING id, event_type, payload, attempts",
        )
        .bind::<BigInt, _>(lease_millis)
        .bind::<Integer, _>(max_attempts),
    )
    .get_result::<ClaimedEvent>(conn)
    .await;
    match claimed {
        Ok(event) => Ok(Some(event)),
        Err(diesel::result::Error::NotFound) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Marks dead the events whose worker died (its lease expired) during their last attempt: the
/// claim never takes them again, and nothing else would record their end.
pub async fn bury_abandoned(conn: &mut AsyncPgConnection, max_attempts: i32) -> AppResult<usize> {
    Ok(KeepPrepared(
        diesel::sql_query(
            "UPDATE webhook_events \
         SET state = 'dead', dead_at = now(), lease_expires_at = NULL, \
             last_error = 'the worker processing its last attempt stopped before finishing' \
         WHERE state = 'received' AND attempts >= $1 AND lease_expires_at <= now()",
        )
        .bind::<Integer, _>(max_attempts),
    )
    .execute(conn)
    .await?)
}

/// Marks the claimed event processed with `outcome`, naming the charge it concerned (when
/// found), if attempt `attempt` still holds it. False when it does not: the caller's
/// transaction must roll back, another worker owns the event now.
pub async fn mark_processed(
    conn: &mut AsyncPgConnection,
    id: &str,
    attempt: i32,
    outcome: &str,
    charge: Option<(Uuid, Uuid)>,
) -> AppResult<bool> {
    let (account_id, charge_id) = charge.unzip();
    let updated = KeepPrepared(
        diesel::sql_query(
            "UPDATE webhook_events \
         SET state = 'processed', processed_at = now(), outcome = $3, lease_expires_at = NULL, \
             account_id = coalesce(account_id, $4), charge_id = coalesce(charge_id, $5) \
         WHERE id = $1 AND state = 'received' AND attempts = $2",
        )
        .bind::<Text, _>(id)
        .bind::<Integer, _>(attempt)
        .bind::<Text, _>(outcome)
        .bind::<Nullable<SqlUuid>, _>(account_id)
        .bind::<Nullable<SqlUuid>, _>(charge_id),
    )
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Marks the event processed as `quarantined` and files it under no account, so that neither
/// account it names sees it; false when the claim is no longer attempt `attempt`'s.
pub async fn mark_quarantined(
    conn: &mut AsyncPgConnection,
    id: &str,
    attempt: i32,
) -> AppResult<bool> {
    let updated = KeepPrepared(
        diesel::sql_query(
            "UPDATE webhook_events \
         SET state = 'processed', processed_at = now(), outcome = 'quarantined', \
             lease_expires_at = NULL, account_id = NULL, charge_id = NULL \
         WHERE id = $1 AND state = 'received' AND attempts = $2",
        )
        .bind::<Text, _>(id)
        .bind::<Integer, _>(attempt),
    )
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Records that attempt `attempt` failed with `error`: due again after `retry_in_millis`, or dead
/// once it was attempt `max_attempts`. The lease is cleared either way.
pub async fn record_failure(
    conn: &mut AsyncPgConnection,
    id: &str,
    attempt: i32,
    error: &str,
    retry_in_millis: i64,
    max_attempts: i32,
) -> AppResult<AttemptFailed> {
    let row = KeepPrepared(
        diesel::sql_query(
            "UPDATE webhook_events \
         SET lease_expires_at = NULL, last_error = $3, \
             state = CASE WHEN attempts >= $5 THEN 'dead' ELSE 'received' END, \
             dead_at = CASE WHEN attempts >= $5 THEN now() END, \
             next_attempt_at = CASE WHEN attempts >= $5 THEN next_attempt_at \
                 ELSE now() + make_interval(secs => $4::double precision / 1000) END \
         WHERE id = $1 AND state = 'received' AND attempts = $2 \
         RETURNING state",
        )
        .bind::<Text, _>(id)
        .bind::<Integer, _>(attempt)
        .bind::<Text, _>(error)
        .bind::<BigInt, _>(retry_in_millis)
        .bind::<Integer, _>(max_attempts),
    )
    .get_result::<StateRow>(conn)
    .await;
    match row {
        Ok(row) if row.state == "dead" => Ok(AttemptFailed::Dead),
        Ok(_) => Ok(AttemptFailed::Retrying),
        Err(diesel::result::Error::NotFound) => Ok(AttemptFailed::LeaseLost),
        Err(error) => Err(error.into()),
    }
}

/// Gives a claimed event back untried (the worker is stopping): due at once for any worker, and
/// the attempt not counted.
pub async fn release(conn: &mut AsyncPgConnection, id: &str, attempt: i32) -> AppResult<()> {
    KeepPrepared(
        diesel::sql_query(
            "UPDATE webhook_events SET lease_expires_at = NULL, attempts = attempts - 1 \
         WHERE id = $1 AND state = 'received' AND attempts = $2",
        )
        .bind::<Text, _>(id)
        .bind::<Integer, _>(attempt),
    )
    .execute(conn)
    .await?;
    Ok(())
}
