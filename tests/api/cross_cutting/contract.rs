//! The REST contract: docs/http-contract.md lists every RPC with its method, path and success
//! status; this suite checks the table against the API and calls every RPC through real Envoy
//! (the repository's config), once to succeed and once to fail as documented.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use supportdesk::errors::Reason;
use supportdesk::wire::methods::{HttpSuccess, Idempotency, MethodTable};
use supportdesk::wire::proto::v1;

use super::rpcs::{self, Cases};
use crate::support::envoy::Envoy;
use crate::support::{
    Count, PATIENCE, TEST_WEBHOOK_SECRET, TestApp, TestUser, assert_json_reason, every_rpc,
    repository_root,
};

/// A row of the contract table.
#[derive(Debug)]
struct Row {
    method: String,
    path: String,
    success: u16,
    errors: String,
}

fn contract_table() -> BTreeMap<String, Row> {
    let text = std::fs::read_to_string(repository_root().join("docs/http-contract.md"))
        .expect("docs/http-contract.md");
    let table = text
        .split("<!-- contract:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- contract:end -->").next())
        .expect("the contract markers");
    table
        .lines()
        .filter(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (
                cells[1].to_owned(),
                Row {
                    method: cells[2].to_owned(),
                    path: cells[3].to_owned(),
                    success: cells[4].parse().expect("a bare success status"),
                    errors: cells[5].to_owned(),
                },
            )
        })
        .collect()
}

#[test]
fn the_contract_table_lists_exactly_the_rpcs_of_the_api() {
    let documented: BTreeSet<String> = contract_table().into_keys().collect();
    let existing: BTreeSet<String> = every_rpc()
        .into_iter()
        .map(|(service, method)| format!("{service}.{method}"))
        .collect();
    let undocumented: Vec<&String> = existing.difference(&documented).collect();
    let stale: Vec<&String> = documented.difference(&existing).collect();
    assert!(
        undocumented.is_empty(),
        "missing from docs/http-contract.md: {undocumented:?}"
    );
    assert!(stale.is_empty(), "documented but not in the API: {stale:?}");
}

