//! The dashboard's panels (docs/dashboard.md): revenue, ticket statistics and the recent
//! activity, each read on a connection of its own taken for its queries only, from the read
//! replica while it is fresh enough ([`ReadPools`]), within the panel's own time budget (handed
//! to PostgreSQL as `statement_timeout`, so a panel held on a lock is cancelled by the server
//! itself and its connection comes back free); and [`Dashboard::all`], which runs the three side
//! by side and answers each with its own outcome.

use std::time::Duration;

use chrono::NaiveDate;
use diesel_async::AsyncPgConnection;

use super::{Page, paginate, rows_to_fetch};
use crate::auth::Caller;
use crate::db::models::{ActivityFeedRow, OpenTicketCount, ResponseTimes, RevenueDay, TicketDay};
use crate::db::read_replica::{ReadPools, ReadSource};
use crate::db::{self, Limits};
use crate::domain::{DateRange, PageCursor, PageSize, RevenueInterval, Role};
use crate::errors::{AppError, AppResult};
use crate::scope::RequestScope;

/// What a panel read, and where.
#[derive(Debug)]
pub struct Read<T> {
    pub value: T,
    pub source: ReadSource,
}

/// Sums of charges and refunds in one currency over a bucket (or a whole range).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevenueSums {
    pub charge_count: i64,
    pub gross_minor: i64,
    pub refunded_minor: i64,
}

impl RevenueSums {
    /// Gross minus refunds, in the currency's minor units.
    pub fn net_minor(&self) -> i64 {
        self.gross_minor.saturating_sub(self.refunded_minor)
    }

    fn add(&mut self, day: &RevenueDay) {
        self.charge_count = self.charge_count.saturating_add(day.charge_count);
        self.gross_minor = self.gross_minor.saturating_add(day.gross_minor);
        self.refunded_minor = self.refunded_minor.saturating_add(day.refunded_minor);
    }
}

/// One currency's revenue over a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrencyRevenue {
    pub currency: String,
    /// The buckets with anything recorded, by their first day.
    pub buckets: Vec<(NaiveDate, RevenueSums)>,
    pub total: RevenueSums,
}

/// The revenue panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevenueReport {
    pub range: DateRange,
    pub interval: RevenueInterval,
    /// By currency code; never added across currencies.
    pub currencies: Vec<CurrencyRevenue>,
}

/// The ticket statistics panel.
#[derive(Clone, Debug, PartialEq)]
pub struct TicketStatsReport {
    pub range: DateRange,
    pub open: Vec<OpenTicketCount>,
    pub daily: Vec<TicketDay>,
    pub first_response: ResponseTimes,
    pub resolution: ResponseTimes,
}

/// What [`Dashboard::all`] asks of each panel.
#[derive(Clone, Copy, Debug)]
pub struct PanelBudgets {
    pub revenue: Duration,
    pub ticket_stats: Duration,
    pub recent_activity: Duration,
}

/// Every panel's outcome, each on its own.
#[derive(Debug)]
pub struct AllPanels {
    pub revenue: AppResult<Read<RevenueReport>>,
    pub ticket_stats: AppResult<Read<TicketStatsReport>>,
    pub recent_activity: AppResult<Read<Page<ActivityFeedRow>>>,
}

/// The number of records the composite's activity panel shows.
pub const DASHBOARD_ACTIVITY_RECORDS: u16 = 10;

#[derive(Clone, Debug)]
pub struct Dashboard {
    reads: ReadPools,
}

impl Dashboard {
    pub fn new(reads: ReadPools) -> Self {
        Self { reads }
    }

    /// The caller's account's revenue over `range`, by `interval`, within the request's
    /// deadline. Admins.
    pub async fn revenue(
        &self,
        scope: &RequestScope,
        range: DateRange,
        interval: RevenueInterval,
    ) -> AppResult<Read<RevenueReport>> {
        self.revenue_panel(scope.caller()?, range, interval, scope.remaining())
            .await
    }

