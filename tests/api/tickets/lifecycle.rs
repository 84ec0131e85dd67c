//! Changing tickets: partial updates with etags, the lifecycle, deletion, comments, the audit
//! trail, and the open-ticket limit under concurrency.

use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::RunQueryDsl;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::{
    TestApp, TestUser, assert_reason, details, valid_create_request, violated_fields,
};

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    })
}

async fn activity(app: &TestApp, id: &str) -> Vec<v1::TicketActivity> {
    app.tickets
        .clone()
        .list_ticket_activity(app.as_admin(v1::ListTicketActivityRequest {
            ticket_id: id.to_owned(),
            page_size: 100,
            page_token: String::new(),
        }))
        .await
        .expect("activity")
        .into_inner()
        .activities
}

/// The ticket as PostgreSQL holds it. A refused change is checked here, not through GetTicket:
/// the cache still holds the ticket as last written, whatever a failed change did to the row.
async fn stored(app: &TestApp, id: &str) -> StoredTicket {
    let mut conn = app.database.connect().await;
    diesel::sql_query("SELECT subject, status, version FROM tickets WHERE id = $1")
        .bind::<SqlUuid, _>(uuid::Uuid::parse_str(id).expect("a ticket id"))
        .get_result(&mut conn)
        .await
        .expect("the ticket's row")
}

#[derive(Debug, PartialEq, diesel::QueryableByName)]
struct StoredTicket {
    #[diesel(sql_type = diesel::sql_types::Text)]
    subject: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    version: i64,
}

async fn assign(app: &TestApp, id: &str, agent: &TestUser) -> v1::Ticket {
    app.tickets
        .clone()
        .assign_ticket(app.as_admin(v1::AssignTicketRequest {
            id: id.to_owned(),
            assignee_id: agent.id.to_string(),
            etag: String::new(),
            group_id: None,
        }))
        .await
        .expect("assigned")
        .into_inner()
}

#[tokio::test]
async fn an_update_changes_only_the_masked_fields_and_records_old_and_new_values() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("Printer jammed").await;
    let updated = app
        .tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                subject: "Printer on fire".to_owned(),
                description: "not in the mask: ignored".to_owned(),
                etag: ticket.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["subject"]),
        }))
        .await
        .expect("updated")
        .into_inner();
    assert_eq!(updated.subject, "Printer on fire");
    assert_eq!(updated.description, ticket.description);
    assert_ne!(updated.etag, ticket.etag);

    let records = activity(&app, &ticket.id).await;
    assert_eq!(records[0].action, "updated");
    assert_eq!(
        records[0].changes,
        [v1::FieldChange {
            field: "subject".to_owned(),
            old_value: "Printer jammed".to_owned(),
            new_value: "Printer on fire".to_owned(),
        }]
    );
    assert_eq!(records[0].actor_user_id, app.admin.id.to_string());
    assert_eq!(records[1].action, "created");
}

#[tokio::test]
async fn a_created_ticket_has_one_audit_record_naming_every_value_it_was_created_with() {
    let app = TestApp::spawn().await;
    let ticket = app
        .ticket("Printer jammed")
        .priority(v1::TicketPriority::High)
        .assignee(app.admin.id)
        .create()
        .await;

    let records = activity(&app, &ticket.id).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].action, "created");
    assert_eq!(records[0].actor_user_id, app.admin.id.to_string());
    let mut changes: Vec<(String, String, String)> = records[0]
        .changes
        .iter()
        .map(|change| {
            (
                change.field.clone(),
                change.old_value.clone(),
                change.new_value.clone(),
            )
        })
        .collect();
    changes.sort();
    let created = |field: &str, value: &str| (field.to_owned(), String::new(), value.to_owned());
    assert_eq!(
        changes,
        [
            created("assignee_id", &app.admin.id.to_string()),
            created("priority", "high"),
            created("requester_id", &ticket.requester_id),
            created("status", "new"),
            created("subject", "Printer jammed"),
        ]
    );
}

#[tokio::test]
async fn a_star_mask_replaces_every_editable_field() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("old").await;
    let updated = app
        .tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                subject: "new subject".to_owned(),
                description: "new description".to_owned(),
                priority: v1::TicketPriority::Urgent.into(),
                ..Default::default()
            }),
            update_mask: mask(&["*"]),
        }))
        .await
        .expect("updated")
        .into_inner();
    assert_eq!(
        (
            updated.subject.as_str(),
            updated.description.as_str(),
            updated.priority()
        ),
        ("new subject", "new description", v1::TicketPriority::Urgent)
    );
}

#[tokio::test]
async fn unknown_and_immutable_mask_paths_are_named_and_status_cannot_be_updated() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("immutable").await;
    let before = stored(&app, &ticket.id).await;
    let status = app
        .tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                status: v1::TicketStatus::Closed.into(),
                ..Default::default()
            }),
            update_mask: mask(&["status", "colour", "requester_email"]),
        }))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "update_mask.paths[0]",
            "update_mask.paths[1]",
            "update_mask.paths[2]"
        ]
    );
    assert_eq!(stored(&app, &ticket.id).await, before, "nothing changed");
}

