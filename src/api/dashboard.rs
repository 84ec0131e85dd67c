//! `supportdesk.v1.DashboardService`: wire ↔ domain for the dashboard's panels; the reads live in
//! `service::dashboard`. GetDashboard answers every panel with its own `google.rpc.Status`, built
//! from the panel's error exactly as a failed RPC's status would be (code, message, details).

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use prost::Message;
use tonic::{Request, Response, Status};

use super::{ListPages, scope, timestamp};
use crate::db::models::{ActivityFeedRow, ResponseTimes};
use crate::db::read_replica::ReadSource;
use crate::domain::{DateRange, PageTokenKeys, RangeProblem, RevenueInterval};
use crate::errors::{AppError, AppResult, FieldViolations};
use crate::service::Dashboard;
use crate::service::dashboard::{
    PanelBudgets, Read, RevenueReport, RevenueSums, TicketStatsReport,
};
use crate::wire::methods::MethodTable;
use crate::wire::proto::google::rpc;
use crate::wire::proto::v1;

/// The page-token list of the audit feed (GetRecentActivity and GetDashboard's first page).
const ACTIVITY_LIST: &str = "dashboard-activity";

/// What the composite keeps for itself out of its own deadline: the panels' budgets stop short
/// of it, so that the answer, with every panel's status, leaves in time.
const COMPOSITE_MARGIN: Duration = Duration::from_millis(300);

/// The longest range of the ticket statistics, in days.
const TICKET_STATS_MAX_DAYS: u64 = 366;

pub struct DashboardApi {
    dashboard: Dashboard,
    pages: PageTokenKeys,
    /// The panels' declared deadlines, read from the method table.
    panel_deadlines: PanelBudgets,
}

impl DashboardApi {
    pub fn new(dashboard: Dashboard, pages: PageTokenKeys, methods: &MethodTable) -> Self {
        let declared = |rpc: &str, fallback: Duration| {
            methods
                .lookup(&format!("/supportdesk.v1.DashboardService/{rpc}"))
                .and_then(|method| method.deadline)
                .unwrap_or(fallback)
        };
        Self {
            dashboard,
            pages,
            panel_deadlines: PanelBudgets {
                revenue: declared("GetRevenue", Duration::from_secs(2)),
                ticket_stats: declared("GetTicketStats", Duration::from_secs(2)),
                recent_activity: declared("GetRecentActivity", Duration::from_secs(1)),
            },
        }
    }
}

#[tonic::async_trait]
impl v1::dashboard_service_server::DashboardService for DashboardApi {
    async fn get_revenue(
        &self,
        mut request: Request<v1::GetRevenueRequest>,
    ) -> Result<Response<v1::Revenue>, Status> {
        let scope = scope(&mut request)?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let interval = violations.check("interval", RevenueInterval::try_from(message.interval));
        let range = interval.and_then(|interval| {
            range_of(
                &mut violations,
                &message.start_date,
                &message.end_date,
                interval.max_days(),
            )
        });
        let (Some(interval), Some(range)) = (interval, range) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let read = self.dashboard.revenue(&scope, range, interval).await?;
        Ok(Response::new(v1::Revenue::from(&read.value)))
    }

    async fn get_ticket_stats(
        &self,
        mut request: Request<v1::GetTicketStatsRequest>,
    ) -> Result<Response<v1::TicketStats>, Status> {
        let scope = scope(&mut request)?;
        let message = request.get_ref();
        let range = requested_range(
            &message.start_date,
            &message.end_date,
            TICKET_STATS_MAX_DAYS,
        )?;
        let read = self.dashboard.ticket_stats(&scope, range).await?;
        Ok(Response::new(v1::TicketStats::from(&read.value)))
    }

    async fn get_recent_activity(
        &self,
        mut request: Request<v1::GetRecentActivityRequest>,
    ) -> Result<Response<v1::GetRecentActivityResponse>, Status> {
        let scope = scope(&mut request)?;
        let message = request.get_ref();
        let pages = ListPages::new(&self.pages, scope.caller()?, ACTIVITY_LIST);
        let (page_size, after) = pages.request(message.page_size, &message.page_token)?;
        let read = self
            .dashboard
            .recent_activity(&scope, page_size, after)
            .await?;
        Ok(Response::new(activity_response(&pages, read)))
    }

