//! `loadgen webhook-lag` (`bench/run --webhooks`, bench/webhooks.sh): how late the desk's
//! outbound webhooks arrive under a steady stream of events, with some endpoints hanging.
//!
//! It runs the receiving side itself: an HTTP/1.1 server on loopback where `/ok/<n>` answers 200
//! at once and `/hang/<n>` reads the delivery and never answers (the service's attempt timeout
//! ends it). It signs up one account per endpoint through the public API, registers each
//! account's endpoint for `ticket.created`, then inserts tickets in SQL at `--rate` a second
//! (ten accounts a statement, one of them hanging when any hang, so the accounts share the rate
//! evenly), as imports and other instances would: the service's triggers write the events, its
//! workers deliver them. The lag of a delivery is when it arrived minus its event's `createTime`
//! (the time of the inserting transaction); only events of the measured window count, and a
//! healthy event still undelivered once the run drains is reported as such, not left out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::Args;
use diesel::sql_types::{Array, BigInt, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::account_service_client::AccountServiceClient;
use supportdesk::wire::proto::v1::webhook_endpoint_service_client::WebhookEndpointServiceClient;
use tonic::metadata::MetadataValue;

use crate::load::{connect, with_token};
use crate::probes::CpuReading;
use crate::setup::{BENCH_PASSWORD, log_in};

/// How many sign-ups and registrations run at once (password hashing is slow on two cores).
const SETUP_CONCURRENCY: usize = 8;

/// Accounts one insert statement takes a ticket for.
const ACCOUNTS_PER_STATEMENT: usize = 10;

/// The longest the run waits, after the last event, for the healthy endpoints' deliveries.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

#[derive(Args)]
pub struct WebhookLagArgs {
    /// The service's gRPC address.
    #[arg(long)]
    addr: String,
    /// The service's database, where the tickets are inserted.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Endpoints, one account each; a multiple of 10.
    #[arg(long, default_value_t = 100)]
    endpoints: usize,
    /// How many of them hang (never answer); at most one in ten.
    #[arg(long, default_value_t = 0)]
    hanging: usize,
    /// Events a second, a multiple of 10.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of events before the measured window.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Seconds of the measured window.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// The run's name in the report.
    #[arg(long, default_value = "webhooks")]
    label: String,
    /// NAME=PID: a process tree whose CPU time per delivery is reported (repeatable).
    #[arg(long = "cpu-of", value_parser = crate::probes::parse_named_pid)]
    cpu_of: Vec<(String, u32)>,
}

/// One request the receiver took.
struct Arrival {
    hanging: bool,
    webhook_id: String,
    created: DateTime<Utc>,
    received: DateTime<Utc>,
}

#[derive(Default)]
struct Arrivals(Mutex<Vec<Arrival>>);

#[derive(Serialize)]
struct LagReport {
    label: String,
    endpoints: usize,
    hanging: usize,
    rate: u32,
    /// Events a second the inserts achieved over the window.
    events_per_s: f64,
    /// Healthy events of the window, and how many of them arrived (once or more).
    healthy_events: u64,
    healthy_delivered: u64,
    /// Lag of each healthy event's first arrival, in milliseconds.
    lag_ms_p50: f64,
    lag_ms_p90: f64,
    lag_ms_p99: f64,
    lag_ms_max: f64,
    /// Requests the hanging endpoints received during the window.
    hanging_attempts: u64,
    /// Deliveries (of every endpoint) received during the window.
    deliveries: u64,
    /// Microseconds of CPU per delivery of each process tree named with --cpu-of.
    cpu_us_per_delivery: std::collections::BTreeMap<String, f64>,
}

pub async fn run(args: WebhookLagArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.endpoints.is_multiple_of(ACCOUNTS_PER_STATEMENT) && args.endpoints > 0,
        "--endpoints must be a positive multiple of {ACCOUNTS_PER_STATEMENT}"
    );
    anyhow::ensure!(
        args.hanging <= args.endpoints / ACCOUNTS_PER_STATEMENT,
        "--hanging may be at most one endpoint in {ACCOUNTS_PER_STATEMENT}"
    );
    anyhow::ensure!(
        args.rate > 0 && args.rate.is_multiple_of(ACCOUNTS_PER_STATEMENT as u32),
        "--rate must be a positive multiple of {ACCOUNTS_PER_STATEMENT}"
    );
    let arrivals = Arc::new(Arrivals::default());
    let receiver = serve_receiver(arrivals.clone()).await?;
    let accounts = register(&args, receiver).await?;
    eprintln!(
        "loadgen webhook-lag: {} endpoints registered ({} hanging), receiver on {receiver}",
        accounts.len(),
        args.hanging
    );

    let mut conn = AsyncPgConnection::establish(&args.database_url)
        .await
        .context("connect to the service's database")?;
    let statements_per_s = args.rate / ACCOUNTS_PER_STATEMENT as u32;
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / statements_per_s);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = tokio::time::Instant::now();
    let window_opens = started + Duration::from_secs_f64(args.warmup);
    let window_closes = window_opens + Duration::from_secs_f64(args.duration);
    let groups = accounts.len() / ACCOUNTS_PER_STATEMENT;
    let (mut window_start, mut cpu_before) = (None, None);
    let mut statement = 0_usize;
    loop {
        let now = ticks.tick().await;
        if now >= window_closes {
            break;
        }
        if now >= window_opens && window_start.is_none() {
            window_start = Some(Utc::now());
            cpu_before = Some(CpuReading::now(&args.cpu_of));
        }
        // Group g holds accounts g, g + groups, g + 2 groups, ...: one hanging account each
        // when there are as many hanging ones as groups.
        let group = statement % groups;
        statement += 1;
        let (ids, users): (Vec<uuid::Uuid>, Vec<uuid::Uuid>) = accounts
            .iter()
            .skip(group)
            .step_by(groups)
            .map(|account| (account.account_id, account.user_id))
            .unzip();
        diesel::sql_query(
            "INSERT INTO tickets (id, account_id, subject, description, priority, status, \
                                  requester_id) \
             SELECT gen_random_uuid(), a, 'Webhook lag ' || $3, 'bench', 'normal', 'new', u \
             FROM unnest($1::uuid[], $2::uuid[]) AS t(a, u)",
        )
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Array<SqlUuid>, _>(users)
        .bind::<BigInt, _>(i64::try_from(statement).unwrap_or(i64::MAX))
        .execute(&mut conn)
        .await
        .context("insert the tickets")?;
    }
    let window_end = Utc::now();
    let cpu_after = CpuReading::now(&args.cpu_of);
    let window_start = window_start.context("the window never opened")?;

    let healthy: Vec<uuid::Uuid> = accounts
        .iter()
        .filter(|account| !account.hanging)
        .map(|account| account.account_id)
        .collect();
    let expected = events_between(&mut conn, &healthy, window_start, window_end).await?;
    let all_accounts: Vec<uuid::Uuid> = accounts.iter().map(|account| account.account_id).collect();
    let events = events_between(&mut conn, &all_accounts, window_start, window_end).await?;
    let drained_by = tokio::time::Instant::now() + DRAIN_LIMIT;
    while healthy_firsts(&arrivals, window_start, window_end).len() < expected as usize
        && tokio::time::Instant::now() < drained_by
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut lags: Vec<f64> = healthy_firsts(&arrivals, window_start, window_end)
        .into_values()
        .collect();
    lags.sort_by(f64::total_cmp);
    let (deliveries, hanging_attempts) = {
        let arrivals = arrivals.0.lock().expect("arrivals");
        let in_window =
            |arrival: &&Arrival| arrival.received >= window_start && arrival.received < window_end;
        (
            arrivals.iter().filter(in_window).count() as u64,
            arrivals
                .iter()
                .filter(in_window)
                .filter(|arrival| arrival.hanging)
                .count() as u64,
        )
    };
    let seconds = (window_end - window_start).as_seconds_f64();
    let report = LagReport {
        label: args.label.clone(),
        endpoints: args.endpoints,
        hanging: args.hanging,
        rate: args.rate,
        events_per_s: events as f64 / seconds,
        healthy_events: expected,
        healthy_delivered: lags.len() as u64,
        lag_ms_p50: percentile(&lags, 0.50),
        lag_ms_p90: percentile(&lags, 0.90),
        lag_ms_p99: percentile(&lags, 0.99),
        lag_ms_max: lags.last().copied().unwrap_or(f64::NAN),
        hanging_attempts,
        deliveries,
        cpu_us_per_delivery: cpu_before
            .map(|before| cpu_after.per_call_since(&before, deliveries))
            .unwrap_or_default(),
    };
    eprintln!(
        "loadgen webhook-lag {}: {:.0} events/s, {} of {} healthy events delivered, lag p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} attempts at hanging endpoints",
        report.label,
        report.events_per_s,
        report.healthy_delivered,
        report.healthy_events,
        report.lag_ms_p50,
        report.lag_ms_p99,
        report.lag_ms_max,
        report.hanging_attempts
    );
    println!("{}", serde_json::to_string(&report)?);

    // The next run starts from nothing owed: these endpoints go, their deliveries with them.
    diesel::sql_query("DELETE FROM webhook_endpoints WHERE account_id = ANY($1)")
        .bind::<Array<SqlUuid>, _>(all_accounts)
        .execute(&mut conn)
        .await
        .context("delete the run's endpoints")?;
    Ok(())
}

