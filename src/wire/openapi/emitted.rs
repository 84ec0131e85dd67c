//! What the answers hold, beyond their types: the lengths and shapes of the values the service
//! writes, stated only where they hold for every value it writes and only in output positions
//! (an `OUTPUT_ONLY` field, or any field of a message no request carries), so that none of them
//! becomes a rule for what a client sends: the limits of requests are the protos' own
//! (`buf.validate`, [`super::constraints`]).
//!
//! - By type, as the transcoder prints it: a `Timestamp` is RFC 3339 in UTC with 0, 3, 6 or 9
//!   fractional digits (at most 30 characters), a `Duration` at most 24
//!   (`-315576000000.999999999s`), a 64-bit integer at most 20 digits and a sign.
//! - By field, from the code that fills it (`src/api/`) or the CHECK of the column it is read
//!   from (`migrations/`): ids are UUIDs as `Uuid` prints them (lower case, hyphenated), or
//!   empty where the field does not apply; page tokens are [`PageTokenKeys`]' URL-safe base64;
//!   a page holds at most [`PageSize::MAX`] items; an account's name at most 200 characters.
//!
//! A fact that stops being true is found by the fuzzing test (`rest_contract::fuzzing` checks
//! every answer against the document); a field listed here that is no longer an output is an
//! error of the generator.

use crate::domain::PageSize;
#[cfg(doc)]
use crate::domain::PageTokenKeys;

use super::*;

/// A UUID as `uuid::Uuid` prints it.
const UUID_PATTERN: &str = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

/// The longest page token: a text key of 255 bytes (a provider's event id) with its version,
/// position and 16 bytes of HMAC is 280 bytes, 374 characters of unpadded base64.
pub(super) const PAGE_TOKEN_MAX_LENGTH: u64 = 374;

/// What one output field always holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holds {
    /// A UUID.
    Uuid,
    /// A UUID, or nothing (`""`) where the field does not apply: an unassigned ticket's
    /// assignee, a ticket's ids left out of an export by its `readMask`.
    UuidOrEmpty,
    /// `operations/` and the operation's UUID.
    OperationName,
    /// A page token, empty on the last page.
    PageToken,
    /// The payment provider's event id: 1 to 255 printable ASCII characters, no space
    /// (`WebhookEventId`).
    ProviderEventId,
    /// `v` and the version (`v3`).
    Etag,
    /// A SHA-256 in lower-case hex.
    Sha256Hex,
    /// An account's slug (the `accounts.slug` CHECK).
    AccountSlug,
    /// An ISO 4217 code (the `currency` CHECKs of the billing tables).
    CurrencyCode,
    /// A refresh token: 32 random bytes, or the HMAC-SHA256 that rotates one, in unpadded
    /// URL-safe base64 (`auth::sessions`).
    RefreshToken,
    /// A JWT: three unpadded URL-safe base64 parts (`auth::tokens`).
    Jwt,
    /// A new API key's secret: `sd_live_` and 32 random bytes in unpadded URL-safe base64; empty
    /// when a replay answers, as secrets are never stored (`auth::api_key_secret`).
    ApiKeySecretOrEmpty,
    /// The first twelve characters of a key's secret (`auth::api_key_secret`).
    ApiKeyPrefix,
    /// A `Message-ID` (the `notifications.message_id` CHECK).
    MessageId,
    /// An event's id: `evt_` and the 32 hex digits of its UUID (`domain::event_public_id`).
    EventId,
    /// An event type of the catalogue (`domain::EventType`): `resource.what_happened`.
    EventType,
    /// The payload version of events: a date (`wire::convert::event::EVENT_API_VERSION`).
    ApiVersion,
    /// The field paths a ticket event lists: at most the five fields a change can change.
    FieldPaths,
    /// A webhook endpoint's signing secret: `whsec_` and the base64 of 32 random bytes; empty
    /// when a replay answers (`domain::SigningSecret`).
    SigningSecretOrEmpty,
    /// A WatchEvents cursor: `<txid>.<seq>`, two non-negative integers of at most 18 digits.
    EventCursor,
    /// Text of at most so many characters (a `char_length` CHECK of its column).
    Characters(u64),
    /// A list of at most so many items.
    AtMostItems(u64),
}