#[tokio::test]
async fn a_stale_etag_is_aborted_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("contested").await;
    let request = |subject: &str| v1::UpdateTicketRequest {
        ticket: Some(v1::Ticket {
            id: ticket.id.clone(),
            subject: subject.to_owned(),
            etag: ticket.etag.clone(),
            ..Default::default()
        }),
        update_mask: mask(&["subject"]),
    };
    app.tickets
        .clone()
        .update_ticket(app.as_admin(request("first writer")))
        .await
        .expect("the first writer wins");
    let status = app
        .tickets
        .clone()
        .update_ticket(app.as_admin(request("second writer")))
        .await
        .expect_err("the second read a stale etag");
    assert_eq!(status.code(), Code::Aborted);
    assert_reason(&status, Reason::EtagMismatch);
    let after = stored(&app, &ticket.id).await;
    assert_eq!(
        (after.subject.as_str(), after.version),
        ("first writer", 2),
        "the second writer wrote nothing"
    );
    assert_eq!(
        activity(&app, &ticket.id).await.len(),
        2,
        "created + one update"
    );
}

#[tokio::test]
async fn the_lifecycle_moves_only_along_its_allowed_transitions() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let ticket = app.create_ticket("lifecycle").await;
    let resolve = |etag: String| v1::ResolveTicketRequest {
        id: ticket.id.clone(),
        etag,
    };

    let status = app
        .tickets
        .clone()
        .resolve_ticket(app.as_admin(resolve(String::new())))
        .await
        .expect_err("nobody is assigned");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_reason(&status, Reason::TicketUnassigned);

    let assigned = assign(&app, &ticket.id, &agent).await;
    assert_eq!(
        assigned.status(),
        v1::TicketStatus::Open,
        "new → open on assignment"
    );
    let solved = app
        .tickets
        .clone()
        .resolve_ticket(agent.request(resolve(assigned.etag)))
        .await
        .expect("resolved")
        .into_inner();
    assert_eq!(solved.status(), v1::TicketStatus::Solved);
    let reopened = app
        .tickets
        .clone()
        .reopen_ticket(app.as_admin(v1::ReopenTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("reopened")
        .into_inner();
    assert_eq!(reopened.status(), v1::TicketStatus::Open);
    app.tickets
        .clone()
        .resolve_ticket(app.as_admin(resolve(String::new())))
        .await
        .expect("resolved again");
    let closed = app
        .tickets
        .clone()
        .close_ticket(app.as_admin(v1::CloseTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("closed")
        .into_inner();
    assert_eq!(closed.status(), v1::TicketStatus::Closed);

    let status = app
        .tickets
        .clone()
        .reopen_ticket(app.as_admin(v1::ReopenTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect_err("closed is final");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_reason(&status, Reason::IllegalTransition);
    let failure = details(&status);
    let violation = &failure
        .precondition_failure()
        .expect("PreconditionFailure")
        .violations[0];
    assert_eq!(violation.r#type, "TICKET_STATUS");
    assert_eq!(violation.subject, format!("tickets/{}", ticket.id));
    assert!(
        violation.description.contains("closed"),
        "{}",
        violation.description
    );

    let status = app
        .tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                subject: "too late".to_owned(),
                ..Default::default()
            }),
            update_mask: mask(&["subject"]),
        }))
        .await
        .expect_err("closed tickets do not change");
    assert_reason(&status, Reason::TicketClosed);

    let actions: Vec<String> = activity(&app, &ticket.id)
        .await
        .into_iter()
        .map(|record| record.action)
        .collect();
    assert_eq!(
        actions,
        [
            "closed", "resolved", "reopened", "resolved", "assigned", "created"
        ]
    );
}

#[tokio::test]
async fn a_requester_may_reopen_their_ticket_but_not_resolve_it() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let ticket = app
        .ticket("mine")
        .requester("")
        .by(&customer)
        .create()
        .await;
    assign(&app, &ticket.id, &agent).await;

    let status = app
        .tickets
        .clone()
        .resolve_ticket(customer.request(v1::ResolveTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect_err("customers do not resolve");
    assert_eq!(status.code(), Code::PermissionDenied);

    app.tickets
        .clone()
        .resolve_ticket(agent.request(v1::ResolveTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("resolved");
    let reopened = app
        .tickets
        .clone()
        .reopen_ticket(customer.request(v1::ReopenTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("the requester reopens")
        .into_inner();
    assert_eq!(reopened.status(), v1::TicketStatus::Open);
}

#[tokio::test]
async fn only_admins_delete_and_a_deleted_ticket_disappears_from_every_read() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let ticket = app.create_ticket("to delete").await;
    app.get_ticket(&ticket.id)
        .await
        .expect("cached before the delete");

    let status = app
        .tickets
        .clone()
        .delete_ticket(agent.request(v1::DeleteTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect_err("agents do not delete");
    assert_eq!(status.code(), Code::PermissionDenied);

    app.tickets
        .clone()
        .delete_ticket(app.as_admin(v1::DeleteTicketRequest {
            id: ticket.id.clone(),
            etag: ticket.etag.clone(),
        }))
        .await
        .expect("deleted");
    assert_eq!(
        app.get_ticket(&ticket.id).await.unwrap_err().code(),
        Code::NotFound
    );
    let listed = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.tickets.is_empty());
    let status = app
        .comment(&ticket.id, "hello?")
        .public()
        .try_add()
        .await
        .expect_err("gone");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn customers_see_public_replies_but_never_internal_notes() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let ticket = app
        .ticket("help")
        .requester("")
        .by(&customer)
        .create()
        .await;
    app.comment(&ticket.id, "We are on it.")
        .public()
        .try_add()
        .await
        .expect("public reply");
    app.comment(&ticket.id, "This customer again...")
        .try_add()
        .await
        .expect("internal note");
    app.comment(&ticket.id, "Thanks!")
        .public()
        .by(&customer)
        .try_add()
        .await
        .expect("the requester replies");
    let status = app
        .comment(&ticket.id, "sneaky")
        .by(&customer)
        .try_add()
        .await
        .expect_err("customers write no internal notes");
    assert_eq!(status.code(), Code::PermissionDenied);

    let list = |user: &TestUser| {
        let request = user.request(v1::ListCommentsRequest {
            ticket_id: ticket.id.clone(),
            page_size: 2,
            page_token: String::new(),
        });
        let tickets = app.tickets.clone();
        async move {
            let mut tickets = tickets;
            tickets.list_comments(request).await.unwrap().into_inner()
        }
    };
    let seen_by_customer = list(&customer).await;
    let bodies: Vec<&str> = seen_by_customer
        .comments
        .iter()
        .map(|comment| comment.body.as_str())
        .collect();
    assert_eq!(bodies, ["We are on it.", "Thanks!"]);
    let first_page = list(&app.admin).await;
    assert_eq!(first_page.comments.len(), 2);
    assert!(
        !first_page.next_page_token.is_empty(),
        "three comments, pages of two"
    );
    assert!(
        !first_page.comments[1].public,
        "oldest first, the note second"
    );
}

#[tokio::test]
async fn a_failure_midway_leaves_neither_the_change_nor_its_record() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("atomic").await;
    let before = stored(&app, &ticket.id).await;
    let mut conn = app.database.connect().await;
    for statement in [
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'the audit trail is broken'; END $$",
        "CREATE TRIGGER refuse_activity BEFORE INSERT ON ticket_activities \
         FOR EACH ROW EXECUTE FUNCTION refuse()",
    ] {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let status = app
        .tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                subject: "never written".to_owned(),
                ..Default::default()
            }),
            update_mask: mask(&["subject"]),
        }))
        .await
        .expect_err("the audit record cannot be written");
    assert_eq!(status.code(), Code::Internal);
    assert_reason(&status, Reason::Internal);
    assert!(
        !status.message().contains("audit trail is broken"),
        "no internals leak"
    );
    diesel::sql_query("DROP TRIGGER refuse_activity ON ticket_activities")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        stored(&app, &ticket.id).await,
        before,
        "nothing was written"
    );
    assert_eq!(activity(&app, &ticket.id).await.len(), 1);
}

