//! The statuses that wait: PENDING (on the requester) and ON_HOLD (on a third party), set by
//! MarkTicketPending and HoldTicket, ended by the requester's reply or ReopenTicket, and counted
//! as unresolved wherever "open" is counted.

use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::RunQueryDsl;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::{TestApp, TestUser, assert_reason, count_of};

/// The ticket's status as PostgreSQL holds it (not the cache in front of it).
async fn stored_status(app: &TestApp, id: &str) -> String {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
    }
    let mut conn = app.database.connect().await;
    diesel::sql_query("SELECT status FROM tickets WHERE id = $1")
        .bind::<SqlUuid, _>(uuid::Uuid::parse_str(id).expect("a ticket id"))
        .get_result::<Row>(&mut conn)
        .await
        .expect("the ticket's row")
        .status
}

async fn mark_pending(app: &TestApp, by: &TestUser, id: &str) -> Result<v1::Ticket, tonic::Status> {
    app.tickets
        .clone()
        .mark_ticket_pending(by.request(v1::MarkTicketPendingRequest {
            id: id.to_owned(),
            etag: String::new(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn hold(app: &TestApp, by: &TestUser, id: &str) -> Result<v1::Ticket, tonic::Status> {
    app.tickets
        .clone()
        .hold_ticket(by.request(v1::HoldTicketRequest {
            id: id.to_owned(),
            etag: String::new(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn reopen(app: &TestApp, by: &TestUser, id: &str) -> Result<v1::Ticket, tonic::Status> {
    app.tickets
        .clone()
        .reopen_ticket(by.request(v1::ReopenTicketRequest {
            id: id.to_owned(),
            etag: String::new(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

/// The newest audit record of the ticket: its action and its status change, if any.
async fn last_record(app: &TestApp, id: &str) -> (String, Option<(String, String)>) {
    let record = app
        .tickets
        .clone()
        .list_ticket_activity(app.as_admin(v1::ListTicketActivityRequest {
            ticket_id: id.to_owned(),
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .expect("activity")
        .into_inner()
        .activities
        .remove(0);
    let status = record
        .changes
        .iter()
        .find(|change| change.field == "status")
        .map(|change| (change.old_value.clone(), change.new_value.clone()));
    (record.action, status)
}

fn change(old: &str, new: &str) -> Option<(String, String)> {
    Some((old.to_owned(), new.to_owned()))
}

#[tokio::test]
async fn a_ticket_waits_on_the_requester_or_a_third_party_until_the_requester_replies() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let ticket = app
        .ticket("waits")
        .requester("")
        .by(&customer)
        .create()
        .await;

    let pending = mark_pending(&app, &agent, &ticket.id)
        .await
        .expect("pending");
    assert_eq!(pending.status(), v1::TicketStatus::Pending);
    assert_eq!(stored_status(&app, &ticket.id).await, "pending");
    assert_eq!(
        last_record(&app, &ticket.id).await,
        ("marked_pending".to_owned(), change("new", "pending"))
    );

    // The desk's own words do not end the wait: only the requester's reply does.
    app.comment(&ticket.id, "Any news?")
        .try_add()
        .await
        .unwrap();
    app.comment(&ticket.id, "We wait for you.")
        .public()
        .by(&agent)
        .try_add()
        .await
        .unwrap();
    assert_eq!(stored_status(&app, &ticket.id).await, "pending");

    app.comment(&ticket.id, "Here is the log.")
        .public()
        .by(&customer)
        .try_add()
        .await
        .expect("the requester replies");
    assert_eq!(stored_status(&app, &ticket.id).await, "open");
    assert_eq!(
        last_record(&app, &ticket.id).await,
        ("commented".to_owned(), change("pending", "open"))
    );

    let held = hold(&app, &agent, &ticket.id).await.expect("on hold");
    assert_eq!(held.status(), v1::TicketStatus::OnHold);
    assert_eq!(
        last_record(&app, &ticket.id).await,
        ("put_on_hold".to_owned(), change("open", "on_hold"))
    );
    app.comment(&ticket.id, "Still broken.")
        .public()
        .by(&customer)
        .try_add()
        .await
        .expect("the requester replies");
    assert_eq!(stored_status(&app, &ticket.id).await, "open");
    let seen = app
        .tickets
        .clone()
        .get_ticket(customer.request(v1::GetTicketRequest {
            id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("read back")
        .into_inner();
    assert_eq!(
        seen.status(),
        v1::TicketStatus::Open,
        "the answer follows the row"
    );
}

#[tokio::test]
async fn the_waits_move_only_along_their_transitions_and_only_agents_set_them() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let ticket = app
        .ticket("moves")
        .requester("")
        .by(&customer)
        .create()
        .await;
    app.tickets
        .clone()
        .assign_ticket(app.as_admin(v1::AssignTicketRequest {
            id: ticket.id.clone(),
            assignee_id: agent.id.to_string(),
            etag: String::new(),
            group_id: None,
        }))
        .await
        .expect("assigned");

    let refused = hold(&app, &customer, &ticket.id)
        .await
        .expect_err("customers do not hold tickets");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_reason(&refused, Reason::RoleRequired);

    hold(&app, &agent, &ticket.id).await.expect("on hold");
    let refused = hold(&app, &agent, &ticket.id)
        .await
        .expect_err("already on hold");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_reason(&refused, Reason::IllegalTransition);
    let pending = mark_pending(&app, &agent, &ticket.id)
        .await
        .expect("from on hold to pending");
    assert_eq!(pending.status(), v1::TicketStatus::Pending);
    let reopened = reopen(&app, &customer, &ticket.id)
        .await
        .expect("the requester ends the wait without a reply");
    assert_eq!(reopened.status(), v1::TicketStatus::Open);

    hold(&app, &agent, &ticket.id).await.expect("on hold again");
    let solved = app
        .tickets
        .clone()
        .resolve_ticket(agent.request(v1::ResolveTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("a ticket on hold is solved")
        .into_inner();
    assert_eq!(solved.status(), v1::TicketStatus::Solved);
    let refused = mark_pending(&app, &agent, &ticket.id)
        .await
        .expect_err("a solved ticket waits on nobody");
    assert_reason(&refused, Reason::IllegalTransition);
    assert_eq!(stored_status(&app, &ticket.id).await, "solved");
}

#[tokio::test]
async fn a_ticket_on_hold_is_open_for_the_limit_the_dashboard_and_the_filters() {
    let app = TestApp::spawn_with(|settings| settings.tickets.max_open_per_requester = 2).await;
    let first = app.create_ticket("one").await;
    app.create_ticket("two").await;
    hold(&app, &app.admin, &first.id).await.expect("on hold");

    let refused = app
        .ticket("three")
        .try_create()
        .await
        .expect_err("two open tickets, one of them on hold");
    assert_reason(&refused, Reason::OpenTicketLimit);
    assert_eq!(
        count_of(
            &app.database,
            "SELECT tickets AS count FROM requester_open_tickets"
        )
        .await,
        2
    );
    assert_eq!(
        count_of(
            &app.database,
            "SELECT tickets AS count FROM ticket_counts_open WHERE status = 'on_hold'"
        )
        .await,
        1
    );
    let stats = app
        .dashboard
        .clone()
        .get_ticket_stats(app.as_admin(v1::GetTicketStatsRequest::default()))
        .await
        .expect("stats")
        .into_inner();
    let on_hold: Vec<i64> = stats
        .open
        .iter()
        .filter(|count| count.status() == v1::TicketStatus::OnHold)
        .map(|count| count.tickets)
        .collect();
    assert_eq!(on_hold, [1]);

    // At the limit, ending a wait is allowed: the ticket was counted as open all along.
    let reopened = reopen(&app, &app.admin, &first.id)
        .await
        .expect("not counted twice");
    assert_eq!(reopened.status(), v1::TicketStatus::Open);
    hold(&app, &app.admin, &first.id).await.expect("on hold");

    let by_filter = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            filter: "status = on_hold".to_owned(),
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner();
    let by_status = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            statuses: vec![v1::TicketStatus::OnHold.into()],
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner();
    for listed in [by_filter, by_status] {
        let ids: Vec<&str> = listed.tickets.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, [first.id.as_str()]);
    }
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM events WHERE type = 'ticket.status_changed' \
             AND snapshot->>'status' = 'on_hold'"
        )
        .await,
        2,
        "each hold announced its status"
    );
}
