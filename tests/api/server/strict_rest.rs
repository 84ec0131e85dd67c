//! The strict REST contract, through real Envoy rendered from deploy/envoy/envoy.yaml
//! (docs/http-contract.md, "Requests", "Field paths", "One shape"): unknown members refused by
//! name, JSON taken only as JSON, 405 with an `Allow` generated from the rules, every violation
//! named at once by the body's own names (a list's filters, read mask and page alike, the mask's
//! paths in lowerCamelCase), Envoy's refusals in the service's error JSON, and page sizes as
//! documented.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;

use crate::rest_contract::concrete_paths;
use crate::support::envoy::Envoy;
use crate::support::{
    TestApp, assert_json_reason, assert_reason, count_of, valid_create_request, violated_fields,
};

/// One answer through Envoy: status, headers and the JSON body (`Null` when there is none).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn send(
    envoy: &Envoy,
    method: Method,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut request = reqwest::Client::new()
        .request(method, envoy.url(path))
        .bearer_auth(token);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response = request.send().await.expect("an answer from Envoy");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

async fn post_json(envoy: &Envoy, path: &str, token: &str, body: &str) -> Answer {
    send(
        envoy,
        Method::POST,
        path,
        token,
        Some("application/json"),
        Some(body),
    )
    .await
}

/// The service's error JSON: ErrorInfo with `reason`, then a BadRequest of `violations`.
fn error_json(reason: Reason, message: &str, violations: &[(&str, &str)]) -> Value {
    let mut details = vec![json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason.as_str(),
        "domain": "supportdesk",
        "metadata": {},
    })];
    if !violations.is_empty() {
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": violations
                .iter()
                .map(|(field, description)| json!({"field": field, "description": description}))
                .collect::<Vec<_>>(),
        }));
    }
    let code = if reason == Reason::MethodNotAllowed {
        12
    } else {
        3
    };
    json!({"code": code, "message": message, "details": details})
}

