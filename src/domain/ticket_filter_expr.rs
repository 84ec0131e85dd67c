//! The ticket fields a list's `filter` may compare, and how: a parsed [`Filter`] checked
//! against them and turned into conditions the database layer compiles to SQL. Everything a
//! filter can say is refused here or served by an index (docs/tickets.md, "The filter
//! language"): a filter is an AND of conditions, each on one field; an OR joins values of one
//! field; a NOT negates one restriction. An OR across fields or a NOT over a group would have the
//! planner walk every ticket of the account, so they are refused where they are written.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::custom_field::{Catalogue, FieldKind, filter_value};
use super::filter::{
    Argument, Comparator, Expr, Filter, FilterError, Position, Restriction, Value,
};
use super::{InvalidValue, Tag, TicketPriority, TicketStatus, UserId};

/// The fields a filter may name, as listed in refusals.
pub const FILTER_FIELDS: &str =
    "status, priority, assignee, requester, group, tags, create_time, update_time";

/// The custom fields of an account, as the filter sees them: the account's [`Catalogue`], or
/// [`NoCustomFields`] where a filter names none (no catalogue is read then).
pub trait CustomFieldCatalogue {
    /// The condition `restriction` (on `custom_fields.<key>`) stands for, or why it is refused.
    fn condition(&self, key: &str, restriction: &Restriction) -> Result<Test, FilterError>;
}

/// An account without custom fields: every `custom_fields.<key>` is unknown.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCustomFields;

impl CustomFieldCatalogue for NoCustomFields {
    fn condition(&self, key: &str, restriction: &Restriction) -> Result<Test, FilterError> {
        Catalogue::new(Vec::new()).condition(key, restriction)
    }
}

/// A filter on a custom field compares its values with `=` and `!=` (`:` for a multiple
/// choice: "has"), each served by the GIN index on `(account_id, custom_fields
/// jsonb_path_ops)` as a containment. The field's kind types the value; its current options
/// and pattern do not restrict it (tickets keep values written under older definitions), and a
/// retired field can still be filtered on (its values stay on tickets).
impl CustomFieldCatalogue for Catalogue {
    fn condition(&self, key: &str, restriction: &Restriction) -> Result<Test, FilterError> {
        let at = restriction.member_at;
        let Some(field) = self.find(key) else {
            return Err(FilterError::new(
                at,
                format!("the account has no custom field with the key \"{key}\""),
            ));
        };
        let value_of = |value: &Value| -> Result<serde_json::Value, FilterError> {
            if value.is_any() {
                return Err(FilterError::new(
                    value.at(),
                    format!("custom_fields.{key}:* is not served by an index: name a value"),
                ));
            }
            let text = text_of(value, "a value")?;
            filter_value(&field.kind, text)
                .map_err(|problem| FilterError::new(value.at(), problem.to_string()))
        };
        let contains = |value: serde_json::Value| {
            let mut object = serde_json::Map::new();
            object.insert(key.to_owned(), value);
            serde_json::Value::Object(object)
        };
        if let FieldKind::MultipleChoice(_) = field.kind {
            if restriction.comparator != Comparator::Has {
                return Err(FilterError::new(
                    at,
                    format!(
                        "custom_fields.{key} is a list of options: write custom_fields.{key}: \
                         option (has it), not {}",
                        restriction.comparator.as_str()
                    ),
                ));
            }
            let option = |value: &Value| {
                value_of(value).map(|option| serde_json::Value::Array(vec![option]))
            };
            let any_of = match &restriction.argument {
                Argument::One(one) => vec![contains(option(one)?)],
                Argument::AnyOf(many) => many
                    .iter()
                    .map(|value| option(value).map(&contains))
                    .collect::<Result<_, _>>()?,
                Argument::AllOf(many) => {
                    let options = many.iter().map(&value_of).collect::<Result<Vec<_>, _>>()?;
                    vec![contains(serde_json::Value::Array(options))]
                }
            };
            return Ok(Test::CustomField {
                key: key.to_owned(),
                any_of,
                negated: false,
            });
        }
        if let FieldKind::LongText = field.kind {
            return Err(FilterError::new(
                at,
                format!(
                    "custom_fields.{key} is long text: it is not filterable (compare a text, \
                     choice or number field)"
                ),
            ));
        }
        let (values, negated) = one_of(restriction, &value_of)?;
        Ok(Test::CustomField {
            key: key.to_owned(),
            any_of: values.into_iter().map(contains).collect(),
            negated,
        })
    }
}

