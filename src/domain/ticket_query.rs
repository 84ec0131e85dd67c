//! What ListTickets may ask for: filters and an order, folded into a fingerprint that page
//! tokens carry so that a token cannot be replayed against another query.

use sha2::{Digest, Sha256};

use super::{InvalidValue, TicketFilterExpr, TicketPriority, TicketStatus, Timestamp, UserId};

/// Which timestamp a ticket list is ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketOrderField {
    Created,
    Updated,
}

/// A ticket list's order: a timestamp, then the id, both in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketOrder {
    pub field: TicketOrderField,
    pub descending: bool,
}

impl TicketOrder {
    pub const NEWEST_CREATED_FIRST: Self = Self {
        field: TicketOrderField::Created,
        descending: true,
    };

    /// `create_time desc` (the default, also for an empty string), `create_time asc`,
    /// `update_time desc` or `update_time asc`.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let words: Vec<&str> = raw.split_whitespace().collect();
        let field = match words.first().copied() {
            None | Some("create_time" | "createTime") => TicketOrderField::Created,
            Some("update_time" | "updateTime") => TicketOrderField::Updated,
            Some(_) => return Err(Self::invalid()),
        };
        let descending = match words.get(1..) {
            None | Some([] | ["desc"]) => true,
            Some(["asc"]) => false,
            Some(_) => return Err(Self::invalid()),
        };
        Ok(Self { field, descending })
    }

    fn invalid() -> InvalidValue {
        InvalidValue::new(
            "must be one of: create_time desc, create_time asc, update_time desc, update_time asc",
        )
    }
}

/// Which tickets a list holds. Empty vectors and `None` mean "any".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketFilter {
    pub statuses: Vec<TicketStatus>,
    pub priorities: Vec<TicketPriority>,
    pub assignee: Option<UserId>,
    pub requester: Option<UserId>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    /// The request's `filter` (docs/tickets.md, "The filter language"), ANDed with the above.
    pub expr: TicketFilterExpr,
    pub order: TicketOrder,
}

impl Default for TicketFilter {
    fn default() -> Self {
        Self {
            statuses: Vec::new(),
            priorities: Vec::new(),
            assignee: None,
            requester: None,
            created_after: None,
            created_before: None,
            expr: TicketFilterExpr::default(),
            order: TicketOrder::NEWEST_CREATED_FIRST,
        }
    }
}

impl TicketFilter {
    /// A short, stable digest of the whole query: page tokens carry it.
    pub fn fingerprint(&self) -> String {
        let mut statuses: Vec<&str> = self.statuses.iter().map(TicketStatus::as_str).collect();
        statuses.sort_unstable();
        let mut priorities: Vec<&str> =
            self.priorities.iter().map(TicketPriority::as_str).collect();
        priorities.sort_unstable();
        let mut canonical = format!(
            "{statuses:?}|{priorities:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.assignee.map(|id| id.to_string()),
            self.requester.map(|id| id.to_string()),
            self.created_after.map(Timestamp::micros),
            self.created_before.map(Timestamp::micros),
            self.order
        );
        // Appended only when present: tokens issued before filters existed stay valid.
        if !self.expr.is_empty() {
            canonical.push('|');
            canonical.push_str(&self.expr.canonical());
        }
        hex::encode(&Sha256::digest(canonical.as_bytes())[..6])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_defaults_to_newest_created_first() {
        assert_eq!(
            TicketOrder::parse(""),
            Ok(TicketOrder::NEWEST_CREATED_FIRST)
        );
        assert_eq!(
            TicketOrder::parse("update_time asc"),
            Ok(TicketOrder {
                field: TicketOrderField::Updated,
                descending: false
            })
        );
        for raw in ["subject", "create_time sideways", "create_time asc desc"] {
            assert!(TicketOrder::parse(raw).is_err(), "{raw:?} accepted");
        }
    }

    #[test]
    fn the_fingerprint_ignores_the_order_of_repeated_values_but_not_their_content() {
        let one = TicketFilter {
            statuses: vec![TicketStatus::New, TicketStatus::Open],
            ..TicketFilter::default()
        };
        let same = TicketFilter {
            statuses: vec![TicketStatus::Open, TicketStatus::New],
            ..TicketFilter::default()
        };
        let other = TicketFilter {
            statuses: vec![TicketStatus::Open],
            ..TicketFilter::default()
        };
        assert_eq!(one.fingerprint(), same.fingerprint());
        assert_ne!(one.fingerprint(), other.fingerprint());
    }
}
