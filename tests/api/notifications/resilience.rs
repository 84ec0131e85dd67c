//! A failing email provider, over SMTP and over the API: its circuit breaker opens after the
//! threshold and the queue waits without spending attempts; NotificationService alone goes
//! NOT_SERVING (the server and every other service keep serving, and their RPCs answer); the
//! provider's return closes the breaker and NotificationService serves again without a restart.
//! And the metrics: sends and failures by kind and outcome, the breaker's state, the queue.

use std::time::Duration;

use payment_simulator::email::{EmailFaultAction, EmailFaultRule};

use super::notifications_in;
use crate::support::email_api::{api_settings, send_through, start_email_api};
use crate::support::smtp::{SmtpServer, send_to};
use crate::support::{PATIENCE, Scrape, TestApp, count_of, wait_until, with_metrics};

const NOTIFICATIONS: &str = "supportdesk.v1.NotificationService";
const TICKETS: &str = "supportdesk.v1.TicketService";

fn breaker_state(state: &str) -> String {
    format!(r#"supportdesk_provider_breaker_state{{provider="email",state="{state}"}}"#)
}

/// Every attempt made so far, over all notifications.
async fn attempts(app: &TestApp) -> i64 {
    count_of(
        &app.database,
        "SELECT COALESCE(sum(attempts), 0)::bigint AS count FROM notifications",
    )
    .await
}

/// Waits for NotificationService to report `status`.
async fn wait_for_notification_service(app: &TestApp, status: &str) {
    wait_until(
        &format!("NotificationService reports {status}"),
        PATIENCE,
        async || app.health_of(NOTIFICATIONS).await == status,
    )
    .await;
}

/// While NotificationService is NOT_SERVING, the server and TicketService serve, and tickets
/// are read and created (their notifications stored); and for a while no attempt is made.
async fn only_notifications_are_down(app: &TestApp) {
    assert_eq!(app.health_of("").await, "Serving");
    assert_eq!(app.health_of(TICKETS).await, "Serving");
    let created = app.create_ticket("created while email is down").await;
    app.get_ticket(&created.id)
        .await
        .expect("other RPCs answer while email is down");
    let tried = attempts(app).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        app.health_of(NOTIFICATIONS).await,
        "NotServing",
        "still within the cool-down"
    );
    assert_eq!(
        attempts(app).await,
        tried,
        "nothing is claimed while the breaker is open"
    );
}

#[tokio::test]
async fn without_an_email_provider_notification_service_is_not_serving_and_everything_else_serves()
{
    let app = TestApp::spawn().await;
    app.wait_for_health("Serving", PATIENCE).await;
    assert_eq!(app.health_of(NOTIFICATIONS).await, "NotServing");
    assert_eq!(app.health_of(TICKETS).await, "Serving");
}

#[tokio::test]
async fn a_failing_email_api_opens_the_breaker_takes_only_notification_service_down_and_its_return_closes_it()
 {
    let api = start_email_api().await;
    api.add_fault(EmailFaultRule {
        action: EmailFaultAction::ServerError { status: 503 },
        times: None,
    })
    .unwrap();
    let app = TestApp::spawn_with(|settings| {
        send_through(settings, &api);
        with_metrics(settings);
        api_settings(settings).max_attempts = 1;
        let email = settings.notifications.email.as_mut().unwrap();
        email.breaker_failure_threshold = 2;
        email.breaker_cool_down = Duration::from_secs(3);
    })
    .await;
    app.wait_for_health("Serving", PATIENCE).await;
    assert_eq!(app.health_of(NOTIFICATIONS).await, "Serving");

    app.ticket("email is down")
        .requester("gil@example.com")
        .create()
        .await;
    wait_for_notification_service(&app, "NotServing").await;
    assert_eq!(
        api.requests().len(),
        2,
        "the threshold's two failures, then nothing"
    );
    let scrape = Scrape::of(&app).await;
    assert_eq!(scrape.get(&breaker_state("open")), 1);
    assert_eq!(scrape.get(&breaker_state("closed")), 0);
    only_notifications_are_down(&app).await;
    assert_eq!(notifications_in(&app, "received").await, 2, "both wait");

    api.clear_faults();
    wait_for_notification_service(&app, "Serving").await;
    wait_until("both notifications are sent", PATIENCE, async || {
        notifications_in(&app, "sent").await == 2
    })
    .await;
    assert_eq!(api.emails().len(), 2);
    // The health gates follow the breaker at their own pace: polled, not read once.
    wait_for_notification_service(&app, "Serving").await;
    wait_until("the breaker is closed", PATIENCE, async || {
        Scrape::of(&app).await.get(&breaker_state("closed")) == 1
    })
    .await;
}

