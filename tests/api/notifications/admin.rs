//! NotificationService: the admins' list, read and re-drive of an account's notifications, the
//! users' settings, the suppression list, and the email provider's signed bounce and complaint
//! webhook; against a real SMTP server (aiosmtpd) and PostgreSQL.

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::notification_service_client::NotificationServiceClient;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::support::notifications::{client, resend_event, signed_delivery};
use crate::support::smtp::{SmtpServer, send_to};
use crate::support::{
    PATIENCE, TEST_EMAIL_WEBHOOK_SECRET, TestApp, TestUser, assert_reason, count_of, details,
    wait_until,
};

#[derive(diesel::QueryableByName)]
struct Stored {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    skip_reason: Option<String>,
}

/// The notifications of `app`'s account to `address` of `kind`, oldest first.
async fn stored(app: &TestApp, address: &str, kind: &str) -> Vec<Stored> {
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "SELECT id, state, skip_reason FROM notifications \
         WHERE account_id = $1 AND recipient_address = $2 AND kind = $3 ORDER BY created_at, id",
    )
    .bind::<SqlUuid, _>(app.account_id.as_uuid())
    .bind::<Text, _>(address)
    .bind::<Text, _>(kind)
    .load(&mut conn)
    .await
    .expect("the notifications")
}

/// The one notification to `address` of `kind`, once it is in `state`.
async fn wait_for_state(app: &TestApp, address: &str, kind: &str, state: &str) -> Stored {
    wait_until(
        &format!("the {kind} notice to {address} is {state}"),
        PATIENCE,
        async || {
            stored(app, address, kind)
                .await
                .iter()
                .any(|row| row.state == state)
        },
    )
    .await;
    let mut rows = stored(app, address, kind).await;
    assert_eq!(rows.len(), 1, "one {kind} notice to {address}");
    rows.remove(0)
}

/// The reasons `app`'s account suppresses `address` for (none or one).
async fn suppression_reasons(app: &TestApp, address: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        reason: String,
    }
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "SELECT reason FROM email_suppressions WHERE account_id = $1 AND address = $2",
    )
    .bind::<SqlUuid, _>(app.account_id.as_uuid())
    .bind::<Text, _>(address)
    .load::<Row>(&mut conn)
    .await
    .expect("the suppressions")
    .into_iter()
    .map(|row| row.reason)
    .collect()
}

/// A status with `id` written as `ID`: what is left must be the same for a hidden and a missing
/// notification, byte for byte (message and encoded details).
fn without_id(status: &tonic::Status, id: &str) -> (Code, String, String) {
    (
        status.code(),
        status.message().replace(id, "ID"),
        String::from_utf8_lossy(status.details()).replace(id, "ID"),
    )
}

async fn list(
    notifications: &mut NotificationServiceClient<Channel>,
    admin: &TestUser,
    state: v1::NotificationState,
) -> Vec<v1::Notification> {
    notifications
        .list_notifications(admin.request(v1::ListNotificationsRequest {
            state: state.into(),
            ..Default::default()
        }))
        .await
        .expect("the admin lists")
        .into_inner()
        .notifications
}