/// One HTTP call through Envoy.
pub(crate) struct Call {
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<Value>,
    /// Headers beside the usual ones (the webhook's `stripe-signature`).
    headers: Vec<(&'static str, String)>,
    /// A raw body of this content type instead of JSON (a direct file upload).
    raw: Option<(&'static str, Vec<u8>)>,
}

pub(crate) fn call(
    method: Method,
    path: impl Into<String>,
    token: Option<&str>,
    body: Option<Value>,
) -> Call {
    Call {
        method,
        path: path.into(),
        token: token.map(str::to_owned),
        body,
        headers: Vec::new(),
        raw: None,
    }
}

impl Call {
    pub(crate) fn with_raw_body(mut self, content_type: &'static str, bytes: Vec<u8>) -> Self {
        self.raw = Some((content_type, bytes));
        self
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// A payment webhook delivery of `event` (JSON, sent as reqwest serializes it), signed with
/// `secret` now.
pub(crate) fn webhook_delivery(event: Value, secret: &str) -> Call {
    let body = serde_json::to_vec(&event).expect("JSON");
    let signature =
        crate::webhooks::receiving::signed(&body, &[secret], chrono::Utc::now().timestamp());
    call(Method::POST, "/v1/webhooks/payments", None, Some(event))
        .with_header("stripe-signature", signature)
}

/// An email provider's webhook delivery of `event` (JSON, sent as reqwest serializes it), signed
/// the Svix way with `secret` now.
pub(crate) fn email_delivery(event: Value, secret: &str) -> Call {
    let body = serde_json::to_vec(&event).expect("JSON");
    let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let now = chrono::Utc::now().timestamp();
    let signature = supportdesk::domain::svix_signature(secret, &id, now, &body);
    call(Method::POST, "/v1/webhooks/email", None, Some(event))
        .with_header("svix-id", id)
        .with_header("svix-timestamp", now.to_string())
        .with_header("svix-signature", signature)
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

pub(crate) struct Harness {
    pub(crate) app: TestApp,
    envoy: Envoy,
    http: reqwest::Client,
    pub(crate) agent: TestUser,
    pub(crate) customer: TestUser,
    pub(crate) api_key: String,
}

impl Harness {
    pub(crate) async fn send(&self, call: Call) -> Answer {
        // On every call: the declaration decides whether the key is ignored or honoured.
        let mut request = self
            .http
            .request(call.method, self.envoy.url(&call.path))
            .header("idempotency-key", uuid::Uuid::now_v7().to_string());
        if let Some(token) = call.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = call.body {
            request = request.json(&body);
        }
        if let Some((content_type, bytes)) = call.raw {
            request = request.header("content-type", content_type).body(bytes);
        }
        for (name, value) in call.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("sent through Envoy");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap_or_default(),
        }
    }

    pub(crate) fn admin(&self) -> Option<&str> {
        Some(&self.app.admin.access_token)
    }

    /// An import of the account (queued: the test app runs no operation workers), cancelled
    /// (so finished) when `finished`; its operation's name.
    pub(crate) async fn import(&self, finished: bool) -> String {
        let answer = self
            .send(call(
                Method::POST,
                "/v1/tickets:import",
                self.admin(),
                Some(json!({"format": "IMPORT_FORMAT_CSV", "content": IMPORT_CSV})),
            ))
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        let name = answer.json()["name"]
            .as_str()
            .expect("an operation name")
            .to_owned();
        if finished {
            let answer = self
                .send(call(
                    Method::POST,
                    format!("/v1/{name}:cancel"),
                    self.admin(),
                    Some(json!({})),
                ))
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        }
        name
    }

    pub(crate) async fn new_ticket(&self) -> String {
        self.app.create_ticket("contract").await.id
    }

    /// A webhook endpoint of the account: the oldest one there is (an account may have only so
    /// many), or a new one.
    pub(crate) async fn new_endpoint(&self) -> String {
        let listed = self
            .send(call(
                Method::GET,
                "/v1/webhookEndpoints",
                self.admin(),
                None,
            ))
            .await
            .json();
        if let Some(id) = listed["webhookEndpoints"][0]["id"].as_str() {
            return id.to_owned();
        }
        self.fresh_endpoint().await
    }

    /// A new custom field of the account (a text field under a fresh key).
    pub(crate) async fn fresh_custom_field(&self) -> String {
        let key = format!("field_{}", uuid::Uuid::now_v7().simple());
        let created = self
            .send(call(
                Method::POST,
                "/v1/customFields",
                self.admin(),
                Some(json!({"key": key, "title": "A field", "kind": "CUSTOM_FIELD_KIND_TEXT"})),
            ))
            .await
            .json();
        created["id"]
            .as_str()
            .expect("a custom field id")
            .to_owned()
    }

    /// A new webhook endpoint of the account.
    pub(crate) async fn fresh_endpoint(&self) -> String {
        let created = self
            .send(call(
                Method::POST,
                "/v1/webhookEndpoints",
                self.admin(),
                Some(json!({"url": "https://hooks.example.com/contract"})),
            ))
            .await
            .json();
        created["webhookEndpoint"]["id"]
            .as_str()
            .expect("an endpoint id")
            .to_owned()
    }

    pub(crate) async fn assigned_ticket(&self) -> String {
        let id = self.new_ticket().await;
        let answer = self
            .send(call(
                Method::POST,
                format!("/v1/tickets/{id}:assign"),
                self.admin(),
                Some(json!({"assigneeId": self.agent.id.to_string()})),
            ))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        id
    }

    pub(crate) async fn solved_ticket(&self) -> String {
        let id = self.assigned_ticket().await;
        let answer = self
            .send(call(
                Method::POST,
                format!("/v1/tickets/{id}:resolve"),
                self.admin(),
                Some(json!({})),
            ))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        id
    }

    /// A paid charge of the harness's customer, made over REST.
    pub(crate) async fn new_charge(&self) -> String {
        let answer = self
            .send(call(
                Method::POST,
                "/v1/charges",
                self.admin(),
                Some(self.charge_body()),
            ))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.json()["id"]
            .as_str()
            .expect("a charge id")
            .to_owned()
    }

    pub(crate) fn charge_body(&self) -> Value {
        json!({"customerId": self.customer.id.to_string(),
               "amount": {"amountMinor": "1500", "currencyCode": "USD"},
               "paymentMethod": "pm_card_visa"})
    }

    /// A webhook event about a new charge of the account, stored through the endpoint; `dead`
    /// puts it in the dead-letter state as the workers would after its last attempt.
    pub(crate) async fn stored_webhook_event(&self, dead: bool) -> String {
        let charge = self.new_charge().await;
        let (id, event) = webhook_event(&charge);
        let answer = self
            .send(webhook_delivery(event, TEST_WEBHOOK_SECRET))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        if dead {
            crate::webhooks::admin::make_dead(&self.app, &id).await;
        }
        id
    }

    /// A session of a user of its own: ending it (LogoutAll ends every session of its user, access
    /// tokens included) leaves the admin's token working.
    pub(crate) async fn fresh_session(&self) -> TestUser {
        let user = self
            .app
            .add_user(&self.app.admin, v1::UserRole::Customer)
            .await;
        // One call first, so that Redis holds the user's state as it does for anyone active.
        self.app
            .users
            .clone()
            .get_current_user(user.request(v1::GetCurrentUserRequest {}))
            .await
            .expect("the new user's own record");
        user
    }

    /// For `rpc`: a call that succeeds, the `location` it must carry, and a call that fails with
    /// the given status; the RPC's entry in the fixture table builds them.
    async fn cases(&self, rpc: &str) -> Cases {
        let case = rpcs::fixture_of(rpc)
            .and_then(|fixture| fixture.case)
            .unwrap_or_else(|| {
                panic!("{rpc} has no contract case: add one to tests/api/cross_cutting/rpcs/")
            });
        case(self).await
    }
}

/// A one-row file of tickets to import.
pub(crate) const IMPORT_CSV: &str =
    "subject,description,requester_email\nImported,From the old desk,a@example.com\n";

/// Whether `rpc` has a REST mapping (`google.api.http`); the vendored
/// `google.longrunning.Operations.WaitOperation` has none and is served over gRPC only (its row
/// says `gRPC`; tests/api/operations.rs calls it).
fn has_rest_mapping(rpc: &str) -> bool {
    let pool = prost_reflect::DescriptorPool::decode(supportdesk::wire::proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let http = pool
        .get_extension_by_name("google.api.http")
        .expect("google.api.http");
    let (service, method) = rpc.rsplit_once('.').expect("Service.Method");
    let service = if service.contains('.') {
        service.to_owned()
    } else {
        format!("supportdesk.v1.{service}")
    };
    pool.get_service_by_name(&service)
        .and_then(|service| service.methods().find(|m| m.name() == method))
        .is_some_and(|method| method.options().has_extension(&http))
}

/// A `payment_intent.succeeded` event about `charge` (our id in its metadata), with a fresh id.
pub(crate) fn webhook_event(charge: &str) -> (String, Value) {
    let id = format!("evt_{}", uuid::Uuid::now_v7().simple());
    let event = json!({
        "id": id,
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": chrono::Utc::now().timestamp(),
        "data": {"object": {"object": "payment_intent", "id": "pi_contract",
                            "metadata": {"charge_id": charge}}},
    });
    (id, event)
}

/// The declaration of `rpc` (`TicketService.GetTicket`) in the method table.
fn declaration_of(rpc: &str) -> &'static supportdesk::wire::methods::Method {
    let path = crate::support::rpc_path(rpc);
    MethodTable::get()
        .expect("the method table loads")
        .lookup(&path)
        .unwrap_or_else(|| panic!("{rpc} is not in the method table"))
}

/// How many outcomes the idempotency table holds for the RPC at `path`.
async fn stored_keys(app: &TestApp, path: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    let mut conn = app.database.connect().await;
    diesel::sql_query("SELECT count(*) AS count FROM idempotency_keys WHERE rpc = $1")
        .bind::<diesel::sql_types::Text, _>(path)
        .get_result::<Count>(&mut conn)
        .await
        .expect("count stored keys")
        .count
}

impl Harness {
    /// Envoy in front of `app`, an agent, a customer and an admin API key.
    async fn start(app: TestApp) -> Self {
        let envoy = Envoy::start_in_front_of(app.address.port()).await;
        let agent = app
            .add_user(&app.admin, supportdesk::wire::proto::v1::UserRole::Agent)
            .await;
        let customer = app
            .add_user(&app.admin, supportdesk::wire::proto::v1::UserRole::Customer)
            .await;
        let http = reqwest::Client::new();
        let key = http
            .post(envoy.url("/v1/apiKeys"))
            .bearer_auth(&app.admin.access_token)
            .header("idempotency-key", "contract-key")
            .json(&json!({"name": "contract key", "roles": ["USER_ROLE_ADMIN"]}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["secret"]
            .as_str()
            .expect("a secret")
            .to_owned();
        Self {
            app,
            envoy,
            http,
            agent,
            customer,
            api_key: key,
        }
    }
}

#[tokio::test]
async fn every_rpc_answers_its_documented_statuses_through_envoy() {
    let harness = Harness::start(TestApp::spawn().await).await;
    let table = contract_table();
    for (rpc, row) in &table {
        let declared = declaration_of(rpc);
        if row.method == "gRPC" {
            assert!(
                !has_rest_mapping(rpc),
                "{rpc} has a REST mapping: document it"
            );
            continue;
        }
        assert!(
            has_rest_mapping(rpc),
            "{rpc} has no REST mapping: its row says gRPC"
        );
        assert_eq!(
            row.success,
            match declared.http_success {
                HttpSuccess::Ok => 200,
                HttpSuccess::Created => 201,
                HttpSuccess::NoContent => 204,
                HttpSuccess::Accepted => 202,
            },
            "{rpc}: the documented success status is the declared one"
        );
        let (success, location, failure, error_status) = harness.cases(rpc).await;
        assert_eq!(
            success.method.as_str(),
            row.method,
            "{rpc}: the documented method"
        );
        let keys_before = stored_keys(&harness.app, &declared.path).await;
        let answer = harness.send(success).await;
        let stored = stored_keys(&harness.app, &declared.path).await - keys_before;
        assert_eq!(
            stored,
            match declared.idempotency {
                Idempotency::Ignored => 0,
                Idempotency::Optional | Idempotency::Required => 1,
            },
            "{rpc}: declared {:?}, its key stored {stored} outcomes",
            declared.idempotency
        );
        assert_eq!(
            answer.status.as_u16(),
            row.success,
            "{rpc} {} {}: {}",
            row.method,
            row.path,
            answer.body
        );
        match row.success {
            201 => {
                let header = answer
                    .headers
                    .get("location")
                    .expect("201 carries Location");
                let expected = location.expect("a location for a create");
                assert!(
                    header.to_str().unwrap().starts_with(&expected),
                    "{rpc}: {header:?}"
                );
            }
            204 => assert!(
                answer.body.is_empty(),
                "{rpc}: 204 with a body {:?}",
                answer.body
            ),
            // A server stream: newline-delimited JSON, one object a line.
            _ if rpc == "TicketService.ExportTickets" || rpc == "EventService.WatchEvents" => {
                assert!(
                    answer
                        .body
                        .lines()
                        .filter(|line| !line.trim().is_empty())
                        .all(
                            |line| serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object())
                        ),
                    "{rpc}: newline-delimited JSON objects: {}",
                    answer.body
                )
            }
            _ => assert!(answer.json().is_object(), "{rpc}: a JSON body"),
        }
        assert!(
            answer.headers.get("x-http-status").is_none(),
            "{rpc}: the marker leaked"
        );

        let answer = harness.send(failure).await;
        assert_eq!(answer.status, error_status, "{rpc}: {}", answer.body);
        assert!(
            row.errors.contains(&error_status.as_u16().to_string()),
            "{rpc}: {error_status} is not documented in its row"
        );
        assert_eq!(
            answer.headers["content-type"], "application/json",
            "{rpc}: errors are JSON"
        );
        let body = answer.json();
        let details = body["details"].as_array().cloned().unwrap_or_default();
        assert!(
            details.iter().any(|detail| detail["@type"]
                == "type.googleapis.com/google.rpc.ErrorInfo"
                && detail["domain"] == "supportdesk"),
            "{rpc}: no ErrorInfo in {body}"
        );
    }
}

#[tokio::test]
async fn a_browser_preflights_and_calls_from_an_allowed_origin_only() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    let allowed = "http://localhost:3000";

    let preflight = http
        .request(Method::OPTIONS, envoy.url("/v1/tickets"))
        .header("origin", allowed)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], allowed);
    assert_eq!(
        preflight.headers()["access-control-allow-credentials"],
        "true"
    );

    let created = http
        .post(envoy.url("/v1/tickets"))
        .header("origin", allowed)
        .bearer_auth(&app.admin.access_token)
        .json(&json!({"subject": "From a browser", "description": "CORS", "requesterEmail": "b@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["access-control-allow-origin"], allowed);
    let exposed = created.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for header in ["location", "x-request-id", "retry-after", "ratelimit"] {
        assert!(exposed.contains(header), "{header} not exposed: {exposed}");
    }

    let stranger = http
        .get(envoy.url("/v1/tickets"))
        .header("origin", "https://evil.example")
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .unwrap();
    assert!(
        stranger
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn envoys_own_errors_use_the_same_json_shape() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    // Envoy's answer, checked to be JSON: its HTTP status and its body.
    let answer = |method: Method, path: &'static str, body: Option<&'static str>| {
        let mut request = http
            .request(method, envoy.url(path))
            .bearer_auth(&app.admin.access_token)
            .header("content-type", "application/json");
        if let Some(body) = body {
            request = request.body(body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            assert_eq!(
                response.headers()["content-type"],
                "application/json",
                "{path}"
            );
            let body: Value = response.json().await.expect("JSON");
            (status, body)
        }
    };
    let (status, body) = answer(Method::GET, "/v1/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_json_reason(&body, Reason::UnknownPath);
    let (status, body) = answer(Method::GET, "/v1/tickets?colour=blue", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_json_reason(&body, Reason::UnknownQueryParameter);
    let (status, body) = answer(Method::POST, "/v1/tickets", Some("{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_json_reason(&body, Reason::MalformedRequest);
    let large = "x".repeat(2 * 1024 * 1024);
    let response = http
        .post(envoy.url("/v1/tickets"))
        .bearer_auth(&app.admin.access_token)
        .json(&json!({"subject": "big", "description": large}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.expect("JSON");
    assert_json_reason(&body, Reason::RequestTooLarge);
}

#[tokio::test]
async fn browser_grpc_web_clients_reach_the_service_through_envoy() {
    let app = TestApp::spawn().await;
    app.wait_for_health("Serving", PATIENCE).await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    // An empty HealthCheckRequest in a gRPC-Web frame.
    let response = envoy
        .grpc_web("/grpc.health.v1.Health/Check", &[])
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .expect("a gRPC-Web call");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let body = response.bytes().await.unwrap();
    // Data frame: flag 0, length 2, HealthCheckResponse { status: SERVING (1) }.
    assert_eq!(&body[..7], &[0, 0, 0, 0, 2, 0x08, 0x01], "{body:?}");
    // Then the trailers frame (flag 0x80) saying grpc-status 0.
    assert_eq!(body[7], 0x80);
    let trailers = String::from_utf8_lossy(&body[12..]).to_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
}

/// The round-trip budget table of docs/performance.md: RPC → (Redis, PostgreSQL) round trips of
/// one successful call.
fn budget_table() -> BTreeMap<String, (u64, u64)> {
    let text = std::fs::read_to_string(repository_root().join("docs/performance.md"))
        .expect("docs/performance.md");
    let start = text
        .find("<!-- budget:start -->")
        .expect("the budget:start marker");
    let end = text
        .find("<!-- budget:end -->")
        .expect("the budget:end marker");
    text[start..end]
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let rpc = cells.first()?.trim_matches('`');
            let redis = cells.get(1)?.parse().ok()?;
            let postgres = cells.get(2)?.parse().ok()?;
            Some((rpc.to_owned(), (redis, postgres)))
        })
        .collect()
}

#[tokio::test]
async fn every_rpc_costs_the_round_trips_docs_performance_md_lists() {
    use secrecy::ExposeSecret;

    use crate::support::proxy::{Protocol, TcpProxy, socket_address_of, url_through};
    use crate::support::{admin_database_url, redis_url};

    let postgres = TcpProxy::start_counting(
        socket_address_of(&admin_database_url()),
        Some(Protocol::Postgres),
    )
    .await;
    let redis =
        TcpProxy::start_counting(socket_address_of(&redis_url()), Some(Protocol::Redis)).await;
    let app = TestApp::spawn_with(|settings| {
        settings.database.url =
            url_through(settings.database.url.expose_secret(), postgres.address).into();
        settings.redis.url = url_through(settings.redis.url.expose_secret(), redis.address).into();
        // One connection, so each statement is prepared once (by the warm-up call); nothing in
        // the background.
        settings.database.pool_size = 1;
        settings.server.health_probe_interval = std::time::Duration::from_secs(3600);
        settings.idempotency.sweep_interval = std::time::Duration::from_secs(3600);
        settings.billing_completer_interval = std::time::Duration::from_secs(3600);
        // A WatchEvents case's stream ends before its caller's first re-check (every 2 s), whose
        // query would otherwise land in whichever RPC is being counted then.
        settings.outbound_webhooks.watch_max_duration = std::time::Duration::from_millis(500);
    })
    .await;
    let harness = Harness::start(app).await;
    let budget = budget_table();
    let mut measured = BTreeMap::new();
    for (rpc, row) in contract_table() {
        let rpc = &rpc;
        if row.method == "gRPC" {
            // Not reachable through Envoy: no budget row.
            continue;
        }
        // The first call prepares the RPC's statements on the connection; the second is counted.
        let (warm_up, ..) = harness.cases(rpc).await;
        harness.send(warm_up).await;
        let (success, ..) = harness.cases(rpc).await;
        let before = (redis.round_trips(), postgres.round_trips());
        let answer = harness.send(success).await;
        assert!(answer.status.is_success(), "{rpc}: {}", answer.body);
        let after = (redis.round_trips(), postgres.round_trips());
        measured.insert(rpc.clone(), (after.0 - before.0, after.1 - before.1));
    }
    let differences: Vec<String> = measured
        .iter()
        .filter(|(rpc, cost)| budget.get(*rpc) != Some(*cost))
        .map(|(rpc, (redis, postgres))| {
            format!(
                "| `{rpc}` | {redis} | {postgres} | (documented: {:?})",
                budget.get(rpc)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "docs/performance.md's budget differs from what these RPCs cost:\n{}",
        differences.join("\n")
    );
}

/// A REST binding whose path names request fields, read from the descriptor set (not from the
/// service's method table), so a new RPC with a path variable is covered without a new case.
#[derive(Debug)]
struct PathWithVariables {
    rpc: String,
    http_method: Method,
    template: String,
    body: String,
    variables: Vec<String>,
}

fn rest_paths_with_variables() -> Vec<PathWithVariables> {
    use prost_reflect::{DescriptorPool, Value as Field};
    let pool = DescriptorPool::decode(supportdesk::wire::proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let http = pool
        .get_extension_by_name("google.api.http")
        .expect("google.api.http is in the descriptor set");
    let text = |rule: &prost_reflect::DynamicMessage, name: &str| {
        rule.get_field_by_name(name)
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let mut found = Vec::new();
    for service in pool
        .services()
        .filter(|service| service.package_name() == "supportdesk.v1")
    {
        for method in service.methods() {
            let Field::Message(rule) = method.options().get_extension(&http).into_owned() else {
                continue;
            };
            let Some((verb, template)) = ["get", "put", "post", "delete", "patch"]
                .into_iter()
                .map(|verb| (verb, text(&rule, verb)))
                .find(|(_, template)| !template.is_empty())
            else {
                continue;
            };
            let variables: Vec<String> = template
                .split('{')
                .skip(1)
                .filter_map(|rest| rest.split('}').next())
                .map(|variable| variable.split('=').next().unwrap_or_default().to_owned())
                .collect();
            if variables.is_empty() {
                continue;
            }
            found.push(PathWithVariables {
                rpc: format!("{}.{}", service.name(), method.name()),
                http_method: verb.to_uppercase().parse().expect("an HTTP method"),
                template: template.clone(),
                body: text(&rule, "body"),
                variables,
            });
        }
    }
    found
}

/// `{"a": {"b": value}}` for the field path `a.b`.
fn nested(field_path: &str, value: &str) -> Value {
    field_path.rsplit('.').fold(
        Value::String(value.to_owned()),
        |inner, name| json!({ name: inner }),
    )
}

#[tokio::test]
async fn a_body_or_query_naming_another_resource_than_the_path_is_refused_for_every_rpc() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    let paths = rest_paths_with_variables();
    assert!(
        paths.len() >= 10,
        "the API has path variables: {:?}",
        paths.iter().map(|path| &path.rpc).collect::<Vec<_>>()
    );
    for path in &paths {
        for variable in &path.variables {
            let in_path = uuid::Uuid::now_v7().to_string();
            let elsewhere = uuid::Uuid::now_v7().to_string();
            let mut url = path.template.clone();
            for name in &path.variables {
                url = url.replace(&format!("{{{name}}}"), &in_path);
            }
            // The other value goes where the client could put it: the body when the rule's body
            // holds the field, a query parameter otherwise.
            let body_field = if path.body == "*" {
                Some(variable.as_str())
            } else {
                variable.strip_prefix(&format!("{}.", path.body))
            };
            let body = match body_field {
                Some(field) => Some(nested(field, &elsewhere)),
                None => {
                    url = format!("{url}?{variable}={elsewhere}");
                    (!path.body.is_empty()).then(|| json!({}))
                }
            };
            let mut request = http
                .request(path.http_method.clone(), envoy.url(&url))
                .bearer_auth(&app.admin.access_token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.expect("sent through Envoy");
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            let what = format!("{} {} {url} {body:?}", path.rpc, path.http_method);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
            assert_eq!(answer["code"], 3, "{what}: {answer}");
            assert_json_reason(&answer, Reason::PathBodyMismatch);
            let details = answer["details"].as_array().cloned().unwrap_or_default();
            let fields: Vec<Value> = details
                .iter()
                .find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.BadRequest")
                .and_then(|bad| bad["fieldViolations"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|violation| violation["field"].clone())
                .collect();
            // Named as the REST client knows it: relative to the body, lowerCamelCase.
            let named = supportdesk::wire::http_rule::rest_field_path(variable, &path.body);
            assert_eq!(fields, [json!(named)], "{what}: {answer}");
        }
    }
}
