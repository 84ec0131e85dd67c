//! Schemathesis (PyPI), a fuzzer nobody here wrote, against the REST API through real Envoy
//! (the repository's config), reading the document Envoy serves at `/v1/openapi.json`, with a
//! real access token of the account's admin (logged in over REST). Every operation is called
//! with generated valid and invalid requests (a bounded number each, a fixed seed), and each
//! answer is checked: never a 5xx, a status the document lists for the operation, the content
//! type and body the document gives for that status (the `google.rpc.Status` shape for every
//! error), and the headers it declares.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::envoy::Envoy;
use crate::support::{TEST_PASSWORD, TestApp, repository_root, tool};

/// The checks of every call (schemathesis's names): `unsupported_method` sends every method a
/// path does not serve and wants 405 with `Allow`, and `allow_header_conformance` wants that
/// `Allow` to be exactly the document's methods of the path. The methods tried are in
/// schemathesis.toml beside this file: all of schemathesis's but a bodiless `QUERY`, which
/// Envoy refuses as malformed before any filter runs (the file says why).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,\
                      unsupported_method,allow_header_conformance";

/// Operations that end the caller's session: fuzzed last, with a session of their own, so that
/// every other operation is called with a live token.
const SESSION_ENDING: &str = "^AuthService_Logout(All)?$";

/// Logs the admin in over REST and returns the access token.
async fn log_in_over_rest(envoy: &Envoy, app: &TestApp) -> String {
    let response = reqwest::Client::new()
        .post(envoy.url("/v1/auth:login"))
        .json(&json!({
            "account": app.admin.account_slug,
            "email": app.admin.email,
            "password": TEST_PASSWORD,
        }))
        .send()
        .await
        .expect("POST /v1/auth:login");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    body["tokens"]["accessToken"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// Runs schemathesis with the document at `schema` (a URL or a file) over the operations
/// `filter` selects; the error is its report.
fn schemathesis(
    envoy: &Envoy,
    schema: &str,
    token: &str,
    filter: [&str; 2],
    workdir: &Path,
) -> Result<(), String> {
    let config = repository_root().join("tests/api/rest_contract/schemathesis.toml");
    // Works around a race in CPython 3.11's parser between the two workers (the file says which).
    let hooks = repository_root().join("tests/api/rest_contract/schemathesis_hooks.py");
    let output = Command::new(tool("SCHEMATHESIS_BIN"))
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(schema)
        .args(["--url", &envoy.url("")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        .args(["--mode", "all"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25"])
        .args(["--seed", "30"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "20"])
        .args(["--suppress-health-check", "all"])
        .args(filter)
        .current_dir(workdir)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", hooks)
        .output()
        .expect("run schemathesis");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_in_any_operation_through_envoy() {
    let app = TestApp::spawn_with(|settings| {
        // The fuzzer reads a WatchEvents stream to its end: let it end at once.
        settings.outbound_webhooks.watch_max_duration = std::time::Duration::from_millis(200);
    })
    .await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let workdir = tempfile::tempdir().expect("a temporary directory");

    let token = log_in_over_rest(&envoy, &app).await;
    let outcome = tokio::task::block_in_place(|| {
        schemathesis(
            &envoy,
            &envoy.url("/v1/openapi.json"),
            &token,
            ["--exclude-operation-id-regex", SESSION_ENDING],
            workdir.path(),
        )
    });
    if let Err(report) = outcome {
        panic!("schemathesis found problems:\n{report}");
    }

    let token = log_in_over_rest(&envoy, &app).await;
    let outcome = tokio::task::block_in_place(|| {
        schemathesis(
            &envoy,
            &envoy.url("/v1/openapi.json"),
            &token,
            ["--include-operation-id-regex", SESSION_ENDING],
            workdir.path(),
        )
    });
    if let Err(report) = outcome {
        panic!("schemathesis found problems in Logout and LogoutAll:\n{report}");
    }
}

/// The checks bite: the same run against a copy of the document that leaves one status out of
/// one operation (GetTicket's 404, which any unknown id gets) reports the undocumented status.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_reports_a_status_the_document_does_not_list() {
    let app = TestApp::spawn_with(|settings| {
        // The fuzzer reads a WatchEvents stream to its end: let it end at once.
        settings.outbound_webhooks.watch_max_duration = std::time::Duration::from_millis(200);
    })
    .await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let workdir = tempfile::tempdir().expect("a temporary directory");
    let mut document: Value = serde_json::from_str(
        &std::fs::read_to_string(super::checked_in_document()).expect("docs/openapi.json"),
    )
    .expect("JSON");
    let responses = document["paths"]["/v1/tickets/{id}"]["get"]["responses"]
        .as_object_mut()
        .expect("GetTicket's responses");
    assert!(responses.remove("404").is_some(), "GetTicket documents 404");
    let schema = workdir.path().join("openapi.json");
    std::fs::write(&schema, document.to_string()).expect("write the copy");

    let token = log_in_over_rest(&envoy, &app).await;
    let report = tokio::task::block_in_place(|| {
        schemathesis(
            &envoy,
            schema.to_str().expect("a UTF-8 path"),
            &token,
            ["--include-operation-id", "TicketService_GetTicket"],
            workdir.path(),
        )
    })
    .expect_err("schemathesis finds the undocumented 404");
    assert!(report.contains("Undocumented status code"), "{report}");
    assert!(report.contains("Received: 404"), "{report}");
}
