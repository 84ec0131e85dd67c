//! Notifications, users' notification settings and the suppression list on the wire.

use super::{optional_timestamp, timestamp};
use crate::db::models::notification_settings::NotificationSettings;
use crate::db::models::{StoredNotification, StoredSuppression};
use crate::domain::{
    InvalidValue, NotificationKind, NotificationState, SkipReason, SuppressionReason,
};
use crate::wire::proto::v1;

/// A state a list asks for: it is required, so UNSPECIFIED is refused, as is a number outside
/// the enum.
impl TryFrom<i32> for NotificationState {
    type Error = InvalidValue;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match v1::NotificationState::try_from(value) {
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
}

/// A kind a filter names; UNSPECIFIED ("every kind") is read with [`super::unless_unspecified`].
impl TryFrom<i32> for NotificationKind {
    type Error = InvalidValue;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match v1::NotificationKind::try_from(value) {
            Ok(v1::NotificationKind::TicketCreated) => Ok(NotificationKind::TicketCreated),
            Ok(v1::NotificationKind::CommentAdded) => Ok(NotificationKind::CommentAdded),
            Ok(v1::NotificationKind::TicketSolved) => Ok(NotificationKind::TicketSolved),
            Ok(v1::NotificationKind::PasswordReset) => Ok(NotificationKind::PasswordReset),
            Ok(v1::NotificationKind::Invitation) => Ok(NotificationKind::Invitation),
            Ok(v1::NotificationKind::ChargeReceipt) => Ok(NotificationKind::ChargeReceipt),
            Ok(v1::NotificationKind::RefundNotice) => Ok(NotificationKind::RefundNotice),
            Ok(v1::NotificationKind::EndpointDisabled) => Ok(NotificationKind::EndpointDisabled),
            Ok(v1::NotificationKind::Unspecified) | Err(_) => {
                Err(InvalidValue::new("is not a notification kind"))
            }
        }
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
