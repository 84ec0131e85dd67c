//! Page sizes and the cursors of keyset pagination, carried in page tokens that are opaque,
//! signed with a server key and bound to the account, the list and its query: a client can
//! neither forge a position nor replay a token against another list or account.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::{AccountId, InvalidValue, Timestamp};

/// How many items a page holds: 0 (unset) means the default; above the maximum is lowered to it,
/// as Google's AIP-158 asks; negative is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageSize(u16);

impl PageSize {
    pub const DEFAULT: u16 = 20;
    pub const MAX: u16 = 100;

    pub fn parse(raw: i32) -> Result<Self, InvalidValue> {
        match raw {
            // The message says what every other size means, so it agrees with what they do.
            ..0 => Err(InvalidValue::new(format!(
                "must not be negative (0 means the default of {}; sizes above {} are lowered to {})",
                Self::DEFAULT,
                Self::MAX,
                Self::MAX
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

/// Where the next page of a list starts: the last item already returned. Keyset, not offset:
/// items created meanwhile do not shift later pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageCursor {
    /// The sort timestamp of the last item returned (created or updated time).
    pub at: DateTime<Utc>,
    pub id: Uuid,
    /// The time a list ordered by a changing time was bounded by in tokens of earlier releases
    /// (items whose sort time moved past it after the first page were left out); read, and
    /// honoured, for a token issued before an upgrade.
    pub until: Option<DateTime<Utc>>,
    /// The snapshot of the first page of a list ordered by a changing time (docs/tickets.md):
    /// later pages list only items whose last change that snapshot saw, so none that changed
    /// since, or was changing then, is listed twice.
    pub snapshot: Option<ListSnapshot>,
}

impl PageCursor {
    /// The position of an item in a list that needs no snapshot.
    pub fn at(at: DateTime<Utc>, id: Uuid) -> Self {
        Self {
            at,
            id,
            until: None,
            snapshot: None,
        }
    }
}

/// A PostgreSQL snapshot (`pg_snapshot`) as text, `xmin:xmax:xip,...`: which transactions had
/// committed when a first page was read. Signed into page tokens, so only PostgreSQL makes one;
/// the parse still keeps to the form and a bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListSnapshot(Arc<str>);

impl ListSnapshot {
    /// The longest snapshot carried: some four hundred transactions in progress at once, four
    /// times the default `max_connections`.
    pub const MAX_BYTES: usize = 8192;

    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let mut parts = text.split(':');
        let number = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        let well_formed = text.len() <= Self::MAX_BYTES
            && parts.next().is_some_and(number)
            && parts.next().is_some_and(number)
            && parts
                .next()
                .is_some_and(|running| running.is_empty() || running.split(',').all(number))
            && parts.next().is_none();
        if well_formed {
            Ok(Self(Arc::from(text)))
        } else {
            Err(InvalidValue::new("is not a snapshot"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where the next page of a list whose items are keyed by text starts (the provider's webhook
/// event ids, `evt_...`): the sort time and key of the last item already returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextPageCursor {
    pub at: DateTime<Utc>,
    pub id: String,
}

/// Where the next page of a list ordered by a count, then a text key, starts (ListTags: most used
/// tags first, then by name): the count and key of the last item already returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountedPageCursor {
    pub count: i64,
    pub key: String,
}

/// Which list a page token belongs to: the account it was issued in, and the list with its query
/// (`tickets:<fingerprint of the filters and order>`, `users`, ...). A token answers for exactly
/// one scope.
#[derive(Clone, Copy, Debug)]
pub struct PageScope<'a> {
    pub account: AccountId,
    pub list: &'a str,
}

/// The keys page tokens are signed with (HMAC-SHA256): the first signs, every one verifies, so a
/// new key can be put first while tokens signed with the old one still work for a release.
#[derive(Clone)]
pub struct PageTokenKeys {
    /// Each key's HMAC, keyed once: a token costs its own bytes, not the key schedule.
    keys: Arc<[Hmac<Sha256>]>,
}

impl fmt::Debug for PageTokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageTokenKeys({} keys, redacted)", self.keys.len())
    }
}

/// The token's layout version, signed with the rest.
const TOKEN_VERSION: u8 = 1;
/// The bytes of HMAC-SHA256 a token carries: 128 bits, ample for a value that is checked online.
const TAG_BYTES: usize = 16;
/// version, position (i64 micros), id (16 bytes), snapshot flag and bound (1 + i64 micros).
const BODY_BYTES: usize = 1 + 8 + 16 + 1 + 8;
/// The layout version of a token carrying a [`TextPageCursor`], signed with the rest.
const TEXT_TOKEN_VERSION: u8 = 2;
/// The layout version of a [`PageCursor`] with a snapshot: version, position, id, then the
/// snapshot's text to the tag.
const SNAPSHOT_TOKEN_VERSION: u8 = 3;
/// The layout version of a token carrying a [`CountedPageCursor`]: version, count (i64), key.
const COUNTED_TOKEN_VERSION: u8 = 4;
/// version, position (i64 micros), id (16 bytes).
const SNAPSHOT_HEAD_BYTES: usize = 1 + 8 + 16;
/// The longest text key a token carries (event ids are at most 255 bytes).
const MAX_TEXT_KEY_BYTES: usize = 255;

impl PageTokenKeys {
    /// `keys` in order of preference; at least one.
    pub fn new(keys: Vec<Vec<u8>>) -> Self {
        assert!(!keys.is_empty(), "page tokens need at least one key");
        Self {
            keys: keys
                .iter()
                .map(|key| {
                    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length")
                })
                .collect(),
        }
    }

    /// The opaque `page_token` a client sends back to get the page after `cursor`.
    pub fn encode(&self, cursor: &PageCursor, scope: PageScope<'_>) -> String {
        let mut token = Vec::with_capacity(BODY_BYTES + TAG_BYTES);
        if let Some(snapshot) = &cursor.snapshot {
            token.push(SNAPSHOT_TOKEN_VERSION);
            token.extend_from_slice(&cursor.at.timestamp_micros().to_be_bytes());
            token.extend_from_slice(cursor.id.as_bytes());
            token.extend_from_slice(snapshot.as_str().as_bytes());
        } else {
            token.push(TOKEN_VERSION);
            token.extend_from_slice(&cursor.at.timestamp_micros().to_be_bytes());
            token.extend_from_slice(cursor.id.as_bytes());
            let until = cursor.until.map(|until| until.timestamp_micros());
            token.push(u8::from(until.is_some()));
            token.extend_from_slice(&until.unwrap_or_default().to_be_bytes());
        }
        let tag = Self::mac(&self.keys[0], &token, scope)
            .finalize()
            .into_bytes();
        token.extend_from_slice(&tag[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The cursor in `token`, when one of the keys signed it for exactly this `scope`.
    pub fn parse(&self, token: &str, scope: PageScope<'_>) -> Result<PageCursor, InvalidValue> {
        let invalid = || InvalidValue::new("is not a page token returned by this list");
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| invalid())?;
        if !Self::cursor_form(&bytes) {
            return Err(invalid());
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        // Constant-time comparison (`verify_truncated_left`), against every key in turn.
        if !self.keys.iter().any(|key| {
            Self::mac(key, body, scope)
                .verify_truncated_left(tag)
                .is_ok()
        }) {
            return Err(invalid());
        }
        let micros = |range: std::ops::Range<usize>| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&body[range]);
            Timestamp::from_micros(i64::from_be_bytes(raw)).map(Timestamp::get)
        };
        let at = micros(1..9)?;
        let id = Uuid::from_slice(&body[9..25]).map_err(|_| invalid())?;
        if body[0] == SNAPSHOT_TOKEN_VERSION {
            let snapshot = std::str::from_utf8(&body[SNAPSHOT_HEAD_BYTES..])
                .ok()
                .and_then(|text| ListSnapshot::parse(text).ok())
                .ok_or_else(invalid)?;
            return Ok(PageCursor {
                at,
                id,
                until: None,
                snapshot: Some(snapshot),
            });
        }
        let until = match body[25] {
            0 => None,
            1 => Some(micros(26..34)?),
            _ => return Err(invalid()),
        };
        Ok(PageCursor {
            at,
            id,
            until,
            snapshot: None,
        })
    }

    /// Whether `bytes` (a decoded token) have the form of a [`PageCursor`]'s token, of either
    /// layout.
    fn cursor_form(bytes: &[u8]) -> bool {
        match bytes.first() {
            Some(&TOKEN_VERSION) => bytes.len() == BODY_BYTES + TAG_BYTES,
            Some(&SNAPSHOT_TOKEN_VERSION) => bytes
                .len()
                .checked_sub(SNAPSHOT_HEAD_BYTES + TAG_BYTES)
                .is_some_and(|snapshot| (1..=ListSnapshot::MAX_BYTES).contains(&snapshot)),
            _ => false,
        }
    }

    /// The opaque `page_token` of the page after a text-keyed `cursor`.
    pub fn encode_text(&self, cursor: &TextPageCursor, scope: PageScope<'_>) -> String {
        let number = cursor.at.timestamp_micros();
        self.encode_keyed(TEXT_TOKEN_VERSION, number, &cursor.id, scope)
    }

    /// The text-keyed cursor in `token`, when one of the keys signed it for exactly this `scope`.
    pub fn parse_text(
        &self,
        token: &str,
        scope: PageScope<'_>,
    ) -> Result<TextPageCursor, InvalidValue> {
        let (micros, id) = self.parse_keyed(TEXT_TOKEN_VERSION, token, scope)?;
        let at = Timestamp::from_micros(micros)?.get();
        Ok(TextPageCursor { at, id })
    }

    /// The opaque `page_token` of the page after a counted `cursor`.
    pub fn encode_counted(&self, cursor: &CountedPageCursor, scope: PageScope<'_>) -> String {
        self.encode_keyed(COUNTED_TOKEN_VERSION, cursor.count, &cursor.key, scope)
    }

    /// The counted cursor in `token`, when one of the keys signed it for exactly this `scope`.
    pub fn parse_counted(
        &self,
        token: &str,
        scope: PageScope<'_>,
    ) -> Result<CountedPageCursor, InvalidValue> {
        let (count, key) = self.parse_keyed(COUNTED_TOKEN_VERSION, token, scope)?;
        Ok(CountedPageCursor { count, key })
    }

    /// A token of the layout `version`, a number (i64) and a text key, signed.
    fn encode_keyed(&self, version: u8, number: i64, key: &str, scope: PageScope<'_>) -> String {
        let mut token = Vec::with_capacity(1 + 8 + key.len() + TAG_BYTES);
        token.push(version);
        token.extend_from_slice(&number.to_be_bytes());
        token.extend_from_slice(key.as_bytes());
        let tag = Self::mac(&self.keys[0], &token, scope)
            .finalize()
            .into_bytes();
        token.extend_from_slice(&tag[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The number and key of a token of the layout `version`, when one of the keys signed it for
    /// exactly this `scope`.
    fn parse_keyed(
        &self,
        version: u8,
        token: &str,
        scope: PageScope<'_>,
    ) -> Result<(i64, String), InvalidValue> {
        let invalid = || InvalidValue::new("is not a page token returned by this list");
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| invalid())?;
        if !Self::keyed_form(version, &bytes) {
            return Err(invalid());
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        if !self.keys.iter().any(|key| {
            Self::mac(key, body, scope)
                .verify_truncated_left(tag)
                .is_ok()
        }) {
            return Err(invalid());
        }
        let mut number = [0u8; 8];
        number.copy_from_slice(&body[1..9]);
        let key = String::from_utf8(body[9..].to_vec()).map_err(|_| invalid())?;
        Ok((i64::from_be_bytes(number), key))
    }

    /// Whether `bytes` (a decoded token) have the form of a keyed token of the layout `version`.
    fn keyed_form(version: u8, bytes: &[u8]) -> bool {
        bytes.first() == Some(&version)
            && bytes
                .len()
                .checked_sub(1 + 8 + TAG_BYTES)
                .is_some_and(|key_bytes| (1..=MAX_TEXT_KEY_BYTES).contains(&key_bytes))
    }

    /// Whether `token` has the form of a page token (of either layout), its signature unchecked:
    /// what can be said of a token of a list whose query was refused, as the signature binds
    /// the token to the query.
    pub fn check_form(token: &str) -> Result<(), InvalidValue> {
        let invalid = || InvalidValue::new("is not a page token returned by this list");
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| invalid())?;
        let cursor = Self::cursor_form(&bytes);
        let text = Self::keyed_form(TEXT_TOKEN_VERSION, &bytes);
        let counted = Self::keyed_form(COUNTED_TOKEN_VERSION, &bytes);
        if cursor || text || counted {
            Ok(())
        } else {
            Err(invalid())
        }
    }

    fn mac(key: &Hmac<Sha256>, body: &[u8], scope: PageScope<'_>) -> Hmac<Sha256> {
        let mut mac = key.clone();
        // Length-prefixed, so no two scopes sign the same bytes.
        let list = scope.list.as_bytes();
        mac.update(scope.account.as_uuid().as_bytes());
        mac.update(&(list.len() as u64).to_be_bytes());
        mac.update(list);
        mac.update(body);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_snapshot_is_postgresqls_text_form_and_nothing_else() {
        for text in ["100:104:", "100:104:100,102", "5:5:"] {
            assert_eq!(ListSnapshot::parse(text).unwrap().as_str(), text);
        }
        for text in [
            "",
            "100:104",
            "100:104:x",
            "100:104:1,,2",
            "a:1:",
            "1:2:3:4",
            "-1:2:",
        ] {
            assert!(ListSnapshot::parse(text).is_err(), "{text:?}");
        }
        let long = format!("1:2:{}", "1,".repeat(ListSnapshot::MAX_BYTES));
        assert!(ListSnapshot::parse(&long).is_err());
    }

    #[test]
    fn page_size_defaults_clamps_and_refuses_negatives() {
        assert_eq!(PageSize::parse(0).unwrap().get(), 20);
        assert_eq!(PageSize::parse(7).unwrap().get(), 7);
        assert_eq!(PageSize::parse(1000).unwrap().get(), 100);
        assert!(PageSize::parse(-1).is_err());
    }

    fn keys(raw: &[&str]) -> PageTokenKeys {
        PageTokenKeys::new(raw.iter().map(|key| key.as_bytes().to_vec()).collect())
    }

    fn scope(account: u128, list: &str) -> PageScope<'_> {
        PageScope {
            account: AccountId::from_uuid(Uuid::from_u128(account)),
            list,
        }
    }

    fn cursor() -> PageCursor {
        PageCursor::at(
            DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            Uuid::from_u128(42),
        )
    }

    #[test]
    fn a_token_of_either_layout_has_the_form_of_one_whatever_it_was_signed_for() {
        let keys = keys(&["first key"]);
        let text = TextPageCursor {
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: "evt_1".to_owned(),
        };
        for token in [
            keys.encode(&cursor(), scope(1, "tickets")),
            keys.encode_text(&text, scope(2, "webhook-events")),
        ] {
            assert_eq!(PageTokenKeys::check_form(&token), Ok(()), "{token}");
        }
        for garbage in ["", "abc", "dDE6MTox", "!!!"] {
            assert!(PageTokenKeys::check_form(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn garbage_is_not_a_page_token() {
        let keys = keys(&["first key"]);
        for token in ["", "abc", "dDE6MTox", "!!!"] {
            assert!(
                keys.parse(token, scope(1, "tickets")).is_err(),
                "{token:?} was accepted"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_of_a_token_is_refused() {
        let keys = keys(&["first key"]);
        let token = keys.encode(&cursor(), scope(1, "tickets"));
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let flipped = URL_SAFE_NO_PAD.encode(flipped);
            assert!(
                keys.parse(&flipped, scope(1, "tickets")).is_err(),
                "bit {bit} flipped was accepted"
            );
        }
    }

    #[test]
    fn a_token_answers_only_for_its_account_and_list() {
        let keys = keys(&["first key"]);
        let token = keys.encode(&cursor(), scope(1, "tickets:ab12"));
        assert_eq!(keys.parse(&token, scope(1, "tickets:ab12")), Ok(cursor()));
        assert!(keys.parse(&token, scope(2, "tickets:ab12")).is_err());
        assert!(keys.parse(&token, scope(1, "tickets:cd34")).is_err());
        assert!(keys.parse(&token, scope(1, "users")).is_err());
    }

    #[test]
    fn a_token_signed_with_the_previous_key_still_works_after_rotation() {
        let before = keys(&["old key"]);
        let token = before.encode(&cursor(), scope(1, "users"));
        let rotated = keys(&["new key", "old key"]);
        assert_eq!(rotated.parse(&token, scope(1, "users")), Ok(cursor()));
        let retired = keys(&["new key"]);
        assert!(retired.parse(&token, scope(1, "users")).is_err());
        let fresh = rotated.encode(&cursor(), scope(1, "users"));
        assert_eq!(retired.parse(&fresh, scope(1, "users")), Ok(cursor()));
    }

    #[test]
    fn a_text_keyed_token_answers_only_for_its_scope_and_is_not_a_uuid_token() {
        let keys = keys(&["first key"]);
        let text_cursor = TextPageCursor {
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: "evt_1NkX".to_owned(),
        };
        let token = keys.encode_text(&text_cursor, scope(1, "webhook-events:dead"));
        assert_eq!(
            keys.parse_text(&token, scope(1, "webhook-events:dead")),
            Ok(text_cursor)
        );
        assert!(
            keys.parse_text(&token, scope(1, "webhook-events:received"))
                .is_err()
        );
        assert!(
            keys.parse_text(&token, scope(2, "webhook-events:dead"))
                .is_err()
        );
        assert!(keys.parse(&token, scope(1, "webhook-events:dead")).is_err());
        let uuid_token = keys.encode(&cursor(), scope(1, "webhook-events:dead"));
        assert!(
            keys.parse_text(&uuid_token, scope(1, "webhook-events:dead"))
                .is_err()
        );
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let flipped = URL_SAFE_NO_PAD.encode(flipped);
            assert!(
                keys.parse_text(&flipped, scope(1, "webhook-events:dead"))
                    .is_err()
            );
        }
    }

    #[test]
    fn a_counted_token_answers_only_for_its_scope_and_is_no_other_kind_of_token() {
        let keys = keys(&["first key"]);
        let counted = CountedPageCursor {
            count: 1_000_000,
            key: "vip".to_owned(),
        };
        let token = keys.encode_counted(&counted, scope(1, "tags"));
        assert_eq!(keys.parse_counted(&token, scope(1, "tags")), Ok(counted));
        assert!(keys.parse_counted(&token, scope(1, "tags:v")).is_err());
        assert!(keys.parse_counted(&token, scope(2, "tags")).is_err());
        assert!(keys.parse_text(&token, scope(1, "tags")).is_err());
        assert!(keys.parse(&token, scope(1, "tags")).is_err());
        assert_eq!(PageTokenKeys::check_form(&token), Ok(()));
        let text = TextPageCursor {
            at: DateTime::from_timestamp_micros(5).unwrap(),
            id: "vip".to_owned(),
        };
        let text_token = keys.encode_text(&text, scope(1, "tags"));
        assert!(keys.parse_counted(&text_token, scope(1, "tags")).is_err());
    }

    proptest! {
        #[test]
        fn a_text_cursor_round_trips_through_its_token(
            micros in 0i64..4_000_000_000_000_000,
            id in "[ -~]{1,255}",
        ) {
            let keys = keys(&["first key"]);
            let cursor = TextPageCursor {
                at: DateTime::from_timestamp_micros(micros).unwrap(),
                id,
            };
            prop_assert_eq!(
                keys.parse_text(&keys.encode_text(&cursor, scope(7, "events")), scope(7, "events")),
                Ok(cursor)
            );
        }

        #[test]
        fn a_cursor_round_trips_through_its_token(
            micros in -62_135_596_800_000_000i64..253_402_300_799_000_000,
            id in any::<u128>(),
            until in proptest::option::of(0i64..4_000_000_000_000_000),
            snapshot in proptest::option::of((
                0u64..1 << 40,
                0u64..1_000,
                proptest::collection::vec(0u64..1_000, 0..20),
            )),
        ) {
            let keys = keys(&["first key"]);
            let snapshot = snapshot.map(|(xmin, span, running)| {
                let running: Vec<String> = running.iter().map(|xid| (xmin + xid).to_string()).collect();
                ListSnapshot::parse(&format!("{xmin}:{}:{}", xmin + span, running.join(","))).unwrap()
            });
            // A cursor carries one bound or the other: the snapshot, or an earlier release's time.
            let until = until.filter(|_| snapshot.is_none());
            let cursor = PageCursor {
                at: DateTime::from_timestamp_micros(micros).unwrap(),
                id: Uuid::from_u128(id),
                until: until.map(|until| DateTime::from_timestamp_micros(until).unwrap()),
                snapshot,
            };
            prop_assert_eq!(keys.parse(&keys.encode(&cursor, scope(7, "tickets")), scope(7, "tickets")), Ok(cursor));
        }
    }
}
