//! A ticket's audit trail as the desk reads it back (ListTicketActivity); each change writes its
//! record in its own transaction (`record` in this module's parent).

use super::TicketDesk;
use crate::db::{
    self,
    models::{ActivityRow, TicketRow},
};
use crate::domain::{PageCursor, PageSize, TicketActivity, TicketId};
use crate::errors::{AppError, AppResult, Resource};
use crate::scope::RequestScope;
use crate::service::{Page, paginate, rows_to_fetch};

impl TicketDesk {
    /// A page of a ticket's audit trail, newest first. Agents and admins.
    pub async fn list_activity(
        &self,
        scope: &RequestScope,
        ticket_id: TicketId,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<TicketActivity>> {
        let caller = scope.caller()?;
        let rows = db::with_connection(&self.pool, async |conn| {
            TicketRow::find(conn, caller.account_id, None, ticket_id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Ticket, ticket_id))?;
            ActivityRow::list_for_ticket(
                conn,
                caller.account_id.as_uuid(),
                ticket_id.as_uuid(),
                after,
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        Ok(paginate(rows, page_size, |activity| {
            PageCursor::at(activity.created_at, activity.id)
        }))
    }
}
