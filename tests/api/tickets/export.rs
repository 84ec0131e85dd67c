//! ExportTickets: one consistent snapshot streamed in keyset batches, whatever is written
//! meanwhile; a customer's export holds their own tickets only; over REST through real Envoy as
//! newline-delimited JSON, whole however long a slow client takes (Envoy's route deadline is not
//! an export's), ended by the service's own limit with its status in the trailers; read masks on
//! GetTicket, ListTickets and the export.

use std::collections::HashSet;
use std::time::Duration;

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use supportdesk::errors::Reason;
use supportdesk::service::EXPORT_BATCH;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use tonic::Code;
use tonic::transport::Endpoint;

use crate::support::envoy::Envoy;
use crate::support::{
    PATIENCE, Scrape, TestApp, assert_json_reason, assert_reason, count_of, lock_account,
    violated_fields, wait_until, with_metrics, with_token,
};

/// Inserts `count` tickets raised by the app's admin straight into PostgreSQL (the export is
/// about reading many; creating them one RPC at a time would only slow the test), returning
/// their ids.
async fn insert_tickets(app: &TestApp, count: i64, subject: &str) -> HashSet<String> {
    insert_tickets_for(app, &app.admin, count, subject).await
}

/// [`insert_tickets`] into `user`'s account, raised by `user`.
async fn insert_tickets_for(
    app: &TestApp,
    user: &crate::support::TestUser,
    count: i64,
    subject: &str,
) -> HashSet<String> {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let mut conn = app.database.connect().await;
    let ids: Vec<Id> = diesel::sql_query(
        "INSERT INTO tickets (id, account_id, subject, description, priority, status, \
         requester_id) SELECT gen_random_uuid(), $1, $2 || ' ' || n, 'Exported in bulk', \
         'normal', 'new', $3 FROM generate_series(1, $4) n RETURNING id::text AS id",
    )
    .bind::<SqlUuid, _>(user.account_id.as_uuid())
    .bind::<Text, _>(subject)
    .bind::<SqlUuid, _>(user.id.as_uuid())
    .bind::<diesel::sql_types::BigInt, _>(count)
    .load(&mut conn)
    .await
    .expect("tickets inserted");
    ids.into_iter().map(|row| row.id).collect()
}

async fn export_all(
    app: &TestApp,
    caller: &crate::support::TestUser,
    request: v1::ExportTicketsRequest,
) -> Vec<v1::Ticket> {
    let mut stream = app
        .tickets
        .clone()
        .export_tickets(caller.request(request))
        .await
        .expect("the export starts")
        .into_inner();
    let mut tickets = Vec::new();
    while let Some(ticket) = stream.message().await.expect("the export streams") {
        tickets.push(ticket);
    }
    tickets
}

#[tokio::test]
async fn an_export_holds_exactly_the_tickets_committed_before_it_began_while_tickets_are_written() {
    let app = TestApp::spawn().await;
    // More than two batches, so that the keyset crosses batch boundaries.
    let before = insert_tickets(&app, 2 * EXPORT_BATCH + 37, "before").await;
    let changed = before.iter().next().expect("a ticket").clone();

    let mut stream = app
        .tickets
        .clone()
        .export_tickets(app.as_admin(v1::ExportTicketsRequest {
            order_by: "create_time asc".to_owned(),
            ..Default::default()
        }))
        .await
        .expect("the export starts")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("the first ticket")
        .expect("a ticket");

    // Written while the export runs: new tickets, and a change to an exported one.
    let mut written_meanwhile = HashSet::new();
    for n in 0..5 {
        written_meanwhile.insert(app.create_ticket(&format!("during {n}")).await.id);
    }
    written_meanwhile.extend(insert_tickets(&app, 600, "during bulk").await);
    app.tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: changed.clone(),
                subject: "changed during the export".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["subject".to_owned()],
            }),
        }))
        .await
        .expect("the change commits beside the export");

    let mut exported = vec![first];
    while let Some(ticket) = stream.message().await.expect("the export streams") {
        exported.push(ticket);
    }
    let ids: Vec<&str> = exported.iter().map(|ticket| ticket.id.as_str()).collect();
    let unique: HashSet<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    assert_eq!(ids.len(), unique.len(), "a ticket was exported twice");
    assert_eq!(unique, before, "the export is the snapshot, exactly");
    assert!(unique.is_disjoint(&written_meanwhile));
    let as_exported = exported
        .iter()
        .find(|ticket| ticket.id == changed)
        .expect("the changed ticket");
    assert!(
        as_exported.subject.starts_with("before "),
        "the export shows the ticket as of its snapshot, not {:?}",
        as_exported.subject
    );
    let times: Vec<_> = exported
        .iter()
        .map(|ticket| {
            let at = ticket.create_time.expect("a create time");
            (at.seconds, at.nanos, ticket.id.clone())
        })
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "oldest first, as asked");
}

