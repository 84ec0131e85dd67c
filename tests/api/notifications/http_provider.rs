//! The HTTP email provider (`EMAIL_PROVIDER=http`) end to end, against the email API simulator:
//! a notification delivered with both parts and its identity headers under its own idempotency
//! key; a 5xx retried with the same key into one email; a 429's `retry-after` honoured by the
//! queue; an answer lost after the email was accepted retried into one email; a request left
//! without an answer recorded as an unknown outcome and sent again with the same key and the same
//! bytes; a 422 dead at once.

use std::time::Duration;

use diesel::sql_types::{Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use payment_simulator::email::{EmailFaultAction, EmailFaultRule};
use uuid::Uuid;

use super::notifications_in;
use crate::support::email_api::{send_through, start_email_api};
use crate::support::{PATIENCE, TestApp, count_of, wait_until};

/// The one notification of a test, as stored.
#[derive(Debug, diesel::QueryableByName)]
struct Stored {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Text)]
    message_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    provider_message_id: Option<String>,
}

async fn the_notification(app: &TestApp) -> Stored {
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "SELECT id, attempts, last_error, message_id, provider_message_id \
         FROM notifications",
    )
    .get_result(&mut conn)
    .await
    .expect("one notification")
}

/// PostgreSQL's clock now, as text the next statement reads back as a `timestamptz`.
async fn database_now(app: &TestApp) -> String {
    #[derive(diesel::QueryableByName)]
    struct Now {
        #[diesel(sql_type = Text)]
        now: String,
    }
    let mut conn = app.database.connect().await;
    diesel::sql_query("SELECT now()::text AS now")
        .get_result::<Now>(&mut conn)
        .await
        .unwrap()
        .now
}

#[tokio::test]
async fn a_notification_is_delivered_through_the_api_with_both_parts_its_message_id_and_its_own_key()
 {
    let api = start_email_api().await;
    let app = TestApp::spawn_with(|settings| send_through(settings, &api)).await;
    let ticket = app
        .ticket("Printer <on> fire")
        .requester("ann@example.com")
        .create()
        .await;

    wait_until("the notification is marked sent", PATIENCE, async || {
        notifications_in(&app, "sent").await == 1
    })
    .await;
    let stored = the_notification(&app).await;
    let emails = api.emails();
    assert_eq!(emails.len(), 1);
    let email = &emails[0];
    assert_eq!(email.to, ["ann@example.com"]);
    assert_eq!(email.from, "Example Support <support@desk.example.com>");
    assert_eq!(email.reply_to, ["replies@desk.example.com"]);
    assert!(email.subject.contains(&ticket.id), "{}", email.subject);
    let text = email.text.as_deref().expect("a text part");
    assert!(text.contains("Printer <on> fire"), "{text}");
    let html = email.html.as_deref().expect("an HTML part");
    assert!(html.contains("Printer &lt;on&gt; fire"), "{html}");
    assert_eq!(email.headers["Message-ID"], stored.message_id);
    let root = format!("<ticket-{}@desk.example.com>", ticket.id);
    assert_eq!(email.headers["In-Reply-To"], root);
    assert_eq!(email.headers["References"], root);
    assert!(!email.headers.contains_key("List-Unsubscribe"));
    // What the provider's bounce and complaint events give back, to find the notification.
    assert_eq!(email.tags["notification_id"], stored.id.to_string());
    assert_eq!(
        email.idempotency_key.as_deref(),
        Some(format!("notification-{}", stored.id).as_str())
    );
    assert_eq!(
        stored.provider_message_id.as_deref(),
        Some(email.id.as_str())
    );
    assert_eq!(stored.attempts, 1);
}

/// One form of an address for every provider: the email API is sent an international domain as
/// IDNA, as the SMTP relay is
/// (`notifications::a_requester_at_an_international_domain_is_sent_to_its_idna_form_by_a_relay_without_smtputf8`),
/// so what the provider reports back (bounces, complaints, its logs) names the address the relay
/// would have been given. Before, the API was sent the Unicode form.
#[tokio::test]
async fn a_requester_at_an_international_domain_is_sent_through_the_api_to_its_idna_form() {
    let api = start_email_api().await;
    let app = TestApp::spawn_with(|settings| send_through(settings, &api)).await;
    app.ticket("an international domain")
        .requester("jane@bücher.example")
        .create()
        .await;

    wait_until("the notification is marked sent", PATIENCE, async || {
        notifications_in(&app, "sent").await == 1
    })
    .await;
    let emails = api.emails();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].to, ["jane@xn--bcher-kva.example"]);
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM notifications \
             WHERE recipient_address = 'jane@bücher.example' AND attempts = 1",
        )
        .await,
        1,
        "the address is stored as it was given"
    );
}

