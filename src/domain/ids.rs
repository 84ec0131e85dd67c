//! Typed ids, so an account id can never be passed where a ticket id is expected. All are UUIDs;
//! new ones are v7, whose time order keeps index inserts local.

use std::fmt;

use uuid::Uuid;

use super::InvalidValue;

/// `raw` as a UUID when it is in the canonical hyphenated form (8-4-4-4-12 hexadecimal digits,
/// either case, nothing around them): the form protovalidate's `string.uuid` accepts. The
/// simple, braced and `urn:uuid:` spellings `uuid` also parses are refused, so that the rule the
/// protos declare is the rule applied.
pub fn hyphenated_uuid(raw: &str) -> Option<Uuid> {
    if raw.len() != 36 {
        return None;
    }
    // Of the forms `Uuid::try_parse` reads, only the hyphenated one has 36 characters.
    Uuid::try_parse(raw).ok()
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses the canonical hyphenated form a client sends, exactly as sent (the
            /// protos declare `string.uuid`, which takes nothing else).
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                if raw.is_empty() {
                    return Err(InvalidValue::new("is required"));
                }
                hyphenated_uuid(raw).map(Self).ok_or_else(|| {
                    InvalidValue::new(concat!(
                        "must be ", $what, " id (a UUID such as 0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c)"
                    ))
                })
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// The id of an account (tenant).
    AccountId,
    "an account"
);
uuid_id!(
    /// The id of a user of an account.
    UserId,
    "a user"
);
uuid_id!(
    /// The id of a ticket.
    TicketId,
    "a ticket"
);
uuid_id!(
    /// The id of a ticket's comment.
    CommentId,
    "a comment"
);
uuid_id!(
    /// The id of an attachment (a file of a ticket or comment).
    AttachmentId,
    "an attachment"
);
uuid_id!(
    /// The id of a long-running operation (its name is `operations/<id>`).
    OperationId,
    "an operation"
);
uuid_id!(
    /// The id of an API key.
    ApiKeyId,
    "an API key"
);
uuid_id!(
    /// The id of a login session: the family of refresh tokens one login starts.
    SessionId,
    "a session"
);

uuid_id!(
    /// The id of a charge: also our reference at the payment provider.
    ChargeId,
    "a charge"
);
uuid_id!(
    /// The id of a refund of a charge.
    RefundId,
    "a refund"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_round_trips_through_its_text_form() {
        let id = TicketId::generate();
        assert_eq!(TicketId::parse(&id.to_string()), Ok(id));
    }

    #[test]
    fn an_empty_or_malformed_id_is_refused_with_a_reason() {
        assert!(
            TicketId::parse("")
                .unwrap_err()
                .description()
                .contains("required")
        );
        assert!(
            TicketId::parse("42")
                .unwrap_err()
                .description()
                .contains("UUID")
        );
    }
}
