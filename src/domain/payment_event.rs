//! A payment provider's event (an incoming webhook, docs/webhooks.md), in the two steps the
//! service reads it. **As received** ([`ProviderEvent`]): the exact bytes it signed, parsed just
//! enough to be stored and routed. The event id, type and creation time are required; the rest is
//! read only to name the charge the event concerns, and only workers apply it. **As applied**
//! ([`PaymentEvent`]): what a stored event asks the workers to look at, which payment to re-read
//! from the provider, and for a dispute, the dispute's own facts. [`PaymentEvent::parse`] reads
//! the exact bytes the provider signed; an event of a type the service does not handle parses to
//! `None` (stored, marked processed `ignored_type`), a handled one without what it needs is
//! refused.
//!
//! Nothing else is taken from the payload: a charge's state is always re-read from the provider,
//! so the order events arrive in, and how stale each one is, changes nothing.
//!
//! The names `WebhookEventId` and `WebhookEventState` are those of the API's `WebhookEvent` and
//! of the `webhook_events` table, which keep theirs.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{InvalidValue, Money, Timestamp};

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

/// Why a webhook event was quarantined: applied to no charge and filed under no account, because
/// its fields name charges that disagree (docs/webhooks.md, "Quarantine").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuarantineReason {
    /// The charge the object's metadata names and the payment's charge are in different accounts.
    AccountsDisagree,
    /// They are two different charges of one account.
    ChargesDisagree,
    /// The metadata names one of our charges; the payment belongs to none of ours.
    PaymentNotOfNamedCharge,
}

impl QuarantineReason {
    pub const ALL: [Self; 3] = [
        Self::AccountsDisagree,
        Self::ChargesDisagree,
        Self::PaymentNotOfNamedCharge,
    ];

    /// Why an event naming `named` (its metadata's charge, and that charge's account) about a
    /// payment whose charge is `payment_charge` would be quarantined; `None` when they agree.
    pub fn between<A: PartialEq, C: PartialEq>(
        named: (A, C),
        payment_charge: Option<(A, C)>,
    ) -> Option<Self> {
        match payment_charge {
            None => Some(Self::PaymentNotOfNamedCharge),
            Some((account, _)) if account != named.0 => Some(Self::AccountsDisagree),
            Some((_, charge)) if charge != named.1 => Some(Self::ChargesDisagree),
            Some(_) => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountsDisagree => "accounts_disagree",
            Self::ChargesDisagree => "charges_disagree",
            Self::PaymentNotOfNamedCharge => "payment_not_of_named_charge",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|reason| reason.as_str() == raw)
            .ok_or_else(|| InvalidValue::new("is not a quarantine reason"))
    }
}

