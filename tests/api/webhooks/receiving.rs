//! Receiving the payment provider's webhooks through Envoy, as the provider sends them: the exact
//! bytes signed with Stripe's scheme, stored once in PostgreSQL, acknowledged without processing.

use std::time::{Duration, Instant};

use diesel::sql_types::{Bytea, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use serde_json::{Value, json};
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;

use crate::support::envoy::Envoy;
use crate::support::{PATIENCE, TEST_WEBHOOK_SECRET, TestApp, assert_json_reason};

/// The secret being rotated out, in the rotation tests.
const PREVIOUS_WEBHOOK_SECRET: &str = "whsec_test_previous_0123456789abcdef";

/// A test app that accepts deliveries signed with `secrets`, and Envoy in front of it.
async fn app_with_secrets(secrets: &[&str]) -> (TestApp, Envoy) {
    let secrets: Vec<secrecy::SecretString> = secrets
        .iter()
        .map(|secret| secrecy::SecretString::from((*secret).to_owned()))
        .collect();
    let app = TestApp::spawn_with(|settings| settings.webhook_receiving.secrets = secrets).await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    (app, envoy)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An event as the provider would send it, with a fresh id.
pub(crate) fn event(event_type: &str, object: Value) -> (String, Vec<u8>) {
    let id = format!("evt_{}", uuid::Uuid::now_v7().simple());
    let body = json!({
        "id": id,
        "object": "event",
        "type": event_type,
        "created": now(),
        "livemode": false,
        "data": {"object": object},
    });
    (id, serde_json::to_vec(&body).expect("JSON"))
}

/// The `Stripe-Signature` header the provider sends for `body` at `timestamp`.
pub(crate) fn signed(body: &[u8], secrets: &[&str], timestamp: i64) -> String {
    let secrets: Vec<String> = secrets.iter().map(|secret| (*secret).to_owned()).collect();
    payment_simulator::webhooks::signature_header(body, &secrets, timestamp)
}

/// POSTs `body` to `/v1/webhooks/payments` through Envoy with `signature` (none when `None`).
pub(crate) async fn deliver(
    envoy: &Envoy,
    body: &[u8],
    signature: Option<&str>,
) -> (StatusCode, Value) {
    deliver_to(
        envoy.url("/v1/webhooks/payments"),
        body.to_vec(),
        signature.map(str::to_owned),
    )
    .await
}

/// [`deliver`]s `body` signed now with the test instances' secret, as the provider sends it.
async fn deliver_signed(envoy: &Envoy, body: &[u8]) -> (StatusCode, Value) {
    deliver(
        envoy,
        body,
        Some(&signed(body, &[TEST_WEBHOOK_SECRET], now())),
    )
    .await
}

/// [`deliver`] with owned arguments, for deliveries running as tasks of their own.
async fn deliver_to(url: String, body: Vec<u8>, signature: Option<String>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json; charset=utf-8")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    let response = request.send().await.expect("POST /v1/webhooks/payments");
    let status = response.status();
    let text = response.text().await.expect("a body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

#[derive(diesel::QueryableByName, Debug, PartialEq, Eq)]
pub(crate) struct StoredRow {
    #[diesel(sql_type = Text)]
    pub(crate) id: String,
    #[diesel(sql_type = Text)]
    pub(crate) event_type: String,
    #[diesel(sql_type = Bytea)]
    pub(crate) payload: Vec<u8>,
    #[diesel(sql_type = Text)]
    pub(crate) state: String,
    #[diesel(sql_type = Integer)]
    pub(crate) attempts: i32,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub(crate) account_id: Option<uuid::Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub(crate) charge_id: Option<uuid::Uuid>,
}

/// Every row of `webhook_events`, read straight from PostgreSQL.
pub(crate) async fn stored_events(app: &TestApp) -> Vec<StoredRow> {
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "SELECT id, event_type, payload, state, attempts, account_id, charge_id \
         FROM webhook_events ORDER BY received_at, id",
    )
    .load(&mut conn)
    .await
    .expect("read webhook_events")
}

/// How long the endpoint may take to acknowledge a delivery (docs/webhooks.md, "Guarantees"):
/// well inside the 5 s the provider waits for an answer before it counts the attempt as failed.
const ACKNOWLEDGEMENT_BOUND: Duration = Duration::from_secs(3);

/// The answer to a delivery the service must refuse as INVALID_ARGUMENT with an ErrorInfo and
/// nothing else; the caller asserts its reason.
async fn refused(envoy: &Envoy, body: &[u8], signature: Option<&str>) -> Value {
    let (status, answer) = deliver(envoy, body, signature).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], 3, "{answer}");
    let details = answer["details"].as_array().expect("details");
    assert_eq!(details.len(), 1, "ErrorInfo and nothing else: {answer}");
    answer
}

#[tokio::test]
async fn a_signed_delivery_is_acknowledged_and_stored_received_with_its_exact_bytes() {
    let (app, envoy) = app_with_secrets(&[TEST_WEBHOOK_SECRET]).await;
    let (id, body) = event(
        "payment_intent.succeeded",
        json!({"id": "pi_unknown", "object": "payment_intent", "metadata": {}}),
    );
    let (status, answer) = deliver_signed(&envoy, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"eventId": id, "duplicate": false}));
    let rows = stored_events(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, id);
    assert_eq!(rows[0].event_type, "payment_intent.succeeded");
    assert_eq!(
        rows[0].payload, body,
        "the bytes signed are the bytes stored"
    );
    assert_eq!(rows[0].state, "received");
    assert_eq!(rows[0].attempts, 0);
    assert_eq!(
        (rows[0].account_id, rows[0].charge_id),
        (None, None),
        "a payment that is not ours belongs to no account"
    );
}

