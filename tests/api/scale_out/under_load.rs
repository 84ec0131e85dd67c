//! Three real instances behind a real Envoy, on one PostgreSQL, one Redis prefix and one payment
//! simulator, under a steady mixed load (reads; CreateTicket, AddComment and CreateCharge with
//! idempotency keys) that records every acknowledged write and every failure: a rolling restart
//! (through Envoy, and through the direct round-robin client beside it), the loss of an
//! instance, a new instance joining, PostgreSQL unreachable for 5 s, and several faults at once
//! (the payment provider failing and losing answers while one instance is cut off from
//! PostgreSQL and another is killed; then PostgreSQL stalled for the third, which is then
//! restarted). Afterwards every
//! acknowledged write is found exactly once in PostgreSQL, and every charge once in the
//! simulator's ledger; every answer a client was told is a documented one, and no instance
//! panicked.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use payment_simulator::{Endpoint, FaultAction, FaultRule};
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;

use crate::support::binary::BINARY;
use crate::support::fleet::{DRAIN_DELAY, Fleet};
use crate::support::load::{Call, Load, Outcome};
use crate::support::proxy::{TcpProxy, socket_address_of};
use crate::support::redis_server::RedisServer;
use crate::support::{
    PATIENCE, admin_database_url, count_of, repository_root, tool, valid_create_request, wait_until,
};

/// The load's callers: each has at most one call in flight.
const WORKERS: usize = 8;

/// A ticket to read and comment on, made through Envoy.
async fn seed_ticket(fleet: &Fleet) -> String {
    TicketServiceClient::new(fleet.envoy_channel())
        .create_ticket(
            fleet
                .admin()
                .request(valid_create_request("read by the load")),
        )
        .await
        .expect("create the ticket the load reads")
        .into_inner()
        .id
}

/// `workers` callers over `connections` to Envoy, each pausing `pause` between calls.
fn start_load_paced(
    fleet: &Fleet,
    ticket_id: &str,
    workers: usize,
    connections: usize,
    pause: Duration,
) -> Load {
    let channels: Vec<_> = (0..connections).map(|_| fleet.envoy_channel()).collect();
    Load::start(
        &channels,
        fleet.admin(),
        fleet.customer_id(),
        ticket_id,
        workers,
        pause,
    )
}

/// Ten times the callers of the steady load `steady`, on connections of their own, with their
/// history in `steady`'s time base.
fn start_burst(fleet: &Fleet, ticket_id: &str, steady: &Load) -> Load {
    let channels: Vec<_> = (0..4).map(|_| fleet.envoy_channel()).collect();
    Load::start_at(
        steady.epoch(),
        &channels,
        fleet.admin(),
        fleet.customer_id(),
        ticket_id,
        10 * WORKERS,
        Duration::from_millis(10),
    )
}

/// How many times longer each phase of the faults-together run lasts: 1 in the suite,
/// `SUPPORTDESK_CHAOS_SCALE` when `bench/chaos` runs it.
fn chaos_scale() -> u64 {
    std::env::var("SUPPORTDESK_CHAOS_SCALE")
        .ok()
        .and_then(|scale| scale.parse().ok())
        .filter(|scale| *scale >= 1)
        .unwrap_or(1)
}

fn start_load(fleet: &Fleet, ticket_id: &str, workers: usize, connections: usize) -> Load {
    start_load_paced(
        fleet,
        ticket_id,
        workers,
        connections,
        Duration::from_millis(10),
    )
}

#[derive(diesel::QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    text: String,
}

/// The first column of `sql`'s rows, as text.
async fn texts(fleet: &Fleet, sql: &str) -> Vec<String> {
    let mut conn = fleet.database.connect().await;
    let mut rows: Vec<String> = diesel::sql_query(sql)
        .load::<Text>(&mut conn)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .into_iter()
        .map(|row| row.text)
        .collect();
    rows.sort();
    rows
}

