//! The queries of the ticket lists (ListTickets, ExportTickets, SearchTickets, the change feed):
//! their filters and order parsed from a request, and ListTickets' saved view applied to them.

use tonic::Status;

use super::TicketApi;
use super::read_mask::read_mask;
use crate::api::ListPages;
use crate::auth::Caller;
use crate::domain::{
    Catalogue, FilterContext, InvalidValue, PageCursor, PageSize, ReadMask, Role, TicketFilter,
    TicketFilterExpr, TicketOrder, TicketPriority, TicketStatus, Timestamp, UserId, View,
    hyphenated_uuid, within_list_bound,
};
use crate::errors::{AppError, FieldViolations};
use crate::scope::RequestScope;
use crate::service::run_filter;
use crate::wire::proto::v1;

/// A ListTickets request, checked, with its view (if any) applied.
pub(super) struct ListQuery<'a> {
    pub(super) filter: TicketFilter,
    pub(super) mask: ReadMask,
    pub(super) pages: ListPages<'a>,
    pub(super) page_size: PageSize,
    pub(super) after: Option<PageCursor>,
}

impl TicketApi {
    /// The custom fields `filter` may name: the catalogue is read only when the filter names a
    /// custom field, so that other lists cost no statement more.
    pub(super) async fn filter_fields(
        &self,
        scope: &crate::scope::RequestScope,
        names_custom_fields: bool,
    ) -> Result<Catalogue, Status> {
        if names_custom_fields {
            Ok(self.desk.filter_catalogue(scope).await?)
        } else {
            Ok(Catalogue::new(Vec::new()))
        }
    }

    /// The query of a ListTickets request. Every field is checked first, so one answer names
    /// every refused field; then the view it names, if any (agents and admins only, as the rest
    /// of ViewService; one the caller does not see is NOT_FOUND): its filter, run for the
    /// caller, is ANDed with the request's, and its order and read mask apply where the request
    /// leaves them empty. A view's page tokens name it and its filter as it was: a changed view
    /// refuses them.
    pub(super) async fn list_query(
        &self,
        scope: &RequestScope,
        message: &v1::ListTicketsRequest,
    ) -> Result<ListQuery<'_>, Status> {
        let caller = scope.caller()?;
        let names_custom_fields = message.filter.contains("custom_fields");
        let mut fields = self.filter_fields(scope, names_custom_fields).await?;
        let mut violations = FieldViolations::new();
        let filter = parse_filter(message, caller, &fields, &mut violations);
        let mask = violations.check("read_mask", read_mask(message.read_mask.as_ref()));
        let view_id = match message.view_id.as_str() {
            "" => Some(None),
            raw => violations
                .check(
                    "view_id",
                    hyphenated_uuid(raw)
                        .ok_or_else(|| InvalidValue::new("must be a UUID in its hyphenated form")),
                )
                .map(Some),
        };
        let size = PageSize::parse(message.page_size).ok();
        let (mut filter, mut mask, view_id) = match (filter, mask, view_id, size) {
            (Some(filter), Some(mask), Some(view_id), Some(_)) => (filter, mask, view_id),
            (filter, _, view_id, _) => {
                // A valid query without a view still checks the token against itself; a
                // view's query is known only once the view is read, which a refused request
                // is not worth.
                let list = match (filter, view_id) {
                    (Some(filter), Some(None)) => Some(format!("tickets:{}", filter.fingerprint())),
                    (Some(_) | None, _) => None,
                };
                ListPages::checked(
                    &self.pages,
                    caller,
                    list.as_deref(),
                    &mut violations,
                    message.page_size,
                    &message.page_token,
                );
                return Err(AppError::InvalidArgument(violations).into());
            }
        };
        let view = match view_id {
            None => None,
            Some(id) => {
                caller.require(Role::Agent)?;
                Some(self.views.get(scope, id).await?)
            }
        };
        if let Some(view) = &view {
            if view.filter.names_custom_fields() && !names_custom_fields {
                fields = self.filter_fields(scope, true).await?;
            }
            apply_view(view, message, caller, &fields, &mut filter, &mut mask)?;
        }
        let list = match &view {
            Some(view) => format!("tickets:view:{}:{}", view.id, filter.fingerprint()),
            None => format!("tickets:{}", filter.fingerprint()),
        };
        let Some((pages, page_size, after)) = ListPages::checked(
            &self.pages,
            caller,
            Some(&list),
            &mut violations,
            message.page_size,
            &message.page_token,
        ) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        Ok(ListQuery {
            filter,
            mask,
            pages,
            page_size,
            after,
        })
    }
}

