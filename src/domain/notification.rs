//! Email notifications as the domain sees them: what kind of event a message tells of, and the
//! data each kind carries from the change that caused it to the message sent later.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// What a notification tells its recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    /// A ticket was created: the acknowledgement to its requester, with the ticket's reference.
    TicketCreated,
    /// Someone at the desk commented publicly on a ticket: the comment, to its requester
    /// (internal notes never leave the desk).
    CommentAdded,
    /// Someone at the desk marked a ticket solved: the notice to its requester.
    TicketSolved,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TicketCreated => "ticket_created",
            Self::CommentAdded => "comment_added",
            Self::TicketSolved => "ticket_solved",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "ticket_created" => Ok(Self::TicketCreated),
            "comment_added" => Ok(Self::CommentAdded),
            "ticket_solved" => Ok(Self::TicketSolved),
            _ => Err(InvalidValue::new(
                "must be ticket_created, comment_added or ticket_solved",
            )),
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the acknowledgement of a new ticket says, as the ticket was when it was created (stored
/// with the notification: a later edit does not change a message already queued).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketCreatedData {
    /// The ticket's subject, as the requester wrote it (any text: escaped where it is shown).
    pub subject: String,
    /// The requester's display name; empty when the desk knows none.
    pub requester_name: String,
}

/// What the notice of a public comment says, as it was when the comment was added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentAddedData {
    /// The ticket's subject.
    pub subject: String,
    /// The comment, as written (any text: escaped where it is shown).
    pub body: String,
}

/// What the notice of a solved ticket says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSolvedData {
    /// The ticket's subject.
    pub subject: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_reads_back_what_it_writes_and_nothing_else() {
        assert_eq!(
            NotificationKind::parse(NotificationKind::TicketCreated.as_str()),
            Ok(NotificationKind::TicketCreated)
        );
        assert_eq!(
            NotificationKind::parse(NotificationKind::CommentAdded.as_str()),
            Ok(NotificationKind::CommentAdded)
        );
        assert_eq!(
            NotificationKind::parse(NotificationKind::TicketSolved.as_str()),
            Ok(NotificationKind::TicketSolved)
        );
        assert!(NotificationKind::parse("charge_succeeded").is_err());
    }
}