fn bad_request_fields(body: &Value) -> Vec<String> {
    body["details"]
        .as_array()
        .and_then(|details| {
            details
                .iter()
                .find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        })
        .and_then(|bad| bad["fieldViolations"].as_array())
        .map(|violations| {
            violations
                .iter()
                .map(|violation| violation["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_misspelt_member_is_refused_by_name_in_creates_updates_and_nested_objects() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let token = &app.admin.access_token;

    let created = post_json(
        &envoy,
        "/v1/tickets",
        token,
        r#"{"subject":"Typo ticket","description":"Smoke","requesterEmail":"jane@example.com","priorty":"TICKET_PRIORITY_URGENT"}"#,
    )
    .await;
    assert_eq!(created.status, StatusCode::BAD_REQUEST, "{}", created.body);
    assert_json_reason(&created.body, Reason::UnknownField);
    assert_eq!(
        created.body,
        error_json(
            Reason::UnknownField,
            "invalid request: priorty is not a field of this request",
            &[("priorty", "is not a field of this request")],
        )
    );
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM tickets WHERE subject = 'Typo ticket'"
        )
        .await,
        0,
        "nothing was created"
    );

    let ticket = app.create_ticket("Named right").await;
    let updated = send(
        &envoy,
        Method::PATCH,
        &format!("/v1/tickets/{}?updateMask=subject", ticket.id),
        token,
        Some("application/json"),
        Some(r#"{"subjct":"Renamed","subject":"Renamed"}"#),
    )
    .await;
    assert_eq!(
        updated.body,
        error_json(
            Reason::UnknownField,
            "invalid request: subjct is not a field of this request",
            &[("subjct", "is not a field of this request")],
        )
    );
    assert_eq!(updated.status, StatusCode::BAD_REQUEST);
    let stored = app.get_ticket(&ticket.id).await.expect("the ticket");
    assert_eq!(stored.subject, "Named right", "nothing was changed");

    // Nested members are named by their path; every unknown one at once.
    let charged = send(
        &envoy,
        Method::POST,
        "/v1/charges",
        token,
        Some("application/json"),
        Some(
            r#"{"customerId":"0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c","amount":{"amountMinor":"1250","currency":"EUR"},"paymentMethod":"pm_card_visa","note":"x"}"#,
        ),
    )
    .await;
    assert_eq!(charged.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        charged.body,
        error_json(
            Reason::UnknownField,
            "invalid request: amount.currency is not a field of this request; note is not a field of this request",
            &[
                ("amount.currency", "is not a field of this request"),
                ("note", "is not a field of this request"),
            ],
        )
    );
    assert_eq!(
        count_of(&app.database, "SELECT count(*) AS count FROM charges").await,
        0
    );

    // The proto's own names are members too, as the transcoder reads them.
    let by_proto_name = post_json(
        &envoy,
        "/v1/tickets",
        token,
        r#"{"subject":"Proto names","description":"Smoke","requester_email":"jane@example.com"}"#,
    )
    .await;
    assert_eq!(
        by_proto_name.status,
        StatusCode::CREATED,
        "{}",
        by_proto_name.body
    );
}

#[tokio::test]
async fn a_json_body_sent_as_another_media_type_is_415_while_raw_bodies_keep_theirs() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let token = &app.admin.access_token;
    let ticket =
        r#"{"subject":"Sent as text","description":"Smoke","requesterEmail":"jane@example.com"}"#;

    for (content_type, named) in [
        (Some("text/plain"), "text/plain"),
        (
            Some("application/x-www-form-urlencoded"),
            "application/x-www-form-urlencoded",
        ),
        (None, "none"),
    ] {
        let answer = send(
            &envoy,
            Method::POST,
            "/v1/tickets",
            token,
            content_type,
            Some(ticket),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{named}");
        assert_json_reason(&answer.body, Reason::UnsupportedMediaType);
        assert_eq!(
            answer.body,
            error_json(
                Reason::UnsupportedMediaType,
                &format!(
                    "the body must be JSON sent with content-type: application/json, not {named}"
                ),
                &[],
            )
        );
        assert_eq!(answer.headers["accept-post"], "application/json");
        assert_eq!(answer.headers["content-type"], "application/json");
    }
    let form = send(
        &envoy,
        Method::POST,
        "/v1/tickets",
        token,
        Some("application/x-www-form-urlencoded"),
        Some("subject=x&description=y"),
    )
    .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let ticket_id = app.create_ticket("Patched as text").await.id;
    let patch = send(
        &envoy,
        Method::PATCH,
        &format!("/v1/tickets/{ticket_id}?updateMask=subject"),
        token,
        Some("text/plain"),
        Some(r#"{"subject":"x"}"#),
    )
    .await;
    assert_eq!(patch.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(patch.headers["accept-patch"], "application/json");
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM tickets WHERE subject IN ('Sent as text', 'x')"
        )
        .await,
        0
    );

    // JSON with parameters is JSON.
    let charset = send(
        &envoy,
        Method::POST,
        "/v1/tickets",
        token,
        Some("application/json; charset=utf-8"),
        Some(ticket),
    )
    .await;
    assert_eq!(charset.status, StatusCode::CREATED, "{}", charset.body);

    // Raw bodies (google.api.HttpBody) are taken as sent, whatever their type: the webhook
    // reaches the service, which refuses the missing signature, not the type.
    let webhook = send(
        &envoy,
        Method::POST,
        "/v1/webhooks/payments",
        token,
        Some("text/plain"),
        Some("not json at all"),
    )
    .await;
    assert_eq!(webhook.status, StatusCode::BAD_REQUEST, "{}", webhook.body);
    assert_json_reason(&webhook.body, Reason::WebhookSignatureMissing);
    // The direct upload stores a PNG sent as image/png.
    let png: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89";
    let upload = crate::support::attachments::upload_through(
        &envoy,
        token,
        &ticket_id,
        "pixel.png",
        "image/png",
        png,
    )
    .await;
    let status = upload.status();
    let body: Value = upload.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["contentType"], "image/png", "{body}");
}

#[tokio::test]
async fn a_known_path_called_with_a_method_it_does_not_serve_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let token = &app.admin.access_token;

    let put = send(
        &envoy,
        Method::PUT,
        "/v1/tickets/0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c",
        token,
        Some("application/json"),
        Some("{}"),
    )
    .await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.headers["allow"], "DELETE, GET, PATCH");
    assert_json_reason(&put.body, Reason::MethodNotAllowed);
    assert_eq!(
        put.body,
        error_json(
            Reason::MethodNotAllowed,
            "PUT is not served at this path; it serves DELETE, GET, PATCH",
            &[],
        )
    );
    let head = send(&envoy, Method::HEAD, "/v1/tickets", token, None, None).await;
    assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(head.headers["allow"], "GET, POST");
    // QUERY and a TRACE with a body are methods like any other; only a QUERY without the
    // content type its definition requires is refused as malformed, by Envoy's connection
    // manager before any route (tests/api/rest_contract/schemathesis.toml).
    let query = Method::from_bytes(b"QUERY").expect("a method");
    for (method, content_type) in [
        (query.clone(), "application/json"),
        (Method::TRACE, "text/plain"),
    ] {
        let answer = send(
            &envoy,
            method.clone(),
            "/v1/tickets",
            token,
            Some(content_type),
            Some("{}"),
        )
        .await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.headers["allow"], "GET, POST", "{method}");
    }
    let bodiless_query = send(&envoy, query, "/v1/tickets", token, None, None).await;
    assert_eq!(bodiless_query.status, StatusCode::BAD_REQUEST);
    assert_json_reason(&bodiless_query.body, Reason::MalformedRequest);

    // A path the API does not have stays 404, whatever the method.
    for method in [Method::GET, Method::PUT] {
        let unknown = send(&envoy, method, "/v1/nothing-here", token, None, None).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_json_reason(&unknown.body, Reason::UnknownPath);
    }

    // `Allow` is the methods of the google.api.http rules, as the OpenAPI document has them, for
    // every path of the API (paths that differ only in a variable's name are one path).
    let mut served: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (concrete, item) in concrete_paths("0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c") {
        let methods = served.entry(concrete).or_default();
        for method in ["get", "post", "patch", "delete", "put"] {
            if item.get(method).is_some() {
                methods.insert(method.to_uppercase());
            }
        }
    }
    assert!(served.len() >= 40, "{served:?}");
    for (path, methods) in &served {
        assert!(!methods.contains("PUT"), "no RPC is mapped to PUT: {path}");
        let answer = send(&envoy, Method::PUT, path, token, None, None).await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{path}: {}",
            answer.body
        );
        let expected: Vec<&str> = methods.iter().map(String::as_str).collect();
        assert_eq!(
            answer.headers["allow"],
            expected.join(", ").as_str(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn creating_a_ticket_from_nothing_names_every_missing_field_at_once() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;

    let empty = post_json(&envoy, "/v1/tickets", &app.admin.access_token, "{}").await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert_json_reason(&empty.body, Reason::InvalidArgument);
    assert_eq!(
        bad_request_fields(&empty.body),
        ["subject", "description", "requesterEmail"]
    );
    assert!(
        empty.body["message"]
            .as_str()
            .is_some_and(|message| message.contains("requesterEmail an email address is required")),
        "{}",
        empty.body
    );

    // A customer's own rules come with the rest: no requester of their own, no URGENT.
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let customers = post_json(
        &envoy,
        "/v1/tickets",
        &customer.access_token,
        r#"{"subject":"","description":"Smoke","requesterEmail":"someone@example.com","priority":"TICKET_PRIORITY_URGENT"}"#,
    )
    .await;
    assert_eq!(customers.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad_request_fields(&customers.body),
        ["subject", "priority", "requesterEmail"]
    );

    // gRPC callers get the proto paths, which are theirs.
    let status = app
        .tickets
        .clone()
        .create_ticket(app.as_admin(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket::default()),
        }))
        .await
        .expect_err("refused");
    assert_reason(&status, Reason::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "ticket.subject",
            "ticket.description",
            "ticket.requester_email"
        ]
    );
}

