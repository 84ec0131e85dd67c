//! Input the service cannot use is the client's mistake and is answered as such: bytes that do
//! not decode, times PostgreSQL cannot store, page tokens that were not issued for this list,
//! text that would hide or reorder itself. Never INTERNAL.

use std::collections::HashSet;

use reqwest::StatusCode;
use supportdesk::domain::{PageCursor, PageScope, PageTokenKeys};
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::envoy::Envoy;
use crate::support::{
    PATIENCE, RawBytes, TestApp, assert_reason, backends_waiting_on_locks, raw_client,
    valid_create_request, violated_fields, wait_until,
};

/// Calls `path` with `message` as the request's bytes, as `token` if given.
async fn call_with_bytes(
    app: &TestApp,
    path: &'static str,
    token: Option<&str>,
    message: Vec<u8>,
) -> tonic::Status {
    let mut grpc = raw_client(app.address).await;
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    grpc.unary(
        request,
        http::uri::PathAndQuery::from_static(path),
        RawBytes,
    )
    .await
    .expect_err("the service must refuse these bytes")
}

/// What every malformed message is answered with: INVALID_ARGUMENT, MALFORMED_MESSAGE, and no
/// proto type names.
fn assert_malformed(status: &tonic::Status, type_name: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_reason(status, Reason::MalformedMessage);
    assert!(
        !status.message().contains(type_name),
        "the message names a proto type: {}",
        status.message()
    );
}

/// A protobuf field: `tag` (field number and wire type) followed by `payload`, length-prefixed
/// when it is a length-delimited field.
fn field(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![tag, payload.len() as u8];
    bytes.extend_from_slice(payload);
    bytes
}

#[tokio::test]
async fn bytes_that_are_no_login_request_are_invalid_argument_not_internal() {
    let app = TestApp::spawn().await;
    let path = "/supportdesk.v1.AuthService/Login";
    let cases: [(&str, Vec<u8>); 4] = [
        // account (1) with a byte that is not UTF-8.
        ("invalid UTF-8", field(0x0a, &[b'd', 0xff, b'o'])),
        // account (1) announcing 10 bytes and carrying 1.
        ("truncated", vec![0x0a, 0x0a, b'x']),
        // account (1) sent as a varint (wire type 0) instead of a string.
        ("wrong wire type", vec![0x08, 0x01]),
        ("garbage", vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
    ];
    for (what, bytes) in cases {
        let status = call_with_bytes(&app, path, None, bytes).await;
        assert_malformed(&status, "LoginRequest");
        eprintln!("{what}: {}", status.message());
    }
}

#[tokio::test]
async fn a_string_that_is_not_utf8_names_its_field_on_an_authenticated_rpc() {
    let app = TestApp::spawn().await;
    // CreateTicketRequest { ticket (1): Ticket { subject (3): 0xff } }
    let message = field(0x0a, &field(0x1a, &[0xff]));
    let status = call_with_bytes(
        &app,
        "/supportdesk.v1.TicketService/CreateTicket",
        Some(&app.admin.access_token),
        message,
    )
    .await;
    assert_malformed(&status, "Ticket");
    assert_eq!(violated_fields(&status), ["ticket.subject"]);

    // GetTicket reads its id ahead of the handler (the cache prefetch): the same answer.
    let status = call_with_bytes(
        &app,
        "/supportdesk.v1.TicketService/GetTicket",
        Some(&app.admin.access_token),
        field(0x0a, &[0xc3]),
    )
    .await;
    assert_malformed(&status, "GetTicketRequest");
    assert_eq!(violated_fields(&status), ["id"]);
}

#[tokio::test]
async fn grpc_web_garbage_through_envoy_is_invalid_argument_in_the_grpc_web_trailers() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let response = envoy
        .grpc_web("/supportdesk.v1.AuthService/Login", &[0xff, 0xff, 0xff])
        .send()
        .await
        .expect("a gRPC-Web call");
    assert_eq!(response.status(), StatusCode::OK);
    // An error with no message is "trailers-only": gRPC-Web sends its status as headers.
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    assert_eq!(header("grpc-status").as_deref(), Some("3"));
    let message = header("grpc-message").unwrap_or_default();
    assert!(!message.contains("LoginRequest"), "{message}");
    let details = header("grpc-status-details-bin").expect("the google.rpc.Status details");
    let details = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        details.trim_end_matches('='),
    )
    .unwrap();
    let status = tonic::Status::with_details(Code::InvalidArgument, message, details.into());
    assert_reason(&status, Reason::MalformedMessage);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_time_postgresql_cannot_store_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let status = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            created_after: Some(prost_types::Timestamp {
                seconds: -210_900_000_000,
                nanos: 0,
            }),
            created_before: Some(prost_types::Timestamp {
                seconds: 253_402_300_800,
                nanos: 0,
            }),
            ..Default::default()
        }))
        .await
        .expect_err("before year 1 and after 9999");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["created_after", "created_before"]
    );
}

