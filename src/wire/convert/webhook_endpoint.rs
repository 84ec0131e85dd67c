//! The endpoints of the webhooks we send, and their deliveries, as the API shows them.

use super::{optional_timestamp, timestamp};
use crate::domain::{
    DeliveryState, EndpointState, InvalidValue, WebhookDelivery, WebhookEndpoint, event_public_id,
};
use crate::wire::proto::v1;

/// A delivery state a filter names; UNSPECIFIED ("any state") is read with
/// [`super::unless_unspecified`].
impl TryFrom<i32> for DeliveryState {
    type Error = InvalidValue;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match v1::WebhookDeliveryState::try_from(value) {
            Ok(v1::WebhookDeliveryState::Pending) => Ok(DeliveryState::Pending),
            Ok(v1::WebhookDeliveryState::Succeeded) => Ok(DeliveryState::Succeeded),
            Ok(v1::WebhookDeliveryState::Failed) => Ok(DeliveryState::Failed),
            Ok(v1::WebhookDeliveryState::Unspecified) | Err(_) => {
                Err(InvalidValue::new(format!("{value} is no delivery state")))
            }
        }
    }
}

impl From<&WebhookEndpoint> for v1::WebhookEndpoint {
    fn from(endpoint: &WebhookEndpoint) -> Self {
        v1::WebhookEndpoint {
            id: endpoint.id.to_string(),
            url: endpoint.url.clone(),
            description: endpoint.description.clone(),
            event_types: endpoint
                .event_types
                .iter()
                .map(|kind| kind.as_str().to_owned())
                .collect(),
            disabled: endpoint.state == EndpointState::Disabled,
            state: match endpoint.state {
                EndpointState::Enabled => v1::WebhookEndpointState::Enabled,
                EndpointState::Disabled => v1::WebhookEndpointState::Disabled,
            }
            .into(),
            disabled_reason: endpoint
                .disabled_reason
                .map(|reason| reason.as_str().to_owned())
                .unwrap_or_default(),
            disable_time: optional_timestamp(endpoint.disabled_at),
            previous_secret_expire_time: optional_timestamp(endpoint.previous_secret_expires_at),
            create_time: Some(timestamp(endpoint.created_at)),
            update_time: Some(timestamp(endpoint.updated_at)),
        }
    }
}

impl From<&WebhookDelivery> for v1::WebhookDelivery {
    fn from(delivery: &WebhookDelivery) -> Self {
        v1::WebhookDelivery {
            id: delivery.id.to_string(),
            endpoint_id: delivery.endpoint_id.to_string(),
            event_id: event_public_id(delivery.event_id),
            event_type: delivery.event_type.clone(),
            state: match delivery.state {
                DeliveryState::Pending => v1::WebhookDeliveryState::Pending,
                DeliveryState::Succeeded => v1::WebhookDeliveryState::Succeeded,
                DeliveryState::Failed => v1::WebhookDeliveryState::Failed,
            }
            .into(),
            attempts: delivery.attempts,
            next_attempt_time: optional_timestamp(delivery.next_attempt_at),
            create_time: Some(timestamp(delivery.created_at)),
            attempt_log: delivery
                .attempt_log
                .iter()
                .map(|attempt| v1::WebhookDeliveryAttempt {
                    attempt: attempt.attempt,
                    start_time: Some(timestamp(attempt.started_at)),
                    latency_ms: attempt.latency_ms,
                    http_status: attempt.http_status.unwrap_or_default(),
                    error: attempt.error.clone().unwrap_or_default(),
                    response_excerpt: attempt.response_excerpt.clone(),
                    url: attempt.url.clone(),
                })
                .collect(),
        }
    }
}