#[tokio::test]
async fn envoys_own_refusals_name_the_field_in_the_services_error_json() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let token = &app.admin.access_token;

    let priority = post_json(
        &envoy,
        "/v1/tickets",
        token,
        r#"{"subject":"x","description":"y","requesterEmail":"jane@example.com","priority":"HIGH"}"#,
    )
    .await;
    assert_eq!(priority.status, StatusCode::BAD_REQUEST);
    assert_json_reason(&priority.body, Reason::MalformedRequest);
    let expected = "must be one of TICKET_PRIORITY_UNSPECIFIED, TICKET_PRIORITY_LOW, \
                    TICKET_PRIORITY_NORMAL, TICKET_PRIORITY_HIGH, TICKET_PRIORITY_URGENT, not \"HIGH\"";
    assert_eq!(
        priority.body,
        error_json(
            Reason::MalformedRequest,
            &format!("invalid request: priority {expected}"),
            &[("priority", expected)],
        )
    );

    let list = post_json(
        &envoy,
        "/v1/tickets",
        token,
        r#"{"subject":["x"],"description":"y","requesterEmail":"jane@example.com"}"#,
    )
    .await;
    assert_eq!(
        list.body,
        error_json(
            Reason::MalformedRequest,
            "invalid request: subject must be a single value, not a list",
            &[("subject", "must be a single value, not a list")],
        )
    );

    let size = send(
        &envoy,
        Method::GET,
        "/v1/tickets?pageSize=ten",
        token,
        None,
        None,
    )
    .await;
    assert_eq!(
        size.body,
        error_json(
            Reason::MalformedRequest,
            "invalid request: pageSize must be a 32-bit integer, not \"ten\"",
            &[("pageSize", "must be a 32-bit integer, not \"ten\"")],
        )
    );

    let time = send(
        &envoy,
        Method::GET,
        "/v1/tickets?createdAfter=yesterday",
        token,
        None,
        None,
    )
    .await;
    assert_eq!(
        time.body,
        error_json(
            Reason::MalformedRequest,
            "invalid request: createdAfter must be an RFC 3339 timestamp such as 2026-01-01T00:00:00Z",
            &[(
                "createdAfter",
                "must be an RFC 3339 timestamp such as 2026-01-01T00:00:00Z"
            )],
        )
    );

    let unknown = send(
        &envoy,
        Method::GET,
        "/v1/tickets?colour=blue",
        token,
        None,
        None,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unknown.body,
        error_json(
            Reason::UnknownQueryParameter,
            "invalid request: unknown query parameter colour",
            &[("colour", "is not a parameter of this request")],
        )
    );
    for body in [&priority.body, &list.body, &size.body, &unknown.body] {
        let text = body.to_string();
        assert!(!text.contains("type.googleapis.com/supportdesk"), "{text}");
        assert!(!text.contains("Proto field"), "{text}");
    }
}

