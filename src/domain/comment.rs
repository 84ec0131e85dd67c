//! Comments and the audit trail of a ticket.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{ApiKeyId, InvalidValue, TicketId, UserId, bounded_text};

/// A comment's text: 1 to 10000 characters after trimming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentBody(String);

impl CommentBody {
    pub const MAX_LENGTH: usize = 10_000;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, 1, Self::MAX_LENGTH).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who did something: a person, or a service with an API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    ApiKey(ApiKeyId),
}

/// A stored comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub id: uuid::Uuid,
    pub ticket_id: TicketId,
    pub author: Actor,
    pub body: CommentBody,
    pub public: bool,
    pub created_at: DateTime<Utc>,
}

/// What happened to a ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketAction {
    Created,
    Updated,
    Assigned,
    Resolved,
    Reopened,
    Closed,
    Commented,
    Deleted,
}

impl TicketAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Assigned => "assigned",
            Self::Resolved => "resolved",
            Self::Reopened => "reopened",
            Self::Closed => "closed",
            Self::Commented => "commented",
            Self::Deleted => "deleted",
        }
    }
}

/// A field's value before and after a change, as text (`None`: no value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    pub old: Option<String>,
    pub new: Option<String>,
}

/// The changed fields of one change, by field name.
pub type FieldChanges = BTreeMap<String, FieldChange>;

/// One record of a ticket's audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketActivity {
    pub id: uuid::Uuid,
    pub ticket_id: TicketId,
    pub actor: Actor,
    pub action: String,
    pub changes: FieldChanges,
    pub created_at: DateTime<Utc>,
}
