//! The edge's limits through real Envoy (deploy/envoy/envoy.yaml): header sizes that Envoy and
//! the service agree on, a bound on receiving the whole request, gRPC-Web's answer to a body
//! over 1 MiB, the gRPC status the access log records, and the route deadline's setting
//! (what outlasts it is in tickets::export).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::envoy::Envoy;
use crate::support::{TestApp, assert_json_reason, assert_reason, repository_root};

#[tokio::test]
async fn headers_over_the_edges_32_kib_are_refused_by_envoy_as_json_431() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let response = reqwest::Client::new()
        .get(envoy.url("/v1/tickets"))
        .bearer_auth(&app.admin.access_token)
        .header("x-padding", "p".repeat(40 * 1024))
        .send()
        .await
        .expect("an answer");
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 8, "{body}");
    assert_json_reason(&body, Reason::HeadersTooLarge);
    assert_eq!(body["details"][0]["domain"], "supportdesk");
}

#[tokio::test]
async fn every_header_list_envoy_forwards_fits_within_the_services_limit() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();

    // Just under Envoy's limit in one header (hyper's default would refuse anything over 16 KiB).
    let response = http
        .get(envoy.url("/v1/tickets"))
        .bearer_auth(&app.admin.access_token)
        .header("x-padding", "p".repeat(31 * 1024))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);

    // A long query, which Envoy forwards again in x-envoy-original-path: an order padded with
    // 9,000 spaces (27 KiB escaped; a list would be refused past its 32 items).
    let query = format!("order_by={}create_time", "%20".repeat(9000));
    let response = http
        .get(envoy.url(&format!("/v1/tickets?{query}")))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("an answer");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["tickets"].is_array(), "{body}");
}

#[tokio::test]
async fn a_direct_grpc_client_over_the_services_header_limit_gets_headers_too_large() {
    let app = TestApp::spawn().await;
    let limit = app.settings.server.max_request_header_bytes;
    let mut request = app.as_admin(v1::ListTicketsRequest::default());
    request.metadata_mut().insert(
        "x-padding",
        "p".repeat(limit + 1024).parse().expect("ASCII metadata"),
    );
    let status = app
        .tickets
        .clone()
        .list_tickets(request)
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_reason(&status, Reason::HeadersTooLarge);
    let details = crate::support::details(&status);
    assert_eq!(
        details.error_info().expect("ErrorInfo").metadata["limit"],
        limit.to_string()
    );
}

#[tokio::test]
async fn a_request_body_dripping_in_is_answered_408_json_once_the_request_timeout_passes() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", envoy.port))
        .await
        .expect("connect to Envoy");
    let started = Instant::now();
    socket
        .write_all(
            format!(
                "POST /v1/tickets HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\n\
                 content-type: application/json\r\ncontent-length: 1000\r\n\r\n",
                app.admin.access_token
            )
            .as_bytes(),
        )
        .await
        .expect("send the headers");
    // One byte every 2 s: never idle long enough for stream_idle_timeout (30 s), so only a
    // bound on the whole request ends it.
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 4096];
    while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still open after {:?}: {}",
            started.elapsed(),
            String::from_utf8_lossy(&answer)
        );
        let _ = socket.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buffer)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(read)) => answer.extend_from_slice(&buffer[..read]),
            Ok(Err(error)) => panic!("reading the answer: {error}"),
            Err(_) => {}
        }
    }
    let elapsed = started.elapsed();
    // The rest of the body, if it came in another read.
    while let Ok(Ok(read)) =
        tokio::time::timeout(Duration::from_millis(500), socket.read(&mut buffer)).await
    {
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408 "),
        "after {elapsed:?}: {answer}"
    );
    // Not before the 20 s request_timeout, and before the loop above gives up at 30 s (the
    // stream idle timeout never fires: a byte comes every 2 s); a loaded machine adds seconds.
    assert!(
        (Duration::from_secs(19)..Duration::from_secs(30)).contains(&elapsed),
        "answered after {elapsed:?}, not at the 20 s request_timeout"
    );
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default())
        .expect("a JSON body");
    assert_eq!(body["code"], 4, "{body}");
    assert_json_reason(&body, Reason::RequestTimeout);
}

#[tokio::test]
async fn a_grpc_web_request_over_1_mib_is_http_200_with_resource_exhausted() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let response = envoy
        .grpc_web(
            "/supportdesk.v1.TicketService/CreateTicket",
            &vec![0_u8; 1024 * 1024 + 1],
        )
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("an answer");
    let status = grpc_web_status(response).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.message(), "the request is larger than 1 MiB");
    assert_reason(&status, Reason::RequestTooLarge);
}

