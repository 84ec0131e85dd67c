//! What a ticket is made of: its text fields, priority and lifecycle status.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    AccountId, Catalogue, Email, FieldChange, FieldChanges, InvalidValue, MAX_TAGS_PER_TICKET,
    PageCursor, RawValue, StoredValues, TagSet, TicketAction, TicketId, TicketOrderField,
    TicketTransition, UserId, bounded_text, single_line,
};

/// A one-line summary: 1 to 200 characters after trimming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketSubject(String);

impl TicketSubject {
    pub const MAX_LENGTH: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, 1, Self::MAX_LENGTH)
            .and_then(single_line)
            .map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, given up without a copy (building a wire message).
    pub fn into_string(self) -> String {
        self.0
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

    /// The text, given up without a copy (building a wire message).
    pub fn into_string(self) -> String {
        self.0
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
    /// Waiting for the requester.
    Pending,
    /// Waiting for a third party (a vendor, another team).
    OnHold,
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
    OnHold => "on_hold",
    Solved => "solved",
    Closed => "closed",
});

/// A ticket as a client asks for it, every part already valid.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTicketRequest {
    pub subject: TicketSubject,
    pub description: TicketDescription,
    pub priority: TicketPriority,
    /// Who the ticket is for; `None` means the caller (customers only).
    pub requester_email: Option<Email>,
    pub assignee: Option<UserId>,
    /// The group to open it in (agents only); with an assignee, one of its members.
    pub group: Option<Uuid>,
    /// The tags to open it with (agents only: customers neither see nor set tags).
    pub tags: TagSet,
    /// The custom field values to open it with, by key, each as sent: the service checks them
    /// against the account's catalogue.
    pub custom_fields: Vec<(String, RawValue)>,
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
    /// Agent-side labels, normalized and sorted (docs/tickets.md, "Tags").
    pub tags: TagSet,
    /// The group the ticket is assigned to (docs/tickets.md, "Groups").
    pub group_id: Option<Uuid>,
    /// Custom field values by key, as stored (docs/tickets.md, "Custom field values").
    pub custom_fields: StoredValues,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Grows by one with every change.
    pub version: i64,
}

impl Ticket {
    /// The ticket as a customer sees it: tags are the desk's own labels ("angry", "refund-risk")
    /// and, as in Zendesk, never shown to the requester; nor is the group that works on it. Of the
    /// custom fields, only the values of those `customer_visible` in `catalogue` are.
    pub fn as_seen_by_customer(mut self, catalogue: &Catalogue) -> Self {
        self.tags = TagSet::default();
        self.group_id = None;
        self.custom_fields =
            catalogue.visible_to_customers(std::mem::take(&mut self.custom_fields));
        self
    }

    pub fn etag(&self) -> Etag {
        Etag(self.version)
    }

    /// Where this ticket stands in a list ordered by `field`.
    pub fn position(&self, field: TicketOrderField) -> PageCursor {
        let at = match field {
            TicketOrderField::Created => self.created_at,
            TicketOrderField::Updated => self.updated_at,
        };
        PageCursor::at(at, self.id.as_uuid())
    }

