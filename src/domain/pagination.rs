//! Page sizes and the opaque cursors of keyset pagination.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{InvalidValue, TicketId};

/// How many items a page holds: 0 (unset) means the default; above the maximum is lowered to it,
/// as Google's AIP-158 asks; negative is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageSize(u16);

impl PageSize {
    pub const DEFAULT: u16 = 20;
    pub const MAX: u16 = 100;

    pub fn parse(raw: i32) -> Result<Self, InvalidValue> {
        match raw {
            ..0 => Err(InvalidValue::new(format!(
                "must be between 0 and {} (0 means the default of {})",
                Self::MAX,
                Self::DEFAULT
            ))),
            0 => Ok(Self(Self::DEFAULT)),
            // Lossless: clamped to MAX first.
            _ => Ok(Self(raw.min(i32::from(Self::MAX)) as u16)),
        }
    }

    pub fn get(&self) -> u16 {
        self.0
    }
}

/// Where the next page of a newest-first ticket list starts: the last ticket already returned.
/// Keyset, not offset: tickets created meanwhile do not shift later pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketCursor {
    pub created_at: DateTime<Utc>,
    pub id: TicketId,
}

impl TicketCursor {
    const VERSION: &'static str = "t1";

    /// The opaque `page_token` a client sends back.
    pub fn encode(&self) -> String {
        let raw = format!(
            "{}:{}:{}",
            Self::VERSION,
            self.created_at.timestamp_micros(),
            self.id.as_uuid().simple()
        );
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn parse(token: &str) -> Result<Self, InvalidValue> {
        let invalid = || InvalidValue::new("is not a page token returned by this list");
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| invalid())?;
        let raw = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = raw.split(':');
        let (Some(Self::VERSION), Some(micros), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        let id = Uuid::try_parse(id).map_err(|_| invalid())?;
        Ok(Self {
            created_at,
            id: TicketId::from_uuid(id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn page_size_defaults_clamps_and_refuses_negatives() {
        assert_eq!(PageSize::parse(0).unwrap().get(), 20);
        assert_eq!(PageSize::parse(7).unwrap().get(), 7);
        assert_eq!(PageSize::parse(1000).unwrap().get(), 100);
        assert!(PageSize::parse(-1).is_err());
    }

    #[test]
    fn garbage_is_not_a_page_token() {
        for token in ["", "abc", "dDE6MTox", "!!!"] {
            assert!(
                TicketCursor::parse(token).is_err(),
                "{token:?} was accepted"
            );
        }
    }

    proptest! {
        #[test]
        fn a_cursor_round_trips_through_its_token(micros in 0i64..4_000_000_000_000_000, id in any::<u128>()) {
            let cursor = TicketCursor {
                created_at: DateTime::from_timestamp_micros(micros).unwrap(),
                id: TicketId::from_uuid(Uuid::from_u128(id)),
            };
            prop_assert_eq!(TicketCursor::parse(&cursor.encode()), Ok(cursor));
        }
    }
}
