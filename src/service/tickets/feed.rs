//! The change feed (ListTicketChanges): every ticket changed after a cursor, oldest change
//! first (docs/export-and-search.md).

use super::TicketDesk;
use crate::db::{self, models::TicketRow};
use crate::domain::{ChangeCursor, FeedEntry, PageSize, TicketFilterExpr};
use crate::errors::AppResult;
use crate::scope::RequestScope;
use crate::service::rows_to_fetch;

/// A page of the change feed: the entries, where the next call starts, and whether the feed had
/// nothing more to give.
#[derive(Debug)]
pub struct FeedPage {
    pub entries: Vec<FeedEntry>,
    pub next: ChangeCursor,
    pub caught_up: bool,
}

impl TicketDesk {
    /// The change feed after `after`: at most `page_size` tickets changed since, oldest change
    /// first (see [`TicketRow::changes`] for why none is ever skipped), of the tickets `filter`
    /// matches (checked by the caller to name no field that changes).
    pub async fn changes(
        &self,
        scope: &RequestScope,
        filter: &TicketFilterExpr,
        after: ChangeCursor,
        page_size: PageSize,
    ) -> AppResult<FeedPage> {
        let caller = scope.caller()?;
        let mut entries = TicketRow::changes(
            &mut *db::connection(&self.pool).await?,
            caller.account_id,
            filter,
            after,
            rows_to_fetch(page_size),
        )
        .await?;
        let caught_up = entries.len() <= usize::from(page_size.get());
        entries.truncate(usize::from(page_size.get()));
        let next = entries.last().map_or(after, |entry| entry.position);
        Ok(FeedPage {
            entries,
            next,
            caught_up,
        })
    }
}
