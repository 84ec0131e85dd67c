//! A payment provider's webhook event as received (docs/webhooks.md): the exact bytes it signed,
//! parsed just enough to be stored and routed. The event id, type and creation time are required;
//! the rest is read only to name the charge the event concerns, and only workers apply it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::InvalidValue;

/// The longest event id and type accepted (the table's CHECKs say the same).
const MAX_EVENT_TEXT: usize = 255;

/// Where an event is in its processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookEventState {
    /// Stored and waiting for a worker (or being processed, or due again after a failed attempt).
    Received,
    /// Applied to its charge, or recognised as having nothing to apply.
    Processed,
    /// Failed every attempt; waits for an admin to re-drive it.
    Dead,
}

impl WebhookEventState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Processed => "processed",
            Self::Dead => "dead",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "received" => Ok(Self::Received),
            "processed" => Ok(Self::Processed),
            "dead" => Ok(Self::Dead),
            _ => Err(InvalidValue::new("is not a webhook event state")),
        }
    }
}

impl fmt::Display for WebhookEventState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The provider's event id (`evt_...`): 1 to 255 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WebhookEventId(String);

impl WebhookEventId {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.len() > MAX_EVENT_TEXT {
            return Err(InvalidValue::new(format!(
                "must be the provider's event id, 1 to {MAX_EVENT_TEXT} characters"
            )));
        }
        if !raw.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(InvalidValue::new(
                "must be the provider's event id (printable ASCII, no spaces)",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WebhookEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a signed delivery says about itself: enough to store it once and know which of our
/// charges it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderEvent {
    pub id: WebhookEventId,
    /// `payment_intent.succeeded`, `charge.refunded`, ... (every type is stored).
    pub event_type: String,
    /// The provider's `created`.
    pub created_at: DateTime<Utc>,
    /// Our charge id, from `data.object.metadata.charge_id` (payment intents and charges carry
    /// it because billing sets it); `None` when absent or not one of our ids.
    pub charge_id: Option<Uuid>,
    /// The provider's payment intent the object belongs to: the object's own id for a payment
    /// intent, its `payment_intent` for a charge or a dispute.
    pub payment_intent: Option<String>,
}

/// The event's envelope as JSON; unknown members are ignored.
#[derive(Deserialize)]
struct Envelope {
    id: Option<serde_json::Value>,
    #[serde(rename = "type")]
    event_type: Option<serde_json::Value>,
    created: Option<serde_json::Value>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    object: Option<serde_json::Value>,
}

impl ProviderEvent {
    /// Parses the signed body. Refused when it is not a JSON object with a string `id`, a string
    /// `type` and an integer `created` (Unix seconds); everything else is optional.
    pub fn parse(payload: &[u8]) -> Result<Self, InvalidValue> {
        let envelope: Envelope = serde_json::from_slice(payload)
            .map_err(|_| InvalidValue::new("is not a JSON object"))?;
        let text = |value: Option<serde_json::Value>, name: &str| match value {
            Some(serde_json::Value::String(text)) => Ok(text),
            _ => Err(InvalidValue::new(format!(
                "is not an event: `{name}` must be a string"
            ))),
        };
        let id = WebhookEventId::parse(&text(envelope.id, "id")?)
            .map_err(|problem| InvalidValue::new(format!("is not an event: `id` {problem}")))?;
        let event_type = text(envelope.event_type, "type")?;
        if event_type.is_empty() || event_type.chars().count() > MAX_EVENT_TEXT {
            return Err(InvalidValue::new(format!(
                "is not an event: `type` must be 1 to {MAX_EVENT_TEXT} characters"
            )));
        }
        let created_at = envelope
            .created
            .as_ref()
            .and_then(serde_json::Value::as_i64)
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
            .ok_or_else(|| {
                InvalidValue::new("is not an event: `created` must be a time in Unix seconds")
            })?;
        let object = envelope.data.and_then(|data| data.object);
        let member = |name: &str| {
            object
                .as_ref()
                .and_then(|object| object.get(name))
                .and_then(serde_json::Value::as_str)
        };
        let charge_id = object
            .as_ref()
            .and_then(|object| object.get("metadata"))
            .and_then(|metadata| metadata.get("charge_id"))
            .and_then(serde_json::Value::as_str)
            .and_then(|raw| Uuid::parse_str(raw).ok());
        let payment_intent = match member("object") {
            Some("payment_intent") => member("id"),
            _ => member("payment_intent"),
        }
        .map(str::to_owned);
        Ok(Self {
            id,
            event_type,
            created_at,
            charge_id,
            payment_intent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_payment_intent_event_names_its_charge_and_payment() {
        let event = ProviderEvent::parse(
            br#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded","created":1795000000,
                "data":{"object":{"id":"pi_1","object":"payment_intent",
                "metadata":{"charge_id":"0192f5b4-0000-7000-8000-000000000001"}}}}"#,
        )
        .unwrap();
        assert_eq!(event.id.as_str(), "evt_1");
        assert_eq!(event.event_type, "payment_intent.succeeded");
        assert_eq!(event.created_at.timestamp(), 1_795_000_000);
        assert_eq!(
            event.charge_id,
            Some(Uuid::parse_str("0192f5b4-0000-7000-8000-000000000001").unwrap())
        );
        assert_eq!(event.payment_intent.as_deref(), Some("pi_1"));
    }

    #[test]
    fn a_dispute_names_its_payment_intent_and_no_charge() {
        let event = ProviderEvent::parse(
            br#"{"id":"evt_2","type":"charge.dispute.created","created":1795000000,
                "data":{"object":{"id":"dp_1","object":"dispute","payment_intent":"pi_9"}}}"#,
        )
        .unwrap();
        assert_eq!(event.charge_id, None);
        assert_eq!(event.payment_intent.as_deref(), Some("pi_9"));
    }

    #[test]
    fn a_body_that_is_not_an_event_is_refused() {
        for body in [
            &b""[..],
            b"not json",
            b"[]",
            br#"{"type":"x","created":1}"#,
            br#"{"id":"","type":"x","created":1}"#,
            br#"{"id":"evt 1","type":"x","created":1}"#,
            br#"{"id":7,"type":"x","created":1}"#,
            br#"{"id":"evt_1","created":1}"#,
            br#"{"id":"evt_1","type":"","created":1}"#,
            br#"{"id":"evt_1","type":"x"}"#,
            br#"{"id":"evt_1","type":"x","created":"yesterday"}"#,
            br#"{"id":"evt_1","type":"x","created":1.5}"#,
        ] {
            assert!(
                ProviderEvent::parse(body).is_err(),
                "{} was accepted",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_state_round_trips_through_its_name() {
        for state in [
            WebhookEventState::Received,
            WebhookEventState::Processed,
            WebhookEventState::Dead,
        ] {
            assert_eq!(WebhookEventState::parse(state.as_str()), Ok(state));
        }
        assert!(WebhookEventState::parse("lost").is_err());
    }

    proptest! {
        #[test]
        fn no_body_makes_the_parser_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = ProviderEvent::parse(&body);
        }

        #[test]
        fn any_well_formed_event_is_parsed_with_its_values(
            id in "evt_[A-Za-z0-9]{1,40}",
            event_type in "[a-z_.]{1,60}",
            created in 0i64..4_000_000_000,
        ) {
            let body = serde_json::json!({"id": id, "type": event_type, "created": created});
            let event = ProviderEvent::parse(body.to_string().as_bytes()).unwrap();
            prop_assert_eq!(event.id.as_str(), id.as_str());
            prop_assert_eq!(event.event_type, event_type);
            prop_assert_eq!(event.created_at.timestamp(), created);
        }
    }
}