impl fmt::Display for QuarantineReason {
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

impl ProviderEvent {
    /// Parses the signed body. Refused when it is not UTF-8 JSON holding only text PostgreSQL can
    /// store (no NUL character anywhere, in a value or a member's name), or not an object with a
    /// string `id`, a string `type` and an integer `created` (Unix seconds, years 1 to 9999);
    /// everything else is optional.
    pub fn parse(payload: &[u8]) -> Result<Self, InvalidValue> {
        let text = std::str::from_utf8(payload).map_err(|error| {
            InvalidValue::new(format!(
                "is not UTF-8 text (invalid byte at offset {})",
                error.valid_up_to()
            ))
        })?;
        let envelope: serde_json::Value =
            serde_json::from_str(text).map_err(|_| InvalidValue::new("is not a JSON object"))?;
        if !envelope.is_object() {
            return Err(InvalidValue::new("is not a JSON object"));
        }
        if let Some(member) = member_holding_nul(&envelope, "") {
            return Err(InvalidValue::new(format!(
                "is not an event PostgreSQL can store: `{member}` holds a NUL character (\\u0000)"
            )));
        }
        let text = |name: &str| match envelope.get(name) {
            Some(serde_json::Value::String(text)) => Ok(text.as_str()),
            _ => Err(InvalidValue::new(format!(
                "is not an event: `{name}` must be a string"
            ))),
        };
        let id = WebhookEventId::parse(text("id")?)
            .map_err(|problem| InvalidValue::new(format!("is not an event: `id` {problem}")))?;
        let event_type = text("type")?.to_owned();
        if event_type.is_empty() || event_type.chars().count() > MAX_EVENT_TEXT {
            return Err(InvalidValue::new(format!(
                "is not an event: `type` must be 1 to {MAX_EVENT_TEXT} characters"
            )));
        }
        let created_at = envelope
            .get("created")
            .and_then(serde_json::Value::as_i64)
            .and_then(|seconds| Timestamp::parse(seconds, 0).ok())
            .ok_or_else(|| {
                InvalidValue::new(
                    "is not an event: `created` must be a time in Unix seconds, in years 1 to 9999",
                )
            })?
            .get();
        let object = envelope
            .get("data")
            .and_then(|data| data.get("object"))
            .filter(|object| object.is_object());
        let member = |name: &str| {
            object
                .and_then(|object| object.get(name))
                .and_then(serde_json::Value::as_str)
        };
        let charge_id = object
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

/// The path (`data.object.reason`, `data.object.metadata`, `items[2]`) of the first member whose
/// name or string value holds a NUL character, which PostgreSQL's `text` cannot store.
fn member_holding_nul(value: &serde_json::Value, path: &str) -> Option<String> {
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(|| path.to_owned()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| member_holding_nul(item, &format!("{path}[{index}]"))),
        serde_json::Value::Object(members) => members.iter().find_map(|(name, member)| {
            let path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            if name.contains('\0') {
                Some(path.replace('\0', "\\u0000"))
            } else {
                member_holding_nul(member, &path)
            }
        }),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => None,
    }
}

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
    fn a_nul_character_anywhere_is_refused_naming_the_member() {
        for (body, member) in [
            (
                &br#"{"id":"evt_1","type":"charge.\u0000refunded","created":1}"#[..],
                "`type`",
            ),
            (
                br#"{"id":"evt_1","type":"x","created":1,"data":{"object":{"reason":"a\u0000"}}}"#,
                "`data.object.reason`",
            ),
            (
                br#"{"id":"evt_1","type":"x","created":1,"data":{"list":["ok","\u0000"]}}"#,
                "`data.list[1]`",
            ),
            (
                br#"{"id":"evt_1","type":"x","created":1,"data":{"a\u0000b":1}}"#,
                "`data.a\\u0000b`",
            ),
        ] {
            let problem = ProviderEvent::parse(body).unwrap_err();
            assert!(
                problem.description().contains(member) && problem.description().contains("NUL"),
                "{problem}"
            );
        }
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_with_where_it_stops_being_text() {
        let problem = ProviderEvent::parse(b"{\"id\":\"evt_1\",\"type\":\"x\xff\",\"created\":1}")
            .unwrap_err();
        assert_eq!(
            problem.description(),
            "is not UTF-8 text (invalid byte at offset 23)"
        );
    }

    #[test]
    fn a_creation_time_postgresql_cannot_store_is_refused() {
        for created in ["-100000000000", "253402300800", "9000000000000"] {
            let body = format!(r#"{{"id":"evt_1","type":"x","created":{created}}}"#);
            let problem = ProviderEvent::parse(body.as_bytes()).unwrap_err();
            assert!(
                problem.description().contains("`created`"),
                "{created}: {problem}"
            );
        }
        let last = ProviderEvent::parse(br#"{"id":"evt_1","type":"x","created":253402300799}"#);
        assert_eq!(last.unwrap().created_at.timestamp(), 253_402_300_799);
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

    #[test]
    fn an_event_is_quarantined_only_when_what_it_names_disagrees() {
        assert_eq!(QuarantineReason::between(("a", 1), Some(("a", 1))), None);
        assert_eq!(
            QuarantineReason::between(("a", 1), Some(("b", 2))),
            Some(QuarantineReason::AccountsDisagree)
        );
        assert_eq!(
            QuarantineReason::between(("a", 1), Some(("a", 2))),
            Some(QuarantineReason::ChargesDisagree)
        );
        assert_eq!(
            QuarantineReason::between(("a", 1), None),
            Some(QuarantineReason::PaymentNotOfNamedCharge)
        );
        for reason in QuarantineReason::ALL {
            assert_eq!(QuarantineReason::parse(reason.as_str()), Ok(reason));
        }
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
