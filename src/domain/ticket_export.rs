//! What the export, the change feed and search ask for beyond ListTickets' filters: a read mask
//! (AIP-157) naming the ticket fields to return, the change feed's position, the words of a
//! search and the marking of its snippets.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{InvalidValue, Ticket, TicketFilter, push_html_escaped};

/// The fields of a Ticket a client may name in a read mask, as the API names them.
pub const TICKET_FIELDS: &[&str] = &[
    "id",
    "account_id",
    "subject",
    "description",
    "priority",
    "status",
    "requester_id",
    "requester_email",
    "assignee_id",
    "create_time",
    "update_time",
    "etag",
    "tags",
    "group_id",
    "custom_fields",
];

/// Which fields of a resource a read returns (AIP-157). Empty or `*`: all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadMask {
    /// `None`: every field.
    fields: Option<Vec<&'static str>>,
}

impl ReadMask {
    /// Every field.
    pub const ALL: Self = Self { fields: None };

    /// The mask of `paths`, each one of `known` (snake_case, or lowerCamelCase as JSON writes
    /// it), or `*`. The first unknown path is refused, named.
    pub fn parse(paths: &[String], known: &[&'static str]) -> Result<Self, InvalidValue> {
        if paths.is_empty() {
            return Ok(Self::ALL);
        }
        let mut fields = Vec::with_capacity(paths.len());
        for path in paths {
            let path = path.trim();
            if path == "*" {
                return Ok(Self::ALL);
            }
            let snake = snake_case(path);
            let Some(field) = known.iter().find(|field| **field == snake) else {
                return Err(InvalidValue::new(format!(
                    "{path:?} is not a field that can be read; known: {}",
                    known.join(", ")
                )));
            };
            fields.push(*field);
        }
        Ok(Self {
            fields: Some(fields),
        })
    }

    /// Whether `field` is returned.
    pub fn includes(&self, field: &str) -> bool {
        self.fields
            .as_ref()
            .is_none_or(|fields| fields.contains(&field))
    }
}

/// `createTime` → `create_time`; snake_case stays as it is.
fn snake_case(path: &str) -> String {
    let mut snake = String::with_capacity(path.len() + 4);
    for character in path.chars() {
        if character.is_ascii_uppercase() {
            snake.push('_');
            snake.push(character.to_ascii_lowercase());
        } else {
            snake.push(character);
        }
    }
    snake
}

/// A position in an account's change feed: the transaction that last wrote a ticket (its
/// 64-bit id, epoch included) and the ticket's id, in that order. The feed returns what sorts
/// after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeCursor {
    pub txid: i64,
    pub id: Uuid,
}

impl ChangeCursor {
    /// Before every change.
    pub const START: Self = Self {
        txid: 0,
        id: Uuid::nil(),
    };

    /// The cursor as the text a signed token carries: `<txid>.<uuid>`.
    pub fn to_key(&self) -> String {
        format!("{}.{}", self.txid, self.id)
    }

    /// The inverse of [`Self::to_key`].
    pub fn from_key(key: &str) -> Result<Self, InvalidValue> {
        let invalid = || InvalidValue::new("is not a cursor returned by ListTicketChanges");
        let (txid, id) = key.split_once('.').ok_or_else(invalid)?;
        let txid = txid.parse::<i64>().map_err(|_| invalid())?;
        let id = Uuid::parse_str(id).map_err(|_| invalid())?;
        if txid < 0 {
            return Err(invalid());
        }
        Ok(Self { txid, id })
    }
}

/// One entry of the change feed: a ticket as it is now, whether the change deleted it, and its
/// position in the feed.
#[derive(Clone, Debug)]
pub struct FeedEntry {
    pub ticket: Ticket,
    pub deleted: bool,
    pub position: ChangeCursor,
}

/// One ticket a search found, with its relevance and its snippet (marked by [`marked_snippet`]).
#[derive(Clone, Debug)]
pub struct SearchHit {
    pub ticket: Ticket,
    pub relevance: f32,
    pub snippet: String,
}

