//! ListTags: the account's tags with, per tag, how many live tickets carry it, kept exact by the
//! tickets' triggers (migration 46) whatever writes the tickets; most used first, then by name,
//! paginated, narrowed by a prefix; agents and admins only.

use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::envoy::Envoy;
use crate::support::{TestApp, violated_fields};

fn strings(tags: &[&str]) -> Vec<String> {
    tags.iter().map(|tag| (*tag).to_owned()).collect()
}

async fn create_tagged(app: &TestApp, tags: &[&str]) -> v1::Ticket {
    app.tickets
        .clone()
        .create_ticket(app.as_admin(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: "Tagged".to_owned(),
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

async fn list(
    app: &TestApp,
    request: v1::ListTagsRequest,
) -> Result<v1::ListTagsResponse, tonic::Status> {
    app.tickets
        .clone()
        .list_tags(app.as_admin(request))
        .await
        .map(tonic::Response::into_inner)
}

/// The whole list (every page of `page_size`), as (tag, count).
async fn listed(app: &TestApp, prefix: &str, page_size: i32) -> Vec<(String, i64)> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = list(
            app,
            v1::ListTagsRequest {
                page_size,
                page_token,
                prefix: prefix.to_owned(),
            },
        )
        .await
        .expect("a page of tags");
        let limit = if page_size == 0 { 20 } else { page_size };
        assert!(page.tags.len() <= usize::try_from(limit).unwrap());
        all.extend(page.tags.into_iter().map(|tag| (tag.tag, tag.ticket_count)));
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// What the list must say, computed from the tickets themselves: the live tickets' tags counted,
/// most used first, then by name (byte order).
async fn counted_from_tickets(app: &TestApp) -> Vec<(String, i64)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        tag: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = app.database.connect().await;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT tag COLLATE \"C\" AS tag, count(*) AS n FROM tickets, unnest(tags) AS tag \
         WHERE account_id = $1 AND deleted_at IS NULL GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .bind::<SqlUuid, _>(app.admin.account_id.as_uuid())
    .load(&mut conn)
    .await
    .expect("the tickets' tags");
    rows.into_iter().map(|row| (row.tag, row.n)).collect()
}

fn pairs(expected: &[(&str, i64)]) -> Vec<(String, i64)> {
    expected
        .iter()
        .map(|(tag, n)| ((*tag).to_owned(), *n))
        .collect()
}

#[tokio::test]
async fn tags_are_listed_most_used_first_then_by_name_with_the_live_tickets_counted() {
    let app = TestApp::spawn().await;
    let first = create_tagged(&app, &["vip", "refund"]).await;
    let second = create_tagged(&app, &["vip", "billing"]).await;
    create_tagged(&app, &["VIP", "angry"]).await;
    create_tagged(&app, &[]).await;
    app.tickets
        .clone()
        .add_ticket_tags(app.as_admin(v1::AddTicketTagsRequest {
            id: first.id.clone(),
            tags: strings(&["billing", "vip"]),
            etag: String::new(),
        }))
        .await
        .expect("tagged");
    app.tickets
        .clone()
        .remove_ticket_tags(app.as_admin(v1::RemoveTicketTagsRequest {
            id: first.id.clone(),
            tags: strings(&["refund"]),
            etag: String::new(),
        }))
        .await
        .expect("untagged");
    app.tickets
        .clone()
        .delete_ticket(app.as_admin(v1::DeleteTicketRequest {
            id: second.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("deleted");

    let expected = pairs(&[("vip", 2), ("angry", 1), ("billing", 1)]);
    assert_eq!(listed(&app, "", 0).await, expected);
    assert_eq!(counted_from_tickets(&app).await, expected);
}

#[tokio::test]
async fn pages_follow_one_another_without_gaps_or_repeats_and_a_prefix_narrows_the_list() {
    let app = TestApp::spawn().await;
    for tags in [
        &["vip", "video", "a1"][..],
        &["vip", "video", "b1"],
        &["vip", "c1"],
        &["vi", "d1"],
        &["victory"],
    ] {
        create_tagged(&app, tags).await;
    }
    let whole = listed(&app, "", 0).await;
    assert_eq!(whole, counted_from_tickets(&app).await);
    assert_eq!(whole.len(), 8);
    for page_size in [1, 2, 4] {
        assert_eq!(
            listed(&app, "", page_size).await,
            whole,
            "pages of {page_size}"
        );
    }
    let narrowed = pairs(&[("vip", 3), ("video", 2), ("vi", 1), ("victory", 1)]);
    assert_eq!(listed(&app, " VI", 0).await, narrowed);
    assert_eq!(listed(&app, "vi", 3).await, narrowed);
    assert_eq!(listed(&app, "vip", 1).await, pairs(&[("vip", 3)]));
    assert!(listed(&app, "zz", 1).await.is_empty());
}

#[tokio::test]
async fn a_page_token_answers_only_for_the_prefix_it_was_issued_for() {
    let app = TestApp::spawn().await;
    create_tagged(&app, &["vip", "video"]).await;
    let first = list(
        &app,
        v1::ListTagsRequest {
            page_size: 1,
            prefix: "vi".to_owned(),
            ..Default::default()
        },
    )
    .await
    .expect("the first page");
    assert!(!first.next_page_token.is_empty());
    let status = list(
        &app,
        v1::ListTagsRequest {
            page_size: 1,
            page_token: first.next_page_token,
            prefix: "v".to_owned(),
        },
    )
    .await
    .expect_err("a token of another prefix");
    assert_eq!(violated_fields(&status), ["page_token"]);
}

#[tokio::test]
async fn a_prefix_no_tag_could_start_with_and_a_negative_page_size_are_named() {
    let app = TestApp::spawn().await;
    let status = list(
        &app,
        v1::ListTagsRequest {
            page_size: -1,
            prefix: "v i".to_owned(),
            ..Default::default()
        },
    )
    .await
    .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["prefix", "page_size"]);
}

#[tokio::test]
async fn a_tag_whose_last_ticket_loses_it_leaves_the_list() {
    let app = TestApp::spawn().await;
    let ticket = create_tagged(&app, &["spam", "vip"]).await;
    app.tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                tags: strings(&["vip"]),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["tags".to_owned()],
            }),
        }))
        .await
        .expect("tags replaced");
    assert_eq!(listed(&app, "", 0).await, pairs(&[("vip", 1)]));
    app.tickets
        .clone()
        .delete_ticket(app.as_admin(v1::DeleteTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("deleted");
    assert!(listed(&app, "", 0).await.is_empty());
    assert!(counted_from_tickets(&app).await.is_empty());
}

#[tokio::test]
async fn fifty_concurrent_creates_with_the_same_tags_all_land_and_are_all_counted() {
    let app = TestApp::spawn().await;
    let mut creates = tokio::task::JoinSet::new();
    for n in 0..50 {
        // Two shared tags in both orders and one of their own: no two writers deadlock.
        let tags = if n % 2 == 0 {
            vec!["vip".to_owned(), "hot".to_owned(), format!("own-{n}")]
        } else {
            vec!["hot".to_owned(), "vip".to_owned(), format!("own-{n}")]
        };
        let request = app.as_admin(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: format!("Rush {n}"),
                description: "Smoke".to_owned(),
                requester_email: format!("rush{n}@example.com"),
                tags,
                ..Default::default()
            }),
        });
        let mut tickets = app.tickets.clone();
        creates.spawn(async move { tickets.create_ticket(request).await });
    }
    let outcomes = creates.join_all().await;
    let failures: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| outcome.as_ref().err())
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    let counted = counted_from_tickets(&app).await;
    assert_eq!(counted.len(), 52);
    assert_eq!(counted[..2], pairs(&[("hot", 50), ("vip", 50)]));
    assert_eq!(listed(&app, "", 100).await, counted);
}

#[tokio::test]
async fn a_customer_may_not_list_tags_and_another_account_sees_only_its_own() {
    let app = TestApp::spawn().await;
    create_tagged(&app, &["ours"]).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let status = app
        .tickets
        .clone()
        .list_tags(customer.request(v1::ListTagsRequest::default()))
        .await
        .expect_err("customers do not see tags");
    assert_eq!(status.code(), Code::PermissionDenied);

    let other = app.sign_up_another_account().await;
    let theirs = app
        .tickets
        .clone()
        .list_tags(other.request(v1::ListTagsRequest::default()))
        .await
        .expect("their list")
        .into_inner();
    assert!(theirs.tags.is_empty(), "{:?}", theirs.tags);
}

#[tokio::test]
async fn list_tags_over_rest_through_envoy() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    create_tagged(&app, &["vip", "refund"]).await;
    create_tagged(&app, &["vip"]).await;
    let response = reqwest::Client::new()
        .get(envoy.url("/v1/tags?prefix=v&pageSize=10"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("an answer from Envoy");
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(
        body["tags"],
        serde_json::json!([{"tag": "vip", "ticketCount": "2"}])
    );
}
