//! Real grpcurl (1.8.6, which speaks reflection v1alpha only) against a running server.

use std::collections::BTreeSet;

use supportdesk::wire::methods::MethodTable;
use tokio::process::Command;

use crate::support::{PATIENCE, TestApp, grpcurl};

async fn run_grpcurl(arguments: &[&str]) -> (bool, String) {
    let output = Command::new(grpcurl())
        .arg("-plaintext")
        .args(arguments)
        .output()
        .await
        .expect("run grpcurl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn grpcurl_lists_every_service_through_reflection() {
    let app = TestApp::spawn().await;
    let address = app.address.to_string();
    let (ok, listed) = run_grpcurl(&[&address, "list"]).await;
    assert!(ok, "{listed}");
    let listed: BTreeSet<&str> = listed.lines().map(str::trim).collect();
    let served: BTreeSet<&str> = MethodTable::get()
        .expect("the method table loads")
        .methods()
        .map(|method| method.service.as_str())
        .collect();
    assert_eq!(listed, served, "every service served, and nothing else");
}

#[tokio::test]
async fn grpcurl_describes_the_ticket_service_with_its_http_paths() {
    let app = TestApp::spawn().await;
    let address = app.address.to_string();
    let (ok, described) =
        run_grpcurl(&[&address, "describe", "supportdesk.v1.TicketService"]).await;
    assert!(ok, "{described}");
    for expected in [
        "rpc CreateTicket",
        "rpc GetTicket",
        "rpc ListTickets",
        "/v1/tickets",
    ] {
        assert!(
            described.contains(expected),
            "{expected} missing from:\n{described}"
        );
    }
}

#[tokio::test]
async fn grpcurl_creates_a_ticket_and_sees_error_details() {
    let app = TestApp::spawn().await;
    let address = app.address.to_string();
    let account = format!("authorization: Bearer {}", app.admin.access_token);
    let (ok, created) = run_grpcurl(
        &[
            "-H",
            &account,
            "-d",
            r#"{"ticket":{"subject":"From grpcurl","description":"Hello","requesterEmail":"cli@example.com"}}"#,
            &address,
            "supportdesk.v1.TicketService/CreateTicket",
        ],
    ).await;
    assert!(ok, "{created}");
    let ticket: serde_json::Value = serde_json::from_str(&created).expect("JSON output");
    assert_eq!(ticket["subject"], "From grpcurl");
    assert_eq!(ticket["status"], "TICKET_STATUS_NEW");

    let (ok, refused) = run_grpcurl(&[
        "-format-error",
        "-H",
        &account,
        "-d",
        r#"{"ticket":{"subject":"","description":"Hello","requesterEmail":"cli@example.com"}}"#,
        &address,
        "supportdesk.v1.TicketService/CreateTicket",
    ])
    .await;
    assert!(!ok);
    assert!(
        refused.contains("\"code\": 3"),
        "INVALID_ARGUMENT: {refused}"
    );
    assert!(
        refused.contains("type.googleapis.com/google.rpc.BadRequest")
            && refused.contains("\"field\":\"ticket.subject\""),
        "details rendered: {refused}"
    );
}

#[tokio::test]
async fn grpcurl_checks_health_without_credentials() {
    let app = TestApp::spawn().await;
    app.wait_for_health("Serving", PATIENCE).await;
    let address = app.address.to_string();
    let (ok, answer) = run_grpcurl(&[&address, "grpc.health.v1.Health/Check"]).await;
    assert!(ok, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("grpcurl prints JSON");
    assert_eq!(answer["status"], "SERVING", "{answer}");
}

#[tokio::test]
async fn grpcurl_logs_in_and_calls_with_the_token() {
    let app = TestApp::spawn().await;
    let address = app.address.to_string();
    let login = format!(
        r#"{{"account":"{}","email":"{}","password":"{}"}}"#,
        app.admin.account_slug,
        app.admin.email,
        crate::support::TEST_PASSWORD
    );
    let (ok, answer) =
        run_grpcurl(&["-d", &login, &address, "supportdesk.v1.AuthService/Login"]).await;
    assert!(ok, "{answer}");
    let response: serde_json::Value = serde_json::from_str(&answer).expect("JSON output");
    let token = response["tokens"]["accessToken"].as_str().expect("a token");
    let authorization = format!("authorization: Bearer {token}");
    let (ok, me) = run_grpcurl(&[
        "-H",
        &authorization,
        &address,
        "supportdesk.v1.UserService/GetCurrentUser",
    ])
    .await;
    assert!(ok, "{me}");
    assert!(me.contains(&app.admin.email), "{me}");
}
