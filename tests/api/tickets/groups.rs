//! Groups on tickets: a ticket is assigned to a group and to a member of it, never to an agent
//! outside it; the rule holds against RemoveGroupMember under concurrency, is audited, announced
//! as `ticket.assigned`, and the group is never shown to or set by customers.

use diesel::sql_types::{Array, BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;
use uuid::Uuid;

use crate::cross_cutting::tenancy::groups;
use crate::support::envoy::Envoy;
use crate::support::{TestApp, TestUser, assert_reason, details, violated_fields};

pub(crate) async fn create_group(app: &TestApp, admin: &TestUser, name: &str) -> v1::Group {
    groups(app)
        .create_group(admin.request(v1::CreateGroupRequest {
            group: Some(v1::Group {
                name: name.to_owned(),
                ..Default::default()
            }),
        }))
        .await
        .expect("the group")
        .into_inner()
}

pub(crate) async fn add_member(app: &TestApp, group: &v1::Group, user: &TestUser) {
    groups(app)
        .add_group_member(app.as_admin(v1::AddGroupMemberRequest {
            group_id: group.id.clone(),
            user_id: user.id.to_string(),
        }))
        .await
        .expect("a member");
}

async fn remove_member(
    app: &TestApp,
    group: &v1::Group,
    user: &TestUser,
) -> Result<(), tonic::Status> {
    groups(app)
        .remove_group_member(app.as_admin(v1::RemoveGroupMemberRequest {
            group_id: group.id.clone(),
            user_id: user.id.to_string(),
        }))
        .await
        .map(|_| ())
}

async fn assign(
    app: &TestApp,
    id: &str,
    assignee: Option<&TestUser>,
    group: Option<&str>,
) -> Result<v1::Ticket, tonic::Status> {
    app.tickets
        .clone()
        .assign_ticket(app.as_admin(v1::AssignTicketRequest {
            id: id.to_owned(),
            assignee_id: assignee.map(|user| user.id.to_string()).unwrap_or_default(),
            etag: String::new(),
            group_id: group.map(str::to_owned),
        }))
        .await
        .map(tonic::Response::into_inner)
}

/// The group, assignee and version of ticket `id` as PostgreSQL holds them.
#[derive(Debug, PartialEq, diesel::QueryableByName)]
struct Stored {
    #[diesel(sql_type = Nullable<SqlUuid>)]
    group_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    assignee_id: Option<Uuid>,
    #[diesel(sql_type = BigInt)]
    version: i64,
}

async fn stored(app: &TestApp, id: &str) -> Stored {
    let mut conn = app.database.connect().await;
    diesel::sql_query("SELECT group_id, assignee_id, version FROM tickets WHERE id = $1")
        .bind::<SqlUuid, _>(Uuid::parse_str(id).unwrap())
        .get_result(&mut conn)
        .await
        .expect("the ticket's row")
}

fn uuid(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap()
}

#[derive(diesel::QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// How many open tickets have an assignee who is not a member of their group.
async fn open_tickets_assigned_outside_their_group(app: &TestApp) -> i64 {
    let mut conn = app.database.connect().await;
    let counted: Counted = diesel::sql_query(
        "SELECT count(*) AS count FROM tickets t \
         WHERE t.group_id IS NOT NULL AND t.assignee_id IS NOT NULL AND t.deleted_at IS NULL \
           AND t.status NOT IN ('solved', 'closed') \
           AND NOT EXISTS (SELECT 1 FROM group_members m WHERE m.account_id = t.account_id \
                           AND m.group_id = t.group_id AND m.user_id = t.assignee_id)",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    counted.count
}

async fn is_member(app: &TestApp, group: &v1::Group, user: &TestUser) -> bool {
    let mut conn = app.database.connect().await;
    let counted: Counted = diesel::sql_query(
        "SELECT count(*) AS count FROM group_members WHERE group_id = $1 AND user_id = $2",
    )
    .bind::<SqlUuid, _>(uuid(&group.id))
    .bind::<SqlUuid, _>(user.id.as_uuid())
    .get_result(&mut conn)
    .await
    .unwrap();
    counted.count == 1
}

#[tokio::test]
async fn a_ticket_assigned_to_a_group_and_a_member_keeps_its_group_until_told_to_leave_it() {
    let app = TestApp::spawn().await;
    let billing = create_group(&app, &app.admin, "Billing").await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    add_member(&app, &billing, &agent).await;
    let ticket = app.create_ticket("Refund").await;

    let assigned = assign(&app, &ticket.id, Some(&agent), Some(&billing.id))
        .await
        .expect("assigned");
    assert_eq!(assigned.group_id, billing.id);
    assert_eq!(assigned.assignee_id, agent.id.to_string());
    assert_eq!(assigned.status, i32::from(v1::TicketStatus::Open));
    let held = stored(&app, &ticket.id).await;
    assert_eq!(held.group_id, Some(uuid(&billing.id)));
    assert_eq!(held.assignee_id, Some(agent.id.as_uuid()));
    let read = app
        .tickets
        .clone()
        .get_ticket(app.as_admin(v1::GetTicketRequest {
            id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(read.group_id, billing.id);

    // Without a group the ticket keeps its own; unassigned it stays in the group.
    let kept = assign(&app, &ticket.id, None, None)
        .await
        .expect("unassigned");
    assert_eq!(kept.group_id, billing.id);
    assert_eq!(kept.assignee_id, "");
    // An empty group takes it out of the group.
    let left = assign(&app, &ticket.id, None, Some(""))
        .await
        .expect("out of the group");
    assert_eq!(left.group_id, "");
    assert_eq!(stored(&app, &ticket.id).await.group_id, None);

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
    let group_changes: Vec<(String, String)> = activity
        .iter()
        .flat_map(|entry| entry.changes.iter())
        .filter(|change| change.field == "group_id")
        .map(|change| (change.old_value.clone(), change.new_value.clone()))
        .collect();
    assert_eq!(
        group_changes,
        [
            (billing.id.clone(), String::new()),
            (String::new(), billing.id.clone())
        ],
        "newest first"
    );
}

#[tokio::test]
async fn an_assignee_outside_the_group_is_refused_naming_the_group_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let billing = create_group(&app, &app.admin, "Billing").await;
    let member = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let outsider = app.add_user(&app.admin, v1::UserRole::Agent).await;
    add_member(&app, &billing, &member).await;
    let ticket = app.create_ticket("Refund").await;
    let before = stored(&app, &ticket.id).await;

    let refused = assign(&app, &ticket.id, Some(&outsider), Some(&billing.id))
        .await
        .expect_err("not a member");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_reason(&refused, Reason::AssigneeNotInGroup);
    let failure = details(&refused);
    let violation = &failure
        .precondition_failure()
        .expect("PreconditionFailure")
        .violations[0];
    assert_eq!(violation.subject, format!("groups/{}", billing.id));
    assert!(
        violation
            .description
            .contains(&format!("users/{}", outsider.id)),
        "{violation:?}"
    );
    assert_eq!(stored(&app, &ticket.id).await, before);

    // A ticket whose assignee is not a member does not move to the group either.
    assign(&app, &ticket.id, Some(&outsider), None)
        .await
        .expect("assigned without a group");
    let moved = assign(&app, &ticket.id, Some(&outsider), Some(&billing.id))
        .await
        .expect_err("the assignee is not a member");
    assert_reason(&moved, Reason::AssigneeNotInGroup);
    assert_eq!(stored(&app, &ticket.id).await.group_id, None);
}

#[tokio::test]
async fn an_unknown_deleted_or_foreign_group_is_refused_naming_group_id() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("Refund").await;
    let deleted = create_group(&app, &app.admin, "Gone").await;
    groups(&app)
        .delete_group(app.as_admin(v1::DeleteGroupRequest {
            id: deleted.id.clone(),
        }))
        .await
        .expect("deleted");
    let other_admin = app.sign_up_another_account().await;
    let foreign = create_group(&app, &other_admin, "Theirs").await;
    for group in [Uuid::now_v7().to_string(), deleted.id, foreign.id] {
        let refused = assign(&app, &ticket.id, None, Some(&group))
            .await
            .expect_err("no group of the account");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(violated_fields(&refused), ["group_id"]);
    }
    let malformed = assign(&app, &ticket.id, None, Some("billing"))
        .await
        .expect_err("no UUID");
    assert_eq!(violated_fields(&malformed), ["group_id"]);
    assert_eq!(stored(&app, &ticket.id).await.group_id, None);
}

#[tokio::test]
async fn a_member_assigned_an_open_ticket_of_the_group_is_removed_only_once_it_is_solved() {
    let app = TestApp::spawn().await;
    let billing = create_group(&app, &app.admin, "Billing").await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    add_member(&app, &billing, &agent).await;
    let ticket = app.create_ticket("Refund").await;
    assign(&app, &ticket.id, Some(&agent), Some(&billing.id))
        .await
        .expect("assigned");

    let refused = remove_member(&app, &billing, &agent)
        .await
        .expect_err("the assignee of an open ticket of the group");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_reason(&refused, Reason::GroupMemberHasOpenTickets);
    let failure = details(&refused);
    assert_eq!(
        failure
            .precondition_failure()
            .expect("PreconditionFailure")
            .violations[0]
            .subject,
        format!("groups/{}", billing.id)
    );
    assert!(is_member(&app, &billing, &agent).await);

    app.tickets
        .clone()
        .resolve_ticket(app.as_admin(v1::ResolveTicketRequest {
            id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("solved");
    remove_member(&app, &billing, &agent)
        .await
        .expect("removed once nothing open is theirs");
    assert!(!is_member(&app, &billing, &agent).await);
}

#[tokio::test]
async fn assigning_racing_the_removal_of_the_assignee_from_the_group_never_leaves_an_outsider() {
    let app = TestApp::spawn().await;
    let billing = create_group(&app, &app.admin, "Billing").await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let (mut assignments_won, mut removals_won) = (0, 0);
    for round in 0..24 {
        add_member(&app, &billing, &agent).await;
        let ticket = app.create_ticket(&format!("Round {round}")).await;
        let (assigned, removed) = tokio::join!(
            assign(&app, &ticket.id, Some(&agent), Some(&billing.id)),
            remove_member(&app, &billing, &agent),
        );
        let held = stored(&app, &ticket.id).await;
        let member = is_member(&app, &billing, &agent).await;
        match (assigned, removed) {
            (Ok(_), Err(refused)) => {
                assert_reason(&refused, Reason::GroupMemberHasOpenTickets);
                assert_eq!(held.group_id, Some(uuid(&billing.id)));
                assert!(
                    member,
                    "round {round}: the assignment won, the member stays"
                );
                assignments_won += 1;
                app.tickets
                    .clone()
                    .resolve_ticket(app.as_admin(v1::ResolveTicketRequest {
                        id: ticket.id.clone(),
                        ..Default::default()
                    }))
                    .await
                    .expect("solved, so that the next round may remove");
            }
            (Err(refused), Ok(())) => {
                assert_reason(&refused, Reason::AssigneeNotInGroup);
                assert_eq!(held.group_id, None);
                assert_eq!(held.assignee_id, None);
                assert!(!member, "round {round}: the removal won");
                removals_won += 1;
            }
            (assigned, removed) => {
                panic!("round {round}: not exactly one side won: {assigned:?} / {removed:?}")
            }
        }
        assert_eq!(
            open_tickets_assigned_outside_their_group(&app).await,
            0,
            "round {round}"
        );
    }
    assert_eq!(assignments_won + removals_won, 24);
    assert_eq!(open_tickets_assigned_outside_their_group(&app).await, 0);
}

#[tokio::test]
async fn a_ticket_is_created_in_a_group_with_a_member_and_refused_with_an_outsider() {
    let app = TestApp::spawn().await;
    let billing = create_group(&app, &app.admin, "Billing").await;
    let member = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let outsider = app.add_user(&app.admin, v1::UserRole::Agent).await;
    add_member(&app, &billing, &member).await;
    let create = |assignee: &TestUser, group: &str| v1::CreateTicketRequest {
        ticket: Some(v1::Ticket {
            subject: "Routed".to_owned(),
            description: "To billing".to_owned(),
            requester_email: "jane@example.com".to_owned(),
            assignee_id: assignee.id.to_string(),
            group_id: group.to_owned(),
            ..Default::default()
        }),
    };
    let created = app
        .tickets
        .clone()
        .create_ticket(app.as_admin(create(&member, &billing.id)))
        .await
        .expect("created")
        .into_inner();
    assert_eq!(created.group_id, billing.id);
    assert_eq!(
        stored(&app, &created.id).await.group_id,
        Some(uuid(&billing.id))
    );

    let refused = app
        .tickets
        .clone()
        .create_ticket(app.as_admin(create(&outsider, &billing.id)))
        .await
        .expect_err("not a member");
    assert_reason(&refused, Reason::AssigneeNotInGroup);
    let unknown = app
        .tickets
        .clone()
        .create_ticket(app.as_admin(create(&member, &Uuid::now_v7().to_string())))
        .await
        .expect_err("no such group");
    assert_eq!(violated_fields(&unknown), ["ticket.group_id"]);
    let mut conn = app.database.connect().await;
    let counted: Counted = diesel::sql_query("SELECT count(*) AS count FROM tickets")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(counted.count, 1, "only the first was written");
}

#[tokio::test]
async fn a_customer_neither_sees_nor_names_a_group() {
    let app = TestApp::spawn().await;
    let billing = create_group(&app, &app.admin, "Billing").await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let ticket = app
        .ticket("mine")
        .requester("")
        .by(&customer)
        .create()
        .await;
    assign(&app, &ticket.id, None, Some(&billing.id))
        .await
        .expect("routed by the desk");

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
    assert_eq!(seen.group_id, "");
    let listed = app
        .tickets
        .clone()
        .list_tickets(customer.request(v1::ListTicketsRequest::default()))
        .await
        .expect("their tickets")
        .into_inner();
    assert_eq!(listed.tickets[0].group_id, "");

    let refused = app
        .tickets
        .clone()
        .create_ticket(customer.request(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: "Route me".to_owned(),
                description: "To billing".to_owned(),
                group_id: billing.id.clone(),
                ..Default::default()
            }),
        }))
        .await
        .expect_err("customers do not route tickets");
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn an_assignment_naming_a_group_is_one_ticket_assigned_event_carrying_group_and_assignee() {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Array<Nullable<Text>>)]
        changed_fields: Vec<Option<String>>,
        #[diesel(sql_type = Nullable<Text>)]
        group_id: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        assignee_id: Option<String>,
    }
    let app = TestApp::spawn().await;
    let billing = create_group(&app, &app.admin, "Billing").await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    add_member(&app, &billing, &agent).await;
    let ticket = app.create_ticket("Announce").await;
    assign(&app, &ticket.id, Some(&agent), Some(&billing.id))
        .await
        .expect("assigned");

    let mut conn = app.database.connect().await;
    let events: Vec<Row> = diesel::sql_query(
        "SELECT changed_fields, snapshot->>'group_id' AS group_id, \
         snapshot->>'assignee_id' AS assignee_id FROM events \
         WHERE resource_id = $1 AND type = 'ticket.assigned'",
    )
    .bind::<SqlUuid, _>(uuid(&ticket.id))
    .load(&mut conn)
    .await
    .expect("the events");
    assert_eq!(events.len(), 1);
    let mut changed: Vec<String> = events[0].changed_fields.iter().flatten().cloned().collect();
    changed.sort();
    assert!(
        changed.contains(&"group_id".to_owned()) && changed.contains(&"assignee_id".to_owned()),
        "{changed:?}"
    );
    assert_eq!(events[0].group_id.as_deref(), Some(billing.id.as_str()));
    let agent_id = agent.id.to_string();
    assert_eq!(events[0].assignee_id.as_deref(), Some(agent_id.as_str()));
}

#[tokio::test]
async fn assign_ticket_with_a_group_over_rest_through_envoy() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let billing = create_group(&app, &app.admin, "Billing").await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    add_member(&app, &billing, &agent).await;
    let ticket = app.create_ticket("Over REST").await;
    let response = reqwest::Client::new()
        .post(envoy.url(&format!("/v1/tickets/{}:assign", ticket.id)))
        .bearer_auth(&app.admin.access_token)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"assigneeId":"{}","groupId":"{}"}}"#,
            agent.id, billing.id
        ))
        .send()
        .await
        .expect("an answer from Envoy");
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["groupId"], serde_json::json!(billing.id));
    assert_eq!(
        stored(&app, &ticket.id).await.group_id,
        Some(uuid(&billing.id))
    );
}

#[tokio::test]
async fn an_export_carries_the_group_and_a_read_mask_naming_group_id_keeps_it() {
    let app = TestApp::spawn().await;
    let billing = create_group(&app, &app.admin, "Billing").await;
    let grouped = app.create_ticket("Routed").await;
    let loose = app.create_ticket("Not routed").await;
    assign(&app, &grouped.id, None, Some(&billing.id))
        .await
        .expect("routed");
    let mut stream = app
        .tickets
        .clone()
        .export_tickets(app.as_admin(v1::ExportTicketsRequest {
            read_mask: Some(prost_types::FieldMask {
                paths: vec!["id".to_owned(), "group_id".to_owned()],
            }),
            ..Default::default()
        }))
        .await
        .expect("the export starts")
        .into_inner();
    let mut exported = Vec::new();
    while let Some(ticket) = stream.message().await.expect("the export streams") {
        exported.push((ticket.id, ticket.group_id, ticket.subject));
    }
    exported.sort();
    let mut expected = vec![
        (grouped.id.clone(), billing.id.clone(), String::new()),
        (loose.id.clone(), String::new(), String::new()),
    ];
    expected.sort();
    assert_eq!(exported, expected);
}