#[tokio::test]
async fn twenty_concurrent_deliveries_of_one_event_are_all_acknowledged_and_stored_once() {
    let (app, envoy) = app_with_secrets(&[TEST_WEBHOOK_SECRET]).await;
    let (id, body) = event("charge.refunded", json!({"id": "ch_1", "object": "charge"}));
    let signature = signed(&body, &[TEST_WEBHOOK_SECRET], now());
    let deliveries = (0..20).map(|_| {
        deliver_to(
            envoy.url("/v1/webhooks/payments"),
            body.clone(),
            Some(signature.clone()),
        )
    });
    let answers = futures_join_all(deliveries).await;
    let mut first = 0;
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::OK, "{answer}");
        assert_eq!(answer["eventId"], id.as_str());
        if answer["duplicate"] == false {
            first += 1;
        }
    }
    assert_eq!(
        first, 1,
        "exactly one delivery stored the event: {answers:?}"
    );
    let rows = stored_events(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].payload, body);
    // And a redelivery later, as the provider retries, is a duplicate too.
    let (status, answer) = deliver(&envoy, &body, Some(&signature)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"eventId": id, "duplicate": true}));
    assert_eq!(stored_events(&app).await.len(), 1);
}

/// Runs every future at once and collects their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for (index, future) in futures.enumerate() {
        tasks.spawn(async move { (index, future.await) });
    }
    let mut outputs: Vec<(usize, F::Output)> = tasks.join_all().await;
    outputs.sort_by_key(|(index, _)| *index);
    outputs.into_iter().map(|(_, output)| output).collect()
}

