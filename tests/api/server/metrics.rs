//! The `/metrics` endpoint operators scrape: every rate-limit decision and ticket-cache lookup
//! counted exactly, per instance, including the ones Redis could not answer.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::ExposeSecret;
use supportdesk::configuration::RateQuota;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::proxy::{TcpProxy, socket_address_of, url_through};
use crate::support::redis_server::RedisServer;
use crate::support::{
    PATIENCE, Scrape, TestApp, backends_waiting_on_locks, lock_account, redis_url,
    valid_create_request, wait_until, with_metrics,
};

const ALLOWED: &str = r#"supportdesk_rate_limit_decisions_total{outcome="allowed"}"#;
const REFUSED: &str = r#"supportdesk_rate_limit_decisions_total{outcome="refused"}"#;
const UNDECIDED: &str = r#"supportdesk_rate_limit_decisions_total{outcome="undecided"}"#;
const LIMITER_FAILURES: &str = "supportdesk_rate_limit_redis_failures_total";
const FAIL_OPEN: &str = "supportdesk_rate_limit_fail_open";
const HITS: &str = r#"supportdesk_ticket_cache_lookups_total{outcome="hit"}"#;
const MISSES: &str = r#"supportdesk_ticket_cache_lookups_total{outcome="miss"}"#;
const CACHE_FAILURES: &str = "supportdesk_ticket_cache_redis_failures_total";

impl Scrape {
    /// How much each series grew since `before`.
    fn since(&self, before: &Self) -> BTreeMap<&'static str, u64> {
        [
            ALLOWED,
            REFUSED,
            UNDECIDED,
            LIMITER_FAILURES,
            HITS,
            MISSES,
            CACHE_FAILURES,
        ]
        .into_iter()
        .map(|series| (series, self.get(series) - before.get(series)))
        .collect()
    }
}