/// How many of the service's connections to the test database are inside a transaction (an
/// export's snapshot, open or running its next batch).
async fn backends_in_a_transaction(app: &TestApp) -> i64 {
    count_of(
        &app.database,
        "SELECT count(*) AS count FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND xact_start IS NOT NULL",
    )
    .await
}

const POOL_IN_USE: &str = r#"supportdesk_db_pool_connections{state="in_use"}"#;

/// The ids of the account's first `count` tickets in the order `create_time asc` exports them
/// (tickets inserted by one statement share their creation time: then by id).
async fn first_in_export_order(app: &TestApp, count: usize) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let in_order: Vec<Id> = diesel::sql_query(
        "SELECT id::text AS id FROM tickets WHERE account_id = $1 AND deleted_at IS NULL \
         ORDER BY created_at, id LIMIT $2",
    )
    .bind::<SqlUuid, _>(app.account_id.as_uuid())
    .bind::<diesel::sql_types::BigInt, _>(i64::try_from(count).unwrap())
    .load(&mut app.database.connect().await)
    .await
    .expect("the export's order");
    in_order.into_iter().map(|row| row.id).collect()
}

#[tokio::test]
async fn a_slow_reader_of_an_export_that_outlives_its_limit_gets_deadline_exceeded_after_the_tickets_it_had_and_no_connection_stays_held()
 {
    let limit = Duration::from_secs(3);
    let app = TestApp::spawn_with(|settings| {
        with_metrics(settings);
        settings.tickets.export_max_duration = limit;
    })
    .await;
    let total = 20 * EXPORT_BATCH;
    insert_tickets(&app, total, "slow").await;
    // A reader whose HTTP/2 windows hold 16 KiB: once they and the service's send buffer are
    // full, the service can hand it nothing more, and its reading task waits on the channel.
    let started = tokio::time::Instant::now();
    let (mut stream, first) = export_to_a_slow_reader(&app, &app.address.to_string()).await;
    let held = backends_in_a_transaction(&app).await;
    assert!(
        started.elapsed() < limit,
        "the machine took the whole limit to start the export"
    );
    assert!(
        held >= 1,
        "the export holds its snapshot while the reader dawdles"
    );

    // The reader reads nothing more until the service has ended the snapshot and given its
    // connection back.
    wait_until("the export's snapshot ended", PATIENCE, || async {
        backends_in_a_transaction(&app).await == 0 && Scrape::of(&app).await.get(POOL_IN_USE) == 0
    })
    .await;
    assert!(started.elapsed() >= limit, "cut before its limit");
    read_the_rest_until_the_limit(&app, &mut stream, first, total).await;
}

#[tokio::test]
async fn through_envoy_a_grpc_reader_that_stops_reading_holds_the_service_back_until_the_limit_ends_the_export()
 {
    let limit = Duration::from_secs(3);
    let app = TestApp::spawn_with(|settings| {
        with_metrics(settings);
        settings.tickets.export_max_duration = limit;
    })
    .await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    // About 4 MB of protobuf: sent in milliseconds into anything that takes it. Had Envoy taken
    // the whole export into its own memory, the service would have finished within the limit,
    // and the reader would get every ticket and OK.
    let total = 20 * EXPORT_BATCH;
    insert_tickets(&app, total, "through envoy").await;
    let (mut stream, first) =
        export_to_a_slow_reader(&app, &format!("127.0.0.1:{}", envoy.port)).await;

    // The reader reads nothing more until the service has ended the snapshot at its limit and
    // given its connection back.
    wait_until("the export's snapshot ended", PATIENCE, || async {
        backends_in_a_transaction(&app).await == 0 && Scrape::of(&app).await.get(POOL_IN_USE) == 0
    })
    .await;

    read_the_rest_until_the_limit(&app, &mut stream, first, total).await;
}

