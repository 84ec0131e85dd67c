//! REST/JSON through real Envoy configured by deploy/envoy/envoy.yaml.

use reqwest::StatusCode;
use serde_json::{Value, json};
use supportdesk::errors::Reason;

use crate::support::envoy::Envoy;
use crate::support::{PATIENCE, TestApp, assert_json_reason};

async fn envoy_for(app: &TestApp) -> (Envoy, reqwest::Client) {
    (
        Envoy::start_in_front_of(app.address.port()).await,
        reqwest::Client::new(),
    )
}

#[tokio::test]
async fn a_ticket_is_created_and_fetched_with_json() {
    let app = TestApp::spawn().await;
    let (envoy, http) = envoy_for(&app).await;

    let response = http
        .post(envoy.url("/v1/tickets"))
        .bearer_auth(&app.admin.access_token)
        .json(&json!({
            "subject": "Printer on fire",
            "description": "Smoke everywhere",
            "requesterEmail": "jane@example.com",
            "priority": "TICKET_PRIORITY_HIGH"
        }))
        .send()
        .await
        .expect("POST /v1/tickets");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().contains_key("x-request-id"));
    let created: Value = response.json().await.expect("JSON");
    assert_eq!(created["subject"], "Printer on fire");
    assert_eq!(created["priority"], "TICKET_PRIORITY_HIGH");
    assert_eq!(created["status"], "TICKET_STATUS_NEW");
    assert_eq!(created["requesterEmail"], "jane@example.com");
    let id = created["id"].as_str().expect("an id");

    let response = http
        .get(envoy.url(&format!("/v1/tickets/{id}")))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("GET /v1/tickets/{id}");
    assert_eq!(response.status(), StatusCode::OK);
    let fetched: Value = response.json().await.expect("JSON");
    assert_eq!(fetched, created);

    let response = http
        .get(envoy.url("/v1/tickets?pageSize=1"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("GET /v1/tickets");
    assert_eq!(response.status(), StatusCode::OK);
    let listed: Value = response.json().await.expect("JSON");
    assert_eq!(listed["tickets"][0]["id"], id);
}

#[tokio::test]
async fn a_validation_error_is_400_json_with_every_field_violation() {
    let app = TestApp::spawn().await;
    let (envoy, http) = envoy_for(&app).await;

    let response = http
        .post(envoy.url("/v1/tickets"))
        .bearer_auth(&app.admin.access_token)
        .json(&json!({"subject": "", "description": "", "requesterEmail": "nope"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 3);
    let details = body["details"].as_array().expect("details");
    let error_info = details
        .iter()
        .find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        .expect("ErrorInfo");
    assert_eq!(error_info["domain"], "supportdesk");
    let bad_request = details
        .iter()
        .find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .expect("BadRequest");
    let fields: Vec<&str> = bad_request["fieldViolations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|violation| violation["field"].as_str().unwrap())
        .collect();
    // Named as the REST body has them (docs/http-contract.md, "Field paths").
    assert_eq!(fields, ["subject", "description", "requesterEmail"]);
}

#[tokio::test]
async fn a_missing_ticket_is_404_and_a_missing_account_401() {
    let app = TestApp::spawn().await;
    let (envoy, http) = envoy_for(&app).await;

    let response = http
        .get(envoy.url("/v1/tickets/0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.expect("JSON");
    assert_json_reason(&body, Reason::TicketNotFound);

    let response = http
        .get(envoy.url("/v1/tickets"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_paths_and_query_parameters_are_rejected() {
    let app = TestApp::spawn().await;
    let (envoy, http) = envoy_for(&app).await;

    let response = http
        .get(envoy.url("/v1/nothing-here"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let response = http
        .get(envoy.url("/v1/tickets?colour=blue"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_callers_request_id_is_kept_and_returned() {
    let app = TestApp::spawn().await;
    let (envoy, http) = envoy_for(&app).await;
    let response = http
        .get(envoy.url("/v1/tickets"))
        .bearer_auth(&app.admin.access_token)
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
}

#[tokio::test]
async fn a_browser_signs_up_logs_in_and_calls_with_its_token_over_json() {
    let app = TestApp::spawn().await;
    let (envoy, http) = envoy_for(&app).await;
    let slug = format!("rest-{}", uuid::Uuid::now_v7().simple());

    let response = http
        .post(envoy.url("/v1/accounts"))
        .json(&json!({
            "name": "Over REST",
            "slug": slug,
            "adminEmail": "owner@rest.example",
            "adminPassword": crate::support::TEST_PASSWORD
        }))
        .send()
        .await
        .expect("POST /v1/accounts");
    assert_eq!(response.status(), StatusCode::CREATED);

    let response = http
        .post(envoy.url("/v1/auth:login"))
        .json(&json!({
            "account": slug,
            "email": "owner@rest.example",
            "password": crate::support::TEST_PASSWORD
        }))
        .send()
        .await
        .expect("POST /v1/auth:login");
    assert_eq!(response.status(), StatusCode::OK);
    let login: Value = response.json().await.expect("JSON");
    let token = login["tokens"]["accessToken"].as_str().expect("a token");

    let response = http
        .get(envoy.url("/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /v1/me");
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.expect("JSON");
    assert_eq!(me["role"], "USER_ROLE_ADMIN");

    let response = http
        .post(envoy.url("/v1/auth:login"))
        .json(&json!({"account": slug, "email": "owner@rest.example", "password": "wrong wrong wrong"}))
        .send()
        .await
        .expect("POST /v1/auth:login");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let response = http
        .get(envoy.url("/v1/users"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /v1/users");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_customer_asking_for_admin_things_gets_403() {
    let app = TestApp::spawn().await;
    let customer = app
        .add_user(&app.admin, supportdesk::wire::proto::v1::UserRole::Customer)
        .await;
    let (envoy, http) = envoy_for(&app).await;
    let response = http
        .get(envoy.url("/v1/apiKeys"))
        .bearer_auth(&customer.access_token)
        .send()
        .await
        .expect("GET /v1/apiKeys");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.expect("JSON");
    assert_json_reason(&body, Reason::RoleRequired);
}

#[tokio::test]
async fn a_rest_retry_with_the_same_idempotency_key_replays_the_201() {
    let app = TestApp::spawn().await;
    let (envoy, http) = envoy_for(&app).await;
    let create = || {
        http.post(envoy.url("/v1/tickets"))
            .bearer_auth(&app.admin.access_token)
            .header("Idempotency-Key", "rest-retry-1")
            .json(&json!({"subject": "Once", "description": "Only once", "requesterEmail": "o@example.com"}))
            .send()
    };
    let first = create().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].clone();
    let first: Value = first.json().await.unwrap();

    let second = create().await.unwrap();
    assert_eq!(
        second.status(),
        StatusCode::CREATED,
        "the stored status, again"
    );
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.headers()["location"], location);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second, first);
}

#[tokio::test]
async fn a_body_naming_another_ticket_than_the_path_changes_neither_ticket() {
    let app = TestApp::spawn().await;
    let (envoy, http) = envoy_for(&app).await;
    let named = app.create_ticket("Named in the path").await;
    let other = app.create_ticket("Named in the body").await;

    let response = http
        .patch(envoy.url(&format!("/v1/tickets/{}?updateMask=subject", named.id)))
        .bearer_auth(&app.admin.access_token)
        .json(&json!({"id": other.id, "subject": "hijacked"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 3);
    assert_json_reason(&body, Reason::PathBodyMismatch);
    assert_eq!(
        body["details"][1]["fieldViolations"][0]["field"], "id",
        "{body}"
    );
    // A trailing slash, which the transcoder accepts, hides nothing.
    let response = http
        .patch(envoy.url(&format!("/v1/tickets/{}/?updateMask=subject", named.id)))
        .bearer_auth(&app.admin.access_token)
        .json(&json!({"id": other.id, "subject": "hijacked"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON");
    assert_json_reason(&body, Reason::PathBodyMismatch);
    for ticket in [&named, &other] {
        let stored = app.get_ticket(&ticket.id).await.expect("the ticket");
        assert_eq!(stored.subject, ticket.subject, "{} changed", ticket.id);
    }

    let response = http
        .patch(envoy.url(&format!("/v1/tickets/{}?updateMask=subject", named.id)))
        .bearer_auth(&app.admin.access_token)
        .json(&json!({"id": named.id, "subject": "renamed"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the same id is no conflict"
    );
    let updated: Value = response.json().await.expect("JSON");
    assert_eq!(updated["subject"], "renamed");
}

#[tokio::test]
async fn a_callers_request_id_that_is_not_short_and_plain_is_replaced_and_the_replacement_returned()
{
    let app = TestApp::spawn().await;
    let (envoy, http) = envoy_for(&app).await;
    for sent in ["a\"b} injected=1".to_owned(), "x".repeat(3000)] {
        let response = http
            .get(envoy.url("/v1/tickets"))
            .bearer_auth(&app.admin.access_token)
            .header("x-request-id", &sent)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
        let returned: Vec<&str> = response
            .headers()
            .get_all("x-request-id")
            .iter()
            .map(|value| value.to_str().expect("ASCII"))
            .collect();
        assert_eq!(returned.len(), 1, "{returned:?}");
        assert!(uuid::Uuid::try_parse(returned[0]).is_ok(), "{returned:?}");
        // Envoy's access log names the id the client was given.
        let entry = envoy.access_log_entry(returned[0]).await;
        assert_eq!(entry["path"], "/v1/tickets", "{entry}");
    }
}

#[tokio::test]
async fn a_401_carries_a_bearer_challenge_saying_whether_the_token_sent_was_refused() {
    let app = TestApp::spawn().await;
    let (envoy, http) = envoy_for(&app).await;

    let without = http.get(envoy.url("/v1/tickets")).send().await.unwrap();
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        without.headers()["www-authenticate"],
        r#"Bearer realm="supportdesk""#
    );
    let body: Value = without.json().await.unwrap();
    assert_json_reason(&body, Reason::MissingCredentials);

    let forged = http
        .get(envoy.url("/v1/tickets"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        forged.headers()["www-authenticate"],
        r#"Bearer realm="supportdesk", error="invalid_token""#
    );

    // Answers other than 401 carry no challenge.
    let found = http
        .get(envoy.url("/v1/tickets"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), StatusCode::OK);
    assert!(found.headers().get("www-authenticate").is_none());
}

#[tokio::test]
async fn healthz_answers_grpc_health_for_a_load_balancer() {
    // Billing without a payment provider is NOT_SERVING while the rest serves.
    let app = TestApp::spawn_with(|settings| settings.payment_provider = None).await;
    app.wait_for_health("Serving", PATIENCE).await;
    let (envoy, http) = envoy_for(&app).await;
    let health = |query: &'static str| {
        let request = http.get(envoy.url(&format!("/healthz{query}")));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            assert_eq!(response.headers()["content-type"], "application/json");
            (status, response.json::<Value>().await.unwrap())
        }
    };

    assert_eq!(
        health("").await,
        (StatusCode::OK, json!({"status": "SERVING"}))
    );
    assert_eq!(
        health("?service=supportdesk.v1.TicketService").await,
        (StatusCode::OK, json!({"status": "SERVING"}))
    );
    assert_eq!(
        health("?service=supportdesk.v1.BillingService").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "NOT_SERVING"})
        )
    );
    assert_eq!(
        health("?service=supportdesk.v1.NoSuchService").await,
        (StatusCode::NOT_FOUND, json!({"status": "SERVICE_UNKNOWN"}))
    );
    assert_eq!(health("?service=a%20b").await.0, StatusCode::BAD_REQUEST);
    let head = http.head(envoy.url("/healthz")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);

    // Nothing listens behind this one.
    let nothing = crate::support::ClosedPort::new();
    let orphan = Envoy::start_in_front_of(nothing.port).await;
    let response = http.get(orphan.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "UNREACHABLE"})
    );
}
