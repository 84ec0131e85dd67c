//! Logs an operator can trust: the real binary's lines, in both formats, carry the caller's
//! request id only when it is short and plain, never let caller text forge a field, and end each
//! RPC with one `rpc answered` line naming the gRPC code and the caller.

use std::collections::BTreeSet;

use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use supportdesk::wire::proto::v1::{self};

use crate::support::binary::{Running, sign_up_through};
use crate::support::{TestDatabase, TestUser};

/// What the binary was sent, and what it answered.
struct Sent {
    admin: TestUser,
    /// The id the service returned for the request that came with a forged one.
    replacement: String,
}

/// The id a caller sends to try to forge a field.
const FORGED_ID: &str = "a\"b} injected=1";

/// A path the service does not serve, with a quote and a brace (a URI path has no spaces): it
/// is logged as the span's `method`.
const FORGED_PATH: &str = "/supportdesk.v1.TicketService/Nope\"}";

/// Sends a ListTickets with a forged request id, one with a 3,000-character id, and one with a
/// plain id, then stops the binary and returns its stdout.
async fn traffic(format: &str) -> (Sent, Vec<String>) {
    let database = TestDatabase::create().await;
    let running = Running::start(
        &database,
        &[("SHUTDOWN_DELAY_MS", "0"), ("LOG_FORMAT", format)],
    );
    let channel = running.channel().await;
    running.wait_for_health("Serving").await;
    let admin = sign_up_through(&channel).await;
    let mut tickets = TicketServiceClient::new(channel.clone());

    let mut forged = admin.request(v1::ListTicketsRequest::default());
    forged
        .metadata_mut()
        .insert("x-request-id", FORGED_ID.parse().unwrap());
    let answer = tickets.list_tickets(forged).await.expect("listed");
    let replacement = answer
        .metadata()
        .get("x-request-id")
        .expect("an id")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::try_parse(&replacement).is_ok(), "{replacement}");

    let mut long = admin.request(v1::ListTicketsRequest::default());
    long.metadata_mut()
        .insert("x-request-id", "x".repeat(3000).parse().unwrap());
    let answer = tickets.list_tickets(long).await.expect("listed");
    assert_eq!(
        answer.metadata().get("x-request-id").expect("an id").len(),
        36,
        "a UUID"
    );

    let mut plain = admin.request(v1::ListTicketsRequest::default());
    plain
        .metadata_mut()
        .insert("x-request-id", "plain-id.1:2_3".parse().unwrap());
    tickets.list_tickets(plain).await.expect("listed");
    drop(tickets);

    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let status = grpc
        .unary(
            admin.request(Vec::<u8>::new()),
            FORGED_PATH.parse().expect("a path http accepts"),
            crate::support::RawBytes,
        )
        .await
        .expect_err("not served");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    drop(grpc);

    running.terminate();
    let (code, stdout, stderr) = running.wait();
    assert_eq!(code, Some(0), "clean exit; stderr: {stderr}");
    (Sent { admin, replacement }, stdout)
}

fn keys(value: &serde_json::Value) -> BTreeSet<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn json_lines_keep_only_plain_request_ids_and_no_caller_text_forges_a_field() {
    let (sent, stdout) = traffic("json").await;
    let lines: Vec<serde_json::Value> = stdout
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    for line in &stdout {
        assert!(!line.contains("injected"), "caller text logged: {line}");
        assert!(!line.contains(&"x".repeat(129)), "a long id logged: {line}");
    }
    let answered: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| {
            line["message"] == "rpc answered"
                && line["span"]["method"] == "/supportdesk.v1.TicketService/ListTickets"
        })
        .collect();
    assert_eq!(answered.len(), 3, "one line per RPC: {answered:?}");
    let first = answered[0];
    assert_eq!(
        keys(first),
        BTreeSet::from([
            "timestamp",
            "level",
            "message",
            "code",
            "latency_ms",
            "target",
            "span"
        ]),
        "{first}"
    );
    assert_eq!(
        keys(&first["span"]),
        BTreeSet::from(["name", "method", "request_id", "account_id", "caller"]),
        "{first}"
    );
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["code"], "OK");
    assert_eq!(first["span"]["request_id"], sent.replacement.as_str());
    assert_eq!(
        first["span"]["account_id"],
        sent.admin.account_id.to_string().as_str()
    );
    assert_eq!(
        first["span"]["caller"],
        format!("user:{}", sent.admin.id).as_str()
    );
    assert_eq!(answered[2]["span"]["request_id"], "plain-id.1:2_3");

    let unknown = lines
        .iter()
        .find(|line| line["message"] == "rpc answered" && line["span"]["method"] == FORGED_PATH)
        .expect("the unknown path's answer was logged");
    assert_eq!(unknown["code"], "UNIMPLEMENTED", "{unknown}");
    assert_eq!(
        keys(&unknown["span"]),
        BTreeSet::from(["name", "method", "request_id", "account_id", "caller"]),
        "{unknown}"
    );
}

#[tokio::test]
async fn pretty_lines_quote_caller_text_carry_no_colour_and_name_the_code_and_caller() {
    let (sent, stdout) = traffic("pretty").await;
    for line in &stdout {
        assert!(!line.contains('\u{1b}'), "colour codes in a file: {line:?}");
        assert!(!line.contains("injected"), "caller text logged: {line}");
    }
    let answered: Vec<&String> = stdout
        .iter()
        .filter(|line| {
            line.contains("rpc answered")
                && line.contains("method=\"/supportdesk.v1.TicketService/ListTickets\"")
        })
        .collect();
    assert_eq!(answered.len(), 3, "one line per RPC: {stdout:#?}");
    let first = answered[0];
    for field in [
        format!("request_id=\"{}\"", sent.replacement),
        format!("account_id=\"{}\"", sent.admin.account_id),
        format!("caller=\"user:{}\"", sent.admin.id),
        "code=\"OK\"".to_owned(),
    ] {
        assert!(first.contains(&field), "{field} missing from {first}");
    }
    assert!(
        answered[2].contains("request_id=\"plain-id.1:2_3\""),
        "{}",
        answered[2]
    );
    // The path's quote is escaped inside a quoted value.
    let unknown = stdout
        .iter()
        .find(|line| line.contains("rpc answered") && line.contains("Nope"))
        .expect("the unknown path's answer was logged");
    assert!(
        unknown.contains(r#"method="/supportdesk.v1.TicketService/Nope\"}""#),
        "{unknown}"
    );
}
