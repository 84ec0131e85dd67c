//! The real binary killed with SIGKILL around a notification's send: after the commit that wrote
//! it, before any send; and while the SMTP conversation is open. After a restart each is
//! delivered, once. And stopped (SIGTERM) while the relay has the message but has not said so:
//! the send is finished and recorded, never given back to be sent again.

use diesel::sql_types::{Integer, Text};
use diesel_async::RunQueryDsl;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;

use crate::support::binary::{Running, sign_up_through};
use crate::support::smtp::SmtpServer;
use crate::support::{PATIENCE, TestDatabase, count_of, valid_create_request, wait_until};

/// The binary's settings that send to `smtp_port`, with a lease short enough for a restart to
/// take a killed worker's notification over within the test's patience.
fn sending_to(smtp_port: u16, redis_prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("EMAIL_PROVIDER", "smtp".to_owned()),
        ("SMTP_HOST", "127.0.0.1".to_owned()),
        ("SMTP_PORT", smtp_port.to_string()),
        ("SMTP_TLS", "none".to_owned()),
        (
            "EMAIL_FROM",
            "Support <support@desk.example.com>".to_owned(),
        ),
        ("PUBLIC_BASE_URL", "https://desk.example.com/".to_owned()),
        ("NOTIFICATION_LEASE_SECS", "4".to_owned()),
        ("NOTIFICATION_RETRY_BASE_MS", "100".to_owned()),
        ("NOTIFICATION_RETRY_MAX_MS", "500".to_owned()),
        ("NOTIFICATION_POLL_INTERVAL_MS", "100".to_owned()),
        ("EMAIL_BREAKER_COOL_DOWN_MS", "200".to_owned()),
        ("SHUTDOWN_DELAY_MS", "0".to_owned()),
        ("REDIS_KEY_PREFIX", redis_prefix.to_owned()),
    ]
}