    /// The caller's account's ticket statistics over `range`, within the request's deadline.
    /// Agents and admins.
    pub async fn ticket_stats(
        &self,
        scope: &RequestScope,
        range: DateRange,
    ) -> AppResult<Read<TicketStatsReport>> {
        self.ticket_stats_panel(scope.caller()?, range, scope.remaining())
            .await
    }

    /// A page of the caller's account's audit feed, newest first, within the request's
    /// deadline. Agents and admins.
    pub async fn recent_activity(
        &self,
        scope: &RequestScope,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Read<Page<ActivityFeedRow>>> {
        self.recent_activity_panel(scope.caller()?, page_size, after, scope.remaining())
            .await
    }

    /// The caller's account's revenue over `range`, by `interval`. Admins (the RPC's declared
    /// role; checked again here for the composite).
    async fn revenue_panel(
        &self,
        caller: &Caller,
        range: DateRange,
        interval: RevenueInterval,
        budget: Duration,
    ) -> AppResult<Read<RevenueReport>> {
        caller.require(Role::Admin)?;
        let account = caller.account_id.as_uuid();
        let (days, source) = self
            .read(budget, async |conn| {
                RevenueDay::list_for_account(conn, account, range.start(), range.end()).await
            })
            .await?;
        Ok(Read {
            value: RevenueReport {
                range,
                interval,
                currencies: bucket(&days, interval),
            },
            source,
        })
    }

    /// The caller's account's ticket statistics over `range`. Agents and admins.
    async fn ticket_stats_panel(
        &self,
        caller: &Caller,
        range: DateRange,
        budget: Duration,
    ) -> AppResult<Read<TicketStatsReport>> {
        caller.require(Role::Agent)?;
        let account = caller.account_id.as_uuid();
        let ((open, daily, first_response, resolution), source) = self
            .read(budget, async |conn| {
                let open = OpenTicketCount::list_for_account(conn, account).await?;
                let daily =
                    TicketDay::list_for_account(conn, account, range.start(), range.end()).await?;
                let first_response =
                    ResponseTimes::first_response(conn, account, range.start(), range.end())
                        .await?;
                let resolution =
                    ResponseTimes::resolution(conn, account, range.start(), range.end()).await?;
                Ok((open, daily, first_response, resolution))
            })
            .await?;
        Ok(Read {
            value: TicketStatsReport {
                range,
                open,
                daily,
                first_response,
                resolution,
            },
            source,
        })
    }

    /// A page of the caller's account's audit feed, newest first. Agents and admins.
    async fn recent_activity_panel(
        &self,
        caller: &Caller,
        page_size: PageSize,
        after: Option<PageCursor>,
        budget: Duration,
    ) -> AppResult<Read<Page<ActivityFeedRow>>> {
        caller.require(Role::Agent)?;
        let account = caller.account_id.as_uuid();
        let (rows, source) = self
            .read(budget, async |conn| {
                ActivityFeedRow::list_for_account(
                    conn,
                    account,
                    after.as_ref(),
                    rows_to_fetch(page_size),
                )
                .await
            })
            .await?;
        Ok(Read {
            value: paginate(rows, page_size, |row| {
                PageCursor::at(row.created_at, row.id)
            }),
            source,
        })
    }

    /// Every panel side by side, each within its own budget: a panel that fails or runs out
    /// of time is answered as such, and the others are not waited for longer than their own
    /// budgets. A caller who is not an admin gets the revenue panel's PERMISSION_DENIED.
    pub async fn all(
        &self,
        scope: &RequestScope,
        range: DateRange,
        budgets: PanelBudgets,
    ) -> AppResult<AllPanels> {
        let caller = scope.caller()?;
        let first_page = PageSize::parse(i32::from(DASHBOARD_ACTIVITY_RECORDS));
        let (revenue, ticket_stats, recent_activity) = tokio::join!(
            within(
                budgets.revenue,
                self.revenue_panel(caller, range, RevenueInterval::Day, budgets.revenue)
            ),
            within(
                budgets.ticket_stats,
                self.ticket_stats_panel(caller, range, budgets.ticket_stats)
            ),
            within(budgets.recent_activity, async {
                let page_size = first_page.map_err(|problem| {
                    AppError::internal(anyhow::anyhow!("the dashboard's page size: {problem}"))
                })?;
                self.recent_activity_panel(caller, page_size, None, budgets.recent_activity)
                    .await
            }),
        );
        Ok(AllPanels {
            revenue,
            ticket_stats,
            recent_activity,
        })
    }

    /// Runs `body` on a connection of the replica (while fresh) or the primary, in a read
    /// transaction whose statements PostgreSQL cancels once `budget` is spent.
    async fn read<T, F>(&self, budget: Duration, body: F) -> AppResult<(T, ReadSource)>
    where
        F: AsyncFnOnce(&mut AsyncPgConnection) -> AppResult<T>,
    {
        let (mut connection, source) = self.reads.connection().await?;
        db::begin(&mut connection, Limits::within(budget)).await?;
        let result = body(&mut connection).await;
        let value = db::end(&mut connection, result).await?;
        Ok((value, source))
    }
}

/// `work` with a last-resort timeout a little past `budget`: PostgreSQL's statement timeout
/// normally ends a held panel first; this ends one waiting for a connection or a network.
async fn within<T>(budget: Duration, work: impl Future<Output = AppResult<T>>) -> AppResult<T> {
    let grace = Duration::from_millis(250);
    match tokio::time::timeout(budget + grace, work).await {
        Ok(outcome) => outcome,
        Err(_elapsed) => Err(AppError::DeadlineExceeded),
    }
}

/// Days (by currency, then day) into buckets of `interval` per currency.
fn bucket(days: &[RevenueDay], interval: RevenueInterval) -> Vec<CurrencyRevenue> {
    let mut currencies: Vec<CurrencyRevenue> = Vec::new();
    for day in days {
        let start = interval.bucket_of(day.day);
        if currencies
            .last()
            .is_none_or(|last| last.currency != day.currency)
        {
            currencies.push(CurrencyRevenue {
                currency: day.currency.clone(),
                buckets: Vec::new(),
                total: RevenueSums::default(),
            });
        }
        let Some(currency) = currencies.last_mut() else {
            continue;
        };
        currency.total.add(day);
        match currency.buckets.last_mut() {
            Some((bucket_start, sums)) if *bucket_start == start => sums.add(day),
            _ => {
                let mut sums = RevenueSums::default();
                sums.add(day);
                currency.buckets.push((start, sums));
            }
        }
    }
    currencies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(currency: &str, date: &str, count: i64, gross: i64, refunded: i64) -> RevenueDay {
        RevenueDay {
            currency: currency.to_owned(),
            day: NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap(),
            charge_count: count,
            gross_minor: gross,
            refunded_minor: refunded,
        }
    }

    #[test]
    fn days_bucket_by_month_per_currency_and_are_never_added_across_currencies() {
        let days = [
            day("EUR", "2026-01-05", 1, 1_000, 0),
            day("EUR", "2026-01-20", 2, 3_000, 500),
            day("EUR", "2026-02-01", 1, 700, 0),
            day("USD", "2026-01-05", 1, 9_999, 9_999),
        ];
        let currencies = bucket(&days, RevenueInterval::Month);
        let summary: Vec<_> = currencies
            .iter()
            .map(|currency| {
                (
                    currency.currency.as_str(),
                    currency
                        .buckets
                        .iter()
                        .map(|(start, sums)| {
                            (start.to_string(), sums.charge_count, sums.net_minor())
                        })
                        .collect::<Vec<_>>(),
                    currency.total.net_minor(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "EUR",
                    vec![
                        ("2026-01-01".to_owned(), 3, 3_500),
                        ("2026-02-01".to_owned(), 1, 700)
                    ],
                    4_200
                ),
                ("USD", vec![("2026-01-01".to_owned(), 1, 0)], 0),
            ]
        );
    }
}
