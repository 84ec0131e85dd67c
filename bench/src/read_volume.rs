//! The read-volume scenarios (`bench/run --read-volume`): SearchTickets, GetRevenue,
//! GetTicketStats, ListTickets by a saved view and CountViews over an account that
//! `bench/sql/read_volume_*.sql` filled with a million tickets (tags, custom fields, a group:
//! issue 68) and a million charges. They are measured one call at a time (`loadgen latency`):
//! their targets are a lone caller's p99. The searches are the data file's `searches` (the
//! query mix bench/run drew, bench/README.md), each asked by a caller of the scope the
//! scenario names: the admin over the whole account, or a customer over their own tickets.

use std::sync::Arc;

use chrono::{Duration as Days, Utc};
use rand::Rng;
use rand::rngs::StdRng;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::dashboard_service_client::DashboardServiceClient;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use supportdesk::wire::proto::v1::view_service_client::ViewServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::data::BenchData;
use crate::load::{Label, Outcome, Scenario, Worker, bearer, connect_many};

/// The page a search asks for: what an agent's search box shows.
pub const SEARCH_PAGE_SIZE: i32 = 20;

/// Which read-volume call a scenario makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadCall {
    /// SearchTickets as the admin: the whole account.
    SearchAsAgent,
    /// SearchTickets as a random customer: their own tickets.
    SearchAsCustomer,
    /// GetRevenue by day over the last 365 days, as the admin.
    RevenueYear,
    /// GetTicketStats over the dashboard's default range (the last 30 days), as the admin.
    TicketStatsMonth,
    /// GetTicketStats over the last 365 days, as the admin.
    TicketStatsYear,
    /// ListTickets by one of the data's views at random, its first page, as the admin.
    ListByView,
    /// CountViews of every view the admin sees, as the admin.
    CountViews,
}

/// Builds the scenario of `call` over `connections` connections.
pub async fn build(
    call: ReadCall,
    addr: &str,
    connections: usize,
    data: &BenchData,
) -> anyhow::Result<Arc<dyn Scenario>> {
    let searches = matches!(call, ReadCall::SearchAsAgent | ReadCall::SearchAsCustomer);
    anyhow::ensure!(
        !searches || !data.searches.is_empty(),
        "the bench data has no searches (bench/run --read-volume adds them)"
    );
    anyhow::ensure!(
        call != ReadCall::SearchAsCustomer || !data.customers.is_empty(),
        "the bench data has no customers"
    );
    anyhow::ensure!(
        call != ReadCall::ListByView || !data.views.is_empty(),
        "the bench data has no views (bench/run --read-volume adds them)"
    );
    let admin = bearer(&data.admin.access_token)?;
    let customers = data
        .customers
        .iter()
        .map(|customer| bearer(&customer.access_token))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Arc::new(ReadVolume {
        call,
        channels: connect_many(addr, connections).await?,
        shared: Arc::new(Callers {
            admin,
            customers,
            searches: data.searches.clone(),
            views: data.views.clone(),
        }),
    }))
}

struct Callers {
    admin: MetadataValue<Ascii>,
    customers: Vec<MetadataValue<Ascii>>,
    searches: Vec<String>,
    views: Vec<String>,
}

struct ReadVolume {
    call: ReadCall,
    channels: Vec<Channel>,
    shared: Arc<Callers>,
}

#[tonic::async_trait]
impl Scenario for ReadVolume {
    async fn worker(&self, index: usize) -> anyhow::Result<Box<dyn Worker>> {
        let channel = self.channels[index % self.channels.len()].clone();
        Ok(Box::new(ReadWorker {
            call: self.call,
            tickets: TicketServiceClient::new(channel.clone()),
            views: ViewServiceClient::new(channel.clone()),
            dashboard: DashboardServiceClient::new(channel),
            shared: Arc::clone(&self.shared),
        }))
    }
}

struct ReadWorker {
    call: ReadCall,
    tickets: TicketServiceClient<Channel>,
    views: ViewServiceClient<Channel>,
    dashboard: DashboardServiceClient<Channel>,
    shared: Arc<Callers>,
}

/// `YYYY-MM-DD` of the UTC day `days_ago` days before today.
fn utc_day(days_ago: i64) -> String {
    (Utc::now().date_naive() - Days::days(days_ago))
        .format("%Y-%m-%d")
        .to_string()
}

fn authorized<T>(token: &MetadataValue<Ascii>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", token.clone());
    request
}

fn label<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
    Outcome::of(match result {
        Ok(_) => Label::Grpc("OK"),
        Err(status) => Label::grpc(status.code()),
    })
}

#[tonic::async_trait]
impl Worker for ReadWorker {
    async fn call(&mut self, rng: &mut StdRng) -> Outcome {
        let shared = Arc::clone(&self.shared);
        match self.call {
            ReadCall::SearchAsAgent | ReadCall::SearchAsCustomer => {
                let q = shared.searches[rng.gen_range(0..shared.searches.len())].clone();
                let token = if self.call == ReadCall::SearchAsAgent {
                    &shared.admin
                } else {
                    &shared.customers[rng.gen_range(0..shared.customers.len())]
                };
                let request = authorized(
                    token,
                    v1::SearchTicketsRequest {
                        q,
                        page_size: SEARCH_PAGE_SIZE,
                        ..Default::default()
                    },
                );
                label(self.tickets.search_tickets(request).await)
            }
            ReadCall::RevenueYear => {
                let request = authorized(
                    &shared.admin,
                    v1::GetRevenueRequest {
                        start_date: utc_day(364),
                        end_date: utc_day(0),
                        interval: v1::RevenueInterval::Day.into(),
                    },
                );
                label(self.dashboard.get_revenue(request).await)
            }
            ReadCall::TicketStatsMonth | ReadCall::TicketStatsYear => {
                let days = if self.call == ReadCall::TicketStatsMonth {
                    29
                } else {
                    364
                };
                let request = authorized(
                    &shared.admin,
                    v1::GetTicketStatsRequest {
                        start_date: utc_day(days),
                        end_date: utc_day(0),
                    },
                );
                label(self.dashboard.get_ticket_stats(request).await)
            }
            ReadCall::ListByView => {
                let view_id = shared.views[rng.gen_range(0..shared.views.len())].clone();
                let request = authorized(
                    &shared.admin,
                    v1::ListTicketsRequest {
                        view_id,
                        page_size: SEARCH_PAGE_SIZE,
                        ..Default::default()
                    },
                );
                label(self.tickets.list_tickets(request).await)
            }
            ReadCall::CountViews => {
                let request = authorized(&shared.admin, v1::CountViewsRequest::default());
                label(self.views.count_views(request).await)
            }
        }
    }
}
