//! docs/errors.md's catalogue and [`Reason`] name the same reasons, Envoy answers none that is
//! not one of them, and every reason is asserted by a test of an answer; plus the tests of the
//! reasons no other test needed.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::envoy::Envoy;
use crate::support::source::{code_only, rust_files};
use crate::support::{
    ClosedPort, PATIENCE, TestApp, assert_json_reason, assert_reason, backends_waiting_on_locks,
    details, repository_root, wait_until, with_token,
};

/// The reasons of the table in docs/errors.md, in its order.
fn documented_reasons() -> Vec<String> {
    let text =
        std::fs::read_to_string(repository_root().join("docs/errors.md")).expect("docs/errors.md");
    let start = text.find("<!-- reasons:start -->").expect("reasons:start");
    let end = text.find("<!-- reasons:end -->").expect("reasons:end");
    text[start..end]
        .lines()
        .filter_map(|line| {
            let reason = line.trim().strip_prefix("| `")?.split('`').next()?;
            Some(reason.to_owned())
        })
        .collect()
}

#[test]
fn docs_errors_md_catalogues_exactly_the_variants_of_reason() {
    let documented = documented_reasons();
    let variants: Vec<&str> = Reason::ALL.iter().map(|reason| reason.as_str()).collect();
    let undocumented: Vec<&str> = variants
        .iter()
        .copied()
        .filter(|reason| !documented.iter().any(|listed| listed == reason))
        .collect();
    let not_a_variant: Vec<&String> = documented
        .iter()
        .filter(|listed| Reason::parse(listed).is_none())
        .collect();
    let mut seen = BTreeSet::new();
    let listed_twice: Vec<&String> = documented
        .iter()
        .filter(|listed| !seen.insert(*listed))
        .collect();
    assert!(
        undocumented.is_empty() && not_a_variant.is_empty() && listed_twice.is_empty(),
        "variants of Reason missing from docs/errors.md: {undocumented:?}; \
         documented but not a variant: {not_a_variant:?}; documented twice: {listed_twice:?}"
    );
}

/// The ErrorInfo reasons of deploy/envoy/envoy.yaml: its JSON mappers (`reason: X`) and its Lua
/// filter (`"reason":"X"`).
fn reasons_envoy_answers() -> BTreeSet<String> {
    let envoy = std::fs::read_to_string(repository_root().join("deploy/envoy/envoy.yaml")).unwrap();
    let mut reasons = BTreeSet::new();
    for line in envoy.lines() {
        if let Some(reason) = line.trim().strip_prefix("reason: ") {
            reasons.insert(reason.trim().to_owned());
        }
        for piece in line.split("\"reason\":\"").skip(1) {
            reasons.insert(piece.split('"').next().unwrap_or("").to_owned());
        }
    }
    reasons
}

#[test]
fn envoy_answers_only_reasons_that_are_variants_of_reason() {
    let answered = reasons_envoy_answers();
    assert!(
        answered.len() >= 8,
        "the envoy.yaml reading found too few reasons: {answered:?}"
    );
    let unknown: Vec<&String> = answered
        .iter()
        .filter(|reason| Reason::parse(reason).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "deploy/envoy/envoy.yaml answers reasons that are not variants of Reason: {unknown:?}"
    );
}

/// The helpers whose calls count as a test of a reason: each asserts an answer's ErrorInfo.
const ASSERTIONS: [&str; 2] = ["assert_reason", "assert_json_reason"];

/// The variants `source` asserts: `X` of every `assert_reason(<answer>, Reason::X)` and
/// `assert_json_reason(<body>, Reason::X)`. A call whose reason is a variable (a table row, a
/// parameter) is not counted: the variant must be written in the assertion itself.
fn asserted_variants(source: &str) -> Vec<String> {
    let code = code_only(source);
    let mut asserted = Vec::new();
    for name in ASSERTIONS {
        let call = format!("{name}(");
        for (at, _) in code.match_indices(&call) {
            let before = code[..at].trim_end();
            let is_call = !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                && !before.ends_with("fn");
            if !is_call {
                continue;
            }
            let arguments = top_level_arguments(&code[at + call.len()..]);
            if let [_, last] = arguments.as_slice()
                && let Some(variant) = last.strip_prefix("Reason::")
                && !variant.is_empty()
                && variant.chars().all(|c| c.is_alphanumeric() || c == '_')
            {
                asserted.push(variant.to_owned());
            }
        }
    }
    asserted
}

