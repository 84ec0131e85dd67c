//! A real browser (headless Chromium) calling the API through Envoy from a page on another
//! origin, as a browser application does: CORS preflights, `credentials: "include"`, REST with
//! JSON, one RPC over gRPC-Web, and an error's JSON details. What the page saw is asserted here,
//! and what reached Envoy is read from its access log.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use supportdesk::errors::Reason;

use crate::support::browser::{self, PageServer};
use crate::support::envoy::Envoy;
use crate::support::{PATIENCE, TEST_PASSWORD, TestApp, assert_json_reason, count_of, wait_until};

#[tokio::test]
async fn a_page_on_an_allowed_origin_logs_in_creates_and_lists_tickets_and_calls_grpc_web() {
    let app = TestApp::spawn().await;
    let page = PageServer::start().await;
    let envoy = Envoy::start_allowing_origins(app.address.port(), &[&page.origin]).await;
    let api = envoy.url("");

    let seen = browser::open(&page.url(&[
        ("api", &api),
        ("account", &app.admin.account_slug),
        ("email", &app.admin.email),
        ("password", TEST_PASSWORD),
    ]))
    .await;

    assert_eq!(seen["failed"], Value::Null, "the page failed: {seen:#}");
    assert_eq!(seen["origin"], page.origin.as_str());
    assert_eq!(seen["login"], json!({"status": 200, "gotToken": true}));

    let created = &seen["create"];
    assert_eq!(created["status"], 201, "{seen:#}");
    let id = created["id"].as_str().expect("the created ticket's id");
    let subject = created["subject"].as_str().expect("its subject");
    // Headers a page may read only because Envoy exposes them to an allowed origin.
    assert_eq!(created["location"], format!("/v1/tickets/{id}"));
    assert!(
        created["requestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM tickets WHERE id = '{id}' AND subject = '{subject}'"
            ),
        )
        .await,
        1
    );

    assert_eq!(seen["list"]["status"], 200);
    assert_eq!(seen["list"]["subjects"], json!([subject]));

    assert_eq!(
        seen["error"],
        json!({
            "status": 400,
            "code": 3,
            "reason": Reason::InvalidArgument.as_str(),
            // `{}` names every missing field at once, by the body's names.
            "fields": ["subject", "description", "requesterEmail"],
        })
    );

    assert_eq!(
        seen["grpcWeb"],
        json!({"httpStatus": 200, "grpcStatus": "0", "id": id, "subject": subject})
    );
    assert_eq!(
        seen["grpcWebMissing"],
        json!({"grpcStatus": "5", "hasStatusDetails": true})
    );

    // The browser preflighted the calls that send Authorization or JSON, Envoy answered the
    // preflights itself, and every call then reached the service.
    let mut entries = Vec::new();
    wait_until("Envoy's access log has the page's calls", PATIENCE, || {
        entries = envoy.access_log();
        let logged = |method: &str, path: &str| {
            entries
                .iter()
                .any(|entry| entry["method"] == method && entry["path"] == path)
        };
        std::future::ready(
            logged("OPTIONS", "/v1/tickets")
                && logged("POST", "/v1/tickets")
                && logged("POST", "/supportdesk.v1.TicketService/GetTicket"),
        )
    })
    .await;
    assert!(
        entries
            .iter()
            .filter(|entry| entry["method"] == "OPTIONS")
            .all(|entry| entry["status"] == 200),
        "{entries:#?}"
    );
}

#[tokio::test]
async fn a_page_on_an_origin_that_is_not_allowed_reads_nothing_and_its_preflight_is_refused() {
    let app = TestApp::spawn().await;
    let allowed = PageServer::start().await;
    let stranger = PageServer::start().await;
    let envoy = Envoy::start_allowing_origins(app.address.port(), &[&allowed.origin]).await;

    let seen = browser::open(&stranger.url(&[
        ("mode", "stranger"),
        ("api", &envoy.url("")),
        ("token", &app.admin.access_token),
    ]))
    .await;

    assert_eq!(seen["failed"], Value::Null, "the page failed: {seen:#}");
    assert_eq!(
        seen["read"],
        Value::Null,
        "the page read an answer: {seen:#}"
    );
    assert_eq!(seen["blocked"]["name"], "TypeError", "{seen:#}");
    // The browser stopped at the refused preflight: the call itself never reached Envoy.
    let mut entries = Vec::new();
    wait_until("Envoy's access log has the preflight", PATIENCE, || {
        entries = envoy.access_log();
        std::future::ready(entries.iter().any(|entry| entry["method"] == "OPTIONS"))
    })
    .await;
    assert!(
        entries
            .iter()
            .filter(|entry| entry["path"] == "/v1/tickets")
            .all(|entry| entry["method"] == "OPTIONS" && entry["status"] == 403),
        "{entries:#?}"
    );

    // What the browser was told, as a developer reads it in the network panel.
    let preflight = reqwest::Client::new()
        .request(Method::OPTIONS, envoy.url("/v1/tickets"))
        .header("origin", &stranger.origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::FORBIDDEN);
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert_eq!(preflight.headers()["content-type"], "application/json");
    let body: Value = preflight.json().await.unwrap();
    assert_eq!(body["code"], 7);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| message.contains("CORS_ALLOWED_ORIGINS")),
        "{body}"
    );
    assert_json_reason(&body, Reason::OriginNotAllowed);
}

#[tokio::test]
async fn an_allowed_origin_setting_that_is_not_an_origin_is_refused_naming_it() {
    use crate::support::envoy::{envoy_config, parsed};
    for bad in [
        "https://desk.example.com/",
        "desk.example.com",
        "https://*.example.com",
    ] {
        let output = envoy_config(
            &[(
                "CORS_ALLOWED_ORIGINS",
                format!("http://localhost:3000,{bad}"),
            )],
            &[],
        )
        .output()
        .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(
            message.contains("CORS_ALLOWED_ORIGINS") && message.contains(&format!("\"{bad}\"")),
            "{message}"
        );
        assert!(output.stdout.is_empty(), "{bad}: a config was written");
    }

    let output = envoy_config(
        &[(
            "CORS_ALLOWED_ORIGINS",
            " https://desk.example.com , http://[::1]:8000".to_owned(),
        )],
        &[],
    )
    .output()
    .unwrap();
    assert!(output.status.success());
    let config = parsed(&String::from_utf8(output.stdout).unwrap());
    let listener = config["static_resources"]["listeners"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|listener| listener["name"].as_str() == Some("rest"))
        .unwrap();
    let origins: Vec<&str> =
        listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
            [0]["typed_per_filter_config"]["envoy.filters.http.cors"]["allow_origin_string_match"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|origin| origin["exact"].as_str().unwrap())
            .collect();
    assert_eq!(origins, ["https://desk.example.com", "http://[::1]:8000"]);
}
