//! Envoy's retry rule (docs/deployment.md, "Retries"): generated from the method table, read back
//! from the configuration a deployment renders and checked for every RPC, and seen at work in a
//! real Envoy whose connection to the service is cut while a call is inside PostgreSQL.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_norway::Value;
use supportdesk::wire::methods::{MethodTable, Retry};
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use supportdesk::wire::retry_rule::RetryRule;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::envoy::{Envoy, render_with};
use crate::support::proxy::TcpProxy;
use crate::support::{
    PATIENCE, TestApp, backends_waiting_on_locks, busy_backends, valid_create_request, wait_until,
    with_key,
};

/// The conditions after which a call may or may not have run: a retry on any of them runs it
/// again. (Envoy's `5xx`, `gateway-error` and `retriable-status-codes` include such answers.)
const UNKNOWN_OUTCOME: &[&str] = &[
    "reset",
    "unavailable",
    "5xx",
    "gateway-error",
    "retriable-status-codes",
    "retriable-4xx",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "http3-post-connect-failure",
];

/// The conditions under which the service never saw the call.
const NEVER_REACHED: &[&str] = &["connect-failure", "refused-stream", "reset-before-request"];

fn table() -> &'static MethodTable {
    MethodTable::get().expect("the method table")
}

#[test]
fn the_rendered_configuration_holds_the_retry_routes_the_method_table_generates_before_the_catch_all()
 {
    let rendered = routes(&render_with(&[]));
    let generated: Vec<Value> = RetryRule::of(table())
        .envoy_routes("15s", "5.000s")
        .into_iter()
        .map(|route| serde_norway::to_value(route).expect("JSON is YAML"))
        .collect();
    assert!(!generated.is_empty());
    let first = rendered
        .iter()
        .position(|route| route == &generated[0])
        .expect("the first retry route is rendered");
    assert_eq!(
        rendered[first..first + generated.len()],
        generated[..],
        "the retry routes are rendered in the method table's order, each as generated"
    );
    assert_eq!(
        rendered[first + generated.len()]["name"].as_str(),
        Some("catch_all"),
        "the catch-all route comes right after them"
    );
}

/// The rendered configuration's routes, in order.
fn routes(rendered: &str) -> Vec<Value> {
    let config: Value = serde_norway::from_str(rendered).expect("Envoy's configuration is YAML");
    let listener = config["static_resources"]["listeners"]
        .as_sequence()
        .expect("listeners")
        .iter()
        .find(|listener| listener["name"] == "rest")
        .expect("the rest listener");
    listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]
        ["routes"]
        .as_sequence()
        .expect("routes")
        .clone()
}