/// The status of a trailers-only gRPC-Web answer, checked to be one: HTTP 200, the gRPC-Web
/// content type, the status in the headers, no body.
async fn grpc_web_status(response: reqwest::Response) -> tonic::Status {
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/grpc-web+proto");
    assert!(response.bytes().await.expect("the body").is_empty());
    tonic::Status::from_header_map(&headers).expect("grpc-status in the headers")
}

#[tokio::test]
async fn a_grpc_web_client_is_told_the_service_is_unreachable_in_grpc_status_with_http_200() {
    // Nothing listens on the backend port.
    let nothing = crate::support::ClosedPort::new();
    let envoy = Envoy::start_in_front_of(nothing.port).await;
    let response = envoy
        .grpc_web("/supportdesk.v1.TicketService/ListTickets", &[])
        .send()
        .await
        .expect("an answer");
    let status = grpc_web_status(response).await;
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_reason(&status, Reason::BackendUnavailable);
    let details = crate::support::details(&status);
    assert_eq!(
        details.error_info().expect("ErrorInfo").domain,
        "supportdesk"
    );
}

#[tokio::test]
async fn the_access_log_records_the_grpc_status_the_client_was_told() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    let cases = [
        // A validation error of the service: INVALID_ARGUMENT, not the 13 Envoy derives from 400.
        (
            "invalid",
            reqwest::Method::POST,
            "/v1/tickets",
            Some(json!({"subject": ""})),
            StatusCode::BAD_REQUEST,
            "3",
        ),
        // NOT_FOUND from the service, not the 12 Envoy derives from 404.
        (
            "missing",
            reqwest::Method::GET,
            "/v1/tickets/0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c",
            None,
            StatusCode::NOT_FOUND,
            "5",
        ),
        // A success on a plain GET route (no Lua filter), whose grpc-status 0 the client is
        // no longer shown.
        (
            "listed",
            reqwest::Method::GET,
            "/v1/tickets",
            None,
            StatusCode::OK,
            "0",
        ),
        // Envoy's own answer, as its JSON body says.
        (
            "unknown-path",
            reqwest::Method::GET,
            "/v1/nothing-here",
            None,
            StatusCode::NOT_FOUND,
            "5",
        ),
        // A success with a 201.
        (
            "created",
            reqwest::Method::POST,
            "/v1/tickets",
            Some(
                json!({"subject": "Logged", "description": "Access log", "requesterEmail": "l@example.com"}),
            ),
            StatusCode::CREATED,
            "0",
        ),
    ];
    for (name, method, path, body, status, grpc_status) in cases {
        let request_id = format!("access-log-{name}-{}", uuid::Uuid::now_v7());
        let mut request = http
            .request(method, envoy.url(path))
            .bearer_auth(&app.admin.access_token)
            .header("x-request-id", &request_id);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), status, "{name}");
        if !status.is_success() {
            assert!(
                response.headers().get("grpc-status").is_none(),
                "{name}: the recorded status never reaches the client"
            );
        }
        let entry = envoy.access_log_entry(&request_id).await;
        assert_eq!(entry["status"], status.as_u16(), "{name}: {entry}");
        assert_eq!(entry["grpc_status"], grpc_status, "{name}: {entry}");
    }

    // gRPC-Web: a success, whose status travels in the trailers, and an error.
    for (name, token, grpc_status) in [
        ("grpc-web-ok", app.admin.access_token.as_str(), "0"),
        ("grpc-web-unauthenticated", "not-a-token", "16"),
    ] {
        let request_id = format!("access-log-{name}-{}", uuid::Uuid::now_v7());
        let response = envoy
            .grpc_web("/supportdesk.v1.TicketService/ListTickets", &[])
            .header("x-request-id", &request_id)
            .bearer_auth(token)
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        let entry = envoy.access_log_entry(&request_id).await;
        assert_eq!(entry["grpc_status"], grpc_status, "{name}: {entry}");
    }
}

#[tokio::test]
async fn a_grpc_web_stream_reaches_the_client_before_it_ends() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    // Health/Watch never ends on its own: its first answer must pass the Lua filter unbuffered.
    let mut response = envoy
        .grpc_web("/grpc.health.v1.Health/Watch", &[])
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let first = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .expect("the first message within 5 s")
        .expect("a chunk")
        .expect("not the end of the stream");
    // A data frame (flag 0) holding a HealthCheckResponse.
    assert_eq!(first[0], 0, "{first:?}");
    assert_eq!(first[5], 0x08, "{first:?}");
}

