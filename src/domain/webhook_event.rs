//! A payment provider's webhook event as received (docs/webhooks.md): the exact bytes it signed,
//! parsed just enough to be stored and routed. The event id, type and creation time are required;
//! the rest is read only to name the charge the event concerns, and only workers apply it.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{InvalidValue, Timestamp};

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
}
