//! Long-running operations and ImportTickets (docs/operations.md), against real PostgreSQL, the
//! real binary (SIGKILL mid-import) and real Envoy (202 and polling over REST).

use std::time::Duration;

use diesel_async::RunQueryDsl;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};
use supportdesk::errors::Reason;
use supportdesk::service::{BATCH_MAX_FAILURES, CLAIMS_WITHOUT_PROGRESS_MAX};
use supportdesk::wire::proto::google::longrunning::operations_client::OperationsClient;
use supportdesk::wire::proto::google::longrunning::{
    self as lro, CancelOperationRequest, DeleteOperationRequest, GetOperationRequest,
    ListOperationsRequest, WaitOperationRequest,
};
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use tonic::transport::Channel;

mod row_fields;

use crate::support::binary::{Running, sign_up_through};
use crate::support::envoy::Envoy;
use crate::support::{
    PATIENCE, TestApp, TestDatabase, TestUser, assert_reason, backends_waiting_on_locks, count_of,
    details, release_once_waiting, wait_until, with_key,
};

/// The batch size every test here runs with: small, so a few dozen rows make several batches.
const BATCH: usize = 10;

/// A test app whose operation workers run (test apps run none by default), in batches of
/// [`BATCH`] rows.
async fn spawn() -> TestApp {
    TestApp::spawn_with(|settings| {
        settings.operations.workers = 2;
        settings.operations.import_batch_rows = BATCH as u32;
    })
    .await
}

fn operations(app: &TestApp) -> OperationsClient<Channel> {
    OperationsClient::new(
        Channel::from_shared(format!("http://{}", app.address))
            .expect("a valid uri")
            .connect_lazy(),
    )
}

/// A CSV of `rows` valid tickets whose subjects are `<prefix>-<n>`, all raised by `requester`.
fn csv_of(prefix: &str, rows: usize, requester: &str) -> String {
    let mut csv = String::from("subject,description,requester_email,priority\n");
    for n in 0..rows {
        csv.push_str(&format!("{prefix}-{n},Imported history,{requester},low\n"));
    }
    csv
}

async fn import_as(
    tickets: &TicketServiceClient<Channel>,
    user: &TestUser,
    format: v1::ImportFormat,
    content: String,
) -> lro::Operation {
    tickets
        .clone()
        .import_tickets(user.request(v1::ImportTicketsRequest {
            format: format.into(),
            content,
        }))
        .await
        .expect("the import is accepted")
        .into_inner()
}

async fn import(app: &TestApp, format: v1::ImportFormat, content: String) -> lro::Operation {
    import_as(&app.tickets, &app.admin, format, content).await
}

