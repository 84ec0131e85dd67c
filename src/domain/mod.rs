//! Domain types: values that can only exist in a valid state. Each has one constructor, `parse`,
//! that takes raw input and either returns the value or says what is wrong with it. Nothing here
//! knows of tonic or diesel; `api/` converts wire types into these at the edge.

mod comment;
mod email;
mod idempotency_key;
mod identity;
mod ids;
mod pagination;
mod ticket;
mod ticket_query;

pub use comment::{
    Actor, Comment, CommentBody, FieldChange, FieldChanges, TicketAction, TicketActivity,
};
pub use email::Email;
pub use idempotency_key::IdempotencyKey;
pub use identity::{
    Account, AccountName, AccountSlug, ApiKey, ApiKeyName, DisplayName, Password, Role, User,
    UserLogin,
};
pub use ids::{AccountId, ApiKeyId, SessionId, TicketId, UserId};
pub use pagination::{PageCursor, PageSize};
pub use ticket::{
    Etag, NewTicketRequest, RuleViolation, Ticket, TicketChange, TicketDecision, TicketDescription,
    TicketPriority, TicketStatus, TicketSubject, TicketTransition,
};
pub use ticket_query::{TicketFilter, TicketOrder, TicketOrderField};

use std::fmt;

/// Why a raw value was refused, in words a client can act on (the field is named by the caller,
/// which knows where the value came from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidValue(String);

impl InvalidValue {
    pub fn new(description: impl Into<String>) -> Self {
        Self(description.into())
    }

    pub fn description(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidValue {}

/// Trims `raw` and checks its length in characters (not bytes) lies in `min..=max`.
fn bounded_text(raw: &str, min: usize, max: usize) -> Result<String, InvalidValue> {
    let trimmed = raw.trim();
    let length = trimmed.chars().count();
    if length < min {
        return Err(if min == 1 {
            InvalidValue::new("must not be empty")
        } else {
            InvalidValue::new(format!("must be at least {min} characters"))
        });
    }
    if length > max {
        return Err(InvalidValue::new(format!(
            "must be at most {max} characters (got {length})"
        )));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(InvalidValue::new("must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}
