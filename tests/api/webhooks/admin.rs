//! The admin RPCs over the account's webhook events: listing by state, newest first, page by
//! page; reading one; re-driving a dead one. Events come in through the real endpoint (as the
//! provider sends them); the dead-letter and processed states, which the workers give, are set
//! in PostgreSQL directly.

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use serde_json::json;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::{TEST_WEBHOOK_SECRET, TestApp, assert_reason, details, violated_fields};
use crate::webhooks::receiving::{event, paid_charge, signed};

/// Puts event `id` in the dead-letter state, as a worker does after its last failed attempt.
pub(crate) async fn make_dead(app: &TestApp, id: &str) {
    let mut conn = app.database.connect().await;
    let updated = diesel::sql_query(
        "UPDATE webhook_events SET state = 'dead', dead_at = now(), attempts = 8, \
         last_error = 'the provider answered 500' WHERE id = $1",
    )
    .bind::<Text, _>(id)
    .execute(&mut conn)
    .await
    .expect("make the event dead");
    assert_eq!(updated, 1);
}

/// Marks event `id` processed, as a worker does once it applied it.
pub(crate) async fn make_processed(app: &TestApp, id: &str) {
    let mut conn = app.database.connect().await;
    let updated = diesel::sql_query(
        "UPDATE webhook_events SET state = 'processed', processed_at = now(), attempts = 1, \
         outcome = 'applied' WHERE id = $1",
    )
    .bind::<Text, _>(id)
    .execute(&mut conn)
    .await
    .expect("mark the event processed");
    assert_eq!(updated, 1);
}

/// Delivers `body`, signed as the provider signs it, straight to the service (gRPC, as Envoy
/// forwards it) and returns the service's acknowledgement.
async fn receive_signed(app: &TestApp, body: Vec<u8>) -> v1::ReceivePaymentEventResponse {
    let signature = signed(
        &body,
        &[TEST_WEBHOOK_SECRET],
        chrono::Utc::now().timestamp(),
    );
    let mut request = tonic::Request::new(v1::ReceivePaymentEventRequest {
        http_body: Some(supportdesk::wire::proto::google::api::HttpBody {
            content_type: "application/json".to_owned(),
            data: body,
            extensions: Vec::new(),
        }),
    });
    request
        .metadata_mut()
        .insert("stripe-signature", signature.parse().expect("ascii"));
    app.webhooks
        .clone()
        .receive_payment_event(request)
        .await
        .expect("the delivery is acknowledged")
        .into_inner()
}

/// Delivers a signed event about `charge_id` straight to the service (gRPC, as Envoy forwards
/// it) and returns its id.
pub(crate) async fn deliver_about(app: &TestApp, charge_id: &str) -> String {
    let (id, body) = event(
        "payment_intent.succeeded",
        json!({"id": "pi_admin", "object": "payment_intent", "metadata": {"charge_id": charge_id}}),
    );
    let receipt = receive_signed(app, body).await;
    assert_eq!(receipt.event_id, id);
    assert!(!receipt.duplicate);
    id
}