/// The arguments of a call, trimmed, from just after its `(` to its matching `)`.
fn top_level_arguments(after_parenthesis: &str) -> Vec<String> {
    let mut arguments = Vec::new();
    let mut current = String::new();
    let mut depth = 0_usize;
    for c in after_parenthesis.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => break,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                arguments.push(std::mem::take(&mut current).trim().to_owned());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    arguments.push(current.trim().to_owned());
    arguments.retain(|argument| !argument.is_empty());
    arguments
}

#[test]
fn every_reason_is_asserted_by_a_test_of_an_answer() {
    let root = repository_root();
    let mut files = Vec::new();
    rust_files(&root.join("tests/api"), &mut files);
    let mut asserted = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        for variant in asserted_variants(&source) {
            let reason = Reason::ALL
                .iter()
                .find(|reason| format!("{reason:?}") == variant)
                .unwrap_or_else(|| panic!("{}: Reason::{variant} is no variant", file.display()));
            asserted.insert(*reason);
        }
    }
    let unasserted: Vec<&str> = Reason::ALL
        .iter()
        .filter(|reason| !asserted.contains(*reason))
        .map(|reason| reason.as_str())
        .collect();
    assert!(
        unasserted.is_empty(),
        "no test asserts these reasons as `assert_reason(&status, Reason::X)` or \
         `assert_json_reason(&body, Reason::X)`: {unasserted:?}"
    );
}

/// The check itself: what counts as asserting a reason, and what does not.
#[test]
fn only_an_assertion_naming_the_variant_counts_as_a_test_of_a_reason() {
    let counted = |source: &str| asserted_variants(source);
    assert_eq!(
        counted("assert_reason(&status, Reason::TicketNotFound);"),
        ["TicketNotFound"]
    );
    assert_eq!(
        counted("assert_reason(\n    &tonic::Status::from(&error),\n    Reason::CardDeclined,\n);"),
        ["CardDeclined"]
    );
    assert_eq!(
        counted(
            "assert_json_reason(&refused(&envoy, &body, None).await, Reason::WebhookSignatureMissing);"
        ),
        ["WebhookSignatureMissing"]
    );
    // Not an assertion of a written variant.
    for source in [
        "assert_reason(&status, reason);",
        "assert_eq!(error_reason(&status), Some(Reason::TicketNotFound));",
        "let expected = Reason::TicketNotFound;",
        "// assert_reason(&status, Reason::TicketNotFound);",
        "let _ = \"assert_reason(&status, Reason::TicketNotFound)\";",
        "fn assert_reason(status: &Status, expected: Reason) {}",
        "my_assert_reason(&status, Reason::TicketNotFound);",
        "assert_reason(&status, Reason::TicketNotFound.other());",
    ] {
        assert!(counted(source).is_empty(), "{source}");
    }
}

