//! What ListTickets may ask for: filters and an order, folded into a fingerprint that page
//! tokens carry so that a token cannot be replayed against another query.

use sha2::{Digest, Sha256};

use super::filter::Position;
use super::{
    Condition, InvalidValue, Moment, Test, TicketFilterExpr, TicketPriority, TicketStatus,
    TimeComparator, TimeField, Timestamp, UserId,
};

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

    /// Every condition of the list in the filter language's terms: the typed filters, the
    /// customer `restricted_to` (who lists only their own tickets), then `expr`. What a count of
    /// the list compiles; its conditions hold exactly where the list's query does.
    pub fn as_expr(&self, restricted_to: Option<UserId>) -> TicketFilterExpr {
        let at = Position(0);
        let mut tests = Vec::new();
        if !self.statuses.is_empty() {
            tests.push(Test::Status {
                any_of: self.statuses.clone(),
                negated: false,
            });
        }
        if !self.priorities.is_empty() {
            tests.push(Test::Priority {
                any_of: self.priorities.clone(),
                negated: false,
            });
        }
        if let Some(assignee) = self.assignee {
            tests.push(Test::Assignee {
                any_of: vec![Some(assignee.as_uuid())],
                negated: false,
            });
        }
        // Both when both are set: a customer naming someone else's tickets lists none.
        for requester in [restricted_to, self.requester].into_iter().flatten() {
            tests.push(Test::Requester {
                any_of: vec![requester.as_uuid()],
                negated: false,
            });
        }
        let created = [
            (self.created_after, TimeComparator::AtOrAfter),
            (self.created_before, TimeComparator::Before),
        ];
        for (bound, comparator) in created {
            if let Some(bound) = bound {
                tests.push(Test::Time {
                    field: TimeField::Created,
                    comparator,
                    moment: Moment::At(bound.get()),
                });
            }
        }
        let mut conditions: Vec<Condition> = tests
            .into_iter()
            .map(|test| Condition { at, test })
            .collect();
        conditions.extend(self.expr.conditions.iter().cloned());
        TicketFilterExpr { conditions }
    }
}

/// How many tickets a whole list holds, every page together (ListTickets' `total_size`):
/// counted up to [`TotalSize::EXACT_UP_TO`], the database planner's estimate beyond, as desks
/// show "100+" rather than count a million rows on every page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotalSize {
    /// Counted, at most [`TotalSize::EXACT_UP_TO`].
    Exact(i64),
    /// More than [`TotalSize::EXACT_UP_TO`]: the planner's estimate, never less than one more.
    Estimated(i64),
}

impl TotalSize {
    /// The most tickets a list's total is counted to; the count reads at most one more.
    pub const EXACT_UP_TO: i64 = 100;

    /// A count that read at most `EXACT_UP_TO + 1` rows: `None` when the list holds more, and
    /// only an estimate can say how many.
    pub fn from_capped_count(count: i64) -> Option<Self> {
        (count <= Self::EXACT_UP_TO).then_some(Self::Exact(count))
    }

    /// The planner's estimate of a list known to hold more than `EXACT_UP_TO`.
    pub fn estimated(planner_rows: i64) -> Self {
        Self::Estimated(planner_rows.max(Self::EXACT_UP_TO + 1))
    }

    pub fn count(self) -> i64 {
        match self {
            Self::Exact(count) | Self::Estimated(count) => count,
        }
    }

    pub fn is_estimated(self) -> bool {
        matches!(self, Self::Estimated(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_beyond_the_exact_bound_is_an_estimate_of_at_least_one_more() {
        assert_eq!(TotalSize::from_capped_count(0), Some(TotalSize::Exact(0)));
        assert_eq!(
            TotalSize::from_capped_count(100),
            Some(TotalSize::Exact(100))
        );
        assert_eq!(TotalSize::from_capped_count(101), None);
        assert_eq!(TotalSize::estimated(40), TotalSize::Estimated(101));
        assert_eq!(TotalSize::estimated(250_000).count(), 250_000);
        assert!(TotalSize::estimated(250_000).is_estimated());
    }

    #[test]
    fn a_lists_typed_filters_and_its_customer_become_conditions_before_its_expression() {
        let customer = UserId::from_uuid(uuid::Uuid::from_u128(1));
        let named = UserId::from_uuid(uuid::Uuid::from_u128(2));
        let filter = TicketFilter {
            statuses: vec![TicketStatus::Open],
            requester: Some(named),
            ..TicketFilter::default()
        };
        let fields: Vec<&str> = filter
            .as_expr(Some(customer))
            .conditions
            .iter()
            .map(|condition| condition.test.field())
            .collect();
        assert_eq!(fields, ["status", "requester", "requester"]);
        assert!(TicketFilter::default().as_expr(None).is_empty());
    }

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