    /// The lifecycle's one decision: what `change` makes of this ticket, the field changes the
    /// audit trail records, and what must still be checked against other state (the assignee,
    /// the requester's open-ticket limit), or why the lifecycle refuses it. Pure: the caller
    /// locks, persists and records.
    pub fn apply(&self, change: &TicketChange) -> Result<TicketDecision, RuleViolation> {
        let mut after = self.clone();
        let mut changes = FieldChanges::new();
        let decision = |action| TicketDecision {
            action,
            after: self.clone(),
            changes: FieldChanges::new(),
            assignee_to_check: None,
            group_to_check: None,
            membership_to_check: None,
            reopens: false,
            deletes: false,
        };
        match change {
            TicketChange::Edit {
                subject,
                description,
                priority,
                tags,
                custom_fields,
            } => {
                self.ensure_not_final("update")?;
                if let Some(tags) = tags.as_ref().filter(|new| **new != self.tags) {
                    note_tags(&mut changes, &self.tags, tags);
                    after.tags = tags.clone();
                }
                if let Some(edit) = custom_fields {
                    // Decided on the locked row: two agents setting different keys at once are
                    // applied one after the other, and both land.
                    after.custom_fields = edit.applied_to(&self.custom_fields);
                    note_custom_fields(&mut changes, &self.custom_fields, &after.custom_fields);
                }
                if let Some(subject) = subject.as_ref().filter(|new| **new != self.subject) {
                    note(
                        &mut changes,
                        "subject",
                        Some(self.subject.as_str()),
                        Some(subject.as_str()),
                    );
                    after.subject = subject.clone();
                }
                if let Some(description) =
                    description.as_ref().filter(|new| **new != self.description)
                {
                    note(
                        &mut changes,
                        "description",
                        Some(self.description.as_str()),
                        Some(description.as_str()),
                    );
                    after.description = description.clone();
                }
                if let Some(priority) = priority.filter(|new| *new != self.priority) {
                    note(
                        &mut changes,
                        "priority",
                        Some(self.priority.as_str()),
                        Some(priority.as_str()),
                    );
                    after.priority = priority;
                }
                Ok(TicketDecision {
                    after,
                    changes,
                    ..decision(TicketAction::Updated)
                })
            }
            TicketChange::Tag { add, remove } => {
                self.ensure_not_final("tag")?;
                // Decided on the locked row: two agents adding different tags at once are applied
                // one after the other, and both land.
                let tags: TagSet = self
                    .tags
                    .iter()
                    .chain(add.iter())
                    .filter(|tag| !remove.iter().any(|gone| gone == *tag))
                    .cloned()
                    .collect();
                if tags.len() > MAX_TAGS_PER_TICKET {
                    return Err(RuleViolation::TooManyTags { count: tags.len() });
                }
                if tags != self.tags {
                    note_tags(&mut changes, &self.tags, &tags);
                    after.tags = tags;
                }
                Ok(TicketDecision {
                    after,
                    changes,
                    ..decision(TicketAction::Updated)
                })
            }
            TicketChange::Assign { assignee, group } => {
                self.ensure_not_final("assign")?;
                if *assignee != self.assignee_id {
                    let text = |id: Option<UserId>| id.map(|id| id.to_string());
                    note(
                        &mut changes,
                        "assignee_id",
                        text(self.assignee_id).as_deref(),
                        text(*assignee).as_deref(),
                    );
                    after.assignee_id = *assignee;
                }
                if let Some(group) = group.filter(|new| *new != self.group_id) {
                    let text = |id: Option<Uuid>| id.map(|id| id.to_string());
                    note(
                        &mut changes,
                        "group_id",
                        text(self.group_id).as_deref(),
                        text(group).as_deref(),
                    );
                    after.group_id = group;
                }
                if assignee.is_some() {
                    after.status = self.status.after_assignment();
                }
                if after.status != self.status {
                    note(
                        &mut changes,
                        "status",
                        Some(self.status.as_str()),
                        Some(after.status.as_str()),
                    );
                }
                let group_to_check = after.group_id.filter(|_| after.group_id != self.group_id);
                let membership_to_check = after.group_id.zip(after.assignee_id);
                Ok(TicketDecision {
                    after,
                    changes,
                    assignee_to_check: *assignee,
                    group_to_check,
                    membership_to_check,
                    ..decision(TicketAction::Assigned)
                })
            }
            TicketChange::Transition(transition) => {
                if !transition.allowed_from().contains(&self.status) {
                    return Err(RuleViolation::IllegalTransition {
                        transition: *transition,
                        status: self.status,
                    });
                }
                if *transition == TicketTransition::Resolve && self.assignee_id.is_none() {
                    return Err(RuleViolation::Unassigned);
                }
                after.status = transition.target();
                note(
                    &mut changes,
                    "status",
                    Some(self.status.as_str()),
                    Some(after.status.as_str()),
                );
                // A waiting ticket is open already: the requester's count does not move.
                let reopens = !self.status.is_open() && after.status.is_open();
                Ok(TicketDecision {
                    after,
                    changes,
                    reopens,
                    ..decision(transition.action())
                })
            }
            TicketChange::Comment {
                comment_id,
                public,
                by_requester,
            } => {
                self.ensure_not_final("comment on")?;
                note(&mut changes, "comment_id", None, Some(comment_id));
                note(
                    &mut changes,
                    "comment_visibility",
                    None,
                    Some(if *public { "public" } else { "internal" }),
                );
                // The requester's reply is what a waiting ticket waited for (on hold included:
                // the desk has something new to read), and the desk's turn again.
                if *public && *by_requester && self.status.is_waiting() {
                    after.status = TicketStatus::Open;
                    note(
                        &mut changes,
                        "status",
                        Some(self.status.as_str()),
                        Some(after.status.as_str()),
                    );
                }
                Ok(TicketDecision {
                    after,
                    changes,
                    ..decision(TicketAction::Commented)
                })
            }
            TicketChange::Delete => Ok(TicketDecision {
                deletes: true,
                ..decision(TicketAction::Deleted)
            }),
        }
    }

