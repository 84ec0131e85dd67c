//! Three real instances behind a real Envoy, on one PostgreSQL, one Redis prefix and one payment
//! simulator, under a steady mixed load (reads; CreateTicket, AddComment and CreateCharge with
//! idempotency keys) that records every acknowledged write and every failure: a rolling restart
//! (through Envoy, and through the direct round-robin client beside it), the loss of an
//! instance, a new instance joining, PostgreSQL unreachable for 5 s, and several faults at once
//! (the chaos run's steps: the payment provider failing, losing answers and slow while one
//! instance is cut off from PostgreSQL and another is killed; PostgreSQL stalled for the third,
//! which is then restarted; Redis restarted empty and paused; the SMTP relays, the email API,
//! the S3 store and the PostgreSQL replica down in turn; one instance's relay slow to answer the
//! end of a message; PostgreSQL crashed and restarted; a burst of ten times
//! the callers, held 2 s; all of it on a PostgreSQL of the run's own, with payment events
//! delivered and imports run, and a tenant of its own running ten slow exports beside the load,
//! in alternate windows and then to the end). Afterwards, once the queues drained, every acknowledged write is
//! found exactly once in PostgreSQL, every charge and refund once in the simulator's ledger, a
//! reconciliation run finds nothing, every notification due was sent and received once (the
//! slow relay's twice only where the service could not know an outcome), the others' calls beside
//! the slow exports as successful as without them, every
//! acknowledged upload is READY with its object in the store, every import done once, every
//! acknowledged payment event applied, no read crossed accounts, the login quota held; every
//! answer a client was told is a documented one, and no instance panicked.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use payment_simulator::email::{EmailFaultAction, EmailFaultRule, EmailSimulatorHandle};
use payment_simulator::webhooks::WebhookEndpoint;
use payment_simulator::{Endpoint, FaultAction, FaultRule};
use secrecy::SecretString;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;

use super::held_work::an_import_held_by;
use super::subscriber::{self, subscribe};
use crate::support::binary::BINARY;
use crate::support::binary::sign_up_through;
use crate::support::email_api::start_email_api;
use crate::support::exports::{ExportAttempt, Exporter, SlowExports};
use crate::support::fleet::{DRAIN_DELAY, Fleet};
use crate::support::load::{Call, Callers, Load, Outcome};
use crate::support::proxy::{TcpProxy, socket_address_of};
use crate::support::redis_server::RedisServer;
use crate::support::replica::ReplicaPair;
use crate::support::smtp::SmtpServer;
use crate::support::storage::{StorageServer, TEST_ACCESS_KEY, TEST_BUCKET, TEST_SECRET_KEY};
use crate::support::{
    PATIENCE, TEST_WEBHOOK_SECRET, TestDatabase, count_of, repository_root, tool,
    valid_create_request, wait_until,
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
    Load::start(&channels, &callers(fleet, ticket_id), workers, pause)
}

/// The fleet's admin reading `ticket_id`, charging its customer, uploading attachments when the
/// fleet has a store, and importing tickets when it is the faults-together fleet.
fn callers(fleet: &Fleet, ticket_id: &str) -> Callers {
    Callers {
        user: fleet.admin().clone(),
        customer_id: fleet.customer_id().to_owned(),
        ticket_id: ticket_id.to_owned(),
        uploads: fleet.has_setting("STORAGE_ENDPOINT"),
        // Only the faults-together run checks imports (`chaos_settings`).
        imports: fleet.has_setting("IMPORT_MAX_CONCURRENT"),
    }
}

