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
use diesel::sql_types::{Bytea, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::KeepPrepared;
pub use crate::db::queue::AttemptFailed;
use crate::db::queue::{self, QueueTable};
use crate::db::schema::webhook_events;
use crate::domain::{
    AccountId, ChargeId, ProviderEvent, TextPageCursor, WebhookEventId, WebhookEventState,
};
use crate::errors::AppResult;

// ----- Receiving and the admin RPCs -----

/// A stored event as the admin RPCs show it (the payload and the lease stay in the table).
#[derive(Clone, Debug, Queryable, QueryableByName, Selectable)]
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
        queue::optional(
            queue::redrive_dead(&WEBHOOK_QUEUE, account_id.as_uuid(), id.as_str())
                .get_result::<Self>(conn)
                .await,
        )?
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
// The statements are the shared queue's ([`queue`]); marking an event processed is this table's
// own, since it also files the event under the charge the worker found. Both writes match the
// attempt number the claim returned: a worker whose lease ran out and whose event another worker
// claimed meanwhile writes nothing.

/// The `webhook_events` table as [`queue`] sees it.
pub const WEBHOOK_QUEUE: QueueTable = QueueTable {
    table: "webhook_events",
    id_type: "text",
    done_state: "processed",
    done_at: "processed_at",
    claimed_columns: "id, event_type, payload, attempts",
    row_columns: "id, event_type, provider_created_at, account_id, charge_id, state, attempts, \
                  next_attempt_at, last_error, outcome, redrive_count, received_at, \
                  processed_at, dead_at",
    record_also_sets: "",
};

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

/// Claims the due event that has waited longest ([`queue::claim_next`]).
pub async fn claim_next(
    conn: &mut AsyncPgConnection,
    lease_millis: i64,
    max_attempts: i32,
) -> AppResult<Option<ClaimedEvent>> {
    let claim = queue::claim_next(&WEBHOOK_QUEUE, lease_millis, max_attempts)
        .get_result::<ClaimedEvent>(conn)
        .await;
    queue::claimed(conn, claim).await
}

/// Marks dead the events whose worker died during their last attempt
/// ([`queue::bury_abandoned`]).
pub async fn bury_abandoned(conn: &mut AsyncPgConnection, max_attempts: i32) -> AppResult<usize> {
    queue::bury_abandoned(conn, &WEBHOOK_QUEUE, max_attempts).await
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
/// once it was attempt `max_attempts` ([`queue::record_failure`]).
pub async fn record_failure(
    conn: &mut AsyncPgConnection,
    id: &str,
    attempt: i32,
    error: &str,
    retry_in_millis: i64,
    max_attempts: i32,
) -> AppResult<AttemptFailed> {
    queue::record_failure(
        conn,
        &WEBHOOK_QUEUE,
        id,
        attempt,
        error,
        retry_in_millis,
        max_attempts,
    )
    .await
}

/// Gives a claimed event back untried ([`queue::release`]).
pub async fn release(conn: &mut AsyncPgConnection, id: &str, attempt: i32) -> AppResult<()> {
    queue::release(conn, &WEBHOOK_QUEUE, id, attempt).await
}
