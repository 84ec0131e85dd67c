//! ListTickets by a saved view (`view_id`) and the size of a whole list (`total_size`).

use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::cross_cutting::tenancy::views;
use crate::support::{TestApp, TestUser, assert_reason, violated_fields};

async fn save_view(app: &TestApp, user: &TestUser, view: v1::View) -> v1::View {
    views(app)
        .create_view(user.request(v1::CreateViewRequest { view: Some(view) }))
        .await
        .expect("a view")
        .into_inner()
}

fn personal(name: &str, filter: &str, order_by: &str, read_mask: &[&str]) -> v1::View {
    v1::View {
        name: name.to_owned(),
        filter: filter.to_owned(),
        order_by: order_by.to_owned(),
        read_mask: Some(prost_types::FieldMask {
            paths: read_mask.iter().map(|path| (*path).to_owned()).collect(),
        }),
        scope: v1::ViewScope::Personal.into(),
        ..Default::default()
    }
}

async fn list_as(
    app: &TestApp,
    user: &TestUser,
    request: v1::ListTicketsRequest,
) -> Result<v1::ListTicketsResponse, tonic::Status> {
    app.tickets
        .clone()
        .list_tickets(user.request(request))
        .await
        .map(tonic::Response::into_inner)
}

fn subjects(listed: &v1::ListTicketsResponse) -> Vec<&str> {
    listed
        .tickets
        .iter()
        .map(|ticket| ticket.subject.as_str())
        .collect()
}

async fn create_with_priority(app: &TestApp, subject: &str, priority: v1::TicketPriority) {
    let mut request = crate::support::valid_create_request(subject);
    if let Some(ticket) = request.ticket.as_mut() {
        ticket.priority = priority.into();
    }
    app.create_as_admin(request).await;
}

/// `n` tickets of `priority` raised by `requester`, written straight to PostgreSQL (a backlog
/// too large to create one by one), then ANALYZEd as autovacuum would.
async fn insert_backlog(app: &TestApp, requester: &TestUser, priority: &str, n: i64) {
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "INSERT INTO tickets (id, account_id, subject, description, priority, status, requester_id) \
         SELECT gen_random_uuid(), $1, 'backlog ' || n, 'from a backlog', $2, 'open', $3 \
         FROM generate_series(1, $4) n",
    )
    .bind::<SqlUuid, _>(app.account_id.as_uuid())
    .bind::<Text, _>(priority)
    .bind::<SqlUuid, _>(requester.id.as_uuid())
    .bind::<BigInt, _>(n)
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("ANALYZE tickets")
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn listing_by_a_view_applies_its_filter_order_and_mask_and_ands_the_requests_own() {
    let app = TestApp::spawn().await;
    for subject in ["urgent 1", "urgent 2", "urgent 3"] {
        create_with_priority(&app, subject, v1::TicketPriority::Urgent).await;
    }
    create_with_priority(&app, "normal", v1::TicketPriority::Normal).await;
    let view = save_view(
        &app,
        &app.admin,
        personal(
            "Urgent, oldest first",
            "priority = URGENT",
            "create_time asc",
            &["id", "subject"],
        ),
    )
    .await;

    let listed = list_as(
        &app,
        &app.admin,
        v1::ListTicketsRequest {
            view_id: view.id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("listed by the view");
    assert_eq!(subjects(&listed), ["urgent 1", "urgent 2", "urgent 3"]);
    assert!(listed.tickets.iter().all(|ticket| !ticket.id.is_empty()
        && ticket.description.is_empty()
        && ticket.priority == 0));
    assert_eq!((listed.total_size, listed.total_size_estimated), (3, false));

    // The request's own order and mask win; its filter narrows the view's.
    let urgent_two = subjects(&listed)
        .iter()
        .position(|subject| *subject == "urgent 2")
        .map(|index| listed.tickets[index].id.clone())
        .unwrap();
    app.tickets
        .clone()
        .assign_ticket(app.as_admin(v1::AssignTicketRequest {
            id: urgent_two,
            assignee_id: app.admin.id.to_string(),
            ..Default::default()
        }))
        .await
        .expect("assigned");
    let narrowed = list_as(
        &app,
        &app.admin,
        v1::ListTicketsRequest {
            view_id: view.id.clone(),
            filter: "assignee = me".to_owned(),
            read_mask: Some(prost_types::FieldMask {
                paths: vec!["subject".to_owned(), "priority".to_owned()],
            }),
            ..Default::default()
        },
    )
    .await
    .expect("narrowed");
    assert_eq!(subjects(&narrowed), ["urgent 2"]);
    assert_eq!(
        narrowed.tickets[0].priority,
        v1::TicketPriority::Urgent as i32
    );
    assert!(narrowed.tickets[0].id.is_empty());
    assert_eq!(narrowed.total_size, 1);
    let newest_first = list_as(
        &app,
        &app.admin,
        v1::ListTicketsRequest {
            view_id: view.id.clone(),
            order_by: "create_time desc".to_owned(),
            ..Default::default()
        },
    )
    .await
    .expect("reordered");
    assert_eq!(
        subjects(&newest_first),
        ["urgent 3", "urgent 2", "urgent 1"]
    );
}

#[tokio::test]
async fn a_views_page_token_serves_only_that_view_as_it_was_when_issued() {
    let app = TestApp::spawn().await;
    for subject in ["urgent 1", "urgent 2", "urgent 3"] {
        create_with_priority(&app, subject, v1::TicketPriority::Urgent).await;
    }
    let view = save_view(
        &app,
        &app.admin,
        personal("Urgent", "priority = URGENT", "create_time asc", &[]),
    )
    .await;
    let other = save_view(
        &app,
        &app.admin,
        personal("Also urgent", "priority = URGENT", "create_time asc", &[]),
    )
    .await;
    let first = list_as(
        &app,
        &app.admin,
        v1::ListTicketsRequest {
            view_id: view.id.clone(),
            page_size: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(subjects(&first), ["urgent 1", "urgent 2"]);
    assert_eq!((first.total_size, first.total_size_estimated), (3, false));
    let next = |view_id: &str| v1::ListTicketsRequest {
        view_id: view_id.to_owned(),
        page_size: 2,
        page_token: first.next_page_token.clone(),
        ..Default::default()
    };
    let second = list_as(&app, &app.admin, next(&view.id)).await.unwrap();
    assert_eq!(subjects(&second), ["urgent 3"]);
    assert_eq!(second.total_size, 3);
    assert!(second.next_page_token.is_empty());

    for elsewhere in [next(&other.id), next("")] {
        let refused = list_as(&app, &app.admin, elsewhere)
            .await
            .expect_err("a token of another list");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), ["page_token"]);
    }

    views(&app)
        .update_view(app.as_admin(v1::UpdateViewRequest {
            view: Some(v1::View {
                id: view.id.clone(),
                filter: "priority = HIGH".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["filter".to_owned()],
            }),
        }))
        .await
        .expect("changed");
    let refused = list_as(&app, &app.admin, next(&view.id))
        .await
        .expect_err("the view changed since");
    assert_eq!(violated_fields(&refused), ["page_token"]);
}

#[tokio::test]
async fn only_agents_list_by_a_view_and_only_by_one_they_see() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let admins = save_view(&app, &app.admin, personal("Admin's", "", "", &[])).await;
    let by_view = v1::ListTicketsRequest {
        view_id: admins.id.clone(),
        ..Default::default()
    };

    let refused = list_as(&app, &customer, by_view.clone())
        .await
        .expect_err("customers have no views");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_reason(&refused, Reason::RoleRequired);

    let refused = list_as(&app, &agent, by_view)
        .await
        .expect_err("another user's personal view");
    assert_eq!(refused.code(), Code::NotFound);
    assert_reason(&refused, Reason::ViewNotFound);

    let refused = list_as(
        &app,
        &app.admin,
        v1::ListTicketsRequest {
            view_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        },
    )
    .await
    .expect_err("no such view");
    assert_eq!(refused.code(), Code::NotFound);
    assert_reason(&refused, Reason::ViewNotFound);

    // A request is checked before its view is looked up: a bad one is refused as such, every
    // refused field named at once, whatever the view.
    let refused = list_as(
        &app,
        &app.admin,
        v1::ListTicketsRequest {
            view_id: "not-a-view".to_owned(),
            filter: "priority = SOMETIMES".to_owned(),
            ..Default::default()
        },
    )
    .await
    .expect_err("a bad request");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["filter", "view_id"]);
    let refused = list_as(
        &app,
        &customer,
        v1::ListTicketsRequest {
            view_id: uuid::Uuid::new_v4().to_string(),
            page_size: -1,
            ..Default::default()
        },
    )
    .await
    .expect_err("a bad request");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["page_size"]);
}