/// Ten times the callers of the steady load `steady`, on connections of their own, with their
/// history in `steady`'s time base.
fn start_burst(fleet: &Fleet, ticket_id: &str, steady: &Load) -> Load {
    let channels: Vec<_> = (0..4).map(|_| fleet.envoy_channel()).collect();
    Load::start_at(
        steady.epoch(),
        &channels,
        &callers(fleet, ticket_id),
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

/// The first column of `sql`'s rows, as text, sorted.
pub(super) async fn texts(fleet: &Fleet, sql: &str) -> Vec<String> {
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
    // A CreateCharge refused for good is one the service gave up on without the provider ever
    // charging it (CHARGE_ABANDONED: the reconciler found nothing at the provider while the
    // client was still retrying): its charge stays FAILED and abandoned, and is no one's.
    let abandoned = abandoned_charge_keys(outcome);
    assert_eq!(
        texts(
            fleet,
            "SELECT id::text AS text FROM charges \
             WHERE NOT (status = 'failed' AND failure_kind = 'abandoned' \
                        AND provider_payment_id IS NULL)"
        )
        .await,
        sorted(&outcome.charges, |(_, id)| id.clone()),
        "each acknowledged CreateCharge made exactly one charge; the CreateCharge keys refused \
         or never acknowledged: {:?}",
        outcome
            .refused
            .iter()
            .chain(&outcome.unacknowledged)
            .filter(|(call, _)| *call == Call::CreateCharge)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        count_of(
            &fleet.database,
            "SELECT count(*) AS count FROM charges \
             WHERE status = 'failed' AND failure_kind = 'abandoned' \
               AND provider_payment_id IS NULL"
        )
        .await,
        abandoned.len() as i64,
        "one abandoned charge per CreateCharge refused as abandoned, and no other"
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

/// The CreateCharge keys the load stopped sending because the service answered
/// `CHARGE_ABANDONED` (docs/errors.md): the charge was given up, nothing charged. Fails on a
/// CreateCharge refused for any other reason.
fn abandoned_charge_keys(outcome: &Outcome) -> Vec<&str> {
    let refused: Vec<&str> = outcome
        .refused
        .iter()
        .filter(|(call, _)| *call == Call::CreateCharge)
        .map(|(_, key)| key.as_str())
        .collect();
    for key in &refused {
        let last = outcome
            .failures
            .iter()
            .rev()
            .find(|failure| failure.key.as_deref() == Some(*key))
            .expect("a refused write failed");
        assert_eq!(
            last.reason.as_deref(),
            Some(Reason::ChargeAbandoned.as_str()),
            "CreateCharge {key} refused for good otherwise than as abandoned: {last:?}"
        );
    }
    refused
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

    load.mark("instance 1 killed (SIGKILL)");
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

/// The login quota of the faults-together run (`RATE_LIMIT_LOGIN_ATTEMPTS`): this many logins
/// per this many seconds for one address and login name, which the load's logins exceed.
const LOGIN_QUOTA: (u64, u64) = (20, 60);

/// How long after Redis came back the limiter may still be letting requests through undecided:
/// the second it gives Redis to decide, and the two seconds it then leaves Redis alone
/// (docs/rate-limits.md, "When Redis is down").
const FAIL_OPEN_TAIL_MS: u64 = 3_000;

/// The phases of the faults-together run its checkers look up.
const REDIS_RESTARTED: &str =
    "Redis restarted empty; instance 1 stopped (SIGTERM) while running an import, and replaced";
const REDIS_BACK: &str = "instance 1 serving again";
const REDIS_PAUSED: &str = "Redis paused 2 s (CLIENT PAUSE)";

/// The phase the dashboard has no replica in.
const SUBSCRIBER_FAILING: &str = "subscriber's endpoint failing (503s, then no answer)";
const REPLICA_STOPPED: &str = "PostgreSQL replica stopped";

/// How long Redis is paused for.
const REDIS_PAUSE: Duration = Duration::from_secs(2);

/// The phase instance 1's relay answers the end of each message's data late in.
const SLOW_RELAY: &str = "instance 1's relay slow to answer the end of data";

/// How long instance 1's relay keeps a message before it answers that it took it, while slow:
/// 10 s in the suite (more than the 3.75 s the instances once cut a send at: three quarters of
/// the run's 5 s lease), 50 s in `bench/chaos` (issue 67's relay).
fn slow_relay_delay() -> Duration {
    Duration::from_secs(10 * chaos_scale())
}

/// The windows of the comparison with and without the exporting tenant (their names carry
/// their number).
const WITH_EXPORTS: &str = "with ten slow exports";
const WITHOUT_EXPORTS: &str = "without the slow exports";

/// The order of those windows (`true`: with the slow exports), ABBAAB: a drift of the machine's
/// load across the section weighs alike on both sides.
const WINDOWS: [bool; 6] = [false, true, true, false, false, true];

/// Exports one account may run at once on one instance in the run
/// (`EXPORT_MAX_CONCURRENT_PER_ACCOUNT`), less than an instance may
/// (`EXPORT_MAX_CONCURRENT_PER_INSTANCE`, 3): the exporting tenant holds this many on each of
/// the three instances, and is refused beyond.
const EXPORTS_PER_ACCOUNT: usize = 2;

/// How long the exporting tenant waits after each kilobyte it reads: 4 s in the suite, 20 s in
/// `bench/chaos` (issue 67's reader; under Envoy's 30 s `stream_idle_timeout`).
fn export_pace() -> Duration {
    Duration::from_secs(4 * chaos_scale())
}

/// The exporting tenant's streams: those still running, what the stopped ones did, and the
/// most that ran at once in the comparison's windows (where no fault ends an export: later a
/// stream the service ended still reads what Envoy and its window hold before it sees the end,
/// so the client's count is no longer the service's places).
struct ExportingTenant {
    running: SlowExports,
    ended: Vec<ExportAttempt>,
    most_running: usize,
}

impl ExportingTenant {
    /// Stops the streams still running; every stream's record, and the most that ran at once.
    async fn stop(self) -> (Vec<ExportAttempt>, usize) {
        let mut attempts = self.ended;
        attempts.extend(self.running.stop().await);
        (attempts, self.most_running)
    }
}

/// Runs the comparison's [`WINDOWS`], each of `calls` calls of the load: the exporting tenant's
/// streams started for a window with them and stopped (its client gone) for one without. Waits,
/// in the first window with them, until the tenant holds every place the caps give it. Returns
/// its streams, still running after the last window.
async fn with_and_without_the_slow_exports(
    load: &Load,
    exporter: &Exporter,
    calls: u64,
) -> ExportingTenant {
    let mut ended = Vec::new();
    let mut most_running = 0;
    let mut running: Option<SlowExports> = None;
    let mut held_every_place = false;
    for (index, with) in WINDOWS.into_iter().enumerate() {
        if with {
            load.mark(&format!("{WITH_EXPORTS} ({})", index + 1));
            running.get_or_insert_with(|| exporter.start(load.epoch()));
        } else {
            if let Some(exports) = running.take() {
                most_running = most_running.max(exports.most_running());
                ended.extend(exports.stop().await);
            }
            load.mark(&format!("{WITHOUT_EXPORTS} ({})", index + 1));
        }
        load.wait_for_calls(calls).await;
        if let Some(exports) = running.as_ref().filter(|_| !held_every_place) {
            wait_until(
                "the exporting tenant holds every place the export caps give it",
                PATIENCE,
                || async { exports.running() == EXPORTS_PER_ACCOUNT * 3 },
            )
            .await;
            held_every_place = true;
        }
    }
    let running = running.expect("the last window runs the exports");
    ExportingTenant {
        most_running: most_running.max(running.most_running()),
        running,
        ended,
    }
}

/// The other tenants' calls (every one but logins, which their quota refuses by design) beside
/// the exporting tenant's streams against those of the windows without them: the share
/// answered OK no more than 1 percentage point lower, and, at `bench/chaos`'s scale, the 99th
/// percentile of their latency no more than 1.5 times higher (issue 67). In the suite each side
/// has about 500 calls: their p99 is their fifth slowest, which a 2-core machine busy with
/// something else moves by more than that on its own (docs/testing.md); the ratio is recorded.
fn assert_the_slow_exports_left_the_others_alone(outcome: &mut Outcome) {
    let side = |with: bool| -> Vec<(bool, u64)> {
        let windows: Vec<(u64, u64)> = WINDOWS
            .iter()
            .enumerate()
            .filter(|(_, window)| **window == with)
            .map(|(index, _)| {
                let name = if with { WITH_EXPORTS } else { WITHOUT_EXPORTS };
                outcome.phase_bounds(&format!("{name} ({})", index + 1))
            })
            .collect();
        outcome
            .history
            .iter()
            .filter(|attempt| {
                attempt.call != "Login"
                    && windows
                        .iter()
                        .any(|(from, to)| (*from..*to).contains(&attempt.sent_ms))
            })
            .map(|attempt| (attempt.code == "Ok", attempt.took_ms))
            .collect()
    };
    let (with, without) = (side(true), side(false));
    let at_least = 400 * chaos_scale() as usize;
    assert!(
        with.len() >= at_least && without.len() >= at_least,
        "too few calls to compare: {} with the slow exports, {} without (at least {at_least} each)",
        with.len(),
        without.len()
    );
    let ok_share = |calls: &[(bool, u64)]| {
        calls.iter().filter(|(ok, _)| *ok).count() as f64 / calls.len() as f64
    };
    let p99 = |calls: &[(bool, u64)]| {
        let mut took: Vec<u64> = calls.iter().map(|(_, took)| *took).collect();
        took.sort_unstable();
        took[((took.len() - 1) as f64 * 0.99).round() as usize]
    };
    let (ok_with, ok_without) = (ok_share(&with), ok_share(&without));
    let (p99_with, p99_without) = (p99(&with), p99(&without));
    let ratio = p99_with as f64 / p99_without.max(1) as f64;
    let compared = format!(
        "the other tenant's calls with the slow exports: {} calls, {:.2} % OK, p99 {p99_with} ms; \
         without: {} calls, {:.2} % OK, p99 {p99_without} ms; p99 ratio {ratio:.2}",
        with.len(),
        100.0 * ok_with,
        without.len(),
        100.0 * ok_without
    );
    eprintln!("{compared}");
    assert!(
        ok_with >= ok_without - 0.01,
        "the slow exports cost the others more than 1 percentage point of their successes: \
         {compared}"
    );
    if chaos_scale() >= 5 {
        assert!(
            ratio <= 1.5,
            "the slow exports made the others' p99 more than 1.5 times longer: {compared}"
        );
    }
    outcome.counted(
        "calls of the other tenant compared beside the slow exports (with, ABBAAB windows)",
        with.len(),
    );
    outcome.counted(
        "calls of the other tenant compared beside the slow exports (without)",
        without.len(),
    );
}

/// The exporting tenant held every export place the caps give one account on the three
/// instances and never more, was refused beyond (RESOURCE_EXHAUSTED `STREAM_LIMIT`, a documented
/// answer for it), and was told nothing the API does not document: a stream ends as it
/// completes, is stopped by the tenant, or with a documented reason (an instance's drain, a
/// database gone), or cut mid-answer only when an instance was killed under it.
fn assert_the_exporter_was_answered_only_as_documented(outcome: &mut Outcome, most_running: usize) {
    assert_eq!(
        most_running,
        EXPORTS_PER_ACCOUNT * 3,
        "the most exports the tenant ran at once in the comparison's windows, on three instances"
    );
    let undocumented: Vec<&ExportAttempt> = outcome
        .exports
        .iter()
        .filter(|export| {
            export.code != "Ok"
                && (matches!(
                    export.code.as_str(),
                    "Internal" | "Unknown" | "DataLoss" | "Unimplemented"
                ) || !export.documented)
                && !(export.cut && cut_by_an_instance_going(outcome, export))
        })
        .collect();
    let cut = outcome
        .exports
        .iter()
        .filter(|export| export.cut && cut_by_an_instance_going(outcome, export))
        .count();
    assert!(
        undocumented.is_empty(),
        "the exporting tenant was told what the API does not document: {undocumented:#?}"
    );
    let refused = outcome
        .exports
        .iter()
        .filter(|export| export.reason.as_deref() == Some(Reason::StreamLimit.as_str()))
        .count();
    assert!(
        refused > 0,
        "the exporting tenant never met the export caps"
    );
    let read: u64 = outcome.exports.iter().map(|export| export.tickets).sum();
    assert!(read > 0, "the exporting tenant read nothing");
    outcome.counted(
        "streams of the exporting tenant refused STREAM_LIMIT (the export caps), retried",
        refused,
    );
    outcome.counted(
        "streams of the exporting tenant cut mid-answer, in flight when an instance was killed \
         or stopped (SIGTERM)",
        cut,
    );
    outcome.counted(
        "streams of the exporting tenant, ended or stopped",
        outcome.exports.len(),
    );
}

/// Whether `export` was in flight when an instance was killed (SIGKILL) or stopped (SIGTERM):
/// a stream Envoy resets, once it has passed on what it held, when the instance under it goes.
/// A stopping instance ends its exports UNAVAILABLE, but to a reader as slow as this tenant the
/// status waits behind what its full windows hold, and the instance may exit first (seen in the
/// chaos run: cut after 122 tickets, about 120 s after the stream began).
fn cut_by_an_instance_going(outcome: &Outcome, export: &ExportAttempt) -> bool {
    let ended = export.sent_ms + export.took_ms;
    outcome.in_flight_at_a_kill(export.sent_ms, ended)
        || outcome
            .phases
            .iter()
            .filter(|marked| marked.phase.contains("(SIGTERM)"))
            .any(|stopped| export.sent_ms <= stopped.at_ms && ended >= stopped.at_ms)
}

/// The settings of the faults-together fleet besides a fleet's own: attachments in `storage`,
/// mail through `smtp` with
/// retries a fraction of a second apart, a lease a killed instance's mail waits for of 5 s, the
/// reconciler every 2 s, and the login quota the run checks.
fn chaos_settings(smtp: &SmtpServer, storage: &StorageServer) -> Vec<(&'static str, String)> {
    [
        ("STORAGE_ENDPOINT", storage.endpoint().as_str()),
        ("STORAGE_BUCKET", TEST_BUCKET),
        ("STORAGE_ACCESS_KEY_ID", TEST_ACCESS_KEY),
        ("STORAGE_SECRET_ACCESS_KEY", TEST_SECRET_KEY),
        ("STORAGE_TIMEOUT_MS", "2000"),
        ("STORAGE_PROBE_INTERVAL_MS", "200"),
        ("STORAGE_BREAKER_FAILURES", "2"),
        ("STORAGE_BREAKER_COOL_DOWN_MS", "500"),
        ("ATTACHMENT_SWEEP_INTERVAL_MS", "1000"),
        ("EMAIL_PROVIDER", "smtp"),
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", &smtp.port.to_string()),
        ("SMTP_TLS", "none"),
        ("SMTP_TIMEOUT_MS", "2000"),
        ("EMAIL_FROM", "Example Support <support@desk.example.com>"),
        ("PUBLIC_BASE_URL", "https://desk.example.com/"),
        ("EMAIL_BREAKER_FAILURES", "3"),
        ("EMAIL_BREAKER_COOL_DOWN_MS", "500"),
        ("NOTIFICATION_LEASE_SECS", "5"),
        ("NOTIFICATION_MAX_ATTEMPTS", "1000"),
        ("NOTIFICATION_RETRY_BASE_MS", "100"),
        ("NOTIFICATION_RETRY_MAX_MS", "1000"),
        ("NOTIFICATION_POLL_INTERVAL_MS", "200"),
        // Each send and its outcome in the instances' logs, for an investigation; each import
        // claimed, finished or given back, and deliveries given back, for `held_work`'s checks.
        (
            "RUST_LOG",
            "warn,supportdesk::service::notification_worker=debug,\
             supportdesk::service::operation_worker=info,\
             supportdesk::service::outbound_webhooks::delivery=debug",
        ),
        ("PAYMENT_WEBHOOK_SECRET", TEST_WEBHOOK_SECRET),
        ("WEBHOOK_POLL_INTERVAL_MS", "200"),
        ("WEBHOOK_RETRY_BASE_MS", "100"),
        ("WEBHOOK_RETRY_MAX_MS", "1000"),
        ("WEBHOOK_MAX_ATTEMPTS", "1000"),
        ("WEBHOOK_LEASE_SECS", "5"),
        ("BILLING_RECONCILIATION_INTERVAL_MS", "2000"),
        // Imports run at once, and one a killed instance held is taken over within 5 s.
        ("IMPORT_MAX_CONCURRENT", "8"),
        ("OPERATION_POLL_INTERVAL_MS", "100"),
        ("OPERATION_LEASE_MS", "5000"),
        ("BILLING_RECONCILIATION_SETTLE_MS", "1000"),
        // The export caps the exporting tenant meets.
        (
            "EXPORT_MAX_CONCURRENT_PER_ACCOUNT",
            &EXPORTS_PER_ACCOUNT.to_string(),
        ),
        ("EXPORT_MAX_CONCURRENT_PER_INSTANCE", "3"),
        (
            "RATE_LIMIT_LOGIN_ATTEMPTS",
            &format!("{}/{}", LOGIN_QUOTA.0, LOGIN_QUOTA.1),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name, value.to_owned()))
    .chain(subscriber::delivery_settings())
    .collect()
}

/// Waits until nothing is left to send, settle or process: no notification waiting to be sent,
/// no charge or refund pending, no object waiting to be deleted, no payment event waiting to be
/// applied. Fails after [`PATIENCE`] each: the stated bound on draining once every fault healed.
async fn wait_for_the_queues_to_drain(fleet: &Fleet) {
    for (queue, sql) in [
        (
            "imports to run",
            "SELECT count(*) AS count FROM operations WHERE state IN ('queued', 'running')",
        ),
        (
            "payment events to apply",
            "SELECT count(*) AS count FROM webhook_events WHERE state = 'received'",
        ),
        (
            "notifications to send",
            "SELECT count(*) AS count FROM notifications WHERE state = 'received'",
        ),
        (
            "charges pending",
            "SELECT count(*) AS count FROM charges WHERE status = 'pending'",
        ),
        (
            "refunds pending",
            "SELECT count(*) AS count FROM refunds WHERE status = 'pending'",
        ),
        (
            "objects to delete from the store",
            "SELECT count(*) AS count FROM storage_deletions",
        ),
    ] {
        wait_until(&format!("no {queue}"), PATIENCE, || async {
            count_of(&fleet.database, sql).await == 0
        })
        .await;
    }
}

/// Every acknowledged upload READY exactly once, no attachment left in another state (a failed
/// upload leaves nothing), and the store holding exactly the READY attachments' objects.
async fn assert_every_acknowledged_upload_ready_once(
    fleet: &Fleet,
    storage: &StorageServer,
    outcome: &Outcome,
) {
    assert_eq!(
        texts(
            fleet,
            "SELECT filename || ' ' || state AS text FROM attachments"
        )
        .await,
        sorted_values(
            outcome
                .attachments
                .iter()
                .map(|(key, _)| format!("load-{key}.png ready"))
        ),
        "each acknowledged UploadAttachment made exactly one READY attachment, and nothing else"
    );
    assert_eq!(
        texts(fleet, "SELECT id::text AS text FROM attachments").await,
        sorted_values(outcome.attachments.iter().map(|(_, id)| id.clone())),
        "the attachments are the ones acknowledged"
    );
    let account = &fleet.admin().account_id;
    assert_eq!(
        crate::support::storage::objects_under(&storage.endpoint(), &account.to_string()).await,
        outcome.attachments.len(),
        "the store holds one object per READY attachment and nothing else"
    );
    assert!(!outcome.attachments.is_empty(), "the load uploaded nothing");
}

/// Every notice the acknowledged writes were due written once (an acknowledgement per ticket, a
/// notice per comment to the seeded ticket's requester, a receipt per charge, a notice per
/// refund), every notification sent, and the SMTP servers' maildirs and the email API's accepted
/// emails together holding each message once by its `Message-ID` (the API keeps a retried send
/// under its idempotency key once); a message twice only where a send was interrupted after the
/// server accepted it
/// (an instance killed, the server stopped: at most one per send in flight, 4 an instance), and
/// then only for a notification attempted again whose row records the unknown outcome.
async fn assert_every_notification_sent_exactly_once(
    fleet: &Fleet,
    sinks: (&SmtpServer, &SmtpServer, &EmailSimulatorHandle),
    outcome: &Outcome,
    interruptions: usize,
) {
    let sorted = |values: Vec<String>| sorted_values(values.into_iter());
    assert_eq!(
        texts(
            fleet,
            "SELECT recipient_address AS text FROM notifications \
             WHERE kind = 'ticket_created' AND recipient_address LIKE 'requester-%'"
        )
        .await,
        sorted(
            outcome
                .tickets
                .iter()
                .map(|(key, _)| format!("requester-{key}@example.com"))
                .collect()
        ),
        "one acknowledgement per acknowledged ticket"
    );
    assert_eq!(
        texts(
            fleet,
            "SELECT data->>'body' AS text FROM notifications WHERE kind = 'comment_added'"
        )
        .await,
        sorted(
            outcome
                .comments
                .iter()
                .map(|(key, _)| format!("comment {key}"))
                .collect()
        ),
        "one notice per acknowledged comment"
    );
    assert_eq!(
        texts(
            fleet,
            "SELECT dedupe_key AS text FROM notifications WHERE kind = 'charge_receipt'"
        )
        .await,
        sorted(
            outcome
                .charges
                .iter()
                .map(|(_, id)| format!("charge_receipt:{id}"))
                .collect()
        ),
        "one receipt per acknowledged charge"
    );
    assert_eq!(
        texts(
            fleet,
            "SELECT r.charge_id::text AS text FROM notifications n \
             JOIN refunds r ON n.dedupe_key = 'refund_notice:' || r.id::text \
             WHERE n.kind = 'refund_notice'"
        )
        .await,
        sorted(
            outcome
                .refunds
                .iter()
                .map(|(_, charge)| charge.clone())
                .collect()
        ),
        "one notice per acknowledged refund"
    );
    assert_eq!(
        texts(
            fleet,
            "SELECT kind || ' ' || state || ': ' || coalesce(last_error, skip_reason, '') AS text \
             FROM notifications WHERE state <> 'sent'"
        )
        .await,
        Vec::<String>::new(),
        "every notification sent"
    );
    let (smtp, slow_relay, email_api) = sinks;
    let received = copies_received(sinks);
    assert!(
        !smtp.received().is_empty()
            && !slow_relay.received().is_empty()
            && !email_api.emails().is_empty(),
        "mail went through one provider only"
    );
    assert_eq!(
        received.keys().cloned().collect::<Vec<_>>(),
        texts(fleet, "SELECT message_id AS text FROM notifications").await,
        "the SMTP server received each notification's message and nothing else"
    );
    let twice: Vec<&String> = received
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(id, _)| id)
        .collect();
    for id in &twice {
        if received[*id] > 2 {
            panic!(
                "{id} was received {} times: {}",
                received[*id],
                investigation(fleet, id, sinks).await
            );
        }
        let attempted_again = count_of(
            &fleet.database,
            &format!(
                "SELECT count(*) AS count FROM notifications \
                 WHERE message_id = '{id}' AND attempts > 1 AND {OUTCOME_UNKNOWN}"
            ),
        )
        .await
            == 1;
        if !attempted_again {
            panic!(
                "{id} was received twice though its row records no send whose outcome the \
                 service could not know: {}",
                investigation(fleet, id, sinks).await
            );
        }
    }
    assert!(
        twice.len() <= 4 * interruptions,
        "{} messages received twice after {interruptions} interrupted senders: {twice:?}",
        twice.len()
    );
}

/// How many copies of each `Message-ID` the two SMTP relays and the email API received
/// together.
fn copies_received(
    (smtp, slow_relay, email_api): (&SmtpServer, &SmtpServer, &EmailSimulatorHandle),
) -> BTreeMap<String, usize> {
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for message in smtp.received().into_iter().chain(slow_relay.received()) {
        *received
            .entry(message.header("Message-ID").trim().to_owned())
            .or_default() += 1;
    }
    for email in email_api.emails() {
        *received
            .entry(email.headers.get("Message-ID").cloned().unwrap_or_default())
            .or_default() += 1;
    }
    received
}

/// What to investigate a message received more than once with: its notification's row, where
/// each copy arrived, every instance's log lines about it, and whether each claim's transaction
/// committed (`pg_xact_status` of the `claim_transaction` its "notification claimed" line
/// names: a claim that reached its worker yet was rolled back shows `aborted` here, one given
/// back shows `committed`).
async fn investigation(
    fleet: &Fleet,
    id: &str,
    (smtp, slow_relay, email_api): (&SmtpServer, &SmtpServer, &EmailSimulatorHandle),
) -> String {
    let row = texts(
        fleet,
        &format!("SELECT to_jsonb(n)::text AS text FROM notifications n WHERE message_id = '{id}'"),
    )
    .await;
    let notification = id.trim_matches(['<', '>']).split('@').next().unwrap_or("");
    let lines: Vec<String> = (0..fleet.size())
        .flat_map(|index| {
            fleet
                .log_of(index)
                .lines()
                .filter(|line| line.contains(notification))
                .map(|line| format!("instance {index}: {line}"))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut claims = Vec::new();
    for line in &lines {
        if let Some(transaction) = claim_transaction_in(line) {
            let status = texts(
                fleet,
                &format!(
                    "SELECT coalesce(pg_xact_status('{transaction}'::xid8), 'unknown') AS text"
                ),
            )
            .await;
            claims.push(format!("claim transaction {transaction}: {status:?}"));
        }
    }
    let mut copies: Vec<String> = Vec::new();
    for (relay, server) in [
        ("instance 0's relay", smtp),
        ("instance 1's relay", slow_relay),
    ] {
        copies.extend(
            server
                .received()
                .iter()
                .filter(|message| message.header("Message-ID").trim() == id)
                .map(|message| format!("{relay}, X-Peer {}", message.header("X-Peer"))),
        );
    }
    copies.extend(
        email_api
            .emails()
            .iter()
            .filter(|email| email.headers.get("Message-ID").map(String::as_str) == Some(id))
            .map(|_| "the email API".to_owned()),
    );
    format!(
        "notification {notification}, its row {row:?}\ncopies: {copies:?}\n{claims:?}\n{}",
        lines.join("\n")
    )
}

/// The condition on a `notifications` row that it records a send whose outcome the service could
/// not know (the message handed over, no answer: docs/notifications.md), counted by the attempt
/// that gave up waiting or by the next claim after a worker that died.
const OUTCOME_UNKNOWN: &str = "unconfirmed_sends > 0";

/// Each message instance 1's relay received (it answered the end of some messages' data only
/// after [`slow_relay_delay`]) arrived once in all, through any provider: a message twice only
/// where the service could not know the outcome of its first send, and then it says so in its
/// row ([`OUTCOME_UNKNOWN`]); never three times.
async fn assert_the_slow_relay_got_each_message_once(
    fleet: &Fleet,
    sinks: (&SmtpServer, &SmtpServer, &EmailSimulatorHandle),
    outcome: &mut Outcome,
) {
    let received = copies_received(sinks);
    let through_the_slow_relay: std::collections::BTreeSet<String> = sinks
        .1
        .received()
        .iter()
        .map(|message| message.header("Message-ID").trim().to_owned())
        .collect();
    assert!(
        !through_the_slow_relay.is_empty(),
        "instance 1's relay received nothing"
    );
    let mut unknown = 0;
    let mut too_many = Vec::new();
    for id in &through_the_slow_relay {
        let copies = received[id];
        let outcome_unknown = copies == 2
            && count_of(
                &fleet.database,
                &format!(
                    "SELECT count(*) AS count FROM notifications \
                     WHERE message_id = '{id}' AND {OUTCOME_UNKNOWN}"
                ),
            )
            .await
                == 1;
        if copies != 1 && !outcome_unknown {
            too_many.push((id, copies));
        }
        unknown += usize::from(outcome_unknown);
    }
    if let [(id, copies), ..] = too_many.as_slice() {
        panic!(
            "{} of the {} messages instance 1's relay received arrived more than once with no \
             send whose outcome the service could not know recorded in their rows (Message-ID, \
             copies): {too_many:?}; the first, {id}, arrived {copies} times: {}",
            too_many.len(),
            through_the_slow_relay.len(),
            investigation(fleet, id, sinks).await
        );
    }
    outcome.counted(
        "messages instance 1's relay received (slow to answer for a phase), each once in all",
        through_the_slow_relay.len() - unknown,
    );
    outcome.counted(
        "of those, sent twice after a send whose outcome the service could not know (its row says so)",
        unknown,
    );
    let (held, _) = sinks.1.held();
    outcome.counted(
        "messages instance 1's relay held while slow before answering",
        held,
    );
}

/// The transaction id a "notification claimed" log line names (`claim_transaction`), if any.
fn claim_transaction_in(line: &str) -> Option<String> {
    let after = &line[line.find("claim_transaction")? + "claim_transaction".len()..];
    let digits: String = after
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then_some(digits)
}

/// No more logins let through than the login quota admits over each life of Redis (its keys,
/// the quota's state, are lost when it restarts), plus those sent while the limiter could not
/// ask Redis and let them through (docs/rate-limits.md: it fails open, for at most
/// [`FAIL_OPEN_TAIL_MS`] after Redis is back). And the quota did refuse logins.
fn assert_logins_within_their_quota(outcome: &Outcome, ended_ms: u64) {
    let (count, seconds) = LOGIN_QUOTA;
    let fail_open = [
        (
            outcome.marked(REDIS_RESTARTED),
            outcome.marked(REDIS_BACK) + FAIL_OPEN_TAIL_MS,
        ),
        (
            outcome.marked(REDIS_PAUSED),
            outcome.marked(REDIS_PAUSED) + REDIS_PAUSE.as_millis() as u64 + FAIL_OPEN_TAIL_MS,
        ),
    ];
    let lives = [
        (0, outcome.marked(REDIS_RESTARTED)),
        (outcome.marked(REDIS_RESTARTED), ended_ms),
    ];
    let logins = outcome.successes_of(Call::Login);
    let undecided = |sent: &u64| {
        fail_open
            .iter()
            .any(|(from, to)| (*from..=*to).contains(sent))
    };
    for (from, to) in lives {
        let admitted = logins
            .iter()
            .filter(|sent| (from..to).contains(*sent) && !undecided(sent))
            .count() as u64;
        // GCRA: a burst of `count`, then one every `seconds / count`.
        let quota = count + (to - from) * count / (seconds * 1000) + 1;
        assert!(
            admitted <= quota,
            "{admitted} logins admitted between {from} and {to} ms, over the quota's {quota}"
        );
    }
    let refused = outcome
        .failures
        .iter()
        .filter(|failure| {
            failure.call == Call::Login
                && failure.reason.as_deref() == Some(Reason::RateLimited.as_str())
        })
        .count();
    assert!(
        refused > 0 && !logins.is_empty(),
        "the load's logins never met the quota: {} admitted, {refused} refused",
        logins.len()
    );
}

/// The dashboard kept answering while its replica was down: every GetDashboard of that phase
/// answered OK (from the primary), and there were some.
fn assert_the_dashboard_rode_out_its_replica(outcome: &Outcome) {
    let (from, to) = outcome.phase_bounds(REPLICA_STOPPED);
    let dashboards: Vec<&str> = outcome
        .history
        .iter()
        .filter(|attempt| attempt.call == "GetDashboard" && (from..to).contains(&attempt.sent_ms))
        .map(|attempt| attempt.code.as_str())
        .collect();
    assert!(
        !dashboards.is_empty() && dashboards.iter().all(|code| *code == "Ok"),
        "GetDashboard while the replica was down: {dashboards:?}"
    );
}

/// Every acknowledged import succeeded once and made its two tickets exactly once; no other
/// import ran.
async fn assert_every_acknowledged_import_done_once(fleet: &Fleet, outcome: &Outcome) {
    assert_eq!(
        texts(
            fleet,
            &format!(
                "SELECT 'operations/' || id::text || ' ' || state AS text FROM operations \
                 WHERE account_id = '{}'",
                fleet.admin().account_id
            )
        )
        .await,
        sorted_values(
            outcome
                .imports
                .iter()
                .map(|(_, name)| format!("{name} succeeded"))
        ),
        "each acknowledged import ran once and succeeded, and no other"
    );
    assert_eq!(
        texts(
            fleet,
            "SELECT subject AS text FROM tickets WHERE subject LIKE 'import %'"
        )
        .await,
        sorted_values(
            outcome
                .imports
                .iter()
                .flat_map(|(key, _)| [format!("import {key} 1"), format!("import {key} 2")])
        ),
        "each acknowledged import's tickets exactly once"
    );
    assert!(!outcome.imports.is_empty(), "the load imported nothing");
}

/// Every payment event the service acknowledged to the provider (a delivery answered 2xx,
/// through Envoy, by any instance) is applied: processed in PostgreSQL, none dead. Polled for
/// [`PATIENCE`], as the provider may still be retrying deliveries the faults refused.
async fn assert_every_acknowledged_payment_event_applied(fleet: &Fleet) {
    let acknowledged = || -> std::collections::BTreeSet<String> {
        fleet
            .simulator
            .deliveries()
            .into_iter()
            .filter(|attempt| attempt.succeeded())
            .map(|attempt| attempt.event_id)
            .collect()
    };
    wait_until(
        "every acknowledged payment event applied",
        PATIENCE,
        || async {
            let processed: std::collections::BTreeSet<String> = texts(
                fleet,
                "SELECT id AS text FROM webhook_events WHERE state = 'processed'",
            )
            .await
            .into_iter()
            .collect();
            acknowledged().is_subset(&processed)
        },
    )
    .await;
    assert_eq!(
        texts(
            fleet,
            "SELECT id || ' ' || coalesce(last_error, '') AS text FROM webhook_events \
             WHERE state = 'dead'"
        )
        .await,
        Vec::<String>::new(),
        "payment events that could not be applied"
    );
    assert!(
        !acknowledged().is_empty(),
        "the provider delivered no event the service acknowledged"
    );
}

/// Another account on the fleet, with tickets the load's searches would find if they crossed
/// accounts (their subjects hold the word searched for): their ids.
async fn a_neighbouring_account(fleet: &Fleet) -> Vec<String> {
    let channel = fleet.envoy_channel();
    let neighbour = sign_up_through(&channel).await;
    let mut tickets = TicketServiceClient::new(channel);
    let mut ids = Vec::new();
    for index in 0..3 {
        let request = valid_create_request(&format!("the neighbour's load {index}"));
        ids.push(
            tickets
                .create_ticket(neighbour.request(request))
                .await
                .expect("a neighbour's ticket")
                .into_inner()
                .id,
        );
    }
    ids
}

/// No read answered another account's ticket: every ticket a GetTicket or a search returned is
/// of the load's account in PostgreSQL, though the neighbour's tickets match the search.
async fn assert_no_read_crossed_accounts(fleet: &Fleet, outcome: &Outcome, neighbours: &[String]) {
    let read: std::collections::BTreeSet<&str> = outcome
        .history
        .iter()
        .filter(|attempt| {
            attempt.code == "Ok" && matches!(attempt.call.as_str(), "GetTicket" | "SearchTickets")
        })
        .flat_map(|attempt| attempt.answer.split(','))
        .filter(|id| !id.is_empty())
        .collect();
    assert!(!read.is_empty(), "the load read no ticket");
    let quoted = |ids: &mut dyn Iterator<Item = &str>| {
        ids.map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let account = &fleet.admin().account_id;
    assert_eq!(
        texts(
            fleet,
            &format!(
                "SELECT id::text AS text FROM tickets \
                 WHERE id IN ({}) AND account_id <> '{account}'",
                quoted(&mut read.iter().copied())
            )
        )
        .await,
        Vec::<String>::new(),
        "reads answered tickets of another account"
    );
    assert_eq!(
        count_of(
            &fleet.database,
            &format!(
                "SELECT count(*) AS count FROM tickets WHERE id IN ({}) \
                 AND subject LIKE '%load%' AND account_id <> '{account}'",
                quoted(&mut neighbours.iter().map(String::as_str))
            )
        )
        .await,
        3,
        "the neighbour's tickets were there to be found"
    );
}

/// A reconciliation run made after the queues drained completed and found nothing: our ledger
/// and the provider's agree.
async fn assert_reconciliation_finds_nothing(fleet: &Fleet) {
    let drained = texts(fleet, "SELECT now()::text AS text").await.remove(0);
    let after = format!("started_at > '{drained}'::timestamptz");
    wait_until("a reconciliation run after the drain", PATIENCE, || async {
        count_of(
            &fleet.database,
            &format!(
                "SELECT count(*) AS count FROM reconciliation_runs \
                     WHERE status = 'completed' AND {after}"
            ),
        )
        .await
            > 0
    })
    .await;
    assert_eq!(
        texts(
            fleet,
            &format!(
                "SELECT f.kind || ' ' || coalesce(f.charge_id::text, '') || ' ' || f.details::text \
                 AS text FROM reconciliation_findings f \
                 JOIN reconciliation_runs r ON r.id = f.run_id WHERE r.{after}"
            )
        )
        .await,
        Vec::<String>::new(),
        "reconciliation after the run found differences; the refunds of each charge ({}) and its \
         activity ({})",
        texts(
            fleet,
            "SELECT charge_id::text || ': ' || string_agg(status || ' ' || amount_minor || ' ' \
             || coalesce(provider_refund_id, '-') || ' ' || created_at::text, '; ' ORDER BY created_at) \
             AS text FROM refunds GROUP BY charge_id"
        )
        .await
        .join(" | "),
        texts(
            fleet,
            "SELECT charge_id::text || ' ' || string_agg(to_jsonb(a)::text, ' ') AS text \
             FROM charge_activities a GROUP BY charge_id"
        )
        .await
        .join(" | ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_together_lose_no_write_pay_nothing_twice_and_answer_only_as_documented() {
    // A PostgreSQL of the test's own with a streaming replica the dashboard reads from: the
    // replica is stopped below, which the suite's shared pair cannot be.
    let pair = tokio::task::block_in_place(|| ReplicaPair::start("chaos"));
    let database_name = pair.migrated_database("chaos").await;
    let database = TestDatabase {
        elsewhere: Some(SecretString::from(pair.primary_url(&database_name))),
        name: database_name,
    };
    // Each instance reaches the primary through a proxy of its own: one can lose it alone.
    let postgres = socket_address_of(&pair.primary_url("postgres"));
    let proxies = [
        TcpProxy::start(postgres).await,
        TcpProxy::start(postgres).await,
        TcpProxy::start(postgres).await,
    ];
    let through: Vec<Option<&TcpProxy>> = proxies.iter().map(Some).collect();
    // And a Redis of their own, which loses its keys and pauses below.
    let mut redis = tokio::task::block_in_place(RedisServer::start);
    // And an SMTP server and an S3 store, which go away below; instance 1 sends through a relay
    // of its own, which is slow to answer for a phase.
    let mut smtp = SmtpServer::start_new().await;
    let mut slow_relay = SmtpServer::start_slow_when_switched(slow_relay_delay()).await;
    let mut storage = tokio::task::block_in_place(StorageServer::start);
    let mut settings = chaos_settings(&smtp, &storage);
    // A relay's reply to the end of a message waited for twice the slow relay's delay, not the
    // default ten minutes: long enough for every slow answer, short enough that a send whose
    // worker died while waiting (its lease extended for the wait) is taken over within the drain.
    settings.push((
        "SMTP_DATA_REPLY_TIMEOUT_SECS",
        (2 * slow_relay_delay().as_secs()).to_string(),
    ));
    settings.extend([
        (
            "DATABASE_READ_REPLICA_URL",
            pair.replica_url(&database.name),
        ),
        (
            "DATABASE_READ_REPLICA_LAG_SAMPLE_INTERVAL_MS",
            "200".to_owned(),
        ),
    ]);
    // Instance 2 sends its mail through the email API (the provider's simulator) instead of the
    // SMTP server: a notification is sent by whichever instance claims it, through either.
    let email_api = start_email_api().await;
    let through_the_api = [
        (2, "EMAIL_PROVIDER", "http".to_owned()),
        (2, "EMAIL_API_URL", email_api.base_url()),
        (2, "EMAIL_API_KEY", email_api.api_key().to_owned()),
        (1, "SMTP_PORT", slow_relay.port.to_string()),
    ];
    let mut fleet = Fleet::start_on(
        database,
        3,
        &through,
        &redis.url(),
        &settings,
        &through_the_api,
    )
    .await;
    // The account's own systems subscribe to its events before the load writes anything.
    let subscriber = subscribe(&fleet).await;
    let ticket_id = seed_ticket(&fleet).await;
    let neighbours = a_neighbouring_account(&fleet).await;
    // A tenant of its own that exports slowly beside the load, for a part of the run and then to
    // its end.
    let exporter = Exporter::with_tickets(
        &fleet.database,
        fleet.envoy.url(""),
        sign_up_through(&fleet.envoy_channel()).await,
        export_pace(),
    )
    .await;
    // The provider tells the fleet of every payment and refund through Envoy, signed.
    fleet.simulator.set_webhook_endpoint(Some(WebhookEndpoint {
        url: fleet.envoy.url("/v1/webhooks/payments"),
        secrets: vec![TEST_WEBHOOK_SECRET.to_owned()],
    }));
    // Calls per phase: `bench/chaos` holds each phase five times longer.
    let phase = |calls: u64| calls * chaos_scale();
    let load = start_load(&fleet, &ticket_id, WORKERS, 2);
    load.mark("steady");
    load.wait_for_calls(phase(100)).await;
    // The exporting tenant's ten streams run in some windows and not in others (no fault in
    // either), so that the others' calls with them are compared with the same run without them;
    // they then keep running beside every fault to the end of the load.
    let exporting = with_and_without_the_slow_exports(&load, &exporter, phase(200)).await;

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
    // Instance 1 is sent an import of thousands of rows, and stopped while it runs it.
    let held = an_import_held_by(&fleet, 1).await;
    load.mark(REDIS_RESTARTED);
    tokio::task::block_in_place(|| redis.restart());
    fleet.stop(1).await;
    held.assert_given_back_by(&fleet, 1);
    fleet.start_instance(1).await;
    load.mark(REDIS_BACK);
    load.wait_for_calls(phase(100)).await;
    load.mark(REDIS_PAUSED);
    tokio::task::block_in_place(|| redis.pause(REDIS_PAUSE));
    load.wait_for_calls(phase(100)).await;
    // The SMTP servers go away: mail waits in the outbox, nothing else notices.
    load.mark("SMTP servers down");
    smtp.stop().await;
    slow_relay.stop().await;
    load.wait_for_calls(phase(100)).await;
    smtp.start().await;
    slow_relay.start().await;
    load.mark("SMTP servers back");
    load.wait_for_calls(phase(50)).await;
    // The email API answers 500s, then accepts and drops its answers: instance 2's mail is
    // retried under its idempotency keys, and the API accepts each message once.
    load.mark("email API failing (500s, then answers dropped)");
    email_api
        .add_fault(EmailFaultRule::new(
            EmailFaultAction::ServerError { status: 500 },
            10,
        ))
        .expect("a valid fault");
    email_api
        .add_fault(EmailFaultRule::new(EmailFaultAction::AcceptThenDrop, 5))
        .expect("a valid fault");
    load.wait_for_calls(phase(100)).await;
    wait_until(
        "instance 2's mail met the email API's faults",
        PATIENCE,
        || async {
            email_api
                .faults()
                .iter()
                .all(|fault| fault.remaining == Some(0))
        },
    )
    .await;
    load.mark("email API back");
    load.wait_for_calls(phase(50)).await;
    // Instance 1's relay answers the end of each message's data only after a delay longer than
    // the instances once gave a send: it has the message, and has not said so yet.
    load.mark(SLOW_RELAY);
    slow_relay.slow(true);
    load.wait_for_calls(phase(100)).await;
    wait_until("instance 1's relay held a message", PATIENCE, || async {
        slow_relay.held().0 > 0
    })
    .await;
    slow_relay.slow(false);
    load.mark("instance 1's relay answering at once again");
    wait_until(
        "instance 1's relay answered every message it held",
        slow_relay_delay() + PATIENCE,
        || async {
            let (held, answered) = slow_relay.held();
            held == answered
        },
    )
    .await;
    load.wait_for_calls(phase(50)).await;
    // The subscriber's endpoint answers 503, then not at all (each attempt cut at its 2 s):
    // deliveries wait and are retried, nothing else notices.
    load.mark(SUBSCRIBER_FAILING);
    for behaviour in ["status:503", "hang"] {
        subscriber.answer(behaviour).await;
        load.wait_for_calls(phase(100)).await;
        subscriber.wait_until_met(behaviour).await;
    }
    subscriber.answer("ok").await;
    load.mark("subscriber's endpoint back");
    load.wait_for_calls(phase(50)).await;
    // The S3 store crashes: uploads are refused (the client sends them again under their keys),
    // nothing else notices; then it is started again on its data.
    load.mark("S3 store down (killed)");
    storage.kill();
    load.wait_for_calls(phase(100)).await;
    tokio::task::block_in_place(|| storage.restart());
    load.mark("S3 store back");
    load.wait_for_calls(phase(50)).await;
    // The replica crashes: the dashboard reads the primary instead, and nothing else notices;
    // then it is started again and catches up.
    load.mark(REPLICA_STOPPED);
    tokio::task::block_in_place(|| pair.stop_replica());
    load.wait_for_calls(phase(100)).await;
    tokio::task::block_in_place(|| pair.start_replica());
    load.mark("PostgreSQL replica back");
    load.wait_for_calls(phase(50)).await;
    // PostgreSQL crashes and is restarted (crash recovery), for every instance at once, while
    // the load makes its calls; the replica reconnects to it by itself.
    load.mark("PostgreSQL restarted: crashed, down for every instance");
    tokio::task::block_in_place(|| pair.stop_primary());
    load.wait_for_calls(phase(50)).await;
    tokio::task::block_in_place(|| pair.start_primary());
    for index in 0..3 {
        fleet.wait_serving(index).await;
    }
    load.mark("PostgreSQL back: every instance serving");
    load.wait_for_calls(phase(50)).await;
    // A burst of ten times the callers on top of the steady load, held for a stated time: 2 s
    // here, 10 s in `bench/chaos`.
    load.mark("burst: ten times the callers");
    let burst = start_burst(&fleet, &ticket_id, &load);
    tokio::time::sleep(Duration::from_secs(2 * chaos_scale())).await;
    assert!(burst.calls() > 0, "the burst made no call");
    let burst = burst.stop().await;
    load.mark("steady again");
    load.wait_for_calls(phase(50)).await;
    let epoch = load.epoch();
    let mut outcome = load.stop().await;
    outcome.merge(burst);
    let (exports, most_exports) = exporting.stop().await;
    outcome.exports.extend(exports);
    let stopped_ms = u64::try_from(epoch.elapsed().as_millis()).unwrap();
    fleet.simulator.clear_faults();
    outcome.mark(epoch, "load stopped: draining");
    if let Some(path) = std::env::var_os("SUPPORTDESK_CHAOS_HISTORY") {
        // Written now too, so that a failure to drain leaves the history to investigate.
        outcome.write_history_to(std::path::Path::new(&path));
    }
    wait_for_the_queues_to_drain(&fleet).await;
    // A delivery lease of the subscriber's settings is 15 s: a queue stalled longer than that
    // and a margin is stuck, not slow.
    subscriber
        .wait_for_deliveries(&fleet, Duration::from_secs(20), PATIENCE * 10)
        .await;
    outcome.mark(
        epoch,
        "drained: every notification sent and event delivered, no charge or refund pending",
    );
    assert_reconciliation_finds_nothing(&fleet).await;
    outcome.mark(epoch, "reconciled: a run after the drain found nothing");
    if let Some(path) = std::env::var_os("SUPPORTDESK_CHAOS_HISTORY") {
        outcome.write_history_to(std::path::Path::new(&path));
    }

    assert_every_acknowledged_write_exactly_once(&fleet, &outcome).await;
    assert_every_answer_documented_and_no_panic(&fleet, &outcome, "faults-together");
    let cut = outcome.cut_by_kills();
    outcome.counted(
        "calls cut mid-answer when instance 0 was killed (a stream reset, no status)",
        cut,
    );
    // Senders that may be interrupted after the server accepted a message and before they
    // recorded it: instance 0 killed, instance 1 stopped, instance 2 cut off from PostgreSQL,
    // instance 1 stalled, PostgreSQL gone for all three, the SMTP server stopped under all three.
    assert_the_slow_exports_left_the_others_alone(&mut outcome);
    assert_the_exporter_was_answered_only_as_documented(&mut outcome, most_exports);
    // The slow relay's messages first: its failure names the notification and its copies.
    assert_the_slow_relay_got_each_message_once(
        &fleet,
        (&smtp, &slow_relay, &email_api),
        &mut outcome,
    )
    .await;
    assert_every_notification_sent_exactly_once(
        &fleet,
        (&smtp, &slow_relay, &email_api),
        &outcome,
        10,
    )
    .await;
    assert_every_acknowledged_upload_ready_once(&fleet, &storage, &outcome).await;
    assert_logins_within_their_quota(&outcome, stopped_ms);
    assert_every_acknowledged_payment_event_applied(&fleet).await;
    assert_every_acknowledged_import_done_once(&fleet, &outcome).await;
    held.assert_finished_once(&fleet, &mut outcome).await;
    subscriber
        .assert_every_event_delivered(&fleet, &mut outcome)
        .await;
    assert_the_dashboard_rode_out_its_replica(&outcome);
    assert_no_read_crossed_accounts(&fleet, &outcome, &neighbours).await;
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
    let sends = email_api.requests();
    assert!(
        sends.iter().any(|send| send.status == Some(500))
            && sends.iter().any(|send| send.status.is_none()),
        "the email API's faults did not happen: {sends:?}"
    );
    // Updates met the faults too, and some were refused for a stale etag at most.
    assert!(
        outcome.refused.iter().all(|(call, _)| matches!(
            call,
            Call::UpdateTicket | Call::RefundCharge | Call::CreateCharge
        )),
        "refused writes other than updates, refunds and abandoned charges: {:?}",
        outcome.refused
    );
    // Every check passed: the history gets what they counted, for the report.
    if let Some(path) = std::env::var_os("SUPPORTDESK_CHAOS_HISTORY") {
        outcome.write_history_to(std::path::Path::new(&path));
    }
}