/// What a filter is read against: who `me` is, and the account's custom fields.
pub struct FilterContext<'a> {
    /// The calling user; `None` for an API key, for which `me` means no one.
    pub me: Option<UserId>,
    pub custom_fields: &'a dyn CustomFieldCatalogue,
}

/// A timestamp column a filter compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeField {
    Created,
    Updated,
}

/// How a timestamp is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeComparator {
    Before,
    AtOrBefore,
    After,
    AtOrAfter,
}

impl TimeComparator {
    pub fn operator(self) -> &'static str {
        match self {
            Self::Before => "<",
            Self::AtOrBefore => "<=",
            Self::After => ">",
            Self::AtOrAfter => ">=",
        }
    }

    fn negated(self) -> Self {
        match self {
            Self::Before => Self::AtOrAfter,
            Self::AtOrBefore => Self::After,
            Self::After => Self::AtOrBefore,
            Self::AtOrAfter => Self::Before,
        }
    }
}

/// A moment a filter names: absolute, or relative to when the query runs (`now(-24h)`), so
/// that a saved filter keeps meaning "the last day" and its page tokens stay valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    At(DateTime<Utc>),
    /// Seconds from the time of the query.
    FromNow(i64),
}

impl Moment {
    /// The moment as of `now`.
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::At(at) => at,
            Self::FromNow(seconds) => now + Duration::seconds(seconds),
        }
    }
}

/// One condition on one field. `negated` conditions hold for the tickets the plain one does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    Status {
        any_of: Vec<TicketStatus>,
        negated: bool,
    },
    Priority {
        any_of: Vec<TicketPriority>,
        negated: bool,
    },
    /// `None` among the values: unassigned.
    Assignee {
        any_of: Vec<Option<Uuid>>,
        negated: bool,
    },
    Requester {
        any_of: Vec<Uuid>,
        negated: bool,
    },
    /// `None` among the values: in no group.
    Group {
        any_of: Vec<Option<Uuid>>,
        negated: bool,
    },
    /// The ticket has every tag (`all`) or one of them.
    Tags {
        tags: Vec<String>,
        all: bool,
        negated: bool,
    },
    Time {
        field: TimeField,
        comparator: TimeComparator,
        moment: Moment,
    },
    /// The ticket's values contain one of `any_of` (each `{"<key>": value}` in the stored
    /// shape: a containment the GIN index serves).
    CustomField {
        key: String,
        any_of: Vec<serde_json::Value>,
        negated: bool,
    },
}