/// `view` applied to a checked request: its filter ANDed, its order and mask where the request
/// left them empty. They parsed when the view was saved.
fn apply_view(
    view: &View,
    message: &v1::ListTicketsRequest,
    caller: &Caller,
    fields: &Catalogue,
    filter: &mut TicketFilter,
    mask: &mut ReadMask,
) -> Result<(), AppError> {
    filter
        .expr
        .conditions
        .extend(run_filter(view, caller.user_id(), fields)?.conditions);
    let stored = |problem: InvalidValue| {
        AppError::internal(anyhow::anyhow!(
            "view {} does not parse: {problem}",
            view.id
        ))
    };
    if message.order_by.trim().is_empty() {
        filter.order = view.order_by.order().map_err(stored)?;
    }
    let mask_left_empty = message
        .read_mask
        .as_ref()
        .is_none_or(|mask| mask.paths.is_empty());
    if mask_left_empty {
        *mask = view.read_mask.mask().map_err(stored)?;
    }
    Ok(())
}

/// The filters and order of a ListTickets request, every refused one named in `violations`
/// (with the request's other fields); `None` when any was refused.
pub(super) fn parse_filter(
    message: &v1::ListTicketsRequest,
    caller: &Caller,
    fields: &Catalogue,
    violations: &mut FieldViolations,
) -> Option<TicketFilter> {
    let refused_before = violations.len();
    let mut filter = TicketFilter::default();
    if violations
        .check("statuses", within_list_bound(&message.statuses, "statuses"))
        .is_some()
    {
        for (index, value) in message.statuses.iter().enumerate() {
            if let Some(status) =
                violations.check(format!("statuses[{index}]"), TicketStatus::try_from(*value))
            {
                filter.statuses.push(status);
            }
        }
    }
    if violations
        .check(
            "priorities",
            within_list_bound(&message.priorities, "priorities"),
        )
        .is_some()
    {
        for (index, value) in message.priorities.iter().enumerate() {
            if let Some(priority) = violations.check(
                format!("priorities[{index}]"),
                TicketPriority::try_from(*value),
            ) {
                filter.priorities.push(priority);
            }
        }
    }
    if !message.assignee_id.is_empty() {
        filter.assignee = violations.check("assignee_id", UserId::parse(&message.assignee_id));
    }
    if !message.requester_id.is_empty() {
        filter.requester = violations.check("requester_id", UserId::parse(&message.requester_id));
    }
    filter.created_after = message
        .created_after
        .and_then(|at| violations.check("created_after", Timestamp::try_from(at)));
    filter.created_before = message
        .created_before
        .and_then(|at| violations.check("created_before", Timestamp::try_from(at)));
    if let Some(order) = violations.check("order_by", TicketOrder::parse(&message.order_by)) {
        filter.order = order;
    }
    if let Some(expr) = violations.check("filter", filter_expr(&message.filter, caller, fields)) {
        filter.expr = expr;
    }
    (violations.len() == refused_before).then_some(filter)
}

/// A change feed's filter: only on fields that never change, so that a ticket matches in all
/// its changes or in none (docs/export-and-search.md, "The change feed").
pub(super) fn feed_filter(expr: TicketFilterExpr) -> Result<TicketFilterExpr, InvalidValue> {
    match expr.first_on_changing_field() {
        Some(condition) => Err(InvalidValue::new(format!(
            "at {}: the change feed filters only on fields that never change (requester, \
             create_time), not on {}: a ticket that stopped matching would leave the feed \
             unseen",
            condition.at,
            condition.test.field()
        ))),
        None => Ok(expr),
    }
}

/// The request's `filter`, read against the ticket's fields and the account's custom `fields`
/// with `me` the calling user.
pub(super) fn filter_expr(
    text: &str,
    caller: &Caller,
    fields: &Catalogue,
) -> Result<TicketFilterExpr, InvalidValue> {
    TicketFilterExpr::parse_field(
        text,
        &FilterContext {
            me: caller.user_id(),
            custom_fields: fields,
        },
    )
}
