//! ViewService: saved views, who may see and change them, and counting many views at once.

use diesel::sql_types::{Array, BigInt, Integer, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::cross_cutting::tenancy::{groups, views};
use crate::support::{TestApp, TestUser, assert_reason, violated_fields};

fn personal(name: &str, filter: &str) -> v1::View {
    v1::View {
        name: name.to_owned(),
        filter: filter.to_owned(),
        scope: v1::ViewScope::Personal.into(),
        ..Default::default()
    }
}

fn shared(name: &str, filter: &str, group_id: Option<&str>) -> v1::View {
    v1::View {
        name: name.to_owned(),
        filter: filter.to_owned(),
        scope: if group_id.is_some() {
            v1::ViewScope::Group.into()
        } else {
            v1::ViewScope::Account.into()
        },
        group_id: group_id.unwrap_or_default().to_owned(),
        ..Default::default()
    }
}

async fn create_as(
    user: &TestUser,
    app: &TestApp,
    view: v1::View,
) -> Result<v1::View, tonic::Status> {
    views(app)
        .create_view(user.request(v1::CreateViewRequest { view: Some(view) }))
        .await
        .map(tonic::Response::into_inner)
}

async fn names_seen_by(app: &TestApp, user: &TestUser) -> Vec<String> {
    views(app)
        .list_views(user.request(v1::ListViewsRequest::default()))
        .await
        .expect("a list")
        .into_inner()
        .views
        .into_iter()
        .map(|view| view.name)
        .collect()
}

#[derive(Debug, PartialEq, diesel::QueryableByName)]
struct StoredView {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    filter: String,
    #[diesel(sql_type = Text)]
    order_by: String,
    #[diesel(sql_type = Array<Text>)]
    read_mask: Vec<String>,
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = Integer)]
    position: i32,
}

async fn stored_view(app: &TestApp, id: &str) -> Option<StoredView> {
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "SELECT name, filter, order_by, read_mask, scope, position FROM views WHERE id = $1::uuid",
    )
    .bind::<Text, _>(id)
    .get_result(&mut conn)
    .await
    .ok()
}

#[tokio::test]
async fn an_agent_saves_a_personal_view_which_postgresql_holds_as_written_and_only_they_see() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let other = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let created = create_as(
        &agent,
        &app,
        v1::View {
            order_by: "update_time asc".to_owned(),
            read_mask: Some(prost_types::FieldMask {
                paths: vec!["subject".to_owned(), "status".to_owned()],
            }),
            position: 3,
            ..personal(
                "  My open urgent tickets ",
                "assignee = me AND status = OPEN AND priority = URGENT",
            )
        },
    )
    .await
    .expect("created");
    assert_eq!(created.name, "My open urgent tickets");
    assert_eq!(created.owner_id, agent.id.to_string());
    assert_eq!(created.etag, "v1");
    assert_eq!(
        stored_view(&app, &created.id).await,
        Some(StoredView {
            name: "My open urgent tickets".to_owned(),
            filter: "assignee = me AND status = OPEN AND priority = URGENT".to_owned(),
            order_by: "update_time asc".to_owned(),
            read_mask: vec!["subject".to_owned(), "status".to_owned()],
            scope: "personal".to_owned(),
            position: 3,
        })
    );
    assert_eq!(
        names_seen_by(&app, &agent).await,
        ["My open urgent tickets"]
    );
    assert!(names_seen_by(&app, &other).await.is_empty());
    assert!(names_seen_by(&app, &app.admin).await.is_empty());
    let hidden = views(&app)
        .get_view(other.request(v1::GetViewRequest {
            id: created.id.clone(),
        }))
        .await
        .expect_err("another user's personal view");
    assert_eq!(hidden.code(), Code::NotFound);
    assert_reason(&hidden, Reason::ViewNotFound);
}

#[tokio::test]
async fn a_view_whose_filter_order_or_mask_does_not_parse_is_refused_naming_each_field() {
    let app = TestApp::spawn().await;
    let refused = create_as(
        &app.admin,
        &app,
        v1::View {
            order_by: "subject".to_owned(),
            read_mask: Some(prost_types::FieldMask {
                paths: vec!["nope".to_owned()],
            }),
            ..personal("Broken", "status = OPEN AND bogus = 1")
        },
    )
    .await
    .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&refused),
        ["view.filter", "view.order_by", "view.read_mask"]
    );
    assert!(refused.message().contains("at 19"), "{refused:?}");
    let no_group = create_as(
        &app.admin,
        &app,
        v1::View {
            scope: v1::ViewScope::Group.into(),
            ..personal("Group without a group", "")
        },
    )
    .await
    .expect_err("refused");
    assert_eq!(violated_fields(&no_group), ["view.group_id"]);
    let mut conn = app.database.connect().await;
    let counted: Counted = diesel::sql_query("SELECT count(*) AS count FROM views")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(counted.count, 0);
}