#[tokio::test]
async fn forged_stale_future_restamped_missing_and_malformed_signatures_are_refused_storing_nothing()
 {
    let (app, envoy) = app_with_secrets(&[TEST_WEBHOOK_SECRET]).await;
    let (_, body) = event(
        "payment_intent.succeeded",
        json!({"object": "payment_intent"}),
    );
    let now = now();
    let genuine = signed(&body, &[TEST_WEBHOOK_SECRET], now);
    let old_v1 = genuine.split_once(",v1=").expect("a v1").1;

    let forged = signed(&body, &["whsec_attacker_guess_0123456789"], now);
    assert_json_reason(
        &refused(&envoy, &body, Some(&forged)).await,
        Reason::WebhookSignatureMismatch,
    );
    // A captured delivery replayed later with a fresh timestamp and its old v1.
    let restamped = format!("t={},v1={old_v1}", now + 1);
    assert_json_reason(
        &refused(&envoy, &body, Some(&restamped)).await,
        Reason::WebhookSignatureMismatch,
    );
    // The signed bytes changed after signing.
    let mut mangled = body.clone();
    mangled.extend_from_slice(b" ");
    assert_json_reason(
        &refused(&envoy, &mangled, Some(&genuine)).await,
        Reason::WebhookSignatureMismatch,
    );

    let stale = signed(&body, &[TEST_WEBHOOK_SECRET], now - 301);
    assert_json_reason(
        &refused(&envoy, &body, Some(&stale)).await,
        Reason::WebhookSignatureStale,
    );
    let from_the_future = signed(&body, &[TEST_WEBHOOK_SECRET], now + 600);
    assert_json_reason(
        &refused(&envoy, &body, Some(&from_the_future)).await,
        Reason::WebhookSignatureStale,
    );

    assert_json_reason(
        &refused(&envoy, &body, None).await,
        Reason::WebhookSignatureMissing,
    );
    for malformed in [
        format!("v1={old_v1}"),
        format!("t={now}"),
        format!("t=soon,v1={old_v1}"),
        format!("t={now},v1=not-hex"),
        "t".repeat(3000),
    ] {
        assert_json_reason(
            &refused(&envoy, &body, Some(&malformed)).await,
            Reason::WebhookSignatureMalformed,
        );
    }
    assert!(
        stored_events(&app).await.is_empty(),
        "nothing refused was stored"
    );

    // The genuine delivery still goes through afterwards.
    let (status, _) = deliver(&envoy, &body, Some(&genuine)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored_events(&app).await.len(), 1);
}