impl Test {
    /// The field's name as a filter writes it.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Priority { .. } => "priority",
            Self::Assignee { .. } => "assignee",
            Self::Requester { .. } => "requester",
            Self::Group { .. } => "group",
            Self::Tags { .. } => "tags",
            Self::Time {
                field: TimeField::Created,
                ..
            } => "create_time",
            Self::Time {
                field: TimeField::Updated,
                ..
            } => "update_time",
            Self::CustomField { .. } => "custom_fields",
        }
    }

    /// Whether a ticket's value of this field can change after it is created.
    pub fn field_changes(&self) -> bool {
        !matches!(
            self,
            Self::Requester { .. }
                | Self::Time {
                    field: TimeField::Created,
                    ..
                }
        )
    }

    fn negate(self) -> Self {
        match self {
            Self::Status { any_of, negated } => Self::Status {
                any_of,
                negated: !negated,
            },
            Self::Priority { any_of, negated } => Self::Priority {
                any_of,
                negated: !negated,
            },
            Self::Assignee { any_of, negated } => Self::Assignee {
                any_of,
                negated: !negated,
            },
            Self::Requester { any_of, negated } => Self::Requester {
                any_of,
                negated: !negated,
            },
            Self::Group { any_of, negated } => Self::Group {
                any_of,
                negated: !negated,
            },
            Self::Tags { tags, all, negated } => Self::Tags {
                tags,
                all,
                negated: !negated,
            },
            Self::Time {
                field,
                comparator,
                moment,
            } => Self::Time {
                field,
                comparator: comparator.negated(),
                moment,
            },
            Self::CustomField {
                key,
                any_of,
                negated,
            } => Self::CustomField {
                key,
                any_of,
                negated: !negated,
            },
        }
    }

    fn is_negated(&self) -> bool {
        match self {
            Self::Status { negated, .. }
            | Self::Priority { negated, .. }
            | Self::Assignee { negated, .. }
            | Self::Requester { negated, .. }
            | Self::Group { negated, .. }
            | Self::Tags { negated, .. }
            | Self::CustomField { negated, .. } => *negated,
            Self::Time { .. } => false,
        }
    }

    /// `self OR other`, both on one field and neither negated, as one condition.
    fn or(self, other: Self, at: Position) -> Result<Self, FilterError> {
        let refused = |why: &str| Err(FilterError::new(at, why.to_owned()));
        if self.is_negated() || other.is_negated() {
            return refused("OR joins values of one field, not negations: write NOT (a OR b)");
        }
        Ok(match (self, other) {
            (Self::Status { mut any_of, .. }, Self::Status { any_of: more, .. }) => {
                any_of.extend(more);
                Self::Status {
                    any_of,
                    negated: false,
                }
            }
            (Self::Priority { mut any_of, .. }, Self::Priority { any_of: more, .. }) => {
                any_of.extend(more);
                Self::Priority {
                    any_of,
                    negated: false,
                }
            }
            (Self::Assignee { mut any_of, .. }, Self::Assignee { any_of: more, .. }) => {
                any_of.extend(more);
                Self::Assignee {
                    any_of,
                    negated: false,
                }
            }
            (Self::Requester { mut any_of, .. }, Self::Requester { any_of: more, .. }) => {
                any_of.extend(more);
                Self::Requester {
                    any_of,
                    negated: false,
                }
            }
            (Self::Group { mut any_of, .. }, Self::Group { any_of: more, .. }) => {
                any_of.extend(more);
                Self::Group {
                    any_of,
                    negated: false,
                }
            }
            (
                Self::Tags {
                    tags: mut one,
                    all: one_all,
                    ..
                },
                Self::Tags {
                    tags: more,
                    all: more_all,
                    ..
                },
            ) => {
                if (one_all && one.len() > 1) || (more_all && more.len() > 1) {
                    return refused("OR of groups of tags is not supported: write tags: (a OR b)");
                }
                one.extend(more);
                Self::Tags {
                    tags: one,
                    all: false,
                    negated: false,
                }
            }
            (Self::Time { .. }, Self::Time { .. }) => {
                return refused("OR of time ranges is not served by one index range");
            }
            (
                Self::CustomField {
                    key, mut any_of, ..
                },
                Self::CustomField {
                    key: other_key,
                    any_of: more,
                    ..
                },
            ) if key == other_key => {
                any_of.extend(more);
                Self::CustomField {
                    key,
                    any_of,
                    negated: false,
                }
            }
            (one, other) => {
                return Err(FilterError::new(
                    at,
                    format!(
                        "OR across fields ({} and {}) is not served by an index: OR joins values \
                         of one field",
                        one.field(),
                        other.field()
                    ),
                ));
            }
        })
    }
}

/// A condition and where its field is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub at: Position,
    pub test: Test,
}

/// A checked filter: every condition holds (an empty one matches every ticket).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TicketFilterExpr {
    pub conditions: Vec<Condition>,
}

impl TicketFilterExpr {
    /// Parses `text` and checks it against the ticket's fields.
    pub fn parse(text: &str, context: &FilterContext<'_>) -> Result<Self, FilterError> {
        let filter = Filter::parse(text)?;
        let mut conditions = Vec::new();
        if let Some(root) = &filter.root {
            collect(root, context, &mut conditions)?;
        }
        Ok(Self { conditions })
    }

    /// Like [`Self::parse`], refusing as a request field does: "at 14: ...".
    pub fn parse_field(text: &str, context: &FilterContext<'_>) -> Result<Self, InvalidValue> {
        Self::parse(text, context)
            .map_err(|error| InvalidValue::new(format!("at {}: {}", error.at, error.problem)))
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// The first condition on a field whose value changes (status, assignee, ...): the change
    /// feed refuses those (docs/export-and-search.md, "The change feed").
    pub fn first_on_changing_field(&self) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|condition| condition.test.field_changes())
    }

    /// The conditions without their positions: what a page token is bound to, so that
    /// spacing does not matter and `now(-24h)` stays the same filter from page to page.
    pub fn canonical(&self) -> String {
        let tests: Vec<&Test> = self.conditions.iter().map(|c| &c.test).collect();
        format!("{tests:?}")
    }
}

fn collect(
    expr: &Expr,
    context: &FilterContext<'_>,
    into: &mut Vec<Condition>,
) -> Result<(), FilterError> {
    match expr {
        Expr::And(parts) => parts
            .iter()
            .try_for_each(|part| collect(part, context, into)),
        other @ (Expr::Or(_) | Expr::Not(..) | Expr::Restriction(_)) => {
            into.push(condition(other, context)?);
            Ok(())
        }
    }
}

