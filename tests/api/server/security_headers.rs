//! The security headers of a JSON API on every REST answer, whoever gives it (the service through
//! the transcoder, the Lua filter, Envoy itself, the CORS filter, the health route), and no
//! header naming what runs behind the port: no `server`, no `x-envoy-upstream-service-time`, no
//! `grpc-status`/`grpc-message` (docs/http-contract.md, "Headers"). gRPC-Web keeps its status
//! headers, which are its protocol.

use reqwest::Method;
use serde_json::json;

use crate::support::TestApp;
use crate::support::envoy::Envoy;

const ORIGIN: &str = "https://desk.example.com";

/// Headers that tell a REST client about what runs behind the port, and that no REST answer
/// carries.
const INTERNAL_HEADERS: [&str; 5] = [
    "server",
    "x-envoy-upstream-service-time",
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
];

/// The headers every answer carries, and their values.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
];

/// One request: what it is, its method, path, extra headers and JSON body, and the status it gets.
type Case<'a> = (
    &'a str,
    Method,
    String,
    Vec<(&'a str, &'a str)>,
    Option<serde_json::Value>,
    u16,
);

#[tokio::test]
async fn every_rest_answer_carries_the_security_headers_and_no_server_header() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_allowing_origins(app.address.port(), &[ORIGIN]).await;
    let ticket = app.create_ticket("Security headers").await;
    let http = reqwest::Client::new();
    let token = app.admin.access_token.clone();
    let cases: Vec<Case<'_>> = vec![
        // A plain GET, which skips the Lua filter.
        (
            "a read",
            Method::GET,
            format!("/v1/tickets/{}", ticket.id),
            vec![],
            None,
            200,
        ),
        // A GET with a query, which takes it.
        (
            "a page",
            Method::GET,
            "/v1/tickets?pageSize=2".to_owned(),
            vec![],
            None,
            200,
        ),
        (
            "a write",
            Method::POST,
            "/v1/tickets".to_owned(),
            vec![],
            Some(json!({"subject": "S", "description": "D", "requesterEmail": "sh@example.com"})),
            201,
        ),
        (
            "the service's refusal",
            Method::GET,
            "/v1/tickets/0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c".to_owned(),
            vec![],
            None,
            404,
        ),
        (
            "the Lua filter's refusal",
            Method::POST,
            "/v1/tickets".to_owned(),
            vec![],
            Some(json!({"subject": "S", "severity": "high"})),
            400,
        ),
        (
            "the Lua filter's 405",
            Method::PUT,
            "/v1/tickets".to_owned(),
            vec![],
            None,
            405,
        ),
        (
            "Envoy's 404",
            Method::GET,
            "/v1/nothing-here".to_owned(),
            vec![],
            None,
            404,
        ),
        (
            "the health route",
            Method::GET,
            "/healthz".to_owned(),
            vec![],
            None,
            200,
        ),
        (
            "a CORS preflight",
            Method::OPTIONS,
            "/v1/tickets".to_owned(),
            vec![
                ("origin", ORIGIN),
                ("access-control-request-method", "POST"),
            ],
            None,
            200,
        ),
    ];
    for (name, method, path, headers, body, status) in cases {
        let mut request = http.request(method, envoy.url(&path)).bearer_auth(&token);
        for (header, value) in headers {
            request = request.header(header, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status().as_u16(), status, "{name}");
        for (header, value) in SECURITY_HEADERS {
            assert_eq!(
                response.headers().get(header).map(|v| v.to_str().unwrap()),
                Some(value),
                "{name}: {header}"
            );
        }
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{name}: an answer to a caller is never cached"
        );
        for header in INTERNAL_HEADERS {
            assert!(
                response.headers().get(header).is_none(),
                "{name}: {header} in {:?}",
                response.headers()
            );
        }
    }
}

#[tokio::test]
async fn the_openapi_document_may_be_cached_and_still_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let response = reqwest::get(envoy.url("/v1/openapi.json"))
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("public, max-age=300")
    );
    for (header, value) in SECURITY_HEADERS {
        assert_eq!(
            response.headers().get(header).map(|v| v.to_str().unwrap()),
            Some(value),
            "{header}"
        );
    }
    for header in INTERNAL_HEADERS {
        assert!(response.headers().get(header).is_none(), "{header}");
    }
}

#[tokio::test]
async fn a_grpc_web_answer_keeps_its_status_headers_and_shows_no_service_time() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    // An unauthenticated call: trailers-only, so gRPC-Web carries its status as headers.
    let response = envoy
        .grpc_web("/supportdesk.v1.TicketService/ListTickets", &[])
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    assert_eq!(header("grpc-status").as_deref(), Some("16"));
    assert!(header("grpc-message").is_some());
    assert_eq!(header("x-envoy-upstream-service-time"), None);
    assert_eq!(header("server"), None);
}
