//! Full-text search over the tickets a caller may see (SearchTickets; docs/export-and-search.md).

use super::TicketDesk;
use crate::db::{self, models::TicketRow};
use crate::domain::{PageSize, SearchCursor, SearchHit, SearchOrder, TicketSearch};
use crate::errors::AppResult;
use crate::scope::RequestScope;
use crate::service::{Page, paginate, rows_to_fetch};

/// A page of search results, and the order they come in (the same on every page of a search).
#[derive(Debug)]
pub struct SearchPage {
    pub order: SearchOrder,
    pub page: Page<SearchHit, SearchCursor>,
}

impl TicketDesk {
    /// A page of the tickets the caller may see that match `search`, best match first or, for
    /// words that match too many tickets to rank in time, newest first (`order` says which).
    pub async fn search(
        &self,
        scope: &RequestScope,
        search: &TicketSearch,
        page_size: PageSize,
        after: Option<SearchCursor>,
    ) -> AppResult<SearchPage> {
        let caller = scope.caller()?;
        let (order, hits) = TicketRow::search(
            &mut *db::connection(&self.pool).await?,
            caller.account_id,
            caller.restricted_to_user(),
            search,
            after,
            rows_to_fetch(page_size),
        )
        .await?;
        let catalogue = self
            .seen_catalogue(caller, hits.iter().map(|hit| &hit.ticket))
            .await?;
        let hits = hits
            .into_iter()
            .map(|mut hit| {
                hit.ticket = super::seen_by(caller, &catalogue, hit.ticket);
                hit
            })
            .collect();
        Ok(SearchPage {
            order,
            page: paginate(hits, page_size, |hit| SearchCursor::after(order, hit)),
        })
    }
}