#[tokio::test]
async fn an_smtp_server_that_is_down_opens_the_breaker_and_its_return_closes_it_without_a_restart()
{
    let mut smtp = SmtpServer::reserve();
    let app = TestApp::spawn_with(|settings| {
        send_to(settings, &smtp);
        settings
            .notifications
            .email
            .as_mut()
            .unwrap()
            .breaker_cool_down = Duration::from_secs(3);
    })
    .await;
    app.wait_for_health("Serving", PATIENCE).await;
    assert_eq!(app.health_of(NOTIFICATIONS).await, "Serving");

    app.ticket("mail server down")
        .requester("hal@example.com")
        .create()
        .await;
    wait_for_notification_service(&app, "NotServing").await;
    assert_eq!(attempts(&app).await, 3, "the threshold's three failures");
    only_notifications_are_down(&app).await;

    smtp.start().await;
    wait_for_notification_service(&app, "Serving").await;
    wait_until("both notifications are sent", PATIENCE, async || {
        notifications_in(&app, "sent").await == 2
    })
    .await;
    let received = smtp.wait_for(2).await;
    assert_eq!(received.len(), 2, "each delivered once");
    // The health gates follow the breaker at their own pace: polled, not read once.
    wait_for_notification_service(&app, "Serving").await;
}

#[tokio::test]
async fn sends_and_failures_are_counted_by_kind_and_outcome_and_the_breakers_are_exported() {
    let api = start_email_api().await;
    api.add_fault(EmailFaultRule::new(
        EmailFaultAction::ServerError { status: 500 },
        1,
    ))
    .unwrap();
    let app = TestApp::spawn_with(|settings| {
        send_through(settings, &api);
        with_metrics(settings);
        api_settings(settings).max_attempts = 1;
    })
    .await;
    app.ticket("retried once")
        .requester("ivy@example.com")
        .create()
        .await;
    wait_until("the first is sent", PATIENCE, async || {
        notifications_in(&app, "sent").await == 1
    })
    .await;
    api.add_fault(EmailFaultRule::new(
        EmailFaultAction::Error {
            status: 422,
            name: "validation_error".to_owned(),
            message: "no".to_owned(),
        },
        1,
    ))
    .unwrap();
    app.ticket("refused")
        .requester("jo@example.com")
        .create()
        .await;
    wait_until("the second is dead", PATIENCE, async || {
        notifications_in(&app, "dead").await == 1
    })
    .await;

    let scrape = Scrape::of(&app).await;
    let sent = scrape.family("supportdesk_notifications_sent_total");
    assert_eq!(
        sent.into_iter().collect::<Vec<_>>(),
        [(
            r#"supportdesk_notifications_sent_total{kind="ticket_created"}"#,
            1
        )]
    );
    let mut failed: Vec<_> = scrape
        .family("supportdesk_notifications_failed_total")
        .into_iter()
        .collect();
    failed.sort_unstable();
    assert_eq!(
        failed,
        [
            (
                r#"supportdesk_notifications_failed_total{kind="ticket_created",outcome="permanent"}"#,
                1
            ),
            (
                r#"supportdesk_notifications_failed_total{kind="ticket_created",outcome="retry"}"#,
                1
            ),
        ]
    );
    assert_eq!(scrape.get(&breaker_state("closed")), 1);
    assert_eq!(
        scrape.get(r#"supportdesk_provider_breaker_state{provider="payments",state="closed"}"#),
        1
    );
}

#[tokio::test]
async fn the_queue_sampler_reports_how_many_notifications_wait_and_how_long_the_oldest_has_been_due()
 {
    let app = TestApp::spawn_with(|settings| {
        with_metrics(settings);
        settings.server.queue_sample_interval = Duration::from_millis(50);
    })
    .await;
    app.create_ticket("held one").await;
    app.create_ticket("held two").await;
    wait_until("the sampler sees both, overdue", PATIENCE, async || {
        let scrape = Scrape::of(&app).await;
        scrape.get(r#"supportdesk_queue_depth{queue="notifications"}"#) == 2
            && scrape
                .0
                .get(r#"supportdesk_queue_oldest_age_seconds{queue="notifications"}"#)
                .is_some_and(|age| *age >= 0.2)
    })
    .await;
}
