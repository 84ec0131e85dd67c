//! Incoming webhooks: the payment provider's events, the receiving half (docs/webhooks.md; the
//! applying half is [`worker`]): a delivery is verified (signature,
//! then the payload's envelope), stored once by its event id in one statement, and acknowledged;
//! workers apply it later, woken through the shared [`Notify`]. The admin operations read an
//! account's events and put a dead one back in the queue.
//!
//! Nothing is processed inline: the acknowledgement costs one signature check and one INSERT,
//! so it stays fast however slow the provider or the workers are, and an event is never lost
//! between the answer and its processing (it is durable before the answer).

pub mod worker;

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Notify;

use super::{Page, paginate, rows_to_fetch};
use crate::db::models::{Stored, StoredWebhookEvent, WebhookEventRow};
use crate::db::{self, PgPool};
use crate::domain::{
    PageSize, ProviderEvent, SignatureVerifier, TextPageCursor, WebhookEventId, WebhookEventState,
};
use crate::errors::{
    AppError, AppResult, PreconditionViolation, Reason, Resource, signature_refusal_reason,
};
use crate::scope::RequestScope;

/// What the service answers a delivery with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub event_id: WebhookEventId,
    /// An earlier delivery had already stored the event.
    pub duplicate: bool,
}

#[derive(Clone)]
pub struct PaymentEvents {
    pool: PgPool,
    /// `None` when no signing secret is configured: every delivery is refused as unavailable.
    verifier: Option<SignatureVerifier>,
    /// Wakes one webhook worker when a new event is stored or a dead one re-driven.
    wake_workers: Arc<Notify>,
}

impl std::fmt::Debug for PaymentEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentEvents")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl PaymentEvents {
    pub fn new(
        pool: PgPool,
        verifier: Option<SignatureVerifier>,
        wake_workers: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            verifier,
            wake_workers,
        }
    }

    /// Whether deliveries can be verified (a signing secret is configured).
    pub fn is_configured(&self) -> bool {
        self.verifier.is_some()
    }

    /// Verifies a delivery and stores it once. A refusal costs no I/O and is logged with its
    /// reason only: never the header, the body or anything derived from the secrets.
    pub async fn receive(&self, signature: Option<&str>, payload: &[u8]) -> AppResult<Receipt> {
        let verifier = self
            .verifier
            .as_ref()
            .ok_or(AppError::WebhooksNotConfigured)?;
        if let Err(refusal) = verifier.verify(signature, payload, Utc::now().timestamp()) {
            tracing::info!(
                reason = signature_refusal_reason(refusal).as_str(),
                "webhook delivery refused"
            );
            return Err(AppError::WebhookSignatureRefused(refusal));
        }
        let event = ProviderEvent::parse(payload).map_err(|problem| {
            tracing::info!(
                reason = Reason::WebhookPayloadInvalid.as_str(),
                "webhook delivery refused"
            );
            AppError::invalid_field_reason(
                "http_body.data",
                Reason::WebhookPayloadInvalid,
                problem.description(),
            )
        })?;
        let stored = db::with_connection(&self.pool, async |conn| {
            WebhookEventRow::store_delivery(conn, &event, payload).await
        })
        .await?;
        if stored == Stored::New {
            self.wake_workers.notify_one();
        }
        tracing::info!(
            event_id = %event.id,
            event_type = %event.event_type,
            duplicate = stored == Stored::Duplicate,
            "webhook event acknowledged"
        );
        Ok(Receipt {
            event_id: event.id,
            duplicate: stored == Stored::Duplicate,
        })
    }

    /// A page of the caller's account's events in `state`, newest received first.
    pub async fn list(
        &self,
        scope: &RequestScope,
        state: WebhookEventState,
        page_size: PageSize,
        after: Option<TextPageCursor>,
    ) -> AppResult<Page<StoredWebhookEvent, TextPageCursor>> {
        let caller = scope.caller()?;
        let rows = db::with_connection(&self.pool, async |conn| {
            WebhookEventRow::list_for_account(
                conn,
                caller.account_id,
                state,
                after.as_ref(),
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        Ok(paginate(rows, page_size, StoredWebhookEvent::cursor))
    }

    /// One event of the caller's account.
    pub async fn get(
        &self,
        scope: &RequestScope,
        id: &WebhookEventId,
    ) -> AppResult<StoredWebhookEvent> {
        let caller = scope.caller()?;
        db::with_connection(&self.pool, async |conn| {
            WebhookEventRow::find_for_account(conn, caller.account_id, id).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::WebhookEvent, id))
    }

    /// Puts a dead event back in the queue; one already back (received) is answered as it is, a
    /// processed one is refused: there is nothing left to do for it.
    pub async fn redrive(
        &self,
        scope: &RequestScope,
        id: &WebhookEventId,
    ) -> AppResult<StoredWebhookEvent> {
        let caller = scope.caller()?;
        // A dead event seen after the conditioned update found none died (again) between the two
        // statements: the update is simply tried again.
        for _ in 0..3 {
            let (redriven, current) =
                db::with_connection(
                    &self.pool,
                    async |conn| match WebhookEventRow::redrive_dead(conn, caller.account_id, id)
                        .await?
                    {
                        Some(event) => Ok::<_, AppError>((Some(event), None)),
                        None => Ok((
                            None,
                            WebhookEventRow::find_for_account(conn, caller.account_id, id).await?,
                        )),
                    },
                )
                .await?;
            if let Some(event) = redriven {
                tracing::info!(
                    event_id = %event.id,
                    redrive_count = event.redrive_count,
                    "webhook event re-driven"
                );
                self.wake_workers.notify_one();
                return Ok(event);
            }
            let event = current.ok_or_else(|| AppError::not_found(Resource::WebhookEvent, id))?;
            match event.state {
                WebhookEventState::Dead => {}
                WebhookEventState::Received => return Ok(event),
                WebhookEventState::Processed => {
                    return Err(AppError::FailedPrecondition {
                        reason: Reason::WebhookEventNotDead,
                        message: format!(
                            "webhook event {id} was processed; only dead events can be re-driven"
                        ),
                        violations: vec![PreconditionViolation {
                            kind: "WEBHOOK_EVENT_STATE".to_owned(),
                            subject: format!("webhook-events/{id}"),
                            description: "the event is processed, not dead".to_owned(),
                        }],
                    });
                }
            }
        }
        Err(AppError::internal(anyhow::anyhow!(
            "webhook event {id} stayed dead through three re-drives"
        )))
    }
}