/// Every acknowledged write exactly once where it lives, and nothing the load did not make,
/// once nothing is left pending (what a lost answer left, a retry under its key or the completer
/// settled).
async fn assert_every_acknowledged_write_exactly_once(fleet: &Fleet, outcome: &Outcome) {
    assert!(
        outcome.unacknowledged.is_empty(),
        "keyed writes never acknowledged: {:?}",
        outcome.unacknowledged
    );
    for table in ["charges", "refunds"] {
        let sql = format!("SELECT count(*) AS count FROM {table} WHERE status = 'pending'");
        wait_until(&format!("no {table} pending"), PATIENCE, || async {
            count_of(&fleet.database, &sql).await == 0
        })
        .await;
    }
    let sorted = |pairs: &[(String, String)], of: fn(&(String, String)) -> String| {
        let mut values: Vec<String> = pairs.iter().map(of).collect();
        values.sort();
        values
    };
    assert_eq!(
        texts(
            fleet,
            "SELECT subject AS text FROM tickets WHERE subject LIKE 'load %'"
        )
        .await,
        sorted(&outcome.tickets, |(key, _)| format!("load {key}")),
        "each acknowledged CreateTicket made exactly one ticket"
    );
    assert_eq!(
        texts(
            fleet,
            "SELECT id::text AS text FROM tickets WHERE subject LIKE 'load %'"
        )
        .await,
        sorted(&outcome.tickets, |(_, id)| id.clone()),
        "the tickets are the ones acknowledged"
    );
    assert_eq!(
        texts(
            fleet,
            "SELECT body AS text FROM ticket_comments WHERE body LIKE 'comment %'"
        )
        .await,
        sorted(&outcome.comments, |(key, _)| format!("comment {key}")),
        "each acknowledged AddComment made exactly one comment"
    );
    assert_eq!(
        texts(fleet, "SELECT id::text AS text FROM charges").await,
        sorted(&outcome.charges, |(_, id)| id.clone()),
        "each acknowledged CreateCharge made exactly one charge"
    );
    for (_, id) in &outcome.charges {
        assert_eq!(
            fleet.simulator.payment_intent_count_for_charge_id(id),
            1,
            "charge {id} paid exactly once at the provider"
        );
    }
    assert_eq!(
        fleet.simulator.ledger().payment_intents.len(),
        outcome.charges.len(),
        "the provider was paid for the acknowledged charges and nothing else"
    );
    // An acknowledged update recorded its change once; a refused one (a stale etag) none.
    assert_eq!(
        texts(
            fleet,
            "SELECT changes->'description'->>'new' AS text FROM ticket_activities \
             WHERE changes->'description'->>'new' LIKE 'update %'"
        )
        .await,
        sorted(&outcome.updates, |(key, _)| format!("update {key}")),
        "each acknowledged UpdateTicket recorded exactly one change"
    );
    // Each worker updated its own tickets in turn: each holds the last update acknowledged.
    let mut last_update = BTreeMap::new();
    for (key, ticket) in &outcome.updates {
        last_update.insert(ticket.clone(), format!("update {key}"));
    }
    assert_eq!(
        texts(
            fleet,
            "SELECT description AS text FROM tickets WHERE description LIKE 'update %'"
        )
        .await,
        sorted_values(last_update.into_values()),
        "each updated ticket holds its last acknowledged update"
    );
    // Refunds: one succeeded row of ours and one at the provider per acknowledged RefundCharge.
    assert_eq!(
        texts(
            fleet,
            "SELECT charge_id::text AS text FROM refunds WHERE status = 'succeeded'"
        )
        .await,
        sorted(&outcome.refunds, |(_, charge)| charge.clone()),
        "each acknowledged RefundCharge made exactly one refund"
    );
    assert_eq!(
        count_of(&fleet.database, "SELECT count(*) AS count FROM refunds").await,
        outcome.refunds.len() as i64,
        "no refund beyond the acknowledged ones"
    );
    assert_eq!(
        fleet.simulator.ledger().refunds.len(),
        outcome.refunds.len(),
        "the provider refunded the acknowledged refunds and nothing else"
    );
    assert!(!outcome.charges.is_empty() && !outcome.tickets.is_empty());
    assert!(!outcome.updates.is_empty(), "the load updated no ticket");
}

fn sorted_values(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut values: Vec<String> = values.collect();
    values.sort();
    values
}

/// What clients were told and what the instances logged, whatever the fault: no answer the API
/// does not document (INTERNAL, UNKNOWN, or no documented ErrorInfo reason), and no panic. On a
/// failure the load's history is written out and named.
fn assert_every_answer_documented_and_no_panic(fleet: &Fleet, outcome: &Outcome, test: &str) {
    let undocumented = outcome.undocumented_answers();
    let panics = fleet.panics();
    if undocumented.is_empty() && panics.is_empty() {
        return;
    }
    let history = outcome.write_history(test);
    let errors: Vec<String> = (0..fleet.ports.len())
        .flat_map(|index| {
            fleet
                .log_of(index)
                .lines()
                .filter(|line| line.contains("\"ERROR\""))
                .take(5)
                .map(|line| format!("instance {index}: {line}"))
                .collect::<Vec<_>>()
        })
        .collect();
    panic!(
        "{} undocumented answers, first ones {:?}; panics {panics:?}; history in {}; the instances' first errors: {errors:#?}",
        undocumented.len(),
        &undocumented[..undocumented.len().min(5)],
        history.display()
    );
}