fn counts(pairs: &[(&'static str, u64)]) -> BTreeMap<&'static str, u64> {
    pairs.iter().copied().collect()
}

async fn get_current_user(app: &TestApp) -> Result<v1::User, tonic::Status> {
    app.users
        .clone()
        .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn metrics_are_served_only_when_an_address_is_set() {
    let app = TestApp::spawn().await;
    assert_eq!(app.metrics_address, None);
}

#[tokio::test]
async fn each_rate_limit_decision_and_cache_lookup_is_counted_exactly() {
    let app = TestApp::spawn_with(|settings| {
        with_metrics(settings);
        settings.rate_limits.read = RateQuota {
            count: 4,
            window: Duration::from_secs(60),
        };
    })
    .await;
    let before = Scrape::of(&app).await;
    assert_eq!(before.get(FAIL_OPEN), 1, "failing open is the default");

    let ticket = app.create_ticket("counted").await;
    app.get_ticket(&ticket.id).await.expect("a cache hit");
    let unknown = uuid::Uuid::now_v7().to_string();
    let status = app.get_ticket(&unknown).await.expect_err("a cache miss");
    assert_eq!(status.code(), Code::NotFound);
    let mut refused = 0;
    for _ in 0..4 {
        if let Err(status) = get_current_user(&app).await {
            assert_eq!(status.code(), Code::ResourceExhausted);
            refused += 1;
        }
    }
    assert_eq!(refused, 2, "four reads fit the quota");

    assert_eq!(
        Scrape::of(&app).await.since(&before),
        counts(&[
            (ALLOWED, 5),
            (REFUSED, 2),
            (UNDECIDED, 0),
            (LIMITER_FAILURES, 0),
            (HITS, 1),
            (MISSES, 1),
            (CACHE_FAILURES, 0),
        ])
    );
}

#[tokio::test]
async fn with_redis_cut_every_undecided_call_and_each_failure_is_counted_exactly() {
    let proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let app = TestApp::spawn_with(|settings| {
        with_metrics(settings);
        settings.redis.url = url_through(settings.redis.url.expose_secret(), proxy.address).into();
    })
    .await;
    let ticket = app.create_ticket("cached before the cut").await;
    let before = Scrape::of(&app).await;
    proxy.cut();

    // The first call finds Redis gone; the limiter then leaves it alone for a while, so the
    // concurrent calls after it are undecided without trying Redis.
    get_current_user(&app).await.expect("let through");
    let concurrent: Vec<_> = (0..20)
        .map(|_| {
            let mut users = app.users.clone();
            let request = app.as_admin(v1::GetCurrentUserRequest {});
            tokio::spawn(async move { users.get_current_user(request).await })
        })
        .collect();
    for call in concurrent {
        call.await.expect("joined").expect("let through");
    }
    // The cache shares the instance's view of Redis: it does not try Redis either.
    let read = app.get_ticket(&ticket.id).await.expect("from PostgreSQL");
    assert_eq!(read.subject, "cached before the cut");

    assert_eq!(
        Scrape::of(&app).await.since(&before),
        counts(&[
            (ALLOWED, 0),
            (REFUSED, 0),
            (UNDECIDED, 22),
            (LIMITER_FAILURES, 1),
            (HITS, 0),
            (MISSES, 0),
            (CACHE_FAILURES, 0),
        ])
    );
}

/// One view of Redis's health per instance: a call whose admission found Redis silent (the
/// limiter waited for it) does not wait for it again in the ticket cache, nor does any call
/// after it while Redis rests.
#[tokio::test]
async fn with_redis_paused_a_call_waits_for_it_once_and_the_ticket_cache_does_not_try_it_again() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(|settings| {
        with_metrics(settings);
        settings.redis.url = redis.url().into();
        // Redis rests until the test ends: neither the pause nor the probe (which ends a rest
        // when Redis answers it) lets the cache try Redis again on its own account.
        settings.redis.failure_pause = Duration::from_secs(600);
        settings.server.health_probe_interval = Duration::from_secs(3600);
    })
    .await;
    let ticket = app.create_ticket("cached before the pause").await;
    let before = Scrape::of(&app).await;
    // Longer than the test: every command sent from now on waits until the test has ended.
    redis.pause(Duration::from_secs(600));

    let read = app.get_ticket(&ticket.id).await.expect("from PostgreSQL");
    assert_eq!(read.subject, "cached before the pause");
    let again = app.get_ticket(&ticket.id).await.expect("from PostgreSQL");
    assert_eq!(again.subject, "cached before the pause");

    assert_eq!(
        Scrape::of(&app).await.since(&before),
        counts(&[
            (ALLOWED, 0),
            (REFUSED, 0),
            (UNDECIDED, 2),
            (LIMITER_FAILURES, 1),
            (HITS, 0),
            (MISSES, 0),
            (CACHE_FAILURES, 0),
        ])
    );
}

#[tokio::test]
async fn only_get_metrics_is_served_on_the_metrics_listener() {
    let app = TestApp::spawn_with(with_metrics).await;
    let address = app.metrics_address.expect("metrics are on");
    let response = reqwest::get(format!("http://{address}/v1/tickets"))
        .await
        .expect("an answer");
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
}

/// The connections from `clients` (their local ports) the metrics listener holds open:
/// accepted (a descriptor of this process), local port the listener's, peer one of the clients.
/// Those still in the kernel's backlog have no descriptor; sockets of the other tests running
/// in this process are not the clients'.
/// Each socket is counted once, by its inode: the kernel writes the table in pages, and a
/// socket can appear in two of them when the table changes between two reads.
fn metrics_connections_held(port: u16, clients: &std::collections::HashSet<u16>) -> usize {
    let mut held = std::collections::HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let port_of = |address: &str| {
                address
                    .rsplit(':')
                    .next()
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok())
            };
            let ours = port_of(columns[1]) == Some(port)
                && port_of(columns[2]).is_some_and(|peer| clients.contains(&peer))
                && columns[3] == "01";
            if ours && super::transport::descriptor_of_socket(columns[9]).is_some() {
                held.insert(columns[9].to_owned());
            }
        }
    }
    held.len()
}

