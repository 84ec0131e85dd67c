//! What a ticket is made of: its text fields, priority and lifecycle status.

use std::fmt;

use chrono::{DateTime, Utc};

use super::{AccountId, Email, InvalidValue, TicketId, UserId, bounded_text};

/// A one-line summary: 1 to 200 characters after trimming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketSubject(String);

impl TicketSubject {
    pub const MAX_LENGTH: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let text = bounded_text(raw, 1, Self::MAX_LENGTH)?;
        if text.contains(['\n', '\r']) {
            return Err(InvalidValue::new("must be a single line"));
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The problem in full: 1 to 5000 characters after trimming; line breaks allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketDescription(String);

impl TicketDescription {
    pub const MAX_LENGTH: usize = 5000;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, 1, Self::MAX_LENGTH).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How urgent a ticket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TicketPriority {
    Low,
    Normal,
    High,
    Urgent,
}

/// Where a ticket is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TicketStatus {
    New,
    Open,
    Pending,
    Solved,
    Closed,
}

/// The stored, lower-case names of the enums above: one table for both directions.
macro_rules! named_enum {
    ($type:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }

            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                match raw {
                    $($name => Ok(Self::$variant),)+
                    _ => Err(InvalidValue::new(format!(
                        concat!("is not a ", $what, " (expected one of: {})"),
                        Self::ALL.iter().map(Self::as_str).collect::<Vec<_>>().join(", ")
                    ))),
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(TicketPriority, "ticket priority", {
    Low => "low",
    Normal => "normal",
    High => "high",
    Urgent => "urgent",
});

named_enum!(TicketStatus, "ticket status", {
    New => "new",
    Open => "open",
    Pending => "pending",
    Solved => "solved",
    Closed => "closed",
});

/// A ticket as a client asks for it, every part already valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTicketRequest {
    pub subject: TicketSubject,
    pub description: TicketDescription,
    pub priority: TicketPriority,
    /// Who the ticket is for; `None` means the caller (customers only).
    pub requester_email: Option<Email>,
    pub assignee: Option<UserId>,
}

/// A stored ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub id: TicketId,
    pub account_id: AccountId,
    pub subject: TicketSubject,
    pub description: TicketDescription,
    pub priority: TicketPriority,
    pub status: TicketStatus,
    pub requester_id: UserId,
    pub requester_email: Email,
    pub assignee_id: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Grows by one with every change.
    pub version: i64,
}

impl Ticket {
    pub fn etag(&self) -> Etag {
        Etag(self.version)
    }
}

/// A ticket's version as clients see it: opaque text (`v3`) that changes whenever the ticket
/// does. Sent back with a change, it makes the change conditional on nobody having changed the
/// ticket since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Etag(i64);

impl Etag {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        raw.trim()
            .strip_prefix('v')
            .and_then(|digits| digits.parse::<i64>().ok())
            .filter(|version| *version > 0)
            .map(Self)
            .ok_or_else(|| InvalidValue::new("is not an etag returned by this API"))
    }

    pub fn version(&self) -> i64 {
        self.0
    }
}

impl fmt::Display for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// The lifecycle: which action is allowed in which status, and where it leads.
impl TicketStatus {
    /// Solved and closed tickets do not count against the open-ticket limit.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::New | Self::Open | Self::Pending)
    }

    /// Closed is final: nothing changes a closed ticket any more.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Closed)
    }

    /// The status after an assignment: a new ticket someone takes on is open.
    pub fn after_assignment(&self) -> Self {
        match self {
            Self::New => Self::Open,
            other @ (Self::Open | Self::Pending | Self::Solved | Self::Closed) => *other,
        }
    }
}

/// A state-changing action on a ticket, with the statuses it starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketTransition {
    Resolve,
    Reopen,
    Close,
}

impl TicketTransition {
    /// The statuses the action is allowed in.
    pub fn allowed_from(&self) -> &'static [TicketStatus] {
        match self {
            Self::Resolve => &[TicketStatus::New, TicketStatus::Open, TicketStatus::Pending],
            Self::Reopen | Self::Close => &[TicketStatus::Solved],
        }
    }

    pub fn target(&self) -> TicketStatus {
        match self {
            Self::Resolve => TicketStatus::Solved,
            Self::Reopen => TicketStatus::Open,
            Self::Close => TicketStatus::Closed,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Resolve => "resolve",
            Self::Reopen => "reopen",
            Self::Close => "close",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_subject_is_trimmed() {
        assert_eq!(
            TicketSubject::parse("  Printer on fire ").unwrap().as_str(),
            "Printer on fire"
        );
    }

    #[test]
    fn a_blank_subject_is_refused() {
        assert_eq!(
            TicketSubject::parse(" \t ").unwrap_err().description(),
            "must not be empty"
        );
    }

    #[test]
    fn a_subject_must_fit_on_one_line() {
        assert!(TicketSubject::parse("one\ntwo").is_err());
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(TicketSubject::parse(&"é".repeat(200)).is_ok());
        assert!(TicketSubject::parse(&"é".repeat(201)).is_err());
        assert!(TicketDescription::parse(&"ü".repeat(5000)).is_ok());
        assert!(TicketDescription::parse(&"ü".repeat(5001)).is_err());
    }

    #[test]
    fn etags_round_trip_and_garbage_is_refused() {
        assert_eq!(Etag::parse("v7").unwrap().to_string(), "v7");
        for raw in ["", "7", "v", "v0", "v-1", "w7"] {
            assert!(Etag::parse(raw).is_err(), "{raw:?} accepted");
        }
    }

    #[test]
    fn only_solved_tickets_reopen_or_close_and_closed_is_final() {
        assert_eq!(
            TicketTransition::Reopen.allowed_from(),
            [TicketStatus::Solved]
        );
        assert!(
            !TicketTransition::Resolve
                .allowed_from()
                .contains(&TicketStatus::Closed)
        );
        assert!(TicketStatus::Closed.is_final());
        assert_eq!(TicketStatus::New.after_assignment(), TicketStatus::Open);
        assert_eq!(
            TicketStatus::Pending.after_assignment(),
            TicketStatus::Pending
        );
    }

    #[test]
    fn every_status_and_priority_round_trips_through_its_stored_name() {
        for status in TicketStatus::ALL {
            assert_eq!(TicketStatus::parse(status.as_str()), Ok(*status));
        }
        for priority in TicketPriority::ALL {
            assert_eq!(TicketPriority::parse(priority.as_str()), Ok(*priority));
        }
        assert!(TicketStatus::parse("archived").is_err());
    }

    proptest! {
        #[test]
        fn any_accepted_subject_is_within_bounds(raw in "\\PC{0,300}") {
            if let Ok(subject) = TicketSubject::parse(&raw) {
                let length = subject.as_str().chars().count();
                prop_assert!((1..=TicketSubject::MAX_LENGTH).contains(&length));
                prop_assert_eq!(subject.as_str(), subject.as_str().trim());
            }
        }
    }
}