#[tokio::test]
async fn a_500_then_success_records_one_email_under_one_idempotency_key() {
    let api = start_email_api().await;
    api.add_fault(EmailFaultRule::new(
        EmailFaultAction::ServerError { status: 500 },
        1,
    ))
    .unwrap();
    let app = TestApp::spawn_with(|settings| send_through(settings, &api)).await;
    app.ticket("a flaky provider")
        .requester("bo@example.com")
        .create()
        .await;

    wait_until("the notification is marked sent", PATIENCE, async || {
        notifications_in(&app, "sent").await == 1
    })
    .await;
    let requests = api.requests();
    assert_eq!(
        requests
            .iter()
            .map(|request| request.status)
            .collect::<Vec<_>>(),
        [Some(500), Some(200)]
    );
    let stored = the_notification(&app).await;
    let key = format!("notification-{}", stored.id);
    assert!(
        requests
            .iter()
            .all(|request| request.idempotency_key.as_deref() == Some(key.as_str())),
        "{requests:?}"
    );
    assert_eq!(api.emails().len(), 1, "one email");
    assert_eq!(stored.attempts, 1, "retried within the send, one claim");
}

#[tokio::test]
async fn a_429_makes_the_notification_due_again_no_earlier_than_its_retry_after() {
    let api = start_email_api().await;
    api.add_fault(EmailFaultRule::new(
        EmailFaultAction::RateLimit {
            retry_after_secs: 30,
        },
        1,
    ))
    .unwrap();
    let app = TestApp::spawn_with(|settings| send_through(settings, &api)).await;
    let before = database_now(&app).await;
    app.ticket("too many requests")
        .requester("cy@example.com")
        .create()
        .await;

    wait_until("the 429 is recorded", PATIENCE, async || {
        the_notification(&app).await.last_error.is_some()
    })
    .await;
    let stored = the_notification(&app).await;
    let error = stored.last_error.unwrap_or_default();
    assert!(
        error.contains("429") && error.contains("rate_limit_exceeded"),
        "{error}"
    );
    // The queue's own backoff here is at most 200 ms: only the provider's 30 s explain this.
    let not_before = count_of(
        &app.database,
        &format!(
            "SELECT count(*) AS count FROM notifications \
             WHERE next_attempt_at >= '{before}'::timestamptz + interval '30 seconds' \
               AND next_attempt_at < '{before}'::timestamptz + interval '90 seconds'"
        ),
    )
    .await;
    assert_eq!(
        not_before, 1,
        "due again 30 s after the attempt, not sooner"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.requests().len(), 1, "no attempt before the time is up");

    // Once the time has come (moved here rather than waited for), it is sent.
    count_of(
        &app.database,
        "WITH due AS (UPDATE notifications SET next_attempt_at = now() RETURNING 1) \
         SELECT count(*) AS count FROM due",
    )
    .await;
    wait_until("the notification is marked sent", PATIENCE, async || {
        notifications_in(&app, "sent").await == 1
    })
    .await;
    assert_eq!(api.emails().len(), 1);
}

#[tokio::test]
async fn an_answer_lost_after_the_provider_accepted_is_retried_with_the_same_key_into_one_email() {
    let api = start_email_api().await;
    api.add_fault(EmailFaultRule::new(EmailFaultAction::AcceptThenDrop, 1))
        .unwrap();
    let app = TestApp::spawn_with(|settings| send_through(settings, &api)).await;
    app.ticket("a lost answer")
        .requester("dee@example.com")
        .create()
        .await;

    wait_until("the notification is marked sent", PATIENCE, async || {
        notifications_in(&app, "sent").await == 1
    })
    .await;
    let requests = api.requests();
    assert_eq!(
        requests
            .iter()
            .map(|request| (request.status, request.replayed))
            .collect::<Vec<_>>(),
        [(None, false), (Some(200), true)],
        "accepted without an answer, then the stored answer replayed"
    );
    let emails = api.emails();
    assert_eq!(emails.len(), 1, "one email");
    assert_eq!(
        the_notification(&app).await.provider_message_id.as_deref(),
        Some(emails[0].id.as_str())
    );
}