#[tokio::test]
async fn a_dead_notification_is_listed_read_and_redriven_and_then_delivered_once() {
    let mut smtp = SmtpServer::reserve();
    let app = TestApp::spawn_with(|settings| {
        send_to(settings, &smtp);
        settings.notifications.workers.max_attempts = 2;
    })
    .await;
    let ticket = app
        .ticket("nobody answers")
        .requester("dora@example.com")
        .create()
        .await;
    let dead = wait_for_state(&app, "dora@example.com", "ticket_created", "dead").await;
    let id = dead.id.to_string();
    let mut notifications = client(&app).await;

    let listed = list(&mut notifications, &app.admin, v1::NotificationState::Dead).await;
    assert_eq!(
        listed.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );
    let read = notifications
        .get_notification(app.as_admin(v1::GetNotificationRequest { id: id.clone() }))
        .await
        .expect("the admin reads it")
        .into_inner();
    assert_eq!(read.state(), v1::NotificationState::Dead);
    assert_eq!(read.kind(), v1::NotificationKind::TicketCreated);
    assert_eq!(read.attempts, 2);
    assert!(!read.last_error.is_empty());
    assert_eq!(read.recipient_address, "dora@example.com");
    assert_eq!(read.ticket_id, ticket.id);
    assert!(read.dead_time.is_some() && read.send_time.is_none() && read.due_time.is_none());
    assert_eq!(read.skip_reason(), v1::SkipReason::Unspecified);
    let by_kind = notifications
        .list_notifications(app.as_admin(v1::ListNotificationsRequest {
            state: v1::NotificationState::Dead.into(),
            kind: v1::NotificationKind::CommentAdded.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(by_kind.notifications.is_empty(), "filtered by kind");

    smtp.start().await;
    let redriven = notifications
        .redrive_notification(app.as_admin(v1::RedriveNotificationRequest { id: id.clone() }))
        .await
        .expect("re-driven")
        .into_inner();
    assert_eq!(redriven.state(), v1::NotificationState::Received);
    assert_eq!((redriven.attempts, redriven.redrive_count), (0, 1));
    assert!(redriven.due_time.is_some());

    let received = smtp.wait_for(1).await;
    wait_for_state(&app, "dora@example.com", "ticket_created", "sent").await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].envelope_recipients(), ["dora@example.com"]);
    let sent = notifications
        .get_notification(app.as_admin(v1::GetNotificationRequest { id: id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sent.state(), v1::NotificationState::Sent);
    assert_eq!(sent.attempts, 1);

    let refused = notifications
        .redrive_notification(app.as_admin(v1::RedriveNotificationRequest { id: id.clone() }))
        .await
        .expect_err("a sent notification is not re-driven");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_reason(&refused, Reason::NotificationNotRedrivable);
    let violations = details(&refused)
        .precondition_failure()
        .expect("PreconditionFailure")
        .violations
        .clone();
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].r#type, "NOTIFICATION_STATE");
    assert_eq!(violations[0].subject, format!("notifications/{id}"));
    assert!(violations[0].description.contains("sent"), "{violations:?}");
    assert_eq!(smtp.received().len(), 1, "delivered once");
}

#[tokio::test]
async fn another_accounts_notification_is_not_found_exactly_like_a_missing_one_and_non_admins_are_refused()
 {
    let app = TestApp::spawn().await;
    app.ticket("ours")
        .requester("erin@example.com")
        .create()
        .await;
    let ours = stored(&app, "erin@example.com", "ticket_created").await[0]
        .id
        .to_string();
    let missing = Uuid::now_v7().to_string();
    let other_admin = app.sign_up_another_account().await;
    let mut notifications = client(&app).await;

    let hidden = notifications
        .get_notification(other_admin.request(v1::GetNotificationRequest { id: ours.clone() }))
        .await
        .expect_err("hidden");
    let absent = notifications
        .get_notification(other_admin.request(v1::GetNotificationRequest {
            id: missing.clone(),
        }))
        .await
        .expect_err("missing");
    assert_eq!(hidden.code(), Code::NotFound);
    assert_reason(&hidden, Reason::NotificationNotFound);
    assert_eq!(without_id(&hidden, &ours), without_id(&absent, &missing));

    let hidden = notifications
        .redrive_notification(
            other_admin.request(v1::RedriveNotificationRequest { id: ours.clone() }),
        )
        .await
        .expect_err("hidden");
    let absent = notifications
        .redrive_notification(other_admin.request(v1::RedriveNotificationRequest {
            id: missing.clone(),
        }))
        .await
        .expect_err("missing");
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(without_id(&hidden, &ours), without_id(&absent, &missing));
    assert!(
        list(
            &mut notifications,
            &other_admin,
            v1::NotificationState::Received
        )
        .await
        .is_empty()
    );
    // Its own admin cannot re-drive it either while it waits in the queue.
    let queued = notifications
        .redrive_notification(app.as_admin(v1::RedriveNotificationRequest { id: ours.clone() }))
        .await
        .expect_err("already in the queue");
    assert_eq!(queued.code(), Code::FailedPrecondition);
    assert_reason(&queued, Reason::NotificationNotRedrivable);
    let violation = details(&queued)
        .precondition_failure()
        .expect("PreconditionFailure")
        .violations[0]
        .clone();
    assert!(violation.description.contains("received"), "{violation:?}");

    for role in [v1::UserRole::Customer, v1::UserRole::Agent] {
        let user = app.add_user(&app.admin, role).await;
        let denied = notifications
            .list_notifications(user.request(v1::ListNotificationsRequest {
                state: v1::NotificationState::Received.into(),
                ..Default::default()
            }))
            .await
            .expect_err("admins only");
        assert_eq!(denied.code(), Code::PermissionDenied, "{role:?}");
        let denied = notifications
            .get_notification(user.request(v1::GetNotificationRequest { id: ours.clone() }))
            .await
            .expect_err("admins only");
        assert_eq!(denied.code(), Code::PermissionDenied, "{role:?}");
        let denied = notifications
            .redrive_notification(user.request(v1::RedriveNotificationRequest { id: ours.clone() }))
            .await
            .expect_err("admins only");
        assert_eq!(denied.code(), Code::PermissionDenied, "{role:?}");
        let denied = notifications
            .list_suppressions(user.request(v1::ListSuppressionsRequest::default()))
            .await
            .expect_err("admins only");
        assert_eq!(denied.code(), Code::PermissionDenied, "{role:?}");
    }
}

#[tokio::test]
async fn a_requester_who_turned_comment_notices_off_gets_the_acknowledgement_but_not_the_comment() {
    let smtp = SmtpServer::start_new().await;
    let app = TestApp::spawn_with(|settings| send_to(settings, &smtp)).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let mut notifications = client(&app).await;
    let before = notifications
        .get_notification_settings(customer.request(v1::GetNotificationSettingsRequest {}))
        .await
        .expect("their own settings")
        .into_inner();
    assert!(before.comment_notifications, "on unless turned off");
    let updated = notifications
        .update_notification_settings(customer.request(v1::UpdateNotificationSettingsRequest {
            notification_settings: Some(v1::NotificationSettings {
                comment_notifications: false,
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["comment_notifications".to_owned()],
            }),
        }))
        .await
        .expect("updated")
        .into_inner();
    assert!(!updated.comment_notifications);
    let unmasked = notifications
        .update_notification_settings(customer.request(v1::UpdateNotificationSettingsRequest {
            notification_settings: Some(v1::NotificationSettings {
                comment_notifications: true,
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email".to_owned()],
            }),
        }))
        .await
        .expect_err("an unknown path");
    assert_eq!(unmasked.code(), Code::InvalidArgument);
    assert_reason(&unmasked, Reason::InvalidArgument);

    let ticket = app
        .ticket("comments off")
        .requester(&customer.email)
        .create()
        .await;
    app.comment(&ticket.id, "We are on it")
        .public()
        .try_add()
        .await
        .expect("a public reply");

    let skipped = wait_for_state(&app, &customer.email, "comment_added", "skipped").await;
    assert_eq!(skipped.skip_reason.as_deref(), Some("opted_out"));
    wait_for_state(&app, &customer.email, "ticket_created", "sent").await;
    let received = smtp.wait_for(1).await;
    assert_eq!(received.len(), 1);
    assert!(
        received[0].header("Subject").contains("comments off"),
        "{}",
        received[0].header("Subject")
    );
    assert!(!received[0].part("text/plain").contains("We are on it"));

    let shown = notifications
        .list_notifications(app.as_admin(v1::ListNotificationsRequest {
            state: v1::NotificationState::Skipped.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].id, skipped.id.to_string());
    assert_eq!(shown[0].skip_reason(), v1::SkipReason::OptedOut);
    assert_eq!(shown[0].kind(), v1::NotificationKind::CommentAdded);
    assert!(shown[0].skip_time.is_some());
    assert_eq!(smtp.received().len(), 1, "the comment never left");
}

#[tokio::test]
async fn a_550_answer_kills_the_notification_and_suppresses_the_address_so_the_next_one_is_skipped()
{
    let smtp = SmtpServer::start_refusing(0).await;
    let app = TestApp::spawn_with(|settings| send_to(settings, &smtp)).await;
    app.ticket("first")
        .requester("gone@example.com")
        .create()
        .await;
    let dead = wait_for_state(&app, "gone@example.com", "ticket_created", "dead").await;
    assert_eq!(
        suppression_reasons(&app, "gone@example.com").await,
        ["smtp_permanent_failure"]
    );
    let mut notifications = client(&app).await;
    let listed = notifications
        .list_suppressions(app.as_admin(v1::ListSuppressionsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .suppressions;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].address, "gone@example.com");
    assert_eq!(
        listed[0].reason(),
        v1::SuppressionReason::SmtpPermanentFailure
    );
    assert_eq!(listed[0].notification_id, dead.id.to_string());
    assert!(listed[0].detail.contains("550"), "{}", listed[0].detail);

    app.ticket("second")
        .requester("gone@example.com")
        .create()
        .await;
    wait_until("the second is skipped", PATIENCE, async || {
        stored(&app, "gone@example.com", "ticket_created")
            .await
            .iter()
            .any(|row| row.state == "skipped")
    })
    .await;
    let rows = stored(&app, "gone@example.com", "ticket_created").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].skip_reason.as_deref(), Some("suppressed"));
    let read = notifications
        .get_notification(app.as_admin(v1::GetNotificationRequest {
            id: rows[1].id.to_string(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.state(), v1::NotificationState::Skipped);
    assert_eq!(read.skip_reason(), v1::SkipReason::Suppressed);
    assert!(smtp.received().is_empty());

    notifications
        .delete_suppression(app.as_admin(v1::DeleteSuppressionRequest {
            address: "Gone@Example.com".to_owned(),
        }))
        .await
        .expect("taken off the list");
    assert!(
        suppression_reasons(&app, "gone@example.com")
            .await
            .is_empty()
    );
    let again = notifications
        .delete_suppression(app.as_admin(v1::DeleteSuppressionRequest {
            address: "gone@example.com".to_owned(),
        }))
        .await
        .expect_err("no longer suppressed");
    assert_eq!(again.code(), Code::NotFound);
    assert_reason(&again, Reason::SuppressionNotFound);
    let redriven = notifications
        .redrive_notification(app.as_admin(v1::RedriveNotificationRequest {
            id: rows[1].id.to_string(),
        }))
        .await
        .expect("a skipped notification is re-driven")
        .into_inner();
    assert_eq!(redriven.state(), v1::NotificationState::Received);
    assert_eq!(redriven.skip_reason(), v1::SkipReason::Unspecified);
}

#[tokio::test]
async fn a_signed_bounce_suppresses_the_recipient_once_and_a_bad_signature_is_refused() {
    let app = TestApp::spawn().await;
    app.ticket("bounces")
        .requester("fay@example.com")
        .create()
        .await;
    let id = stored(&app, "fay@example.com", "ticket_created").await[0]
        .id
        .to_string();
    let mut notifications = client(&app).await;
    let body = resend_event("email.bounced", &id);

    let taken = notifications
        .receive_email_event(signed_delivery(
            body.clone(),
            "msg_bounce_1",
            TEST_EMAIL_WEBHOOK_SECRET,
        ))
        .await
        .expect("a signed bounce is taken")
        .into_inner();
    assert_eq!(
        (
            taken.event_id.as_str(),
            taken.duplicate,
            taken.outcome.as_str()
        ),
        ("msg_bounce_1", false, "suppressed")
    );
    assert_eq!(
        suppression_reasons(&app, "fay@example.com").await,
        ["hard_bounce"]
    );
    let replayed = notifications
        .receive_email_event(signed_delivery(
            body.clone(),
            "msg_bounce_1",
            TEST_EMAIL_WEBHOOK_SECRET,
        ))
        .await
        .expect("a replay is acknowledged")
        .into_inner();
    assert!(replayed.duplicate);
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM email_suppressions"
        )
        .await,
        1
    );
    assert_eq!(
        count_of(&app.database, "SELECT count(*) AS count FROM email_events").await,
        1
    );

    let ignored = notifications
        .receive_email_event(signed_delivery(
            resend_event("email.delivered", &id),
            "msg_delivered_1",
            TEST_EMAIL_WEBHOOK_SECRET,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ignored.outcome, "ignored_type");

    let forged = notifications
        .receive_email_event(signed_delivery(
            resend_event("email.complained", &id),
            "msg_forged",
            "whsec_b3RoZXJfc2VjcmV0X29mXzI0X2J5dGVz",
        ))
        .await
        .expect_err("another secret's signature");
    assert_eq!(forged.code(), Code::InvalidArgument);
    assert_reason(&forged, Reason::WebhookSignatureMismatch);
    let mut unsigned = signed_delivery(body, "msg_unsigned", TEST_EMAIL_WEBHOOK_SECRET);
    unsigned.metadata_mut().remove("svix-signature");
    let missing = notifications
        .receive_email_event(unsigned)
        .await
        .expect_err("no signature");
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert_reason(&missing, Reason::WebhookSignatureMissing);
    assert_eq!(
        count_of(&app.database, "SELECT count(*) AS count FROM email_events").await,
        2,
        "refused deliveries store nothing"
    );
}

#[tokio::test]
async fn the_suppression_list_is_read_through_envoy_as_json() {
    let app = TestApp::spawn().await;
    app.ticket("rest")
        .requester("gil@example.com")
        .create()
        .await;
    let id = stored(&app, "gil@example.com", "ticket_created").await[0]
        .id
        .to_string();
    client(&app)
        .await
        .receive_email_event(signed_delivery(
            resend_event("email.complained", &id),
            "msg_complaint_1",
            TEST_EMAIL_WEBHOOK_SECRET,
        ))
        .await
        .expect("a complaint is taken");
    let envoy = crate::support::envoy::Envoy::start_in_front_of(app.address.port()).await;
    let answer: serde_json::Value = reqwest::Client::new()
        .get(envoy.url("/v1/suppressions"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("through Envoy")
        .json()
        .await
        .expect("JSON");
    let suppressions = answer["suppressions"].as_array().expect("a list");
    assert_eq!(suppressions.len(), 1, "{answer}");
    assert_eq!(suppressions[0]["address"], "gil@example.com");
    assert_eq!(suppressions[0]["reason"], "SUPPRESSION_REASON_COMPLAINT");
    assert_eq!(suppressions[0]["notificationId"], id.as_str());
}

#[tokio::test]
async fn without_a_secret_email_events_are_refused_as_unavailable_so_the_provider_retries() {
    let app = TestApp::spawn_with(|settings| settings.email_webhook.secret = None).await;
    let refused = client(&app)
        .await
        .receive_email_event(signed_delivery(
            resend_event("email.bounced", &Uuid::now_v7().to_string()),
            "msg_unconfigured",
            TEST_EMAIL_WEBHOOK_SECRET,
        ))
        .await
        .expect_err("no secret to check it with");
    assert_eq!(refused.code(), Code::Unavailable);
    assert_reason(&refused, Reason::WebhooksNotConfigured);
    assert_eq!(
        count_of(&app.database, "SELECT count(*) AS count FROM email_events").await,
        0
    );
}