/// The longest search text accepted.
const MAX_SEARCH_CHARS: usize = 500;

/// The words of a search, in web search syntax (PostgreSQL's `websearch_to_tsquery`): at most
/// 500 characters as sent, and not blank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchText(String);

impl SearchText {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.chars().count() > MAX_SEARCH_CHARS {
            return Err(InvalidValue::new(format!(
                "must be at most {MAX_SEARCH_CHARS} characters"
            )));
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(InvalidValue::new("is required: the words to find"));
        }
        if trimmed.contains('\0') {
            return Err(InvalidValue::new("must not contain NUL characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A search: its words and ListTickets' filters (whose order is ignored: results come best
/// match first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketSearch {
    pub text: SearchText,
    pub filter: TicketFilter,
}

impl TicketSearch {
    /// A digest of the search, which its page tokens carry.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = format!("{}|{}", self.filter.fingerprint(), self.text.as_str());
        hex::encode(&Sha256::digest(canonical.as_bytes())[..6])
    }
}

/// The most tickets a search's words may match in its scope (the account, or a requester's
/// tickets) for its results to be ranked by relevance. Ranking reads every match from the table
/// before the best are known (about 25 µs each on the bench's million tickets): beyond this a
/// search could not answer within its 50 ms, and is answered newest first instead
/// (docs/export-and-search.md, "Order").
pub const MAX_MATCHES_RANKED: i64 = 2_000;

/// The order of a search's results, chosen on its first page from the planner's estimate of the
/// tickets its words match, and kept by its page tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchOrder {
    /// Best match first (`ts_rank`), ties by id: words that match at most
    /// [`MAX_MATCHES_RANKED`] tickets.
    Relevance,
    /// Newest ticket first, ties by id: words that match more.
    Newest,
}

impl SearchOrder {
    /// The order for words estimated to match `matches` tickets of the search's scope.
    pub fn for_estimated_matches(matches: i64) -> Self {
        if matches <= MAX_MATCHES_RANKED {
            Self::Relevance
        } else {
            Self::Newest
        }
    }
}

/// Where the next page of search results starts: the last result's relevance (or creation time,
/// for a search answered newest first) and id.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SearchCursor {
    Relevance { relevance: f32, id: Uuid },
    Newest { created_at: DateTime<Utc>, id: Uuid },
}

impl SearchCursor {
    /// The cursor after `hit`, in `order`.
    pub fn after(order: SearchOrder, hit: &SearchHit) -> Self {
        let id = hit.ticket.id.as_uuid();
        match order {
            SearchOrder::Relevance => Self::Relevance {
                relevance: hit.relevance,
                id,
            },
            SearchOrder::Newest => Self::Newest {
                created_at: hit.ticket.created_at,
                id,
            },
        }
    }

    /// The order the search this cursor continues was answered in.
    pub fn order(&self) -> SearchOrder {
        match self {
            Self::Relevance { .. } => SearchOrder::Relevance,
            Self::Newest { .. } => SearchOrder::Newest,
        }
    }

    /// The cursor as the text a signed token carries: the relevance's bits and the id, or `n`,
    /// the creation time in microseconds and the id.
    pub fn to_key(&self) -> String {
        match self {
            Self::Relevance { relevance, id } => format!("{}.{id}", relevance.to_bits()),
            Self::Newest { created_at, id } => format!("n{}.{id}", created_at.timestamp_micros()),
        }
    }

    /// The inverse of [`Self::to_key`].
    pub fn from_key(key: &str) -> Result<Self, InvalidValue> {
        let invalid = || InvalidValue::new("is not a page token returned by this search");
        let (position, id) = key.split_once('.').ok_or_else(invalid)?;
        let id = Uuid::parse_str(id).map_err(|_| invalid())?;
        if let Some(micros) = position.strip_prefix('n') {
            let micros = micros.parse::<i64>().map_err(|_| invalid())?;
            let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
            return Ok(Self::Newest { created_at, id });
        }
        let relevance = f32::from_bits(position.parse::<u32>().map_err(|_| invalid())?);
        if !relevance.is_finite() {
            return Err(invalid());
        }
        Ok(Self::Relevance { relevance, id })
    }
}

