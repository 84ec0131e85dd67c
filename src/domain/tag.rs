//! Tags: the short labels agents put on tickets to organize them ("refund", "vip"). A tag is
//! stored as written after normalization, so that "VIP", " vip" and "vip" are one tag: lower
//! case, letters of any script, digits, `_` and `-`, at most [`MAX_TAG_CHARS`] characters, and a
//! ticket carries at most [`MAX_TAGS_PER_TICKET`] of them.

use std::collections::BTreeSet;
use std::fmt;

use super::{CountedPageCursor, InvalidValue};

/// The longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;

/// The most tags one ticket carries.
pub const MAX_TAGS_PER_TICKET: usize = 20;

/// The most tags one request may list, before duplicates merge (the protos declare it).
const MAX_TAGS_PER_REQUEST: usize = 32;

/// One normalized tag.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    /// Normalizes `raw`: surrounding spaces trimmed, lower case; refuses an empty tag, a space
    /// inside one, any character but letters, digits, `_` and `-`, and more than
    /// [`MAX_TAG_CHARS`] characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(InvalidValue::new("a tag cannot be empty"));
        }
        let normalized = trimmed.to_lowercase();
        let length = normalized.chars().count();
        if length > MAX_TAG_CHARS {
            return Err(InvalidValue::new(format!(
                "a tag is at most {MAX_TAG_CHARS} characters, this one is {length}"
            )));
        }
        if let Some(refused) = normalized
            .chars()
            .find(|c| !(c.is_alphanumeric() || *c == '_' || *c == '-'))
        {
            let what = if refused.is_whitespace() {
                "a space (a tag is one word: send two tags, or join the words with - or _)"
                    .to_owned()
            } else {
                format!("{refused:?}")
            };
            return Err(InvalidValue::new(format!(
                "a tag holds letters, digits, _ and - only, not {what}"
            )));
        }
        Ok(Self(normalized))
    }

    /// A tag read back from storage, where only [`Tag::parse`]'s output is written.
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of tags as a request states it: each normalized, duplicates (after normalization)
/// merged, at most [`MAX_TAGS_PER_TICKET`]. A refused tag is named by its index in the request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagSet(BTreeSet<Tag>);

impl TagSet {
    /// Parses every tag of `raw`; the error names the first refused one by its index.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, (Option<usize>, InvalidValue)> {
        if raw.len() > MAX_TAGS_PER_REQUEST {
            return Err((
                None,
                InvalidValue::new(format!(
                    "a request lists at most {MAX_TAGS_PER_REQUEST} tags, this one {}",
                    raw.len()
                )),
            ));
        }
        let mut tags = BTreeSet::new();
        for (index, one) in raw.iter().enumerate() {
            let tag = Tag::parse(one.as_ref()).map_err(|problem| (Some(index), problem))?;
            tags.insert(tag);
        }
        let set = Self(tags);
        set.within_limit().map_err(|problem| (None, problem))?;
        Ok(set)
    }

    /// Refuses a set of more than [`MAX_TAGS_PER_TICKET`] tags.
    pub fn within_limit(&self) -> Result<(), InvalidValue> {
        if self.0.len() > MAX_TAGS_PER_TICKET {
            return Err(InvalidValue::new(format!(
                "a ticket carries at most {MAX_TAGS_PER_TICKET} tags, this asks for {}",
                self.0.len()
            )));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }

    /// The tags as strings, in their sorted order (how they are stored).
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|tag| tag.0.clone()).collect()
    }
}

/// One of an account's tags and how many of its live tickets carry it (ListTags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagCount {
    pub tag: Tag,
    pub tickets: i64,
}

impl TagCount {
    /// Where the page after this tag starts in the list by count, then name.
    pub fn position(&self) -> CountedPageCursor {
        CountedPageCursor {
            count: self.tickets,
            key: self.tag.0.clone(),
        }
    }
}

/// The start of the tags ListTags lists (autocomplete): normalized as a tag is, so it matches
/// what is stored; it holds only what a tag may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagPrefix(String);

