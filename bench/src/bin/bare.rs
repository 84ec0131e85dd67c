//! `bare`: GetTicket, ListTickets and CreateTicket with only the work their contract cannot do
//! without, on the service's own stack (tonic, one multiplexed Redis connection, diesel-async
//! over a bb8 pool of the same size, mimalloc). It is the floor the benchmark measures the
//! service against: what any implementation of these calls on this stack and this machine spends.
//!
//! Per call, the round trips of the service's budget (docs/performance.md): one Redis round trip
//! that runs a script (a quota's read and write with Redis's `TIME`, and for GetTicket the cached
//! ticket read in the same script); on a GetTicket miss one PostgreSQL query and one cache fill;
//! for ListTickets one query of the service's shape (the page and its requesters' emails, 21 rows
//! for a page of 20); for CreateTicket the service's transaction, statement for statement and
//! message for message (the SQL pgbench runs, `bench/sql/create_ticket.sql`), and the cache fill.
//! Left out, because they are the service's own work rather than the stack's: verifying the
//! token (a hash map of the bench's tokens stands in), the caller's freshness and role, quota
//! headers and refusals, replaying a retried key, the middleware, metrics, logging, domain types,
//! validation, signed page tokens. Every other RPC of `TicketService` answers UNIMPLEMENTED: the
//! bench calls only these three.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use prost::Message;
use redis::Script;
use redis::aio::MultiplexedConnection;
use secrecy::SecretString;
use supportdesk::configuration::DatabaseSettings;
use supportdesk::db::PgPool;
use supportdesk::db::models::ticket::TicketRow;
use supportdesk::db::schema::{accounts, idempotency_keys, tickets, users};
use supportdesk::domain::{TicketPriority, TicketStatus};
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_server::{TicketService, TicketServiceServer};
use supportdesk_bench::data::BenchData;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "GetTicket, ListTickets and CreateTicket with nothing but the stack: the floor")]
struct Args {
    /// Where to listen for gRPC (plaintext HTTP/2).
    #[arg(long, default_value = "127.0.0.1:50062")]
    addr: SocketAddr,
    /// The service's database (the bench's tickets are read from it).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Prefix of the quota and cache keys this server writes.
    #[arg(long, default_value = "supportdesk-bench:bare:")]
    key_prefix: String,
    /// The bench data `loadgen setup` wrote: whose tokens these are.
    #[arg(long)]
    data: PathBuf,
    /// The service's `DATABASE_POOL_SIZE`.
    #[arg(long, default_value_t = 10)]
    pool_size: u32,
    /// How long a cached ticket lives (the cache-miss scenario runs with 1, as the service's).
    #[arg(long, default_value_t = 3600)]
    cache_ttl_secs: u64,
    /// Start with an empty cache instead of every ticket of the bench account in it.
    #[arg(long)]
    no_prefill: bool,
}

/// A quota as the service's limiter keeps one (GCRA: one key, the theoretical arrival time,
/// from Redis's clock), plus whatever KEYS[2] holds, read in the same round trip.
const ADMIT: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local got = redis.call('MGET', unpack(KEYS))
local tat = tonumber(got[1]) or now
if tat < now then tat = now end
local new_tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return got[2] or false
";

/// One event a millisecond: never refuses at the bench's rates, and always writes.
const QUOTA_INTERVAL_MS: u64 = 1;
const PAGE_SIZE: i64 = 20;
/// The service's `MAX_OPEN_TICKETS_PER_REQUESTER` in the bench.
const MAX_OPEN_TICKETS: i64 = 1_000_000;
const CREATE_TICKET: &str = "/supportdesk.v1.TicketService/CreateTicket";

#[derive(Clone, Copy)]
struct Caller {
    account_id: Uuid,
    user_id: Uuid,
    /// Sees every ticket of the account; a customer sees their own.
    admin: bool,
}

