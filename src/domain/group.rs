//! Groups of agents (docs/tickets.md, "Groups"): teams that tickets are routed to, whose
//! members are the agents a ticket of the group may be assigned to.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{InvalidValue, UserId, bounded_text, hyphenated_uuid, single_line};

/// The most live groups an account may have: far more teams than any support desk runs, and few
/// enough that a picker lists them all.
pub const MAX_GROUPS_PER_ACCOUNT: i64 = 500;

/// A group's name: 1 to 100 characters on one line, trimmed (unique among the account's live
/// groups whatever its case, which the database holds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, 1, 100).and_then(single_line).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a group handles: at most 1000 characters, possibly empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupDescription(String);

impl GroupDescription {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        // Blank is allowed (no description); anything else follows the rules of every text.
        if raw.trim().is_empty() && raw.chars().count() <= 1000 {
            return Ok(Self(String::new()));
        }
        bounded_text(raw, 0, 1000).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An optional id a request names: empty for none, otherwise a UUID in its hyphenated form
/// (CreateTicket's and AssignTicket's `group_id`, an import's `group_id` column, an SLA policy's
/// `schedule_id`). Whether it names a live row of the account is the database's to say.
pub fn optional_uuid(raw: &str) -> Result<Option<Uuid>, InvalidValue> {
    if raw.is_empty() {
        return Ok(None);
    }
    hyphenated_uuid(raw)
        .map(Some)
        .ok_or_else(|| InvalidValue::new("must be empty or a UUID in its hyphenated form"))
}

/// A stored group; a deleted one keeps its row (and its `deleted_at`) so that what names it
/// stays readable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub id: Uuid,
    pub name: GroupName,
    pub description: GroupDescription,
    pub member_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One user's membership of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    pub group_id: Uuid,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_name_is_trimmed_and_bounded() {
        assert_eq!(GroupName::parse("  Billing ").unwrap().as_str(), "Billing");
        assert!(GroupName::parse("   ").is_err());
        assert!(GroupName::parse(&"x".repeat(101)).is_err());
        assert!(GroupName::parse("two\nlines").is_err());
        assert!(GroupName::parse(&"x".repeat(100)).is_ok());
    }

    #[test]
    fn a_group_id_is_empty_or_a_hyphenated_uuid() {
        assert_eq!(optional_uuid(""), Ok(None));
        let id = "0190c2a4-7f3e-7a4b-9c1d-2e3f4a5b6c7d";
        assert_eq!(optional_uuid(id), Ok(Some(Uuid::parse_str(id).unwrap())));
        assert!(optional_uuid("0190c2a47f3e7a4b9c1d2e3f4a5b6c7d").is_err());
        assert!(optional_uuid(" ").is_err());
    }

    #[test]
    fn a_blank_description_is_empty_and_a_long_one_is_refused() {
        assert_eq!(GroupDescription::parse("  ").unwrap().as_str(), "");
        assert_eq!(
            GroupDescription::parse("Refunds").unwrap().as_str(),
            "Refunds"
        );
        assert!(GroupDescription::parse(&"x".repeat(1001)).is_err());
    }
}
