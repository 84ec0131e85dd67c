//! A worker sends only what PostgreSQL has committed it to send. A claim's rows reach its worker
//! with the commit's answer, and also when PostgreSQL is stopped at once while that commit waits
//! (each connection's farewell notice flushes what was pending): a worker acting on such rows
//! sent a message whose claim crash recovery could forget, and sent it again when the row was
//! claimed anew (found by the chaos run). Here the commit is held by a synchronous standby that
//! never comes, PostgreSQL is stopped at once, and the message must arrive exactly once.

use std::time::Duration;

use diesel::sql_types::{Integer, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use secrecy::SecretString;
use uuid::Uuid;

use crate::support::replica::{ReplicaPair, connect};
use crate::support::smtp::{SmtpServer, send_to};
use crate::support::{PATIENCE, TestApp, wait_until};

#[derive(diesel::QueryableByName, Debug, PartialEq, Eq)]
struct Row {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

#[derive(diesel::QueryableByName)]
struct Waiting {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    count: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_commit_postgresql_never_confirmed_sends_nothing_and_the_message_goes_once() {
    let pair = tokio::task::block_in_place(|| ReplicaPair::start("claim-commit"));
    let database = pair.migrated_database("claims").await;
    let primary = pair.primary_url(&database);
    let smtp = SmtpServer::start_new().await;
    let app = TestApp::spawn_with(|settings| {
        send_to(settings, &smtp);
        settings.database.url = SecretString::from(primary.clone());
        settings.notifications.workers.lease = Duration::from_secs(1);
    })
    .await;
    app.wait_for_health("Serving", PATIENCE).await;
    app.ticket("a first ticket")
        .requester("gil@example.com")
        .create()
        .await;
    smtp.wait_for(1).await;

    // From now on every commit of the service waits for a synchronous standby that never
    // connects; this test's own session commits locally.
    let mut test = connect(&primary).await;
    for statement in [
        "ALTER SYSTEM SET synchronous_standby_names = 'nobody'",
        "SELECT pg_reload_conf()",
        "SET synchronous_commit = local",
    ] {
        diesel::sql_query(statement)
            .execute(&mut test)
            .await
            .expect(statement);
    }
    let id = Uuid::now_v7();
    let message_id = format!("<{id}@desk.example.com>");
    diesel::sql_query(
        "INSERT INTO notifications \
             (id, account_id, kind, recipient_user_id, recipient_address, data, message_id, \
              ticket_id) \
         SELECT $1, account_id, kind, recipient_user_id, recipient_address, data, $2, ticket_id \
         FROM notifications LIMIT 1",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(&message_id)
    .execute(&mut test)
    .await
    .expect("a second notification, due now");

    // A worker claims it; the claim's commit waits for the standby.
    wait_until("the claim's commit waits", PATIENCE, async || {
        diesel::sql_query(
            "SELECT count(*) AS count FROM pg_stat_activity \
             WHERE wait_event = 'SyncRep' AND query LIKE 'UPDATE notifications%'",
        )
        .get_result::<Waiting>(&mut connect(&primary).await)
        .await
        .expect("pg_stat_activity")
        .count
            == 1
    })
    .await;
    drop(test);
    tokio::task::block_in_place(|| {
        pair.stop_primary();
        pair.start_primary_with("synchronous_standby_names=''");
    });

    // The claim is in PostgreSQL (a synchronous standby is waited for after the local flush):
    // once its lease is over a worker claims it again and sends it, once.
    let stored = async || -> Row {
        diesel::sql_query("SELECT state, attempts FROM notifications WHERE id = $1")
            .bind::<SqlUuid, _>(id)
            .get_result(&mut connect(&primary).await)
            .await
            .expect("the notification")
    };
    wait_until("the notification is sent", PATIENCE, async || {
        stored().await.state == "sent"
    })
    .await;
    let row = stored().await;
    assert_eq!(
        row,
        Row {
            state: "sent".to_owned(),
            attempts: 2
        },
        "sent by the second claim: the first was never confirmed"
    );
    let copies = smtp
        .received()
        .iter()
        .filter(|message| message.header("Message-ID").trim() == message_id)
        .count();
    assert_eq!(copies, 1, "the message was received {copies} times");
}