struct Bare {
    callers: HashMap<String, Caller>,
    pool: PgPool,
    redis: MultiplexedConnection,
    admit: Script,
    key_prefix: String,
    cache_ttl_secs: u64,
}

impl Bare {
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|token| self.callers.get(token))
            .copied()
            .ok_or_else(|| Status::unauthenticated("unknown token"))
    }

    /// The caller's quota counted, and `also` read, in one round trip.
    async fn admit(&self, caller: Caller, also: Option<&str>) -> Result<Option<Vec<u8>>, Status> {
        let mut invocation = self
            .admit
            .key(format!("{}quota:{}", self.key_prefix, caller.user_id));
        if let Some(key) = also {
            invocation.key(key);
        }
        invocation
            .arg(QUOTA_INTERVAL_MS)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(|error| Status::unavailable(error.to_string()))
    }

    async fn fill(&self, ticket: &v1::Ticket) -> Result<(), Status> {
        redis::cmd("SET")
            .arg(format!("{}ticket:{}", self.key_prefix, ticket.id))
            .arg(ticket.encode_to_vec())
            .arg("EX")
            .arg(self.cache_ttl_secs)
            .query_async(&mut self.redis.clone())
            .await
            .map_err(|error| Status::unavailable(error.to_string()))
    }

    async fn connection(&self) -> Result<supportdesk::db::PooledConnection<'_>, Status> {
        self.pool
            .get()
            .await
            .map_err(|error| Status::unavailable(error.to_string()))
    }
}

fn database_error(error: diesel::result::Error) -> Status {
    Status::internal(error.to_string())
}

/// The wire message of a row, with nothing in between.
fn to_wire((row, requester_email): (TicketRow, String)) -> v1::Ticket {
    let priority = match TicketPriority::parse(&row.priority) {
        Ok(TicketPriority::Low) => v1::TicketPriority::Low,
        Ok(TicketPriority::Normal) => v1::TicketPriority::Normal,
        Ok(TicketPriority::High) => v1::TicketPriority::High,
        Ok(TicketPriority::Urgent) => v1::TicketPriority::Urgent,
        Err(_) => v1::TicketPriority::Unspecified,
    };
    let status = match TicketStatus::parse(&row.status) {
        Ok(TicketStatus::New) => v1::TicketStatus::New,
        Ok(TicketStatus::Open) => v1::TicketStatus::Open,
        Ok(TicketStatus::Pending) => v1::TicketStatus::Pending,
        Ok(TicketStatus::OnHold) => v1::TicketStatus::OnHold,
        Ok(TicketStatus::Solved) => v1::TicketStatus::Solved,
        Ok(TicketStatus::Closed) => v1::TicketStatus::Closed,
        Err(_) => v1::TicketStatus::Unspecified,
    };
    let timestamp = |at: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    };
    v1::Ticket {
        id: row.id.to_string(),
        account_id: row.account_id.to_string(),
        subject: row.subject,
        description: row.description,
        priority: priority.into(),
        status: status.into(),
        requester_id: row.requester_id.to_string(),
        requester_email,
        assignee_id: row.assignee_id.map(|id| id.to_string()).unwrap_or_default(),
        create_time: Some(timestamp(row.created_at)),
        update_time: Some(timestamp(row.updated_at)),
        etag: format!("v{}", row.version),
        tags: row.tags.into_iter().flatten().collect(),
        group_id: row.group_id.map(|id| id.to_string()).unwrap_or_default(),
        custom_fields: match row.custom_fields {
            serde_json::Value::Object(values) => {
                supportdesk::wire::convert::custom_field::json_values(values)
            }
            serde_json::Value::Null
            | serde_json::Value::Bool(_)
            | serde_json::Value::Number(_)
            | serde_json::Value::String(_)
            | serde_json::Value::Array(_) => HashMap::new(),
        },
    }
}