#[tokio::test]
async fn a_read_that_fails_while_a_slow_reader_lags_reaches_the_reader_as_unavailable_after_the_tickets_before_it()
 {
    let app = TestApp::spawn().await;
    let total = 20 * EXPORT_BATCH;
    insert_tickets(&app, total, "cut off").await;
    let (mut stream, first) = export_to_a_slow_reader(&app, &app.address.to_string()).await;
    // The reading task waits for room in the channel, its snapshot open: its connection is cut
    // there, so its next read fails while the channel still holds the batch before it.
    let idle_in_snapshot = "SELECT count(*) AS count FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND state = 'idle in transaction'";
    wait_until("the export waits for its reader", PATIENCE, || async {
        count_of(&app.database, idle_in_snapshot).await == 1
    })
    .await;
    assert_eq!(
        count_of(
            &app.database,
            &idle_in_snapshot.replace("count(*)", "count(pg_terminate_backend(pid))")
        )
        .await,
        1
    );

    let mut received = vec![first];
    let status = loop {
        match stream.message().await {
            Ok(Some(ticket)) => received.push(ticket),
            Ok(None) => panic!("the export ended as if complete after {}", received.len()),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_reason(&status, Reason::DatabaseUnavailable);
    let cut_at = received.len();
    assert!(cut_at < usize::try_from(total).unwrap());
    assert_eq!(
        cut_at % usize::try_from(EXPORT_BATCH).unwrap(),
        0,
        "whole batches arrive before the error"
    );
    let received: Vec<&str> = received.iter().map(|ticket| ticket.id.as_str()).collect();
    assert_eq!(received, first_in_export_order(&app, cut_at).await);
}

/// Reads an export its service ended before its end until its error: the tickets that arrived
/// (exactly the first ones of the export's order, none skipped or repeated) and the status.
async fn read_until_the_error(
    app: &TestApp,
    stream: &mut tonic::Streaming<v1::Ticket>,
    first: v1::Ticket,
    total: i64,
) -> (Vec<v1::Ticket>, tonic::Status) {
    let mut received = vec![first];
    let status = loop {
        match stream.message().await {
            Ok(Some(ticket)) => received.push(ticket),
            Ok(None) => panic!(
                "the export ended as if complete after {} of {total} tickets",
                received.len()
            ),
            Err(status) => break status,
        }
    };
    assert!(received.len() < usize::try_from(total).unwrap());
    let ids: Vec<&str> = received.iter().map(|ticket| ticket.id.as_str()).collect();
    assert_eq!(ids, first_in_export_order(app, received.len()).await);
    (received, status)
}

#[tokio::test]
async fn a_logged_out_sessions_export_ends_unauthenticated_and_gives_its_snapshot_back() {
    let app = TestApp::spawn_with(with_metrics).await;
    let total = 20 * EXPORT_BATCH;
    insert_tickets(&app, total, "logged out").await;
    let (mut stream, first) = export_to_a_slow_reader(&app, &app.address.to_string()).await;
    app.auth
        .clone()
        .logout(app.as_admin(v1::LogoutRequest {}))
        .await
        .expect("the admin logs out");

    // The reader reads nothing more: the service itself notices the ended session, ends the
    // snapshot and gives its connection back (without the check, it held it until the limit,
    // ten minutes).
    wait_until(
        "the logged-out export's snapshot ended",
        PATIENCE,
        || async {
            backends_in_a_transaction(&app).await == 0
                && Scrape::of(&app).await.get(POOL_IN_USE) == 0
        },
    )
    .await;
    let (_, status) = read_until_the_error(&app, &mut stream, first, total).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_reason(&status, Reason::SessionRevoked);
}

#[tokio::test]
async fn a_draining_instance_ends_a_running_export_unavailable_with_where_a_new_export_resumes() {
    let mut app = TestApp::spawn_with(|settings| {
        with_metrics(settings);
        // Longer than the test waits: only the export's own end can let the drain finish.
        settings.server.shutdown_drain_timeout = Duration::from_secs(120);
    })
    .await;
    let total = 20 * EXPORT_BATCH;
    insert_tickets(&app, total, "drained").await;
    let (mut stream, first) = export_to_a_slow_reader(&app, &app.address.to_string()).await;
    let stopping = app.begin_stopping();

    // The reader reads nothing more: the drain itself ends the snapshot (without it, the export
    // held its connection until its limit, ten minutes, and the drain waited for it).
    wait_until("the drained export's snapshot ended", PATIENCE, || async {
        backends_in_a_transaction(&app).await == 0
    })
    .await;
    let (received, status) = read_until_the_error(&app, &mut stream, first, total).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_reason(&status, Reason::InstanceDraining);
    let info = crate::support::details(&status)
        .error_info()
        .cloned()
        .expect("ErrorInfo");
    assert_eq!(
        info.metadata.get("exported"),
        Some(&received.len().to_string()),
        "{info:?}"
    );
    // Oldest first: a new export from `createdAfter` (inclusive) starts at the last ticket
    // received, so every ticket not received is in it.
    let last = received.last().unwrap().create_time.expect("a create time");
    let resume_at = info
        .metadata
        .get("createdAfter")
        .unwrap_or_else(|| panic!("a resume point: {info:?}"));
    let resume_at: chrono::DateTime<chrono::Utc> = resume_at.parse().expect("RFC 3339");
    assert_eq!(
        (resume_at.timestamp(), resume_at.timestamp_subsec_nanos()),
        (last.seconds, u32::try_from(last.nanos).unwrap())
    );
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM tickets WHERE account_id = '{}' \
                 AND deleted_at IS NULL AND created_at < '{}'::timestamptz",
                app.account_id,
                resume_at.to_rfc3339()
            ),
        )
        .await,
        0,
        "nothing before the resume point was left unsent"
    );
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("the drain finished once the export ended")
        .expect("run_until_stopped did not panic")
        .expect("the service stopped cleanly");
}