async fn get(app: &TestApp, user: &TestUser, name: &str) -> Result<lro::Operation, tonic::Status> {
    operations(app)
        .get_operation(user.request(GetOperationRequest {
            name: name.to_owned(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

/// Polls GetOperation until the operation is done.
async fn done(app: &TestApp, user: &TestUser, name: &str) -> lro::Operation {
    done_through(&operations(app), user, name).await
}

/// Polls GetOperation through `client` until the operation is done.
async fn done_through(
    client: &OperationsClient<Channel>,
    user: &TestUser,
    name: &str,
) -> lro::Operation {
    let started = tokio::time::Instant::now();
    loop {
        let operation = client
            .clone()
            .get_operation(user.request(GetOperationRequest {
                name: name.to_owned(),
            }))
            .await
            .expect("GetOperation")
            .into_inner();
        if operation.done {
            return operation;
        }
        assert!(started.elapsed() < PATIENCE, "{name} was not done in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks, as the admin, for operation `name` to be cancelled.
async fn cancel(app: &TestApp, name: &str) {
    operations(app)
        .cancel_operation(app.as_admin(CancelOperationRequest {
            name: name.to_owned(),
        }))
        .await
        .expect("CancelOperation");
}

fn metadata(operation: &lro::Operation) -> v1::ImportTicketsMetadata {
    let any = operation.metadata.as_ref().expect("typed metadata");
    assert_eq!(
        any.type_url,
        "type.googleapis.com/supportdesk.v1.ImportTicketsMetadata"
    );
    v1::ImportTicketsMetadata::decode(any.value.as_slice()).expect("ImportTicketsMetadata")
}

fn response(operation: &lro::Operation) -> v1::ImportTicketsResponse {
    match &operation.result {
        Some(lro::operation::Result::Response(any)) => {
            assert_eq!(
                any.type_url,
                "type.googleapis.com/supportdesk.v1.ImportTicketsResponse"
            );
            v1::ImportTicketsResponse::decode(any.value.as_slice()).expect("ImportTicketsResponse")
        }
        other => panic!("not a response: {other:?}"),
    }
}

fn error(operation: &lro::Operation) -> supportdesk::wire::proto::google::rpc::Status {
    match &operation.result {
        Some(lro::operation::Result::Error(status)) => status.clone(),
        other => panic!("not an error: {other:?}"),
    }
}

/// How many live tickets of `account` have a subject starting with `prefix`, and how many
/// distinct subjects they have.
async fn tickets_named(database: &TestDatabase, prefix: &str) -> (i64, i64) {
    let all = count_of(
        database,
        &format!("SELECT count(*) AS count FROM tickets WHERE subject LIKE '{prefix}-%'"),
    )
    .await;
    let distinct = count_of(
        database,
        &format!(
            "SELECT count(DISTINCT subject) AS count FROM tickets WHERE subject LIKE '{prefix}-%'"
        ),
    )
    .await;
    (all, distinct)
}

/// Holds a row lock on the user `email` of the account, so that an import batch naming them as
/// requester blocks inside PostgreSQL (after the earlier batches committed) until the returned
/// connection rolls back.
async fn lock_requester(database: &TestDatabase, email: &str) -> diesel_async::AsyncPgConnection {
    let mut conn = database.connect().await;
    diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
    let locked = diesel::sql_query("SELECT id FROM users WHERE email = $1 FOR UPDATE")
        .bind::<diesel::sql_types::Text, _>(email)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(locked, 1, "the requester exists");
    conn
}

/// `rows` rows raised by `free@…`, then `rows` raised by `held@…` (whom a test can lock).
fn csv_blocked_after(prefix: &str, rows: usize) -> String {
    let mut csv = csv_of(prefix, rows, "free@example.com");
    for n in rows..2 * rows {
        csv.push_str(&format!(
            "{prefix}-{n},Imported history,held@example.com,low\n"
        ));
    }
    csv
}

#[tokio::test]
async fn an_import_creates_every_valid_row_once_and_reports_the_malformed_row_with_its_number_and_field()
 {
    let app = spawn().await;
    let mut csv = csv_of("history", 25, "jane@example.com");
    // Record 27 (the header is record 1): an address that is no address.
    csv.push_str("history-bad,Imported history,not-an-address,low\n");
    csv.push_str(
        &csv_of("more", 4, "jane@example.com")
            .replace("subject,description,requester_email,priority\n", ""),
    );

    let accepted = import(&app, v1::ImportFormat::Csv, csv).await;
    assert!(accepted.name.starts_with("operations/"));
    assert!(!accepted.done);
    assert_eq!(metadata(&accepted).rows_total, 30);

    let finished = done(&app, &app.admin, &accepted.name).await;
    let progress = metadata(&finished);
    assert_eq!(
        (
            progress.state(),
            progress.rows_read,
            progress.rows_imported,
            progress.rows_failed,
            progress.percent
        ),
        (v1::OperationState::Succeeded, 30, 29, 1, 100)
    );
    let result = response(&finished);
    assert_eq!((result.rows_imported, result.rows_failed), (29, 1));
    assert_eq!(result.row_errors.len(), 1);
    assert_eq!(
        (
            result.row_errors[0].row,
            result.row_errors[0].field.as_str()
        ),
        (27, "requester_email")
    );
    assert!(!result.row_errors_truncated);
    assert_eq!(tickets_named(&app.database, "history").await, (25, 25));
    assert_eq!(tickets_named(&app.database, "more").await, (4, 4));
    // Each imported ticket has its audit record, by the importer.
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM ticket_activities a JOIN tickets t \
             ON t.id = a.ticket_id WHERE a.action = 'created' AND t.subject LIKE 'history-%'"
        )
        .await,
        25
    );
}

#[tokio::test]
async fn an_ndjson_import_validates_each_row_as_create_ticket_does() {
    let app = spawn().await;
    let content = [
        json!({"subject": "nd-0", "description": "d", "requester_email": "a@example.com"}),
        json!({"subject": "nd-1", "description": "d", "requester_email": "a@example.com",
               "priority": "urgent"}),
        json!({"subject": "", "description": "d", "requester_email": "a@example.com"}),
        json!({"subject": "nd-3", "description": "d", "requester_email": "a@example.com",
               "assignee_id": uuid::Uuid::now_v7().to_string()}),
        json!({"subject": "nd-4", "description": "d", "requester_email": "a@example.com",
               "colour": "red"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");

    let accepted = import(&app, v1::ImportFormat::Ndjson, content).await;
    let result = response(&done(&app, &app.admin, &accepted.name).await);

    assert_eq!((result.rows_imported, result.rows_failed), (2, 3));
    let errors: Vec<(i64, &str)> = result
        .row_errors
        .iter()
        .map(|error| (error.row, error.field.as_str()))
        .collect();
    assert_eq!(errors, [(3, "subject"), (4, "assignee_id"), (5, "colour")]);
    assert_eq!(tickets_named(&app.database, "nd").await, (2, 2));
}

#[tokio::test]
async fn a_file_that_is_not_csv_at_all_fails_the_operation_with_invalid_argument() {
    let app = spawn().await;

    let accepted = import(
        &app,
        v1::ImportFormat::Csv,
        "{\"subject\":\"this is NDJSON\"}\n".to_owned(),
    )
    .await;
    let finished = done(&app, &app.admin, &accepted.name).await;

    let status = error(&finished);
    assert_eq!(status.code, tonic::Code::InvalidArgument as i32);
    assert!(
        status.message.contains("is not a CSV of tickets"),
        "{}",
        status.message
    );
    // With the details every error carries: its reason, and the field at fault.
    let as_answered = tonic::Status::with_details(
        tonic::Code::InvalidArgument,
        status.message.clone(),
        prost::Message::encode_to_vec(&status).into(),
    );
    assert_eq!(
        crate::support::error_reason(&as_answered),
        Some(Reason::InvalidArgument)
    );
    assert_eq!(crate::support::violated_fields(&as_answered), ["content"]);
    assert_eq!(metadata(&finished).state(), v1::OperationState::Failed);
    assert_eq!(
        count_of(&app.database, "SELECT count(*) AS count FROM tickets").await,
        0
    );
}

#[tokio::test]
async fn cancelling_mid_import_stops_at_a_batch_boundary_and_reports_it() {
    let app = spawn().await;
    // The held requester exists before the import, so a test can lock them.
    app.create_as_admin(v1::CreateTicketRequest {
        ticket: Some(v1::Ticket {
            subject: "before".to_owned(),
            description: "d".to_owned(),
            requester_email: "held@example.com".to_owned(),
            ..Default::default()
        }),
    })
    .await;
    let held = lock_requester(&app.database, "held@example.com").await;

    let accepted = import(
        &app,
        v1::ImportFormat::Csv,
        csv_blocked_after("cut", 2 * BATCH),
    )
    .await;
    // Two batches commit; the third waits for the held requester inside its transaction.
    wait_until(
        "two batches commit and the third waits",
        PATIENCE,
        || async {
            let progress = metadata(&get(&app, &app.admin, &accepted.name).await.unwrap());
            progress.rows_read == 2 * BATCH as i64
                && backends_waiting_on_locks(&app.database).await > 0
        },
    )
    .await;
    cancel(&app, &accepted.name).await;
    drop(held);

    let finished = done(&app, &app.admin, &accepted.name).await;
    let progress = metadata(&finished);
    assert_eq!(progress.state(), v1::OperationState::Cancelled);
    assert!(progress.cancel_requested);
    // The batch in flight committed, and nothing after it.
    assert_eq!(
        (
            progress.rows_read,
            progress.rows_imported,
            progress.rows_total
        ),
        (3 * BATCH as i64, 3 * BATCH as i64, 4 * BATCH as i64)
    );
    let status = error(&finished);
    assert_eq!(status.code, tonic::Code::Cancelled as i32);
    let reported = v1::ImportTicketsResponse::decode(status.details[0].value.as_slice())
        .expect("the counts ride along");
    assert_eq!(reported.rows_imported, 3 * BATCH as i64);
    assert_eq!(
        tickets_named(&app.database, "cut").await,
        (3 * BATCH as i64, 3 * BATCH as i64)
    );
}

#[tokio::test]
async fn a_cancel_that_lands_during_the_last_batch_leaves_the_whole_import_succeeded() {
    let app = spawn().await;
    app.create_as_admin(ticket_for("held@example.com")).await;
    let held = lock_requester(&app.database, "held@example.com").await;

    // Two batches: the first commits, the second (the last) waits for the held requester.
    let accepted = import(
        &app,
        v1::ImportFormat::Csv,
        csv_blocked_after("late", BATCH),
    )
    .await;
    wait_until(
        "the first batch commits and the last waits",
        PATIENCE,
        || async {
            let progress = metadata(&get(&app, &app.admin, &accepted.name).await.unwrap());
            progress.rows_read == BATCH as i64 && backends_waiting_on_locks(&app.database).await > 0
        },
    )
    .await;
    cancel(&app, &accepted.name).await;
    drop(held);

    let finished = done(&app, &app.admin, &accepted.name).await;
    let progress = metadata(&finished);
    assert_eq!(
        (
            progress.state(),
            progress.cancel_requested,
            progress.rows_read,
            progress.rows_imported
        ),
        (
            v1::OperationState::Succeeded,
            true,
            2 * BATCH as i64,
            2 * BATCH as i64
        )
    );
    assert_eq!(response(&finished).rows_imported, 2 * BATCH as i64);
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM operations WHERE state = 'succeeded' \
             AND error_code IS NULL AND content IS NULL AND lease_owner IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        tickets_named(&app.database, "late").await,
        (2 * BATCH as i64, 2 * BATCH as i64)
    );
}

/// A CreateTicket raised for `requester`, so that they exist before an import names them.
fn ticket_for(requester: &str) -> v1::CreateTicketRequest {
    v1::CreateTicketRequest {
        ticket: Some(v1::Ticket {
            subject: "before".to_owned(),
            description: "d".to_owned(),
            requester_email: requester.to_owned(),
            ..Default::default()
        }),
    }
}

/// Makes PostgreSQL refuse a ticket whose subject is `subject`, every time it is inserted: a
/// CHECK constraint on the test's own database (each test has one, cloned from the template).
async fn refuse_subject(database: &TestDatabase, subject: &str) {
    diesel::sql_query(format!(
        "ALTER TABLE tickets ADD CONSTRAINT refused_subject CHECK (subject <> '{subject}') \
         NOT VALID"
    ))
    .execute(&mut database.connect().await)
    .await
    .expect("the constraint is added");
}

#[tokio::test]
async fn a_batch_the_database_refuses_every_time_fails_the_import_naming_its_rows_and_the_batches_before_it_stay()
 {
    // A lease shorter than the retries take: a worker that did not renew it while retrying
    // would see the operation claimed by the other worker.
    let app = TestApp::spawn_with(|settings| {
        settings.operations.workers = 2;
        settings.operations.import_batch_rows = BATCH as u32;
        settings.operations.import_max_concurrent = 1;
        settings.operations.lease = Duration::from_secs(2);
        settings.operations.poll_interval = Duration::from_millis(600);
    })
    .await;
    // Row `poison-15` is in the second batch: records 12 to 21 (the header is record 1).
    refuse_subject(&app.database, "poison-15").await;

    let accepted = import(
        &app,
        v1::ImportFormat::Csv,
        csv_of("poison", 3 * BATCH, "a@example.com"),
    )
    .await;
    let finished = done(&app, &app.admin, &accepted.name).await;

    let status = error(&finished);
    assert_eq!(
        (status.code, status.message.as_str()),
        (
            tonic::Code::Internal as i32,
            format!(
                "rows 12 to 21 could not be imported: their batch failed {BATCH_MAX_FAILURES} \
                 times in a row. The import stopped there: the 10 tickets imported from the rows \
                 before them stay, and rows 12 to 31 were not read"
            )
            .as_str()
        )
    );
    let as_answered = tonic::Status::with_details(
        tonic::Code::Internal,
        status.message.clone(),
        prost::Message::encode_to_vec(&status).into(),
    );
    assert_eq!(
        crate::support::error_reason(&as_answered),
        Some(Reason::Internal)
    );
    let progress = metadata(&finished);
    assert_eq!(
        (
            progress.state(),
            progress.rows_read,
            progress.rows_imported,
            progress.rows_failed
        ),
        (v1::OperationState::Failed, BATCH as i64, BATCH as i64, 0)
    );
    // One claim: the worker held the operation through every retry, and let it go at the end.
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM operations WHERE state = 'failed' AND error_code = 13 \
             AND attempts = 1 AND lease_owner IS NULL AND content IS NULL AND done_at IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(
        tickets_named(&app.database, "poison").await,
        (BATCH as i64, BATCH as i64)
    );
    // The account's only import slot is free again.
    let next = import(
        &app,
        v1::ImportFormat::Csv,
        csv_of("next", 3, "a@example.com"),
    )
    .await;
    assert_eq!(
        response(&done(&app, &app.admin, &next.name).await).rows_imported,
        3
    );
}

/// Makes PostgreSQL refuse a ticket whose subject is `subject` after `delay`, every time it is
/// inserted, and count the attempts in the sequence `refused_attempts` (a sequence advances
/// even when the transaction that advanced it rolls back, so every attempt shows).
async fn refuse_subject_counting_attempts(database: &TestDatabase, subject: &str, delay: Duration) {
    let mut conn = database.connect().await;
    for statement in [
        "CREATE SEQUENCE refused_attempts".to_owned(),
        format!(
            "CREATE FUNCTION refuse_subject() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.subject = '{subject}' THEN \
               PERFORM nextval('refused_attempts'); PERFORM pg_sleep({}); \
               RAISE EXCEPTION 'refused'; \
             END IF; RETURN NEW; END $$",
            delay.as_secs_f64()
        ),
        "CREATE TRIGGER refuse_subject BEFORE INSERT ON tickets FOR EACH ROW \
         EXECUTE FUNCTION refuse_subject()"
            .to_owned(),
    ] {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .expect("the refusal is installed");
    }
}

/// How many times the refused row has been tried, by every worker.
async fn refused_attempts(database: &TestDatabase) -> i64 {
    count_of(
        database,
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS count FROM refused_attempts",
    )
    .await
}

/// Runs an instance with one operation worker on `settings`' database until `until` holds, then
/// stops it as a SIGTERM would (it gives its operation back).
async fn run_a_worker_until<F, Fut>(
    settings: &supportdesk::configuration::Settings,
    what: &str,
    until: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut settings = settings.clone();
    settings.server.listen_addr = "127.0.0.1:0".parse().expect("an address");
    settings.operations.workers = 1;
    let application = supportdesk::app::startup::Application::build(settings)
        .await
        .expect("the instance builds");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    wait_until(what, PATIENCE, until).await;
    let _ = stop.send(());
    running
        .await
        .expect("the instance did not panic")
        .expect("the instance stopped cleanly");
}

#[tokio::test]
async fn a_refused_batch_fails_its_import_after_the_stated_attempts_in_all_though_each_worker_stops_partway()
 {
    // The app runs no worker: three instances take turns, each stopped after some attempts.
    let app = TestApp::spawn_with(|settings| {
        settings.operations.workers = 0;
        settings.operations.import_batch_rows = BATCH as u32;
        settings.operations.poll_interval = Duration::from_millis(100);
    })
    .await;
    refuse_subject_counting_attempts(&app.database, "kept-15", Duration::ZERO).await;
    let accepted = import(
        &app,
        v1::ImportFormat::Csv,
        csv_of("kept", 3 * BATCH, "a@example.com"),
    )
    .await;

    run_a_worker_until(
        &app.settings,
        "two attempts at the refused batch",
        || async { refused_attempts(&app.database).await >= 2 },
    )
    .await;
    run_a_worker_until(&app.settings, "four attempts in all", || async {
        refused_attempts(&app.database).await >= 4
    })
    .await;
    run_a_worker_until(&app.settings, "the import ends", || async {
        get(&app, &app.admin, &accepted.name).await.unwrap().done
    })
    .await;

    let finished = get(&app, &app.admin, &accepted.name).await.unwrap();
    assert_eq!(
        error(&finished).message,
        format!(
            "rows 12 to 21 could not be imported: their batch failed {BATCH_MAX_FAILURES} times \
             in a row. The import stopped there: the 10 tickets imported from the rows before \
             them stay, and rows 12 to 31 were not read"
        )
    );
    assert_eq!(
        refused_attempts(&app.database).await,
        i64::from(BATCH_MAX_FAILURES)
    );
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM operations WHERE state = 'failed' AND attempts = 3"
        )
        .await,
        1
    );
    assert_eq!(
        tickets_named(&app.database, "kept").await,
        (BATCH as i64, BATCH as i64)
    );
}

#[tokio::test]
async fn an_import_whose_batch_every_worker_dies_on_fails_once_workers_took_it_up_the_stated_times_without_progress()
 {
    let database = TestDatabase::create().await;
    // The same keys across the restarts: the admin's session stays valid.
    let redis_prefix = format!("supportdesk-test:{}:", uuid::Uuid::now_v7().simple());
    let settings = [
        ("IMPORT_BATCH_ROWS", "10"),
        ("OPERATION_LEASE_MS", "2000"),
        ("OPERATION_POLL_INTERVAL_MS", "100"),
        ("MAX_OPEN_TICKETS_PER_REQUESTER", "1000"),
        ("REDIS_KEY_PREFIX", redis_prefix.as_str()),
    ];
    let first = Running::start(&database, &settings);
    let channel = first.channel().await;
    let admin = sign_up_through(&channel).await;
    let tickets = TicketServiceClient::new(channel.clone());
    tickets
        .clone()
        .create_ticket(admin.request(ticket_for("held@example.com")))
        .await
        .expect("the held requester exists");
    // The second batch waits on this lock for as long as the test holds it: it never commits.
    let _held = lock_requester(&database, "held@example.com").await;
    let accepted = import_as(
        &tickets,
        &admin,
        v1::ImportFormat::Csv,
        csv_blocked_after("stall", BATCH),
    )
    .await;
    let claims = || async {
        count_of(
            &database,
            "SELECT attempts::bigint AS count FROM operations",
        )
        .await
    };
    wait_until("the first batch commits", PATIENCE, || async {
        count_of(&database, "SELECT rows_read AS count FROM operations").await == BATCH as i64
    })
    .await;
    // Each process dies holding the second batch (SIGKILL: it gives nothing back), and the
    // next one takes it up once the lease ran out.
    first.kill();
    for claim in 2..=i64::from(CLAIMS_WITHOUT_PROGRESS_MAX) + 1 {
        let next = Running::start(&database, &settings);
        wait_until("another worker takes the import up", PATIENCE, || async {
            claims().await == claim
        })
        .await;
        next.kill();
    }

    let last = Running::start(&database, &settings);
    wait_until("the import ends", PATIENCE, || async {
        count_of(
            &database,
            "SELECT count(*) AS count FROM operations WHERE state <> 'running'",
        )
        .await
            == 1
    })
    .await;
    let finished = done_through(
        &OperationsClient::new(last.channel().await),
        &admin,
        &accepted.name,
    )
    .await;
    assert_eq!(
        error(&finished).message,
        format!(
            "rows 12 to 21 could not be imported: {CLAIMS_WITHOUT_PROGRESS_MAX} workers in a row \
             took their batch up and stopped before it committed, none of them told to. The \
             import stopped there: the 10 tickets imported from the rows before them stay, and \
             rows 12 to 21 were not read"
        )
    );
    // The first claim committed the first batch; the next five took the second batch up and
    // died; the one after them failed the import instead of trying again.
    assert_eq!(claims().await, i64::from(CLAIMS_WITHOUT_PROGRESS_MAX) + 2);
    assert_eq!(
        tickets_named(&database, "stall").await,
        (BATCH as i64, BATCH as i64)
    );
}

#[tokio::test]
async fn cancelling_an_import_whose_batch_keeps_failing_cancels_it_between_the_attempts() {
    // The default pauses (one second, doubling): the batch would fail the import only after
    // about fifteen seconds of retries.
    let app = spawn().await;
    refuse_subject(&app.database, "stuck-15").await;
    let accepted = import(
        &app,
        v1::ImportFormat::Csv,
        csv_of("stuck", 3 * BATCH, "a@example.com"),
    )
    .await;
    wait_until("the first batch commits", PATIENCE, || async {
        metadata(&get(&app, &app.admin, &accepted.name).await.unwrap()).rows_read == BATCH as i64
    })
    .await;

    cancel(&app, &accepted.name).await;
    let finished = done(&app, &app.admin, &accepted.name).await;

    assert_eq!(error(&finished).code, tonic::Code::Cancelled as i32);
    let progress = metadata(&finished);
    assert_eq!(
        (progress.state(), progress.rows_read, progress.rows_imported),
        (v1::OperationState::Cancelled, BATCH as i64, BATCH as i64)
    );
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM operations WHERE state = 'cancelled' \
             AND cancel_requested AND lease_owner IS NULL AND content IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        tickets_named(&app.database, "stuck").await,
        (BATCH as i64, BATCH as i64)
    );
}

/// The database's clock, in milliseconds since the epoch.
async fn database_clock_ms(database: &TestDatabase) -> i64 {
    count_of(
        database,
        "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS count",
    )
    .await
}

#[tokio::test]
async fn a_batch_that_waited_for_locks_renews_the_lease_for_a_whole_lease_from_its_commit() {
    const LEASE: Duration = Duration::from_secs(10);
    let app = TestApp::spawn_with(|settings| {
        settings.operations.workers = 2;
        settings.operations.import_batch_rows = BATCH as u32;
        settings.operations.lease = LEASE;
    })
    .await;
    app.create_as_admin(ticket_for("held@example.com")).await;
    app.create_as_admin(ticket_for("held-too@example.com"))
        .await;
    let held = lock_requester(&app.database, "held@example.com").await;
    let held_too = lock_requester(&app.database, "held-too@example.com").await;
    // A batch of free rows, one of the held requester's, one of the other held requester's.
    let mut csv = csv_blocked_after("renewed", BATCH);
    for n in 2 * BATCH..3 * BATCH {
        csv.push_str(&format!(
            "renewed-{n},Imported history,held-too@example.com,low\n"
        ));
    }
    let accepted = import(&app, v1::ImportFormat::Csv, csv).await;
    let rows_read =
        || async { metadata(&get(&app, &app.admin, &accepted.name).await.unwrap()).rows_read };

    wait_until(
        "the second batch has waited two seconds inside its transaction",
        PATIENCE,
        || async {
            rows_read().await == BATCH as i64
                && count_of(
                    &app.database,
                    "SELECT count(*) AS count FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock' \
                     AND clock_timestamp() - xact_start > interval '2 seconds'",
                )
                .await
                    > 0
        },
    )
    .await;
    let released_at = database_clock_ms(&app.database).await;
    drop(held);
    wait_until(
        "the second batch commits and the third waits",
        PATIENCE,
        || async {
            rows_read().await == 2 * BATCH as i64
                && backends_waiting_on_locks(&app.database).await > 0
        },
    )
    .await;

    let lease_ends = count_of(
        &app.database,
        "SELECT floor(extract(epoch FROM lease_expires_at) * 1000)::bigint AS count \
         FROM operations",
    )
    .await;
    let lease_ms = i64::try_from(LEASE.as_millis()).unwrap();
    assert!(
        lease_ends >= released_at + lease_ms,
        "the lease ends {} ms after the batch could commit, not a whole lease of {lease_ms} ms",
        lease_ends - released_at
    );
    drop(held_too);
    let result = response(&done(&app, &app.admin, &accepted.name).await);
    assert_eq!(result.rows_imported, 3 * BATCH as i64);
}

/// The open tickets of each requester as the counter `requester_open_tickets` holds them and as
/// a recount of the tickets finds them, for every requester either side knows of that differs.
async fn open_ticket_counters_off_a_recount(database: &TestDatabase) -> i64 {
    count_of(
        database,
        "SELECT count(*) AS count FROM requester_open_tickets c \
         FULL JOIN (SELECT account_id, requester_id, count(*) AS tickets FROM tickets \
                    WHERE deleted_at IS NULL AND status IN ('new', 'open', 'pending') \
                    GROUP BY 1, 2) r USING (account_id, requester_id) \
         WHERE coalesce(c.tickets, 0) <> coalesce(r.tickets, 0)",
    )
    .await
}

#[tokio::test]
async fn a_batch_counts_the_tickets_created_and_solved_since_the_previous_batch_against_the_open_limit()
 {
    let app = TestApp::spawn_with(|settings| {
        settings.operations.workers = 2;
        settings.operations.import_batch_rows = BATCH as u32;
        settings.tickets.max_open_per_requester = 15;
    })
    .await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let ticket_by = |subject: &str, requester: &str| v1::CreateTicketRequest {
        ticket: Some(v1::Ticket {
            subject: subject.to_owned(),
            description: "d".to_owned(),
            requester_email: requester.to_owned(),
            assignee_id: agent.id.to_string(),
            ..Default::default()
        }),
    };
    let solved_later = app
        .create_as_admin(ticket_by("before", "jane@example.com"))
        .await;
    // The held requester exists before the import, so a test can lock them.
    app.create_as_admin(ticket_by("before", "held@example.com"))
        .await;
    let held = lock_requester(&app.database, "held@example.com").await;

    // Batch 1: ten of Jane's; batch 2: ten of the held requester's (it waits for the lock);
    // batch 3: ten more of Jane's, records 22 to 31 (the header is record 1).
    let mut csv = csv_of("limit", BATCH, "jane@example.com");
    for n in BATCH..3 * BATCH {
        let requester = if n < 2 * BATCH {
            "held@example.com"
        } else {
            "jane@example.com"
        };
        csv.push_str(&format!("limit-{n},Imported history,{requester},low\n"));
    }
    let accepted = import(&app, v1::ImportFormat::Csv, csv).await;
    wait_until(
        "the first batch commits and the second waits",
        PATIENCE,
        || async {
            let progress = metadata(&get(&app, &app.admin, &accepted.name).await.unwrap());
            progress.rows_read == BATCH as i64 && backends_waiting_on_locks(&app.database).await > 0
        },
    )
    .await;
    // Between the batches Jane gets two tickets more and one solved: 1 + 10 + 2 - 1 = 12 open,
    // so batch 3 has room for 3 of its 10 under the limit of 15.
    app.create_as_admin(ticket_by("between 1", "jane@example.com"))
        .await;
    app.create_as_admin(ticket_by("between 2", "jane@example.com"))
        .await;
    app.tickets
        .clone()
        .resolve_ticket(app.as_admin(v1::ResolveTicketRequest {
            id: solved_later.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("resolved");
    drop(held);

    let finished = done(&app, &app.admin, &accepted.name).await;
    let result = response(&finished);
    assert_eq!(
        (result.rows_imported, result.rows_failed),
        (2 * BATCH as i64 + 3, 7)
    );
    let refused: Vec<(i64, &str)> = result
        .row_errors
        .iter()
        .map(|error| (error.row, error.field.as_str()))
        .collect();
    assert_eq!(
        refused,
        (25..=31)
            .map(|row| (row, "requester_email"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        count_of(
            &app.database,
            "SELECT tickets AS count FROM requester_open_tickets c JOIN users u \
             ON u.account_id = c.account_id AND u.id = c.requester_id \
             WHERE u.email = 'jane@example.com'"
        )
        .await,
        15
    );
    assert_eq!(open_ticket_counters_off_a_recount(&app.database).await, 0);
}

#[tokio::test]
async fn three_imports_at_once_in_two_accounts_each_import_every_row_into_their_own_account() {
    let app = spawn().await;
    let other = app.sign_up_another_account().await;
    let tickets = app.tickets.clone();

    let (first, second, third) = tokio::join!(
        import_as(
            &tickets,
            &app.admin,
            v1::ImportFormat::Csv,
            csv_of("a1", 35, "a@example.com")
        ),
        import_as(
            &tickets,
            &app.admin,
            v1::ImportFormat::Csv,
            csv_of("a2", 35, "a@example.com")
        ),
        import_as(
            &tickets,
            &other,
            v1::ImportFormat::Csv,
            csv_of("b1", 35, "b@example.com")
        ),
    );
    for (user, name) in [
        (&app.admin, &first.name),
        (&app.admin, &second.name),
        (&other, &third.name),
    ] {
        let result = response(&done(&app, user, name).await);
        assert_eq!((result.rows_imported, result.rows_failed), (35, 0));
    }

    for (prefix, account) in [
        ("a1", app.account_id),
        ("a2", app.account_id),
        ("b1", other.account_id),
    ] {
        assert_eq!(tickets_named(&app.database, prefix).await, (35, 35));
        assert_eq!(
            count_of(
                &app.database,
                &format!(
                    "SELECT count(*) AS count FROM tickets WHERE subject LIKE '{prefix}-%' \
                     AND account_id = '{account}'"
                )
            )
            .await,
            35
        );
    }
}

#[tokio::test]
async fn an_import_beyond_the_accounts_concurrent_limit_is_refused_with_quota_failure() {
    // No workers: the accepted imports stay queued.
    let app = TestApp::spawn_with(|settings| {
        settings.operations.workers = 0;
        settings.operations.import_max_concurrent = 2;
    })
    .await;
    for n in 0..2 {
        import(
            &app,
            v1::ImportFormat::Csv,
            csv_of(&format!("q{n}"), 1, "a@example.com"),
        )
        .await;
    }

    let refused = app
        .tickets
        .clone()
        .import_tickets(app.as_admin(v1::ImportTicketsRequest {
            format: v1::ImportFormat::Csv.into(),
            content: csv_of("q2", 1, "a@example.com"),
        }))
        .await
        .expect_err("a third import");

    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_reason(&refused, Reason::ImportLimit);
    let quota = details(&refused)
        .quota_failure()
        .expect("QuotaFailure")
        .clone();
    assert_eq!(
        quota.violations[0].subject,
        format!("accounts/{}", app.account_id)
    );
    // Another account has its own limit.
    let other = app.sign_up_another_account().await;
    import_as(
        &app.tickets,
        &other,
        v1::ImportFormat::Csv,
        csv_of("q3", 1, "b@example.com"),
    )
    .await;
}

#[tokio::test]
async fn the_same_idempotency_key_answers_the_same_operation() {
    let app = spawn().await;
    let request = || {
        with_key(
            app.as_admin(v1::ImportTicketsRequest {
                format: v1::ImportFormat::Csv.into(),
                content: csv_of("once", 12, "a@example.com"),
            }),
            "import-once",
        )
    };

    let first = app.tickets.clone().import_tickets(request()).await.unwrap();
    let again = app.tickets.clone().import_tickets(request()).await.unwrap();

    assert_eq!(first.get_ref().name, again.get_ref().name);
    assert_eq!(
        again
            .metadata()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    done(&app, &app.admin, &first.get_ref().name).await;
    assert_eq!(tickets_named(&app.database, "once").await, (12, 12));
    assert_eq!(
        count_of(&app.database, "SELECT count(*) AS count FROM operations").await,
        1
    );
}

#[tokio::test]
async fn another_accounts_operation_is_not_found_and_cannot_be_cancelled_or_deleted() {
    let app = TestApp::spawn_with(|settings| settings.operations.workers = 0).await;
    let accepted = import(
        &app,
        v1::ImportFormat::Csv,
        csv_of("mine", 3, "a@example.com"),
    )
    .await;
    let stranger = app.sign_up_another_account().await;
    let missing = format!("operations/{}", uuid::Uuid::now_v7());

    for name in [&accepted.name, &missing] {
        let read = get(&app, &stranger, name).await.expect_err("not theirs");
        let cancelled = operations(&app)
            .cancel_operation(stranger.request(CancelOperationRequest { name: name.clone() }))
            .await
            .expect_err("not theirs");
        let deleted = operations(&app)
            .delete_operation(stranger.request(DeleteOperationRequest { name: name.clone() }))
            .await
            .expect_err("not theirs");
        for status in [&read, &cancelled, &deleted] {
            assert_eq!(status.code(), tonic::Code::NotFound);
            assert_reason(status, Reason::OperationNotFound);
            assert_eq!(status.message(), format!("operation {name} not found"));
        }
    }
    let listed = operations(&app)
        .list_operations(stranger.request(ListOperationsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.operations.is_empty());
    // Untouched: still queued, no cancellation asked for.
    let mine = metadata(&get(&app, &app.admin, &accepted.name).await.unwrap());
    assert_eq!(mine.state(), v1::OperationState::Queued);
    assert!(!mine.cancel_requested);
}

#[tokio::test]
async fn a_queued_operation_is_cancelled_at_once_and_only_a_finished_one_can_be_deleted() {
    let app = TestApp::spawn_with(|settings| settings.operations.workers = 0).await;
    let accepted = import(
        &app,
        v1::ImportFormat::Csv,
        csv_of("gone", 3, "a@example.com"),
    )
    .await;
    let mut client = operations(&app);

    let refused = client
        .delete_operation(app.as_admin(DeleteOperationRequest {
            name: accepted.name.clone(),
        }))
        .await
        .expect_err("still queued");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_reason(&refused, Reason::OperationNotDone);

    client
        .cancel_operation(app.as_admin(CancelOperationRequest {
            name: accepted.name.clone(),
        }))
        .await
        .expect("CancelOperation");
    let cancelled = get(&app, &app.admin, &accepted.name).await.unwrap();
    assert!(cancelled.done);
    assert_eq!(metadata(&cancelled).state(), v1::OperationState::Cancelled);
    assert_eq!(error(&cancelled).code, tonic::Code::Cancelled as i32);

    client
        .delete_operation(app.as_admin(DeleteOperationRequest {
            name: accepted.name.clone(),
        }))
        .await
        .expect("DeleteOperation");
    let status = get(&app, &app.admin, &accepted.name)
        .await
        .expect_err("deleted");
    assert_reason(&status, Reason::OperationNotFound);
}

#[tokio::test]
async fn of_two_deletes_of_one_finished_operation_at_once_one_deletes_it_and_the_other_is_told_it_is_gone()
 {
    let app = TestApp::spawn_with(|settings| settings.operations.workers = 0).await;
    let accepted = import(
        &app,
        v1::ImportFormat::Csv,
        csv_of("twice", 2, "a@example.com"),
    )
    .await;
    cancel(&app, &accepted.name).await;
    let id = accepted
        .name
        .strip_prefix("operations/")
        .expect("operations/{id}")
        .parse::<uuid::Uuid>()
        .expect("a uuid");

    // Both deletes line up behind a lock on the operation's row, so that each has read the
    // finished operation before either deletes it.
    let mut lock = app.database.connect().await;
    diesel::sql_query("BEGIN").execute(&mut lock).await.unwrap();
    diesel::sql_query("SELECT id FROM operations WHERE id = $1 FOR UPDATE")
        .bind::<diesel::sql_types::Uuid, _>(id)
        .execute(&mut lock)
        .await
        .unwrap();
    let delete = || {
        let mut client = operations(&app);
        let request = app.as_admin(DeleteOperationRequest {
            name: accepted.name.clone(),
        });
        tokio::spawn(async move { client.delete_operation(request).await })
    };
    let (first, second) = (delete(), delete());
    release_once_waiting(&app.database, lock, 2, "both deletes waiting for the row").await;

    let outcomes = [first.await.unwrap(), second.await.unwrap()];
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
        1,
        "exactly one delete deletes it: {outcomes:?}"
    );
    let gone = outcomes
        .into_iter()
        .find_map(Result::err)
        .expect("the other delete is refused");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    assert_reason(&gone, Reason::OperationNotFound);
    assert_eq!(
        count_of(&app.database, "SELECT count(*) AS count FROM operations").await,
        0
    );
}

#[tokio::test]
async fn list_operations_filters_by_state_and_kind_and_pages_with_signed_tokens() {
    let app = TestApp::spawn_with(|settings| {
        settings.operations.workers = 0;
        settings.operations.import_max_concurrent = 10;
    })
    .await;
    let mut names = Vec::new();
    for n in 0..3 {
        names.push(
            import(
                &app,
                v1::ImportFormat::Csv,
                csv_of(&format!("l{n}"), 1, "a@example.com"),
            )
            .await
            .name,
        );
    }
    let mut client = operations(&app);
    client
        .cancel_operation(app.as_admin(CancelOperationRequest {
            name: names[0].clone(),
        }))
        .await
        .unwrap();
    let list = |filter: &str, page_token: &str| ListOperationsRequest {
        name: "operations".to_owned(),
        filter: filter.to_owned(),
        page_size: 1,
        page_token: page_token.to_owned(),
        return_partial_success: false,
    };

    let mut queued = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_operations(app.as_admin(list("state = QUEUED AND kind = IMPORT_TICKETS", &token)))
            .await
            .unwrap()
            .into_inner();
        queued.extend(page.operations.into_iter().map(|operation| operation.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(queued, [names[2].clone(), names[1].clone()], "newest first");
    let cancelled = client
        .list_operations(app.as_admin(list("done = true", "")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.operations.len(), 1);
    assert_eq!(cancelled.operations[0].name, names[0]);

    // A token is bound to its filter and account.
    let first = client
        .list_operations(app.as_admin(list("state = QUEUED", "")))
        .await
        .unwrap()
        .into_inner();
    let reused = client
        .list_operations(app.as_admin(list("state = CANCELLED", &first.next_page_token)))
        .await
        .expect_err("another filter's token");
    assert_eq!(reused.code(), tonic::Code::InvalidArgument);
    let bad = client
        .list_operations(app.as_admin(list("owner = me", "")))
        .await
        .expect_err("an unknown field");
    assert_eq!(crate::support::violated_fields(&bad), ["filter"]);
}

#[tokio::test]
async fn wait_operation_answers_once_the_operation_is_done() {
    let app = spawn().await;
    let accepted = import(
        &app,
        v1::ImportFormat::Csv,
        csv_of("wait", 15, "a@example.com"),
    )
    .await;

    let waited = operations(&app)
        .wait_operation(app.as_admin(WaitOperationRequest {
            name: accepted.name.clone(),
            timeout: Some(prost_types::Duration {
                seconds: 25,
                nanos: 0,
            }),
        }))
        .await
        .expect("WaitOperation")
        .into_inner();

    assert!(waited.done);
    assert_eq!(response(&waited).rows_imported, 15);
}

#[tokio::test]
async fn sigkill_mid_import_then_a_restart_imports_every_row_exactly_once() {
    let database = TestDatabase::create().await;
    // The same keys across the restart: the admin's session stays valid.
    let redis_prefix = format!("supportdesk-test:{}:", uuid::Uuid::now_v7().simple());
    let settings = [
        ("IMPORT_BATCH_ROWS", "10"),
        ("OPERATION_LEASE_MS", "3000"),
        ("OPERATION_POLL_INTERVAL_MS", "200"),
        ("MAX_OPEN_TICKETS_PER_REQUESTER", "1000"),
        ("REDIS_KEY_PREFIX", redis_prefix.as_str()),
    ];
    let first = Running::start(&database, &settings);
    let channel = first.channel().await;
    let admin = sign_up_through(&channel).await;
    let mut tickets = TicketServiceClient::new(channel.clone());
    tickets
        .create_ticket(admin.request(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: "before".to_owned(),
                description: "d".to_owned(),
                requester_email: "held@example.com".to_owned(),
                ..Default::default()
            }),
        }))
        .await
        .expect("the held requester exists");
    let held = lock_requester(&database, "held@example.com").await;

    let accepted = import_as(
        &tickets,
        &admin,
        v1::ImportFormat::Csv,
        csv_blocked_after("crash", 30),
    )
    .await;
    let rows_read =
        || async { count_of(&database, "SELECT rows_read AS count FROM operations").await };
    // Three batches commit; the fourth waits inside its transaction when the process dies.
    wait_until(
        "three batches commit and the fourth waits",
        PATIENCE,
        || async { rows_read().await == 30 && backends_waiting_on_locks(&database).await > 0 },
    )
    .await;
    first.kill();
    drop(held);
    assert_eq!(rows_read().await, 30, "the batch in flight was rolled back");
    assert_eq!(tickets_named(&database, "crash").await, (30, 30));

    let second = Running::start(&database, &settings);
    let client = OperationsClient::new(second.channel().await);
    let finished = done_through(&client, &admin, &accepted.name).await;

    let result = response(&finished);
    assert_eq!((result.rows_imported, result.rows_failed), (60, 0));
    assert_eq!(metadata(&finished).rows_read, 60);
    assert_eq!(tickets_named(&database, "crash").await, (60, 60));
    assert!(
        count_of(
            &database,
            "SELECT attempts::bigint AS count FROM operations"
        )
        .await
            >= 2,
        "a second worker resumed it"
    );
    drop(second);
}

#[tokio::test]
async fn an_import_over_rest_answers_202_and_polling_through_envoy_renders_the_typed_any_fields() {
    let app = spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();

    let accepted = http
        .post(envoy.url("/v1/tickets:import"))
        .bearer_auth(&app.admin.access_token)
        .json(&json!({
            "format": "IMPORT_FORMAT_CSV",
            "content": csv_of("rest", 12, "jane@example.com"),
        }))
        .send()
        .await
        .expect("POST /v1/tickets:import");
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let body: Value = accepted.json().await.expect("JSON");
    let name = body["name"].as_str().expect("a name").to_owned();
    assert_eq!(
        body["metadata"]["@type"],
        "type.googleapis.com/supportdesk.v1.ImportTicketsMetadata"
    );
    assert_eq!(body["metadata"]["rowsTotal"], "12");

    let started = tokio::time::Instant::now();
    let last = loop {
        let response = http
            .get(envoy.url(&format!("/v1/{name}")))
            .bearer_auth(&app.admin.access_token)
            .send()
            .await
            .expect("GET /v1/operations/{id}");
        assert_eq!(response.status(), StatusCode::OK);
        let polled: Value = response.json().await.expect("JSON");
        if polled["done"] == true {
            break polled;
        }
        assert!(started.elapsed() < PATIENCE, "not done over REST in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(last["metadata"]["state"], "OPERATION_STATE_SUCCEEDED");
    assert_eq!(last["metadata"]["percent"], 100);
    assert_eq!(
        last["response"]["@type"],
        "type.googleapis.com/supportdesk.v1.ImportTicketsResponse"
    );
    assert_eq!(last["response"]["rowsImported"], "12");

    let listed: Value = http
        .get(envoy.url("/v1/operations?filter=state%3DSUCCEEDED"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("GET /v1/operations")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed["operations"][0]["name"], name.as_str());

    let stranger = app.sign_up_another_account().await;
    let hidden = http
        .get(envoy.url(&format!("/v1/{name}")))
        .bearer_auth(&stranger.access_token)
        .send()
        .await
        .expect("GET as another account");
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    let cancelled = http
        .post(envoy.url(&format!("/v1/{name}:cancel")))
        .bearer_auth(&stranger.access_token)
        .json(&json!({}))
        .send()
        .await
        .expect("POST :cancel as another account");
    assert_eq!(cancelled.status(), StatusCode::NOT_FOUND);

    let deleted = http
        .delete(envoy.url(&format!("/v1/{name}")))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("DELETE /v1/operations/{id}");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
}

/// An operation run by an instance whose clock runs two hours ahead is dated by PostgreSQL's
/// clock, as its creation and lease are: done after it was created, not two hours in the future.
#[tokio::test]
async fn an_import_finished_by_an_instance_whose_clock_runs_ahead_is_dated_by_postgresqls_clock() {
    let app = TestApp::spawn().await;
    let accepted = import(
        &app,
        v1::ImportFormat::Csv,
        csv_of("dated", 3, "a@example.com"),
    )
    .await;
    let _ahead = Running::start_with_clock(
        &app.database,
        &[
            ("IMPORT_BATCH_ROWS", "10"),
            ("OPERATION_POLL_INTERVAL_MS", "100"),
        ],
        Some("+2h"),
    );
    let finished = done(&app, &app.admin, &accepted.name).await;
    assert_eq!(response(&finished).rows_imported, 3);
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM operations WHERE state = 'succeeded' \
             AND done_at BETWEEN created_at AND now() AND updated_at = done_at"
        )
        .await,
        1,
        "done and last updated by PostgreSQL's clock"
    );
}
