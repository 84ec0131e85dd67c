//! Tags on tickets: normalized on every write path, added and removed on the locked row so that
//! concurrent changes all land, audited, announced as `ticket.updated`, and never shown to or
//! set by customers.

use diesel::sql_types::{Array, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use prost_types::FieldMask;
use reqwest::StatusCode;
use supportdesk::wire::proto::v1;
use tonic::Code;
use uuid::Uuid;

use crate::support::envoy::Envoy;
use crate::support::{TestApp, violated_fields};

/// The tags of ticket `id` as PostgreSQL holds them.
async fn stored_tags(app: &TestApp, id: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Array<Nullable<Text>>)]
        tags: Vec<Option<String>>,
    }
    let mut conn = app.database.connect().await;
    let row: Row = diesel::sql_query("SELECT tags FROM tickets WHERE id = $1")
        .bind::<SqlUuid, _>(Uuid::parse_str(id).unwrap())
        .get_result(&mut conn)
        .await
        .expect("the ticket's row");
    row.tags.into_iter().flatten().collect()
}

fn strings(tags: &[&str]) -> Vec<String> {
    tags.iter().map(|tag| (*tag).to_owned()).collect()
}

async fn add(app: &TestApp, id: &str, tags: &[&str]) -> Result<v1::Ticket, tonic::Status> {
    app.tickets
        .clone()
        .add_ticket_tags(app.as_admin(v1::AddTicketTagsRequest {
            id: id.to_owned(),
            tags: strings(tags),
            etag: String::new(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn create_tagged(app: &TestApp, subject: &str, tags: &[&str]) -> v1::Ticket {
    app.tickets
        .clone()
        .create_ticket(app.as_admin(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: subject.to_owned(),
                description: "Smoke".to_owned(),
                requester_email: "jane@example.com".to_owned(),
                tags: strings(tags),
                ..Default::default()
            }),
        }))
        .await
        .expect("created")
        .into_inner()
}

#[tokio::test]
async fn tags_set_on_create_are_trimmed_lower_cased_merged_and_sorted() {
    let app = TestApp::spawn().await;
    let ticket = create_tagged(&app, "Refund please", &[" VIP", "refund", "vip", "Äpfel"]).await;
    assert_eq!(ticket.tags, ["refund", "vip", "äpfel"]);
    assert_eq!(stored_tags(&app, &ticket.id).await, ticket.tags);
}

#[tokio::test]
async fn an_invalid_tag_is_named_by_its_index_and_too_many_tags_by_the_field() {
    let app = TestApp::spawn().await;
    let status = app
        .tickets
        .clone()
        .create_ticket(app.as_admin(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: "Tagged".to_owned(),
                description: "Smoke".to_owned(),
                requester_email: "jane@example.com".to_owned(),
                tags: strings(&["ok", "two words"]),
                ..Default::default()
            }),
        }))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["ticket.tags[1]"]);

    let nineteen: Vec<String> = (0..19).map(|n| format!("t{n}")).collect();
    let nineteen: Vec<&str> = nineteen.iter().map(String::as_str).collect();
    let ticket = create_tagged(&app, "Nearly full", &nineteen).await;
    let status = add(&app, &ticket.id, &["one", "two"])
        .await
        .expect_err("a 21st tag is refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["tags"]);
    assert_eq!(
        stored_tags(&app, &ticket.id).await.len(),
        19,
        "nothing written"
    );

    let status = add(&app, &ticket.id, &["fine", "not,fine"])
        .await
        .expect_err("an invalid tag is refused");
    assert_eq!(violated_fields(&status), ["tags[1]"]);
}

#[tokio::test]
async fn two_agents_adding_different_tags_at_the_same_time_both_land() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("Busy ticket").await;
    let names: Vec<String> = (0..16).map(|n| format!("agent-{n}")).collect();
    let mut adds = tokio::task::JoinSet::new();
    for name in &names {
        let mut tickets = app.tickets.clone();
        let request = app.as_admin(v1::AddTicketTagsRequest {
            id: ticket.id.clone(),
            tags: vec![name.clone()],
            etag: String::new(),
        });
        adds.spawn(async move { tickets.add_ticket_tags(request).await });
    }
    for added in adds.join_all().await {
        added.expect("every add succeeds");
    }
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(stored_tags(&app, &ticket.id).await, expected);
}

#[tokio::test]
async fn removing_tags_keeps_the_others_and_ignores_tags_the_ticket_lacks() {
    let app = TestApp::spawn().await;
    let ticket = create_tagged(&app, "Tidy", &["refund", "vip", "billing"]).await;
    let removed = app
        .tickets
        .clone()
        .remove_ticket_tags(app.as_admin(v1::RemoveTicketTagsRequest {
            id: ticket.id.clone(),
            tags: strings(&["VIP", "never-there"]),
            etag: String::new(),
        }))
        .await
        .expect("removed")
        .into_inner();
    assert_eq!(removed.tags, ["billing", "refund"]);
    assert_eq!(stored_tags(&app, &ticket.id).await, ["billing", "refund"]);
}