/// The `q` quantile of sorted `values` (nearest rank); NaN when there are none.
fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// Each healthy event of the window that arrived: its first arrival's lag in milliseconds.
fn healthy_firsts(
    arrivals: &Arrivals,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> HashMap<String, f64> {
    let arrivals = arrivals.0.lock().expect("arrivals");
    let mut firsts = HashMap::new();
    for arrival in arrivals.iter() {
        if arrival.hanging || arrival.created < start || arrival.created >= end {
            continue;
        }
        let lag = (arrival.received - arrival.created).as_seconds_f64() * 1000.0;
        firsts
            .entry(arrival.webhook_id.clone())
            .and_modify(|first: &mut f64| *first = first.min(lag))
            .or_insert(lag);
    }
    firsts
}

/// How many `ticket.created` events of `accounts` PostgreSQL recorded between the two times.
async fn events_between(
    conn: &mut AsyncPgConnection,
    accounts: &[uuid::Uuid],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> anyhow::Result<u64> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS count FROM events WHERE type = 'ticket.created' \
         AND account_id = ANY($1) AND created_at >= $2 AND created_at < $3",
    )
    .bind::<Array<SqlUuid>, _>(accounts)
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(end)
    .get_result(conn)
    .await
    .context("count the window's events")?;
    Ok(u64::try_from(count.count).unwrap_or_default())
}