#[tokio::test]
async fn twenty_simultaneous_creates_by_one_requester_leave_exactly_ten_open() {
    let app = TestApp::spawn_with(|settings| settings.tickets.max_open_per_requester = 10).await;
    let attempts: Vec<_> = (0..20)
        .map(|number| {
            let tickets = app.tickets.clone();
            let request = app.as_admin(valid_create_request(&format!("rush {number}")));
            tokio::spawn(async move { tickets.clone().create_ticket(request).await })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition);
                assert_reason(&status, Reason::OpenTicketLimit);
                assert!(details(&status).precondition_failure().is_some());
            }
        }
    }
    assert_eq!(created, 10);
    let listed = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tickets.len(), 10);
}

#[tokio::test]
async fn solving_a_ticket_makes_room_and_reopening_counts_against_the_limit() {
    let app = TestApp::spawn_with(|settings| settings.tickets.max_open_per_requester = 2).await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let first = app.create_ticket("one").await;
    app.create_ticket("two").await;
    assign(&app, &first.id, &agent).await;
    app.tickets
        .clone()
        .resolve_ticket(app.as_admin(v1::ResolveTicketRequest {
            id: first.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("resolved");
    app.create_ticket("three fits now").await;

    let status = app
        .tickets
        .clone()
        .reopen_ticket(app.as_admin(v1::ReopenTicketRequest {
            id: first.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect_err("reopening would make three open");
    assert_reason(&status, Reason::OpenTicketLimit);
}
