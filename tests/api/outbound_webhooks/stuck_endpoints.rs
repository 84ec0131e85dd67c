//! Endpoints that must not stall their workers or the other endpoints: an answer PostgreSQL
//! cannot store as text, a secret that does not open, an event this instance cannot read, an
//! event still being written, and an endpoint disabled while its batch is under way. Each is
//! checked where it lives: the deliveries, their attempts and the endpoint's row in PostgreSQL,
//! and what the receiver was sent.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use prost_types::FieldMask;
use secrecy::ExposeSecret;
use supportdesk::wire::proto::v1;

use super::{delivering_app, endpoints, register};
use crate::support::webhook_receiver::WebhookReceiver;
use crate::support::{PATIENCE, TestApp, count_of, wait_until};

async fn count(app: &TestApp, sql: &str) -> i64 {
    count_of(&app.database, sql).await
}

async fn execute(app: &TestApp, sql: &str) {
    let mut conn = app.database.connect().await;
    diesel::sql_query(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// An endpoint at the receiver's `name`, for `ticket.created` only, whose deliveries verify.
async fn ticket_created_endpoint(
    app: &TestApp,
    receiver: &WebhookReceiver,
    name: &str,
    behaviour: &str,
) -> v1::WebhookEndpoint {
    let (endpoint, secret) = register(app, &receiver.url(name), &["ticket.created"]).await;
    receiver.configure(name, &[&secret], behaviour).await;
    endpoint
}

/// Whether endpoint `id` rests for at least half a minute more: no claim takes it meanwhile.
async fn resting(app: &TestApp, id: &str) -> bool {
    count(
        app,
        &format!(
            "SELECT count(*) AS count FROM webhook_endpoints \
             WHERE id = '{id}' AND retry_at > now() + interval '30 seconds' AND lease_token IS NULL"
        ),
    )
    .await
        == 1
}

#[tokio::test]
async fn an_answer_with_a_nul_byte_is_recorded_once_and_not_sent_again() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|_| {}).await;
    ticket_created_endpoint(&app, &receiver, "binary", "nul_body").await;

    app.create_ticket("answered in UTF-16").await;
    wait_until(
        "the delivery is recorded as succeeded",
        PATIENCE,
        async || {
            count(
                &app,
                "SELECT count(*) AS count FROM webhook_deliveries WHERE state = 'succeeded'",
            )
            .await
                == 1
        },
    )
    .await;

    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS count FROM webhook_delivery_attempts \
             WHERE http_status = 200 AND response_excerpt = 'ok' || chr(65533) || 'done'"
        )
        .await,
        1,
        "one attempt, its excerpt with the NUL replaced"
    );
    assert_eq!(receiver.attempts(Some("binary")).await.len(), 1);
}

#[tokio::test]
async fn an_endpoint_whose_secret_does_not_open_rests_instead_of_being_claimed_again_at_once() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|_| {}).await;
    let endpoint = ticket_created_endpoint(&app, &receiver, "sealed", "ok").await;
    // As after JWT_SECRET was rotated with WEBHOOK_ENDPOINT_SECRETS_KEY unset.
    execute(
        &app,
        &format!(
            "UPDATE webhook_endpoints SET secret_ciphertext = '\\x00ff'::bytea WHERE id = '{}'",
            endpoint.id
        ),
    )
    .await;

    app.create_ticket("signed with what?").await;
    wait_until("the endpoint rests", PATIENCE, async || {
        resting(&app, &endpoint.id).await
    })
    .await;

    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS count FROM webhook_deliveries WHERE state = 'pending' AND attempts = 0"
        )
        .await,
        1,
        "the delivery stays due, untried"
    );
    assert!(receiver.attempts(Some("sealed")).await.is_empty());
}

