//! The DashboardService rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{DENIED, assert_refused};

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "DashboardService.GetRevenue",
        case: Some(get_revenue_case),
        probe: get_revenue_probe,
    },
    RpcFixture {
        rpc: "DashboardService.GetTicketStats",
        case: Some(get_ticket_stats_case),
        probe: get_ticket_stats_probe,
    },
    RpcFixture {
        rpc: "DashboardService.GetRecentActivity",
        case: Some(get_recent_activity_case),
        probe: get_recent_activity_probe,
    },
    RpcFixture {
        rpc: "DashboardService.GetDashboard",
        case: Some(get_dashboard_case),
        probe: get_dashboard_probe,
    },
];

fn get_revenue_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(
                Method::GET,
                "/v1/dashboard/revenue?interval=REVENUE_INTERVAL_MONTH",
                admin,
                None,
            ),
            None,
            call(
                Method::GET,
                "/v1/dashboard/revenue?start_date=yesterday",
                admin,
                None,
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn get_revenue_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app, rpc, attacker, ..
        } = attack;
        let result = app
            .dashboard
            .clone()
            .get_revenue(attacker.request(v1::GetRevenueRequest::default()))
            .await;
        match result {
            Ok(revenue) => assert_eq!(revenue.into_inner().currencies, []),
            Err(status) => assert_refused(rpc, Err::<(), _>(status), DENIED),
        }
    })
}

fn get_ticket_stats_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/dashboard/ticket-stats", admin, None),
            None,
            call(
                Method::GET,
                "/v1/dashboard/ticket-stats?start_date=2020-01-01&end_date=2026-01-01",
                admin,
                None,
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn get_ticket_stats_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app, rpc, attacker, ..
        } = attack;
        let result = app
            .dashboard
            .clone()
            .get_ticket_stats(attacker.request(v1::GetTicketStatsRequest::default()))
            .await;
        match result {
            Ok(stats) => {
                let stats = stats.into_inner();
                assert_eq!((stats.open, stats.daily), (vec![], vec![]));
            }
            Err(status) => assert_refused(rpc, Err::<(), _>(status), DENIED),
        }
    })
}

fn get_recent_activity_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(
                Method::GET,
                "/v1/dashboard/activity?page_size=5",
                admin,
                None,
            ),
            None,
            call(
                Method::GET,
                "/v1/dashboard/activity?page_token=forged",
                admin,
                None,
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn get_recent_activity_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .dashboard
            .clone()
            .get_recent_activity(attacker.request(v1::GetRecentActivityRequest {
                page_size: 100,
                ..Default::default()
            }))
            .await;
        match result {
            Ok(page) => assert!(page.into_inner().records.iter().all(|record| {
                record.ticket_id != target.ticket.id && record.charge_id != target.charge.id
            })),
            Err(status) => assert_refused(rpc, Err::<(), _>(status), DENIED),
        }
    })
}

fn get_dashboard_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/dashboard", admin, None),
            None,
            call(Method::GET, "/v1/dashboard", None, None),
            StatusCode::UNAUTHORIZED,
        )
    })
}

fn get_dashboard_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .dashboard
            .clone()
            .get_dashboard(attacker.request(v1::GetDashboardRequest::default()))
            .await;
        match result {
            Ok(dashboard) => {
                let dashboard = dashboard.into_inner();
                let revenue = dashboard.revenue.unwrap().revenue.unwrap_or_default();
                assert_eq!(revenue.currencies, []);
                let stats = dashboard.ticket_stats.unwrap().ticket_stats.unwrap();
                assert_eq!((stats.open, stats.daily), (vec![], vec![]));
                let activity = dashboard.recent_activity.unwrap().recent_activity.unwrap();
                assert!(activity.records.iter().all(|record| {
                    record.ticket_id != target.ticket.id && record.charge_id != target.charge.id
                }));
            }
            Err(status) => assert_refused(rpc, Err::<(), _>(status), DENIED),
        }
    })
}