/// The first few requests Envoy's access log records as not answered by the service.
fn failed_requests(fleet: &Fleet) -> Vec<serde_json::Value> {
    fleet
        .envoy
        .access_log()
        .into_iter()
        .filter(|entry| entry["flags"] != "-")
        .take(5)
        .collect()
}

/// The direct client of the instances (`direct_client.py`, grpcio with the recommended service
/// config), reading until stopped.
struct DirectClient {
    child: Child,
    stop_file: tempfile::TempDir,
}

impl DirectClient {
    fn start(fleet: &Fleet, ticket_id: &str) -> Self {
        let directory = tempfile::tempdir().expect("a directory");
        let config = Command::new(BINARY)
            .args(["retry-rule", "--service-config"])
            .output()
            .expect("run supportdesk retry-rule");
        assert!(config.status.success());
        let config_path = directory.path().join("service-config.json");
        std::fs::write(&config_path, config.stdout).unwrap();
        let addresses: Vec<String> = fleet
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let mut child = Command::new(tool("OTLP_PYTHON_BIN"))
            .arg(repository_root().join("tests/api/scale_out/direct_client.py"))
            .arg(addresses.join(","))
            .arg(&config_path)
            .arg(&fleet.admin().access_token)
            .arg(ticket_id)
            .arg(directory.path().join("stop"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the direct client");
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .expect("the direct client's first line");
        assert_eq!(
            first.trim(),
            "ready",
            "the direct client's first call succeeds"
        );
        Self {
            child,
            stop_file: directory,
        }
    }

    /// Stops it; (calls that succeeded, every failure).
    async fn stop(self) -> (u64, Vec<serde_json::Value>) {
        std::fs::write(self.stop_file.path().join("stop"), b"").unwrap();
        let output = tokio::task::spawn_blocking(move || self.child.wait_with_output())
            .await
            .unwrap()
            .expect("the direct client ends");
        let text = String::from_utf8_lossy(&output.stdout);
        let outcome: serde_json::Value =
            serde_json::from_str(text.lines().last().expect("its outcome")).expect("JSON");
        (
            outcome["succeeded"].as_u64().unwrap(),
            outcome["failures"].as_array().unwrap().clone(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_three_instances_fails_no_request_and_loses_no_write() {
    let mut fleet = Fleet::start(3, 3, None).await;
    let ticket_id = seed_ticket(&fleet).await;
    let direct = DirectClient::start(&fleet, &ticket_id);
    let load = start_load(&fleet, &ticket_id, WORKERS, 2);
    load.wait_for_calls(100).await;
    for index in 0..3 {
        fleet.restart(index).await;
        load.wait_for_calls(100).await;
    }
    let outcome = load.stop().await;
    let (direct_succeeded, direct_failures) = direct.stop().await;

    assert!(
        outcome.failures.is_empty(),
        "{} of {} calls through Envoy failed: {:?}",
        outcome.failures.len(),
        outcome.calls(),
        outcome.failure_summary()
    );
    assert!(
        direct_failures.is_empty(),
        "{} calls of the direct client failed ({direct_succeeded} succeeded): {direct_failures:?}",
        direct_failures.len()
    );
    assert!(direct_succeeded > 0);
    assert_every_acknowledged_write_exactly_once(&fleet, &outcome).await;
    assert_every_answer_documented_and_no_panic(&fleet, &outcome, "rolling-restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_fails_only_the_calls_it_held_and_every_keyed_retry_takes_effect_once() {
    let mut fleet = Fleet::start(3, 3, None).await;
    let ticket_id = seed_ticket(&fleet).await;
    let load = start_load(&fleet, &ticket_id, WORKERS, 2);
    load.wait_for_calls(200).await;

    fleet.kill(1);
    let killed = Instant::now();
    // Two failed checks 500 ms apart; twice that for a loaded machine.
    fleet
        .envoy
        .wait_for_instance(fleet.ports[1], false, DRAIN_DELAY * 2)
        .await;
    let noticed = killed.elapsed();
    let sent_to_the_dead = fleet.envoy.instances().await[&fleet.ports[1]].1;
    load.wait_for_calls(300).await;
    assert_eq!(
        fleet.envoy.instances().await[&fleet.ports[1]].1,
        sent_to_the_dead,
        "Envoy sent calls to the dead instance after it saw it unhealthy"
    );
    let outcome = load.stop().await;

    // Each worker had at most one call in flight on the killed instance; Envoy sent reads and
    // keyed writes again elsewhere, so at most those few calls saw an error at all.
    assert!(
        outcome.failed_calls() <= WORKERS,
        "{} calls failed after one instance was killed (noticed in {noticed:?}): {:?}",
        outcome.failed_calls(),
        outcome.failure_summary()
    );
    assert_every_acknowledged_write_exactly_once(&fleet, &outcome).await;
    assert_every_answer_documented_and_no_panic(&fleet, &outcome, "killed-instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_joins_and_takes_a_fair_share_of_fifty_connections() {
    let mut fleet = Fleet::start(3, 2, None).await;
    let ticket_id = seed_ticket(&fleet).await;
    // Steady, not flat out: 50 connections sharing two cores with three debug builds.
    let load = start_load_paced(&fleet, &ticket_id, 50, 50, Duration::from_millis(100));
    load.wait_for_calls(200).await;
    fleet.start_instance(2).await;

    let before = fleet.envoy.instances().await;
    load.wait_for_calls(1500).await;
    let after = fleet.envoy.instances().await;
    let outcome = load.stop().await;

    let served: BTreeMap<u16, u64> = fleet
        .ports
        .iter()
        .map(|port| (*port, after[port].1 - before[port].1))
        .collect();
    let total: u64 = served.values().sum();
    for (port, count) in &served {
        let share = *count as f64 / total as f64;
        assert!(
            (0.23..=0.43).contains(&share),
            "127.0.0.1:{port} served {:.0} % of {total} calls: {served:?}",
            share * 100.0
        );
    }
    assert!(
        outcome.failures.is_empty(),
        "{:?}\nEnvoy's failed requests: {:#?}\nports {:?}, before {before:?}, after {after:?}",
        outcome.failure_summary(),
        failed_requests(&fleet),
        fleet.ports
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_rides_out_five_seconds_without_postgresql_on_its_own() {
    // PostgreSQL behind a proxy the test cuts: the instances lose it, the test keeps it.
    let proxy = TcpProxy::start(socket_address_of(&crate::support::admin_database_url())).await;
    let mut fleet = Fleet::start(3, 3, Some(&proxy)).await;
    let ticket_id = seed_ticket(&fleet).await;
    let load = start_load(&fleet, &ticket_id, WORKERS, 2);
    load.wait_for_calls(100).await;

    proxy.cut();
    let cut = Instant::now();
    let mut seen_not_serving = [false; 3];
    while cut.elapsed() < Duration::from_secs(5) {
        for (index, seen) in seen_not_serving.iter_mut().enumerate() {
            assert_eq!(
                fleet.health_of(index, "liveness").await.as_deref(),
                Some("Serving"),
                "instance {index}'s liveness target stays SERVING without PostgreSQL"
            );
            if fleet.health_of(index, "").await.as_deref() == Some("NotServing") {
                *seen = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.restore();
    assert_eq!(
        seen_not_serving, [true; 3],
        "each instance said it cannot serve"
    );
    for index in 0..3 {
        fleet.wait_serving(index).await;
        assert!(
            fleet.is_running(index),
            "instance {index} was never restarted"
        );
    }
    load.wait_for_calls(100).await;
    let outcome = load.stop().await;
    assert_every_acknowledged_write_exactly_once(&fleet, &outcome).await;
    assert_every_answer_documented_and_no_panic(&fleet, &outcome, "postgresql-cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_together_lose_no_write_pay_nothing_twice_and_answer_only_as_documented() {
    // Each instance reaches PostgreSQL through a proxy of its own: one can lose it alone.
    let postgres = socket_address_of(&admin_database_url());
    let proxies = [
        TcpProxy::start(postgres).await,
        TcpProxy::start(postgres).await,
        TcpProxy::start(postgres).await,
    ];
    let through: Vec<Option<&TcpProxy>> = proxies.iter().map(Some).collect();
    // And a Redis of their own, which loses its keys and pauses below.
    let mut redis = tokio::task::block_in_place(RedisServer::start);
    let mut fleet = Fleet::start_through_with_redis(3, &through, &redis.url()).await;
    let ticket_id = seed_ticket(&fleet).await;
    // Calls per phase: `bench/chaos` holds each phase five times longer.
    let phase = |calls: u64| calls * chaos_scale();
    let load = start_load(&fleet, &ticket_id, WORKERS, 2);
    load.mark("steady");
    load.wait_for_calls(phase(100)).await;

    // The payment provider answers 500 without paying, then pays and drops its answers, then
    // answers slowly (within the service's 3 s timeout)...
    for action in [
        FaultAction::ServerError { status: 500 },
        FaultAction::ExecuteThenTimeout { hang_millis: 0 },
        FaultAction::Latency { millis: 1_500 },
    ] {
        fleet
            .simulator
            .add_fault(FaultRule::new(Endpoint::CreatePaymentIntent, action, 5))
            .expect("a valid fault");
    }
    // ...while instance 2 is cut off from PostgreSQL, and instance 0 is killed.
    load.mark("provider failing; instance 2 cut off from PostgreSQL");
    proxies[2].cut();
    load.wait_for_calls(phase(100)).await;
    load.mark("instance 0 killed (SIGKILL)");
    fleet.kill(0);
    load.wait_for_calls(phase(100)).await;

    // Healed: instance 2 has PostgreSQL again, instance 0 is replaced, then instance 1 is
    // stopped (SIGTERM, drained) and replaced while the load goes on.
    load.mark("healing: instance 2 reconnected, instance 0 replaced");
    proxies[2].restore();
    fleet.wait_serving(2).await;
    fleet.start_instance(0).await;
    load.mark("healed: instances 0 and 2 serving");
    // PostgreSQL stops answering instance 1 without failing (its bytes are held, then delivered
    // late), then instance 1 is stopped and replaced.
    proxies[1].stall();
    load.mark("PostgreSQL stalled for instance 1");
    let stalled = Instant::now();
    while fleet.health_of(1, "").await.as_deref() != Some("NotServing") {
        assert!(
            stalled.elapsed() < PATIENCE,
            "instance 1 still says it serves with PostgreSQL stalled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    load.mark("instance 1 not serving");
    load.wait_for_calls(phase(100)).await;
    load.mark("PostgreSQL unstalled for instance 1");
    proxies[1].unstall();
    fleet.wait_serving(1).await;
    // Redis loses every key (a crash of a cache kept in memory only) while instance 1 is
    // stopped and replaced, then holds every command for two seconds (CLIENT PAUSE): rate
    // limits, caches and sessions' revocations must cope without an undocumented answer.
    assert!(
        tokio::task::block_in_place(|| redis.key_count()) > 0,
        "the fleet keeps nothing in its Redis"
    );
    load.mark("Redis restarted empty; instance 1 restarted (SIGTERM)");
    tokio::task::block_in_place(|| redis.restart());
    fleet.restart(1).await;
    load.mark("instance 1 serving again");
    load.wait_for_calls(phase(100)).await;
    load.mark("Redis paused 2 s (CLIENT PAUSE)");
    tokio::task::block_in_place(|| redis.pause(Duration::from_secs(2)));
    load.wait_for_calls(phase(100)).await;
    // PostgreSQL goes away for every instance at once, as in a restart: every connection cut
    // and new ones refused while the load makes its calls, then it is back.
    load.mark("PostgreSQL restarted: every connection cut, down for every instance");
    for proxy in &proxies {
        proxy.cut();
    }
    load.wait_for_calls(phase(50)).await;
    for proxy in &proxies {
        proxy.restore();
    }
    for index in 0..3 {
        fleet.wait_serving(index).await;
    }
    load.mark("PostgreSQL back: every instance serving");
    load.wait_for_calls(phase(50)).await;
    // A burst of ten times the callers on top of the steady load, until it made 300 calls.
    load.mark("burst: ten times the callers");
    let burst = start_burst(&fleet, &ticket_id, &load);
    burst.wait_for_calls(phase(300)).await;
    let burst = burst.stop().await;
    load.mark("steady again");
    load.wait_for_calls(phase(50)).await;
    let mut outcome = load.stop().await;
    outcome.merge(burst);
    if let Some(path) = std::env::var_os("SUPPORTDESK_CHAOS_HISTORY") {
        outcome.write_history_to(std::path::Path::new(&path));
    }
    fleet.simulator.clear_faults();

    assert_every_acknowledged_write_exactly_once(&fleet, &outcome).await;
    assert_every_answer_documented_and_no_panic(&fleet, &outcome, "faults-together");
    // The faults happened: Redis came back empty and the instances wrote to it again, and the
    // provider answered 500s and dropped answers it had paid for.
    assert!(
        tokio::task::block_in_place(|| redis.key_count()) > 0,
        "the instances did not use Redis again after its restart"
    );
    let requests = fleet.simulator.requests();
    assert!(
        requests.iter().any(|request| request.status == Some(500))
            && requests.iter().any(|request| request.status.is_none()),
        "the provider's faults did not happen"
    );
    // Updates met the faults too, and some were refused for a stale etag at most.
    assert!(
        outcome
            .refused
            .iter()
            .all(|(call, _)| matches!(call, Call::UpdateTicket | Call::RefundCharge)),
        "refused writes other than updates and refunds: {:?}",
        outcome.refused
    );
}