/// What PostgreSQL's `ts_headline` is asked to put around a matched word: characters of
/// Unicode's private use area, which no ticket text is expected to hold and which
/// [`marked_snippet`] strips from the text anyway.
pub const MATCH_START: char = '\u{E000}';
pub const MATCH_END: char = '\u{E001}';

/// A headline with its matches between [`MATCH_START`] and [`MATCH_END`] as the API shows it:
/// the text HTML-escaped ([`push_html_escaped`]), each match between `<mark>` and `</mark>`.
pub fn marked_snippet(headline: &str) -> String {
    let mut snippet = String::with_capacity(headline.len() + 32);
    for character in headline.chars() {
        match character {
            MATCH_START => snippet.push_str("<mark>"),
            MATCH_END => snippet.push_str("</mark>"),
            '\n' | '\r' | '\t' => snippet.push(' '),
            other => push_html_escaped(&mut snippet, other),
        }
    }
    snippet.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(raw: &[&str]) -> Vec<String> {
        raw.iter().map(|path| (*path).to_owned()).collect()
    }

    #[test]
    fn a_read_mask_takes_snake_or_camel_case_and_refuses_unknown_fields_by_name() {
        let mask = ReadMask::parse(&paths(&["subject", "createTime"]), TICKET_FIELDS).unwrap();
        assert!(mask.includes("subject"));
        assert!(mask.includes("create_time"));
        assert!(!mask.includes("description"));
        assert_eq!(ReadMask::parse(&[], TICKET_FIELDS), Ok(ReadMask::ALL));
        assert_eq!(
            ReadMask::parse(&paths(&["*"]), TICKET_FIELDS),
            Ok(ReadMask::ALL)
        );
        let refused = ReadMask::parse(&paths(&["subject", "colour"]), TICKET_FIELDS).unwrap_err();
        assert!(refused.to_string().contains("\"colour\""), "{refused}");
    }

    #[test]
    fn change_cursors_and_search_cursors_survive_their_keys() {
        let cursor = ChangeCursor {
            txid: 4_294_967_999,
            id: Uuid::now_v7(),
        };
        assert_eq!(ChangeCursor::from_key(&cursor.to_key()), Ok(cursor));
        assert!(ChangeCursor::from_key("-1.00000000-0000-0000-0000-000000000000").is_err());
        let ranked = SearchCursor::Relevance {
            relevance: 0.607_927_1,
            id: Uuid::now_v7(),
        };
        assert_eq!(SearchCursor::from_key(&ranked.to_key()), Ok(ranked));
        let newest = SearchCursor::Newest {
            created_at: DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(SearchCursor::from_key(&newest.to_key()), Ok(newest));
        assert_eq!(newest.order(), SearchOrder::Newest);
        assert!(SearchCursor::from_key("nsoon.00000000-0000-0000-0000-000000000000").is_err());
    }

    #[test]
    fn words_matching_more_tickets_than_can_be_ranked_in_time_are_answered_newest_first() {
        assert_eq!(
            SearchOrder::for_estimated_matches(MAX_MATCHES_RANKED),
            SearchOrder::Relevance
        );
        assert_eq!(
            SearchOrder::for_estimated_matches(MAX_MATCHES_RANKED + 1),
            SearchOrder::Newest
        );
    }

    #[test]
    fn a_snippet_is_escaped_and_marks_only_the_matches() {
        let headline = format!("<b>printer</b> & {MATCH_START}jams{MATCH_END}\nagain");
        assert_eq!(
            marked_snippet(&headline),
            "&lt;b&gt;printer&lt;/b&gt; &amp; <mark>jams</mark> again"
        );
    }

    #[test]
    fn search_text_is_trimmed_and_bounded() {
        assert_eq!(SearchText::parse("  printer ").unwrap().as_str(), "printer");
        assert!(SearchText::parse("   ").is_err());
        assert!(SearchText::parse(&"a".repeat(501)).is_err());
    }
}
