//! Page sizes and the opaque cursors of keyset pagination.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::InvalidValue;

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

/// Where the next page of a newest-first list starts: the last item already returned. Keyset,
/// not offset: items created meanwhile do not shift later pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageCursor {
    /// The sort timestamp of the last item returned (created or updated time).
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl PageCursor {
    /// The opaque `page_token` a client sends back. `list` names the list it belongs to, so a
    /// token of one list is refused by another.
    pub fn encode(&self, list: &str) -> String {
        let raw = format!("{list}:{}:{}", self.at.timestamp_micros(), self.id.simple());
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn parse(token: &str, list: &str) -> Result<Self, InvalidValue> {
        let invalid = || InvalidValue::new("is not a page token returned by this list");
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| invalid())?;
        let raw = String::from_utf8(bytes).map_err(|_| invalid())?;
        // From the right: the list's name may itself contain colons.
        let mut parts = raw.rsplitn(3, ':');
        let (Some(id), Some(micros), Some(owner)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        if owner != list {
            return Err(invalid());
        }
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        let id = Uuid::try_parse(id).map_err(|_| invalid())?;
        Ok(Self { at, id })
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
                PageCursor::parse(token, "tickets").is_err(),
                "{token:?} was accepted"
            );
        }
    }

    proptest! {
        #[test]
        fn a_cursor_round_trips_through_its_token(micros in 0i64..4_000_000_000_000_000, id in any::<u128>()) {
            let cursor = PageCursor {
                at: DateTime::from_timestamp_micros(micros).unwrap(),
                id: Uuid::from_u128(id),
            };
            prop_assert_eq!(PageCursor::parse(&cursor.encode("tickets"), "tickets"), Ok(cursor));
            prop_assert!(PageCursor::parse(&cursor.encode("users"), "tickets").is_err());
            prop_assert_eq!(PageCursor::parse(&cursor.encode("tickets:ab12"), "tickets:ab12"), Ok(cursor));
            prop_assert!(PageCursor::parse(&cursor.encode("tickets:ab12"), "tickets:cd34").is_err());
        }
    }
}