#[tokio::test]
async fn an_accounts_export_beyond_its_limit_is_refused_resource_exhausted_and_so_is_one_beyond_the_instances()
 {
    let app = TestApp::spawn_with(|settings| {
        settings.tickets.export_max_per_account = 2;
        settings.tickets.export_max_per_instance = 3;
    })
    .await;
    insert_tickets(&app, 4 * EXPORT_BATCH, "limited").await;
    let address = app.address.to_string();
    let first_export = export_to_a_slow_reader(&app, &address).await;
    let _second = export_to_a_slow_reader(&app, &address).await;
    let export = |token: String| {
        let mut tickets = app.tickets.clone();
        async move {
            tickets
                .export_tickets(with_token(&token, v1::ExportTicketsRequest::default()))
                .await
                .map(|_| ())
        }
    };

    let refused = export(app.admin.access_token.clone())
        .await
        .expect_err("a third export of the account is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_reason(&refused, Reason::StreamLimit);
    let quota = crate::support::details(&refused)
        .quota_failure()
        .cloned()
        .expect("QuotaFailure");
    assert_eq!(
        quota.violations[0].subject,
        format!("accounts/{}", app.account_id)
    );

    // Another account still has its place, until the instance's last one is taken.
    // Enough of its own tickets that its export, read slowly, is still running.
    let other = app.sign_up_another_account().await;
    insert_tickets_for(&app, &other, 4 * EXPORT_BATCH, "theirs").await;
    let (_third, _) = export_to_a_slow_reader_as(&other.access_token, &address).await;
    let refused = export(other.access_token.clone())
        .await
        .expect_err("a fourth export on the instance is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_reason(&refused, Reason::StreamLimit);
    assert_eq!(
        crate::support::details(&refused)
            .quota_failure()
            .expect("QuotaFailure")
            .violations[0]
            .subject,
        "instance"
    );

    // A place is given back when its export ends.
    drop(first_export);
    wait_until("the ended export's place is free again", PATIENCE, || {
        let again = export(app.admin.access_token.clone());
        async move { again.await.is_ok() }
    })
    .await;
}

/// ExportTickets, oldest first, to a reader at `address` (the service, or an Envoy in front of
/// it) whose HTTP/2 windows hold 16 KiB; its first ticket read, nothing more yet.
async fn export_to_a_slow_reader(
    app: &TestApp,
    address: &str,
) -> (tonic::Streaming<v1::Ticket>, v1::Ticket) {
    export_to_a_slow_reader_as(&app.admin.access_token, address).await
}

/// [`export_to_a_slow_reader`] as the holder of `token` (an access token or an API key).
async fn export_to_a_slow_reader_as(
    token: &str,
    address: &str,
) -> (tonic::Streaming<v1::Ticket>, v1::Ticket) {
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .expect("a valid uri")
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await
        .expect("connect");
    let mut stream = TicketServiceClient::new(channel)
        .export_tickets(with_token(
            token,
            v1::ExportTicketsRequest {
                order_by: "create_time asc".to_owned(),
                ..Default::default()
            },
        ))
        .await
        .expect("the export starts")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("the first ticket")
        .expect("a ticket");
    (stream, first)
}

/// Reads what is left of an export its limit ended: DEADLINE_EXCEEDED after fewer than all
/// `total` tickets, and what arrived is the export's order from the start, none skipped or
/// repeated (a client resumes after the last one, createdAfter, and loses nothing).
async fn read_the_rest_until_the_limit(
    app: &TestApp,
    stream: &mut tonic::Streaming<v1::Ticket>,
    first: v1::Ticket,
    total: i64,
) {
    let mut received = vec![first];
    let status = loop {
        match stream.message().await {
            Ok(Some(ticket)) => received.push(ticket),
            Ok(None) => panic!(
                "the export ended as if complete after {} of {total} tickets: nothing held the \
                 service back",
                received.len()
            ),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_reason(&status, Reason::DeadlineExceeded);
    let cut_at = received.len();
    assert!(
        cut_at < usize::try_from(total).unwrap(),
        "every ticket arrived: the reader was not held long enough to outlive the limit"
    );
    let received: Vec<&str> = received.iter().map(|ticket| ticket.id.as_str()).collect();
    assert_eq!(received, first_in_export_order(app, cut_at).await);
}

#[tokio::test]
async fn a_customers_export_holds_only_their_own_tickets_and_filters_apply() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let mut own = HashSet::new();
    for n in 0..3 {
        let ticket = app
            .tickets
            .clone()
            .create_ticket(customer.request(v1::CreateTicketRequest {
                ticket: Some(v1::Ticket {
                    subject: format!("mine {n}"),
                    description: "The customer's own".to_owned(),
                    ..Default::default()
                }),
            }))
            .await
            .expect("the customer raises a ticket")
            .into_inner();
        own.insert(ticket.id);
    }
    insert_tickets(&app, 20, "someone else's").await;

    let exported: HashSet<String> =
        export_all(&app, &customer, v1::ExportTicketsRequest::default())
            .await
            .into_iter()
            .map(|ticket| ticket.id)
            .collect();
    assert_eq!(exported, own);

    let urgent_only = export_all(
        &app,
        &app.admin,
        v1::ExportTicketsRequest {
            priorities: vec![v1::TicketPriority::Urgent.into()],
            ..Default::default()
        },
    )
    .await;
    assert!(urgent_only.is_empty(), "no ticket is urgent");
    assert_eq!(
        export_all(&app, &app.admin, v1::ExportTicketsRequest::default())
            .await
            .len(),
        23
    );
}

#[tokio::test]
async fn a_read_mask_returns_only_the_named_fields_and_an_unknown_one_is_refused_by_name() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("masked").await;
    let mask = |paths: &[&str]| {
        Some(prost_types::FieldMask {
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
        })
    };

    // Twice: the second read comes from the cache, and is masked all the same.
    for _ in 0..2 {
        let got = app
            .tickets
            .clone()
            .get_ticket(app.as_admin(v1::GetTicketRequest {
                id: ticket.id.clone(),
                read_mask: mask(&["id", "subject", "createTime"]),
            }))
            .await
            .expect("a masked ticket")
            .into_inner();
        assert_eq!(
            got,
            v1::Ticket {
                id: ticket.id.clone(),
                subject: "masked".to_owned(),
                create_time: ticket.create_time,
                ..Default::default()
            }
        );
    }
    let listed = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            read_mask: mask(&["status"]),
            ..Default::default()
        }))
        .await
        .expect("a masked page")
        .into_inner();
    assert_eq!(
        listed.tickets,
        vec![v1::Ticket {
            status: v1::TicketStatus::New.into(),
            ..Default::default()
        }]
    );
    let exported = export_all(
        &app,
        &app.admin,
        v1::ExportTicketsRequest {
            read_mask: mask(&["id"]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        exported,
        vec![v1::Ticket {
            id: ticket.id.clone(),
            ..Default::default()
        }]
    );

    let refused = app
        .tickets
        .clone()
        .get_ticket(app.as_admin(v1::GetTicketRequest {
            id: ticket.id.clone(),
            read_mask: mask(&["subject", "colour"]),
        }))
        .await
        .expect_err("an unknown field");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["read_mask"]);
    assert!(refused.message().contains("colour") || format!("{refused:?}").contains("colour"));
    let refused = app
        .tickets
        .clone()
        .export_tickets(app.as_admin(v1::ExportTicketsRequest {
            read_mask: mask(&["colour"]),
            ..Default::default()
        }))
        .await
        .expect_err("an unknown field");
    assert_eq!(violated_fields(&refused), ["read_mask"]);
}

