//! A filter read against one ticket in memory: what an SLA policy's condition decides for the
//! ticket a change is writing, without asking the database. The answers are those of the SQL
//! the database layer compiles from the same [`TicketFilterExpr`] (`db::models::ticket_filter`),
//! which `tests/api/tickets/filter.rs` and `custom_values.rs` check case by case on stored
//! tickets: `=` and `!=` on nullable fields treat "none" as a value, `tags:` is an overlap and
//! `tags: (a AND b)` a containment, and a custom field's condition is a JSON containment as
//! PostgreSQL's `@>` reads it.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::ticket::Ticket;
use super::ticket_filter_expr::{Test, TicketFilterExpr, TimeComparator, TimeField};

impl TicketFilterExpr {
    /// Whether `ticket` is one the filter lists, `now` being the time a relative moment
    /// (`now(-24h)`) is read at.
    pub fn matches(&self, ticket: &Ticket, now: DateTime<Utc>) -> bool {
        self.conditions
            .iter()
            .all(|condition| condition.test.holds_for(ticket, now))
    }
}

impl Test {
    /// Whether the condition holds for `ticket`.
    pub fn holds_for(&self, ticket: &Ticket, now: DateTime<Utc>) -> bool {
        let (plain, negated) = match self {
            Self::Status { any_of, negated } => (any_of.contains(&ticket.status), *negated),
            Self::Priority { any_of, negated } => (any_of.contains(&ticket.priority), *negated),
            Self::Assignee { any_of, negated } => (
                any_of.contains(&ticket.assignee_id.map(|id| id.as_uuid())),
                *negated,
            ),
            Self::Requester { any_of, negated } => {
                (any_of.contains(&ticket.requester_id.as_uuid()), *negated)
            }
            Self::Group { any_of, negated } => (any_of.contains(&ticket.group_id), *negated),
            Self::Tags { tags, all, negated } => {
                let has = |tag: &String| ticket.tags.iter().any(|own| own.as_str() == tag);
                let plain = if *all {
                    tags.iter().all(has)
                } else {
                    tags.iter().any(has)
                };
                (plain, *negated)
            }
            Self::Time {
                field,
                comparator,
                moment,
            } => {
                let value = match field {
                    TimeField::Created => ticket.created_at,
                    TimeField::Updated => ticket.updated_at,
                };
                let bound = moment.resolve(now);
                let plain = match comparator {
                    TimeComparator::Before => value < bound,
                    TimeComparator::AtOrBefore => value <= bound,
                    TimeComparator::After => value > bound,
                    TimeComparator::AtOrAfter => value >= bound,
                };
                (plain, false)
            }
            Self::CustomField {
                any_of, negated, ..
            } => {
                let values = Value::Object(ticket.custom_fields.clone());
                let plain = any_of.iter().any(|wanted| contains(&values, wanted));
                (plain, *negated)
            }
        };
        plain != negated
    }
}

/// PostgreSQL's `container @> contained` for the shapes a filter builds: an object contains
/// another when it has each of its keys with a containing value; an array contains another when
/// each of its elements is contained in one of the first's; scalars contain only their equal
/// (numbers by value).
fn contains(container: &Value, contained: &Value) -> bool {
    match (container, contained) {
        (Value::Object(outer), Value::Object(inner)) => inner.iter().all(|(key, value)| {
            outer
                .get(key)
                .is_some_and(|present| contains(present, value))
        }),
        (Value::Array(outer), Value::Array(inner)) => inner
            .iter()
            .all(|value| outer.iter().any(|present| contains(present, value))),
        (Value::Number(one), Value::Number(other)) => same_number(one, other),
        (one, other) => !one.is_object() && !one.is_array() && one == other,
    }
}