async fn list(
    app: &TestApp,
    state: v1::WebhookEventState,
    page_size: i32,
    page_token: &str,
) -> Result<v1::ListWebhookEventsResponse, tonic::Status> {
    app.webhooks
        .clone()
        .list_webhook_events(app.as_admin(v1::ListWebhookEventsRequest {
            state: state.into(),
            page_size,
            page_token: page_token.to_owned(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn redrive(app: &TestApp, id: &str) -> Result<v1::WebhookEvent, tonic::Status> {
    app.webhooks
        .clone()
        .redrive_webhook_event(app.as_admin(v1::RedriveWebhookEventRequest { id: id.to_owned() }))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn the_events_of_a_state_are_listed_newest_first_page_by_page_with_tokens_bound_to_the_state()
{
    let app = TestApp::spawn().await;
    let charge = paid_charge(&app).await;
    let mut received = Vec::new();
    for _ in 0..5 {
        received.push(deliver_about(&app, &charge.id).await);
    }
    let mut dead = Vec::new();
    for _ in 0..3 {
        let id = deliver_about(&app, &charge.id).await;
        make_dead(&app, &id).await;
        dead.push(id);
    }
    received.reverse();
    dead.reverse();

    let mut listed = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list(&app, v1::WebhookEventState::Received, 2, &token)
            .await
            .expect("a page");
        pages += 1;
        assert!(page.events.len() <= 2);
        listed.extend(page.events.iter().map(|event| event.id.clone()));
        assert!(page.events.iter().all(|event| {
            event.state == v1::WebhookEventState::Received as i32 && event.charge_id == charge.id
        }));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        // A token of the received list does not page the dead one.
        let crossed = list(&app, v1::WebhookEventState::Dead, 2, &token)
            .await
            .expect_err("a token of another state");
        assert_eq!(crossed.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&crossed), ["page_token"]);
    }
    assert_eq!(listed, received, "newest first, each once");
    assert_eq!(pages, 3);

    let dead_page = list(&app, v1::WebhookEventState::Dead, 0, "")
        .await
        .expect("the dead events");
    let dead_listed: Vec<String> = dead_page
        .events
        .iter()
        .map(|event| event.id.clone())
        .collect();
    assert_eq!(dead_listed, dead);
    let first = &dead_page.events[0];
    assert_eq!(first.attempts, 8);
    assert_eq!(first.last_error, "the provider answered 500");
    assert!(first.dead_time.is_some() && first.next_attempt_time.is_none());
    assert!(
        list(&app, v1::WebhookEventState::Processed, 0, "")
            .await
            .expect("none processed")
            .events
            .is_empty()
    );

    let unspecified = list(&app, v1::WebhookEventState::Unspecified, 0, "")
        .await
        .expect_err("a state is required");
    assert_eq!(unspecified.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&unspecified), ["state"]);
}

#[tokio::test]
async fn an_event_is_read_by_its_id_with_what_happened_to_it() {
    let app = TestApp::spawn().await;
    let charge = paid_charge(&app).await;
    let id = deliver_about(&app, &charge.id).await;
    let event = app
        .webhooks
        .clone()
        .get_webhook_event(app.as_admin(v1::GetWebhookEventRequest { id: id.clone() }))
        .await
        .expect("the event")
        .into_inner();
    assert_eq!(event.id, id);
    assert_eq!(event.r#type, "payment_intent.succeeded");
    assert_eq!(event.state, v1::WebhookEventState::Received as i32);
    assert_eq!(event.charge_id, charge.id);
    assert_eq!((event.attempts, event.redrive_count), (0, 0));
    assert!(event.receive_time.is_some() && event.create_time.is_some());
    assert!(event.next_attempt_time.is_some());
    assert!(event.process_time.is_none() && event.dead_time.is_none());

    let unknown = app
        .webhooks
        .clone()
        .get_webhook_event(app.as_admin(v1::GetWebhookEventRequest {
            id: "evt_never_sent".to_owned(),
        }))
        .await
        .expect_err("no such event");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_reason(&unknown, Reason::WebhookEventNotFound);
    let empty = app
        .webhooks
        .clone()
        .get_webhook_event(app.as_admin(v1::GetWebhookEventRequest { id: String::new() }))
        .await
        .expect_err("an id is required");
    assert_eq!(violated_fields(&empty), ["id"]);
}

#[derive(diesel::QueryableByName)]
struct QueueState {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    redrive_count: i32,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    due_now: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    leased: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    has_dead_at: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    last_error: Option<String>,
}

async fn queue_state(app: &TestApp, id: &str) -> QueueState {
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "SELECT state, attempts, redrive_count, next_attempt_at <= now() AS due_now, \
         lease_expires_at IS NOT NULL AS leased, dead_at IS NOT NULL AS has_dead_at, last_error \
         FROM webhook_events WHERE id = $1",
    )
    .bind::<Text, _>(id)
    .get_result(&mut conn)
    .await
    .expect("the event's row")
}

#[tokio::test]
async fn a_dead_event_is_redriven_back_to_the_queue_and_a_received_one_is_answered_as_it_is() {
    let app = TestApp::spawn().await;
    let charge = paid_charge(&app).await;
    let id = deliver_about(&app, &charge.id).await;
    make_dead(&app, &id).await;
    let wake = app.webhook_wake.clone();
    let woken = tokio::spawn(async move { wake.notified().await });

    let redriven = redrive(&app, &id).await.expect("re-driven");
    assert_eq!(redriven.state, v1::WebhookEventState::Received as i32);
    assert_eq!((redriven.attempts, redriven.redrive_count), (0, 1));
    assert_eq!(redriven.last_error, "the provider answered 500");
    let row = queue_state(&app, &id).await;
    assert_eq!(row.state, "received");
    assert_eq!((row.attempts, row.redrive_count), (0, 1));
    assert!(row.due_now && !row.leased && !row.has_dead_at);
    assert_eq!(
        row.last_error.as_deref(),
        Some("the provider answered 500"),
        "kept for the record"
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), woken)
        .await
        .expect("a re-drive wakes a worker")
        .expect("the waiter ran");

    // Again: it is already back in the queue, and nothing changes.
    let again = redrive(&app, &id).await.expect("answered as it is");
    assert_eq!(again.redrive_count, 1);
    assert_eq!(queue_state(&app, &id).await.redrive_count, 1);
}

#[tokio::test]
async fn a_processed_event_cannot_be_redriven_and_an_unknown_one_is_not_found() {
    let app = TestApp::spawn().await;
    let charge = paid_charge(&app).await;
    let id = deliver_about(&app, &charge.id).await;
    make_processed(&app, &id).await;
    let refused = redrive(&app, &id).await.expect_err("processed");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_reason(&refused, Reason::WebhookEventNotDead);
    let violation = details(&refused)
        .precondition_failure()
        .expect("a PreconditionFailure")
        .violations[0]
        .clone();
    assert_eq!(violation.r#type, "WEBHOOK_EVENT_STATE");
    assert_eq!(violation.subject, format!("webhook-events/{id}"));
    assert_eq!(queue_state(&app, &id).await.state, "processed");

    let unknown = redrive(&app, "evt_never_sent").await.expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn customers_and_agents_are_refused_and_another_account_sees_none_of_the_events() {
    let app = TestApp::spawn().await;
    let charge = paid_charge(&app).await;
    let ours = deliver_about(&app, &charge.id).await;
    make_dead(&app, &ours).await;
    // An event about no charge of ours belongs to no account: nobody lists it.
    let (orphan, body) = event(
        "payment_intent.succeeded",
        json!({"object": "payment_intent"}),
    );
    receive_signed(&app, body).await;
    make_dead(&app, &orphan).await;

    for role in [v1::UserRole::Customer, v1::UserRole::Agent] {
        let user = app.add_user(&app.admin, role).await;
        let refused = app
            .webhooks
            .clone()
            .list_webhook_events(user.request(v1::ListWebhookEventsRequest {
                state: v1::WebhookEventState::Dead.into(),
                ..Default::default()
            }))
            .await
            .expect_err("admins only");
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert_reason(&refused, Reason::RoleRequired);
    }

    let stranger = app.sign_up_another_account().await;
    let theirs = app
        .webhooks
        .clone()
        .list_webhook_events(stranger.request(v1::ListWebhookEventsRequest {
            state: v1::WebhookEventState::Dead.into(),
            ..Default::default()
        }))
        .await
        .expect("their own (empty) list")
        .into_inner();
    assert!(theirs.events.is_empty(), "{theirs:?}");
    for id in [&ours, &orphan] {
        let hidden = app
            .webhooks
            .clone()
            .redrive_webhook_event(
                stranger.request(v1::RedriveWebhookEventRequest { id: id.clone() }),
            )
            .await
            .expect_err("not theirs");
        assert_eq!(hidden.code(), Code::NotFound);
    }
    assert_eq!(queue_state(&app, &ours).await.state, "dead");

    let mine: Vec<String> = list(&app, v1::WebhookEventState::Dead, 0, "")
        .await
        .expect("the account's dead events")
        .events
        .into_iter()
        .map(|event| event.id)
        .collect();
    assert_eq!(mine, [ours], "the orphan event belongs to no account");
}
