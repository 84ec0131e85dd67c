//! What a stored webhook event asks the workers to look at: which payment to re-read from the
//! provider, and for a dispute, the dispute's own facts. [`PaymentEvent::parse`] reads the exact
//! bytes the provider signed; an event of a type the service does not handle parses to `None`
//! (stored, marked processed `ignored_type`), a handled one without what it needs is refused.
//!
//! Nothing else is taken from the payload: a charge's state is always re-read from the provider,
//! so the order events arrive in, and how stale each one is, changes nothing.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use uuid::Uuid;

use super::{InvalidValue, Money, Timestamp};

/// The event types the workers apply; every other type is stored and ignored.
pub const HANDLED_EVENT_TYPES: [&str; 4] = [
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.refunded",
    "charge.dispute.created",
];

/// A handled event: the payment it concerns and, for a dispute, the dispute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentEvent {
    /// The provider's payment id (`pi_...`) to re-read.
    pub payment_id: String,
    /// The charge the event's object names in its `metadata[charge_id]`, when it names one. The
    /// workers apply an event to the payment's charge only when this names the same one.
    pub named_charge: Option<Uuid>,
    /// The dispute a `charge.dispute.created` opened.
    pub dispute: Option<DisputeOpened>,
}

/// A dispute (chargeback) as the provider announced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisputeOpened {
    /// The provider's dispute id (`dp_...`).
    pub id: String,
    pub amount: Money,
    /// `fraudulent`, `product_not_received`, ...
    pub reason: String,
    /// `needs_response`, ...
    pub status: String,
    pub opened_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct WireEvent {
    data: WireData,
}

#[derive(Deserialize)]
struct WireData {
    object: WireObject,
}

/// The members of `data.object` the handled types use: a payment intent's `id`, a charge's or a
/// dispute's `payment_intent`, and a dispute's facts.
#[derive(Deserialize)]
struct WireObject {
    id: Option<String>,
    payment_intent: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
    reason: Option<String>,
    status: Option<String>,
    created: Option<i64>,
    metadata: Option<WireMetadata>,
}

#[derive(Deserialize)]
struct WireMetadata {
    /// Any JSON: only a string holding one of our ids names a charge.
    charge_id: Option<serde_json::Value>,
}

impl PaymentEvent {
    /// The event of type `event_type` in `payload`; `Ok(None)` for a type the service ignores.
    pub fn parse(event_type: &str, payload: &[u8]) -> Result<Option<Self>, InvalidValue> {
        if !HANDLED_EVENT_TYPES.contains(&event_type) {
            return Ok(None);
        }
        let event: WireEvent = serde_json::from_slice(payload).map_err(|error| {
            InvalidValue::new(format!("the payload is not a {event_type} event: {error}"))
        })?;
        let object = event.data.object;
        let payment_id = if event_type.starts_with("payment_intent.") {
            object.id.clone()
        } else {
            object.payment_intent.clone()
        };
        let payment_id = payment_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| InvalidValue::new(format!("a {event_type} event names no payment")))?;
        let named_charge = object
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.charge_id.as_ref()?.as_str())
            .and_then(|raw| Uuid::parse_str(raw).ok());
        let dispute = if event_type == "charge.dispute.created" {
            Some(dispute_of(object)?)
        } else {
            None
        };
        Ok(Some(Self {
            payment_id,
            named_charge,
            dispute,
        }))
    }
}

fn dispute_of(object: WireObject) -> Result<DisputeOpened, InvalidValue> {
    let missing = |member: &str| InvalidValue::new(format!("the dispute has no {member}"));
    let id = object
        .id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| missing("id"))?;
    let amount = Money::parse(
        object.amount.ok_or_else(|| missing("amount"))?,
        &object.currency.ok_or_else(|| missing("currency"))?,
    )?;
    if amount.is_zero() {
        return Err(InvalidValue::new("the dispute's amount is zero"));
    }
    let opened_at = object
        .created
        .and_then(|seconds| Timestamp::parse(seconds, 0).ok())
        .ok_or_else(|| missing("valid created time"))?
        .get();
    Ok(DisputeOpened {
        id,
        amount,
        reason: object.reason.ok_or_else(|| missing("reason"))?,
        status: object.status.ok_or_else(|| missing("status"))?,
        opened_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(object: &str) -> Vec<u8> {
        format!(r#"{{"id":"evt_1","type":"x","data":{{"object":{object}}}}}"#).into_bytes()
    }

    #[test]
    fn a_payment_intent_event_names_its_own_payment() {
        let parsed = PaymentEvent::parse(
            "payment_intent.succeeded",
            &event(r#"{"id":"pi_1","object":"payment_intent","status":"succeeded"}"#),
        );
        assert_eq!(
            parsed,
            Ok(Some(PaymentEvent {
                payment_id: "pi_1".to_owned(),
                named_charge: None,
                dispute: None
            }))
        );
    }

    #[test]
    fn a_refund_event_names_the_payment_of_its_charge() {
        let parsed = PaymentEvent::parse(
            "charge.refunded",
            &event(r#"{"id":"ch_1","object":"charge","payment_intent":"pi_7"}"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(parsed.payment_id, "pi_7");
    }

    #[test]
    fn a_dispute_event_carries_the_dispute() {
        let parsed = PaymentEvent::parse(
            "charge.dispute.created",
            &event(
                r#"{"id":"dp_1","object":"dispute","amount":1500,"currency":"usd","charge":"ch_1",
                    "payment_intent":"pi_2","reason":"fraudulent","status":"needs_response",
                    "created":1700000000}"#,
            ),
        )
        .unwrap()
        .unwrap();
        let dispute = parsed.dispute.unwrap();
        assert_eq!(parsed.payment_id, "pi_2");
        assert_eq!(dispute.id, "dp_1");
        assert_eq!(dispute.amount, Money::parse(1500, "USD").unwrap());
        assert_eq!(dispute.reason, "fraudulent");
        assert_eq!(dispute.opened_at.timestamp(), 1_700_000_000);
    }

    #[test]
    fn an_event_names_the_charge_in_its_metadata_when_it_is_one_of_our_ids() {
        let named = |metadata: &str| {
            PaymentEvent::parse(
                "charge.refunded",
                &event(&format!(
                    r#"{{"id":"ch_1","payment_intent":"pi_7","metadata":{metadata}}}"#
                )),
            )
            .unwrap()
            .unwrap()
            .named_charge
        };
        assert_eq!(
            named(r#"{"charge_id":"0192f5b4-0000-7000-8000-000000000001"}"#),
            Some(Uuid::parse_str("0192f5b4-0000-7000-8000-000000000001").unwrap())
        );
        assert_eq!(named(r#"{"charge_id":"ch_not_ours"}"#), None);
        assert_eq!(named(r#"{"charge_id":5}"#), None);
        assert_eq!(named("{}"), None);
    }

    #[test]
    fn other_types_are_ignored_whatever_their_payload() {
        assert_eq!(
            PaymentEvent::parse("customer.created", b"not even json"),
            Ok(None)
        );
    }

    #[test]
    fn a_handled_event_without_its_payment_or_not_json_is_refused() {
        assert!(PaymentEvent::parse("charge.refunded", &event(r#"{"id":"ch_1"}"#)).is_err());
        assert!(PaymentEvent::parse("payment_intent.succeeded", b"{").is_err());
        assert!(
            PaymentEvent::parse(
                "charge.dispute.created",
                &event(r#"{"id":"dp_1","payment_intent":"pi_1","currency":"usd"}"#)
            )
            .is_err()
        );
    }
}
