//! Comments and the audit trail of a ticket.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    ApiKeyId, InvalidValue, StoredValues, TagSet, TicketId, TicketPriority, TicketStatus,
    TicketSubject, UserId, bounded_text,
};

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
    MarkedPending,
    PutOnHold,
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
            Self::MarkedPending => "marked_pending",
            Self::PutOnHold => "put_on_hold",
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

/// What a new ticket starts with, as its `created` audit record tells it: CreateTicket's and
/// an import's tickets are recorded alike.
#[derive(Debug)]
pub struct Opening<'a> {
    pub subject: &'a TicketSubject,
    pub priority: TicketPriority,
    pub requester: UserId,
    pub assignee: Option<UserId>,
    pub group: Option<uuid::Uuid>,
    pub tags: &'a TagSet,
    pub custom_fields: &'a StoredValues,
}

impl Opening<'_> {
    /// Every field the ticket starts with, from no value: tags as the sorted tags joined by
    /// commas, each custom field as `custom_fields.<key>` with its stored JSON as text.
    pub fn changes(&self) -> FieldChanges {
        let created = |new: String| FieldChange {
            old: None,
            new: Some(new),
        };
        let mut changes = FieldChanges::new();
        for (field, value) in [
            ("subject", Some(self.subject.as_str().to_owned())),
            ("priority", Some(self.priority.as_str().to_owned())),
            ("status", Some(TicketStatus::New.as_str().to_owned())),
            ("requester_id", Some(self.requester.to_string())),
            ("assignee_id", self.assignee.map(|id| id.to_string())),
            ("group_id", self.group.map(|id| id.to_string())),
            (
                "tags",
                (!self.tags.is_empty()).then(|| self.tags.to_strings().join(",")),
            ),
        ] {
            if let Some(value) = value {
                changes.insert(field.to_owned(), created(value));
            }
        }
        for (key, value) in self.custom_fields {
            changes.insert(format!("custom_fields.{key}"), created(value.to_string()));
        }
        changes
    }
}

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