/// Whether `caller` may see `ticket`.
fn may_see(caller: Caller, ticket: &v1::Ticket) -> bool {
    let own = |id: &str| id.parse::<Uuid>().ok();
    own(&ticket.account_id) == Some(caller.account_id)
        && (caller.admin || own(&ticket.requester_id) == Some(caller.user_id))
}

#[tonic::async_trait]
impl TicketService for Bare {
    async fn get_ticket(
        &self,
        request: Request<v1::GetTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let caller = self.caller(&request)?;
        let id: Uuid = request
            .get_ref()
            .id
            .parse()
            .map_err(|_| Status::invalid_argument("id"))?;
        let key = format!("{}ticket:{id}", self.key_prefix);
        let cached = self.admit(caller, Some(&key)).await?;
        let ticket = match cached {
            Some(bytes) => v1::Ticket::decode(bytes.as_slice())
                .map_err(|error| Status::internal(error.to_string()))?,
            None => {
                let row = tickets::table
                    .inner_join(users::table.on(users::id.eq(tickets::requester_id)))
                    .filter(tickets::account_id.eq(caller.account_id))
                    .filter(tickets::id.eq(id))
                    .filter(tickets::deleted_at.is_null())
                    .select((TicketRow::as_select(), users::email))
                    .first::<(TicketRow, String)>(&mut *self.connection().await?)
                    .await
                    .optional()
                    .map_err(database_error)?
                    .ok_or_else(|| Status::not_found("ticket"))?;
                let ticket = to_wire(row);
                self.fill(&ticket).await?;
                ticket
            }
        };
        if !may_see(caller, &ticket) {
            return Err(Status::not_found("ticket"));
        }
        Ok(Response::new(ticket))
    }

    async fn list_tickets(
        &self,
        request: Request<v1::ListTicketsRequest>,
    ) -> Result<Response<v1::ListTicketsResponse>, Status> {
        let caller = self.caller(&request)?;
        self.admit(caller, None).await?;
        let base = tickets::table
            .inner_join(users::table.on(users::id.eq(tickets::requester_id)))
            .filter(tickets::account_id.eq(caller.account_id))
            .filter(tickets::deleted_at.is_null())
            .order((tickets::created_at.desc(), tickets::id.desc()))
            .limit(PAGE_SIZE + 1)
            .select((TicketRow::as_select(), users::email));
        let mut connection = self.connection().await?;
        let mut rows = if caller.admin {
            base.load::<(TicketRow, String)>(&mut *connection).await
        } else {
            base.filter(tickets::requester_id.eq(caller.user_id))
                .load::<(TicketRow, String)>(&mut *connection)
                .await
        }
        .map_err(database_error)?;
        let more = rows.len() > PAGE_SIZE as usize;
        rows.truncate(PAGE_SIZE as usize);
        // total_size as the contract has it: the page itself when it is the whole list, else a
        // count capped at 1,001, else the planner's estimate.
        let (total_size, total_size_estimated) = if more {
            let requester = (!caller.admin).then_some(caller.user_id);
            total_size(&mut connection, caller.account_id, requester).await?
        } else {
            (rows.len() as i64, false)
        };
        drop(connection);
        let next_page_token = match (more, rows.last()) {
            (true, Some((last, _))) => {
                format!("{}.{}", last.created_at.timestamp_micros(), last.id)
            }
            _ => String::new(),
        };
        Ok(Response::new(v1::ListTicketsResponse {
            tickets: rows.into_iter().map(to_wire).collect(),
            next_page_token,
            total_size: i32::try_from(total_size).unwrap_or(i32::MAX),
            total_size_estimated,
        }))
    }