    fn ensure_not_final(&self, action: &'static str) -> Result<(), RuleViolation> {
        if self.status.is_final() {
            return Err(RuleViolation::Final { action });
        }
        Ok(())
    }
}

/// A change asked of a ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TicketChange {
    /// New content; `None` leaves a field as it is.
    Edit {
        subject: Option<TicketSubject>,
        description: Option<TicketDescription>,
        priority: Option<TicketPriority>,
        /// The whole set of tags, replacing the ticket's.
        tags: Option<TagSet>,
        /// Custom field values to set, checked against the catalogue.
        custom_fields: Option<CustomFieldEdit>,
    },
    /// Adds and removes tags (AddTicketTags, RemoveTicketTags), on the tags the ticket has when
    /// it is locked: never a read-modify-write by the client.
    Tag {
        add: TagSet,
        remove: TagSet,
    },
    /// Assign to someone, or unassign with `None`; with `group`, move the ticket to a group, or
    /// (`Some(None)`) out of its group. Without, the ticket keeps its group.
    Assign {
        assignee: Option<UserId>,
        group: Option<Option<Uuid>>,
    },
    Transition(TicketTransition),
    /// A comment was added: the ticket records it and counts as changed; the requester's public
    /// reply moves a waiting ticket back to open.
    Comment {
        comment_id: String,
        public: bool,
        by_requester: bool,
    },
    Delete,
}

/// A change of custom field values, each value already checked against its field and in its
/// stored JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustomFieldEdit {
    /// All the values (mask `custom_fields`): keys absent are cleared.
    Replace(StoredValues),
    /// Some keys (mask `custom_fields.<key>`): each set, or cleared with `None`; other keys stay.
    Set(Vec<(String, Option<serde_json::Value>)>),
}

impl CustomFieldEdit {
    /// The values `current` is left with.
    pub fn applied_to(&self, current: &StoredValues) -> StoredValues {
        match self {
            Self::Replace(values) => values.clone(),
            Self::Set(keys) => {
                let mut values = current.clone();
                for (key, value) in keys {
                    match value {
                        Some(value) => values.insert(key.clone(), value.clone()),
                        None => values.remove(key),
                    };
                }
                values
            }
        }
    }
}

/// Records a change of custom fields: one change per key that differs, named
/// `custom_fields.<key>`, each side its compact JSON (no value for none).
fn note_custom_fields(changes: &mut FieldChanges, old: &StoredValues, new: &StoredValues) {
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let (before, after) = (old.get(key), new.get(key));
        if before != after {
            note(
                changes,
                &format!("custom_fields.{key}"),
                before.map(serde_json::Value::to_string).as_deref(),
                after.map(serde_json::Value::to_string).as_deref(),
            );
        }
    }
}

/// What [`Ticket::apply`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketDecision {
    pub action: TicketAction,
    /// The ticket as the change leaves it (its version and times are the database's to set).
    pub after: Ticket,
    /// The audit trail's record of the change; empty when nothing differs.
    pub changes: FieldChanges,
    /// An assignee that must be an active agent or admin of the account.
    pub assignee_to_check: Option<UserId>,
    /// A group the ticket moves to, which must be a live group of the account.
    pub group_to_check: Option<Uuid>,
    /// A group and an assignee the change leaves the ticket with together: the assignee must be
    /// a member of the group.
    pub membership_to_check: Option<(Uuid, UserId)>,
    /// The ticket is open again, so the requester's open-ticket limit applies.
    pub reopens: bool,
    pub deletes: bool,
}

impl TicketDecision {
    /// Whether anything is to be written: a change with no differing field writes nothing
    /// and keeps the etag.
    pub fn writes(&self) -> bool {
        self.deletes || !self.changes.is_empty()
    }
}