/// Whether `route` matches a gRPC call of `path`, with an `idempotency-key` or not, as Envoy
/// matches it. A matcher this does not know fails the test, so that it cannot pass by ignoring one.
fn matches(route: &Value, path: &str, keyed: bool) -> bool {
    let matcher = &route["match"];
    let path_matches = if let Some(exact) = matcher["path"].as_str() {
        exact == path
    } else if let Some(prefix) = matcher["prefix"].as_str() {
        path.starts_with(prefix)
    } else if matcher["safe_regex"].is_mapping() {
        // A regex route (the plain GET routes of src/wire/envoy/rest_routes.rs) is decided by the
        // method it requires: a gRPC call is a POST.
        let method = matcher["headers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|header| header["name"] == ":method")
            .and_then(|header| header["string_match"]["exact"].as_str());
        match method {
            Some(method) if method != "POST" => return false,
            _ => panic!("a regex route matcher the test cannot decide: {matcher:?}"),
        }
    } else {
        panic!("a route matcher the test does not know: {matcher:?}");
    };
    let headers = matcher["headers"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    path_matches
        && headers.iter().all(|header| {
            let value = match header["name"].as_str().expect("a header name") {
                "idempotency-key" => keyed.then_some("a-key"),
                ":method" => Some("POST"),
                "content-type" => Some("application/grpc"),
                other => panic!("a header matcher the test does not know: {other}"),
            };
            if header["present_match"] == Value::Bool(true) {
                value.is_some()
            } else if let Some(exact) = header["string_match"]["exact"].as_str() {
                value == Some(exact)
            } else {
                panic!("a header matcher the test does not know: {header:?}")
            }
        })
}

/// The retry conditions of the route Envoy picks for a gRPC call of `path`.
fn retried_on(routes: &[Value], path: &str, keyed: bool) -> (BTreeSet<String>, Value) {
    let route = routes
        .iter()
        .find(|route| matches(route, path, keyed))
        .unwrap_or_else(|| panic!("no route for {path}"));
    let policy = route["route"]["retry_policy"].clone();
    let conditions = policy["retry_on"]
        .as_str()
        .unwrap_or_else(|| panic!("the route of {path} has no retry policy: {route:?}"))
        .split(',')
        .map(str::to_owned)
        .collect();
    (conditions, route.clone())
}

#[test]
fn envoy_sends_a_call_that_may_have_run_again_only_when_its_rpc_is_safe_or_it_carries_a_key() {
    let routes = routes(&render_with(&[]));
    // Streams Envoy cannot send twice whatever the declaration: a body that streams past it, an
    // answer without a deadline to fit tries into (their routes say why).
    let streams = [
        "/supportdesk.v1.AttachmentService/UploadAttachment",
        "/supportdesk.v1.TicketService/ExportTickets",
        "/supportdesk.v1.EventService/WatchEvents",
    ];
    let mut retried = 0;
    for method in table().api_methods() {
        for keyed in [false, true] {
            let (conditions, route) = retried_on(&routes, &method.path, keyed);
            let unknown: Vec<&String> = conditions
                .iter()
                .filter(|condition| UNKNOWN_OUTCOME.contains(&condition.as_str()))
                .collect();
            let may_repeat =
                method.retry == Retry::Safe || (method.retry == Retry::WithKey && keyed);
            assert!(
                unknown.is_empty() || may_repeat,
                "{} ({:?}, keyed: {keyed}) may have run when Envoy retries it on {unknown:?}",
                method.path,
                method.retry
            );
            if may_repeat && !streams.contains(&method.path.as_str()) {
                assert_eq!(
                    conditions,
                    ["connect-failure", "refused-stream", "reset", "unavailable"]
                        .map(str::to_owned)
                        .into(),
                    "{} (keyed: {keyed})",
                    method.path
                );
                retried += 1;
            } else {
                assert_eq!(
                    conditions,
                    NEVER_REACHED.iter().map(|c| (*c).to_owned()).collect(),
                    "{} (keyed: {keyed}): only what never reached the service",
                    method.path
                );
            }
            let policy = &route["route"]["retry_policy"];
            assert!(
                policy["retry_host_predicate"][0]["name"]
                    == "envoy.retry_host_predicates.previous_hosts",
                "{}: a retry goes to another instance",
                method.path
            );
            if let Some(per_try) = policy["per_try_timeout"].as_str() {
                let timeout = route["route"]["timeout"]
                    .as_str()
                    .expect("a route deadline");
                assert!(
                    seconds(per_try) * 3.0 <= seconds(timeout),
                    "{}: three tries of {per_try} fit in the deadline {timeout}",
                    method.path
                );
            }
        }
    }
    // Every read with and without a key, every keyed write, but the three streams (ExportTickets
    // and WatchEvents both ways, UploadAttachment keyed).
    let rule = RetryRule::of(table());
    assert_eq!(retried, 2 * rule.safe.len() + rule.with_key.len() - 5);
}

#[test]
fn the_retries_share_a_budget_and_each_instance_is_health_checked_within_the_drain_delay() {
    for delay_ms in [300_u64, 1500, 3000, 10_000] {
        let rendered = render_with(&[("SHUTDOWN_DELAY_MS", delay_ms.to_string())]);
        let config: Value = serde_norway::from_str(&rendered).unwrap();
        let cluster = config["static_resources"]["clusters"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|cluster| cluster["name"] == "supportdesk")
            .expect("the supportdesk cluster")
            .clone();
        assert_eq!(cluster["lb_policy"], "LEAST_REQUEST");
        let check = &cluster["health_checks"][0];
        assert_eq!(check["grpc_health_check"]["service_name"], "");
        let interval = seconds(check["interval"].as_str().unwrap());
        let threshold = check["unhealthy_threshold"].as_u64().unwrap() as f64;
        let delay = delay_ms as f64 / 1000.0;
        assert!(
            interval * threshold < delay,
            "with SHUTDOWN_DELAY_MS={delay_ms} Envoy notices a draining instance after \
             {threshold} checks {interval} s apart: within the delay"
        );
        assert_eq!(
            seconds(check["no_traffic_interval"].as_str().unwrap()),
            interval
        );
        let budget = &cluster["circuit_breakers"]["thresholds"][0]["retry_budget"];
        assert_eq!(budget["budget_percent"]["value"].as_f64(), Some(20.0));
        assert!(cluster["outlier_detection"]["max_ejection_percent"].as_u64() < Some(50));
    }
}

/// `"0.500s"` in seconds.
fn seconds(duration: &str) -> f64 {
    duration
        .strip_suffix('s')
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("a duration in seconds: {duration}"))
}

/// The service behind a proxy behind Envoy: the proxy cuts the connection while a call is held
/// inside PostgreSQL by a table lock the test holds.
struct CutWhileInside {
    app: TestApp,
    proxy: TcpProxy,
    envoy: Envoy,
    tickets: TicketServiceClient<Channel>,
}

impl CutWhileInside {
    async fn start() -> Self {
        let app = TestApp::spawn().await;
        let proxy = TcpProxy::start(app.address).await;
        let envoy = Envoy::start_in_front_of(proxy.address.port()).await;
        let channel = Channel::from_shared(envoy.url(""))
            .unwrap()
            .connect()
            .await
            .expect("connect to Envoy");
        Self {
            app,
            proxy,
            envoy,
            tickets: TicketServiceClient::new(channel),
        }
    }

    /// Runs `call` while `tickets` is locked, cuts the service's connection once the call waits
    /// for the lock, lets connections through again and releases the lock; returns what the
    /// caller got and how many times Envoy sent a call again.
    async fn cut_during<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, tonic::Status>> + Send + 'static,
    ) -> (Result<T, tonic::Status>, u64) {
        let retries_before = self
            .envoy
            .stat("cluster.supportdesk.upstream_rq_retry")
            .await;
        let mut lock = self.app.database.connect().await;
        diesel_async::RunQueryDsl::execute(diesel::sql_query("BEGIN"), &mut lock)
            .await
            .unwrap();
        diesel_async::RunQueryDsl::execute(
            diesel::sql_query("LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE"),
            &mut lock,
        )
        .await
        .unwrap();
        let call = tokio::spawn(call);
        wait_until("the call waiting for the lock", PATIENCE, || async {
            backends_waiting_on_locks(&self.app.database).await >= 1
        })
        .await;
        self.proxy.cut();
        self.proxy.restore();
        // Envoy has seen the reset (and sent any retry) before the lock goes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        diesel_async::RunQueryDsl::execute(diesel::sql_query("ROLLBACK"), &mut lock)
            .await
            .unwrap();
        let answer = call.await.expect("joined");
        let retries = self
            .envoy
            .stat("cluster.supportdesk.upstream_rq_retry")
            .await
            - retries_before;
        (answer, retries)
    }
}