#[tokio::test]
async fn a_page_size_over_the_maximum_is_lowered_to_it_and_a_negative_one_refused() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let token = &app.admin.access_token;
    for chunk in 0..11 {
        let mut creates = tokio::task::JoinSet::new();
        for n in 0..10 {
            let mut tickets = app.tickets.clone();
            let request = app.as_admin(valid_create_request(&format!("Ticket {chunk}-{n}")));
            creates.spawn(async move { tickets.create_ticket(request).await });
        }
        while let Some(created) = creates.join_next().await {
            created.expect("joined").expect("created");
        }
    }

    let lowered = send(
        &envoy,
        Method::GET,
        "/v1/tickets?pageSize=1000",
        token,
        None,
        None,
    )
    .await;
    assert_eq!(lowered.status, StatusCode::OK, "{}", lowered.body);
    assert_eq!(lowered.body["tickets"].as_array().map(Vec::len), Some(100));
    assert!(
        lowered.body["nextPageToken"]
            .as_str()
            .is_some_and(|token| !token.is_empty()),
        "the 110 tickets need a second page"
    );

    let negative = send(
        &envoy,
        Method::GET,
        "/v1/tickets?pageSize=-1",
        token,
        None,
        None,
    )
    .await;
    assert_eq!(negative.status, StatusCode::BAD_REQUEST);
    let description =
        "must not be negative (0 means the default of 20; sizes above 100 are lowered to 100)";
    assert_eq!(
        negative.body,
        json!({
            "code": 3,
            "message": format!("invalid request: pageSize {description}"),
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "INVALID_ARGUMENT",
                    "domain": "supportdesk",
                    "metadata": {},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "pageSize", "description": description, "reason": ""}],
                },
            ],
        })
    );
}

