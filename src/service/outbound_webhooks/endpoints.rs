//! Webhook endpoints, as admins manage them (docs/webhooks.md, "Webhooks we send"): register
//! one (its secret shown once, and again to a replay of the same keyed request), read, list,
//! change, delete, rotate its secret, send it a test event, list its deliveries and send failed
//! ones again.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use diesel_async::RunQueryDsl;

use crate::configuration::OutboundWebhookSettings;
use crate::db::models::event::EventRow;
use crate::db::models::webhook_delivery::{WebhookDeliveryRow, cursor_seq, delivery_cursor};
use crate::db::models::webhook_endpoint::{EndpointChanges, NewEndpoint, WebhookEndpointRow};
use crate::db::models::webhook_endpoint_secret::Retirement;
use crate::db::{self, PgPool};
use crate::domain::{
    AddressPolicy, DeliveryState, EndpointUrl, EventType, PageCursor, PageSize, SchemePolicy,
    SigningSecret, WebhookDelivery, WebhookEndpoint,
};
use crate::errors::{AppError, AppResult, PreconditionViolation, Reason, Resource};
use crate::idempotency::{self, KeyedWrite, Outcome, as_is};
use crate::scope::RequestScope;
use crate::service::outbound_webhooks::secrets::SecretBox;
use crate::service::{Page, paginate, rows_to_fetch};

/// How many retired secrets may sign beside an endpoint's current one: a rotation while this
/// many still sign is refused (FAILED_PRECONDITION `WEBHOOK_SECRET_ROTATION_LIMIT`) rather than
/// dropping the oldest, which would fail every delivery to a receiver still verifying with it,
/// the very outage the overlap promises against. Six signatures fit any header limit.
pub const MOST_RETIRED_SECRETS: i64 = 5;

/// An endpoint and the secret just issued for it, sealed as endpoint secrets are at rest
/// ([`SecretBox`], base64): what a keyed CreateWebhookEndpoint or RotateWebhookEndpointSecret
/// stores with its key's outcome, so that a replay after a lost answer reveals the secret the
/// first answer issued ([`WebhookEndpointAdmin::reveal_issued`]) and a copy of the database
/// still signs nothing.
#[derive(Clone, Debug)]
pub struct IssuedSecret {
    pub endpoint: WebhookEndpoint,
    pub sealed: String,
}

/// What a new endpoint is made of.
#[derive(Clone, Debug)]
pub struct NewEndpointRequest {
    pub url: EndpointUrl,
    pub description: String,
    pub event_types: Vec<EventType>,
}

/// An update, as the mask named its fields.
#[derive(Clone, Debug, Default)]
pub struct EndpointUpdate {
    pub url: Option<EndpointUrl>,
    pub description: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    pub disabled: Option<bool>,
}

#[derive(Clone)]
pub struct WebhookEndpointAdmin {
    pool: PgPool,
    secrets: Arc<SecretBox>,
    settings: OutboundWebhookSettings,
    /// Wakes this instance's delivery workers (a test event is due at once).
    wake: Arc<tokio::sync::Notify>,
}

