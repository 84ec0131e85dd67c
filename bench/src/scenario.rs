//! The scenarios `loadgen run` and `loadgen latency` drive. Each picks what it asks for at random
//! from the bench data (varied tickets and callers: the cache and the database see a spread, not
//! one hot row), and each call carries the token of a caller allowed to see the answer.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use rand::rngs::StdRng;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::billing_service_client::BillingServiceClient;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use supportdesk::wire::proto::v1::user_service_client::UserServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::data::BenchData;
use crate::hello::HelloRequest;
use crate::hello::greeter_client::GreeterClient;
use crate::load::{Label, Outcome, Scenario, Worker, bearer, connect_many};
use crate::read_volume::ReadCall;
use crate::rest::HttpVersion;
use crate::rest_load::{Dialect, RestCall, RestScenario};

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
    /// The mixed load of `bench/run --fleet`, as its clients make it: of every 8 calls, 3
    /// GetTicket and 1 ListTickets (as customers), 2 CreateTicket, 1 AddComment and 1
    /// CreateCharge (as the admin, each with an idempotency key of its own; the charge through the
    /// payment provider).
    Mixed,
    /// `GET /v1/tickets/{id}` through Envoy, HTTP/1.1, as the ticket's requester (the
    /// one-at-a-time row with Envoy's upstream time, and `bench/instructions --envoy`; the load
    /// rows run `loadgen oha`).
    RestGetTicket,
    /// `GET /v1/tickets?pageSize=20` through Envoy as a random customer.
    RestListTickets,
    /// `POST /v1/tickets` through Envoy as the admin, a new requester each, with an
    /// idempotency key.
    RestCreateTicket,
    /// `POST /v1/tickets` with a member the Ticket does not have: 400 UNKNOWN_FIELD.
    RestUnknownField,
    /// The seeds' Express stack: `GET /api/v1/tickets?pageSize=20`.
    ExpressListTickets,
    /// The seeds' Express stack: `POST /api/v1/tickets` as a random caller.
    ExpressCreateTicket,
    /// The seeds' Express stack: `POST /api/v1/tickets` with an invalid priority: 422.
    ExpressInvalidTicket,
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
    /// ListTickets by one of the data's views (the side panel's), its first page, as the admin.
    ListTicketsByView,
    /// CountViews of every view the admin sees (the side panel's 20) in one call.
    CountViews,
}

impl ScenarioName {
    pub fn is_rest(self) -> bool {
        self.rest_call().is_some()
    }

    /// The call and dialect of a REST scenario (src/rest_load.rs), if it is one.
    pub fn rest_call(self) -> Option<(RestCall, Dialect)> {
        use Dialect::{Express, Supportdesk};
        Some(match self {
            Self::RestGetTicket => (RestCall::GetTicket, Supportdesk),
            Self::RestListTickets => (RestCall::ListTickets, Supportdesk),
            Self::RestCreateTicket => (RestCall::CreateTicket, Supportdesk),
            Self::RestUnknownField => (RestCall::RefusedTicket, Supportdesk),
            Self::ExpressListTickets => (RestCall::ListTickets, Express),
            Self::ExpressCreateTicket => (RestCall::CreateTicket, Express),
            Self::ExpressInvalidTicket => (RestCall::RefusedTicket, Express),
            Self::Hello
            | Self::GetTicket
            | Self::ListTickets
            | Self::GetCurrentUser
            | Self::CreateTicket
            | Self::Mixed
            | Self::SearchTicketsAgent
            | Self::SearchTicketsCustomer
            | Self::GetRevenueYear
            | Self::GetTicketStatsMonth
            | Self::GetTicketStatsYear
            | Self::ListTicketsByView
            | Self::CountViews => return None,
        })
    }

    /// The call of a read-volume scenario (src/read_volume.rs), if it is one.
    pub fn read_call(self) -> Option<ReadCall> {
        match self {
            Self::SearchTicketsAgent => Some(ReadCall::SearchAsAgent),
            Self::SearchTicketsCustomer => Some(ReadCall::SearchAsCustomer),
            Self::GetRevenueYear => Some(ReadCall::RevenueYear),
            Self::GetTicketStatsMonth => Some(ReadCall::TicketStatsMonth),
            Self::GetTicketStatsYear => Some(ReadCall::TicketStatsYear),
            Self::ListTicketsByView => Some(ReadCall::ListByView),
            Self::CountViews => Some(ReadCall::CountViews),
            Self::Hello
            | Self::GetTicket
            | Self::ListTickets
            | Self::GetCurrentUser
            | Self::CreateTicket
            | Self::Mixed
            | Self::RestGetTicket
            | Self::RestListTickets
            | Self::RestCreateTicket
            | Self::RestUnknownField
            | Self::ExpressListTickets
            | Self::ExpressCreateTicket
            | Self::ExpressInvalidTicket => None,
        }
    }

    pub fn needs_data(self) -> bool {
        self != Self::Hello
    }
}

impl FromStr for ScenarioName {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        <Self as clap::ValueEnum>::from_str(text, true)
    }
}

