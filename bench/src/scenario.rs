//! The scenarios `loadgen run` and `loadgen latency` drive. Each picks what it asks for at random
//! from the bench data (varied tickets and callers: the cache and the database see a spread, not
//! one hot row), and each call carries the token of a caller allowed to see the answer.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use rand::rngs::StdRng;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use supportdesk::wire::proto::v1::user_service_client::UserServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::data::BenchData;
use crate::hello::HelloRequest;
use crate::hello::greeter_client::GreeterClient;
use crate::load::{CALL_TIMEOUT, Label, Outcome, Scenario, Worker, bearer, connect_many};
use crate::read_volume::ReadCall;
use crate::rest::HttpConnection;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioName {
    /// SayHello on the plain tonic server.
    Hello,
    /// GetTicket of a random ticket as its requester.
    GetTicket,
    /// ListTickets, 20 a page, as a random customer.
    ListTickets,
    /// GetCurrentUser as a random customer.
    GetCurrentUser,
    /// CreateTicket as the admin, each naming a requester never seen before, with an
    /// idempotency key.
    CreateTicket,
    /// `GET /v1/tickets/{id}` through Envoy, HTTP/1.1, as the ticket's requester.
    RestGetTicket,
    /// `GET /v1/hello/{name}` through Envoy, HTTP/1.1.
    RestHello,
    /// SearchTickets of the data's searches as the admin (src/read_volume.rs).
    SearchTicketsAgent,
    /// SearchTickets of the data's searches as a random customer: their own tickets.
    SearchTicketsCustomer,
    /// GetRevenue by day over the last 365 days, as the admin.
    GetRevenueYear,
    /// GetTicketStats over the last 30 days (the dashboard's default), as the admin.
    GetTicketStatsMonth,
    /// GetTicketStats over the last 365 days, as the admin.
    GetTicketStatsYear,
}

impl ScenarioName {
    pub fn is_rest(self) -> bool {
        matches!(self, Self::RestGetTicket | Self::RestHello)
    }

    /// The call of a read-volume scenario (src/read_volume.rs), if it is one.
    pub fn read_call(self) -> Option<ReadCall> {
        match self {
            Self::SearchTicketsAgent => Some(ReadCall::SearchAsAgent),
            Self::SearchTicketsCustomer => Some(ReadCall::SearchAsCustomer),
            Self::GetRevenueYear => Some(ReadCall::RevenueYear),
            Self::GetTicketStatsMonth => Some(ReadCall::TicketStatsMonth),
            Self::GetTicketStatsYear => Some(ReadCall::TicketStatsYear),
            Self::Hello
            | Self::GetTicket
            | Self::ListTickets
            | Self::GetCurrentUser
            | Self::CreateTicket
            | Self::RestGetTicket
            | Self::RestHello => None,
        }
    }

    pub fn needs_data(self) -> bool {
        !matches!(self, Self::Hello | Self::RestHello)
    }
}

impl FromStr for ScenarioName {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        <Self as clap::ValueEnum>::from_str(text, true)
    }
}

/// Builds the scenario's worker factory: gRPC scenarios share `connections` HTTP/2 connections;
/// REST scenarios open one HTTP/1.1 connection per worker.
pub async fn build(
    name: ScenarioName,
    addr: &str,
    connections: usize,
    data: Option<BenchData>,
) -> anyhow::Result<Arc<dyn Scenario>> {
    let needs_data = || {
        data.clone()
            .ok_or_else(|| anyhow::anyhow!("scenario {name:?} needs --data FILE"))
    };
    if let Some(call) = name.read_call() {
        return crate::read_volume::build(call, addr, connections, &needs_data()?).await;
    }
    if name.is_rest() {
        let targets = match name {
            ScenarioName::RestGetTicket => {
                let data = needs_data()?;
                data.tickets
                    .iter()
                    .map(|ticket| {
                        (
                            format!("/v1/tickets/{}", ticket.id),
                            Some(format!("Bearer {}", data.token_for(ticket))),
                        )
                    })
                    .collect()
            }
            _ => (0..1000)
                .map(|n| (format!("/v1/hello/bench-{n}"), None))
                .collect(),
        };
        return Ok(Arc::new(RestGet {
            addr: addr.to_owned(),
            targets: Arc::new(targets),
        }));
    }
    let channels = connect_many(addr, connections).await?;
    if name == ScenarioName::Hello {
        return Ok(Arc::new(GrpcScenario {
            channels,
            shared: Arc::new(Shared::default()),
            kind: name,
        }));
    }
    let data = needs_data()?;
    let tokens: Vec<MetadataValue<Ascii>> = std::iter::once(&data.admin)
        .chain(data.customers.iter())
        .map(|principal| bearer(&principal.access_token))
        .collect::<anyhow::Result<_>>()?;
    // Token 0 is the admin's; customer i is token i + 1.
    let tickets = data
        .tickets
        .iter()
        .map(|ticket| (ticket.id.clone(), ticket.requester.map_or(0, |i| i + 1)))
        .collect();
    let callers = if data.customers.is_empty() {
        vec![0]
    } else {
        (1..tokens.len()).collect()
    };
    let shared = Shared {
        tokens,
        tickets,
        callers,
        run_id: uuid::Uuid::now_v7().simple().to_string(),
        created: AtomicU64::new(0),
    };
    anyhow::ensure!(
        name != ScenarioName::GetTicket || !shared.tickets.is_empty(),
        "the bench data has no tickets"
    );
    Ok(Arc::new(GrpcScenario {
        channels,
        shared: Arc::new(shared),
        kind: name,
    }))
}