/// The receiver: `/ok/<n>` answers 200 at once, `/hang/<n>` never answers.
async fn serve_receiver(arrivals: Arc<Arrivals>) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| receive(arrivals.clone(), request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

async fn receive(
    arrivals: Arc<Arrivals>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let hanging = request.uri().path().starts_with("/hang/");
    let webhook_id = request
        .headers()
        .get("webhook-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let received = Utc::now();
    let created = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|event| {
            DateTime::parse_from_rfc3339(event["createTime"].as_str()?)
                .ok()
                .map(|time| time.with_timezone(&Utc))
        });
    if let Some(created) = created {
        arrivals.0.lock().expect("arrivals").push(Arrival {
            hanging,
            webhook_id,
            created,
            received,
        });
    }
    if hanging {
        // Until the service's attempt times out and it closes the connection.
        std::future::pending::<()>().await;
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// An account of the run, with its endpoint.
struct BenchAccount {
    account_id: uuid::Uuid,
    user_id: uuid::Uuid,
    hanging: bool,
}

/// Signs up one account per endpoint and registers its endpoint; the first account of every
/// group of ten, `hanging` of them, gets a hanging one.
async fn register(
    args: &WebhookLagArgs,
    receiver: std::net::SocketAddr,
) -> anyhow::Result<Vec<BenchAccount>> {
    let channel = connect(&args.addr).await?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let groups = args.endpoints / ACCOUNTS_PER_STATEMENT;
    futures::stream::iter(0..args.endpoints)
        .map(|index| {
            let channel = channel.clone();
            let slug = format!("lag-{}-{index}", &run[run.len() - 12..]);
            // Accounts 0..groups lead their group (see the insert loop).
            let hanging = index < args.hanging.min(groups);
            async move {
                let email = format!("admin@{slug}.example.com");
                let created = AccountServiceClient::new(channel.clone())
                    .create_account(v1::CreateAccountRequest {
                        name: format!("Lag {index}"),
                        slug: slug.clone(),
                        admin_email: email.clone(),
                        admin_password: BENCH_PASSWORD.to_owned(),
                        admin_display_name: "Lag Admin".to_owned(),
                    })
                    .await
                    .with_context(|| format!("CreateAccount {slug}"))?
                    .into_inner();
                let admin = log_in(&channel, &slug, &email, BENCH_PASSWORD).await?;
                let path = if hanging { "hang" } else { "ok" };
                let mut request = with_token(
                    &admin.access_token,
                    v1::CreateWebhookEndpointRequest {
                        webhook_endpoint: Some(v1::WebhookEndpoint {
                            url: format!("http://{receiver}/{path}/{index}"),
                            event_types: vec!["ticket.created".to_owned()],
                            ..Default::default()
                        }),
                    },
                );
                request.metadata_mut().insert(
                    "idempotency-key",
                    MetadataValue::try_from(uuid::Uuid::now_v7().to_string())?,
                );
                WebhookEndpointServiceClient::new(channel.clone())
                    .create_webhook_endpoint(request)
                    .await
                    .with_context(|| format!("CreateWebhookEndpoint {slug}"))?;
                let account = created
                    .account
                    .context("CreateAccount returned no account")?;
                anyhow::Ok(BenchAccount {
                    account_id: account.id.parse()?,
                    user_id: admin.user_id.parse()?,
                    hanging,
                })
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}