/// Numbers compared by value, as jsonb's numeric does (`1` and `1.0` are one number). A
/// filter's numbers are integers (a decimal field's values are text), so no precision is lost.
fn same_number(one: &serde_json::Number, other: &serde_json::Number) -> bool {
    match (one.as_i64(), other.as_i64()) {
        (Some(one), Some(other)) => one == other,
        _ => one.as_f64() == other.as_f64(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::domain::custom_field::{Catalogue, CustomField, FieldKey, FieldKind};
    use crate::domain::ticket_filter_expr::FilterContext;
    use crate::domain::{
        AccountId, Email, TagSet, TicketDescription, TicketId, TicketPriority, TicketStatus,
        TicketSubject, UserId,
    };

    fn field(key: &str, kind: FieldKind) -> CustomField {
        let now = Utc::now();
        CustomField {
            id: Uuid::now_v7(),
            account_id: Uuid::now_v7(),
            key: FieldKey::parse(key).expect("a key"),
            title: key.to_owned(),
            description: String::new(),
            kind,
            customer_visible: false,
            customer_editable: false,
            required_to_solve: false,
            position: 0,
            retired_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn catalogue() -> Catalogue {
        let areas = ["billing".to_owned(), "login".to_owned(), "sso".to_owned()];
        Catalogue::new(vec![
            field("seats", FieldKind::Integer),
            field("plan", FieldKind::Text),
            field(
                "areas",
                FieldKind::parse("multiple_choice", &areas, None).expect("a kind"),
            ),
        ])
    }

    fn matches(filter: &str, ticket: &Ticket) -> bool {
        let catalogue = catalogue();
        let context = FilterContext {
            me: None,
            custom_fields: &catalogue,
        };
        TicketFilterExpr::parse_field(filter, &context)
            .unwrap_or_else(|error| panic!("{filter}: {error}"))
            .matches(ticket, Utc::now())
    }

    fn ticket() -> Ticket {
        let Value::Object(custom_fields) =
            json!({"seats": 12, "plan": "gold", "areas": ["billing", "sso"]})
        else {
            unreachable!("an object")
        };
        Ticket {
            id: TicketId::generate(),
            account_id: AccountId::generate(),
            subject: TicketSubject::parse("Printer on fire").unwrap(),
            description: TicketDescription::parse("Smoke everywhere").unwrap(),
            priority: TicketPriority::High,
            status: TicketStatus::OnHold,
            requester_id: UserId::generate(),
            requester_email: Email::parse("jane@example.com").unwrap(),
            assignee_id: None,
            tags: TagSet::parse(&["vip", "refund"]).unwrap(),
            group_id: Some(Uuid::now_v7()),
            custom_fields,
            created_at: Utc::now() - Duration::hours(2),
            updated_at: Utc::now(),
            version: 1,
        }
    }

    #[test]
    fn an_empty_filter_matches_every_ticket() {
        assert!(matches("", &ticket()));
    }

    #[test]
    fn each_field_is_compared_as_the_sql_compares_it() {
        let ticket = ticket();
        let group = ticket.group_id.unwrap();
        let requester = ticket.requester_id;
        let held = [
            "status = on_hold",
            "NOT status = (open OR pending)",
            "status != open",
            "priority = (high OR urgent)",
            "assignee = none",
            "NOT assignee = 0190f8a0-0000-7000-8000-000000000001",
            &format!("group = {group}"),
            "group != none",
            &format!("requester = {requester}"),
            "tags: vip",
            "tags: (vip AND refund)",
            "tags: (nope OR refund)",
            "NOT tags: nope",
            "create_time < now(-1h)",
            "update_time >= now(-1h)",
            "custom_fields.seats = 12",
            "custom_fields.plan = gold",
            "custom_fields.plan != silver",
            "custom_fields.areas: sso",
            "custom_fields.areas: (login OR billing)",
            "custom_fields.areas: (sso AND billing)",
            "status = on_hold AND tags: vip AND custom_fields.seats != 13",
        ];
        for filter in held {
            assert!(matches(filter, &ticket), "{filter} should hold");
        }
        let refused = [
            "status = open",
            "priority != high",
            "assignee != none",
            "group = none",
            "tags: nope",
            "tags: (vip AND nope)",
            "NOT tags: vip",
            "create_time > now(-1h)",
            "custom_fields.seats = 13",
            "custom_fields.plan = Gold",
            "custom_fields.areas: login",
            "custom_fields.areas: (sso AND login)",
            "status = on_hold AND tags: nope",
        ];
        for filter in refused {
            assert!(!matches(filter, &ticket), "{filter} should not hold");
        }
    }

    #[test]
    fn a_ticket_without_a_value_fails_an_equality_and_passes_its_negation() {
        let mut ticket = ticket();
        ticket.custom_fields.clear();
        assert!(!matches("custom_fields.seats = 12", &ticket));
        assert!(matches("custom_fields.seats != 12", &ticket));
        assert!(!matches("custom_fields.areas: sso", &ticket));
    }

    #[test]
    fn containment_reads_json_as_postgresql_does() {
        assert!(contains(&json!({"a": [1, 2, 3]}), &json!({"a": [3, 1]})));
        assert!(contains(&json!({"a": [1, 2]}), &json!({"a": []})));
        assert!(!contains(&json!({"a": [1, 2]}), &json!({"a": 1})));
        assert!(contains(&json!({"a": 1.0}), &json!({"a": 1})));
        assert!(!contains(&json!({"a": "1"}), &json!({"a": 1})));
        assert!(!contains(&json!({"a": {"b": 1}}), &json!({"b": 1})));
        assert!(contains(
            &json!({"a": {"b": 1, "c": 2}}),
            &json!({"a": {"b": 1}})
        ));
    }
}