impl TagPrefix {
    /// `None` for an empty prefix (every tag); otherwise parsed as [`Tag::parse`] parses a tag.
    pub fn parse(raw: &str) -> Result<Option<Self>, InvalidValue> {
        if raw.is_empty() {
            return Ok(None);
        }
        Tag::parse(raw).map(|tag| Some(Self(tag.0)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The least string above every string that starts with the prefix, in byte (code point)
    /// order: the prefix with its last character raised by one. The tags that start with the
    /// prefix are those in `[prefix, upper_bound)`, a range of the index.
    pub fn upper_bound(&self) -> String {
        let mut chars: Vec<char> = self.0.chars().collect();
        // Tags hold letters, digits, `_` and `-`: never char::MAX, so the last one can be raised.
        if let Some(last) = chars.pop() {
            let raised = (u32::from(last) + 1..=u32::from(char::MAX))
                .find_map(char::from_u32)
                .unwrap_or(char::MAX);
            chars.push(raised);
        }
        chars.into_iter().collect()
    }
}

impl FromIterator<Tag> for TagSet {
    fn from_iter<I: IntoIterator<Item = Tag>>(tags: I) -> Self {
        Self(tags.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_trimmed_and_lower_cased() {
        assert_eq!(Tag::parse("  VIP ").unwrap().as_str(), "vip");
        assert_eq!(Tag::parse("Äpfel-2_b").unwrap().as_str(), "äpfel-2_b");
    }

    #[test]
    fn a_tag_refuses_spaces_punctuation_emptiness_and_length() {
        assert!(
            Tag::parse("two words")
                .unwrap_err()
                .description()
                .contains("a space")
        );
        assert!(Tag::parse("a,b").unwrap_err().description().contains("','"));
        assert!(
            Tag::parse("  ")
                .unwrap_err()
                .description()
                .contains("empty")
        );
        assert!(Tag::parse(&"x".repeat(MAX_TAG_CHARS)).is_ok());
        assert!(
            Tag::parse(&"x".repeat(MAX_TAG_CHARS + 1))
                .unwrap_err()
                .description()
                .contains("at most 64")
        );
    }

    #[test]
    fn a_set_merges_what_normalizes_alike_and_names_a_refused_tag_by_index() {
        let set = TagSet::parse(&["Refund", "refund", "vip"]).unwrap();
        assert_eq!(set.to_strings(), ["refund", "vip"]);
        let (index, problem) = TagSet::parse(&["ok", "not ok"]).unwrap_err();
        assert_eq!(index, Some(1));
        assert!(problem.description().contains("a space"));
    }

    #[test]
    fn a_prefix_is_normalized_and_bounds_the_tags_that_start_with_it() {
        assert_eq!(TagPrefix::parse("").unwrap(), None);
        let prefix = TagPrefix::parse(" VI").unwrap().unwrap();
        assert_eq!(prefix.as_str(), "vi");
        assert_eq!(prefix.upper_bound(), "vj");
        for tag in ["vi", "vip", "vi-z", "vi\u{10FFFF}"] {
            assert!(prefix.as_str() <= tag && tag < prefix.upper_bound().as_str());
        }
        assert!("vj" >= prefix.upper_bound().as_str());
        assert!(TagPrefix::parse("v i").is_err());
    }

    #[test]
    fn a_set_holds_at_most_the_limit_after_merging() {
        let at_limit: Vec<String> = (0..MAX_TAGS_PER_TICKET).map(|n| format!("t{n}")).collect();
        assert_eq!(TagSet::parse(&at_limit).unwrap().len(), MAX_TAGS_PER_TICKET);
        let mut over = at_limit.clone();
        over.push("T0".to_owned());
        assert_eq!(TagSet::parse(&over).unwrap().len(), MAX_TAGS_PER_TICKET);
        over.push("t-extra".to_owned());
        let (index, problem) = TagSet::parse(&over).unwrap_err();
        assert_eq!(index, None);
        assert!(problem.description().contains("at most 20 tags"));
    }
}
