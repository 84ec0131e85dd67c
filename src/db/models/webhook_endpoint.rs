//! The `webhook_endpoints` table: where an account's events are sent, the encrypted secrets they
//! are signed with, and the lease of the one worker delivering to an endpoint at a time
//! (docs/webhooks.md, "Webhooks we send").

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::schema::webhook_endpoints;
use crate::domain::{self, DisabledReason, EndpointState, EventType, PageCursor};
use crate::errors::AppResult;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints, check_for_backend(diesel::pg::Pg))]
pub struct WebhookEndpointRow {
    id: Uuid,
    account_id: Uuid,
    url: String,
    description: String,
    event_types: Vec<Option<String>>,
    state: String,
    disabled_reason: Option<String>,
    disabled_at: Option<DateTime<Utc>>,
    previous_secret_expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = webhook_endpoints)]
pub struct NewEndpoint<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub url: &'a str,
    pub description: &'a str,
    pub event_types: Vec<Option<&'a str>>,
    pub secret_ciphertext: &'a [u8],
}

/// The changes an update makes; `None` leaves a column as it is.
#[derive(Debug, Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    /// `Some(true)` disables (by an admin), `Some(false)` enables.
    pub disabled: Option<bool>,
}

impl NewEndpoint<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> AppResult<domain::WebhookEndpoint> {
        diesel::insert_into(webhook_endpoints::table)
            .values(self)
            .returning(WebhookEndpointRow::as_returning())
            .get_result(conn)
            .await?
            .into_domain()
    }
}