impl WebhookEndpointAdmin {
    pub fn new(
        pool: PgPool,
        secrets: Arc<SecretBox>,
        settings: OutboundWebhookSettings,
        wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            pool,
            secrets,
            settings,
            wake,
        }
    }

    /// How endpoint URLs are checked on this deployment.
    pub fn url_rules(&self) -> (SchemePolicy, AddressPolicy) {
        let schemes = if self.settings.allow_http {
            SchemePolicy::HttpAllowed
        } else {
            SchemePolicy::HttpsOnly
        };
        (
            schemes,
            AddressPolicy::allowing(self.settings.allow_networks.clone()),
        )
    }

    /// Registers an endpoint with a fresh secret, returned beside the outcome (never stored in
    /// clear; stored sealed with a key's outcome, for its replay: [`IssuedSecret`]).
    pub async fn create(
        &self,
        write: &KeyedWrite<'_, IssuedSecret>,
        request: NewEndpointRequest,
    ) -> AppResult<(Outcome<WebhookEndpoint>, SigningSecret)> {
        let caller = write.caller()?;
        let secret = SigningSecret::generate();
        let sealed = self.secrets.seal(&secret);
        let issued = issued_with(BASE64.encode(&sealed));
        let limit = self.settings.max_endpoints_per_account;
        let account_id = caller.account_id.as_uuid();
        let outcome =
            idempotency::transaction(&self.pool, write, issued, async |conn| {
                // Endpoints of one account are counted one at a time.
                diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 46))")
                    .bind::<diesel::sql_types::Uuid, _>(account_id)
                    .execute(conn)
                    .await?;
                let count = WebhookEndpointRow::count_for_account(conn, account_id).await?;
                if count >= i64::from(limit) {
                    return Err(AppError::FailedPrecondition {
                        reason: Reason::WebhookEndpointLimit,
                        message: format!(
                            "the account has {count} webhook endpoints, the most it may have; delete one first"
                        ),
                        violations: vec![PreconditionViolation {
                            kind: "WEBHOOK_ENDPOINT_LIMIT".to_owned(),
                            subject: format!("accounts/{account_id}"),
                            description: format!("at most {limit} endpoints per account"),
                        }],
                    });
                }
                NewEndpoint {
                    id: uuid::Uuid::now_v7(),
                    account_id,
                    url: request.url.as_str(),
                    description: &request.description,
                    event_types: request
                        .event_types
                        .iter()
                        .map(|kind| Some(kind.as_str()))
                        .collect(),
                    secret_ciphertext: &sealed,
                }
                .insert(conn)
                .await
            })
            .await?;
        Ok((outcome, secret))
    }

    pub async fn get(&self, scope: &RequestScope, id: uuid::Uuid) -> AppResult<WebhookEndpoint> {
        let caller = scope.caller()?;
        db::with_connection(&self.pool, async |conn| {
            WebhookEndpointRow::find_in_account(conn, caller.account_id.as_uuid(), id).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::WebhookEndpoint, id))
    }

    pub async fn list(
        &self,
        scope: &RequestScope,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<WebhookEndpoint>> {
        let caller = scope.caller()?;
        let rows = db::with_connection(&self.pool, async |conn| {
            WebhookEndpointRow::list_for_account(
                conn,
                caller.account_id.as_uuid(),
                after,
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        Ok(paginate(rows, page_size, |endpoint| {
            PageCursor::at(endpoint.created_at, endpoint.id)
        }))
    }

    /// Changes what `update` names; enabling a disabled endpoint sends again what it missed.
    pub async fn update(
        &self,
        write: &KeyedWrite<'_, WebhookEndpoint>,
        id: uuid::Uuid,
        update: EndpointUpdate,
    ) -> AppResult<Outcome<WebhookEndpoint>> {
        let caller = write.caller()?;
        let account_id = caller.account_id.as_uuid();
        let outcome = idempotency::transaction(&self.pool, write, as_is, async |conn| {
            let current = WebhookEndpointRow::lock_in_account(conn, account_id, id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::WebhookEndpoint, id))?;
            let changes = EndpointChanges {
                url: update.url.as_ref().map(|url| url.as_str().to_owned()),
                description: update.description.clone(),
                event_types: update.event_types.clone(),
                disabled: update.disabled,
            };
            WebhookEndpointRow::update(conn, &current, &changes).await
        })
        .await?;
        if update.disabled == Some(false) {
            self.wake.notify_waiters();
        }
        Ok(outcome)
    }

    pub async fn delete(
        &self,
        write: &KeyedWrite<'_, ()>,
        id: uuid::Uuid,
    ) -> AppResult<Outcome<()>> {
        let caller = write.caller()?;
        let account_id = caller.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            if WebhookEndpointRow::delete(conn, account_id, id).await? {
                Ok(())
            } else {
                Err(AppError::not_found(Resource::WebhookEndpoint, id))
            }
        })
        .await
    }

    /// A new secret; the current one is retired and signs beside it for the overlap, as every
    /// earlier retired secret does until its own expiry (by PostgreSQL's clock). Refused while
    /// [`MOST_RETIRED_SECRETS`] still sign. The new secret is stored sealed with a key's
    /// outcome, for its replay ([`IssuedSecret`]).
    pub async fn rotate_secret(
        &self,
        write: &KeyedWrite<'_, IssuedSecret>,
        id: uuid::Uuid,
    ) -> AppResult<(Outcome<WebhookEndpoint>, SigningSecret)> {
        let caller = write.caller()?;
        let secret = SigningSecret::generate();
        let sealed = self.secrets.seal(&secret);
        let issued = issued_with(BASE64.encode(&sealed));
        let overlap = self.settings.secret_overlap;
        let account_id = caller.account_id.as_uuid();
        let outcome = idempotency::transaction(&self.pool, write, issued, async |conn| {
            let retirement =
                Retirement::of_current_secret(conn, account_id, id, overlap, MOST_RETIRED_SECRETS)
                    .await?
                    .ok_or_else(|| AppError::not_found(Resource::WebhookEndpoint, id))?;
            let until = match retirement {
                Retirement::Retired { until } => until,
                Retirement::AtLimit {
                    signing,
                    oldest_expires_at,
                } => return Err(rotation_limit(id, signing, oldest_expires_at)),
            };
            WebhookEndpointRow::rotate_secret(conn, account_id, id, &sealed, until)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::WebhookEndpoint, id))
        })
        .await?;
        Ok((outcome, secret))
    }

    /// The secret an [`IssuedSecret`] holds sealed, as the customer sees it (`whsec_...`); an
    /// empty one (an answer stored by an earlier version, which kept no secret) stays empty.
    pub fn reveal_issued(&self, sealed: &str) -> AppResult<String> {
        if sealed.is_empty() {
            return Ok(String::new());
        }
        let opened = BASE64
            .decode(sealed)
            .ok()
            .and_then(|bytes| self.secrets.open(&bytes).ok())
            .ok_or_else(|| {
                AppError::internal(anyhow::anyhow!(
                    "the secret a replayed answer holds does not open: was \
                     WEBHOOK_ENDPOINT_SECRETS_KEY (or JWT_SECRET) changed?"
                ))
            })?;
        Ok(opened.reveal())
    }

    /// Queues a test event for the endpoint alone.
    pub async fn send_test(
        &self,
        write: &KeyedWrite<'_, WebhookDelivery>,
        id: uuid::Uuid,
    ) -> AppResult<Outcome<WebhookDelivery>> {
        let caller = write.caller()?;
        let account_id = caller.account_id.as_uuid();
        let outcome = idempotency::transaction(&self.pool, write, as_is, async |conn| {
            let delivery = EventRow::insert_test(conn, account_id, id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::WebhookEndpoint, id))?;
            WebhookDeliveryRow::find(conn, account_id, id, delivery)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::WebhookDelivery, delivery))
        })
        .await?;
        self.wake.notify_waiters();
        Ok(outcome)
    }

    /// An endpoint's deliveries, newest event first.
    pub async fn deliveries(
        &self,
        scope: &RequestScope,
        endpoint_id: uuid::Uuid,
        state: Option<DeliveryState>,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<WebhookDelivery>> {
        let caller = scope.caller()?;
        let account_id = caller.account_id.as_uuid();
        let rows = db::with_connection(&self.pool, async |conn| {
            WebhookEndpointRow::find_in_account(conn, account_id, endpoint_id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::WebhookEndpoint, endpoint_id))?;
            WebhookDeliveryRow::list_for_endpoint(
                conn,
                account_id,
                endpoint_id,
                state,
                after.as_ref().map(cursor_seq),
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        let page = paginate(rows, page_size, |(seq, _)| delivery_cursor(*seq));
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|(_, delivery)| delivery)
                .collect(),
            next: page.next,
        })
    }

    /// Sends one failed delivery again; one that is not failed is answered as it is.
    pub async fn redrive(
        &self,
        scope: &RequestScope,
        endpoint_id: uuid::Uuid,
        id: uuid::Uuid,
    ) -> AppResult<WebhookDelivery> {
        let caller = scope.caller()?;
        let budget = scope.remaining();
        let account_id = caller.account_id.as_uuid();
        let delivery = db::pooled_transaction(&self.pool, budget, async |conn| {
            WebhookDeliveryRow::redrive_failed(conn, account_id, endpoint_id, Some(id), None)
                .await?;
            WebhookDeliveryRow::find(conn, account_id, endpoint_id, id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::WebhookDelivery, id))
        })
        .await?;
        self.wake.notify_waiters();
        Ok(delivery)
    }

    /// Sends again every failed delivery of the endpoint whose event happened at or after
    /// `since`; how many.
    pub async fn redrive_failed_since(
        &self,
        scope: &RequestScope,
        endpoint_id: uuid::Uuid,
        since: DateTime<Utc>,
    ) -> AppResult<usize> {
        let caller = scope.caller()?;
        let budget = scope.remaining();
        let account_id = caller.account_id.as_uuid();
        let redriven = db::pooled_transaction(&self.pool, budget, async |conn| {
            WebhookEndpointRow::find_in_account(conn, account_id, endpoint_id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::WebhookEndpoint, endpoint_id))?;
            WebhookDeliveryRow::redrive_failed(conn, account_id, endpoint_id, None, Some(since))
                .await
        })
        .await?;
        self.wake.notify_waiters();
        Ok(redriven)
    }
}

/// The projection of an endpoint to what its keyed answer stores: the endpoint and `sealed`.
fn issued_with(sealed: String) -> impl FnOnce(&WebhookEndpoint) -> AppResult<IssuedSecret> {
    move |endpoint| {
        Ok(IssuedSecret {
            endpoint: endpoint.clone(),
            sealed,
        })
    }
}

/// The refusal of a rotation while `signing` retired secrets still sign, the oldest until
/// `oldest_expires_at`.
fn rotation_limit(id: uuid::Uuid, signing: i64, oldest_expires_at: DateTime<Utc>) -> AppError {
    let oldest = oldest_expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    AppError::FailedPrecondition {
        reason: Reason::WebhookSecretRotationLimit,
        message: format!(
            "{signing} retired secrets of the endpoint still sign, the most that may; the oldest \
             stops signing at {oldest}: rotate again after that"
        ),
        violations: vec![PreconditionViolation {
            kind: "WEBHOOK_SECRET_ROTATION_LIMIT".to_owned(),
            subject: format!("webhookEndpoints/{id}"),
            description: format!(
                "at most {MOST_RETIRED_SECRETS} retired secrets sign beside the current one; \
                 the oldest stops signing at {oldest}"
            ),
        }],
    }
}
