//! The REST scenarios: HTTP/1.1 keep-alive calls, one connection per worker, to supportdesk
//! through Envoy (`/v1/...`) or to the seeds' Express stack (`/api/v1/...`,
//! `../shared/peers/express-seed`), the same call in each one's own dialect, so that `bench/run`
//! can put them side by side.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::Method;
use rand::Rng;
use rand::rngs::StdRng;

use crate::data::BenchData;
use crate::load::{CALL_TIMEOUT, Label, Outcome, Scenario, Worker};
use crate::rest::{HttpConnection, HttpVersion};

/// What a REST scenario asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestCall {
    /// One ticket, as a caller who may read it.
    GetTicket,
    /// A page of 20 tickets as a random customer.
    ListTickets,
    /// A new ticket with an idempotency key.
    CreateTicket,
    /// A ticket whose body the API refuses: supportdesk's 400 UNKNOWN_FIELD; Express's 422
    /// VALIDATION_FAILED (its zod schema drops unknown members, so an unknown member alone would
    /// create the ticket: an invalid priority is the refusal it has).
    RefusedTicket,
}

/// Whose API is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Supportdesk,
    Express,
}

pub struct RestScenario {
    addr: String,
    version: HttpVersion,
    call: RestCall,
    dialect: Dialect,
    shared: Arc<Shared>,
}

struct Shared {
    /// Each ticket's path and the authorization that may read it.
    tickets: Vec<(String, String)>,
    /// The customers' authorizations (the admin's when there are none).
    callers: Vec<String>,
    admin: String,
    /// Makes requester emails and idempotency keys unique across runs.
    run_id: String,
    serial: AtomicU64,
}

impl RestScenario {
    pub fn new(
        addr: &str,
        version: HttpVersion,
        call: RestCall,
        dialect: Dialect,
        data: Option<&BenchData>,
    ) -> Self {
        let prefix = match dialect {
            Dialect::Supportdesk => "/v1/tickets",
            Dialect::Express => "/api/v1/tickets",
        };
        let bearer = |token: &str| format!("Bearer {token}");
        let shared = Shared {
            tickets: data.map_or_else(Vec::new, |data| {
                data.tickets
                    .iter()
                    .map(|t| (format!("{prefix}/{}", t.id), bearer(data.token_for(t))))
                    .collect()
            }),
            callers: data.map_or_else(Vec::new, |data| {
                data.callers()
                    .iter()
                    .map(|p| bearer(&p.access_token))
                    .collect()
            }),
            admin: data.map_or_else(String::new, |data| bearer(&data.admin.access_token)),
            run_id: uuid::Uuid::now_v7().simple().to_string(),
            serial: AtomicU64::new(0),
        };
        Self {
            addr: addr.to_owned(),
            version,
            call,
            dialect,
            shared: Arc::new(shared),
        }
    }
}

#[tonic::async_trait]
impl Scenario for RestScenario {
    async fn worker(&self, _index: usize) -> anyhow::Result<Box<dyn Worker>> {
        Ok(Box::new(RestWorker {
            connection: HttpConnection::open_with(&self.addr, self.version).await?,
            call: self.call,
            dialect: self.dialect,
            shared: Arc::clone(&self.shared),
        }))
    }
}

struct RestWorker {
    connection: HttpConnection,
    call: RestCall,
    dialect: Dialect,
    shared: Arc<Shared>,
}

/// One request: method, path, authorization, idempotency key, JSON body, and the status a
/// refusal scenario asks for.
struct Planned {
    method: Method,
    path: String,
    authorization: Option<String>,
    key: Option<String>,
    body: Option<String>,
    expected: Option<u16>,
}

impl RestWorker {
    fn plan(&self, rng: &mut StdRng) -> Planned {
        let shared = &self.shared;
        let get = |path: String, authorization: Option<String>| Planned {
            method: Method::GET,
            path,
            authorization,
            key: None,
            body: None,
            expected: None,
        };
        match self.call {
            RestCall::GetTicket => {
                let (path, authorization) = &shared.tickets[rng.gen_range(0..shared.tickets.len())];
                get(path.clone(), Some(authorization.clone()))
            }
            // supportdesk: a customer's own tickets. Express has no such view: its page is the
            // caller's account's, read as the admin of the account the tickets are in.
            RestCall::ListTickets => match self.dialect {
                Dialect::Supportdesk => {
                    let caller = &shared.callers[rng.gen_range(0..shared.callers.len())];
                    get("/v1/tickets?pageSize=20".to_owned(), Some(caller.clone()))
                }
                Dialect::Express => get(
                    "/api/v1/tickets?pageSize=20".to_owned(),
                    Some(shared.admin.clone()),
                ),
            },
            RestCall::CreateTicket | RestCall::RefusedTicket => {
                let serial = shared.serial.fetch_add(1, Ordering::Relaxed);
                let run_id = &shared.run_id;
                let refused = self.call == RestCall::RefusedTicket;
                let (path, authorization, body, expected) = match self.dialect {
                    // As the admin, naming a requester never seen before (the open-ticket limit
                    // never refuses), as the gRPC CreateTicket scenario does.
                    Dialect::Supportdesk => (
                        "/v1/tickets",
                        shared.admin.clone(),
                        format!(
                            r#"{{"subject":"Load ticket {serial}","description":"Created by loadgen.","requesterEmail":"req-{serial}-{run_id}@load.example.com"{}}}"#,
                            if refused { r#","severity":"high""# } else { "" }
                        ),
                        refused.then_some(400),
                    ),
                    // Express counts its caller's open tickets: a random customer each time, so
                    // that count stays as small as supportdesk's new requester's.
                    Dialect::Express => (
                        "/api/v1/tickets",
                        shared.callers[rng.gen_range(0..shared.callers.len())].clone(),
                        format!(
                            r#"{{"subject":"Load ticket {serial}","description":"Created by loadgen.","priority":"{}"}}"#,
                            if refused { "urgent" } else { "low" }
                        ),
                        refused.then_some(422),
                    ),
                };
                Planned {
                    method: Method::POST,
                    path: path.to_owned(),
                    authorization: Some(authorization),
                    key: Some(format!("{run_id}-{serial}")),
                    body: Some(body),
                    expected,
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Worker for RestWorker {
    async fn call(&mut self, rng: &mut StdRng) -> Outcome {
        let planned = self.plan(rng);
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(3);
        if let Some(authorization) = &planned.authorization {
            headers.push(("authorization", authorization));
        }
        if let Some(key) = &planned.key {
            headers.push(("idempotency-key", key));
        }
        if planned.body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let body = planned.body.map_or_else(Bytes::new, Bytes::from);
        let sent = self
            .connection
            .send(planned.method, &planned.path, &headers, body);
        match tokio::time::timeout(CALL_TIMEOUT, sent).await {
            Ok(Ok(answer)) => {
                let status = answer.status.as_u16();
                Outcome {
                    label: match planned.expected {
                        Some(expected) if expected == status => Label::Expected(status),
                        _ => Label::Http(status),
                    },
                    server_time: answer.upstream_time,
                }
            }
            Ok(Err(_)) => Outcome::of(Label::Transport),
            Err(_) => {
                // The request may still be in flight on this connection: start a new one.
                self.connection.abandon();
                Outcome::of(Label::Timeout)
            }
        }
    }
}