async fn list_users(
    app: &TestApp,
    page_token: &str,
) -> Result<v1::ListUsersResponse, tonic::Status> {
    app.users
        .clone()
        .list_users(app.as_admin(v1::ListUsersRequest {
            page_size: 1,
            page_token: page_token.to_owned(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_page_token_changed_in_any_character_or_used_in_another_account_is_refused() {
    let app = TestApp::spawn().await;
    app.add_user(&app.admin, v1::UserRole::Agent).await;
    let token = list_users(&app, "").await.unwrap().next_page_token;
    assert!(!token.is_empty());
    assert!(
        list_users(&app, &token).await.is_ok(),
        "the token as issued"
    );

    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for position in 0..token.len() {
        let original = token.as_bytes()[position] as char;
        let replacement = alphabet
            .chars()
            .find(|c| *c != original)
            .expect("another character");
        let mut changed = token.clone();
        changed.replace_range(position..=position, &replacement.to_string());
        let status = list_users(&app, &changed)
            .await
            .expect_err("a changed token is refused");
        assert_eq!(violated_fields(&status), ["page_token"], "at {position}");
    }

    let other = app.sign_up_another_account().await;
    let status = app
        .users
        .clone()
        .list_users(other.request(v1::ListUsersRequest {
            page_size: 1,
            page_token: token,
        }))
        .await
        .expect_err("another account's token is refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_token"]);
}

const OLD_KEY: &str = "old-page-token-key-0123456789abcdef";
const NEW_KEY: &str = "new-page-token-key-0123456789abcdef";

#[tokio::test]
async fn page_tokens_signed_with_the_previous_key_work_while_it_is_listed_second() {
    let old_keys = PageTokenKeys::new(vec![OLD_KEY.as_bytes().to_vec()]);
    let rotating = TestApp::spawn_with(|settings| {
        settings.auth.page_token_keys = vec![NEW_KEY.into(), OLD_KEY.into()];
    })
    .await;
    rotating
        .add_user(&rotating.admin, v1::UserRole::Agent)
        .await;
    // Issued before the rotation, by an instance that knew only the old key.
    let position = PageCursor::at(chrono::Utc::now(), uuid::Uuid::max());
    let issued_before = old_keys.encode(
        &position,
        PageScope {
            account: rotating.account_id,
            list: "users",
        },
    );
    let page = list_users(&rotating, &issued_before)
        .await
        .expect("accepted during the rotation");
    assert_eq!(page.users.len(), 1);
    // Tokens issued now are signed with the new key, which the old one cannot verify.
    let issued_now = list_users(&rotating, "").await.unwrap().next_page_token;
    assert!(
        old_keys
            .parse(
                &issued_now,
                PageScope {
                    account: rotating.account_id,
                    list: "users",
                },
            )
            .is_err()
    );

    let rotated = TestApp::spawn_with(|settings| {
        settings.auth.page_token_keys = vec![NEW_KEY.into()];
    })
    .await;
    let issued_before = old_keys.encode(
        &position,
        PageScope {
            account: rotated.account_id,
            list: "users",
        },
    );
    let status = list_users(&rotated, &issued_before)
        .await
        .expect_err("refused once the old key is dropped");
    assert_eq!(violated_fields(&status), ["page_token"]);
}

async fn list_tickets(
    app: &TestApp,
    order_by: &str,
    page_token: String,
) -> v1::ListTicketsResponse {
    app.tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            page_size: 7,
            page_token,
            order_by: order_by.to_owned(),
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner()
}

#[tokio::test]
async fn no_ticket_is_listed_twice_in_any_order_when_one_is_updated_between_pages() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for number in 0..20 {
        ids.push(app.create_ticket(&format!("ticket {number}")).await.id);
    }
    for order_by in [
        "update_time asc",
        "update_time desc",
        "create_time asc",
        "create_time desc",
    ] {
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = list_tickets(&app, order_by, token).await;
            let first_page = seen.is_empty();
            seen.extend(page.tickets.iter().map(|ticket| ticket.id.clone()));
            if first_page {
                // The first ticket already listed changes: oldest-updated first, it would
                // move behind the cursor.
                let listed = page.tickets[0].id.clone();
                app.tickets
                    .clone()
                    .update_ticket(app.as_admin(v1::UpdateTicketRequest {
                        ticket: Some(v1::Ticket {
                            id: listed,
                            subject: format!("changed while paging {order_by}"),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["subject".to_owned()],
                        }),
                    }))
                    .await
                    .expect("updated between pages");
            }
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{order_by}: a ticket listed twice"
        );
        assert_eq!(seen.len(), 20, "{order_by}: every ticket listed once");
    }
}

#[tokio::test]
async fn no_ticket_is_listed_twice_by_update_time_when_its_update_was_in_flight_as_the_first_page_was_read()
 {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    for number in 0..20 {
        app.create_ticket(&format!("ticket {number}")).await;
    }
    for order_by in ["update_time asc", "update_time desc"] {
        // The update of the ticket listed first (the oldest-updated, or the newest) begins, and
        // waits for the ticket's lock: its update time will be earlier than the first page's
        // read, and its commit later.
        let first = list_tickets(&app, order_by, String::new()).await.tickets[0]
            .id
            .clone();
        let mut lock = app.database.connect().await;
        diesel::sql_query("BEGIN").execute(&mut lock).await.unwrap();
        diesel::sql_query("SELECT id FROM tickets WHERE id = $1::uuid FOR UPDATE")
            .bind::<diesel::sql_types::Text, _>(&first)
            .execute(&mut lock)
            .await
            .unwrap();
        let mut tickets = app.tickets.clone();
        let update = app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: first.clone(),
                subject: format!("changing as the first page is read ({order_by})"),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["subject".to_owned()],
            }),
        });
        let update = tokio::spawn(async move { tickets.update_ticket(update).await });
        wait_until("the update waits for the ticket", PATIENCE, async || {
            backends_waiting_on_locks(&app.database).await == 1
        })
        .await;

        let page = list_tickets(&app, order_by, String::new()).await;
        let mut seen: Vec<String> = page
            .tickets
            .iter()
            .map(|ticket| ticket.id.clone())
            .collect();
        assert_eq!(seen[0], first, "{order_by}: listed at its old place");
        diesel::sql_query("ROLLBACK")
            .execute(&mut lock)
            .await
            .unwrap();
        update
            .await
            .unwrap()
            .expect("updated once the lock is free");
        let mut token = page.next_page_token;
        while !token.is_empty() {
            let page = list_tickets(&app, order_by, token).await;
            seen.extend(page.tickets.iter().map(|ticket| ticket.id.clone()));
            token = page.next_page_token;
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(
            (unique.len(), seen.len()),
            (20, 20),
            "{order_by}: every ticket listed once"
        );
    }
}