/// The output fields whose values the code that fills them decides, by full name.
const FIELDS: &[(&str, Holds)] = &[
    ("supportdesk.v1.Account.id", Holds::Uuid),
    ("supportdesk.v1.ActivityRecord.id", Holds::Uuid),
    (
        "supportdesk.v1.ActivityRecord.ticket_id",
        Holds::UuidOrEmpty,
    ),
    (
        "supportdesk.v1.ActivityRecord.charge_id",
        Holds::UuidOrEmpty,
    ),
    (
        "supportdesk.v1.ActivityRecord.actor_user_id",
        Holds::UuidOrEmpty,
    ),
    (
        "supportdesk.v1.ActivityRecord.actor_api_key_id",
        Holds::UuidOrEmpty,
    ),
    ("supportdesk.v1.ApiKey.id", Holds::Uuid),
    ("supportdesk.v1.Attachment.id", Holds::Uuid),
    ("supportdesk.v1.Attachment.ticket_id", Holds::Uuid),
    ("supportdesk.v1.Attachment.comment_id", Holds::UuidOrEmpty),
    ("supportdesk.v1.Attachment.uploader_id", Holds::UuidOrEmpty),
    ("supportdesk.v1.Attachment.sha256", Holds::Sha256Hex),
    ("supportdesk.v1.Charge.id", Holds::Uuid),
    ("supportdesk.v1.Charge.account_id", Holds::Uuid),
    ("supportdesk.v1.Charge.etag", Holds::Etag),
    ("supportdesk.v1.Comment.id", Holds::Uuid),
    ("supportdesk.v1.Comment.ticket_id", Holds::Uuid),
    ("supportdesk.v1.Comment.author_id", Holds::UuidOrEmpty),
    (
        "supportdesk.v1.ListTicketChangesResponse.next_cursor",
        Holds::PageToken,
    ),
    ("supportdesk.v1.Notification.id", Holds::Uuid),
    ("supportdesk.v1.Notification.recipient_user_id", Holds::Uuid),
    ("supportdesk.v1.Notification.ticket_id", Holds::UuidOrEmpty),
    (
        "supportdesk.v1.ReceivePaymentEventResponse.event_id",
        Holds::ProviderEventId,
    ),
    ("supportdesk.v1.ReconciliationFinding.id", Holds::Uuid),
    ("supportdesk.v1.ReconciliationFinding.run_id", Holds::Uuid),
    (
        "supportdesk.v1.ReconciliationFinding.charge_id",
        Holds::UuidOrEmpty,
    ),
    (
        "supportdesk.v1.ReconciliationFinding.refund_id",
        Holds::UuidOrEmpty,
    ),
    (
        "supportdesk.v1.Suppression.notification_id",
        Holds::UuidOrEmpty,
    ),
    ("supportdesk.v1.Ticket.id", Holds::UuidOrEmpty),
    ("supportdesk.v1.Ticket.account_id", Holds::UuidOrEmpty),
    ("supportdesk.v1.Ticket.requester_id", Holds::UuidOrEmpty),
    ("supportdesk.v1.TicketActivity.id", Holds::Uuid),
    ("supportdesk.v1.TicketActivity.ticket_id", Holds::Uuid),
    (
        "supportdesk.v1.TicketActivity.actor_user_id",
        Holds::UuidOrEmpty,
    ),
    (
        "supportdesk.v1.TicketActivity.actor_api_key_id",
        Holds::UuidOrEmpty,
    ),
    ("supportdesk.v1.User.id", Holds::Uuid),
    ("supportdesk.v1.User.account_id", Holds::Uuid),
    ("supportdesk.v1.WebhookEvent.id", Holds::ProviderEventId),
    ("supportdesk.v1.WebhookEvent.charge_id", Holds::UuidOrEmpty),
    ("google.longrunning.Operation.name", Holds::OperationName),
    ("supportdesk.v1.Account.name", Holds::Characters(200)),
    ("supportdesk.v1.Account.slug", Holds::AccountSlug),
    ("supportdesk.v1.ApiKey.prefix", Holds::ApiKeyPrefix),
    ("supportdesk.v1.Attachment.filename", Holds::Characters(255)),
    (
        "supportdesk.v1.Attachment.content_type",
        Holds::Characters(100),
    ),
    (
        "supportdesk.v1.CreateApiKeyResponse.secret",
        Holds::ApiKeySecretOrEmpty,
    ),
    (
        "supportdesk.v1.CurrencyRevenue.currency",
        Holds::CurrencyCode,
    ),
    ("supportdesk.v1.Notification.message_id", Holds::MessageId),
    (
        "supportdesk.v1.Notification.recipient_address",
        Holds::Characters(254),
    ),
    ("supportdesk.v1.Suppression.address", Holds::Characters(254)),
    ("supportdesk.v1.Suppression.detail", Holds::Characters(300)),
    ("supportdesk.v1.Tokens.access_token", Holds::Jwt),
    ("supportdesk.v1.Tokens.refresh_token", Holds::RefreshToken),
    ("supportdesk.v1.WebhookEvent.type", Holds::Characters(255)),
    ("supportdesk.v1.Event.id", Holds::EventId),
    ("supportdesk.v1.Event.type", Holds::EventType),
    ("supportdesk.v1.Event.account_id", Holds::Uuid),
    ("supportdesk.v1.Event.api_version", Holds::ApiVersion),
    ("supportdesk.v1.Event.changed_fields", Holds::FieldPaths),
    ("supportdesk.v1.EventRefund.id", Holds::Uuid),
    (
        "supportdesk.v1.CreateWebhookEndpointResponse.secret",
        Holds::SigningSecretOrEmpty,
    ),
    (
        "supportdesk.v1.RotateWebhookEndpointSecretResponse.secret",
        Holds::SigningSecretOrEmpty,
    ),
    (
        "supportdesk.v1.WatchEventsResponse.cursor",
        Holds::EventCursor,
    ),
    ("supportdesk.v1.WebhookEndpoint.id", Holds::Uuid),
    ("supportdesk.v1.Group.id", Holds::Uuid),
    ("supportdesk.v1.Schedule.id", Holds::Uuid),
    ("supportdesk.v1.SlaPolicy.id", Holds::Uuid),
    // A zone of the tz database, as it spells it (the `schedules.time_zone` CHECK's bound).
    (
        "supportdesk.v1.ComputeDueTimeResponse.time_zone",
        Holds::Characters(64),
    ),
    // A stored tag: `domain::MAX_TAG_CHARS` characters at most.
    ("supportdesk.v1.TagCount.tag", Holds::Characters(64)),
    ("supportdesk.v1.CustomField.id", Holds::Uuid),
    // The whole catalogue in one answer: at most 100 fields an account may define.
    (
        "supportdesk.v1.ListCustomFieldsResponse.custom_fields",
        Holds::AtMostItems(100),
    ),
    ("supportdesk.v1.GroupMember.group_id", Holds::Uuid),
    ("supportdesk.v1.View.id", Holds::Uuid),
    ("supportdesk.v1.View.owner_id", Holds::Uuid),
    ("supportdesk.v1.ViewCount.view_id", Holds::Uuid),
    // One count per view asked for: at most 50 (`CountViewsRequest.view_ids`, or the first 50
    // views the caller sees).
    (
        "supportdesk.v1.CountViewsResponse.counts",
        Holds::AtMostItems(50),
    ),
    ("supportdesk.v1.GroupMember.user_id", Holds::Uuid),
    // `failing`, `by_admin`, or empty (the `webhook_endpoints.disabled_reason` CHECK).
    (
        "supportdesk.v1.WebhookEndpoint.disabled_reason",
        Holds::Characters(8),
    ),
    ("supportdesk.v1.WebhookDelivery.id", Holds::Uuid),
    ("supportdesk.v1.WebhookDelivery.endpoint_id", Holds::Uuid),
    ("supportdesk.v1.WebhookDelivery.event_id", Holds::EventId),
    (
        "supportdesk.v1.WebhookDelivery.event_type",
        Holds::EventType,
    ),
    (
        "supportdesk.v1.WebhookDelivery.attempt_log",
        Holds::AtMostItems(20),
    ),
    // The worker keeps 500 characters of an error, the first 2 KiB of an answer (as text, at
    // most as many characters as bytes), and the URL as the endpoint had it (2048 at most).
    (
        "supportdesk.v1.WebhookDeliveryAttempt.error",
        Holds::Characters(500),
    ),
    (
        "supportdesk.v1.WebhookDeliveryAttempt.response_excerpt",
        Holds::Characters(2048),
    ),
    (
        "supportdesk.v1.WebhookDeliveryAttempt.url",
        Holds::Characters(2048),
    ),
    // At most one of each of google.rpc's ten detail types: tonic's ErrorDetails, and Envoy's
    // replies (ErrorInfo and a BadRequest).
    ("google.rpc.Status.details", Holds::AtMostItems(10)),
    // The service answers every operation it lists: none is unreachable.
    (
        "google.longrunning.ListOperationsResponse.unreachable",
        Holds::AtMostItems(0),
    ),
];

