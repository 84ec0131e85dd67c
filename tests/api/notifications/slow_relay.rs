//! A relay slow to answer the end of a message's data (RFC 5321 §4.5.3.2.6 gives that reply ten
//! minutes, and warns that a client giving up sooner makes the relay deliver copies): the worker
//! waits for the reply up to `SMTP_DATA_REPLY_TIMEOUT_SECS`, under a lease extended for the wait
//! when the message is handed over, and a message whose outcome it could not learn is sent again
//! at most once, then ends `dead` as an unknown outcome. Each test counts the copies the relay
//! kept (aiosmtpd's maildir) and reads the outcome in PostgreSQL.

use std::time::Duration;

use diesel::sql_types::{Integer, Nullable, Text};
use diesel_async::RunQueryDsl;

use super::notifications_in;
use crate::support::smtp::{SmtpServer, send_to, smtp_settings};
use crate::support::{PATIENCE, TestApp, wait_until};

/// The one notification of a test, as PostgreSQL has it.
#[derive(Debug, diesel::QueryableByName)]
struct Stored {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Integer)]
    unconfirmed_sends: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
}

async fn the_notification(app: &TestApp) -> Stored {
    diesel::sql_query("SELECT state, attempts, unconfirmed_sends, last_error FROM notifications")
        .get_result(&mut app.database.connect().await)
        .await
        .expect("one notification")
}

/// Whether the one notification has reached an end state (`sent` or `dead`).
async fn settled(app: &TestApp) -> bool {
    notifications_in(app, "sent").await + notifications_in(app, "dead").await == 1
}

#[tokio::test]
async fn a_relay_that_answers_the_end_of_the_data_after_the_old_cut_gets_one_copy_and_it_is_sent() {
    // The relay keeps the message at once and answers three seconds later: past three quarters
    // of a two-second lease, where a send used to be cut off (and sent again, up to
    // NOTIFICATION_MAX_ATTEMPTS copies), and well within the reply's bound.
    let smtp = SmtpServer::start_slow_to_confirm(Duration::from_secs(3)).await;
    let app = TestApp::spawn_with(|settings| {
        send_to(settings, &smtp);
        settings.notifications.workers.lease = Duration::from_secs(2);
    })
    .await;
    app.ticket("a slow relay")
        .requester("slow@example.com")
        .create()
        .await;

    wait_until(
        "the notification is settled (or the relay got a second copy)",
        PATIENCE,
        async || settled(&app).await || smtp.received().len() > 1,
    )
    .await;
    assert_eq!(smtp.received().len(), 1, "the relay got one copy");
    let stored = the_notification(&app).await;
    assert_eq!(
        (
            stored.state.as_str(),
            stored.attempts,
            stored.unconfirmed_sends
        ),
        ("sent", 1, 0),
        "{stored:?}"
    );
}

#[tokio::test]
async fn a_relay_that_never_answers_the_end_of_the_data_gets_at_most_two_copies_and_the_notification_ends_dead_as_an_unknown_outcome()
 {
    // The relay keeps every message at once and answers only after a minute: far past the
    // reply's bound of one second, so no attempt ever learns what became of its message.
    let smtp = SmtpServer::start_slow_to_confirm(Duration::from_secs(60)).await;
    let lease = Duration::from_secs(2);
    let app = TestApp::spawn_with(|settings| {
        send_to(settings, &smtp);
        settings.notifications.workers.lease = lease;
        smtp_settings(settings).data_reply_timeout = Duration::from_secs(1);
    })
    .await;
    app.ticket("a relay that never answers")
        .requester("silent@example.com")
        .create()
        .await;

    wait_until(
        "the notification is settled (or the relay got a third copy)",
        PATIENCE,
        async || settled(&app).await || smtp.received().len() > 2,
    )
    .await;
    assert_eq!(
        smtp.received().len(),
        2,
        "the message and one resend after its unknown outcome"
    );
    let stored = the_notification(&app).await;
    assert_eq!(
        (
            stored.state.as_str(),
            stored.attempts,
            stored.unconfirmed_sends
        ),
        ("dead", 2, 2),
        "{stored:?}"
    );
    assert!(
        stored
            .last_error
            .as_deref()
            .is_some_and(|error| error.starts_with("outcome unknown:")),
        "{stored:?}"
    );
    // No third copy, however long it waits: an absence is shown only by waiting past the leases
    // a worker could still have claimed it under.
    tokio::time::sleep(lease * 2).await;
    assert_eq!(smtp.received().len(), 2, "never a third copy");
    assert_eq!(the_notification(&app).await.state, "dead");
}