#[tokio::test]
async fn text_that_hides_or_reorders_itself_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    for (subject, description) in [
        ("line\u{2028}separator", "fine"),
        ("paragraph\u{2029}separator", "fine"),
        ("invoice \u{202E}fdp.exe", "fine"),
        ("\u{200B}\u{200D}\u{FEFF}", "fine"),
        ("fine", "\u{2066}isolate"),
        ("fine", "\u{200B} \u{200C}"),
    ] {
        let mut request = valid_create_request(subject);
        request.ticket.as_mut().unwrap().description = description.to_owned();
        let status = app
            .tickets
            .clone()
            .create_ticket(app.as_admin(request))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{subject:?}");
        let field = if subject == "fine" {
            "ticket.description"
        } else {
            "ticket.subject"
        };
        assert_eq!(
            violated_fields(&status),
            [field],
            "{subject:?} / {description:?}"
        );
        assert!(status.get_error_details().bad_request().is_some());
    }
    // Joiners inside visible text are writing, not hiding: an emoji family and Persian.
    let mut request = valid_create_request("family \u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}");
    request.ticket.as_mut().unwrap().description = "می\u{200C}خواهم".to_owned();
    app.tickets
        .clone()
        .create_ticket(app.as_admin(request))
        .await
        .expect("visible text with joiners is accepted");
}
