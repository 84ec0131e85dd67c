//! Tickets, comments and their audit trail between the wire and the domain: `From` the domain
//! types into the messages, and `TryFrom` a request's enum numbers into the domain's enums.

use super::timestamp;
use crate::domain::{self, Actor, InvalidValue, Ticket, TicketPriority, TicketStatus};
use crate::wire::proto::v1;

/// A status to filter by; UNSPECIFIED and numbers outside the enum are refused.
impl TryFrom<i32> for TicketStatus {
    type Error = InvalidValue;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match v1::TicketStatus::try_from(value) {
            Ok(v1::TicketStatus::New) => Ok(TicketStatus::New),
            Ok(v1::TicketStatus::Open) => Ok(TicketStatus::Open),
            Ok(v1::TicketStatus::Pending) => Ok(TicketStatus::Pending),
            Ok(v1::TicketStatus::OnHold) => Ok(TicketStatus::OnHold),
            Ok(v1::TicketStatus::Solved) => Ok(TicketStatus::Solved),
            Ok(v1::TicketStatus::Closed) => Ok(TicketStatus::Closed),
            Ok(v1::TicketStatus::Unspecified) | Err(_) => Err(InvalidValue::new(format!(
                "{value} is not a ticket status to filter by"
            ))),
        }
    }
}

/// A priority as a filter names it: UNSPECIFIED means nothing there, so it is refused, as is a
/// number outside the enum. Where UNSPECIFIED means "the default", NORMAL (a new ticket, a
/// change), read it with [`super::unless_unspecified`].
impl TryFrom<i32> for TicketPriority {
    type Error = InvalidValue;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match v1::TicketPriority::try_from(value) {
            Ok(v1::TicketPriority::Unspecified) => Err(InvalidValue::new(
                "TICKET_PRIORITY_UNSPECIFIED is not a priority to filter by",
            )),
            Ok(v1::TicketPriority::Low) => Ok(TicketPriority::Low),
            Ok(v1::TicketPriority::Normal) => Ok(TicketPriority::Normal),
            Ok(v1::TicketPriority::High) => Ok(TicketPriority::High),
            Ok(v1::TicketPriority::Urgent) => Ok(TicketPriority::Urgent),
            Err(_) => Err(InvalidValue::new(format!(
                "{value} is not a TicketPriority"
            ))),
        }
    }
}

impl From<TicketPriority> for v1::TicketPriority {
    fn from(priority: TicketPriority) -> Self {
        match priority {
            TicketPriority::Low => v1::TicketPriority::Low,
            TicketPriority::Normal => v1::TicketPriority::Normal,
            TicketPriority::High => v1::TicketPriority::High,
            TicketPriority::Urgent => v1::TicketPriority::Urgent,
        }
    }
}

impl From<TicketStatus> for v1::TicketStatus {
    fn from(status: TicketStatus) -> Self {
        match status {
            TicketStatus::New => v1::TicketStatus::New,
            TicketStatus::Open => v1::TicketStatus::Open,
            TicketStatus::Pending => v1::TicketStatus::Pending,
            TicketStatus::OnHold => v1::TicketStatus::OnHold,
            TicketStatus::Solved => v1::TicketStatus::Solved,
            TicketStatus::Closed => v1::TicketStatus::Closed,
        }
    }
}

impl From<Ticket> for v1::Ticket {
    fn from(ticket: Ticket) -> Self {
        let etag = ticket.etag().to_string();
        v1::Ticket {
            id: ticket.id.to_string(),
            account_id: ticket.account_id.to_string(),
            subject: ticket.subject.into_string(),
            description: ticket.description.into_string(),
            priority: v1::TicketPriority::from(ticket.priority).into(),
            status: v1::TicketStatus::from(ticket.status).into(),
            requester_id: ticket.requester_id.to_string(),
            requester_email: ticket.requester_email.into_string(),
            assignee_id: ticket
                .assignee_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            create_time: Some(timestamp(ticket.created_at)),
            update_time: Some(timestamp(ticket.updated_at)),
            etag,
            tags: ticket.tags.to_strings(),
            group_id: ticket.group_id.map(|id| id.to_string()).unwrap_or_default(),
            custom_fields: super::custom_field::json_values(ticket.custom_fields),
        }
    }
}

fn actor_ids(actor: Actor) -> (String, String) {
    match actor {
        Actor::User(user) => (user.to_string(), String::new()),
        Actor::ApiKey(key) => (String::new(), key.to_string()),
    }
}

impl From<domain::Comment> for v1::Comment {
    fn from(comment: domain::Comment) -> Self {
        let (author_id, _) = actor_ids(comment.author);
        v1::Comment {
            id: comment.id.to_string(),
            ticket_id: comment.ticket_id.to_string(),
            author_id,
            body: comment.body.as_str().to_owned(),
            public: comment.public,
            create_time: Some(timestamp(comment.created_at)),
        }
    }
}

impl From<domain::TicketActivity> for v1::TicketActivity {
    fn from(activity: domain::TicketActivity) -> Self {
        let (actor_user_id, actor_api_key_id) = actor_ids(activity.actor);
        v1::TicketActivity {
            id: activity.id.to_string(),
            ticket_id: activity.ticket_id.to_string(),
            actor_user_id,
            actor_api_key_id,
            action: activity.action,
            changes: activity
                .changes
                .into_iter()
                .map(|(field, change)| v1::FieldChange {
                    field,
                    old_value: change.old.unwrap_or_default(),
                    new_value: change.new.unwrap_or_default(),
                })
                .collect(),
            create_time: Some(timestamp(activity.created_at)),
        }
    }
}

/// One of the account's tags with its count (ListTags).
impl From<&domain::TagCount> for v1::TagCount {
    fn from(count: &domain::TagCount) -> Self {
        Self {
            tag: count.tag.as_str().to_owned(),
            ticket_count: count.tickets,
        }
    }
}
