//! The notifications' operator and user surface (docs/notifications.md): an account's admins
//! read its notifications and re-drive the ones that ended unsent, manage its suppression list;
//! every signed-in user reads and changes their own settings; and the email provider's webhook
//! (Resend's dialect, Svix-signed) reports bounces and complaints, which suppress the recipient.
//!
//! The re-drive is the shared queue's ([`crate::db::queue::redrive`]), as for webhook events.
//! Every read and write is one statement, scoped to the caller's account: another account's
//! notification or address is answered exactly as one that does not exist.

use chrono::Utc;
use uuid::Uuid;

use super::{Page, paginate, rows_to_fetch};
use crate::db::models::notification_settings::{
    self, NotificationSettings, NotificationSettingsChanges,
};
use crate::db::models::{
    NotificationRow, StoredNotification, StoredSuppression, SuppressionRow, email_event,
};
use crate::db::{self, PgPool};
use crate::domain::{
    Email, EmailEvent, EmailEventEffect, NotificationKind, NotificationState, PageCursor, PageSize,
    Role, SvixVerifier,
};
use crate::errors::{
    AppError, AppResult, PreconditionViolation, Reason, Resource, signature_refusal_reason,
};
use crate::scope::RequestScope;

/// The headers of one delivery of the email provider's webhook.
#[derive(Clone, Copy, Debug, Default)]
pub struct SvixHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// What the service answers a delivery of the email provider's webhook with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailEventReceipt {
    /// The delivery's `svix-id`.
    pub event_id: String,
    /// An earlier delivery with this id was taken.
    pub duplicate: bool,
    /// What the event did (docs/notifications.md).
    pub outcome: &'static str,
}

