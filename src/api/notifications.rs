//! `supportdesk.v1.NotificationService`: wire ↔ domain for the notifications' admin RPCs, the
//! users' notification settings, the suppression list and the email provider's webhook; the rules
//! live in `service::notifications`. ReceiveEmailEvent takes the body as `google.api.HttpBody`,
//! as ReceivePaymentEvent does, so the bytes the provider signed reach the service unchanged.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{ListPages, optional_timestamp, required, scope, timestamp};
use crate::db::models::notification_settings::{NotificationSettings, NotificationSettingsChanges};
use crate::db::models::{StoredNotification, StoredSuppression};
use crate::domain::{
    Email, InvalidValue, NotificationKind, NotificationState, PageTokenKeys, SkipReason,
    SuppressionReason, hyphenated_uuid,
};
use crate::errors::{AppError, FieldViolations};
use crate::service::{Notifications, SvixHeaders};
use crate::wire::proto::v1;

/// The request headers (gRPC metadata) of a Svix-signed delivery.
const SVIX_ID_HEADER: &str = "svix-id";
const SVIX_TIMESTAMP_HEADER: &str = "svix-timestamp";
const SVIX_SIGNATURE_HEADER: &str = "svix-signature";

pub struct NotificationApi {
    notifications: Notifications,
    pages: PageTokenKeys,
}

impl NotificationApi {
    pub fn new(notifications: Notifications, pages: PageTokenKeys) -> Self {
        Self {
            notifications,
            pages,
        }
    }
}

