//! REST/JSON through real Envoy configured by deploy/envoy/envoy.yaml.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::envoy::Envoy;
use super::helpers::TestApp;

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
        .header("x-account-id", app.account_id.to_string())
        .json(&json!({
            "subject": "Printer on fire",
            "description": "Smoke everywhere",
            "requesterEmail": "jane@example.com",
            "priority": "TICKET_PRIORITY_HIGH"
        }))
        .send()
        .await
        .expect("POST /v1/tickets");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    let created: Value = response.json().await.expect("JSON");
    assert_eq!(created["subject"], "Printer on fire");
    assert_eq!(created["priority"], "TICKET_PRIORITY_HIGH");
    assert_eq!(created["status"], "TICKET_STATUS_NEW");
    assert_eq!(created["requesterEmail"], "jane@example.com");
    let id = created["id"].as_str().expect("an id");

    let response = http
        .get(envoy.url(&format!("/v1/tickets/{id}")))
        .header("x-account-id", app.account_id.to_string())
        .send()
        .await
        .expect("GET /v1/tickets/{id}");
    assert_eq!(response.status(), StatusCode::OK);
    let fetched: Value = response.json().await.expect("JSON");
    assert_eq!(fetched, created);

    let response = http
        .get(envoy.url("/v1/tickets?pageSize=1"))
        .header("x-account-id", app.account_id.to_string())
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
        .header("x-account-id", app.account_id.to_string())
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
    assert_eq!(
        fields,
        [
            "ticket.subject",
            "ticket.description",
            "ticket.requester_email"
        ]
    );
}

#[tokio::test]
async fn a_missing_ticket_is_404_and_a_missing_account_401() {
    let app = TestApp::spawn().await;
    let (envoy, http) = envoy_for(&app).await;

    let response = http
        .get(envoy.url("/v1/tickets/0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c"))
        .header("x-account-id", app.account_id.to_string())
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["details"][0]["reason"], "TICKET_NOT_FOUND");

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
        .header("x-account-id", app.account_id.to_string())
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let response = http
        .get(envoy.url("/v1/tickets?colour=blue"))
        .header("x-account-id", app.account_id.to_string())
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
        .header("x-account-id", app.account_id.to_string())
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
}