/// What the server sends on `stream` until it closes it, or `None` if it has not within
/// `PATIENCE`.
async fn read_until_closed(mut stream: tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0_u8; 8192];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await
    .ok()?;
    Some(received)
}

#[tokio::test]
async fn half_sent_scrapes_hold_at_most_the_cap_of_connections_and_are_cut_off() {
    use tokio::io::AsyncWriteExt as _;
    const CAP: usize = 32;
    let app = TestApp::spawn_with(with_metrics).await;
    let address = app.metrics_address.expect("metrics are on");
    let mut half_sent = Vec::new();
    for _ in 0..CAP + 16 {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n")
            .await
            .expect("the first header lines");
        half_sent.push(stream);
    }
    let clients: std::collections::HashSet<u16> = half_sent
        .iter()
        .map(|stream| stream.local_addr().expect("a local address").port())
        .collect();
    let mut readers = tokio::task::JoinSet::new();
    for stream in half_sent {
        readers.spawn(read_until_closed(stream));
    }
    let closed = tokio::spawn(readers.join_all());
    let mut most_held = 0;
    while !closed.is_finished() {
        let held = metrics_connections_held(address.port(), &clients);
        most_held = most_held.max(held);
        assert!(
            held <= CAP,
            "the metrics listener holds {held} connections, over its cap of {CAP}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed = closed.await.expect("the readers");
    assert!(
        closed.iter().all(Option::is_some),
        "{} of {} connections that never finished their headers were left open",
        closed.iter().filter(|received| received.is_none()).count(),
        closed.len()
    );
    assert_eq!(most_held, CAP, "the cap was reached, and held");
    let response = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("a scrape after them");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn a_kept_alive_metrics_connection_that_goes_quiet_is_closed() {
    use tokio::io::AsyncWriteExt as _;
    let app = TestApp::spawn_with(with_metrics).await;
    let address = app.metrics_address.expect("metrics are on");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n\r\n")
        .await
        .expect("a whole request");
    let received = read_until_closed(stream)
        .await
        .expect("the server closes a connection that stays quiet after its answer");
    assert!(
        received.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&received[..received.len().min(200)])
    );
}

/// The series of RPC `method` answered with `code`.
fn rpcs(method: &str, code: &str) -> String {
    format!(r#"supportdesk_rpc_requests_total{{method="/supportdesk.v1.{method}",code="{code}"}}"#)
}

#[tokio::test]
async fn every_rpc_is_counted_by_method_and_code_and_timed_including_the_middlewares_refusals() {
    let app = TestApp::spawn_with(with_metrics).await;
    let ticket = app.create_ticket("Counted").await;
    let before = Scrape::of(&app).await;
    app.get_ticket(&ticket.id).await.expect("the ticket");
    app.get_ticket(&ticket.id).await.expect("the ticket again");
    let missing = app
        .get_ticket(&uuid::Uuid::now_v7().to_string())
        .await
        .expect_err("no such ticket");
    assert_eq!(missing.code(), Code::NotFound);
    // Refused by admission, before any handler runs.
    let anonymous = app
        .tickets
        .clone()
        .get_ticket(v1::GetTicketRequest {
            id: ticket.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no credentials");
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let after = Scrape::of(&app).await;
    let grew =
        |series: &str| after.get(series) - before.0.get(series).map_or(0, |value| *value as u64);
    assert_eq!(grew(&rpcs("TicketService/GetTicket", "OK")), 2);
    assert_eq!(grew(&rpcs("TicketService/GetTicket", "NOT_FOUND")), 1);
    assert_eq!(grew(&rpcs("TicketService/GetTicket", "UNAUTHENTICATED")), 1);
    let count = r#"supportdesk_rpc_duration_seconds_count{method="/supportdesk.v1.TicketService/GetTicket"}"#;
    assert_eq!(grew(count), 4);
    let under_16s = r#"supportdesk_rpc_duration_seconds_bucket{le="16.384",method="/supportdesk.v1.TicketService/GetTicket"}"#;
    assert_eq!(
        grew(under_16s),
        4,
        "every call well inside the largest bucket"
    );
    // CreateTicket was counted once, when the test made its ticket.
    assert_eq!(after.get(&rpcs("TicketService/CreateTicket", "OK")), 1);
}

/// Runs promtool with `args`, `input` on its stdin; returns (success, stdout and stderr).
pub(crate) fn run_promtool(args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(crate::support::promtool())
        .args(args)
        .current_dir(crate::support::repository_root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool (deploy/local/setup test unpacks it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[tokio::test]
async fn every_exported_metric_passes_promtool_check_metrics_without_a_lint() {
    let app = TestApp::spawn_with(with_metrics).await;
    // Traffic, so that the labelled families (RPCs by method and code, latency buckets) have
    // series.
    let ticket = app.create_ticket("linted").await;
    app.get_ticket(&ticket.id).await.expect("the ticket");
    let missing = app
        .get_ticket(&uuid::Uuid::now_v7().to_string())
        .await
        .expect_err("no such ticket");
    assert_eq!(missing.code(), Code::NotFound);
    let address = app.metrics_address.expect("metrics are on");
    // promtool reads the classic text format, which a scraper asks for as text/plain.
    let response = reqwest::Client::new()
        .get(format!("http://{address}/metrics"))
        .header("accept", "text/plain; version=0.0.4")
        .send()
        .await
        .expect("the metrics endpoint answers");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.expect("a body");
    assert!(text.contains("supportdesk_rpc_requests_total{"), "{text}");

    let (passed, said) = run_promtool(&["check", "metrics"], &text);
    assert!(
        passed,
        "promtool check metrics failed:\n{said}\n---\n{text}"
    );
    assert_eq!(said, "", "promtool check metrics has lints:\n{said}");
}

const IN_USE: &str = r#"supportdesk_db_pool_connections{state="in_use"}"#;
const WAITING: &str = "supportdesk_db_pool_waiting";
const WAITED: &str = r#"supportdesk_db_pool_checkouts_total{outcome="waited"}"#;
const WAIT_SECONDS: &str = "supportdesk_db_pool_checkout_wait_seconds_total";

#[tokio::test]
async fn the_database_pool_shows_a_checkout_waiting_and_counts_its_wait_and_the_build_is_named() {
    let app = TestApp::spawn_with(|settings| {
        with_metrics(settings);
        settings.database.pool_size = 1;
        settings.database.connect_timeout = Duration::from_secs(20);
    })
    .await;
    let before = Scrape::of(&app).await;
    assert_eq!(before.get("supportdesk_db_pool_max_connections"), 1);
    assert_eq!(
        before.get(&format!(
            r#"supportdesk_build_info{{version="{}",name="supportdesk"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        1
    );
    assert_eq!(before.get(WAITING), 0);

    // The only connection blocks on the account's row lock inside CreateTicket.
    let mut lock = lock_account(&app).await;
    let mut tickets = app.tickets.clone();
    let request = app.as_admin(valid_create_request("held"));
    let holding = tokio::spawn(async move { tickets.create_ticket(request).await });
    wait_until("CreateTicket waiting on the lock", PATIENCE, || async {
        backends_waiting_on_locks(&app.database).await == 1
    })
    .await;
    // A read now waits for the pool.
    let mut tickets = app.tickets.clone();
    let request = app.as_admin(v1::ListTicketsRequest::default());
    let waiting = tokio::spawn(async move { tickets.list_tickets(request).await });
    wait_until("a checkout waiting", PATIENCE, || async {
        let scrape = Scrape::of(&app).await;
        scrape.get(WAITING) >= 1 && scrape.get(IN_USE) == 1
    })
    .await;

    diesel_async::RunQueryDsl::execute(diesel::sql_query("ROLLBACK"), &mut lock)
        .await
        .expect("rolled back");
    holding.await.expect("joined").expect("created");
    waiting.await.expect("joined").expect("listed");
    let after = Scrape::of(&app).await;
    assert_eq!(after.get(WAITING), 0);
    // The read waited; background tasks (the dependency probe, the sweeper) share the one
    // connection and may have waited too.
    assert!(after.get(WAITED) - before.get(WAITED) >= 1);
    let waited_for = after.0[WAIT_SECONDS] - before.0[WAIT_SECONDS];
    assert!(waited_for > 0.0, "waited {waited_for} s");
    // The histogram saw the read's checkout, which waited through at least a scrape and the
    // lock's release: longer than the 1.6 ms bucket.
    let over = |scrape: &Scrape| {
        scrape.get("supportdesk_db_pool_checkout_duration_seconds_count")
            - scrape.get(r#"supportdesk_db_pool_checkout_duration_seconds_bucket{le="0.0016"}"#)
    };
    assert!(over(&after) - over(&before) >= 1);
    assert!(
        after.get("supportdesk_db_pool_checkout_duration_seconds_count")
            - before.get("supportdesk_db_pool_checkout_duration_seconds_count")
            >= 2,
        "both RPCs' checkouts are timed"
    );
}

/// Runs `sql` on the test's database.
async fn run(app: &TestApp, sql: &str) {
    let mut conn = app.database.connect().await;
    diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut conn)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// The depth and oldest age the sampler last reported for `queue`.
fn queue(scrape: &Scrape, queue: &str) -> (u64, f64) {
    (
        scrape.get(&format!(r#"supportdesk_queue_depth{{queue="{queue}"}}"#)),
        scrape.0[&format!(r#"supportdesk_queue_oldest_age_seconds{{queue="{queue}"}}"#)],
    )
}

/// True when `age` is `waited` seconds, give or take the time the test took since seeding.
fn about(age: f64, waited: f64) -> bool {
    age >= waited && age < waited + PATIENCE.as_secs_f64()
}

#[tokio::test]
async fn the_queue_sampler_reports_each_queues_depth_and_how_long_its_longest_waiting_row_waited() {
    let app = TestApp::spawn_with(|settings| {
        with_metrics(settings);
        settings.server.queue_sample_interval = Duration::from_millis(50);
        // Nothing takes the seeded rows: no webhook or operation workers, no completer pass.
        settings.webhook_workers.workers = 0;
        settings.operations.workers = 0;
        settings.billing_completer_interval = Duration::from_secs(3600);
    })
    .await;
    let account = app.account_id.to_string();
    let customer = app.admin.id.to_string();
    // Webhooks: one due for two minutes; one not due yet; one long due but held by a live
    // lease; one processed.
    run(
        &app,
        "INSERT INTO webhook_events (id, event_type, payload, provider_created_at, \
             next_attempt_at, lease_expires_at, state, processed_at) VALUES \
         ('evt_due', 't', '', now(), now() - interval '120 s', NULL, 'received', NULL), \
         ('evt_later', 't', '', now(), now() + interval '1 h', NULL, 'received', NULL), \
         ('evt_held', 't', '', now(), now() - interval '1 h', now() + interval '1 h', 'received', NULL), \
         ('evt_done', 't', '', now(), now() - interval '1 h', NULL, 'processed', now())",
    )
    .await;
    // Operations: one queued five minutes ago; one running under a live lease; one done.
    run(
        &app,
        &format!(
            "INSERT INTO operations (id, account_id, kind, format, state, created_at, \
                 lease_expires_at, done_at) VALUES \
             (gen_random_uuid(), '{account}', 'import_tickets', 'ndjson', 'queued', now() - interval '300 s', NULL, NULL), \
             (gen_random_uuid(), '{account}', 'import_tickets', 'ndjson', 'running', now() - interval '1 h', now() + interval '1 h', NULL), \
             (gen_random_uuid(), '{account}', 'import_tickets', 'ndjson', 'succeeded', now() - interval '1 h', NULL, now())"
        ),
    )
    .await;
    // The completer: a pending charge due for a minute; one long due but held by a live send
    // lease (its RPC is calling the provider); a settled one.
    run(
        &app,
        &format!(
            "INSERT INTO charges (id, account_id, customer_id, amount_minor, currency, \
                 payment_method, status, provider_payment_id, next_attempt_at, \
                 send_lease_token, send_lease_until) VALUES \
             (gen_random_uuid(), '{account}', '{customer}', 100, 'EUR', 'pm_card', 'pending', NULL, now() - interval '60 s', NULL, NULL), \
             (gen_random_uuid(), '{account}', '{customer}', 100, 'EUR', 'pm_card', 'pending', NULL, now() - interval '1 h', gen_random_uuid(), now() + interval '1 h'), \
             (gen_random_uuid(), '{account}', '{customer}', 100, 'EUR', 'pm_card', 'succeeded', 'pi_1', now() - interval '1 h', NULL, NULL)"
        ),
    )
    .await;

    wait_until("the sampler reads every queue", PATIENCE, async || {
        let scrape = Scrape::of(&app).await;
        let (webhooks, waited) = queue(&scrape, "webhooks");
        let webhooks = webhooks == 3 && about(waited, 120.0);
        let (operations, waited) = queue(&scrape, "operations");
        let operations = operations == 2 && about(waited, 300.0);
        let (completer, waited) = queue(&scrape, "completer");
        let completer = completer == 2 && about(waited, 60.0);
        webhooks && operations && completer && queue(&scrape, "notifications") == (0, 0.0)
    })
    .await;

    // Applied: the webhook queue keeps what is not due or is held, and nothing waits there.
    run(
        &app,
        "UPDATE webhook_events SET state = 'processed', processed_at = now() WHERE id = 'evt_due'",
    )
    .await;
    wait_until("the sampler sees the event applied", PATIENCE, async || {
        queue(&Scrape::of(&app).await, "webhooks") == (2, 0.0)
    })
    .await;
}

/// The count of the histogram series `name{labels}`.
fn observed(scrape: &Scrape, name: &str, labels: &str) -> u64 {
    scrape.get(&format!("{name}_count{{{labels}}}"))
}

#[tokio::test]
async fn each_redis_call_and_each_provider_call_is_timed_by_purpose_and_outcome() {
    let app = TestApp::spawn_with(with_metrics).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let before = Scrape::of(&app).await;
    let redis = |scrape: &Scrape, purpose: &str| {
        observed(
            scrape,
            "supportdesk_redis_call_duration_seconds",
            &format!(r#"purpose="{purpose}""#),
        )
    };
    let payments = |scrape: &Scrape, outcome: &str| {
        observed(
            scrape,
            "supportdesk_provider_call_duration_seconds",
            &format!(r#"provider="payments",outcome="{outcome}""#),
        )
    };

    // One charge paid, one declined: one call to the provider each.
    let paid = app.charge(customer.id, 1_000, "EUR").create().await;
    assert_eq!(paid.status(), v1::ChargeStatus::Succeeded);
    let declined = app
        .charge(customer.id, 500, "EUR")
        .paid_with("pm_card_chargeDeclinedInsufficientFunds")
        .try_create()
        .await;
    assert_eq!(
        declined.expect_err("declined").code(),
        Code::FailedPrecondition
    );

    let after = Scrape::of(&app).await;
    let decisions = |scrape: &Scrape| scrape.get(ALLOWED) + scrape.get(REFUSED);
    assert_eq!(
        redis(&after, "admission.admit") - redis(&before, "admission.admit"),
        decisions(&after) - decisions(&before),
        "one admission script per decision"
    );
    assert_eq!(
        redis(&after, "admission.admit") - redis(&before, "admission.admit"),
        2
    );
    assert_eq!(payments(&after, "ok") - payments(&before, "ok"), 1);
    assert_eq!(
        payments(&after, "refused") - payments(&before, "refused"),
        1
    );
    assert_eq!(payments(&after, "failed"), payments(&before, "failed"));
    assert_eq!(
        payments(&after, "no_answer"),
        payments(&before, "no_answer")
    );
}