    async fn create_ticket(
        &self,
        request: Request<v1::CreateTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let caller = self.caller(&request)?;
        let key = request
            .metadata()
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| Status::invalid_argument("idempotency-key"))?
            .to_owned();
        let message = request.into_inner();
        let request_bytes = message.encode_to_vec();
        let draft = message
            .ticket
            .ok_or_else(|| Status::invalid_argument("ticket"))?;
        self.admit(caller, None).await?;
        let mut connection = self.connection().await?;
        let written = create_in_transaction(
            &mut connection,
            caller,
            &key,
            &request_bytes,
            &draft.subject,
            &draft.description,
            &draft.requester_email,
        )
        .await;
        if written.is_err() {
            // Whatever failed, the connection goes back to the pool outside a transaction.
            let _ = connection.batch_execute("ROLLBACK").await;
        }
        drop(connection);
        let ticket = written?;
        self.fill(&ticket).await?;
        Ok(Response::new(ticket))
    }

    async fn update_ticket(
        &self,
        _: Request<v1::UpdateTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        Err(not_served())
    }

    async fn assign_ticket(
        &self,
        _: Request<v1::AssignTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        Err(not_served())
    }

    async fn mark_ticket_pending(
        &self,
        _: Request<v1::MarkTicketPendingRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        Err(not_served())
    }

    async fn hold_ticket(
        &self,
        _: Request<v1::HoldTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        Err(not_served())
    }

    async fn resolve_ticket(
        &self,
        _: Request<v1::ResolveTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        Err(not_served())
    }

    async fn add_ticket_tags(
        &self,
        _: Request<v1::AddTicketTagsRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        Err(not_served())
    }

    async fn remove_ticket_tags(
        &self,
        _: Request<v1::RemoveTicketTagsRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        Err(not_served())
    }

    async fn reopen_ticket(
        &self,
        _: Request<v1::ReopenTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        Err(not_served())
    }

    async fn close_ticket(
        &self,
        _: Request<v1::CloseTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        Err(not_served())
    }

    async fn delete_ticket(
        &self,
        _: Request<v1::DeleteTicketRequest>,
    ) -> Result<Response<v1::DeleteTicketResponse>, Status> {
        Err(not_served())
    }

    async fn add_comment(
        &self,
        _: Request<v1::AddCommentRequest>,
    ) -> Result<Response<v1::Comment>, Status> {
        Err(not_served())
    }

    async fn list_comments(
        &self,
        _: Request<v1::ListCommentsRequest>,
    ) -> Result<Response<v1::ListCommentsResponse>, Status> {
        Err(not_served())
    }

    async fn list_ticket_activity(
        &self,
        _: Request<v1::ListTicketActivityRequest>,
    ) -> Result<Response<v1::ListTicketActivityResponse>, Status> {
        Err(not_served())
    }

    async fn import_tickets(
        &self,
        _: Request<v1::ImportTicketsRequest>,
    ) -> Result<Response<supportdesk::wire::proto::google::longrunning::Operation>, Status> {
        Err(not_served())
    }

    type ExportTicketsStream = tonic::codegen::BoxStream<v1::Ticket>;

    async fn export_tickets(
        &self,
        _: Request<v1::ExportTicketsRequest>,
    ) -> Result<Response<Self::ExportTicketsStream>, Status> {
        Err(not_served())
    }

    async fn search_tickets(
        &self,
        _: Request<v1::SearchTicketsRequest>,
    ) -> Result<Response<v1::SearchTicketsResponse>, Status> {
        Err(not_served())
    }

    async fn list_ticket_changes(
        &self,
        _: Request<v1::ListTicketChangesRequest>,
    ) -> Result<Response<v1::ListTicketChangesResponse>, Status> {
        Err(not_served())
    }

    async fn list_tags(
        &self,
        _: Request<v1::ListTagsRequest>,
    ) -> Result<Response<v1::ListTagsResponse>, Status> {
        Err(not_served())
    }
}