#[tokio::test]
async fn a_signed_body_that_is_not_an_event_is_refused_naming_the_body() {
    let (app, envoy) = app_with_secrets(&[TEST_WEBHOOK_SECRET]).await;
    for body in [
        &b"not json"[..],
        br#"{"type":"payment_intent.succeeded","created":1795000000}"#,
        br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#,
    ] {
        let signature = signed(body, &[TEST_WEBHOOK_SECRET], now());
        let (status, answer) = deliver(&envoy, body, Some(&signature)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_json_reason(&answer, Reason::WebhookPayloadInvalid);
        let violation = answer["details"]
            .as_array()
            .and_then(|details| {
                details
                    .iter()
                    .find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.BadRequest")
            })
            .expect("a BadRequest");
        assert_eq!(violation["fieldViolations"][0]["field"], "http_body.data");
    }
    assert!(stored_events(&app).await.is_empty());
}

#[tokio::test]
async fn a_signed_body_postgresql_cannot_store_is_refused_naming_the_member_and_stores_nothing() {
    let (app, envoy) = app_with_secrets(&[TEST_WEBHOOK_SECRET]).await;
    let created = now();
    for (body, names) in [
        (
            format!(r#"{{"id":"evt_nul_type","type":"charge.\u0000refunded","created":{created}}}"#)
                .into_bytes(),
            "`type` holds a NUL character",
        ),
        (
            format!(
                r#"{{"id":"evt_nul_reason","type":"charge.dispute.created","created":{created},
                    "data":{{"object":{{"id":"dp_1","payment_intent":"pi_1","reason":"fraud\u0000"}}}}}}"#
            )
            .into_bytes(),
            "`data.object.reason` holds a NUL character",
        ),
        (
            [
                &br#"{"id":"evt_latin1","type":"charge.refunded","created":"#[..],
                created.to_string().as_bytes(),
                b",\"data\":{\"object\":{\"reason\":\"caf\xe9\"}}}",
            ]
            .concat(),
            "is not UTF-8 text",
        ),
        (
            br#"{"id":"evt_year_minus_98000","type":"charge.refunded","created":-3155695200000}"#
                .to_vec(),
            "`created` must be a time in Unix seconds, in years 1 to 9999",
        ),
    ] {
        let signature = signed(&body, &[TEST_WEBHOOK_SECRET], now());
        let (status, answer) = deliver(&envoy, &body, Some(&signature)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_json_reason(&answer, Reason::WebhookPayloadInvalid);
        let violation = answer["details"]
            .as_array()
            .and_then(|details| {
                details
                    .iter()
                    .find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.BadRequest")
            })
            .expect("a BadRequest");
        assert_eq!(violation["fieldViolations"][0]["field"], "http_body.data");
        let description = violation["fieldViolations"][0]["description"]
            .as_str()
            .unwrap();
        assert!(description.contains(names), "{description}");
    }
    assert!(stored_events(&app).await.is_empty());
}

#[tokio::test]
async fn during_a_rotation_either_secret_is_accepted_and_a_removed_one_is_refused() {
    let (app, envoy) = app_with_secrets(&[TEST_WEBHOOK_SECRET, PREVIOUS_WEBHOOK_SECRET]).await;
    for secrets in [
        &[TEST_WEBHOOK_SECRET][..],
        &[PREVIOUS_WEBHOOK_SECRET],
        &[PREVIOUS_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET],
    ] {
        let (_, body) = event(
            "payment_intent.succeeded",
            json!({"object": "payment_intent"}),
        );
        let (status, answer) = deliver(&envoy, &body, Some(&signed(&body, secrets, now()))).await;
        assert_eq!(status, StatusCode::OK, "signed with {secrets:?}: {answer}");
    }
    assert_eq!(stored_events(&app).await.len(), 3);

    // The rotation is over: the previous secret is removed from the settings.
    let (rotated, envoy) = app_with_secrets(&[TEST_WEBHOOK_SECRET]).await;
    let (_, body) = event(
        "payment_intent.succeeded",
        json!({"object": "payment_intent"}),
    );
    let old = signed(&body, &[PREVIOUS_WEBHOOK_SECRET], now());
    assert_json_reason(
        &refused(&envoy, &body, Some(&old)).await,
        Reason::WebhookSignatureMismatch,
    );
    assert!(stored_events(&rotated).await.is_empty());
}

#[tokio::test]
async fn without_a_secret_every_delivery_is_unavailable_and_the_service_is_not_serving() {
    let (app, envoy) = app_with_secrets(&[]).await;
    let (_, body) = event(
        "payment_intent.succeeded",
        json!({"object": "payment_intent"}),
    );
    let (status, answer) = deliver_signed(&envoy, &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_json_reason(&answer, Reason::WebhooksNotConfigured);
    assert!(stored_events(&app).await.is_empty());
    app.wait_for_health("Serving", PATIENCE).await;
    assert_eq!(
        app.health_of("supportdesk.v1.WebhookService").await,
        "NotServing"
    );
    assert_eq!(
        app.health_of("supportdesk.v1.TicketService").await,
        "Serving"
    );
}

#[tokio::test]
async fn a_configured_webhook_service_is_serving() {
    let (app, _envoy) = app_with_secrets(&[TEST_WEBHOOK_SECRET]).await;
    app.wait_for_health("Serving", PATIENCE).await;
    assert_eq!(
        app.health_of("supportdesk.v1.WebhookService").await,
        "Serving"
    );
}

#[tokio::test]
async fn with_no_worker_running_a_hundred_deliveries_are_each_acknowledged_within_the_bound_and_all_stored_received()
 {
    let (app, envoy) = app_with_secrets(&[TEST_WEBHOOK_SECRET]).await;
    let deliveries = (0..100).map(|index| {
        let (id, body) = event(
            "payment_intent.succeeded",
            json!({"id": format!("pi_{index}"), "object": "payment_intent"}),
        );
        let signature = signed(&body, &[TEST_WEBHOOK_SECRET], now());
        let url = envoy.url("/v1/webhooks/payments");
        async move {
            let started = Instant::now();
            let response = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("stripe-signature", signature)
                .body(body)
                .send()
                .await
                .expect("POST");
            (id, response.status(), started.elapsed())
        }
    });
    // Ten at a time, as a provider's delivery workers would send them.
    let mut answers = Vec::new();
    let deliveries: Vec<_> = deliveries.collect();
    let mut deliveries = deliveries.into_iter();
    loop {
        let batch: Vec<_> = deliveries.by_ref().take(10).collect();
        if batch.is_empty() {
            break;
        }
        answers.extend(futures_join_all(batch.into_iter()).await);
    }
    for (id, status, took) in &answers {
        assert_eq!(*status, StatusCode::OK, "{id}");
        assert!(took < &ACKNOWLEDGEMENT_BOUND, "{id} took {took:?}");
    }
    let rows = stored_events(&app).await;
    assert_eq!(rows.len(), 100);
    assert!(
        rows.iter()
            .all(|row| row.state == "received" && row.attempts == 0)
    );
    let mut stored: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    let mut sent: Vec<&str> = answers.iter().map(|(id, _, _)| id.as_str()).collect();
    stored.sort_unstable();
    sent.sort_unstable();
    assert_eq!(stored, sent);
}

#[tokio::test]
async fn storing_a_new_event_wakes_a_worker_once_the_row_is_there() {
    let (app, envoy) = app_with_secrets(&[TEST_WEBHOOK_SECRET]).await;
    let wake = app.webhook_wake.clone();
    let woken = tokio::spawn(async move { wake.notified().await });
    let (id, body) = event(
        "payment_intent.succeeded",
        json!({"object": "payment_intent"}),
    );
    let (status, _) = deliver_signed(&envoy, &body).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(10), woken)
        .await
        .expect("a waiting worker is woken")
        .expect("the waiter ran");
    assert_eq!(stored_events(&app).await[0].id, id);
}

/// A paid charge of `app`'s account, made through the API.
pub(crate) async fn paid_charge(app: &TestApp) -> v1::Charge {
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    app.charge(customer.id, 2_500, "USD").create().await
}

#[tokio::test]
async fn an_event_about_our_charge_is_stored_with_its_account_and_charge() {
    let (app, envoy) = app_with_secrets(&[TEST_WEBHOOK_SECRET]).await;
    let charge = paid_charge(&app).await;
    let charge_id: uuid::Uuid = charge.id.parse().expect("a uuid");
    // A payment intent names our charge in its metadata ...
    let (by_metadata, body) = event(
        "payment_intent.succeeded",
        json!({"id": charge.provider_payment_id, "object": "payment_intent",
               "metadata": {"charge_id": charge.id}}),
    );
    let (status, _) = deliver_signed(&envoy, &body).await;
    assert_eq!(status, StatusCode::OK);
    // ... a dispute only by the provider's payment intent.
    let (by_payment, body) = event(
        "charge.dispute.created",
        json!({"id": "dp_1", "object": "dispute", "payment_intent": charge.provider_payment_id}),
    );
    let (status, _) = deliver_signed(&envoy, &body).await;
    assert_eq!(status, StatusCode::OK);
    // Someone else's charge id in the metadata is no charge of ours.
    let (foreign, body) = event(
        "payment_intent.succeeded",
        json!({"id": "pi_elsewhere", "object": "payment_intent",
               "metadata": {"charge_id": uuid::Uuid::now_v7().to_string()}}),
    );
    let (status, _) = deliver_signed(&envoy, &body).await;
    assert_eq!(status, StatusCode::OK);

    let rows = stored_events(&app).await;
    let owner_of = |id: &str| {
        let row = rows.iter().find(|row| row.id == id).expect("stored");
        (row.account_id, row.charge_id)
    };
    let ours = (Some(app.account_id.as_uuid()), Some(charge_id));
    assert_eq!(owner_of(&by_metadata), ours);
    assert_eq!(owner_of(&by_payment), ours);
    assert_eq!(owner_of(&foreign), (None, None));
}

#[tokio::test]
async fn the_real_binary_logs_refusals_by_reason_and_never_a_secret_or_a_signature() {
    let database = crate::support::TestDatabase::create().await;
    let secrets = format!("{TEST_WEBHOOK_SECRET},{PREVIOUS_WEBHOOK_SECRET}");
    let running = crate::support::binary::Running::start(
        &database,
        &[
            ("SHUTDOWN_DELAY_MS", "0"),
            ("PAYMENT_WEBHOOK_SECRET", secrets.as_str()),
        ],
    );
    running.channel().await;
    running.wait_for_health("Serving").await;
    let envoy = Envoy::start_in_front_of(running.port).await;

    let (id, body) = event(
        "payment_intent.succeeded",
        json!({"object": "payment_intent"}),
    );
    let accepted = signed(
        &body,
        &[TEST_WEBHOOK_SECRET, PREVIOUS_WEBHOOK_SECRET],
        now(),
    );
    assert_eq!(
        deliver(&envoy, &body, Some(&accepted)).await.0,
        StatusCode::OK
    );
    let forged = signed(&body, &["whsec_attacker_guess_0123456789"], now());
    assert_eq!(
        deliver(&envoy, &body, Some(&forged)).await.0,
        StatusCode::BAD_REQUEST
    );
    let stale = signed(&body, &[TEST_WEBHOOK_SECRET], now() - 3600);
    assert_eq!(
        deliver(&envoy, &body, Some(&stale)).await.0,
        StatusCode::BAD_REQUEST
    );

    running.terminate();
    let (code, stdout, stderr) = running.wait();
    assert_eq!(code, Some(0), "clean exit; stderr: {stderr}");
    let lines: Vec<Value> = stdout
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    for reason in [
        Reason::WebhookSignatureMismatch,
        Reason::WebhookSignatureStale,
    ] {
        let refusal = lines
            .iter()
            .find(|line| line["reason"] == reason.as_str())
            .unwrap_or_else(|| panic!("the {reason} refusal was logged"));
        assert_eq!(refusal["level"], "INFO", "{refusal}");
    }
    let everything = format!("{}{stderr}", stdout.join("\n"));
    assert!(
        everything.contains(&id),
        "the accepted event was logged by its id"
    );
    for secret in [TEST_WEBHOOK_SECRET, PREVIOUS_WEBHOOK_SECRET, "whsec_"] {
        assert!(
            !everything.contains(secret),
            "a signing secret leaked into the logs"
        );
    }
    for signature in [&accepted, &forged, &stale] {
        let v1 = signature.split_once(",v1=").expect("a v1").1;
        assert!(
            !everything.contains(&v1[..16]),
            "a signature leaked into the logs"
        );
    }
}

#[tokio::test]
async fn the_simulators_webhooks_reach_the_service_through_envoy_and_corrupted_first_attempts_are_refused_then_retried()
 {
    use payment_simulator::webhooks::{DeliveryFault, DeliveryFaultRule, WebhookEndpoint};

    let (app, envoy) = app_with_secrets(&[TEST_WEBHOOK_SECRET]).await;
    app.simulator.set_webhook_endpoint(Some(WebhookEndpoint {
        url: envoy.url("/v1/webhooks/payments"),
        secrets: vec![TEST_WEBHOOK_SECRET.to_owned()],
    }));
    app.simulator
        .add_delivery_fault(DeliveryFaultRule::new(DeliveryFault::BadSignature, 1));
    let charge = paid_charge(&app).await;
    app.simulator
        .add_delivery_fault(DeliveryFaultRule::new(DeliveryFault::MangledBody, 1));
    app.simulator
        .dispute(
            &charge.provider_payment_id,
            payment_simulator::DisputeRequest::default(),
        )
        .expect("a dispute");

    let charge_id: uuid::Uuid = charge.id.parse().expect("a uuid");
    let ours = (Some(app.account_id.as_uuid()), Some(charge_id));
    crate::support::wait_until(
        "the payment and dispute events stored",
        PATIENCE,
        || async {
            let rows = stored_events(&app).await;
            ["payment_intent.succeeded", "charge.dispute.created"]
                .iter()
                .all(|wanted| {
                    rows.iter().any(|row| {
                        row.event_type == *wanted && (row.account_id, row.charge_id) == ours
                    })
                })
        },
    )
    .await;
    // The simulator logs an attempt once it has read the answer, a moment after the row is stored.
    crate::support::wait_until(
        "the clean retries of the corrupted attempts acknowledged",
        PATIENCE,
        || async {
            let deliveries = app.simulator.deliveries();
            deliveries
                .iter()
                .filter(|attempt| attempt.corruption.is_some())
                .all(|corrupted| {
                    deliveries.iter().any(|attempt| {
                        attempt.event_id == corrupted.event_id && attempt.status == Some(200)
                    })
                })
        },
    )
    .await;
    let deliveries = app.simulator.deliveries();
    for corruption in ["bad_signature", "mangled_body"] {
        let corrupted = deliveries
            .iter()
            .find(|attempt| attempt.corruption.as_deref() == Some(corruption))
            .unwrap_or_else(|| panic!("a {corruption} attempt: {deliveries:?}"));
        assert_eq!(corrupted.status, Some(400), "{corrupted:?}");
        assert!(
            deliveries.iter().any(
                |attempt| attempt.event_id == corrupted.event_id && attempt.status == Some(200)
            ),
            "{corruption}: the clean retry was acknowledged"
        );
    }
    // Every event the simulator sent is stored once, with the bytes it signed.
    let rows = stored_events(&app).await;
    let sent: std::collections::BTreeSet<&str> = deliveries
        .iter()
        .map(|attempt| attempt.event_id.as_str())
        .collect();
    for row in &rows {
        assert!(sent.contains(row.id.as_str()));
        let event: Value = serde_json::from_slice(&row.payload).expect("JSON");
        assert_eq!(event["id"], row.id.as_str());
        assert_eq!(event["livemode"], false, "never the mangled copy");
    }
}

#[tokio::test]
async fn a_refused_signature_costs_no_postgresql_round_trip_and_an_accepted_delivery_one() {
    use secrecy::ExposeSecret;

    use crate::support::admin_database_url;
    use crate::support::proxy::{Protocol, TcpProxy, socket_address_of, url_through};

    let postgres = TcpProxy::start_counting(
        socket_address_of(&admin_database_url()),
        Some(Protocol::Postgres),
    )
    .await;
    let app = TestApp::spawn_with(|settings| {
        settings.database.url =
            url_through(settings.database.url.expose_secret(), postgres.address).into();
        settings.database.pool_size = 1;
        // Nothing in the background.
        settings.server.health_probe_interval = Duration::from_secs(3600);
        settings.idempotency.sweep_interval = Duration::from_secs(3600);
        settings.billing_completer_interval = Duration::from_secs(3600);
    })
    .await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    // The first delivery prepares the statement on the one connection.
    let (_, body) = event(
        "payment_intent.succeeded",
        json!({"object": "payment_intent"}),
    );
    assert_eq!(deliver_signed(&envoy, &body).await.0, StatusCode::OK);

    let (_, body) = event(
        "payment_intent.succeeded",
        json!({"object": "payment_intent"}),
    );
    let before = postgres.round_trips();
    for signature in [
        signed(&body, &["whsec_attacker_guess_0123456789"], now()),
        signed(&body, &[TEST_WEBHOOK_SECRET], now() - 3600),
        "t=1,v1=zz".to_owned(),
    ] {
        assert_eq!(
            deliver(&envoy, &body, Some(&signature)).await.0,
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(
        deliver(&envoy, &body, None).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        postgres.round_trips(),
        before,
        "refusals touched PostgreSQL"
    );

    assert_eq!(deliver_signed(&envoy, &body).await.0, StatusCode::OK);
    assert_eq!(
        postgres.round_trips(),
        before + 1,
        "one INSERT per delivery"
    );
}