#[tokio::test]
async fn over_rest_an_export_is_newline_delimited_json_and_read_masks_are_comma_separated() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    let ids = insert_tickets(&app, 30, "rest").await;

    let response = http
        .get(envoy.url("/v1/tickets:export?readMask=id,subject"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("GET /v1/tickets:export");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    assert!(response.headers().get("x-http-content-type").is_none());
    let body = response.text().await.expect("the body");
    let lines: Vec<serde_json::Value> = body
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert_eq!(lines.len(), ids.len(), "one ticket a line:\n{body}");
    let exported: HashSet<String> = lines
        .iter()
        .map(|line| line["id"].as_str().expect("an id").to_owned())
        .collect();
    assert_eq!(exported, ids);
    for line in &lines {
        assert!(line["subject"].as_str().unwrap().starts_with("rest "));
        assert_eq!(line["description"], "", "masked out: {line}");
    }

    let id = ids.iter().next().unwrap();
    let response = http
        .get(envoy.url(&format!("/v1/tickets/{id}?readMask=subject,createTime")))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("GET /v1/tickets/{id}");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let ticket: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(ticket["id"], "");
    assert!(ticket["subject"].as_str().unwrap().starts_with("rest "));
    assert!(ticket["createTime"].is_string(), "{ticket}");

    let response = http
        .get(envoy.url(&format!("/v1/tickets/{id}?readMask=colour")))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("GET /v1/tickets/{id}");
    assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
    let error: serde_json::Value = response.json().await.expect("JSON");
    // Over REST the field is named by its query parameter (docs/http-contract.md, "Field paths").
    assert_eq!(
        error["details"][1]["fieldViolations"][0]["field"], "readMask",
        "{error}"
    );
    assert!(
        error["message"].as_str().unwrap().contains("colour"),
        "{error}"
    );
}

/// A REST client that reads an answer only when told to: HTTP/1.1 written by hand over a socket
/// whose receive buffer holds a few KiB, so that what it has not read waits in Envoy and, once
/// Envoy's buffers are full, in the service (HTTP/2 flow control). It reads the chunked body and
/// its trailers itself: no HTTP client library hands over trailers, and the end of a body is
/// exactly what is checked here (a final chunk, or a connection closed mid-stream).
struct StallingRestClient {
    socket: tokio::net::TcpStream,
    received: Vec<u8>,
}

/// A chunked answer as it arrived: `complete` only when the final chunk and the trailers came.
struct ChunkedAnswer {
    head: String,
    body: String,
    trailers: Vec<(String, String)>,
    complete: bool,
}

impl ChunkedAnswer {
    fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The `x-request-id` Envoy answered with (its access log entry's key).
    fn request_id(&self) -> &str {
        self.head
            .lines()
            .find_map(|line| line.strip_prefix("x-request-id: "))
            .expect("an x-request-id header")
    }

    /// The body's lines, each parsed as JSON (NDJSON).
    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.body
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
            .collect()
    }
}

impl StallingRestClient {
    /// Sends `GET path` with `token` and reads until the answer has started.
    async fn get(envoy: &Envoy, path: &str, token: &str) -> Self {
        use tokio::io::AsyncWriteExt;
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .set_recv_buffer_size(4096)
            .expect("a small receive buffer");
        let mut socket = socket
            .connect(([127, 0, 0, 1], envoy.port).into())
            .await
            .expect("connect to Envoy");
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n\
             connection: close\r\n\r\n"
        );
        socket
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut client = Self {
            socket,
            received: Vec::new(),
        };
        while client.read_some().await > 0 && !client.received.starts_with(b"HTTP/1.1 ") {}
        client
    }

    /// One read of at most 4 KiB: how many bytes came, 0 once Envoy closed the connection.
    async fn read_some(&mut self) -> usize {
        use tokio::io::AsyncReadExt;
        let mut buffer = [0_u8; 4096];
        let read = self
            .socket
            .read(&mut buffer)
            .await
            .expect("read from Envoy");
        self.received.extend_from_slice(&buffer[..read]);
        read
    }

    /// Reads the rest, until Envoy closes the connection (`connection: close`).
    async fn read_to_end(mut self) -> ChunkedAnswer {
        while self.read_some().await > 0 {}
        let text = String::from_utf8(self.received).expect("UTF-8");
        let (head, mut rest) = text.split_once("\r\n\r\n").expect("a complete head");
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\ntransfer-encoding: chunked"),
            "{head}"
        );
        let mut answer = ChunkedAnswer {
            head: head.to_owned(),
            body: String::new(),
            trailers: Vec::new(),
            complete: false,
        };
        loop {
            let Some((size, after)) = rest.split_once("\r\n") else {
                return answer;
            };
            let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
            if size == 0 {
                // The trailer section, then an empty line.
                let mut lines = after.split("\r\n");
                for line in lines.by_ref() {
                    if line.is_empty() {
                        answer.complete = true;
                        return answer;
                    }
                    let (name, value) = line.split_once(':').expect("a trailer field");
                    answer
                        .trailers
                        .push((name.trim().to_owned(), value.trim().to_owned()));
                }
                return answer;
            }
            if after.len() < size + 2 {
                answer.body.push_str(after);
                return answer;
            }
            answer.body.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
    }
}

