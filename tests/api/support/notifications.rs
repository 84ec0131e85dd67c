//! Notifications as the suites that cover every RPC need them: NotificationService's client, a
//! signed email-provider event, a ticket's acknowledgement ended or its address suppressed, and
//! the token a reset or invitation mail carries.

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use supportdesk::domain::{PasswordTokenKey, PasswordTokenSeed};
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::notification_service_client::NotificationServiceClient;
use tonic::transport::Channel;
use uuid::Uuid;

use super::{TEST_JWT_SECRET, TestApp, TestUser};

/// A NotificationService client to `app`.
pub(crate) async fn client(app: &TestApp) -> NotificationServiceClient<Channel> {
    NotificationServiceClient::connect(format!("http://{}", app.address))
        .await
        .expect("connect to the test server")
}

/// A Resend event of `event_type` about notification `id`, as the provider sends it.
pub(crate) fn resend_event(event_type: &str, notification_id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": event_type,
        "created_at": "2026-11-24T03:00:00.000Z",
        "data": {
            "email_id": "4ef9a417-02e9-4d39-ad75-9611e0fcc33c",
            "from": "Example Support <support@desk.example.com>",
            "to": ["whoever@example.com"],
            "subject": "Your ticket",
            "bounce": {
                "message": "The recipient's mailbox does not exist.",
                "subType": "General",
                "type": "Permanent"
            },
            "tags": {"notification_id": notification_id}
        }
    }))
    .unwrap()
}

/// A delivery of `body` signed with `secret` as Svix signs it, with `svix_id`.
pub(crate) fn signed_delivery(
    body: Vec<u8>,
    svix_id: &str,
    secret: &str,
) -> tonic::Request<v1::ReceiveEmailEventRequest> {
    let now = chrono::Utc::now().timestamp();
    let signature = supportdesk::domain::svix_signature(secret, svix_id, now, &body);
    let mut request = tonic::Request::new(v1::ReceiveEmailEventRequest {
        http_body: Some(supportdesk::wire::proto::google::api::HttpBody {
            content_type: "application/json".to_owned(),
            data: body,
            extensions: Vec::new(),
        }),
    });
    let metadata = request.metadata_mut();
    metadata.insert("svix-id", svix_id.parse().unwrap());
    metadata.insert("svix-timestamp", now.to_string().parse().unwrap());
    metadata.insert("svix-signature", signature.parse().unwrap());
    request
}

/// The acknowledgement notification of ticket `ticket_id` of `app`'s account.
pub(crate) async fn acknowledgement_of(app: &TestApp, ticket_id: &str) -> String {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "SELECT id FROM notifications WHERE ticket_id = $1 AND kind = 'ticket_created'",
    )
    .bind::<SqlUuid, _>(Uuid::parse_str(ticket_id).expect("a ticket id"))
    .get_result::<Row>(&mut conn)
    .await
    .expect("the ticket's acknowledgement")
    .id
    .to_string()
}

/// Ends notification `id` as a worker would have: `dead` or `sent`.
pub(crate) async fn make_ended(app: &TestApp, id: &str, state: &str) {
    let sql = match state {
        "dead" => {
            "UPDATE notifications SET state = 'dead', dead_at = now(), attempts = 3, \
             last_error = '550 5.1.1 No such mailbox here' WHERE id = $1"
        }
        "sent" => {
            "UPDATE notifications SET state = 'sent', sent_at = now(), attempts = 1, \
             outcome = 'sent' WHERE id = $1"
        }
        other => panic!("{other} is not an end state"),
    };
    let mut conn = app.database.connect().await;
    let updated = diesel::sql_query(sql)
        .bind::<SqlUuid, _>(Uuid::parse_str(id).expect("a notification id"))
        .execute(&mut conn)
        .await
        .expect("the notification ended");
    assert_eq!(updated, 1);
}

/// Puts `address` on `app`'s account's suppression list, as a permanent failure would.
pub(crate) async fn suppress(app: &TestApp, address: &str) {
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "INSERT INTO email_suppressions (id, account_id, address, reason, detail) \
         VALUES ($1, $2, $3, 'smtp_permanent_failure', '550 5.1.1 No such mailbox here')",
    )
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<SqlUuid, _>(app.account_id.as_uuid())
    .bind::<Text, _>(address)
    .execute(&mut conn)
    .await
    .expect("the address suppressed");
}

/// The token of the newest password notification of `user`, derived from the seed the outbox
/// keeps with the test instances' key: what the mail's link would carry, without a mail server.
pub(crate) async fn token_from_outbox(app: &TestApp, user: &TestUser) -> String {
    #[derive(diesel::QueryableByName)]
    struct Seed {
        #[diesel(sql_type = Text)]
        seed: String,
    }
    let mut conn = app.database.connect().await;
    let seed: Seed = diesel::sql_query(
        "SELECT data->>'seed' AS seed FROM notifications \
         WHERE recipient_user_id = $1 AND kind IN ('password_reset', 'invitation') \
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind::<SqlUuid, _>(user.id.as_uuid())
    .get_result(&mut conn)
    .await
    .expect("a password notification");
    PasswordTokenKey::derive(TEST_JWT_SECRET.as_bytes())
        .token(&PasswordTokenSeed::from_stored(&seed.seed))
        .reveal()
        .to_owned()
}
