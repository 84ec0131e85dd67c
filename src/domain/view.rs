//! Saved views (docs/tickets.md, "Views"): a ticket filter, an order and a read mask under a
//! name, personal or shared with a group or the whole account. The filter is kept as written
//! (`me` stays symbolic) and parsed again whenever the view runs, `me` being whoever runs it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::filter::{FilterError, Restriction};
use super::{
    CustomFieldCatalogue, FilterContext, InvalidValue, ReadMask, TICKET_FIELDS, Test,
    TicketFilterExpr, TicketOrder, UserId, bounded_text, single_line,
};

/// The most shared (group and account) views an account may have: Zendesk's admins keep a few
/// dozen; 500 leaves room and keeps ListViews a few pages.
pub const MAX_SHARED_VIEWS_PER_ACCOUNT: i64 = 500;
/// The most personal views one user may have.
pub const MAX_PERSONAL_VIEWS_PER_USER: i64 = 100;
/// Counts stop here: a view with more tickets is "100+" (CountViews, ListTickets'
/// `total_size`).
pub const VIEW_COUNT_CAP: i64 = 100;
/// The most views one CountViews call counts.
pub const MAX_VIEWS_COUNTED: usize = 50;
/// The longest filter a view keeps.
const MAX_VIEW_FILTER_CHARS: usize = 2000;

/// A view's name: 1 to 100 characters on one line, trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewName(String);

impl ViewName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, 1, 100).and_then(single_line).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A view's filter, as written: at most 2000 characters that parse as a ListTickets filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewFilter(String);

impl ViewFilter {
    /// Checks `raw` as a ListTickets filter; `me` is kept as written (checked as if some user
    /// ran it), to be resolved when the view runs.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.chars().count() > MAX_VIEW_FILTER_CHARS {
            return Err(InvalidValue::new(format!(
                "must be at most {MAX_VIEW_FILTER_CHARS} characters"
            )));
        }
        // The custom fields' keys and kinds are the account's: the service checks them against
        // its catalogue when it saves the view (`for_runner`); here only their form.
        Self::expr(
            raw,
            Some(UserId::from_uuid(Uuid::nil())),
            &UntypedCustomFields,
        )?;
        Ok(Self(raw.trim().to_owned()))
    }

    /// The filter as it reads for `me`, the user running the view, over the account's custom
    /// `fields`.
    pub fn for_runner(
        &self,
        me: Option<UserId>,
        fields: &dyn CustomFieldCatalogue,
    ) -> Result<TicketFilterExpr, InvalidValue> {
        Self::expr(&self.0, me, fields)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the filter names a custom field (and so needs the account's catalogue to run).
    pub fn names_custom_fields(&self) -> bool {
        self.0.contains("custom_fields")
    }

    fn expr(
        text: &str,
        me: Option<UserId>,
        fields: &dyn CustomFieldCatalogue,
    ) -> Result<TicketFilterExpr, InvalidValue> {
        TicketFilterExpr::parse_field(
            text,
            &FilterContext {
                me,
                custom_fields: fields,
            },
        )
    }
}

/// Custom fields of any key and kind: a view's filter is checked for its form before the
/// account's catalogue is read.
pub(super) struct UntypedCustomFields;

impl CustomFieldCatalogue for UntypedCustomFields {
    fn condition(&self, key: &str, _: &Restriction) -> Result<Test, FilterError> {
        Ok(Test::CustomField {
            key: key.to_owned(),
            any_of: Vec::new(),
            negated: false,
        })
    }
}

/// A view's order, as written (ListTickets' `order_by`; empty: the default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewOrder(String);

impl ViewOrder {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        TicketOrder::parse(raw)?;
        Ok(Self(raw.split_whitespace().collect::<Vec<_>>().join(" ")))
    }

    pub fn order(&self) -> Result<TicketOrder, InvalidValue> {
        TicketOrder::parse(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A view's read mask: the ticket fields it shows, as written (empty: every field).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewReadMask(Vec<String>);

impl ViewReadMask {
    pub fn parse(paths: &[String]) -> Result<Self, InvalidValue> {
        ReadMask::parse(paths, TICKET_FIELDS)?;
        Ok(Self(
            paths.iter().map(|path| path.trim().to_owned()).collect(),
        ))
    }

    pub fn mask(&self) -> Result<ReadMask, InvalidValue> {
        ReadMask::parse(&self.0, TICKET_FIELDS)
    }

    pub fn paths(&self) -> &[String] {
        &self.0
    }
}

/// Who sees a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewScope {
    /// Only its owner.
    Personal,
    /// The members of the group (and admins).
    Group(Uuid),
    /// Every agent and admin of the account.
    Account,
}

impl ViewScope {
    /// The stored form (the `views.scope` CHECK lists exactly these).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Personal => "personal",
            Self::Group(_) => "group",
            Self::Account => "account",
        }
    }

    /// The stored scope and group; `None` when they disagree.
    pub fn from_stored(scope: &str, group_id: Option<Uuid>) -> Option<Self> {
        match (scope, group_id) {
            ("personal", None) => Some(Self::Personal),
            ("group", Some(group)) => Some(Self::Group(group)),
            ("account", None) => Some(Self::Account),
            _ => None,
        }
    }

    pub fn group_id(self) -> Option<Uuid> {
        match self {
            Self::Group(group) => Some(group),
            Self::Personal | Self::Account => None,
        }
    }

    /// Whether only admins create, change and delete views of this scope.
    pub fn is_shared(self) -> bool {
        match self {
            Self::Personal => false,
            Self::Group(_) | Self::Account => true,
        }
    }
}

