//! `supportdesk.v1.NotificationService`: wire ↔ domain for the notifications' admin RPCs, the
//! users' notification settings, the suppression list and the email provider's webhook; the rules
//! live in `service::notifications`. ReceiveEmailEvent takes the body as `google.api.HttpBody`,
//! as ReceivePaymentEvent does, so the bytes the provider signed reach the service unchanged.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{ListPages, required, scope};
use crate::db::models::notification_settings::NotificationSettingsChanges;
use crate::domain::{
    Email, InvalidValue, NotificationKind, NotificationState, PageTokenKeys, hyphenated_uuid,
};
use crate::errors::{AppError, FieldViolations};
use crate::service::{Notifications, SvixHeaders};
use crate::wire::convert::unless_unspecified;
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
        let state = violations.check("state", NotificationState::try_from(message.state));
        let kind = violations.check("kind", unless_unspecified::<NotificationKind>(message.kind));
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