#[derive(Clone)]
pub struct Notifications {
    pool: PgPool,
    /// `None` without `EMAIL_WEBHOOK_SECRET`: every delivery is refused as unavailable.
    verifier: Option<SvixVerifier>,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl Notifications {
    pub fn new(pool: PgPool, verifier: Option<SvixVerifier>) -> Self {
        Self { pool, verifier }
    }

    /// A page of the caller's account's notifications in `state` (of `kind`, when given),
    /// newest first. Admins.
    pub async fn list(
        &self,
        scope: &RequestScope,
        state: NotificationState,
        kind: Option<NotificationKind>,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<StoredNotification>> {
        let caller = scope.caller()?;
        caller.require(Role::Admin)?;
        let rows = db::with_connection(&self.pool, async |conn| {
            NotificationRow::list_for_account(
                conn,
                caller.account_id,
                state,
                kind,
                after.as_ref(),
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        Ok(paginate(rows, page_size, StoredNotification::cursor))
    }

    /// One notification of the caller's account. Admins.
    pub async fn get(&self, scope: &RequestScope, id: Uuid) -> AppResult<StoredNotification> {
        let caller = scope.caller()?;
        caller.require(Role::Admin)?;
        db::with_connection(&self.pool, async |conn| {
            NotificationRow::find_for_account(conn, caller.account_id, id).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::Notification, id))
    }

    /// Puts a dead or skipped notification back in the queue; any other is refused, naming its
    /// state: a sent one has nothing left to send, a received one is already in the queue.
    /// Admins.
    pub async fn redrive(&self, scope: &RequestScope, id: Uuid) -> AppResult<StoredNotification> {
        let caller = scope.caller()?;
        caller.require(Role::Admin)?;
        // A notification seen dead or skipped after the conditioned update found none ended
        // (again) between the two statements: the update is simply tried again.
        for _ in 0..3 {
            let (redriven, current) = db::with_connection(&self.pool, async |conn| {
                match NotificationRow::redrive(conn, caller.account_id, id).await? {
                    Some(notification) => Ok::<_, AppError>((Some(notification), None)),
                    None => Ok((
                        None,
                        NotificationRow::find_for_account(conn, caller.account_id, id).await?,
                    )),
                }
            })
            .await?;
            if let Some(notification) = redriven {
                tracing::info!(
                    notification_id = %id,
                    redrive_count = notification.redrive_count,
                    "notification re-driven"
                );
                // Due now: an idle worker takes it at its next poll.
                return Ok(notification);
            }
            let notification =
                current.ok_or_else(|| AppError::not_found(Resource::Notification, id))?;
            match notification.state {
                NotificationState::Dead | NotificationState::Skipped => {}
                state @ (NotificationState::Received | NotificationState::Sent) => {
                    return Err(AppError::FailedPrecondition {
                        reason: Reason::NotificationNotRedrivable,
                        message: format!(
                            "notification {id} is {state}; only dead or skipped notifications \
                             can be re-driven"
                        ),
                        violations: vec![PreconditionViolation {
                            kind: "NOTIFICATION_STATE".to_owned(),
                            subject: format!("notifications/{id}"),
                            description: format!(
                                "the notification is {state}, not dead or skipped"
                            ),
                        }],
                    });
                }
            }
        }
        Err(AppError::internal(anyhow::anyhow!(
            "notification {id} stayed dead or skipped through three re-drives"
        )))
    }

    /// The calling user's settings.
    pub async fn settings(&self, scope: &RequestScope) -> AppResult<NotificationSettings> {
        let caller = scope.caller()?;
        let user = caller.require_user()?;
        db::with_connection(&self.pool, async |conn| {
            notification_settings::find(conn, caller.account_id, user).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::User, user))
    }

    /// Changes the calling user's settings and returns them.
    pub async fn update_settings(
        &self,
        scope: &RequestScope,
        changes: NotificationSettingsChanges,
    ) -> AppResult<NotificationSettings> {
        let caller = scope.caller()?;
        let user = caller.require_user()?;
        db::with_connection(&self.pool, async |conn| {
            notification_settings::update(conn, caller.account_id, user, changes).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::User, user))
    }

    /// A page of the caller's account's suppressed addresses, newest first. Admins.
    pub async fn suppressions(
        &self,
        scope: &RequestScope,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<StoredSuppression>> {
        let caller = scope.caller()?;
        caller.require(Role::Admin)?;
        let rows = db::with_connection(&self.pool, async |conn| {
            SuppressionRow::list_for_account(
                conn,
                caller.account_id,
                after.as_ref(),
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        Ok(paginate(rows, page_size, StoredSuppression::cursor))
    }

    /// Takes `address` off the caller's account's suppression list. Admins.
    pub async fn delete_suppression(&self, scope: &RequestScope, address: &Email) -> AppResult<()> {
        let caller = scope.caller()?;
        caller.require(Role::Admin)?;
        let deleted = db::with_connection(&self.pool, async |conn| {
            SuppressionRow::delete(conn, caller.account_id, address).await
        })
        .await?;
        if !deleted {
            return Err(AppError::not_found(Resource::Suppression, address));
        }
        tracing::info!(account_id = %caller.account_id, "suppressed address taken off the list");
        Ok(())
    }

    /// Whether the email provider's deliveries can be verified (a secret is configured).
    pub fn is_configured(&self) -> bool {
        self.verifier.is_some()
    }

    /// Verifies a delivery of the email provider's webhook and takes it once. A refusal costs no
    /// I/O and is logged with its reason only, as the payment webhook's.
    pub async fn receive_email_event(
        &self,
        headers: SvixHeaders<'_>,
        payload: &[u8],
    ) -> AppResult<EmailEventReceipt> {
        let verifier = self
            .verifier
            .as_ref()
            .ok_or(AppError::WebhooksNotConfigured)?;
        if let Err(refusal) = verifier.verify(
            headers.id,
            headers.timestamp,
            headers.signature,
            payload,
            Utc::now().timestamp(),
        ) {
            tracing::info!(
                reason = signature_refusal_reason(refusal).as_str(),
                "email webhook delivery refused"
            );
            return Err(AppError::WebhookSignatureRefused(refusal));
        }
        // Verified: the id is present, visible ASCII and at most 256 bytes.
        let event_id = headers.id.unwrap_or_default().to_owned();
        let event = EmailEvent::parse(payload).map_err(|problem| {
            tracing::info!(
                reason = Reason::WebhookPayloadInvalid.as_str(),
                "email webhook delivery refused"
            );
            AppError::invalid_field_reason(
                "http_body.data",
                Reason::WebhookPayloadInvalid,
                problem.description(),
            )
        })?;
        let taken = db::with_connection(&self.pool, async |conn| {
            email_event::take(conn, &event_id, &event).await
        })
        .await?;
        let outcome = match event.effect {
            EmailEventEffect::Ignored => "ignored_type",
            EmailEventEffect::TransientBounce => "transient_bounce",
            EmailEventEffect::Suppress(_) if !taken.found => "unknown_notification",
            EmailEventEffect::Suppress(_) if taken.suppressed => "suppressed",
            EmailEventEffect::Suppress(_) => "already_suppressed",
        };
        tracing::info!(
            event_id = %event_id,
            event_type = %event.event_type,
            duplicate = taken.duplicate,
            outcome,
            "email webhook event acknowledged"
        );
        Ok(EmailEventReceipt {
            event_id,
            duplicate: taken.duplicate,
            outcome,
        })
    }
}