/// Why the lifecycle refuses a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleViolation {
    /// The ticket is closed, and closed is final.
    Final { action: &'static str },
    /// The transition does not start from the ticket's status.
    IllegalTransition {
        transition: TicketTransition,
        status: TicketStatus,
    },
    /// Only an assigned ticket can be resolved.
    Unassigned,
    /// Adding the tags would leave the ticket with more than [`MAX_TAGS_PER_TICKET`].
    TooManyTags { count: usize },
}

/// Records a change of tags: each side as the sorted tags joined by commas (a tag holds no
/// comma), no value for none.
fn note_tags(changes: &mut FieldChanges, old: &TagSet, new: &TagSet) {
    let text = |tags: &TagSet| (!tags.is_empty()).then(|| tags.to_strings().join(","));
    note(changes, "tags", text(old).as_deref(), text(new).as_deref());
}

fn note(changes: &mut FieldChanges, field: &str, old: Option<&str>, new: Option<&str>) {
    changes.insert(
        field.to_owned(),
        FieldChange {
            old: old.map(str::to_owned),
            new: new.map(str::to_owned),
        },
    );
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

#[cfg(test)]
pub(super) mod tests {
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
    fn reopening_starts_from_solved_or_a_wait_closing_from_solved_and_closed_is_final() {
        assert_eq!(
            TicketTransition::Reopen.allowed_from(),
            [
                TicketStatus::Pending,
                TicketStatus::OnHold,
                TicketStatus::Solved
            ]
        );
        assert_eq!(
            TicketTransition::Close.allowed_from(),
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

    /// A valid ticket in `status`, assigned to `assignee`, for the lifecycle's tests.
    pub(in crate::domain) fn ticket(status: TicketStatus, assignee: Option<UserId>) -> Ticket {
        Ticket {
            id: TicketId::generate(),
            account_id: AccountId::generate(),
            subject: TicketSubject::parse("Printer on fire").unwrap(),
            description: TicketDescription::parse("Smoke everywhere").unwrap(),
            priority: TicketPriority::Normal,
            status,
            requester_id: UserId::generate(),
            requester_email: Email::parse("jane@example.com").unwrap(),
            assignee_id: assignee,
            tags: TagSet::default(),
            group_id: None,
            custom_fields: StoredValues::new(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 1,
        }
    }

    #[test]
    fn an_edit_that_changes_nothing_writes_nothing() {
        let current = ticket(TicketStatus::Open, None);
        let decision = current
            .apply(&TicketChange::Edit {
                subject: Some(current.subject.clone()),
                description: None,
                priority: Some(TicketPriority::Normal),
                tags: None,
                custom_fields: None,
            })
            .unwrap();
        assert!(!decision.writes());
        assert_eq!(decision.after, current);
    }

    #[test]
    fn an_edit_records_the_old_and_new_value_of_each_changed_field() {
        let current = ticket(TicketStatus::Open, None);
        let decision = current
            .apply(&TicketChange::Edit {
                subject: None,
                description: None,
                priority: Some(TicketPriority::Urgent),
                tags: None,
                custom_fields: None,
            })
            .unwrap();
        assert_eq!(decision.after.priority, TicketPriority::Urgent);
        assert_eq!(
            decision.changes.into_iter().collect::<Vec<_>>(),
            [(
                "priority".to_owned(),
                FieldChange {
                    old: Some("normal".to_owned()),
                    new: Some("urgent".to_owned())
                }
            )]
        );
    }

    #[test]
    fn assigning_a_new_ticket_opens_it_and_names_the_assignee_to_check() {
        let agent = UserId::generate();
        let decision = ticket(TicketStatus::New, None)
            .apply(&TicketChange::Assign {
                assignee: Some(agent),
                group: None,
            })
            .unwrap();
        assert_eq!(decision.after.status, TicketStatus::Open);
        assert_eq!(decision.after.assignee_id, Some(agent));
        assert_eq!(decision.assignee_to_check, Some(agent));
        assert_eq!(decision.membership_to_check, None);
        assert_eq!(
            decision.changes.keys().collect::<Vec<_>>(),
            ["assignee_id", "status"]
        );
    }

    #[test]
    fn assigning_to_a_group_records_it_and_names_the_membership_to_check() {
        let agent = UserId::generate();
        let group = Uuid::now_v7();
        let decision = ticket(TicketStatus::Open, Some(agent))
            .apply(&TicketChange::Assign {
                assignee: Some(agent),
                group: Some(Some(group)),
            })
            .unwrap();
        assert_eq!(decision.after.group_id, Some(group));
        assert_eq!(decision.group_to_check, Some(group));
        assert_eq!(decision.membership_to_check, Some((group, agent)));
        assert_eq!(
            decision.changes.into_iter().collect::<Vec<_>>(),
            [(
                "group_id".to_owned(),
                FieldChange {
                    old: None,
                    new: Some(group.to_string())
                }
            )]
        );
    }

    #[test]
    fn an_assignment_without_a_group_keeps_the_ticket_in_its_group() {
        let agent = UserId::generate();
        let group = Uuid::now_v7();
        let mut current = ticket(TicketStatus::Open, None);
        current.group_id = Some(group);
        let kept = current
            .apply(&TicketChange::Assign {
                assignee: Some(agent),
                group: None,
            })
            .unwrap();
        assert_eq!(kept.after.group_id, Some(group));
        assert_eq!(kept.group_to_check, None);
        assert_eq!(kept.membership_to_check, Some((group, agent)));
        let left = current
            .apply(&TicketChange::Assign {
                assignee: Some(agent),
                group: Some(None),
            })
            .unwrap();
        assert_eq!(left.after.group_id, None);
        assert_eq!(left.membership_to_check, None);
        assert_eq!(
            left.changes.get("group_id"),
            Some(&FieldChange {
                old: Some(group.to_string()),
                new: None
            })
        );
    }

    #[test]
    fn a_closed_ticket_refuses_every_change_but_deletion() {
        let closed = ticket(TicketStatus::Closed, Some(UserId::generate()));
        for change in [
            TicketChange::Edit {
                subject: None,
                description: None,
                priority: Some(TicketPriority::High),
                tags: None,
                custom_fields: None,
            },
            TicketChange::Assign {
                assignee: None,
                group: None,
            },
            TicketChange::Comment {
                comment_id: "c".to_owned(),
                public: true,
                by_requester: true,
            },
            TicketChange::Transition(TicketTransition::Reopen),
            TicketChange::Transition(TicketTransition::Hold),
        ] {
            assert!(closed.apply(&change).is_err(), "{change:?} accepted");
        }
        assert!(closed.apply(&TicketChange::Delete).unwrap().deletes);
    }

    #[test]
    fn only_an_assigned_ticket_is_resolved_and_reopening_counts_against_the_limit() {
        assert_eq!(
            ticket(TicketStatus::Open, None)
                .apply(&TicketChange::Transition(TicketTransition::Resolve)),
            Err(RuleViolation::Unassigned)
        );
        let reopened = ticket(TicketStatus::Solved, Some(UserId::generate()))
            .apply(&TicketChange::Transition(TicketTransition::Reopen))
            .unwrap();
        assert!(reopened.reopens);
        assert_eq!(reopened.after.status, TicketStatus::Open);
    }

    fn any_status() -> impl Strategy<Value = TicketStatus> {
        proptest::sample::select(TicketStatus::ALL.to_vec())
    }

    fn any_transition() -> impl Strategy<Value = TicketTransition> {
        proptest::sample::select(vec![
            TicketTransition::MarkPending,
            TicketTransition::Hold,
            TicketTransition::Resolve,
            TicketTransition::Reopen,
            TicketTransition::Close,
        ])
    }

    proptest! {
        #[test]
        fn a_transition_applies_exactly_from_the_statuses_it_allows(
            status in any_status(),
            transition in any_transition(),
            assigned in any::<bool>(),
        ) {
            let current = ticket(status, assigned.then(UserId::generate));
            let applies = transition.allowed_from().contains(&status)
                && (assigned || transition != TicketTransition::Resolve);
            match current.apply(&TicketChange::Transition(transition)) {
                Ok(decision) => {
                    prop_assert!(applies);
                    prop_assert_eq!(decision.after.status, transition.target());
                    prop_assert_eq!(decision.action, transition.action());
                }
                Err(_) => prop_assert!(!applies),
            }
        }
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
