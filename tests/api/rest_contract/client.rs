//! A TypeScript client generated from the OpenAPI document (openapi-typescript + openapi-fetch,
//! `deploy/local/generate-client`) runs one flow against the running stack through real Envoy:
//! log in, create a ticket, list tickets, read an error's reason; and a second flow organizes the
//! desk (a custom field, tags, the filter language with the list's size, a view listed and
//! counted). Its examples compile with `tsc --strict` against the generated types, so a shape the
//! document gets wrong fails here, and check each request against the protos' declared rules
//! before sending it.

use serde_json::{Value, json};

use crate::support::envoy::Envoy;
use crate::support::typescript_client::TypescriptClient;
use crate::support::{TEST_PASSWORD, TestApp, count_of};

#[tokio::test(flavor = "multi_thread")]
async fn the_generated_typescript_client_creates_lists_and_organizes_tickets_through_envoy() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let client = TypescriptClient::generate();

    let ran = tokio::task::block_in_place(|| {
        client
            .program("flow")
            .env("SUPPORTDESK_URL", envoy.url(""))
            .env("SUPPORTDESK_ACCOUNT", &app.admin.account_slug)
            .env("SUPPORTDESK_EMAIL", &app.admin.email)
            .env("SUPPORTDESK_PASSWORD", TEST_PASSWORD)
            .output()
            .expect("run the client's flow with node")
    });
    assert!(
        ran.status.success(),
        "the client's flow:\n{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    let saw: Value = serde_json::from_slice(&ran.stdout).expect("the flow prints JSON");

    assert_eq!(saw["loginStatus"], 200);
    assert_eq!(saw["createStatus"], 201);
    let id = saw["created"]["id"]
        .as_str()
        .expect("the created ticket's id");
    assert_eq!(saw["location"], format!("/v1/tickets/{id}"));
    assert_eq!(saw["created"]["subject"], "Printer on fire");
    assert_eq!(saw["created"]["status"], "TICKET_STATUS_NEW");
    assert_eq!(saw["listStatus"], 200);
    assert_eq!(saw["listedIds"], serde_json::json!([id]));
    assert_eq!(saw["missingStatus"], 404);
    assert_eq!(saw["missingReason"], "TICKET_NOT_FOUND");
    // The client checks the declared rules before sending: a 201-character subject never left it.
    assert_eq!(saw["refusedLocally"], serde_json::json!(["ticket.subject"]));

    // Where the ticket lives: the service has it as the client sent it.
    let stored = app.get_ticket(id).await.expect("the ticket exists");
    assert_eq!(stored.subject, "Printer on fire");
    assert_eq!(stored.requester_email, "jane@example.com");

    let organized = tokio::task::block_in_place(|| {
        client
            .program("organize")
            .env("SUPPORTDESK_URL", envoy.url(""))
            .env("SUPPORTDESK_ACCOUNT", &app.admin.account_slug)
            .env("SUPPORTDESK_EMAIL", &app.admin.email)
            .env("SUPPORTDESK_PASSWORD", TEST_PASSWORD)
            .output()
            .expect("run the client's organize flow with node")
    });
    assert!(
        organized.status.success(),
        "the client's organize flow:\n{}{}",
        String::from_utf8_lossy(&organized.stdout),
        String::from_utf8_lossy(&organized.stderr)
    );
    let saw: Value = serde_json::from_slice(&organized.stdout).expect("the flow prints JSON");
    let id = saw["createdId"]
        .as_str()
        .expect("the organized ticket's id");
    assert_eq!(saw["fieldKey"], "plan");
    assert_eq!(saw["createdTags"], json!(["vip"]));
    assert_eq!(saw["createdValues"], json!({"plan": "pro"}));
    assert_eq!(saw["tagsAfterAdding"], json!(["refund", "vip"]));
    // The first ticket (flow's) has neither the tag nor the value: the filter leaves it out.
    assert_eq!(saw["filteredIds"], json!([id]));
    assert_eq!(saw["filteredTotal"], 1);
    assert_eq!(saw["filteredEstimated"], false);
    assert_eq!(saw["viewIds"], json!([id]));
    assert_eq!(
        saw["counts"],
        json!([{"viewId": saw["viewId"], "count": 1, "capped": false}])
    );
    // Where they live: the ticket's row in PostgreSQL holds the tags and the value.
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM tickets WHERE id = '{id}' \
                 AND tags = ARRAY['refund', 'vip'] AND custom_fields = '{{\"plan\": \"pro\"}}'"
            )
        )
        .await,
        1
    );
}