#[tokio::test]
async fn admins_share_views_with_a_group_or_the_account_and_agents_see_only_theirs() {
    let app = TestApp::spawn().await;
    let member = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let outsider = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let group = groups(&app)
        .create_group(app.as_admin(v1::CreateGroupRequest {
            group: Some(v1::Group {
                name: "Billing".to_owned(),
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    groups(&app)
        .add_group_member(app.as_admin(v1::AddGroupMemberRequest {
            group_id: group.id.clone(),
            user_id: member.id.to_string(),
        }))
        .await
        .unwrap();
    let everyone = create_as(
        &app.admin,
        &app,
        shared("Unassigned", "assignee = none", None),
    )
    .await
    .expect("an account view");
    let billing = create_as(
        &app.admin,
        &app,
        v1::View {
            position: -1,
            ..shared("Billing queue", "tags:billing", Some(&group.id))
        },
    )
    .await
    .expect("a group view");
    assert_eq!(billing.group_id, group.id);

    assert_eq!(
        names_seen_by(&app, &member).await,
        ["Billing queue", "Unassigned"]
    );
    assert_eq!(names_seen_by(&app, &outsider).await, ["Unassigned"]);
    assert_eq!(
        names_seen_by(&app, &app.admin).await,
        ["Billing queue", "Unassigned"]
    );
    let hidden = views(&app)
        .get_view(outsider.request(v1::GetViewRequest {
            id: billing.id.clone(),
        }))
        .await
        .expect_err("not a member");
    assert_eq!(hidden.code(), Code::NotFound);

    let denied = create_as(&member, &app, shared("Mine for all", "", None))
        .await
        .expect_err("agents do not share views");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_reason(&denied, Reason::RoleRequired);
    let denied = views(&app)
        .delete_view(member.request(v1::DeleteViewRequest {
            id: everyone.id.clone(),
        }))
        .await
        .expect_err("agents do not delete shared views");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(stored_view(&app, &everyone.id).await.is_some());

    views(&app)
        .delete_view(app.as_admin(v1::DeleteViewRequest {
            id: everyone.id.clone(),
        }))
        .await
        .expect("deleted");
    assert_eq!(stored_view(&app, &everyone.id).await, None);
}

#[tokio::test]
async fn customers_are_refused_the_whole_view_service() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let refused = create_as(&customer, &app, personal("Mine", ""))
        .await
        .expect_err("customers have no views");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = views(&app)
        .list_views(customer.request(v1::ListViewsRequest::default()))
        .await
        .expect_err("customers have no views");
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn an_update_changes_the_masked_fields_and_a_stale_etag_is_aborted() {
    let app = TestApp::spawn().await;
    let view = create_as(&app.admin, &app, personal("Open", "status = OPEN"))
        .await
        .unwrap();
    let changed = views(&app)
        .update_view(app.as_admin(v1::UpdateViewRequest {
            view: Some(v1::View {
                id: view.id.clone(),
                name: "ignored: not in the mask".to_owned(),
                filter: "status = PENDING".to_owned(),
                position: 7,
                etag: view.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["filter".to_owned(), "position".to_owned()],
            }),
        }))
        .await
        .expect("changed")
        .into_inner();
    assert_eq!(changed.etag, "v2");
    let stored = stored_view(&app, &view.id).await.unwrap();
    assert_eq!(
        (
            stored.name.as_str(),
            stored.filter.as_str(),
            stored.position
        ),
        ("Open", "status = PENDING", 7)
    );
    let stale = views(&app)
        .update_view(app.as_admin(v1::UpdateViewRequest {
            view: Some(v1::View {
                id: view.id.clone(),
                name: "Late".to_owned(),
                etag: view.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".to_owned()],
            }),
        }))
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Code::Aborted);
    assert_reason(&stale, Reason::EtagMismatch);
    assert_eq!(stored_view(&app, &view.id).await.unwrap().name, "Open");
}

#[derive(diesel::QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[tokio::test]
async fn a_user_has_at_most_100_personal_views() {
    let app = TestApp::spawn().await;
    {
        let mut conn = app.database.connect().await;
        diesel::sql_query(
            "INSERT INTO views (id, account_id, name, scope, owner_id) \
             SELECT gen_random_uuid(), $1, 'view ' || n, 'personal', $2 \
             FROM generate_series(1, 100) n",
        )
        .bind::<SqlUuid, _>(app.account_id.as_uuid())
        .bind::<SqlUuid, _>(app.admin.id.as_uuid())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let refused = create_as(&app.admin, &app, personal("One too many", ""))
        .await
        .expect_err("the limit");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_reason(&refused, Reason::ViewLimit);
    // Shared views have their own limit.
    create_as(&app.admin, &app, shared("Everyone's", "", None))
        .await
        .expect("a shared view");
}

/// Inserts `n` open, urgent, unassigned tickets of the app's account in one statement.
async fn insert_urgent_tickets(app: &TestApp, n: i64) {
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "INSERT INTO tickets (id, account_id, subject, description, priority, status, requester_id) \
         SELECT gen_random_uuid(), $1, 'bulk ' || n, 'from a backlog', 'urgent', 'open', $2 \
         FROM generate_series(1, $3) n",
    )
    .bind::<SqlUuid, _>(app.account_id.as_uuid())
    .bind::<SqlUuid, _>(app.admin.id.as_uuid())
    .bind::<BigInt, _>(n)
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn counting_views_is_exact_to_100_and_capped_beyond() {
    let app = TestApp::spawn().await;
    insert_urgent_tickets(&app, 105).await;
    for n in 0..3 {
        app.create_ticket(&format!("normal {n}")).await;
    }
    let none = create_as(&app.admin, &app, personal("None", "priority = LOW"))
        .await
        .unwrap();
    let three = create_as(&app.admin, &app, personal("Three", "priority = NORMAL"))
        .await
        .unwrap();
    let many = create_as(&app.admin, &app, personal("Many", "priority = URGENT"))
        .await
        .unwrap();
    let counted = views(&app)
        .count_views(app.as_admin(v1::CountViewsRequest {
            view_ids: vec![many.id.clone(), none.id.clone(), three.id.clone()],
        }))
        .await
        .expect("counted")
        .into_inner();
    let expected = |view: &v1::View, count, capped| v1::ViewCount {
        view_id: view.id.clone(),
        count,
        capped,
    };
    assert_eq!(
        counted.counts,
        [
            expected(&many, 100, true),
            expected(&none, 0, false),
            expected(&three, 3, false),
        ]
    );
    // No ids: every view the caller sees, in ListViews order (position, then name).
    let all = views(&app)
        .count_views(app.as_admin(v1::CountViewsRequest::default()))
        .await
        .expect("counted")
        .into_inner();
    assert_eq!(
        all.counts,
        [
            expected(&many, 100, true),
            expected(&none, 0, false),
            expected(&three, 3, false),
        ]
    );
}

#[tokio::test]
async fn counting_a_view_the_caller_cannot_see_is_not_found_and_me_is_the_counting_user() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let private = create_as(&app.admin, &app, personal("Admin's", ""))
        .await
        .unwrap();
    let refused = views(&app)
        .count_views(agent.request(v1::CountViewsRequest {
            view_ids: vec![private.id.clone()],
        }))
        .await
        .expect_err("hidden");
    assert_eq!(refused.code(), Code::NotFound);
    assert_reason(&refused, Reason::ViewNotFound);

    // One shared view, "assigned to me": the admin's tickets for the admin, none for the agent.
    let mine = create_as(
        &app.admin,
        &app,
        shared("Assigned to me", "assignee = me", None),
    )
    .await
    .unwrap();
    let ticket = app.create_ticket("mine").await;
    app.tickets
        .clone()
        .assign_ticket(app.as_admin(v1::AssignTicketRequest {
            id: ticket.id.clone(),
            assignee_id: app.admin.id.to_string(),
            ..Default::default()
        }))
        .await
        .expect("assigned");
    let count_for = async |user: &TestUser| {
        views(&app)
            .count_views(user.request(v1::CountViewsRequest {
                view_ids: vec![mine.id.clone()],
            }))
            .await
            .expect("counted")
            .into_inner()
            .counts[0]
            .count
    };
    assert_eq!(count_for(&app.admin).await, 1);
    assert_eq!(count_for(&agent).await, 0);
}
