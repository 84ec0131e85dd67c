//! The payment provider's events as the API's `WebhookEvent` shows them to admins (the proto
//! keeps the name of the service that receives them, `WebhookService`).

use super::{optional_timestamp, timestamp};
use crate::db::models::StoredWebhookEvent;
use crate::domain::{InvalidValue, WebhookEventState};
use crate::wire::proto::v1;

/// A state a list asks for: it is required, so UNSPECIFIED is refused, as is a number outside
/// the enum.
impl TryFrom<i32> for WebhookEventState {
    type Error = InvalidValue;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match v1::WebhookEventState::try_from(value) {
            Ok(v1::WebhookEventState::Received) => Ok(WebhookEventState::Received),
            Ok(v1::WebhookEventState::Processed) => Ok(WebhookEventState::Processed),
            Ok(v1::WebhookEventState::Dead) => Ok(WebhookEventState::Dead),
            Ok(v1::WebhookEventState::Unspecified) => Err(InvalidValue::new(
                "is required: RECEIVED, PROCESSED or DEAD",
            )),
            Err(_) => Err(InvalidValue::new("is not a webhook event state")),
        }
    }
}

impl From<WebhookEventState> for v1::WebhookEventState {
    fn from(state: WebhookEventState) -> Self {
        match state {
            WebhookEventState::Received => v1::WebhookEventState::Received,
            WebhookEventState::Processed => v1::WebhookEventState::Processed,
            WebhookEventState::Dead => v1::WebhookEventState::Dead,
        }
    }
}

impl From<&StoredWebhookEvent> for v1::WebhookEvent {
    fn from(event: &StoredWebhookEvent) -> Self {
        v1::WebhookEvent {
            id: event.id.to_string(),
            r#type: event.event_type.clone(),
            state: v1::WebhookEventState::from(event.state).into(),
            charge_id: event.charge_id.map(|id| id.to_string()).unwrap_or_default(),
            attempts: event.attempts,
            last_error: event.last_error.clone().unwrap_or_default(),
            outcome: event.outcome.clone().unwrap_or_default(),
            redrive_count: event.redrive_count,
            create_time: Some(timestamp(event.provider_created_at)),
            receive_time: Some(timestamp(event.received_at)),
            process_time: optional_timestamp(event.processed_at),
            dead_time: optional_timestamp(event.dead_at),
            next_attempt_time: (event.state == WebhookEventState::Received)
                .then(|| timestamp(event.next_attempt_at)),
        }
    }
}