/// One condition of the AND: a restriction, a negated one, or an OR of one field's values.
fn condition(expr: &Expr, context: &FilterContext<'_>) -> Result<Condition, FilterError> {
    match expr {
        Expr::Restriction(restriction) => Ok(Condition {
            at: restriction.member_at,
            test: restriction_test(restriction, context)?,
        }),
        Expr::Not(inner, at) => match inner.as_ref() {
            Expr::Restriction(restriction) => Ok(Condition {
                at: restriction.member_at,
                test: restriction_test(restriction, context)?.negate(),
            }),
            Expr::Not(inner, _) => condition(inner, context),
            Expr::And(_) | Expr::Or(_) => Err(FilterError::new(
                *at,
                "NOT applies to one restriction (NOT status = open), not to a group",
            )),
        },
        Expr::Or(parts) => {
            let mut parts = parts.iter();
            let first = parts
                .next()
                .map(|part| or_part(part, context))
                .transpose()?
                .expect("an OR has parts");
            parts.try_fold(first, |joined, part| {
                let next = or_part(part, context)?;
                Ok(Condition {
                    at: joined.at,
                    test: joined.test.or(next.test, next.at)?,
                })
            })
        }
        Expr::And(parts) => Err(FilterError::new(
            first_position(&parts[0]),
            "AND inside OR is not served by an index: OR joins values of one field",
        )),
    }
}

fn or_part(expr: &Expr, context: &FilterContext<'_>) -> Result<Condition, FilterError> {
    match expr {
        Expr::And(_) | Expr::Or(_) => Err(FilterError::new(
            first_position(expr),
            "AND inside OR is not served by an index: OR joins values of one field",
        )),
        other @ (Expr::Not(..) | Expr::Restriction(_)) => condition(other, context),
    }
}

fn first_position(expr: &Expr) -> Position {
    match expr {
        Expr::And(parts) | Expr::Or(parts) => first_position(&parts[0]),
        Expr::Not(_, at) => *at,
        Expr::Restriction(restriction) => restriction.member_at,
    }
}

fn restriction_test(
    restriction: &Restriction,
    context: &FilterContext<'_>,
) -> Result<Test, FilterError> {
    let at = restriction.member_at;
    if restriction.member.len() > 1 {
        if restriction.member[0] == "custom_fields" {
            return context
                .custom_fields
                .condition(&restriction.member[1..].join("."), restriction);
        }
        return Err(FilterError::new(
            at,
            format!(
                "unknown field \"{}\" (filterable: {FILTER_FIELDS}, custom_fields.<key>)",
                restriction.member_path()
            ),
        ));
    }
    match restriction.member[0].as_str() {
        "status" => {
            let (any_of, negated) = one_of(restriction, |value| {
                let word = enum_word(value, "ticket_status_")?;
                TicketStatus::parse(&word)
                    .map_err(|problem| FilterError::new(value.at(), problem.to_string()))
            })?;
            Ok(Test::Status { any_of, negated })
        }
        "priority" => {
            let (any_of, negated) = one_of(restriction, |value| {
                let word = enum_word(value, "ticket_priority_")?;
                TicketPriority::parse(&word)
                    .map_err(|problem| FilterError::new(value.at(), problem.to_string()))
            })?;
            Ok(Test::Priority { any_of, negated })
        }
        "assignee" | "assignee_id" => {
            let (any_of, negated) = one_of(restriction, |value| person(value, context, true))?;
            Ok(Test::Assignee { any_of, negated })
        }
        "requester" | "requester_id" => {
            let (any_of, negated) = one_of(restriction, |value| {
                person(value, context, false).map(|id| id.expect("none is refused"))
            })?;
            Ok(Test::Requester { any_of, negated })
        }
        "group" | "group_id" => {
            let (any_of, negated) = one_of(restriction, |value| {
                let text = text_of(value, "a group id or none")?;
                if text == "none" {
                    return Ok(None);
                }
                Uuid::parse_str(text).map(Some).map_err(|_| {
                    FilterError::new(value.at(), "expected a group id (a UUID) or none")
                })
            })?;
            Ok(Test::Group { any_of, negated })
        }
        "tags" | "tag" => tags(restriction),
        "create_time" | "createTime" => time(restriction, TimeField::Created),
        "update_time" | "updateTime" => time(restriction, TimeField::Updated),
        other => Err(FilterError::new(
            at,
            format!("unknown field \"{other}\" (filterable: {FILTER_FIELDS}, custom_fields.<key>)"),
        )),
    }
}