    async fn get_dashboard(
        &self,
        mut request: Request<v1::GetDashboardRequest>,
    ) -> Result<Response<v1::Dashboard>, Status> {
        let scope = scope(&mut request)?;
        let message = request.get_ref();
        let range = requested_range(
            &message.start_date,
            &message.end_date,
            RevenueInterval::Day.max_days().min(TICKET_STATS_MAX_DAYS),
        )?;
        let left = scope.remaining().saturating_sub(COMPOSITE_MARGIN);
        let budgets = PanelBudgets {
            revenue: self.panel_deadlines.revenue.min(left),
            ticket_stats: self.panel_deadlines.ticket_stats.min(left),
            recent_activity: self.panel_deadlines.recent_activity.min(left),
        };
        let panels = self.dashboard.all(&scope, range, budgets).await?;
        let pages = ListPages::new(&self.pages, scope.caller()?, ACTIVITY_LIST);
        let (revenue_status, revenue, revenue_source) = panel::<_, v1::Revenue>(panels.revenue);
        let (stats_status, ticket_stats, stats_source) =
            panel::<_, v1::TicketStats>(panels.ticket_stats);
        let (activity_status, recent_activity, activity_source) = match panels.recent_activity {
            Ok(read) => {
                let source = read.source;
                (
                    ok_status(),
                    Some(activity_response(&pages, read)),
                    Some(v1::PanelSource::from(source)),
                )
            }
            Err(error) => (status_of(error), None, None),
        };
        Ok(Response::new(v1::Dashboard {
            revenue: Some(v1::RevenuePanel {
                status: Some(revenue_status),
                revenue,
                source: revenue_source,
            }),
            ticket_stats: Some(v1::TicketStatsPanel {
                status: Some(stats_status),
                ticket_stats,
                source: stats_source,
            }),
            recent_activity: Some(v1::RecentActivityPanel {
                status: Some(activity_status),
                recent_activity,
                source: activity_source,
            }),
        }))
    }
}

/// A panel's status, data (as its message `W`) and source from its outcome.
fn panel<T, W>(outcome: AppResult<Read<T>>) -> (rpc::Status, Option<W>, Option<v1::PanelSource>)
where
    W: for<'a> From<&'a T>,
{
    match outcome {
        Ok(read) => (
            ok_status(),
            Some(W::from(&read.value)),
            Some(v1::PanelSource::from(read.source)),
        ),
        Err(error) => (status_of(error), None, None),
    }
}

fn ok_status() -> rpc::Status {
    rpc::Status {
        code: 0,
        message: String::new(),
        details: Vec::new(),
    }
}

/// The `google.rpc.Status` an RPC failing with `error` would answer: the same code, message and
/// details (ErrorInfo with the reason, RetryInfo, ...).
fn status_of(error: AppError) -> rpc::Status {
    let status = Status::from(error);
    rpc::Status::decode(status.details())
        .ok()
        .filter(|decoded| decoded.code == status.code() as i32)
        .unwrap_or_else(|| rpc::Status {
            code: status.code() as i32,
            message: status.message().to_owned(),
            details: Vec::new(),
        })
}

impl From<ReadSource> for v1::PanelSource {
    fn from(source: ReadSource) -> Self {
        v1::PanelSource {
            replica: source.replica,
            staleness: Some(duration(source.staleness)),
        }
    }
}

fn duration(value: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(value.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(value.subsec_nanos()).unwrap_or(0),
    }
}

/// A range from the request, or INVALID_ARGUMENT naming each bad bound.
fn requested_range(start: &str, end: &str, max_days: u64) -> AppResult<DateRange> {
    let mut violations = FieldViolations::new();
    range_of(&mut violations, start, end, max_days).ok_or(AppError::InvalidArgument(violations))
}

fn range_of(
    violations: &mut FieldViolations,
    start: &str,
    end: &str,
    max_days: u64,
) -> Option<DateRange> {
    match DateRange::parse(start, end, Utc::now().date_naive(), max_days) {
        Ok(range) => Some(range),
        Err(problems) => {
            for problem in problems {
                match problem {
                    RangeProblem::Start(problem) => violations.add("start_date", &problem),
                    RangeProblem::End(problem) => violations.add("end_date", &problem),
                }
            }
            None
        }
    }
}