fn start(database: &TestDatabase, settings: &[(&'static str, String)]) -> Running {
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect();
    Running::start(database, &settings)
}

#[derive(diesel::QueryableByName, Debug, PartialEq, Eq)]
struct Acknowledgement {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

/// The acknowledgements in the outbox, as PostgreSQL has them.
async fn acknowledgements(database: &TestDatabase) -> Vec<Acknowledgement> {
    let mut conn = database.connect().await;
    diesel::sql_query(
        "SELECT state, attempts FROM notifications WHERE kind = 'ticket_created' ORDER BY id",
    )
    .load(&mut conn)
    .await
    .expect("the outbox reads")
}

/// Signs an account up through `running` and creates one ticket: its acknowledgement is
/// committed with it.
async fn create_a_ticket(running: &Running) {
    let channel = running.channel().await;
    running.wait_for_health("Serving").await;
    let admin = sign_up_through(&channel).await;
    TicketServiceClient::new(channel)
        .create_ticket(admin.request(valid_create_request("Crash course")))
        .await
        .expect("created");
}

#[tokio::test]
async fn an_acknowledgement_committed_before_a_sigkill_is_delivered_once_after_the_restart() {
    let database = TestDatabase::create().await;
    // No SMTP server yet: the acknowledgement is committed and cannot be sent.
    let mut smtp = SmtpServer::reserve();
    let settings = sending_to(
        smtp.port,
        &format!("supportdesk-test:{}:", uuid::Uuid::now_v7().simple()),
    );
    let running = start(&database, &settings);
    create_a_ticket(&running).await;
    let waiting = acknowledgements(&database).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].state, "received");
    running.kill();

    smtp.start().await;
    let _restarted = start(&database, &settings);
    wait_until("the acknowledgement is sent", PATIENCE, async || {
        acknowledgements(&database).await[0].state == "sent"
    })
    .await;
    let received = smtp.wait_for(1).await;
    assert_eq!(received.len(), 1, "delivered once");
    assert_eq!(
        count_of(&database, "SELECT count(*) AS count FROM notifications").await,
        1
    );
}

#[tokio::test]
async fn an_acknowledgement_whose_smtp_conversation_a_sigkill_cut_is_delivered_once_after_the_restart()
 {
    let database = TestDatabase::create().await;
    let smtp = SmtpServer::start_stalling().await;
    let settings = sending_to(
        smtp.port,
        &format!("supportdesk-test:{}:", uuid::Uuid::now_v7().simple()),
    );
    let running = start(&database, &settings);
    create_a_ticket(&running).await;
    wait_until(
        "the worker is in the middle of the conversation",
        PATIENCE,
        async || smtp.stalled(),
    )
    .await;
    running.kill();
    assert!(
        smtp.received().is_empty(),
        "nothing was accepted before the kill"
    );

    // The restarted instance takes the notification over once the killed worker's lease
    // expires, and sends it again on a new conversation.
    let _restarted = start(&database, &settings);
    wait_until("the acknowledgement is sent", PATIENCE, async || {
        acknowledgements(&database).await[0].state == "sent"
    })
    .await;
    let received = smtp.wait_for(1).await;
    assert_eq!(received.len(), 1, "delivered once");
    assert_eq!(
        acknowledgements(&database).await,
        [Acknowledgement {
            state: "sent".to_owned(),
            attempts: 2
        }],
        "the cut attempt and the one that sent"
    );
}

#[tokio::test]
async fn a_send_under_way_when_the_instance_is_stopped_is_finished_and_recorded_not_sent_again() {
    let database = TestDatabase::create().await;
    // The relay keeps the message at once and says so only a second later.
    let smtp = SmtpServer::start_slow_to_confirm(std::time::Duration::from_secs(1)).await;
    let settings = sending_to(
        smtp.port,
        &format!("supportdesk-test:{}:", uuid::Uuid::now_v7().simple()),
    );
    let running = start(&database, &settings);
    create_a_ticket(&running).await;
    wait_until(
        "the relay has the message and has not answered yet",
        PATIENCE,
        async || smtp.stalled(),
    )
    .await;
    running.terminate();
    let (code, _, _) = running.wait();
    assert_eq!(code, Some(0), "a clean stop");

    // The stopping worker waited for the answer and recorded the send: nothing is left for a
    // later instance to send again (given back uncounted, it would be).
    assert_eq!(
        acknowledgements(&database).await,
        [Acknowledgement {
            state: "sent".to_owned(),
            attempts: 1
        }],
        "the send is recorded as the one attempt it was"
    );
    assert_eq!(smtp.received().len(), 1, "delivered once");
}

#[tokio::test]
async fn a_message_the_relay_kept_before_a_sigkill_is_sent_again_at_most_once_and_then_ends_dead_as_an_unknown_outcome()
 {
    let database = TestDatabase::create().await;
    // The relay keeps every message at once and answers only after a minute: neither the
    // killed worker nor the one after it learns what became of its copy.
    let smtp = SmtpServer::start_slow_to_confirm(std::time::Duration::from_secs(60)).await;
    let mut settings = sending_to(
        smtp.port,
        &format!("supportdesk-test:{}:", uuid::Uuid::now_v7().simple()),
    );
    settings.push(("SMTP_DATA_REPLY_TIMEOUT_SECS", "2".to_owned()));
    let running = start(&database, &settings);
    create_a_ticket(&running).await;
    wait_until(
        "the relay has the message and has not answered yet",
        PATIENCE,
        async || smtp.stalled(),
    )
    .await;
    running.kill();

    // The restarted instance finds, in PostgreSQL, that the killed attempt handed the message
    // over: it sends it once more, and when that outcome is unknown too, no more.
    let _restarted = start(&database, &settings);
    wait_until(
        "the acknowledgement is dead (or the relay got a third copy)",
        PATIENCE,
        async || acknowledgements(&database).await[0].state == "dead" || smtp.received().len() > 2,
    )
    .await;
    assert_eq!(
        smtp.received().len(),
        2,
        "the killed attempt's copy and one resend"
    );
    assert_eq!(
        acknowledgements(&database).await,
        [Acknowledgement {
            state: "dead".to_owned(),
            attempts: 2
        }],
    );
    assert_eq!(
        count_of(
            &database,
            "SELECT count(*) AS count FROM notifications \
             WHERE unconfirmed_sends = 2 AND last_error LIKE 'outcome unknown:%'"
        )
        .await,
        1,
        "recorded as an unknown outcome"
    );
}