/// The values of an equality: `=` and `:` hold for one of them, `!=` for none.
fn one_of<T>(
    restriction: &Restriction,
    mut value: impl FnMut(&Value) -> Result<T, FilterError>,
) -> Result<(Vec<T>, bool), FilterError> {
    let field = restriction.member_path();
    let negated = match restriction.comparator {
        Comparator::Equal | Comparator::Has => false,
        Comparator::NotEqual => true,
        other @ (Comparator::Less
        | Comparator::LessOrEqual
        | Comparator::Greater
        | Comparator::GreaterOrEqual) => {
            return Err(FilterError::new(
                restriction.member_at,
                format!("{field} compares with =, != or :, not {}", other.as_str()),
            ));
        }
    };
    let values = match &restriction.argument {
        Argument::One(one) => vec![value(one)?],
        Argument::AnyOf(many) if !negated => many.iter().map(value).collect::<Result<_, _>>()?,
        Argument::AnyOf(many) => {
            return Err(FilterError::new(
                many[0].at(),
                format!("!= takes one value: write NOT {field} = (a OR b)"),
            ));
        }
        Argument::AllOf(many) => {
            return Err(FilterError::new(
                many[0].at(),
                format!("a ticket has one {field}: write {field} = (a OR b)"),
            ));
        }
    };
    Ok((values, negated))
}

fn text_of<'v>(value: &'v Value, expected: &str) -> Result<&'v str, FilterError> {
    value
        .text()
        .ok_or_else(|| FilterError::new(value.at(), format!("expected {expected}, not a call")))
}

/// An enum value as a word, in any case, with or without the wire enum's prefix.
fn enum_word(value: &Value, prefix: &str) -> Result<String, FilterError> {
    let word = text_of(value, "a word")?.to_ascii_lowercase();
    Ok(word.strip_prefix(prefix).map(str::to_owned).unwrap_or(word))
}

/// A user: a UUID, `me`, or (when `may_be_none`) `none`.
fn person(
    value: &Value,
    context: &FilterContext<'_>,
    may_be_none: bool,
) -> Result<Option<Uuid>, FilterError> {
    let expected = if may_be_none {
        "a user id (a UUID), me or none"
    } else {
        "a user id (a UUID) or me"
    };
    match text_of(value, expected)? {
        "none" if may_be_none => Ok(None),
        "me" => context.me.map(|me| Some(me.as_uuid())).ok_or_else(|| {
            FilterError::new(value.at(), "me names the calling user; an API key is none")
        }),
        text => Uuid::parse_str(text)
            .map(Some)
            .map_err(|_| FilterError::new(value.at(), format!("expected {expected}"))),
    }
}

fn tags(restriction: &Restriction) -> Result<Test, FilterError> {
    if restriction.comparator != Comparator::Has {
        return Err(FilterError::new(
            restriction.member_at,
            format!(
                "tags is a list: write tags: vip (has the tag), not tags {} vip",
                restriction.comparator.as_str()
            ),
        ));
    }
    let tag = |value: &Value| -> Result<String, FilterError> {
        if value.is_any() {
            return Err(FilterError::new(
                value.at(),
                "tags:* is not served by an index: name the tag",
            ));
        }
        let text = text_of(value, "a tag")?;
        Tag::parse(text)
            .map(|tag| tag.as_str().to_owned())
            .map_err(|problem| FilterError::new(value.at(), problem.to_string()))
    };
    let (tags, all) = match &restriction.argument {
        Argument::One(one) => (vec![tag(one)?], true),
        Argument::AnyOf(many) => (many.iter().map(tag).collect::<Result<_, _>>()?, false),
        Argument::AllOf(many) => (many.iter().map(tag).collect::<Result<_, _>>()?, true),
    };
    Ok(Test::Tags {
        tags,
        all,
        negated: false,
    })
}

fn time(restriction: &Restriction, field: TimeField) -> Result<Test, FilterError> {
    let name = restriction.member_path();
    let comparator = match restriction.comparator {
        Comparator::Less => TimeComparator::Before,
        Comparator::LessOrEqual => TimeComparator::AtOrBefore,
        Comparator::Greater => TimeComparator::After,
        Comparator::GreaterOrEqual => TimeComparator::AtOrAfter,
        other @ (Comparator::Equal | Comparator::NotEqual | Comparator::Has) => {
            return Err(FilterError::new(
                restriction.member_at,
                format!(
                    "{name} compares with <, <=, > or >=, not {}",
                    other.as_str()
                ),
            ));
        }
    };
    let Argument::One(value) = &restriction.argument else {
        return Err(FilterError::new(
            restriction.member_at,
            format!("{name} compares with one time"),
        ));
    };
    Ok(Test::Time {
        field,
        comparator,
        moment: moment(value)?,
    })
}

