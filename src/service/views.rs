//! Saved views (docs/tickets.md, "Views"): who may create, see, change and delete them, their
//! limits, and counting many views' tickets in one statement.
//!
//! Agents and admins keep personal views, which only their owner sees; admins keep group and
//! account views; agents see account views and the views of the groups they belong to, admins
//! every shared view. A view another caller may not see is NOT_FOUND, as if it did not exist.

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::{Page, offset_cursor, offset_of, paginate, rows_to_fetch};
use crate::auth::Caller;
use crate::db::models::custom_field::CustomFieldRow;
use crate::db::models::ticket_filter::{self, CountedList};
use crate::db::models::{GroupRow, ViewFields, ViewRow, ViewViewer};
use crate::db::{self, PgPool};
use crate::domain::{
    Catalogue, MAX_PERSONAL_VIEWS_PER_USER, MAX_SHARED_VIEWS_PER_ACCOUNT, MAX_VIEWS_COUNTED,
    PageCursor, PageSize, Role, TicketFilterExpr, TicketOrder, VIEW_COUNT_CAP, View, ViewCount,
    ViewFilter, ViewName, ViewOrder, ViewReadMask, ViewScope,
};
use crate::errors::{AppError, AppResult, PreconditionViolation, Reason, Resource};
use crate::idempotency::{self, KeyedWrite, Outcome, as_is};
use crate::scope::RequestScope;

/// A new view, every field parsed.
#[derive(Clone, Debug)]
pub struct NewView {
    pub name: ViewName,
    pub filter: ViewFilter,
    pub order_by: ViewOrder,
    pub read_mask: ViewReadMask,
    pub scope: ViewScope,
    pub position: i32,
}

/// A change of a view, as the mask named its fields; with `etag`, made only at that version.
#[derive(Clone, Debug, Default)]
pub struct ViewUpdate {
    pub name: Option<ViewName>,
    pub filter: Option<ViewFilter>,
    pub order_by: Option<ViewOrder>,
    pub read_mask: Option<ViewReadMask>,
    pub position: Option<i32>,
    pub etag: Option<i64>,
}

#[derive(Clone)]
pub struct Views {
    pool: PgPool,
}

/// Who `caller` is to views.
fn viewer(who: &Caller) -> ViewViewer {
    ViewViewer {
        user: who.user_id(),
        admin: who.role() >= Role::Admin,
    }
}

/// Shared views are changed by admins only.
fn may_change(who: &Caller, scope: ViewScope) -> AppResult<()> {
    if scope.is_shared() {
        who.require(Role::Admin)
    } else {
        Ok(())
    }
}