/// The BadRequest of an error JSON as (field, description) pairs.
fn bad_request_violations(body: &Value) -> Vec<(String, String)> {
    body["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|detail| detail["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .flat_map(|bad| {
            bad["fieldViolations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|violation| {
            (
                violation["field"].as_str().unwrap_or_default().to_owned(),
                violation["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// What the read mask's refusal says of an unknown path, with the fields a ticket's mask takes.
fn read_mask_refusal(path: &str, known: &str) -> String {
    format!("\"{path}\" is not a field that can be read; known: {known}")
}

const TICKET_FIELDS_OVER_REST: &str = "id, accountId, subject, description, priority, status, \
     requesterId, requesterEmail, assigneeId, createTime, updateTime, etag, tags, groupId, \
     customFields";
const TICKET_FIELDS_OVER_GRPC: &str = "id, account_id, subject, description, priority, status, \
     requester_id, requester_email, assignee_id, create_time, update_time, etag, tags, group_id, \
     custom_fields";

#[tokio::test]
async fn a_list_request_with_several_bad_fields_names_every_one_over_rest() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let token = &app.admin.access_token;

    let tickets = send(
        &envoy,
        Method::GET,
        "/v1/tickets?assigneeId=nobody&readMask=subject,colourName&pageSize=-1&pageToken=garbage",
        token,
        None,
        None,
    )
    .await;
    assert_eq!(tickets.status, StatusCode::BAD_REQUEST, "{}", tickets.body);
    assert_json_reason(&tickets.body, Reason::InvalidArgument);
    assert_eq!(
        bad_request_fields(&tickets.body),
        ["assigneeId", "readMask", "pageSize", "pageToken"]
    );
    assert_eq!(
        bad_request_violations(&tickets.body)[1].1,
        read_mask_refusal("colourName", TICKET_FIELDS_OVER_REST)
    );
    let message = tickets.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "readMask {}",
            read_mask_refusal("colourName", TICKET_FIELDS_OVER_REST)
        )),
        "{message}"
    );

    // Every list and search, each with a bad filter and a bad page: all of them named.
    for (path, fields) in [
        (
            "/v1/tickets:search?q=&assigneeId=nobody&pageSize=-1",
            &["q", "assigneeId", "pageSize"][..],
        ),
        (
            "/v1/tickets:export?requesterId=nobody&readMask=colourName",
            &["requesterId", "readMask"][..],
        ),
        (
            "/v1/tickets/nope/comments?pageSize=-1&pageToken=garbage",
            &["ticketId", "pageSize", "pageToken"][..],
        ),
        (
            "/v1/tickets/nope/activity?pageSize=-1",
            &["ticketId", "pageSize"][..],
        ),
        (
            "/v1/tickets/nope/attachments?commentId=nope&pageSize=-1",
            &["ticketId", "commentId", "pageSize"][..],
        ),
        (
            "/v1/charges?customerId=nobody&ticketId=nope&pageSize=-1&pageToken=garbage",
            &["customerId", "ticketId", "pageSize", "pageToken"][..],
        ),
        (
            "/v1/billing/reconciliation-findings?runId=nope&pageSize=-1",
            &["runId", "pageSize"][..],
        ),
        (
            "/v1/operations?filter=colour%3Dred&pageSize=-1&pageToken=garbage",
            &["filter", "pageSize", "pageToken"][..],
        ),
        (
            "/v1/notifications?pageSize=-1&pageToken=garbage",
            &["state", "pageSize", "pageToken"][..],
        ),
        (
            "/v1/webhook-events?pageSize=-1&pageToken=garbage",
            &["state", "pageSize", "pageToken"][..],
        ),
        (
            "/v1/users?pageSize=-1&pageToken=garbage",
            &["pageSize", "pageToken"][..],
        ),
        (
            "/v1/apiKeys?pageSize=-1&pageToken=garbage",
            &["pageSize", "pageToken"][..],
        ),
        (
            "/v1/suppressions?pageSize=-1&pageToken=garbage",
            &["pageSize", "pageToken"][..],
        ),
        (
            "/v1/dashboard/activity?pageSize=-1&pageToken=garbage",
            &["pageSize", "pageToken"][..],
        ),
    ] {
        let answer = send(&envoy, Method::GET, path, token, None, None).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.body
        );
        assert_eq!(
            bad_request_fields(&answer.body),
            fields,
            "{path}: {}",
            answer.body
        );
    }
}

#[tokio::test]
async fn a_list_request_with_several_bad_fields_names_every_one_over_grpc_by_proto_path() {
    let app = TestApp::spawn().await;
    let mask = |paths: &[&str]| {
        Some(prost_types::FieldMask {
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
        })
    };

    let status = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            assignee_id: "nobody".to_owned(),
            read_mask: mask(&["subject", "colour_name"]),
            page_size: -1,
            page_token: "garbage".to_owned(),
            ..Default::default()
        }))
        .await
        .expect_err("refused");
    assert_reason(&status, Reason::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["assignee_id", "read_mask", "page_size", "page_token"]
    );
    let descriptions: Vec<String> = crate::support::details(&status)
        .bad_request()
        .expect("BadRequest")
        .field_violations
        .iter()
        .map(|violation| violation.description.clone())
        .collect();
    assert_eq!(
        descriptions[1],
        read_mask_refusal("colour_name", TICKET_FIELDS_OVER_GRPC)
    );

    // With a valid query, a token is checked against it: one of another query is named.
    app.tickets
        .clone()
        .create_ticket(app.as_admin(valid_create_request("First")))
        .await
        .expect("created");
    app.tickets
        .clone()
        .create_ticket(app.as_admin(valid_create_request("Second")))
        .await
        .expect("created");
    let first_page = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            page_size: 1,
            ..Default::default()
        }))
        .await
        .expect("a page")
        .into_inner();
    assert!(!first_page.next_page_token.is_empty());
    let other_query = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            statuses: vec![v1::TicketStatus::New.into()],
            read_mask: mask(&["colour_name"]),
            page_size: -1,
            page_token: first_page.next_page_token.clone(),
            ..Default::default()
        }))
        .await
        .expect_err("refused");
    assert_eq!(
        violated_fields(&other_query),
        ["read_mask", "page_size", "page_token"]
    );

    // With a refused query there is none to check the token against: a well-formed token is not
    // named until the query is valid (docs/http-contract.md, "Every violation at once, lists
    // included").
    let refused_query = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            assignee_id: "nobody".to_owned(),
            page_size: -1,
            page_token: first_page.next_page_token,
            ..Default::default()
        }))
        .await
        .expect_err("refused");
    assert_eq!(
        violated_fields(&refused_query),
        ["assignee_id", "page_size"]
    );
}