#[tokio::test]
async fn a_change_postgresql_rolls_back_to_end_a_deadlock_is_aborted_and_the_same_change_sent_again_succeeds()
 {
    use diesel_async::RunQueryDsl as _;
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("before").await;
    // With an idempotency key: the conflict must not be stored as the key's answer.
    let change = || {
        let mut request = app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                subject: "after".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["subject".to_owned()],
            }),
        });
        request
            .metadata_mut()
            .insert("idempotency-key", "a-deadlocked-change".parse().unwrap());
        request
    };
    // Another transaction holds the caller's user row, which the change's audit record (naming
    // its actor) must share-lock once the change holds its ticket...
    let mut other = app.database.connect().await;
    for statement in ["BEGIN", "SET LOCAL deadlock_timeout = '1min'"] {
        diesel::sql_query(statement)
            .execute(&mut other)
            .await
            .unwrap();
    }
    diesel::sql_query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
        .bind::<diesel::sql_types::Uuid, _>(app.admin.id.as_uuid())
        .execute(&mut other)
        .await
        .unwrap();
    let sent = tokio::spawn({
        let mut tickets = app.tickets.clone();
        let request = change();
        async move { tickets.update_ticket(request).await }
    });
    wait_until(
        "the change waits for the caller's row",
        PATIENCE,
        async || backends_waiting_on_locks(&app.database).await == 1,
    )
    .await;
    // ...and then asks for the ticket: each waits for the other, and PostgreSQL ends the change's
    // transaction (the one that has waited past its deadlock_timeout).
    diesel::sql_query("SELECT id FROM tickets WHERE id = $1::uuid FOR UPDATE")
        .bind::<diesel::sql_types::Text, _>(&ticket.id)
        .execute(&mut other)
        .await
        .expect("the other transaction gets the ticket once the change is rolled back");
    let status = sent.await.unwrap().expect_err("rolled back");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_reason(&status, Reason::TransactionConflict);
    assert_eq!(
        details(&status).retry_info().unwrap().retry_delay,
        Some(std::time::Duration::from_millis(100))
    );
    diesel::sql_query("ROLLBACK")
        .execute(&mut other)
        .await
        .unwrap();

    let changed = app
        .tickets
        .clone()
        .update_ticket(change())
        .await
        .expect("sent again with the same key, it runs and succeeds");
    assert!(
        changed.metadata().get("idempotent-replayed").is_none(),
        "it ran"
    );
    assert_eq!(changed.into_inner().subject, "after");
    assert_eq!(
        crate::support::count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM ticket_activities WHERE ticket_id = '{}'",
                ticket.id
            ),
        )
        .await,
        2,
        "the creation and one change: the rolled back attempt left no record"
    );
}

#[tokio::test]
async fn an_unknown_user_or_api_key_is_not_found_with_its_own_reason() {
    let app = TestApp::spawn().await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let status = app
        .users
        .clone()
        .get_user(app.as_admin(v1::GetUserRequest {
            id: unknown.clone(),
        }))
        .await
        .expect_err("no such user");
    assert_eq!(status.code(), Code::NotFound);
    assert_reason(&status, Reason::UserNotFound);

    let mut request = app.as_admin(v1::RevokeApiKeyRequest { id: unknown });
    request
        .metadata_mut()
        .insert("idempotency-key", "revoke-unknown-key".parse().unwrap());
    let status = app
        .api_keys
        .clone()
        .revoke_api_key(request)
        .await
        .expect_err("no such key");
    assert_eq!(status.code(), Code::NotFound);
    assert_reason(&status, Reason::ApiKeyNotFound);
}

#[tokio::test]
async fn an_api_key_may_not_do_what_only_people_do() {
    let app = TestApp::spawn().await;
    let mut request = app.as_admin(v1::CreateApiKeyRequest {
        api_key: Some(v1::ApiKey {
            name: "robot".to_owned(),
            roles: vec![v1::UserRole::Admin.into()],
            ..Default::default()
        }),
    });
    request
        .metadata_mut()
        .insert("idempotency-key", "robot-key".parse().unwrap());
    let created = app
        .api_keys
        .clone()
        .create_api_key(request)
        .await
        .expect("a key")
        .into_inner();
    let status = app
        .auth
        .clone()
        .logout_all(with_token(&created.secret, v1::LogoutAllRequest {}))
        .await
        .expect_err("a key has no sessions");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_reason(&status, Reason::UserRequired);
}

#[tokio::test]
async fn envoy_answers_an_upgrade_and_an_unreachable_service_in_the_json_shape() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    // Envoy refuses what it does not proxy, here a WebSocket upgrade, in the same shape.
    let response = http
        .get(envoy.url("/v1/me"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 2);
    assert_json_reason(&body, Reason::ProxyError);

    // Nothing listens behind this one.
    let nothing = ClosedPort::new();
    let orphan = Envoy::start_in_front_of(nothing.port).await;
    let response = http
        .get(orphan.url("/v1/me"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 14);
    assert_json_reason(&body, Reason::BackendUnavailable);
}