/// Builds the scenario's worker factory: gRPC scenarios share `connections` HTTP/2 connections;
/// REST scenarios open one connection per worker, speaking `rest_version`.
pub async fn build(
    name: ScenarioName,
    addr: &str,
    connections: usize,
    rest_version: HttpVersion,
    data: Option<BenchData>,
) -> anyhow::Result<Arc<dyn Scenario>> {
    let needs_data = || {
        data.clone()
            .ok_or_else(|| anyhow::anyhow!("scenario {name:?} needs --data FILE"))
    };
    if let Some(call) = name.read_call() {
        return crate::read_volume::build(call, addr, connections, &needs_data()?).await;
    }
    if let Some((call, dialect)) = name.rest_call() {
        let data = if name.needs_data() {
            Some(needs_data()?)
        } else {
            None
        };
        return Ok(Arc::new(RestScenario::new(
            addr,
            rest_version,
            call,
            dialect,
            data.as_ref(),
        )));
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
        customer_ids: data.customers.iter().map(|c| c.user_id.clone()).collect(),
        run_id: uuid::Uuid::now_v7().simple().to_string(),
        created: AtomicU64::new(0),
    };
    anyhow::ensure!(
        !matches!(name, ScenarioName::GetTicket | ScenarioName::Mixed)
            || !shared.tickets.is_empty(),
        "the bench data has no tickets"
    );
    anyhow::ensure!(
        name != ScenarioName::Mixed || !data.customers.is_empty(),
        "the mixed scenario charges the bench data's customers, and it has none"
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
    /// The customers' user ids: whom the mixed scenario charges.
    customer_ids: Vec<String>,
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
            users: UserServiceClient::new(channel.clone()),
            billing: BillingServiceClient::new(channel),
            shared: Arc::clone(&self.shared),
        }))
    }
}

struct GrpcWorker {
    kind: ScenarioName,
    greeter: GreeterClient<Channel>,
    tickets: TicketServiceClient<Channel>,
    users: UserServiceClient<Channel>,
    billing: BillingServiceClient<Channel>,
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

    /// A fresh idempotency key, unique across runs, and its serial number.
    fn next_key(&self) -> (u64, String) {
        let serial = self.shared.created.fetch_add(1, Ordering::Relaxed);
        (serial, format!("{}-{serial}", self.shared.run_id))
    }

    /// The admin's request with a fresh idempotency key; the key's serial number.
    fn keyed<T>(&self, message: impl FnOnce(u64) -> T) -> tonic::Request<T> {
        let (serial, key) = self.next_key();
        let mut request = self.authorized(0, message(serial));
        if let Ok(key) = MetadataValue::try_from(key) {
            request.metadata_mut().insert("idempotency-key", key);
        }
        request
    }

    fn random_ticket(&self, rng: &mut StdRng) -> &(String, usize) {
        &self.shared.tickets[rng.gen_range(0..self.shared.tickets.len())]
    }

    async fn get_ticket(&mut self, rng: &mut StdRng) -> Outcome {
        let (id, token) = self.random_ticket(rng).clone();
        let request = self.authorized(
            token,
            v1::GetTicketRequest {
                id,
                ..Default::default()
            },
        );
        label(self.tickets.get_ticket(request).await)
    }

    async fn list_tickets(&mut self, rng: &mut StdRng) -> Outcome {
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

    /// As the admin, naming a requester never seen before (the open-ticket limit never refuses).
    async fn create_ticket(&mut self) -> Outcome {
        let run_id = self.shared.run_id.clone();
        let request = self.keyed(|serial| v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: format!("Load ticket {serial}"),
                description: "Created by loadgen run.".to_owned(),
                requester_email: format!("req-{serial}-{run_id}@load.example.com"),
                ..Default::default()
            }),
        });
        label(self.tickets.create_ticket(request).await)
    }

    async fn add_comment(&mut self, rng: &mut StdRng) -> Outcome {
        let (ticket_id, _) = self.random_ticket(rng).clone();
        let request = self.keyed(|serial| v1::AddCommentRequest {
            ticket_id,
            comment: Some(v1::Comment {
                body: format!("Load comment {serial}"),
                ..Default::default()
            }),
        });
        label(self.tickets.add_comment(request).await)
    }

    /// 5.00 USD from a random customer, with the payment provider's test card that succeeds.
    async fn create_charge(&mut self, rng: &mut StdRng) -> Outcome {
        let customers = &self.shared.customer_ids;
        let customer_id = customers[rng.gen_range(0..customers.len())].clone();
        let request = self.keyed(|_| v1::CreateChargeRequest {
            charge: Some(v1::Charge {
                customer_id,
                amount: Some(v1::Money {
                    amount_minor: 500,
                    currency_code: "USD".to_owned(),
                }),
                payment_method: "pm_card_visa".to_owned(),
                ..Default::default()
            }),
        });
        label(self.billing.create_charge(request).await)
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
            ScenarioName::GetTicket => self.get_ticket(rng).await,
            ScenarioName::ListTickets => self.list_tickets(rng).await,
            ScenarioName::GetCurrentUser => {
                let caller = self.random_caller(rng);
                let request = self.authorized(caller, v1::GetCurrentUserRequest {});
                label(self.users.get_current_user(request).await)
            }
            ScenarioName::CreateTicket => self.create_ticket().await,
            ScenarioName::Mixed => match rng.gen_range(0..8) {
                0..=2 => self.get_ticket(rng).await,
                3 => self.list_tickets(rng).await,
                4 | 5 => self.create_ticket().await,
                6 => self.add_comment(rng).await,
                _ => self.create_charge(rng).await,
            },
            ScenarioName::RestGetTicket
            | ScenarioName::RestListTickets
            | ScenarioName::RestCreateTicket
            | ScenarioName::RestUnknownField
            | ScenarioName::ExpressListTickets
            | ScenarioName::ExpressCreateTicket
            | ScenarioName::ExpressInvalidTicket
            | ScenarioName::SearchTicketsAgent
            | ScenarioName::SearchTicketsCustomer
            | ScenarioName::GetRevenueYear
            | ScenarioName::GetTicketStatsMonth
            | ScenarioName::GetTicketStatsYear
            | ScenarioName::ListTicketsByView
            | ScenarioName::CountViews => Outcome::of(Label::Transport),
        }
    }
}