/// Caches every ticket of the bench account, as its creates left the service's cache: the
/// cache-hit scenario then hits from its first call.
async fn prefill(
    account_id: Uuid,
    key_prefix: &str,
    ttl_secs: u64,
    connection: &mut AsyncPgConnection,
    redis: &mut MultiplexedConnection,
) -> anyhow::Result<usize> {
    let rows = tickets::table
        .inner_join(users::table.on(users::id.eq(tickets::requester_id)))
        .filter(tickets::account_id.eq(account_id))
        .filter(tickets::deleted_at.is_null())
        .select((TicketRow::as_select(), users::email))
        .load::<(TicketRow, String)>(connection)
        .await?;
    let count = rows.len();
    let mut pipeline = redis::pipe();
    for row in rows {
        let ticket = to_wire(row);
        pipeline
            .cmd("SET")
            .arg(format!("{key_prefix}ticket:{}", ticket.id))
            .arg(ticket.encode_to_vec())
            .arg("EX")
            .arg(ttl_secs)
            .ignore();
    }
    let () = pipeline.query_async(redis).await?;
    Ok(count)
}

/// The ticket and its requester, as the service's CreateTicket writes them, in its eight round
/// trips (docs/performance.md's budget): the transaction opened with its timeouts, the key
/// claimed, the lock wait lifted with a savepoint, the requester upserted (and so locked), their
/// open tickets counted, the ticket inserted with its audit record, the outcome stored, COMMIT.
async fn create_in_transaction(
    connection: &mut AsyncPgConnection,
    caller: Caller,
    key: &str,
    request_bytes: &[u8],
    subject: &str,
    description: &str,
    requester_email: &str,
) -> Result<v1::Ticket, Status> {
    use diesel::sql_types::{BigInt, Bytea, Text, Uuid as SqlUuid};
    use supportdesk::db::KeepPrepared;

    #[derive(QueryableByName)]
    #[diesel(table_name = idempotency_keys)]
    struct Claimed {
        id: Uuid,
    }
    #[derive(QueryableByName)]
    #[diesel(table_name = users)]
    struct Requester {
        id: Uuid,
    }
    #[derive(QueryableByName)]
    struct OpenTickets {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }

    connection
        .batch_execute(
            "BEGIN; SELECT set_config('statement_timeout', '9990', true), \
             set_config('lock_timeout', '100', true)",
        )
        .await
        .map_err(database_error)?;
    let claimed: Option<Claimed> = KeepPrepared(
        diesel::sql_query(
            "INSERT INTO idempotency_keys (id, caller, rpc, key, request_hash, status_code, \
             expires_at) VALUES ($1, $2, $3, $4, sha256($5), 10, now() + interval '1 day') \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<Text, _>(format!("user:{}", caller.user_id))
        .bind::<Text, _>(CREATE_TICKET)
        .bind::<Text, _>(key)
        .bind::<Bytea, _>(request_bytes),
    )
    .get_result(connection)
    .await
    .optional()
    .map_err(database_error)?;
    // A retry of a finished key is answered from the key by the service; here it is refused.
    let claimed = claimed.ok_or_else(|| Status::aborted("the idempotency key is taken"))?;
    connection
        .batch_execute("SELECT set_config('lock_timeout', '0', true); SAVEPOINT work")
        .await
        .map_err(database_error)?;
    let requester: Requester = KeepPrepared(
        diesel::sql_query(
            "INSERT INTO users (id, account_id, email, display_name, role) \
             VALUES ($1, $2, $3, '', 'customer') ON CONFLICT (account_id, email) \
             DO UPDATE SET email = excluded.email RETURNING id",
        )
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<SqlUuid, _>(caller.account_id)
        .bind::<Text, _>(requester_email),
    )
    .get_result(connection)
    .await
    .map_err(database_error)?;
    let open: OpenTickets = KeepPrepared(
        diesel::sql_query(
            "SELECT count(*) AS count FROM tickets WHERE account_id = $1 AND requester_id = $2 \
             AND deleted_at IS NULL AND status != ALL('{solved,closed}')",
        )
        .bind::<SqlUuid, _>(caller.account_id)
        .bind::<SqlUuid, _>(requester.id),
    )
    .get_result(connection)
    .await
    .map_err(database_error)?;
    if open.count >= MAX_OPEN_TICKETS {
        return Err(Status::failed_precondition("too many open tickets"));
    }
    let changes = serde_json::json!({
        "subject": {"new": subject},
        "description": {"new": description},
        "priority": {"new": "normal"},
        "status": {"new": "new"},
    })
    .to_string();
    let ticket_id = Uuid::now_v7();
    let created = KeepPrepared(
        diesel::sql_query(
            "WITH written AS (INSERT INTO ticket_activities (id, account_id, ticket_id, \
             actor_user_id, action, changes) VALUES ($1, $2, $3, $4, 'created', $5::jsonb)) \
             INSERT INTO tickets (id, account_id, subject, description, priority, status, \
             requester_id) VALUES ($3, $2, $6, $7, 'normal', 'new', $8) \
             RETURNING id, account_id, subject, description, priority, status, requester_id, \
             assignee_id, created_at, updated_at, version, deleted_at, tags, custom_fields, \
             group_id",
        )
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<SqlUuid, _>(caller.account_id)
        .bind::<SqlUuid, _>(ticket_id)
        .bind::<SqlUuid, _>(caller.user_id)
        .bind::<Text, _>(changes)
        .bind::<Text, _>(subject)
        .bind::<Text, _>(description)
        .bind::<SqlUuid, _>(requester.id),
    )
    .get_result::<TicketRow>(connection)
    .await
    .map_err(database_error)?;
    let ticket = to_wire((created, requester_email.to_owned()));
    KeepPrepared(
        diesel::sql_query(
            "UPDATE idempotency_keys SET status_code = 0, status_message = '', \
             status_details = NULL, response_body = $1, response_metadata = '{}' WHERE id = $2",
        )
        .bind::<Bytea, _>(ticket.encode_to_vec())
        .bind::<SqlUuid, _>(claimed.id),
    )
    .execute(connection)
    .await
    .map_err(database_error)?;
    connection
        .batch_execute("COMMIT")
        .await
        .map_err(database_error)?;
    Ok(ticket)
}

fn not_served() -> Status {
    Status::unimplemented(
        "bare serves only GetTicket, ListTickets and CreateTicket: the bench's calls",
    )
}

/// Who each of the bench's tokens is.
async fn callers(
    data: &BenchData,
    connection: &mut AsyncPgConnection,
) -> anyhow::Result<HashMap<String, Caller>> {
    let account_id: Uuid = accounts::table
        .filter(accounts::slug.eq(&data.account_slug))
        .select(accounts::id)
        .first(connection)
        .await
        .with_context(|| format!("the bench account {:?}", data.account_slug))?;
    let caller = |user_id: &str, admin| -> anyhow::Result<Caller> {
        Ok(Caller {
            account_id,
            user_id: user_id.parse().context("a user id of the bench data")?,
            admin,
        })
    };
    let mut callers = HashMap::new();
    callers.insert(
        data.admin.access_token.clone(),
        caller(&data.admin.user_id, true)?,
    );
    for customer in &data.customers {
        callers.insert(
            customer.access_token.clone(),
            caller(&customer.user_id, false)?,
        );
    }
    Ok(callers)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = BenchData::read(&args.data)?;
    // The service's own pool: its checkout costs no round trip (`RecyclingMethod::Fast`; bb8's
    // default manager would send `SELECT 1` on every checkout).
    let pool = supportdesk::db::build_pool(
        &DatabaseSettings {
            url: SecretString::from(args.database_url),
            pool_size: args.pool_size,
            // Generous: bench/run starts it while PostgreSQL may still be analyzing the new rows.
            connect_timeout: Duration::from_secs(30),
            read_replica_url: None,
            read_replica_max_lag: Duration::from_secs(5),
            read_replica_lag_sample_interval: Duration::from_secs(5),
        },
        Duration::from_secs(10),
    );
    let callers = callers(&data, &mut *pool.get().await?).await?;
    let mut redis = redis::Client::open(args.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await
        .context("connect to Redis")?;
    let admit = Script::new(ADMIT);
    admit.prepare_invoke().load_async(&mut redis).await?;
    let account_id = callers
        .values()
        .next()
        .map(|caller| caller.account_id)
        .context("the bench data names no caller")?;
    let cached = if args.no_prefill {
        0
    } else {
        prefill(
            account_id,
            &args.key_prefix,
            args.cache_ttl_secs,
            &mut *pool.get().await?,
            &mut redis,
        )
        .await
        .context("fill the cache")?
    };
    let bare = Bare {
        callers,
        pool,
        redis,
        admit,
        key_prefix: args.key_prefix,
        cache_ttl_secs: args.cache_ttl_secs,
    };
    // Nagle off on accepted sockets, as the service does.
    let incoming = TcpIncoming::bind(args.addr)?.with_nodelay(Some(true));
    eprintln!(
        "bare: serving GetTicket, ListTickets and CreateTicket on {} for {} callers, {cached} tickets cached",
        args.addr,
        bare.callers.len()
    );
    Server::builder()
        .add_service(TicketServiceServer::new(bare))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(account: Uuid, requester: Uuid) -> v1::Ticket {
        v1::Ticket {
            account_id: account.to_string(),
            requester_id: requester.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn a_customer_sees_only_their_own_tickets_of_their_account_and_an_admin_all_of_it() {
        let (account, other_account) = (Uuid::now_v7(), Uuid::now_v7());
        let (customer, someone_else) = (Uuid::now_v7(), Uuid::now_v7());
        let as_customer = Caller {
            account_id: account,
            user_id: customer,
            admin: false,
        };
        let as_admin = Caller {
            admin: true,
            ..as_customer
        };
        assert!(may_see(as_customer, &ticket(account, customer)));
        assert!(!may_see(as_customer, &ticket(account, someone_else)));
        assert!(!may_see(as_customer, &ticket(other_account, customer)));
        assert!(may_see(as_admin, &ticket(account, someone_else)));
        assert!(!may_see(as_admin, &ticket(other_account, someone_else)));
    }
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Planned {
    #[diesel(sql_type = diesel::sql_types::Json, column_name = "QUERY PLAN")]
    plan: serde_json::Value,
}

/// The size of the list of `account_id` (of `requester`'s tickets only, for a customer): counted
/// to 1,000, estimated by the planner beyond.
async fn total_size(
    connection: &mut AsyncPgConnection,
    account_id: uuid::Uuid,
    requester: Option<uuid::Uuid>,
) -> Result<(i64, bool), Status> {
    use diesel::sql_types::Uuid as SqlUuid;
    let conditions = match requester {
        Some(_) => "account_id = $1 AND deleted_at IS NULL AND requester_id = $2",
        None => "account_id = $1 AND deleted_at IS NULL AND $2::uuid IS NULL",
    };
    let counted: Counted = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM (SELECT 1 FROM tickets WHERE {conditions} LIMIT 1001) c"
    ))
    .bind::<SqlUuid, _>(account_id)
    .bind::<diesel::sql_types::Nullable<SqlUuid>, _>(requester)
    .get_result(connection)
    .await
    .map_err(database_error)?;
    if counted.n <= 1000 {
        return Ok((counted.n, false));
    }
    let planned: Planned = diesel::sql_query(format!(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM tickets WHERE {conditions}"
    ))
    .bind::<SqlUuid, _>(account_id)
    .bind::<diesel::sql_types::Nullable<SqlUuid>, _>(requester)
    .get_result(connection)
    .await
    .map_err(database_error)?;
    let rows = planned
        .plan
        .pointer("/0/Plan/Plan Rows")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_default();
    Ok(((rows.round() as i64).max(1001), true))
}