#[tokio::test]
async fn total_size_is_counted_to_100_and_the_planners_estimate_beyond_flagged_as_such() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    insert_backlog(&app, &app.admin, "urgent", 1500).await;
    insert_backlog(&app, &customer, "low", 7).await;
    insert_backlog(&app, &app.admin, "high", 100).await;
    let list = async |user: &TestUser, filter: &str, page_token: String| {
        list_as(
            &app,
            user,
            v1::ListTicketsRequest {
                filter: filter.to_owned(),
                page_size: 5,
                page_token,
                ..Default::default()
            },
        )
        .await
        .expect("listed")
    };

    let urgent = list(&app.admin, "priority = URGENT", String::new()).await;
    assert!(urgent.total_size_estimated);
    // ANALYZEd, the planner knows the account's 1,500 urgent tickets give or take its sampling;
    // a count stopped at the cap (101) would be far off.
    assert!(
        (1400..=1600).contains(&urgent.total_size),
        "estimated {}",
        urgent.total_size
    );

    // Counted exactly, on every page: the customer's own seven, and the admin's view of them.
    let mine = list(&customer, "", String::new()).await;
    assert_eq!((mine.total_size, mine.total_size_estimated), (7, false));
    let later = list(&customer, "", mine.next_page_token.clone()).await;
    assert_eq!(later.tickets.len(), 2);
    assert_eq!((later.total_size, later.total_size_estimated), (7, false));
    let low = list(&app.admin, "priority = LOW", String::new()).await;
    assert_eq!((low.total_size, low.total_size_estimated), (7, false));
    let high = list(&app.admin, "priority = HIGH", String::new()).await;
    assert_eq!((high.total_size, high.total_size_estimated), (100, false));
    let none = list(&app.admin, "priority = NORMAL", String::new()).await;
    assert_eq!((none.total_size, none.total_size_estimated), (0, false));
}