impl Holds {
    /// The keywords that say it of a string.
    fn keywords(self) -> Json {
        match self {
            Self::Uuid => json!({ "format": "uuid", "maxLength": 36 }),
            Self::UuidOrEmpty => {
                json!({ "pattern": format!("^({UUID_PATTERN})?$"), "maxLength": 36 })
            }
            Self::OperationName => json!({
                "pattern": format!("^operations/{UUID_PATTERN}$"),
                "maxLength": 47,
            }),
            Self::PageToken => json!({
                "pattern": "^[A-Za-z0-9_-]*$",
                "maxLength": PAGE_TOKEN_MAX_LENGTH,
            }),
            Self::ProviderEventId => {
                json!({ "pattern": "^[!-~]+$", "minLength": 1, "maxLength": 255 })
            }
            // A version is an i64 counted up from 1.
            Self::Etag => json!({ "pattern": "^v[0-9]+$", "maxLength": 20 }),
            Self::Sha256Hex => json!({ "pattern": "^[0-9a-f]{64}$", "maxLength": 64 }),
            Self::AccountSlug => json!({ "pattern": "^[a-z0-9][a-z0-9-]{0,62}$", "maxLength": 63 }),
            Self::CurrencyCode => json!({ "pattern": "^[A-Z]{3}$", "maxLength": 3 }),
            Self::RefreshToken => json!({ "pattern": "^[A-Za-z0-9_-]{43}$", "maxLength": 43 }),
            // Its length follows its claims: the document says only its shape.
            Self::Jwt => json!({ "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$" }),
            Self::ApiKeySecretOrEmpty => {
                json!({ "pattern": "^(sd_live_[A-Za-z0-9_-]{43})?$", "maxLength": 51 })
            }
            Self::ApiKeyPrefix => {
                json!({ "pattern": "^sd_live_[A-Za-z0-9_-]{4}$", "maxLength": 12 })
            }
            // Its host is the deployment's: the document says only its shape.
            Self::MessageId => json!({ "pattern": "^<[^<>\\s]+@[^<>\\s]+>$" }),
            Self::EventId => json!({ "pattern": "^evt_[0-9a-f]{32}$", "maxLength": 36 }),
            Self::EventType => json!({ "pattern": "^[a-z]+\\.[a-z_]+$", "maxLength": 32 }),
            Self::ApiVersion => {
                json!({ "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "maxLength": 10 })
            }
            Self::FieldPaths => json!({
                "maxItems": 5,
                "items": { "type": "string", "pattern": "^[a-z_]+$", "maxLength": 32 },
            }),
            Self::SigningSecretOrEmpty => {
                json!({ "pattern": "^(whsec_[A-Za-z0-9+/]{43}=)?$", "maxLength": 50 })
            }
            Self::EventCursor => {
                json!({ "pattern": "^[0-9]{1,18}\\.[0-9]{1,18}$", "maxLength": 37 })
            }
            Self::Characters(most) => json!({ "maxLength": most }),
            Self::AtMostItems(most) => json!({ "maxItems": most }),
        }
    }
}

/// What every printed value of a field of `kind` holds, whatever the field: `None` when its type
/// says nothing more than the schema already does.
fn printed(kind: &Kind) -> Option<Json> {
    match kind {
        Kind::Message(message) => match message.full_name() {
            "google.protobuf.Timestamp" => Some(json!({ "maxLength": 30 })),
            "google.protobuf.Duration" => Some(json!({ "maxLength": 24 })),
            _ => None,
        },
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
            Some(json!({ "maxLength": 20 }))
        }
        Kind::Double
        | Kind::Float
        | Kind::Int32
        | Kind::Uint32
        | Kind::Sint32
        | Kind::Fixed32
        | Kind::Sfixed32
        | Kind::Bool
        | Kind::String
        | Kind::Bytes
        | Kind::Enum(_) => None,
    }
}

/// What the value of `field` always holds, when the document can say more than its type.
fn held_by(field: &FieldDescriptor) -> Option<Json> {
    if let Some((_, holds)) = FIELDS.iter().find(|(name, _)| *name == field.full_name()) {
        return Some(holds.keywords());
    }
    // AIP-158's name: every list writes its token with the service's page token keys.
    if field.name() == "next_page_token" && field.kind() == Kind::String {
        return Some(Holds::PageToken.keywords());
    }
    printed(&field.kind())
}

/// Adds `keywords` to `schema` (an object schema; a `$ref` with siblings is one too).
fn add(schema: &mut Json, keywords: Json) {
    if let (Some(schema), Json::Object(keywords)) = (schema.as_object_mut(), keywords) {
        schema.extend(keywords);
    }
}

/// The component schemas a request can reach: those its parameters and body name, and those
/// they name in turn.
pub(super) fn sent_by_clients(
    paths: &BTreeMap<String, Map<String, Json>>,
    schemas: &Map<String, Json>,
) -> BTreeSet<String> {
    fn names(value: &Json, found: &mut Vec<String>) {
        match value {
            Json::Object(object) => {
                for (key, inner) in object {
                    match (key.as_str(), inner) {
                        ("$ref", Json::String(target)) => {
                            if let Some(name) = target.strip_prefix("#/components/schemas/") {
                                found.push(name.to_owned());
                            }
                        }
                        _ => names(inner, found),
                    }
                }
            }
            Json::Array(items) => items.iter().for_each(|item| names(item, found)),
            Json::Null | Json::Bool(_) | Json::Number(_) | Json::String(_) => {}
        }
    }
    let mut pending = Vec::new();
    for operation in paths.values().flat_map(Map::values) {
        names(&operation["parameters"], &mut pending);
        names(&operation["requestBody"], &mut pending);
    }
    let mut reached = BTreeSet::new();
    while let Some(name) = pending.pop() {
        if reached.insert(name.clone())
            && let Some(schema) = schemas.get(&name)
        {
            names(schema, &mut pending);
        }
    }
    reached
}

impl Generator {
    /// Writes what the answers hold into the message schemas of `schemas`: into every field of a
    /// message no request carries, and into the `OUTPUT_ONLY` fields of the others.
    pub(super) fn state_what_answers_hold(
        &self,
        pool: &DescriptorPool,
        schemas: &mut Map<String, Json>,
        sent_by_clients: &BTreeSet<String>,
    ) -> Result<(), OpenApiError> {
        let mut not_outputs = Vec::new();
        for (name, _) in FIELDS {
            let Some((message, field)) = name.rsplit_once('.') else {
                continue;
            };
            let field = pool
                .get_message_by_name(message)
                .and_then(|message| message.get_field_by_name(field));
            let is_output = field.is_some_and(|field| {
                !sent_by_clients.contains(message) || self.has_behavior(&field, OUTPUT_ONLY)
            });
            if !is_output {
                not_outputs.push(*name);
            }
        }
        if !not_outputs.is_empty() {
            return Err(OpenApiError(format!(
                "src/wire/openapi/emitted.rs states what these fields hold, but they are no \
                 output field of a message the document has: {not_outputs:?}"
            )));
        }
        for (name, schema) in schemas.iter_mut() {
            let Some(message) = pool.get_message_by_name(name) else {
                continue;
            };
            let response_only = !sent_by_clients.contains(name);
            let is_page = message.get_field_by_name("next_page_token").is_some()
                || message.get_field_by_name("next_cursor").is_some();
            for field in message.fields() {
                if !response_only && !self.has_behavior(&field, OUTPUT_ONLY) {
                    continue;
                }
                let Some(property) = schema
                    .get_mut("properties")
                    .and_then(|properties| properties.get_mut(field.json_name()))
                else {
                    continue;
                };
                if field.is_map() {
                    continue;
                }
                if field.is_list() {
                    if is_page && matches!(field.kind(), Kind::Message(_)) {
                        add(property, json!({ "maxItems": PageSize::MAX }));
                    }
                    match held_by(&field) {
                        Some(keywords) if keywords.get("maxItems").is_some() => {
                            add(property, keywords);
                        }
                        Some(keywords) => {
                            if let Some(items) = property.get_mut("items") {
                                add(items, keywords);
                            }
                        }
                        None => {}
                    }
                } else if let Some(keywords) = held_by(&field) {
                    add(property, keywords);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PageScope, PageTokenKeys, TextPageCursor};

    #[test]
    fn the_longest_page_token_the_service_writes_fits_the_documented_bound() {
        let keys = PageTokenKeys::new(vec![vec![7; 32]]);
        let scope = PageScope {
            account: crate::domain::AccountId::from_uuid(uuid::Uuid::nil()),
            list: "webhook-events",
        };
        let longest = keys.encode_text(
            &TextPageCursor {
                at: chrono::Utc::now(),
                id: "e".repeat(255),
            },
            scope,
        );
        assert_eq!(longest.len() as u64, PAGE_TOKEN_MAX_LENGTH);
        assert!(
            longest
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        );
    }

    #[test]
    fn a_printed_timestamp_and_duration_are_never_longer_than_stated() {
        assert_eq!("9999-12-31T23:59:59.999999999Z".len(), 30);
        assert_eq!("-315576000000.999999999s".len(), 24);
        assert_eq!(i64::MIN.to_string().len(), 20);
        assert_eq!(u64::MAX.to_string().len(), 20);
    }
}