#[tokio::test]
async fn a_request_left_without_an_answer_is_sent_again_once_with_the_same_key_and_the_same_bytes()
{
    let api = start_email_api().await;
    // The provider holds the first request three seconds, far past the send's one attempt of
    // half a second: that send ends not knowing whether the email exists.
    api.add_fault(EmailFaultRule::new(
        EmailFaultAction::Latency { millis: 3_000 },
        1,
    ))
    .unwrap();
    let app = TestApp::spawn_with(|settings| {
        send_through(settings, &api);
        let provider = crate::support::email_api::api_settings(settings);
        provider.timeout = Duration::from_millis(500);
        provider.max_attempts = 1;
        settings.notifications.workers.lease = Duration::from_secs(2);
    })
    .await;
    app.ticket("an answer that never came")
        .requester("fay@example.com")
        .create()
        .await;

    wait_until("the notification is marked sent", PATIENCE, async || {
        notifications_in(&app, "sent").await == 1
    })
    .await;
    #[derive(diesel::QueryableByName, Debug)]
    struct Unconfirmed {
        #[diesel(sql_type = Integer)]
        unconfirmed_sends: i32,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        handed_over: bool,
    }
    let unconfirmed: Unconfirmed = diesel::sql_query(
        "SELECT unconfirmed_sends, handed_over_attempt IS NOT NULL AS handed_over \
         FROM notifications",
    )
    .get_result(&mut app.database.connect().await)
    .await
    .unwrap();
    assert_eq!(
        (unconfirmed.unconfirmed_sends, unconfirmed.handed_over),
        (1, false),
        "the first send's outcome recorded unknown, the last one's settled: {unconfirmed:?}"
    );
    let stored = the_notification(&app).await;
    let requests = api.requests();
    assert!(requests.len() >= 2, "{requests:?}");
    let key = format!("notification-{}", stored.id);
    for request in &requests {
        assert_eq!(request.idempotency_key.as_deref(), Some(key.as_str()));
        assert_eq!(
            request.body, requests[0].body,
            "every request carries the same bytes"
        );
    }
    let emails = api.emails();
    assert_eq!(emails.len(), 1, "one email");
    assert_eq!(
        stored.provider_message_id.as_deref(),
        Some(emails[0].id.as_str())
    );
}

#[tokio::test]
async fn a_422_makes_the_notification_dead_at_once_with_the_providers_reason_and_it_is_not_retried()
{
    let api = start_email_api().await;
    api.add_fault(EmailFaultRule::new(
        EmailFaultAction::Error {
            status: 422,
            name: "validation_error".to_owned(),
            message: "Invalid `to` field.".to_owned(),
        },
        1,
    ))
    .unwrap();
    let app = TestApp::spawn_with(|settings| send_through(settings, &api)).await;
    app.ticket("refused")
        .requester("eve@example.com")
        .create()
        .await;

    wait_until("the notification is dead", PATIENCE, async || {
        notifications_in(&app, "dead").await == 1
    })
    .await;
    let stored = the_notification(&app).await;
    assert_eq!(stored.attempts, 1);
    assert_eq!(
        stored.last_error.as_deref(),
        Some("email API: HTTP 422 validation_error: Invalid `to` field.")
    );
    // The fault is used up: a retry would now succeed. None comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.requests().len(), 1);
    assert!(api.emails().is_empty());
}

#[tokio::test]
async fn a_send_the_provider_holds_past_the_drain_is_cut_and_given_back_before_the_instance_stops()
{
    let api = start_email_api().await;
    // The provider holds the first request far longer than the drain lasts.
    api.add_fault(EmailFaultRule::new(
        EmailFaultAction::Latency { millis: 20_000 },
        1,
    ))
    .unwrap();
    let mut app = TestApp::spawn_with(|settings| {
        send_through(settings, &api);
        let provider = crate::support::email_api::api_settings(settings);
        provider.timeout = Duration::from_secs(30);
        settings.notifications.workers.lease = Duration::from_secs(60);
        settings.server.shutdown_delay = Duration::ZERO;
        settings.server.shutdown_drain_timeout = Duration::from_secs(2);
    })
    .await;
    app.ticket("a slow provider")
        .requester("di@example.com")
        .create()
        .await;
    wait_until(
        "a worker has claimed the notification",
        PATIENCE,
        async || {
            count_of(
                &app.database,
                "SELECT count(*) AS count FROM notifications WHERE lease_expires_at > now()",
            )
            .await
                == 1
        },
    )
    .await;

    app.stop().await.expect("a clean stop");

    // Given back within the drain, not left leased for the rest of its minute: another
    // instance may take it at once.
    #[derive(diesel::QueryableByName, Debug, PartialEq, Eq)]
    struct Given {
        #[diesel(sql_type = Text)]
        state: String,
        #[diesel(sql_type = Integer)]
        attempts: i32,
        #[diesel(sql_type = Nullable<Text>)]
        last_error: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        leased: bool,
    }
    let mut conn = app.database.connect().await;
    let given: Given = diesel::sql_query(
        "SELECT state, attempts, last_error, lease_expires_at IS NOT NULL AS leased \
         FROM notifications",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    // The request went: an unknown outcome, the first (sent again at most once).
    let cut = Given {
        state: "received".to_owned(),
        attempts: 1,
        last_error: Some(
            "outcome unknown: the instance stopped before the email provider answered".to_owned(),
        ),
        leased: false,
    };
    // Stopped before the send began (between the claim and the bulkhead), it is given back
    // uncounted instead.
    let untried = Given {
        state: "received".to_owned(),
        attempts: 0,
        last_error: None,
        leased: false,
    };
    assert!(given == cut || given == untried, "{given:?}");
}