/// `(grpc-status, grpc-message, ErrorInfo reason)` of every trailers-only answer Envoy's config
/// sends gRPC-Web clients, decoded from its `grpc-status-details-bin`, which must agree with the
/// two headers beside it.
fn grpc_web_failures_in_the_config() -> Vec<(String, String, String)> {
    let config = std::fs::read_to_string(repository_root().join("deploy/envoy/envoy.yaml"))
        .expect("deploy/envoy/envoy.yaml");
    let value_of = |line: &str| {
        line.split("value: \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a quoted value")
            .to_owned()
    };
    let mut headers = http::HeaderMap::new();
    let mut found = Vec::new();
    for line in config.lines() {
        for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
            if line.contains(&format!("key: {name},")) {
                headers.insert(name, value_of(line).parse().expect("a header value"));
            }
        }
        if headers.len() == 3 {
            let status = tonic::Status::from_header_map(&headers).expect("a status");
            let details = crate::support::details(&status);
            let info = details.error_info().expect("ErrorInfo in the details");
            assert_eq!(info.domain, "supportdesk");
            let code = headers["grpc-status"].to_str().unwrap().to_owned();
            assert_eq!(
                i32::from(status.code()).to_string(),
                code,
                "grpc-status-details-bin's code is the grpc-status beside it"
            );
            found.push((code, status.message().to_owned(), info.reason.clone()));
            headers.clear();
        }
    }
    found
}

#[test]
fn envoys_grpc_web_failures_carry_the_documented_status_and_reason() {
    let contract = std::fs::read_to_string(repository_root().join("docs/http-contract.md"))
        .expect("docs/http-contract.md");
    let table = contract
        .split("| when | grpc-status | grpc-message | reason |")
        .nth(1)
        .expect("the gRPC-Web failures table");
    let documented: Vec<(String, String, String)> = table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = cells[2].split(' ').next().unwrap_or_default();
            (
                code.to_owned(),
                cells[3].to_owned(),
                cells[4].trim_matches('`').to_owned(),
            )
        })
        .collect();
    let configured = grpc_web_failures_in_the_config();
    assert_eq!(
        configured, documented,
        "deploy/envoy/envoy.yaml's gRPC-Web answers and docs/http-contract.md's table differ"
    );
}

#[test]
fn the_route_timeout_setting_sets_every_routes_deadline_but_the_exports_and_takes_only_whole_seconds()
 {
    use crate::support::envoy::{envoy_config, parsed, render_with, rest_routes};
    for bad in ["0", "1.5", "15s", "-1", "3601"] {
        let output = envoy_config(&[("ROUTE_TIMEOUT_SECS", bad.to_owned())], &[])
            .output()
            .expect("run supportdesk envoy-config");
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(
            message.contains("ROUTE_TIMEOUT_SECS") && message.contains(&format!("\"{bad}\"")),
            "{message}"
        );
        assert!(output.stdout.is_empty(), "{bad}: a config was written");
    }

    let config = parsed(&render_with(&[("ROUTE_TIMEOUT_SECS", "7".to_owned())]));
    // Every route's deadline, by route: ExportTickets' and WatchEvents' are their own (30 s
    // above the service's EXPORT_MAX_DURATION_SECS and WATCH_MAX_DURATION_SECS, not this
    // setting); every other route to the instances (UploadAttachment's two, the plain GETs, the
    // generated retry routes, the catch-all) has this one; the OpenAPI document's has none.
    let mut per_try = std::collections::BTreeSet::new();
    for route in rest_routes(&config) {
        let name = route["name"].as_str().expect("a named route").to_owned();
        let action = &route["route"];
        let deadline = match name.as_str() {
            "openapi_document" => {
                assert!(action.is_null(), "{name}");
                continue;
            }
            "export_tickets" => "630s",
            "watch_events" => "3630s",
            _ => "7s",
        };
        assert_eq!(action["timeout"].as_str(), Some(deadline), "{name}");
        assert_eq!(
            action["max_grpc_timeout"].as_str(),
            Some(deadline),
            "{name}"
        );
        if let Some(timeout) = action["retry_policy"]["per_try_timeout"].as_str() {
            assert!(name.starts_with("retry_safe/"), "{name}");
            per_try.insert(timeout.to_owned());
        }
    }
    // A retried read's tries share the deadline: a third each.
    assert_eq!(per_try.into_iter().collect::<Vec<_>>(), ["2.333s"]);
}