/// An RFC 3339 time (quoted: `"2026-12-01T00:00:00Z"`) or `now()` / `now(-24h)`.
fn moment(value: &Value) -> Result<Moment, FilterError> {
    let expected = "expected an RFC 3339 time in quotes (\"2026-12-01T00:00:00Z\") or now(-24h)";
    match value {
        Value::Call { name, args, at } if name == "now" => match args.as_slice() {
            [] => Ok(Moment::FromNow(0)),
            [offset] => offset
                .text()
                .and_then(offset_seconds)
                .map(Moment::FromNow)
                .ok_or_else(|| {
                    FilterError::new(
                        offset.at(),
                        "expected an offset such as -24h, -30m, -7d or 2w (units s, m, h, d, w)",
                    )
                }),
            _ => Err(FilterError::new(*at, "now takes at most one offset")),
        },
        Value::Call { name, at, .. } => Err(FilterError::new(
            *at,
            format!("unknown function {name}(): the one function is now()"),
        )),
        Value::Word { text, at } | Value::Quoted { text, at } => DateTime::parse_from_rfc3339(text)
            .map(|time| Moment::At(time.with_timezone(&Utc)))
            .map_err(|_| FilterError::new(*at, expected)),
    }
}

/// `-24h` → -86400; `None` for anything else. At most ten years either way.
fn offset_seconds(text: &str) -> Option<i64> {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let unit = rest.chars().last()?;
    let amount: i64 = rest[..rest.len() - unit.len_utf8()].parse().ok()?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    let total = amount.checked_mul(seconds)?;
    (total <= 10 * 366 * 86_400).then_some(sign * total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TicketFilterExpr, String> {
        let context = FilterContext {
            me: Some(UserId::from_uuid(Uuid::nil())),
            custom_fields: &NoCustomFields,
        };
        TicketFilterExpr::parse_field(text, &context).map_err(|e| e.description().to_owned())
    }

    #[test]
    fn an_or_of_one_field_becomes_one_condition() {
        let parsed =
            parse("status = (open OR pending) AND (priority = high OR priority = urgent)").unwrap();
        assert_eq!(
            parsed
                .conditions
                .iter()
                .map(|c| &c.test)
                .collect::<Vec<_>>(),
            vec![
                &Test::Status {
                    any_of: vec![TicketStatus::Open, TicketStatus::Pending],
                    negated: false
                },
                &Test::Priority {
                    any_of: vec![TicketPriority::High, TicketPriority::Urgent],
                    negated: false
                },
            ]
        );
    }

    #[test]
    fn refusals_name_the_position_written() {
        for (text, expected) in [
            ("status = open OR tags: vip", "at 18: OR across fields"),
            ("subject = x", "at 1: unknown field \"subject\""),
            ("status < open", "at 1: status compares with =, != or :"),
            ("create_time = now()", "at 1: create_time compares with <"),
            ("status = opne", "at 10: is not a ticket status"),
            (
                "custom_fields.plan = pro",
                "at 1: the account has no custom field with the key \"plan\"",
            ),
            ("create_time < now(-3x)", "at 19: expected an offset"),
            (
                "NOT (status = open AND priority = low)",
                "at 1: NOT applies to one restriction",
            ),
            ("tags = vip", "at 1: tags is a list"),
        ] {
            let refused = parse(text).expect_err(text);
            assert!(refused.starts_with(expected), "{text}: {refused}");
        }
    }

    #[test]
    fn a_negated_time_comparison_flips_the_comparator() {
        let parsed = parse("NOT create_time < now(-24h)").unwrap();
        assert_eq!(
            parsed.conditions[0].test,
            Test::Time {
                field: TimeField::Created,
                comparator: TimeComparator::AtOrAfter,
                moment: Moment::FromNow(-86_400)
            }
        );
    }

    #[test]
    fn the_canonical_form_ignores_spacing() {
        assert_eq!(
            parse("status=open  tags:vip").unwrap().canonical(),
            parse("status = open AND tags: vip").unwrap().canonical()
        );
    }
}