#[tokio::test]
async fn a_read_cut_off_inside_the_service_is_sent_again_and_answered() {
    let setup = CutWhileInside::start().await;
    let mut tickets = setup.tickets.clone();
    let admin = setup.app.admin.clone();
    let (answer, retries) = setup
        .cut_during(async move {
            tickets
                .list_tickets(admin.request(v1::ListTicketsRequest::default()))
                .await
        })
        .await;
    answer.expect("the retry answers the list");
    assert_eq!(retries, 1);
}

#[tokio::test]
async fn a_write_without_a_key_cut_off_inside_the_service_is_never_sent_again() {
    let setup = CutWhileInside::start().await;
    let mut tickets = setup.tickets.clone();
    let admin = setup.app.admin.clone();
    let (answer, retries) = setup
        .cut_during(async move {
            let mut request = admin.request(valid_create_request("cut off without a key"));
            // Envoy's own retry headers, from a client: an edge proxy must not honour them.
            for (name, value) in [
                ("x-envoy-retry-on", "reset,5xx,connect-failure"),
                ("x-envoy-retry-grpc-on", "unavailable,cancelled"),
                ("x-envoy-max-retries", "5"),
            ] {
                request.metadata_mut().insert(name, value.parse().unwrap());
            }
            tickets.create_ticket(request).await
        })
        .await;
    let status = answer.expect_err("the cut-off create is not answered with a ticket");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(retries, 0, "Envoy sent the unkeyed create again");
    // At most the one attempt ran (PostgreSQL may have committed it after the cut).
    wait_until("the cut-off backend finishing", PATIENCE, || async {
        busy_backends(&setup.app.database).await == 0
    })
    .await;
    let created = crate::support::count_of(
        &setup.app.database,
        "SELECT count(*) AS count FROM tickets WHERE subject = 'cut off without a key'",
    )
    .await;
    assert!(created <= 1, "{created} tickets from one call");
}

#[tokio::test]
async fn a_keyed_write_cut_off_inside_the_service_is_sent_again_under_its_key() {
    let setup = CutWhileInside::start().await;
    let mut tickets = setup.tickets.clone();
    let admin = setup.app.admin.clone();
    let (_, retries) = setup
        .cut_during(async move {
            tickets
                .create_ticket(with_key(
                    admin.request(valid_create_request("cut off with a key")),
                    &uuid::Uuid::now_v7().to_string(),
                ))
                .await
        })
        .await;
    assert_eq!(retries, 1);
    wait_until("the cut-off backend finishing", PATIENCE, || async {
        busy_backends(&setup.app.database).await == 0
    })
    .await;
    let created = crate::support::count_of(
        &setup.app.database,
        "SELECT count(*) AS count FROM tickets WHERE subject = 'cut off with a key'",
    )
    .await;
    assert!(created <= 1, "{created} tickets from one keyed call");
}