impl Views {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates a view owned by the calling user, within the limits: 500 shared views per
    /// account, 100 personal views per user. A group view's group must be live.
    pub async fn create(
        &self,
        write: &KeyedWrite<'_, View>,
        view: NewView,
    ) -> AppResult<Outcome<View>> {
        let caller = write.caller()?;
        let account_id = caller.account_id.as_uuid();
        let owner = caller.require_user()?;
        may_change(caller, view.scope)?;
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            if let ViewScope::Group(group_id) = view.scope {
                match GroupRow::find_in_account(conn, account_id, group_id).await? {
                    Some(group) if group.deleted_at.is_none() => {}
                    Some(_) | None => return Err(AppError::not_found(Resource::Group, group_id)),
                }
            }
            ViewRow::lock_account_creations(conn, account_id).await?;
            let shared = view.scope.is_shared();
            let count = ViewRow::count_for_limit(conn, account_id, owner, shared).await?;
            let (limit, subject, whose) = if shared {
                (
                    MAX_SHARED_VIEWS_PER_ACCOUNT,
                    format!("accounts/{account_id}"),
                    "shared views per account",
                )
            } else {
                (
                    MAX_PERSONAL_VIEWS_PER_USER,
                    format!("users/{owner}"),
                    "personal views per user",
                )
            };
            if count >= limit {
                return Err(AppError::FailedPrecondition {
                    reason: Reason::ViewLimit,
                    message: format!(
                        "there are {count} {whose}, the most allowed; delete one first"
                    ),
                    violations: vec![PreconditionViolation {
                        kind: "VIEW_LIMIT".to_owned(),
                        subject,
                        description: format!("at most {limit} {whose}"),
                    }],
                });
            }
            check_custom_fields(conn, account_id, &view.filter, owner).await?;
            let fields = ViewFields {
                name: &view.name,
                filter: &view.filter,
                order_by: &view.order_by,
                read_mask: &view.read_mask,
                position: view.position,
            };
            ViewRow::insert(conn, account_id, owner, view.scope, &fields).await
        })
        .await
    }

    /// A view the caller may see.
    pub async fn get(&self, scope: &RequestScope, id: Uuid) -> AppResult<View> {
        let caller = scope.caller()?;
        let account_id = caller.account_id.as_uuid();
        let viewer = viewer(caller);
        db::with_connection(&self.pool, async |conn| {
            ViewRow::find_visible(conn, account_id, viewer, id, false).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::View, id))
    }

    /// The views the caller sees, by position then name. A page token carries how many views
    /// came before (the views of a side panel are few, and change rarely).
    pub async fn list(
        &self,
        scope: &RequestScope,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<View>> {
        let caller = scope.caller()?;
        let account_id = caller.account_id.as_uuid();
        let viewer = viewer(caller);
        let offset = offset_of(after);
        let rows = db::with_connection(&self.pool, async |conn| {
            ViewRow::list_visible(conn, account_id, viewer, offset, rows_to_fetch(page_size)).await
        })
        .await?;
        let size = i64::from(page_size.get());
        Ok(paginate(rows, page_size, |view| {
            offset_cursor(offset + size, view.id)
        }))
    }

    /// Changes a view the caller may see; shared views only by an admin.
    pub async fn update(
        &self,
        write: &KeyedWrite<'_, View>,
        id: Uuid,
        update: ViewUpdate,
    ) -> AppResult<Outcome<View>> {
        let caller = write.caller()?;
        let account_id = caller.account_id.as_uuid();
        let viewer = viewer(caller);
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            let current = ViewRow::find_visible(conn, account_id, viewer, id, true)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::View, id))?;
            may_change(caller, current.scope)?;
            if let Some(expected) = update.etag
                && expected != current.version
            {
                return Err(AppError::Aborted {
                    reason: Reason::EtagMismatch,
                    message: format!("the view changed since: its etag is now {}", current.etag()),
                });
            }
            if let Some(filter) = &update.filter {
                check_custom_fields(conn, account_id, filter, caller.require_user()?).await?;
            }
            let name = update.name.clone().unwrap_or(current.name);
            let filter = update.filter.clone().unwrap_or(current.filter);
            let order_by = update.order_by.clone().unwrap_or(current.order_by);
            let read_mask = update.read_mask.clone().unwrap_or(current.read_mask);
            let fields = ViewFields {
                name: &name,
                filter: &filter,
                order_by: &order_by,
                read_mask: &read_mask,
                position: update.position.unwrap_or(current.position),
            };
            ViewRow::update(conn, account_id, id, &fields).await
        })
        .await
    }

    /// Deletes a view the caller may see (its row goes); shared views only by an admin.
    pub async fn delete(&self, write: &KeyedWrite<'_, ()>, id: Uuid) -> AppResult<Outcome<()>> {
        let caller = write.caller()?;
        let account_id = caller.account_id.as_uuid();
        let viewer = viewer(caller);
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            let current = ViewRow::find_visible(conn, account_id, viewer, id, true)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::View, id))?;
            may_change(caller, current.scope)?;
            ViewRow::delete(conn, account_id, id).await
        })
        .await
    }

    /// The counts of `ids` (each a view the caller sees), or of the first 50 views the caller
    /// sees: one connection, two statements (the views, then every count in one).
    pub async fn count(&self, scope: &RequestScope, ids: &[Uuid]) -> AppResult<Vec<ViewCount>> {
        let caller = scope.caller()?;
        let account_id = caller.account_id.as_uuid();
        let viewer = viewer(caller);
        let me = caller.user_id();
        db::with_connection(&self.pool, async |conn| {
            let views = if ids.is_empty() {
                let first = i64::try_from(MAX_VIEWS_COUNTED).unwrap_or(i64::MAX);
                ViewRow::list_visible(conn, account_id, viewer, 0, first).await?
            } else {
                let mut found = ViewRow::find_many_visible(conn, account_id, viewer, ids).await?;
                let mut ordered = Vec::with_capacity(ids.len());
                for id in ids {
                    let position = found
                        .iter()
                        .position(|view| view.id == *id)
                        .ok_or_else(|| AppError::not_found(Resource::View, id))?;
                    ordered.push(found.swap_remove(position));
                }
                ordered
            };
            let fields = if views.iter().any(|view| view.filter.names_custom_fields()) {
                CustomFieldRow::catalogue_for_account(conn, account_id).await?
            } else {
                Catalogue::new(Vec::new())
            };
            let lists = views
                .iter()
                .map(|view| {
                    Ok(CountedList {
                        filter: run_filter(view, me, &fields)?,
                        order: view_order(view)?,
                    })
                })
                .collect::<AppResult<Vec<CountedList>>>()?;
            let rows =
                ticket_filter::count_tickets(conn, account_id, &lists, VIEW_COUNT_CAP).await?;
            Ok(views
                .iter()
                .zip(rows)
                .map(|(view, rows)| ViewCount::of_rows_read(view.id, rows))
                .collect())
        })
        .await
    }
}

/// Refuses a view's `filter` naming a custom field the account does not have, or a value not
/// of its field's kind (INVALID_ARGUMENT `view.filter`): the catalogue is read only when the
/// filter names a custom field.
async fn check_custom_fields(
    conn: &mut AsyncPgConnection,
    account_id: Uuid,
    filter: &ViewFilter,
    owner: crate::domain::UserId,
) -> AppResult<()> {
    if !filter.names_custom_fields() {
        return Ok(());
    }
    let catalogue = CustomFieldRow::catalogue_for_account(conn, account_id).await?;
    filter
        .for_runner(Some(owner), &catalogue)
        .map(|_| ())
        .map_err(|problem| AppError::invalid_field("view.filter", &problem))
}

/// A view's filter as it reads for `me` over the account's custom `fields`. It parsed when
/// saved (retired custom fields stay filterable); what can still refuse it is `me` run by an
/// API key (which is no one), named as the request's `view_id`.
/// The order a view lists in (the default when it names none), which its count walks too; a
/// stored order that no longer parses is the view's fault, named as `view_id`.
pub fn view_order(view: &View) -> AppResult<TicketOrder> {
    view.order_by.order().map_err(|problem| {
        AppError::invalid_field(
            "view_id",
            &crate::domain::InvalidValue::new(format!(
                "the order of view {} cannot run: {problem}",
                view.id
            )),
        )
    })
}

pub fn run_filter(
    view: &View,
    me: Option<crate::domain::UserId>,
    fields: &Catalogue,
) -> AppResult<TicketFilterExpr> {
    view.filter.for_runner(me, fields).map_err(|problem| {
        AppError::invalid_field(
            "view_id",
            &crate::domain::InvalidValue::new(format!(
                "the filter of view {} cannot run for this caller: {problem}",
                view.id
            )),
        )
    })
}