#[tokio::test]
async fn update_ticket_with_the_tags_mask_replaces_them_all_and_records_old_and_new() {
    let app = TestApp::spawn().await;
    let ticket = create_tagged(&app, "Relabel", &["refund", "vip"]).await;
    let updated = app
        .tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                tags: strings(&["Billing"]),
                subject: "ignored: not in the mask".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["tags".to_owned()],
            }),
        }))
        .await
        .expect("updated")
        .into_inner();
    assert_eq!(updated.tags, ["billing"]);
    assert_eq!(updated.subject, "Relabel");
    assert_eq!(stored_tags(&app, &ticket.id).await, ["billing"]);

    let activity = app
        .tickets
        .clone()
        .list_ticket_activity(app.as_admin(v1::ListTicketActivityRequest {
            ticket_id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("the activity")
        .into_inner()
        .activities;
    let tag_changes: Vec<(String, String)> = activity
        .iter()
        .flat_map(|entry| entry.changes.iter())
        .filter(|change| change.field == "tags")
        .map(|change| (change.old_value.clone(), change.new_value.clone()))
        .collect();
    assert_eq!(
        tag_changes,
        [
            ("refund,vip".to_owned(), "billing".to_owned()),
            (String::new(), "refund,vip".to_owned())
        ],
        "newest first"
    );
}

#[tokio::test]
async fn a_change_of_tags_is_a_ticket_updated_event_naming_tags_and_carrying_them() {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Array<Nullable<Text>>)]
        changed_fields: Vec<Option<String>>,
        #[diesel(sql_type = Text)]
        tags: String,
    }
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("Announce").await;
    add(&app, &ticket.id, &["vip"]).await.expect("added");

    let mut conn = app.database.connect().await;
    let events: Vec<Row> = diesel::sql_query(
        "SELECT changed_fields, (snapshot->'tags')::text AS tags FROM events \
         WHERE resource_id = $1 AND type = 'ticket.updated'",
    )
    .bind::<SqlUuid, _>(Uuid::parse_str(&ticket.id).unwrap())
    .load(&mut conn)
    .await
    .expect("the events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changed_fields, [Some("tags".to_owned())]);
    assert_eq!(events[0].tags, r#"["vip"]"#);
}

#[tokio::test]
async fn a_customer_neither_sees_nor_sets_tags() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let ticket = app
        .ticket("mine")
        .requester("")
        .by(&customer)
        .create()
        .await;
    add(&app, &ticket.id, &["angry"])
        .await
        .expect("tagged by the desk");

    let seen = app
        .tickets
        .clone()
        .get_ticket(customer.request(v1::GetTicketRequest {
            id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("their own ticket")
        .into_inner();
    assert!(seen.tags.is_empty(), "{:?}", seen.tags);
    let listed = app
        .tickets
        .clone()
        .list_tickets(customer.request(v1::ListTicketsRequest::default()))
        .await
        .expect("their tickets")
        .into_inner();
    assert!(listed.tickets.iter().all(|ticket| ticket.tags.is_empty()));

    let status = app
        .tickets
        .clone()
        .add_ticket_tags(customer.request(v1::AddTicketTagsRequest {
            id: ticket.id.clone(),
            tags: strings(&["happy"]),
            etag: String::new(),
        }))
        .await
        .expect_err("customers cannot tag");
    assert_eq!(status.code(), Code::PermissionDenied);

    let status = app
        .tickets
        .clone()
        .create_ticket(customer.request(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: "Tag me".to_owned(),
                description: "Please".to_owned(),
                tags: strings(&["vip"]),
                ..Default::default()
            }),
        }))
        .await
        .expect_err("customers cannot set tags");
    assert_eq!(violated_fields(&status), ["ticket.tags"]);
    assert_eq!(stored_tags(&app, &ticket.id).await, ["angry"]);
}

#[tokio::test]
async fn another_account_cannot_tag_a_ticket() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("Ours").await;
    let other = app.sign_up_another_account().await;
    let status = app
        .tickets
        .clone()
        .add_ticket_tags(other.request(v1::AddTicketTagsRequest {
            id: ticket.id.clone(),
            tags: strings(&["theirs"]),
            etag: String::new(),
        }))
        .await
        .expect_err("not their ticket");
    assert_eq!(status.code(), Code::NotFound);
    assert!(stored_tags(&app, &ticket.id).await.is_empty());
}

#[tokio::test]
async fn a_closed_ticket_cannot_be_tagged() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("Done").await;
    app.tickets
        .clone()
        .assign_ticket(app.as_admin(v1::AssignTicketRequest {
            id: ticket.id.clone(),
            assignee_id: app.admin.id.to_string(),
            etag: String::new(),
            group_id: None,
        }))
        .await
        .expect("assigned");
    app.tickets
        .clone()
        .resolve_ticket(app.as_admin(v1::ResolveTicketRequest {
            id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("solved");
    app.tickets
        .clone()
        .close_ticket(app.as_admin(v1::CloseTicketRequest {
            id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("closed");
    let status = add(&app, &ticket.id, &["late"]).await.expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(stored_tags(&app, &ticket.id).await.is_empty());
}

#[tokio::test]
async fn add_ticket_tags_over_rest_through_envoy() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let ticket = app.create_ticket("Over REST").await;
    let response = reqwest::Client::new()
        .post(envoy.url(&format!("/v1/tickets/{}:addTags", ticket.id)))
        .bearer_auth(&app.admin.access_token)
        .header("content-type", "application/json")
        .body(r#"{"tags":["VIP","refund"]}"#)
        .send()
        .await
        .expect("an answer from Envoy");
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["tags"], serde_json::json!(["refund", "vip"]));
    assert_eq!(stored_tags(&app, &ticket.id).await, ["refund", "vip"]);
}