#[tokio::test]
async fn over_rest_an_export_that_outlasts_the_route_timeout_arrives_whole_while_other_requests_keep_their_deadline()
 {
    // Envoy's per-request deadline, a second instead of 15 (ROUTE_TIMEOUT_SECS).
    let route_timeout = Duration::from_secs(1);
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_with_route_timeout(app.address.port(), route_timeout).await;
    // About 9 MB of NDJSON: more than Envoy and the sockets hold for a client that has stopped
    // reading, so the service is still sending while the reader stalls.
    let total = 40 * EXPORT_BATCH;
    let ids = insert_tickets(&app, total, "long").await;

    let export = StallingRestClient::get(
        &envoy,
        "/v1/tickets:export?orderBy=create_time%20asc",
        &app.admin.access_token,
    )
    .await;
    assert!(
        export.received.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&export.received)
    );
    // The reader stalls while a request that cannot finish (its ticket waits on the locked
    // account) runs into the route timeout, started after the export: its answer says the export
    // has lasted longer than the timeout.
    let lock = lock_account(&app).await;
    let stuck = reqwest::Client::new()
        .post(envoy.url("/v1/tickets"))
        .bearer_auth(&app.admin.access_token)
        .json(&serde_json::json!({
            "subject": "Waits on the lock",
            "description": "Past the route timeout",
            "requesterEmail": "stuck@example.com"
        }))
        .send()
        .await
        .expect("POST /v1/tickets");
    // Envoy's 1 s and the service's (Envoy sends it the deadline as grpc-timeout) run out
    // together: 504 DEADLINE_EXCEEDED from Envoy or the service's deadline layer, or 499
    // CANCELLED when tonic's own grpc-timeout answers first (docs/http-contract.md, as
    // server::deadlines accepts). Either is the route's deadline at work.
    let status = stuck.status();
    let body: serde_json::Value = stuck.json().await.expect("the error JSON");
    match status.as_u16() {
        504 => assert_json_reason(&body, Reason::DeadlineExceeded),
        499 => assert_eq!(body["code"], 1, "CANCELLED: {body}"),
        other => panic!("{other} is not the route's deadline: {body}"),
    }
    drop(lock);

    let answer = export.read_to_end().await;
    let lines = answer.json_lines();
    // Envoy's access log says what ended the stream (`details`: via_upstream, or what cut it).
    let entry = envoy.access_log_entry(answer.request_id()).await;
    assert!(
        answer.complete,
        "the export was cut after {} of {total} tickets: {entry}",
        lines.len()
    );
    let exported: Vec<String> = lines
        .iter()
        .map(|line| line["id"].as_str().expect("an id").to_owned())
        .collect();
    let in_order = first_in_export_order(&app, ids.len()).await;
    assert_eq!(exported.len(), ids.len(), "one ticket a line, each once");
    assert_eq!(exported, in_order);
    assert_eq!(
        answer.trailer("grpc-status"),
        Some("0"),
        "{:?}",
        answer.trailers
    );
    assert_eq!(entry["status"], 200, "{entry}");
    assert_eq!(entry["grpc_status"], "0", "{entry}");
}