#[derive(Default)]
struct Shared {
    tokens: Vec<MetadataValue<Ascii>>,
    /// Ticket id and the index of the token that may read it.
    tickets: Vec<(String, usize)>,
    /// Indexes of the tokens caller-centred scenarios call as.
    callers: Vec<usize>,
    /// Makes CreateTicket's requester emails and idempotency keys unique across runs.
    run_id: String,
    created: AtomicU64,
}

struct GrpcScenario {
    channels: Vec<Channel>,
    shared: Arc<Shared>,
    kind: ScenarioName,
}

#[tonic::async_trait]
impl Scenario for GrpcScenario {
    async fn worker(&self, index: usize) -> anyhow::Result<Box<dyn Worker>> {
        let channel = self.channels[index % self.channels.len()].clone();
        Ok(Box::new(GrpcWorker {
            kind: self.kind,
            greeter: GreeterClient::new(channel.clone()),
            tickets: TicketServiceClient::new(channel.clone()),
            users: UserServiceClient::new(channel),
            shared: Arc::clone(&self.shared),
        }))
    }
}

struct GrpcWorker {
    kind: ScenarioName,
    greeter: GreeterClient<Channel>,
    tickets: TicketServiceClient<Channel>,
    users: UserServiceClient<Channel>,
    shared: Arc<Shared>,
}

impl GrpcWorker {
    fn authorized<T>(&self, token: usize, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.shared.tokens[token].clone());
        request
    }

    fn random_caller(&self, rng: &mut StdRng) -> usize {
        self.shared.callers[rng.gen_range(0..self.shared.callers.len())]
    }
}

fn label<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
    Outcome::of(match result {
        Ok(_) => Label::Grpc("OK"),
        Err(status) => Label::grpc(status.code()),
    })
}

#[tonic::async_trait]
impl Worker for GrpcWorker {
    async fn call(&mut self, rng: &mut StdRng) -> Outcome {
        match self.kind {
            ScenarioName::Hello => {
                let name = format!("bench-{}", rng.gen_range(0..1000));
                label(self.greeter.say_hello(HelloRequest { name }).await)
            }
            ScenarioName::GetTicket => {
                let (id, token) = &self.shared.tickets[rng.gen_range(0..self.shared.tickets.len())];
                let request = self.authorized(
                    *token,
                    v1::GetTicketRequest {
                        id: id.clone(),
                        ..Default::default()
                    },
                );
                label(self.tickets.get_ticket(request).await)
            }
            ScenarioName::ListTickets => {
                let caller = self.random_caller(rng);
                let request = self.authorized(
                    caller,
                    v1::ListTicketsRequest {
                        page_size: 20,
                        ..Default::default()
                    },
                );
                label(self.tickets.list_tickets(request).await)
            }
            ScenarioName::GetCurrentUser => {
                let caller = self.random_caller(rng);
                let request = self.authorized(caller, v1::GetCurrentUserRequest {});
                label(self.users.get_current_user(request).await)
            }
            ScenarioName::CreateTicket => {
                let serial = self.shared.created.fetch_add(1, Ordering::Relaxed);
                let run_id = &self.shared.run_id;
                let mut request = self.authorized(
                    0,
                    v1::CreateTicketRequest {
                        ticket: Some(v1::Ticket {
                            subject: format!("Load ticket {serial}"),
                            description: "Created by loadgen run --scenario create-ticket."
                                .to_owned(),
                            requester_email: format!("req-{serial}-{run_id}@load.example.com"),
                            ..Default::default()
                        }),
                    },
                );
                if let Ok(key) = MetadataValue::try_from(format!("{run_id}-{serial}")) {
                    request.metadata_mut().insert("idempotency-key", key);
                }
                label(self.tickets.create_ticket(request).await)
            }
            ScenarioName::RestGetTicket
            | ScenarioName::RestHello
            | ScenarioName::SearchTicketsAgent
            | ScenarioName::SearchTicketsCustomer
            | ScenarioName::GetRevenueYear
            | ScenarioName::GetTicketStatsMonth
            | ScenarioName::GetTicketStatsYear => Outcome::of(Label::Transport),
        }
    }
}

struct RestGet {
    addr: String,
    /// Paths to GET and the authorization header to send with each.
    targets: Arc<Vec<(String, Option<String>)>>,
}

#[tonic::async_trait]
impl Scenario for RestGet {
    async fn worker(&self, _index: usize) -> anyhow::Result<Box<dyn Worker>> {
        Ok(Box::new(RestWorker {
            connection: HttpConnection::open(&self.addr).await?,
            targets: Arc::clone(&self.targets),
        }))
    }
}

struct RestWorker {
    connection: HttpConnection,
    targets: Arc<Vec<(String, Option<String>)>>,
}

#[tonic::async_trait]
impl Worker for RestWorker {
    async fn call(&mut self, rng: &mut StdRng) -> Outcome {
        let (path, authorization) = &self.targets[rng.gen_range(0..self.targets.len())];
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|value| ("authorization", value.as_str()))
            .collect();
        match tokio::time::timeout(CALL_TIMEOUT, self.connection.get(path, &headers)).await {
            Ok(Ok(answer)) => Outcome {
                label: Label::Http(answer.status.as_u16()),
                server_time: answer.upstream_time,
            },
            Ok(Err(_)) => Outcome::of(Label::Transport),
            Err(_) => {
                // The request may still be in flight on this connection: start a new one.
                self.connection.abandon();
                Outcome::of(Label::Timeout)
            }
        }
    }
}
