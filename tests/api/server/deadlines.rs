//! Deadlines reach the database: work a client gave up on is cancelled by PostgreSQL itself, and
//! requests without a deadline get the server's default.

use std::time::{Duration, Instant};
use supportdesk::errors::Reason;

use diesel_async::RunQueryDsl;
use tonic::Code;

use crate::support::{
    PATIENCE, TestApp, TestDatabase, assert_reason, backends_waiting_on_locks, busy_backends,
    count_of, lock_account, valid_create_request, wait_until,
};

async fn ticket_count(database: &TestDatabase) -> i64 {
    count_of(database, "SELECT count(*) AS count FROM tickets").await
}

#[tokio::test]
async fn a_client_deadline_cancels_the_database_work_it_started() {
    let app = TestApp::spawn().await;
    let mut lock = lock_account(&app).await;

    let mut request = app.as_admin(valid_create_request("too slow"));
    request.set_timeout(Duration::from_millis(400));
    let status = app
        .tickets
        .clone()
        .create_ticket(request)
        .await
        .expect_err("the deadline passes while the row is locked");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );

    // PostgreSQL cancels the blocked statement at the deadline, not when the lock goes away.
    wait_until("the waiting statement's cancellation", PATIENCE, || async {
        backends_waiting_on_locks(&app.database).await == 0
    })
    .await;
    diesel::sql_query("ROLLBACK")
        .execute(&mut lock)
        .await
        .unwrap();
    wait_until("every connection going idle", PATIENCE, || async {
        busy_backends(&app.database).await == 0
    })
    .await;
    assert_eq!(ticket_count(&app.database).await, 0, "nothing was written");
}

#[tokio::test]
async fn a_request_without_a_deadline_gets_the_servers_default() {
    let app = TestApp::spawn_with(|settings| {
        settings.server.request_timeout = Duration::from_millis(600);
    })
    .await;
    let _lock = lock_account(&app).await;

    let started = Instant::now();
    let status = app
        .tickets
        .clone()
        .create_ticket(app.as_admin(valid_create_request("no deadline given")))
        .await
        .expect_err("the server's deadline passes");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_reason(&status, Reason::DeadlineExceeded);
    // The lock is held until the test ends: only the 600 ms deadline answers, within seconds
    // even on a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn a_generous_client_deadline_is_capped_by_the_servers_maximum() {
    let app = TestApp::spawn_with(|settings| {
        settings.server.request_timeout = Duration::from_millis(600);
    })
    .await;
    let _lock = lock_account(&app).await;

    let mut request = app.as_admin(valid_create_request("asks for an hour"));
    request.set_timeout(Duration::from_secs(3600));
    let started = Instant::now();
    let status = app
        .tickets
        .clone()
        .create_ticket(request)
        .await
        .expect_err("capped");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    // An hour was asked for; the 600 ms maximum answered.
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_with_the_limit_named() {
    let app = TestApp::spawn_with(|settings| {
        settings.server.max_request_bytes = 16 * 1024;
    })
    .await;
    let mut request = valid_create_request("big");
    request.ticket.as_mut().unwrap().description = "x".repeat(32 * 1024);
    let status = app
        .tickets
        .clone()
        .create_ticket(app.as_admin(request))
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_reason(&status, Reason::RequestTooLarge);
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(details.error_info().unwrap().metadata["limit"], "16384");

    // GetTicket reads its body ahead of the handler (the cache prefetch): the same answer.
    let status = app
        .tickets
        .clone()
        .get_ticket(
            app.as_admin(supportdesk::wire::proto::v1::GetTicketRequest {
                id: "x".repeat(32 * 1024),
                ..Default::default()
            }),
        )
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_reason(&status, Reason::RequestTooLarge);
}

#[tokio::test]
async fn a_request_that_finds_every_connection_busy_is_told_so_not_that_the_database_is_down() {
    let app = TestApp::spawn_with(|settings| {
        settings.database.pool_size = 1;
        settings.database.connect_timeout = Duration::from_millis(300);
    })
    .await;
    let ticket = app.create_ticket("listed while the pool is busy").await;
    let mut lock = lock_account(&app).await;
    // The pool's one connection waits on the lock inside this create.
    let blocked = tokio::spawn({
        let mut tickets = app.tickets.clone();
        let request = app.as_admin(valid_create_request("holds the only connection"));
        async move { tickets.create_ticket(request).await }
    });
    wait_until("the create waiting on the row lock", PATIENCE, || async {
        backends_waiting_on_locks(&app.database).await == 1
    })
    .await;

    let status = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(supportdesk::wire::proto::v1::ListTicketsRequest::default()))
        .await
        .expect_err("no connection comes free within the connect timeout");
    assert_eq!(status.code(), Code::Unavailable);
    assert_reason(&status, Reason::DatabaseBusy);
    assert_eq!(
        status.message(),
        "every database connection is busy; retry shortly"
    );

    diesel::sql_query("ROLLBACK")
        .execute(&mut lock)
        .await
        .unwrap();
    blocked
        .await
        .unwrap()
        .expect("the create finishes once the lock goes");
    let listed = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(supportdesk::wire::proto::v1::ListTicketsRequest::default()))
        .await
        .expect("listed once a connection is free")
        .into_inner();
    assert!(listed.tickets.iter().any(|listed| listed.id == ticket.id));
}