#[tokio::test]
async fn over_rest_an_export_that_outlives_its_limit_ends_with_deadline_exceeded_in_its_trailers_after_the_tickets_it_had()
 {
    let app = TestApp::spawn_with(|settings| {
        settings.tickets.export_max_duration = Duration::from_secs(2);
    })
    .await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let total = 40 * EXPORT_BATCH;
    insert_tickets(&app, total, "limited").await;

    let export = StallingRestClient::get(
        &envoy,
        "/v1/tickets:export?orderBy=create_time%20asc",
        &app.admin.access_token,
    )
    .await;
    // The reader reads nothing more until the service has ended the export's snapshot.
    wait_until("the export's snapshot ended", PATIENCE, || async {
        backends_in_a_transaction(&app).await == 0
    })
    .await;

    let answer = export.read_to_end().await;
    let lines = answer.json_lines();
    let entry = envoy.access_log_entry(answer.request_id()).await;
    assert!(
        answer.complete,
        "the body was cut after {} tickets instead of ending with a status: {entry}",
        lines.len()
    );
    assert!(
        lines.len() < usize::try_from(total).unwrap(),
        "every ticket arrived: the reader did not outlive the limit"
    );
    let exported: Vec<String> = lines
        .iter()
        .map(|line| line["id"].as_str().expect("an id").to_owned())
        .collect();
    assert_eq!(exported, first_in_export_order(&app, lines.len()).await);
    assert_eq!(
        answer.trailer("grpc-status"),
        Some("4"),
        "DEADLINE_EXCEEDED: {:?}",
        answer.trailers
    );
    let status = tonic::Status::from_header_map(&trailer_map(&answer.trailers))
        .expect("a status in the trailers");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_reason(&status, Reason::DeadlineExceeded);
    assert_eq!(entry["grpc_status"], "4", "{entry}");
}

/// The trailers as an HTTP header map, for tonic to read the status (and its details) from.
fn trailer_map(trailers: &[(String, String)]) -> http::HeaderMap {
    trailers
        .iter()
        .map(|(name, value)| {
            (
                http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                http::HeaderValue::from_str(value).expect("a header value"),
            )
        })
        .collect()
}