/// The long streams' limits in Envoy follow the service's settings given to the renderer, and
/// anything but a whole number stops it naming the setting.
#[test]
fn the_long_streams_limits_in_envoy_are_derived_from_the_services_settings() {
    use crate::support::envoy::{envoy_config, parsed, render_with, rest_routes};
    for setting in [
        "WATCH_MAX_STREAMS_PER_INSTANCE",
        "EXPORT_MAX_CONCURRENT_PER_INSTANCE",
        "WATCH_MAX_DURATION_SECS",
        "EXPORT_MAX_DURATION_SECS",
        "WATCH_HEARTBEAT_SECS",
        "STREAM_INSTANCES",
    ] {
        let output = envoy_config(&[(setting, "0".to_owned())], &[])
            .output()
            .expect("run supportdesk envoy-config");
        assert_eq!(output.status.code(), Some(2), "{setting}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(setting),
            "{setting}"
        );
    }
    let config = parsed(&render_with(&[
        ("UPSTREAM_ADDRESSES", "127.0.0.1:1,127.0.0.1:2".to_owned()),
        ("WATCH_MAX_STREAMS_PER_INSTANCE", "7".to_owned()),
        ("EXPORT_MAX_CONCURRENT_PER_INSTANCE", "2".to_owned()),
        ("WATCH_MAX_DURATION_SECS", "100".to_owned()),
        ("EXPORT_MAX_DURATION_SECS", "50".to_owned()),
        ("WATCH_HEARTBEAT_SECS", "4".to_owned()),
    ]));
    let streams = config["static_resources"]["clusters"]
        .as_sequence()
        .expect("clusters")
        .iter()
        .find(|cluster| cluster["name"].as_str() == Some("supportdesk-streams"))
        .expect("the long streams' cluster");
    assert_eq!(
        streams["circuit_breakers"]["thresholds"][0]["max_requests"].as_u64(),
        Some(18)
    );
    let routes = rest_routes(&config);
    let route = |name: &str| {
        routes
            .iter()
            .find(|route| route["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("the route {name}"))["route"]
            .clone()
    };
    let export = route("export_tickets");
    assert_eq!(export["timeout"].as_str(), Some("80s"));
    assert_eq!(export["max_grpc_timeout"].as_str(), Some("80s"));
    let watch = route("watch_events");
    assert_eq!(watch["timeout"].as_str(), Some("130s"));
    assert_eq!(watch["max_grpc_timeout"].as_str(), Some("130s"));
    assert_eq!(watch["idle_timeout"].as_str(), Some("12s"));
}

/// Issue 67, item 1: the long streams (WatchEvents, ExportTickets) had Envoy's catch-all cluster,
/// circuit breaker and connections in common with every unary call, so enough hour-long streams
/// would have had Envoy refuse the unary calls too. They now have a cluster of their own whose
/// circuit breaker admits what the instances admit together (rendered here as one instance of
/// one stream and one export: two): one more stream is answered UNAVAILABLE over gRPC and 503
/// BACKEND_UNAVAILABLE over REST by Envoy, while unary calls go on, and a stream that ends
/// gives its place back.
#[tokio::test]
async fn beyond_envoys_limit_of_long_streams_one_more_is_unavailable_while_unary_calls_go_on() {
    use supportdesk::wire::proto::v1::event_service_client::EventServiceClient;
    use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;

    let app = TestApp::spawn_with(|settings| {
        // The service itself would admit more: what refuses is Envoy.
        settings.outbound_webhooks.watch_max_duration = Duration::from_secs(300);
        settings.outbound_webhooks.watch_max_per_account = 10;
        settings.outbound_webhooks.watch_max_per_instance = 10;
    })
    .await;
    let envoy = Envoy::start_rendered_with(
        app.address.port(),
        &[
            ("WATCH_MAX_STREAMS_PER_INSTANCE", "1".to_owned()),
            ("EXPORT_MAX_CONCURRENT_PER_INSTANCE", "1".to_owned()),
        ],
    )
    .await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", envoy.port))
            .unwrap()
            .connect()
            .await
            .expect("connect to Envoy");
    let mut events = EventServiceClient::new(channel.clone());
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(
            events
                .watch_events(app.as_admin(v1::WatchEventsRequest::default()))
                .await
                .expect("a stream within Envoy's limit starts")
                .into_inner(),
        );
    }

    let refused = events
        .watch_events(app.as_admin(v1::WatchEventsRequest::default()))
        .await
        .expect_err("one stream more than Envoy's limit is refused");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let http = reqwest::Client::new();
    let response = http
        .get(envoy.url("/v1/events:watch"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 14, "{body}");
    assert_json_reason(&body, Reason::BackendUnavailable);
    assert_eq!(
        envoy
            .stat("cluster.supportdesk-streams.upstream_rq_active_overflow")
            .await,
        2,
        "both refused by the long streams' own circuit breaker"
    );

    // Unary calls go on, over gRPC and REST, while the streams hold their limit.
    TicketServiceClient::new(channel.clone())
        .list_tickets(app.as_admin(v1::ListTicketsRequest::default()))
        .await
        .expect("a unary gRPC call through Envoy succeeds");
    let listed = http
        .get(envoy.url("/v1/tickets"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("an answer");
    assert_eq!(listed.status(), StatusCode::OK);

    // A stream that ends gives its place back.
    drop(open.pop());
    crate::support::wait_until(
        "a stream starts once one has ended",
        crate::support::PATIENCE,
        || async {
            events
                .clone()
                .watch_events(app.as_admin(v1::WatchEventsRequest::default()))
                .await
                .is_ok()
        },
    )
    .await;
    drop(open);
}
