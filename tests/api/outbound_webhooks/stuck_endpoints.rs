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
use crate::support::{PATIENCE, Scrape, TestApp, count_of, wait_until, with_metrics};

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

/// Events this instance cannot read, written for the account's endpoint (and by the fan-out, as a
/// newer version writes them): a type it does not know, and a known type whose snapshot the
/// domain refuses.
pub(super) async fn write_unreadable_events(app: &TestApp) {
    execute(
        app,
        &format!(
            "INSERT INTO events (account_id, type, resource_id, snapshot) VALUES \
             ('{account}', 'ticket.teleported', gen_random_uuid(), '{{}}'), \
             ('{account}', 'ticket.created', gen_random_uuid(), '{{\"id\": \"not a ticket\"}}')",
            account = app.account_id
        ),
    )
    .await;
}

/// An event this instance cannot read (a type a newer version writes, during a rolling deploy or
/// after a rollback; a snapshot the domain now refuses) costs its own delivery a failed attempt on
/// the retry schedule, counted and logged, and nothing more: the endpoint's later events go out,
/// its failing streak is not started, and after the last attempt the delivery is `failed` (a
/// newer instance may still make one of the attempts meanwhile; a redrive sends it again; the
/// retention sweep may delete it). Before, the endpoint rested a minute at a time, for ever, with
/// every later event withheld and the delivery never attempted.
#[tokio::test]
async fn an_event_this_instance_cannot_read_fails_its_own_delivery_and_the_endpoints_later_events_go_out()
 {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(with_metrics).await;
    let (endpoint, secret) = register(&app, &receiver.url("mixed"), &[]).await;
    receiver.configure("mixed", &[&secret], "ok").await;
    write_unreadable_events(&app).await;
    let after = app.create_ticket("after the unreadable ones").await;

    wait_until("the later ticket is delivered", PATIENCE, async || {
        receiver.delivered("mixed").await.len() == 1
    })
    .await;
    let sent = receiver.attempts(Some("mixed")).await;
    assert_eq!(sent[0].payload["ticket"]["id"], after.id.as_str());
    let unreadable = "SELECT count(*) AS count FROM webhook_deliveries d \
         JOIN events e ON e.id = d.event_id \
         WHERE e.type = 'ticket.teleported' OR e.snapshot ->> 'id' = 'not a ticket'";
    wait_until(
        "both unreadable deliveries end failed",
        PATIENCE,
        async || {
            count(
                &app,
                &format!("{unreadable} AND d.state = 'failed' AND d.attempts = 4"),
            )
            .await
                == 2
        },
    )
    .await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS count FROM webhook_delivery_attempts a \
             JOIN webhook_deliveries d ON d.id = a.delivery_id JOIN events e ON e.id = d.event_id \
             WHERE (e.type = 'ticket.teleported' OR e.snapshot ->> 'id' = 'not a ticket') \
               AND a.http_status IS NULL AND a.error LIKE 'this instance cannot read the event%'"
        )
        .await,
        8,
        "four attempts each, recorded with why"
    );
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS count FROM webhook_endpoints WHERE id = '{}' \
                 AND state = 'enabled' AND failing_since IS NULL",
                endpoint.id
            )
        )
        .await,
        1,
        "the endpoint is not blamed"
    );
    assert_eq!(
        receiver.attempts(Some("mixed")).await.len(),
        1,
        "nothing was sent for the unreadable events"
    );
    assert_eq!(
        Scrape::of(&app)
            .await
            .get("supportdesk_events_unreadable_total{consumer=\"delivery\"}"),
        8
    );
}

/// An endpoint whose filter names a type of a newer version is read with the types this one
/// knows, and a change that does not name the filter keeps the stored one whole. Before, every
/// read of the endpoint answered INTERNAL.
#[tokio::test]
async fn an_endpoint_filtering_on_a_type_of_a_newer_version_is_read_and_an_update_keeps_its_filter()
{
    let app = TestApp::spawn().await;
    let (endpoint, _) =
        register(&app, "https://hooks.example.com/newer", &["ticket.created"]).await;
    execute(
        &app,
        &format!(
            "UPDATE webhook_endpoints SET event_types = '{{ticket.created,ticket.teleported}}' \
             WHERE id = '{}'",
            endpoint.id
        ),
    )
    .await;

    let read = endpoints(&app)
        .get_webhook_endpoint(app.as_admin(v1::GetWebhookEndpointRequest {
            id: endpoint.id.clone(),
        }))
        .await
        .expect("the endpoint reads")
        .into_inner();
    assert_eq!(read.event_types, ["ticket.created"]);
    endpoints(&app)
        .update_webhook_endpoint(app.as_admin(v1::UpdateWebhookEndpointRequest {
            webhook_endpoint: Some(v1::WebhookEndpoint {
                id: endpoint.id.clone(),
                description: "renamed".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["description".to_owned()],
            }),
        }))
        .await
        .expect("the endpoint is changed");
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS count FROM webhook_endpoints WHERE id = '{}' \
                 AND description = 'renamed' \
                 AND event_types = '{{ticket.created,ticket.teleported}}'",
                endpoint.id
            )
        )
        .await,
        1
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