#[tonic::async_trait]
impl v1::notification_service_server::NotificationService for NotificationApi {
    async fn list_notifications(
        &self,
        mut request: Request<v1::ListNotificationsRequest>,
    ) -> Result<Response<v1::ListNotificationsResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let state = violations.check("state", state_from_wire(message.state));
        let kind = violations.check("kind", kind_from_wire(message.kind));
        // Page tokens are bound to the filter: a token of the dead list does not page the sent one.
        let list = state.zip(kind).map(|(state, kind)| {
            format!(
                "notifications:{state}:{}",
                kind.map(NotificationKind::as_str).unwrap_or("any")
            )
        });
        let page = ListPages::checked(
            &self.pages,
            caller,
            list.as_deref(),
            &mut violations,
            message.page_size,
            &message.page_token,
        );
        let (Some(state), Some(kind), Some((pages, page_size, after))) = (state, kind, page) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let page = self
            .notifications
            .list(&scope, state, kind, page_size, after)
            .await?;
        Ok(Response::new(v1::ListNotificationsResponse {
            notifications: page.items.iter().map(v1::Notification::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn get_notification(
        &self,
        mut request: Request<v1::GetNotificationRequest>,
    ) -> Result<Response<v1::Notification>, Status> {
        let scope = scope(&mut request)?;
        let id = notification_id(&request.get_ref().id)?;
        let notification = self.notifications.get(&scope, id).await?;
        Ok(Response::new(v1::Notification::from(&notification)))
    }

    async fn redrive_notification(
        &self,
        mut request: Request<v1::RedriveNotificationRequest>,
    ) -> Result<Response<v1::Notification>, Status> {
        let scope = scope(&mut request)?;
        let id = notification_id(&request.get_ref().id)?;
        let notification = self.notifications.redrive(&scope, id).await?;
        Ok(Response::new(v1::Notification::from(&notification)))
    }

    async fn get_notification_settings(
        &self,
        mut request: Request<v1::GetNotificationSettingsRequest>,
    ) -> Result<Response<v1::NotificationSettings>, Status> {
        let scope = scope(&mut request)?;
        let settings = self.notifications.settings(&scope).await?;
        Ok(Response::new(v1::NotificationSettings::from(settings)))
    }

    async fn update_notification_settings(
        &self,
        mut request: Request<v1::UpdateNotificationSettingsRequest>,
    ) -> Result<Response<v1::NotificationSettings>, Status> {
        let scope = scope(&mut request)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let Some(settings) = message.notification_settings else {
            violations.add("notification_settings", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let paths = message
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            violations.add(
                "update_mask",
                &InvalidValue::new("must name at least one of: comment_notifications"),
            );
        }
        let mut changes = NotificationSettingsChanges::default();
        for (index, path) in paths.iter().enumerate() {
            match path.as_str() {
                "comment_notifications" => {
                    changes.comment_notifications = Some(settings.comment_notifications);
                }
                other => violations.add(
                    format!("update_mask.paths[{index}]"),
                    &InvalidValue::new(format!(
                        "{other:?} cannot be updated (allowed: comment_notifications)"
                    )),
                ),
            }
        }
        violations.into_result()?;
        let updated = self.notifications.update_settings(&scope, changes).await?;
        Ok(Response::new(v1::NotificationSettings::from(updated)))
    }

    async fn list_suppressions(
        &self,
        mut request: Request<v1::ListSuppressionsRequest>,
    ) -> Result<Response<v1::ListSuppressionsResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let pages = ListPages::new(&self.pages, caller, "suppressions");
        let (page_size, after) = pages.request(message.page_size, &message.page_token)?;
        let page = self
            .notifications
            .suppressions(&scope, page_size, after)
            .await?;
        Ok(Response::new(v1::ListSuppressionsResponse {
            suppressions: page.items.iter().map(v1::Suppression::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn delete_suppression(
        &self,
        mut request: Request<v1::DeleteSuppressionRequest>,
    ) -> Result<Response<v1::DeleteSuppressionResponse>, Status> {
        let scope = scope(&mut request)?;
        let raw = &request.get_ref().address;
        if raw.is_empty() {
            return Err(AppError::invalid_field("address", &required()).into());
        }
        // A suppression names an address some mail went to, perhaps stored under the old rule.
        let address =
            Email::lookup(raw).map_err(|problem| AppError::invalid_field("address", &problem))?;
        self.notifications
            .delete_suppression(&scope, &address)
            .await?;
        // The method layer turns the declared success into 204 over REST.
        Ok(Response::new(v1::DeleteSuppressionResponse {}))
    }

    async fn receive_email_event(
        &self,
        request: Request<v1::ReceiveEmailEventRequest>,
    ) -> Result<Response<v1::ReceiveEmailEventResponse>, Status> {
        // A header that is not visible ASCII cannot be a signature's part; absent and empty are
        // the same to the verifier (missing).
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .map(|value| value.to_str().unwrap_or("\u{0}").to_owned())
        };
        let (id, stamp, signature) = (
            header(SVIX_ID_HEADER),
            header(SVIX_TIMESTAMP_HEADER),
            header(SVIX_SIGNATURE_HEADER),
        );
        let payload = request
            .into_inner()
            .http_body
            .map(|body| body.data)
            .unwrap_or_default();
        let receipt = self
            .notifications
            .receive_email_event(
                SvixHeaders {
                    id: id.as_deref(),
                    timestamp: stamp.as_deref(),
                    signature: signature.as_deref(),
                },
                &payload,
            )
            .await?;
        Ok(Response::new(v1::ReceiveEmailEventResponse {
            event_id: receipt.event_id,
            duplicate: receipt.duplicate,
            outcome: receipt.outcome.to_owned(),
        }))
    }
}

fn notification_id(raw: &str) -> Result<Uuid, AppError> {
    if raw.is_empty() {
        return Err(AppError::invalid_field("id", &required()));
    }
    hyphenated_uuid(raw)
        .ok_or_else(|| AppError::invalid_field("id", &InvalidValue::new("must be a UUID")))
}

fn state_from_wire(raw: i32) -> Result<NotificationState, InvalidValue> {
    match v1::NotificationState::try_from(raw) {
        Ok(v1::NotificationState::Received) => Ok(NotificationState::Received),
        Ok(v1::NotificationState::Sent) => Ok(NotificationState::Sent),
        Ok(v1::NotificationState::Dead) => Ok(NotificationState::Dead),
        Ok(v1::NotificationState::Skipped) => Ok(NotificationState::Skipped),
        Ok(v1::NotificationState::Unspecified) => Err(InvalidValue::new(
            "is required: RECEIVED, SENT, DEAD or SKIPPED",
        )),
        Err(_) => Err(InvalidValue::new("is not a notification state")),
    }
}

impl From<NotificationState> for v1::NotificationState {
    fn from(state: NotificationState) -> Self {
        match state {
            NotificationState::Received => v1::NotificationState::Received,
            NotificationState::Sent => v1::NotificationState::Sent,
            NotificationState::Dead => v1::NotificationState::Dead,
            NotificationState::Skipped => v1::NotificationState::Skipped,
        }
    }
}

/// A kind filter: unspecified means every kind.
fn kind_from_wire(raw: i32) -> Result<Option<NotificationKind>, InvalidValue> {
    match v1::NotificationKind::try_from(raw) {
        Ok(v1::NotificationKind::Unspecified) => Ok(None),
        Ok(v1::NotificationKind::TicketCreated) => Ok(Some(NotificationKind::TicketCreated)),
        Ok(v1::NotificationKind::CommentAdded) => Ok(Some(NotificationKind::CommentAdded)),
        Ok(v1::NotificationKind::TicketSolved) => Ok(Some(NotificationKind::TicketSolved)),
        Ok(v1::NotificationKind::PasswordReset) => Ok(Some(NotificationKind::PasswordReset)),
        Ok(v1::NotificationKind::Invitation) => Ok(Some(NotificationKind::Invitation)),
        Ok(v1::NotificationKind::ChargeReceipt) => Ok(Some(NotificationKind::ChargeReceipt)),
        Ok(v1::NotificationKind::RefundNotice) => Ok(Some(NotificationKind::RefundNotice)),
        Ok(v1::NotificationKind::EndpointDisabled) => Ok(Some(NotificationKind::EndpointDisabled)),
        Err(_) => Err(InvalidValue::new("is not a notification kind")),
    }
}

impl From<NotificationKind> for v1::NotificationKind {
    fn from(kind: NotificationKind) -> Self {
        match kind {
            NotificationKind::TicketCreated => v1::NotificationKind::TicketCreated,
            NotificationKind::CommentAdded => v1::NotificationKind::CommentAdded,
            NotificationKind::TicketSolved => v1::NotificationKind::TicketSolved,
            NotificationKind::PasswordReset => v1::NotificationKind::PasswordReset,
            NotificationKind::Invitation => v1::NotificationKind::Invitation,
            NotificationKind::ChargeReceipt => v1::NotificationKind::ChargeReceipt,
            NotificationKind::RefundNotice => v1::NotificationKind::RefundNotice,
            NotificationKind::EndpointDisabled => v1::NotificationKind::EndpointDisabled,
        }
    }
}

impl From<Option<SkipReason>> for v1::SkipReason {
    fn from(reason: Option<SkipReason>) -> Self {
        match reason {
            None => v1::SkipReason::Unspecified,
            Some(SkipReason::Suppressed) => v1::SkipReason::Suppressed,
            Some(SkipReason::OptedOut) => v1::SkipReason::OptedOut,
            Some(SkipReason::LinkExpired) => v1::SkipReason::LinkExpired,
        }
    }
}

impl From<SuppressionReason> for v1::SuppressionReason {
    fn from(reason: SuppressionReason) -> Self {
        match reason {
            SuppressionReason::HardBounce => v1::SuppressionReason::HardBounce,
            SuppressionReason::Complaint => v1::SuppressionReason::Complaint,
            SuppressionReason::SmtpPermanentFailure => v1::SuppressionReason::SmtpPermanentFailure,
        }
    }
}

impl From<&StoredNotification> for v1::Notification {
    fn from(notification: &StoredNotification) -> Self {
        v1::Notification {
            id: notification.id.to_string(),
            kind: v1::NotificationKind::from(notification.kind).into(),
            state: v1::NotificationState::from(notification.state).into(),
            recipient_user_id: notification.recipient_user_id.to_string(),
            recipient_address: notification.recipient_address.clone(),
            ticket_id: notification
                .ticket_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            attempts: notification.attempts,
            last_error: notification.last_error.clone().unwrap_or_default(),
            skip_reason: v1::SkipReason::from(notification.skip_reason).into(),
            redrive_count: notification.redrive_count,
            message_id: notification.message_id.clone(),
            create_time: Some(timestamp(notification.created_at)),
            due_time: (notification.state == NotificationState::Received)
                .then(|| timestamp(notification.next_attempt_at)),
            send_time: optional_timestamp(notification.sent_at),
            dead_time: optional_timestamp(notification.dead_at),
            skip_time: optional_timestamp(notification.skipped_at),
        }
    }
}

impl From<NotificationSettings> for v1::NotificationSettings {
    fn from(settings: NotificationSettings) -> Self {
        v1::NotificationSettings {
            comment_notifications: settings.comment_notifications,
        }
    }
}

impl From<&StoredSuppression> for v1::Suppression {
    fn from(suppression: &StoredSuppression) -> Self {
        v1::Suppression {
            address: suppression.address.clone(),
            reason: v1::SuppressionReason::from(suppression.reason).into(),
            detail: suppression.detail.clone(),
            notification_id: suppression
                .notification_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            create_time: Some(timestamp(suppression.created_at)),
        }
    }
}