#[tokio::test]
async fn an_event_this_instance_cannot_read_stops_its_own_endpoint_and_no_other() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|_| {}).await;
    let blocked = ticket_created_endpoint(&app, &receiver, "blocked", "ok").await;
    ticket_created_endpoint(&app, &receiver, "other", "ok").await;
    // Both rest while their deliveries are made, so that one claim takes them together.
    execute(
        &app,
        "UPDATE webhook_endpoints SET retry_at = now() + interval '1 hour'",
    )
    .await;
    app.create_ticket("read by both").await;
    // After it, for the first endpoint only: an event of a type a newer version writes.
    execute(
        &app,
        &format!(
            "WITH newer AS (INSERT INTO events (account_id, type, resource_id, snapshot) \
             VALUES ('{account}', 'ticket.teleported', gen_random_uuid(), '{{}}') \
             RETURNING id, seq, type) \
             INSERT INTO webhook_deliveries (account_id, endpoint_id, event_id, event_seq, event_type) \
             SELECT '{account}', '{endpoint}', id, seq, type FROM newer",
            account = app.account_id,
            endpoint = blocked.id
        ),
    )
    .await;
    execute(&app, "UPDATE webhook_endpoints SET retry_at = NULL").await;

    wait_until("both endpoints have the ticket", PATIENCE, async || {
        receiver.delivered("blocked").await.len() == 1
            && receiver.delivered("other").await.len() == 1
    })
    .await;
    wait_until("the blocked endpoint rests", PATIENCE, async || {
        resting(&app, &blocked.id).await
    })
    .await;

    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS count FROM webhook_deliveries \
             WHERE event_type = 'ticket.teleported' AND state = 'pending' AND attempts = 0"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS count FROM webhook_deliveries \
             WHERE event_type = 'ticket.created' AND state = 'succeeded'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn an_endpoint_whose_account_is_writing_an_event_is_still_claimed() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|_| {}).await;
    let endpoint = ticket_created_endpoint(&app, &receiver, "busy", "ok").await;
    // A transaction that writes an event holds its account's endpoints FOR KEY SHARE until it
    // commits (an import's batch, a busy account): this one stays open through the delivery.
    let url = app.database.url();
    let mut writing = AsyncPgConnection::establish(url.expose_secret())
        .await
        .unwrap();
    diesel::sql_query("BEGIN")
        .execute(&mut writing)
        .await
        .unwrap();
    diesel::sql_query(format!(
        "SELECT id FROM webhook_endpoints WHERE id = '{}' FOR KEY SHARE",
        endpoint.id
    ))
    .execute(&mut writing)
    .await
    .unwrap();

    app.create_ticket("while another event is written").await;

    wait_until("the delivery arrives", PATIENCE, async || {
        receiver.delivered("busy").await.len() == 1
    })
    .await;
    diesel::sql_query("ROLLBACK")
        .execute(&mut writing)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_endpoint_disabled_while_its_batch_is_under_way_is_sent_no_more_of_it() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|_| {}).await;
    let endpoint = ticket_created_endpoint(&app, &receiver, "moving", "slow:1500").await;
    execute(
        &app,
        "UPDATE webhook_endpoints SET retry_at = now() + interval '1 hour'",
    )
    .await;
    for subject in ["first", "second", "third"] {
        app.create_ticket(subject).await;
    }
    // One claim takes the three; the first is answered slowly.
    execute(&app, "UPDATE webhook_endpoints SET retry_at = NULL").await;
    receiver.wait_for_attempts("moving", 1, PATIENCE).await;

    endpoints(&app)
        .update_webhook_endpoint(app.as_admin(v1::UpdateWebhookEndpointRequest {
            webhook_endpoint: Some(v1::WebhookEndpoint {
                id: endpoint.id.clone(),
                disabled: true,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["disabled".to_owned()],
            }),
        }))
        .await
        .expect("disabled");
    wait_until("the worker gives the endpoint back", PATIENCE, async || {
        count(
            &app,
            "SELECT count(*) AS count FROM webhook_endpoints WHERE lease_token IS NULL",
        )
        .await
            == 1
    })
    .await;

    assert_eq!(receiver.attempts(Some("moving")).await.len(), 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS count FROM webhook_deliveries WHERE state = 'pending' AND attempts = 0"
        )
        .await,
        3,
        "the attempt made after the endpoint was disabled is not recorded"
    );
}
