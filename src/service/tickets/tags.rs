//! The account's tags with counts (ListTags), read from `account_tags`, which the tickets'
//! triggers keep exact in every ticket write's own transaction (docs/tickets.md, "Tags"). The
//! tags of one ticket are changed by the desk itself (`mod.rs`).

use super::TicketDesk;
use crate::db::{self, models::AccountTagRow};
use crate::domain::{CountedPageCursor, PageSize, TagCount, TagPrefix};
use crate::errors::AppResult;
use crate::scope::RequestScope;
use crate::service::{Page, paginate, rows_to_fetch};

impl TicketDesk {
    /// A page of the account's tags that live tickets carry, most used first, then by name;
    /// with `prefix`, those that start with it. Agents and admins (the method's declaration).
    pub async fn list_tags(
        &self,
        scope: &RequestScope,
        prefix: Option<&TagPrefix>,
        page_size: PageSize,
        after: Option<&CountedPageCursor>,
    ) -> AppResult<Page<TagCount, CountedPageCursor>> {
        let account_id = scope.caller()?.account_id.as_uuid();
        let rows = db::with_connection(&self.pool, async |conn| {
            AccountTagRow::list_for_account(
                conn,
                account_id,
                prefix,
                after,
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        Ok(paginate(rows, page_size, TagCount::position))
    }
}