/// A stored view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub id: Uuid,
    pub name: ViewName,
    pub filter: ViewFilter,
    pub order_by: ViewOrder,
    pub read_mask: ViewReadMask,
    pub scope: ViewScope,
    pub owner_id: UserId,
    pub position: i32,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl View {
    /// Its etag, written as every etag of the API is (`v3`).
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }
}

/// One view's count: at most [`VIEW_COUNT_CAP`], `capped` when it has more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewCount {
    pub view_id: Uuid,
    pub count: i64,
    pub capped: bool,
}

impl ViewCount {
    /// The count of at most `VIEW_COUNT_CAP + 1` rows read.
    pub fn of_rows_read(view_id: Uuid, rows: i64) -> Self {
        Self {
            view_id,
            count: rows.min(VIEW_COUNT_CAP),
            capped: rows > VIEW_COUNT_CAP,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_name_is_trimmed_and_bounded() {
        assert_eq!(ViewName::parse("  Mine ").unwrap().as_str(), "Mine");
        assert!(ViewName::parse(" ").is_err());
        assert!(ViewName::parse(&"x".repeat(101)).is_err());
    }

    #[test]
    fn a_filter_keeps_me_symbolic_and_is_refused_at_its_position() {
        let filter = ViewFilter::parse("assignee = me AND status = OPEN").unwrap();
        assert_eq!(filter.as_str(), "assignee = me AND status = OPEN");
        let refused = ViewFilter::parse("status = NOPE").unwrap_err();
        assert!(refused.description().starts_with("at "), "{refused:?}");
        assert!(ViewFilter::parse(&"x".repeat(2001)).is_err());
    }

    #[test]
    fn the_example_views_of_docs_tickets_md_parse() {
        for filter in [
            "assignee = me AND status = open AND priority = urgent",
            "assignee = none AND tags: billing AND create_time < now(-1d)",
            "status = pending",
        ] {
            assert!(ViewFilter::parse(filter).is_ok(), "{filter}");
        }
        assert!(ViewOrder::parse("update_time asc").is_ok());
    }

    #[test]
    fn a_count_over_the_cap_is_the_cap_and_says_so() {
        let id = Uuid::nil();
        assert_eq!(ViewCount::of_rows_read(id, 3).count, 3);
        assert!(!ViewCount::of_rows_read(id, 100).capped);
        let over = ViewCount::of_rows_read(id, 101);
        assert_eq!((over.count, over.capped), (100, true));
    }

    #[test]
    fn a_stored_scope_and_group_must_agree() {
        let group = Uuid::nil();
        assert_eq!(
            ViewScope::from_stored("group", Some(group)),
            Some(ViewScope::Group(group))
        );
        assert_eq!(ViewScope::from_stored("group", None), None);
        assert_eq!(ViewScope::from_stored("account", Some(group)), None);
    }
}