impl WebhookEndpointRow {
    /// How many endpoints the account has.
    pub async fn count_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
    ) -> AppResult<i64> {
        Ok(webhook_endpoints::table
            .filter(webhook_endpoints::account_id.eq(account_id))
            .count()
            .get_result(conn)
            .await?)
    }

    pub async fn find_in_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<domain::WebhookEndpoint>> {
        webhook_endpoints::table
            .filter(webhook_endpoints::account_id.eq(account_id))
            .filter(webhook_endpoints::id.eq(id))
            .select(WebhookEndpointRow::as_select())
            .first(conn)
            .await
            .optional()?
            .map(WebhookEndpointRow::into_domain)
            .transpose()
    }

    /// Locks the endpoint for a change in this transaction: `FOR NO KEY UPDATE`, which queues
    /// other changes of the endpoint (and its deletion) but not the `FOR KEY SHARE` every event
    /// of the account takes on it (migration 24). No change of an endpoint touches its key, and
    /// enabling one reschedules its whole backlog under this lock: with `FOR UPDATE` every ticket,
    /// comment or charge of the account waited for that.
    pub async fn lock_in_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<domain::WebhookEndpoint>> {
        webhook_endpoints::table
            .filter(webhook_endpoints::account_id.eq(account_id))
            .filter(webhook_endpoints::id.eq(id))
            .select(WebhookEndpointRow::as_select())
            .for_no_key_update()
            .first(conn)
            .await
            .optional()?
            .map(WebhookEndpointRow::into_domain)
            .transpose()
    }

    /// Oldest first.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<domain::WebhookEndpoint>> {
        let mut query = webhook_endpoints::table
            .filter(webhook_endpoints::account_id.eq(account_id))
            .select(WebhookEndpointRow::as_select())
            .order((
                webhook_endpoints::created_at.asc(),
                webhook_endpoints::id.asc(),
            ))
            .limit(limit)
            .into_boxed();
        if let Some(cursor) = after {
            query = query
                .filter(webhook_endpoints::created_at.ge(cursor.at))
                .filter(
                    webhook_endpoints::created_at
                        .gt(cursor.at)
                        .or(webhook_endpoints::id.gt(cursor.id)),
                );
        }
        query
            .load::<WebhookEndpointRow>(conn)
            .await?
            .into_iter()
            .map(WebhookEndpointRow::into_domain)
            .collect()
    }

    /// Applies `changes` to a locked endpoint. Disabling by an admin records the time; enabling
    /// clears the disable and the failing streak, and sends back to the queue the deliveries
    /// that failed since the endpoint started failing (what it missed).
    pub async fn update(
        conn: &mut AsyncPgConnection,
        current: &domain::WebhookEndpoint,
        changes: &EndpointChanges,
    ) -> AppResult<domain::WebhookEndpoint> {
        let url = changes.url.as_deref().unwrap_or(&current.url);
        let description = changes
            .description
            .as_deref()
            .unwrap_or(&current.description);
        // Written only when the change names it: the stored filter may name types this build
        // does not know, which the `current` it read has left out.
        let event_types: Option<Vec<Option<&str>>> = changes
            .event_types
            .as_ref()
            .map(|types| types.iter().map(|kind| Some(kind.as_str())).collect());
        let disabling = changes.disabled == Some(true) && current.state == EndpointState::Enabled;
        let enabling = changes.disabled == Some(false) && current.state == EndpointState::Disabled;
        if enabling {
            // What failed while the endpoint was failing (or after it was disabled) goes back
            // to the queue with a fresh schedule; each event is locked first, as a redrive
            // locks it, so that the retention sweep cannot delete it meanwhile. What was still
            // pending partway through its schedule (its next attempt hours away) gets a fresh
            // schedule too, so that everything owed goes out now and in order.
            diesel::sql_query(
                "WITH kept AS ( \
                     SELECT ev.id FROM events ev \
                     JOIN webhook_deliveries d ON d.event_id = ev.id \
                     JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                     WHERE e.id = $1 AND d.state = 'failed' \
                       AND d.done_at >= coalesce(e.failing_since, e.disabled_at) \
                     FOR KEY SHARE OF ev), \
                 rescheduled AS ( \
                     UPDATE webhook_deliveries d SET attempts = 0, next_attempt_at = now() \
                     WHERE d.endpoint_id = $1 AND d.state = 'pending' \
                       AND d.next_attempt_at > now()) \
                 UPDATE webhook_deliveries d SET state = 'pending', attempts = 0, \
                     next_attempt_at = now(), done_at = NULL, redrive_count = redrive_count + 1 \
                 FROM kept \
                 WHERE d.event_id = kept.id AND d.endpoint_id = $1 AND d.state = 'failed'",
            )
            .bind::<diesel::sql_types::Uuid, _>(current.id)
            .execute(conn)
            .await?;
        }
        let target = webhook_endpoints::table
            .filter(webhook_endpoints::account_id.eq(current.account_id))
            .filter(webhook_endpoints::id.eq(current.id));
        let updated = if disabling {
            diesel::update(target)
                .set((
                    webhook_endpoints::url.eq(url),
                    webhook_endpoints::description.eq(description),
                    event_types
                        .as_ref()
                        .map(|types| webhook_endpoints::event_types.eq(types)),
                    webhook_endpoints::state.eq(EndpointState::Disabled.as_str()),
                    webhook_endpoints::disabled_reason.eq(DisabledReason::ByAdmin.as_str()),
                    webhook_endpoints::disabled_at.eq(diesel::dsl::now),
                    webhook_endpoints::version.eq(webhook_endpoints::version + 1),
                    webhook_endpoints::updated_at.eq(diesel::dsl::now),
                ))
                .returning(WebhookEndpointRow::as_returning())
                .get_result(conn)
                .await?
        } else if enabling {
            diesel::update(target)
                .set((
                    webhook_endpoints::url.eq(url),
                    webhook_endpoints::description.eq(description),
                    event_types
                        .as_ref()
                        .map(|types| webhook_endpoints::event_types.eq(types)),
                    webhook_endpoints::state.eq(EndpointState::Enabled.as_str()),
                    webhook_endpoints::disabled_reason.eq(None::<&str>),
                    webhook_endpoints::disabled_at.eq(None::<DateTime<Utc>>),
                    webhook_endpoints::failing_since.eq(None::<DateTime<Utc>>),
                    // The rest a failing streak or the receiver's Retry-After asked for is over:
                    // the admin enabling it says the receiver is back.
                    webhook_endpoints::retry_at.eq(None::<DateTime<Utc>>),
                    webhook_endpoints::version.eq(webhook_endpoints::version + 1),
                    webhook_endpoints::updated_at.eq(diesel::dsl::now),
                ))
                .returning(WebhookEndpointRow::as_returning())
                .get_result(conn)
                .await?
        } else {
            diesel::update(target)
                .set((
                    webhook_endpoints::url.eq(url),
                    webhook_endpoints::description.eq(description),
                    event_types
                        .as_ref()
                        .map(|types| webhook_endpoints::event_types.eq(types)),
                    webhook_endpoints::version.eq(webhook_endpoints::version + 1),
                    webhook_endpoints::updated_at.eq(diesel::dsl::now),
                ))
                .returning(WebhookEndpointRow::as_returning())
                .get_result(conn)
                .await?
        };
        updated.into_domain()
    }

    /// Deletes the endpoint and (by cascade) its deliveries; false when there was none.
    pub async fn delete(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<bool> {
        let deleted = diesel::delete(
            webhook_endpoints::table
                .filter(webhook_endpoints::account_id.eq(account_id))
                .filter(webhook_endpoints::id.eq(id)),
        )
        .execute(conn)
        .await?;
        Ok(deleted > 0)
    }

    /// Replaces the secret of an endpoint whose current secret was just retired
    /// ([`super::webhook_endpoint_secret::Retirement`]) until `previous_until`, which the API
    /// shows as the previous secret's expiry. The retired secret is also written to the old
    /// `previous_secret_*` columns, which the version still serving during a rollout (or after a
    /// rollback) signs with; this version signs with `webhook_endpoint_secrets`.
    pub async fn rotate_secret(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
        new_ciphertext: &[u8],
        previous_until: DateTime<Utc>,
    ) -> AppResult<Option<domain::WebhookEndpoint>> {
        diesel::update(
            webhook_endpoints::table
                .filter(webhook_endpoints::account_id.eq(account_id))
                .filter(webhook_endpoints::id.eq(id)),
        )
        .set((
            webhook_endpoints::previous_secret_ciphertext
                .eq(webhook_endpoints::secret_ciphertext.nullable()),
            webhook_endpoints::previous_secret_expires_at.eq(previous_until),
            webhook_endpoints::secret_ciphertext.eq(new_ciphertext),
            webhook_endpoints::version.eq(webhook_endpoints::version + 1),
            webhook_endpoints::updated_at.eq(diesel::dsl::now),
        ))
        .returning(WebhookEndpointRow::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .map(WebhookEndpointRow::into_domain)
        .transpose()
    }
}

/// An endpoint as an event's snapshot holds it (`to_jsonb` of its row, secrets removed).
#[derive(Debug, serde::Deserialize)]
pub struct EndpointSnapshot {
    id: Uuid,
    account_id: Uuid,
    url: String,
    description: String,
    event_types: Vec<Option<String>>,
    state: String,
    disabled_reason: Option<String>,
    disabled_at: Option<DateTime<Utc>>,
    previous_secret_expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl EndpointSnapshot {
    pub fn into_domain(self) -> AppResult<domain::WebhookEndpoint> {
        WebhookEndpointRow {
            id: self.id,
            account_id: self.account_id,
            url: self.url,
            description: self.description,
            event_types: self.event_types,
            state: self.state,
            disabled_reason: self.disabled_reason,
            disabled_at: self.disabled_at,
            previous_secret_expires_at: self.previous_secret_expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
        .into_domain()
    }
}

/// The types of a stored filter that this build knows. A type it does not (written by a newer
/// version, during a mixed deploy or after a rollback) is left out of what it reads, and logged,
/// rather than making the endpoint unreadable; the stored filter keeps it, since a change that
/// does not name the filter does not write it ([`WebhookEndpointRow::update`]).
fn known_event_types(endpoint: Uuid, stored: &[Option<String>]) -> Vec<EventType> {
    stored
        .iter()
        .filter_map(|name| {
            let name = name.as_deref().unwrap_or_default();
            EventType::parse(name)
                .inspect_err(|problem| {
                    tracing::warn!(%endpoint, event_type = name, %problem,
                        "an endpoint's filter names an event type this build does not know: left out");
                })
                .ok()
        })
        .collect()
}

impl WebhookEndpointRow {
    fn into_domain(self) -> AppResult<domain::WebhookEndpoint> {
        Ok(domain::WebhookEndpoint {
            id: self.id,
            account_id: self.account_id,
            url: self.url,
            description: self.description,
            event_types: known_event_types(self.id, &self.event_types),
            state: EndpointState::parse(&self.state)
                .map_err(|problem| corrupt("webhook_endpoints.state", problem))?,
            disabled_reason: self
                .disabled_reason
                .as_deref()
                .map(DisabledReason::parse)
                .transpose()
                .map_err(|problem| corrupt("webhook_endpoints.disabled_reason", problem))?,
            disabled_at: self.disabled_at,
            previous_secret_expires_at: self.previous_secret_expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}