/// UNSPECIFIED means the default, DAY; a number outside the enum is refused.
impl TryFrom<i32> for RevenueInterval {
    type Error = crate::domain::InvalidValue;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match v1::RevenueInterval::try_from(value) {
            Ok(v1::RevenueInterval::Unspecified | v1::RevenueInterval::Day) => {
                Ok(RevenueInterval::Day)
            }
            Ok(v1::RevenueInterval::Month) => Ok(RevenueInterval::Month),
            Err(_) => Err(crate::domain::InvalidValue::new(
                "is not a RevenueInterval (DAY or MONTH)",
            )),
        }
    }
}

impl From<RevenueInterval> for v1::RevenueInterval {
    fn from(interval: RevenueInterval) -> Self {
        match interval {
            RevenueInterval::Day => v1::RevenueInterval::Day,
            RevenueInterval::Month => v1::RevenueInterval::Month,
        }
    }
}

fn date(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// One bucket of a revenue report: `start` names its first day, `None` for a currency's total.
fn revenue_bucket(start: Option<NaiveDate>, sums: &RevenueSums) -> v1::RevenueBucket {
    v1::RevenueBucket {
        start_date: start.map(date).unwrap_or_default(),
        charge_count: sums.charge_count,
        gross_minor: sums.gross_minor,
        refunded_minor: sums.refunded_minor,
        net_minor: sums.net_minor(),
    }
}

impl From<&RevenueReport> for v1::Revenue {
    fn from(report: &RevenueReport) -> Self {
        v1::Revenue {
            start_date: date(report.range.start()),
            end_date: date(report.range.end()),
            interval: v1::RevenueInterval::from(report.interval).into(),
            currencies: report
                .currencies
                .iter()
                .map(|currency| v1::CurrencyRevenue {
                    currency: currency.currency.clone(),
                    buckets: currency
                        .buckets
                        .iter()
                        .map(|(start, sums)| revenue_bucket(Some(*start), sums))
                        .collect(),
                    total: Some(revenue_bucket(None, &currency.total)),
                })
                .collect(),
        }
    }
}

impl From<&ResponseTimes> for v1::ResponseTimes {
    fn from(times: &ResponseTimes) -> Self {
        let seconds = |value: Option<f64>| {
            value
                .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
                .map(|seconds| duration(Duration::from_secs_f64(seconds)))
        };
        v1::ResponseTimes {
            tickets: times.tickets,
            median: seconds(times.median_seconds),
            p90: seconds(times.p90_seconds),
        }
    }
}

impl From<&TicketStatsReport> for v1::TicketStats {
    fn from(report: &TicketStatsReport) -> Self {
        v1::TicketStats {
            start_date: date(report.range.start()),
            end_date: date(report.range.end()),
            open: report
                .open
                .iter()
                .map(|count| v1::OpenTicketCount {
                    status: v1::TicketStatus::from(count.status).into(),
                    priority: v1::TicketPriority::from(count.priority).into(),
                    tickets: count.tickets,
                })
                .collect(),
            daily: report
                .daily
                .iter()
                .map(|day| v1::DailyTicketCount {
                    date: date(day.day),
                    created: day.created,
                    solved: day.solved,
                })
                .collect(),
            first_response: Some(v1::ResponseTimes::from(&report.first_response)),
            resolution: Some(v1::ResponseTimes::from(&report.resolution)),
        }
    }
}

fn activity_response(
    pages: &ListPages<'_>,
    read: Read<crate::service::Page<ActivityFeedRow>>,
) -> v1::GetRecentActivityResponse {
    let page = read.value;
    v1::GetRecentActivityResponse {
        records: page.items.iter().map(v1::ActivityRecord::from).collect(),
        next_page_token: pages.next_token(page.next),
    }
}

impl From<&ActivityFeedRow> for v1::ActivityRecord {
    fn from(row: &ActivityFeedRow) -> Self {
        let (subject, ticket_id, charge_id) = match row.subject.as_str() {
            "charge" => (
                v1::ActivitySubject::Charge,
                String::new(),
                row.subject_id.to_string(),
            ),
            _ => (
                v1::ActivitySubject::Ticket,
                row.subject_id.to_string(),
                String::new(),
            ),
        };
        v1::ActivityRecord {
            id: row.id.to_string(),
            subject: subject.into(),
            ticket_id,
            charge_id,
            actor_user_id: row
                .actor_user_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            actor_api_key_id: row
                .actor_api_key_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            action: row.action.clone(),
            create_time: Some(timestamp(row.created_at)),
        }
    }
}
