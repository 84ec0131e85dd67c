//! Webhooks the desk sends (docs/webhooks.md, "Webhooks we send"), end to end: endpoints
//! registered through the API, events written by the changes they report, deliveries made by the
//! workers to a real HTTP receiver that verifies every one with the Standard Webhooks reference
//! library (PyPI `standardwebhooks`), and the state checked where it lives, in PostgreSQL.
//!
//! No test sends a packet outside 127.0.0.0/8: deliveries that must be refused go through the
//! service's own host table (`OUTBOUND_WEBHOOK_RESOLVE`) to internal addresses, and through a
//! dial seam that records every address the client was about to dial and refuses any outside
//! loopback, so a broken policy fails the test instead of reaching the network.

mod fairness;
mod outages;
mod secret_rotation;
mod stuck_endpoints;
mod watching;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost_types::FieldMask;
use supportdesk::configuration::Settings;
use supportdesk::providers::webhook_client::DialSeam;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::webhook_endpoint_service_client::WebhookEndpointServiceClient;
use tonic::transport::Channel;

use crate::support::webhook_receiver::{ReceivedAttempt, WebhookReceiver};
use supportdesk::errors::Reason;

use crate::support::{PATIENCE, TestApp, assert_reason, count_of, keyed, wait_until};

/// A seam that records every address it is asked about and refuses all but loopback.
#[derive(Debug, Default)]
struct LoopbackOnly {
    asked: Mutex<Vec<SocketAddr>>,
}

impl DialSeam for LoopbackOnly {
    fn check(&self, address: SocketAddr) -> Result<(), String> {
        self.asked.lock().unwrap().push(address);
        if address.ip().is_loopback() {
            Ok(())
        } else {
            Err(format!("the test seam refuses to dial {address}"))
        }
    }
}

impl LoopbackOnly {
    fn non_loopback_asked(&self) -> Vec<SocketAddr> {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|address| !address.ip().is_loopback())
            .copied()
            .collect()
    }
}

/// Delivery settings for tests: workers on, http and loopback allowed, quick retries.
fn delivering(settings: &mut Settings) {
    let outbound = &mut settings.outbound_webhooks;
    outbound.workers = 4;
    outbound.allow_http = true;
    outbound.allow_networks = vec!["127.0.0.0/8".parse().unwrap()];
    outbound.poll_interval = Duration::from_millis(50);
    outbound.attempt_timeout = Duration::from_secs(2);
    outbound.retry_schedule =
        supportdesk::domain::RetrySchedule::parse("100ms,100ms,100ms").unwrap();
}

/// An app that delivers, with the recording seam.
async fn delivering_app(configure: impl FnOnce(&mut Settings)) -> (TestApp, Arc<LoopbackOnly>) {
    let seam = Arc::new(LoopbackOnly::default());
    let installed = seam.clone();
    let app = TestApp::spawn_with_application(
        |settings| {
            delivering(settings);
            configure(settings);
        },
        move |builder| builder.with_dial_seam(installed),
    )
    .await;
    (app, seam)
}

fn endpoints(app: &TestApp) -> WebhookEndpointServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", app.address))
        .unwrap()
        .connect_lazy();
    WebhookEndpointServiceClient::new(channel)
}

/// Registers `url` for `event_types` and returns the endpoint and its secret.
async fn register(app: &TestApp, url: &str, event_types: &[&str]) -> (v1::WebhookEndpoint, String) {
    let created = app
        .webhook_endpoint(url)
        .description("the test receiver")
        .event_types(event_types)
        .create()
        .await;
    (created.webhook_endpoint.unwrap(), created.secret)
}

fn event_type(attempt: &ReceivedAttempt) -> String {
    attempt.payload["type"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn ticket_changes_reach_an_endpoint_in_order_signed_as_the_reference_library_verifies() {
    let receiver = WebhookReceiver::start().await;
    let (app, seam) = delivering_app(|_| {}).await;
    let (endpoint, secret) = register(&app, &receiver.url("desk"), &[]).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    receiver.configure("desk", &[&secret], "ok").await;

    let ticket = app.create_ticket("Printer on fire").await;
    app.tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                subject: "Printer on fire, again".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["subject".to_owned()],
            }),
        }))
        .await
        .expect("the ticket is updated");
    app.comment(&ticket.id, "Have you tried water?")
        .public()
        .add()
        .await;

    let attempts = receiver.wait_for_attempts("desk", 3, PATIENCE).await;
    assert!(
        attempts.iter().all(ReceivedAttempt::verified),
        "every delivery verifies with the endpoint's secret: {attempts:#?}"
    );
    assert_eq!(
        attempts.iter().map(event_type).collect::<Vec<_>>(),
        ["ticket.created", "ticket.updated", "comment.created"],
        "in the order the changes happened"
    );
    for attempt in &attempts {
        assert_eq!(attempt.endpoint, "desk");
        assert_eq!(attempt.method, "POST");
        assert_eq!(attempt.behaviour, "ok");
        assert_eq!(
            attempt.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
        assert!(
            attempt
                .webhook_signature
                .as_deref()
                .is_some_and(|signature| signature.starts_with("v1,") && !signature.contains(' ')),
            "one v1 signature outside a rotation: {:?}",
            attempt.webhook_signature
        );
        let stamped: f64 = attempt
            .webhook_timestamp
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        assert!((attempt.received_at - stamped).abs() < 60.0);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&attempt.body).unwrap(),
            attempt.payload
        );
    }
    assert_eq!(
        receiver.delivered("desk").await,
        attempts
            .iter()
            .map(|attempt| attempt.webhook_id.clone().unwrap())
            .collect::<Vec<_>>(),
        "each verified and answered 2xx, once"
    );
    let updated = &attempts[1].payload;
    assert_eq!(updated["ticket"]["id"], ticket.id.as_str());
    assert_eq!(updated["ticket"]["subject"], "Printer on fire, again");
    assert_eq!(updated["changedFields"], serde_json::json!(["subject"]));
    assert_eq!(updated["accountId"], app.account_id.to_string());
    assert_eq!(updated["apiVersion"], "2026-11-28");
    assert_eq!(
        attempts[1].webhook_id.as_deref(),
        updated["id"].as_str(),
        "webhook-id is the event's id"
    );
    assert_eq!(
        attempts[2].payload["comment"]["body"],
        "Have you tried water?"
    );
    // The state lives in PostgreSQL: three deliveries, each succeeded at its first attempt.
    wait_until(
        "the deliveries are recorded as succeeded",
        PATIENCE,
        || async {
            count_of(
                &app.database,
                &format!(
                    "SELECT count(*) AS count FROM webhook_deliveries \
                 WHERE endpoint_id = '{}' AND state = 'succeeded' AND attempts = 1",
                    endpoint.id
                ),
            )
            .await
                == 3
        },
    )
    .await;
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM webhook_delivery_attempts WHERE http_status = 200"
        )
        .await,
        3
    );
    assert!(seam.non_loopback_asked().is_empty());
}

#[tokio::test]
async fn an_endpoint_is_sent_only_the_types_it_subscribed_to_and_never_another_accounts_events() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|_| {}).await;
    let (_, comments_secret) =
        register(&app, &receiver.url("comments"), &["comment.created"]).await;
    receiver
        .configure("comments", &[&comments_secret], "ok")
        .await;
    let other = app.sign_up_another_account().await;
    let others = app
        .webhook_endpoint(&receiver.url("other-account"))
        .by(&other)
        .create()
        .await;
    receiver
        .configure("other-account", &[&others.secret], "ok")
        .await;

    let ticket = app.create_ticket("Only comments please").await;
    app.comment(&ticket.id, "Noted.").add().await;

    let attempts = receiver.wait_for_attempts("comments", 1, PATIENCE).await;
    assert_eq!(event_type(&attempts[0]), "comment.created");
    assert!(attempts[0].verified());
    // The other account's endpoint was never sent this account's events: it has no delivery.
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM webhook_deliveries WHERE endpoint_id = '{}'",
                others.webhook_endpoint.unwrap().id
            ),
        )
        .await,
        0
    );
    assert!(receiver.attempts(Some("other-account")).await.is_empty());
    // Nor was the filtered endpoint sent the ticket's creation.
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM webhook_deliveries WHERE event_type = 'ticket.created'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_on_schedule_and_every_attempt_is_listed() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|_| {}).await;
    let (endpoint, secret) = register(&app, &receiver.url("flaky"), &["ticket.created"]).await;
    receiver
        .configure("flaky", &[&secret], "fail_first:2")
        .await;

    app.create_ticket("Retry me").await;
    let attempts = receiver.wait_for_attempts("flaky", 3, PATIENCE).await;
    assert_eq!(
        attempts
            .iter()
            .map(|attempt| attempt.status)
            .collect::<Vec<_>>(),
        [Some(500), Some(500), Some(200)]
    );
    assert!(
        attempts
            .iter()
            .all(|attempt| attempt.webhook_id == attempts[0].webhook_id),
        "every attempt carries the event's one id"
    );
    wait_until(
        "the delivery is recorded as succeeded",
        PATIENCE,
        || async {
            count_of(
                &app.database,
                &format!(
                    "SELECT count(*) AS count FROM webhook_deliveries \
                 WHERE endpoint_id = '{}' AND state = 'succeeded'",
                    endpoint.id
                ),
            )
            .await
                == 1
        },
    )
    .await;
    let mut listed = endpoints(&app)
        .list_webhook_deliveries(app.as_admin(v1::ListWebhookDeliveriesRequest {
            endpoint_id: endpoint.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let delivery = listed.webhook_deliveries.remove(0);
    assert_eq!(delivery.state, v1::WebhookDeliveryState::Succeeded as i32);
    assert_eq!(delivery.attempts, 3);
    assert_eq!(
        delivery
            .attempt_log
            .iter()
            .map(|attempt| (attempt.attempt, attempt.http_status))
            .collect::<Vec<_>>(),
        [(3, 200), (2, 500), (1, 500)],
        "newest first, each with the status the endpoint answered"
    );
}

#[tokio::test]
async fn an_endpoint_failing_for_the_whole_schedule_is_disabled_and_enabling_it_delivers_what_it_missed()
 {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|settings| {
        settings.outbound_webhooks.retry_schedule =
            supportdesk::domain::RetrySchedule::parse("50ms,50ms").unwrap();
    })
    .await;
    let (endpoint, secret) = register(&app, &receiver.url("down"), &["ticket.created"]).await;
    receiver.configure("down", &[&secret], "status:503").await;

    let first = app.create_ticket("While it was down").await;
    wait_until("the endpoint is disabled", PATIENCE, || async {
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM webhook_endpoints \
                 WHERE id = '{}' AND state = 'disabled' AND disabled_reason = 'failing'",
                endpoint.id
            ),
        )
        .await
            == 1
    })
    .await;
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM events \
                 WHERE type = 'endpoint.disabled' AND resource_id = '{}'",
                endpoint.id
            ),
        )
        .await,
        1,
        "endpoint.disabled is recorded"
    );
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM notifications \
                 WHERE kind = 'endpoint_disabled' AND recipient_user_id = '{}' \
                   AND data->>'endpoint_id' = '{}'",
                app.admin.id, endpoint.id
            ),
        )
        .await,
        1,
        "the account's admin is sent the notice, through the notifications outbox"
    );
    let read = endpoints(&app)
        .get_webhook_endpoint(app.as_admin(v1::GetWebhookEndpointRequest {
            id: endpoint.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(read.disabled);
    assert_eq!(read.disabled_reason, "failing");
    // While disabled, events wait for it.
    let second = app.create_ticket("While it was disabled").await;
    let tried = receiver.attempts(Some("down")).await.len();

    receiver.configure("down", &[&secret], "ok").await;
    endpoints(&app)
        .update_webhook_endpoint(app.as_admin(v1::UpdateWebhookEndpointRequest {
            webhook_endpoint: Some(v1::WebhookEndpoint {
                id: endpoint.id.clone(),
                disabled: false,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["disabled".to_owned()],
            }),
        }))
        .await
        .expect("the endpoint is enabled");
    let attempts = receiver
        .wait_for_attempts("down", tried + 2, PATIENCE)
        .await;
    let delivered: Vec<String> = attempts[tried..]
        .iter()
        .filter(|attempt| attempt.status == Some(200) && attempt.verified())
        .map(|attempt| attempt.payload["ticket"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        delivered,
        [first.id, second.id],
        "what it missed, in order: {:#?}",
        attempts
            .iter()
            .map(|attempt| (
                attempt.status,
                attempt.webhook_id.clone(),
                attempt.payload["ticket"]["id"].clone()
            ))
            .collect::<Vec<_>>()
    );
}

/// A delivery that was partway through its schedule when its endpoint was disabled (its next
/// attempt hours away) goes out at once when the endpoint is enabled, in order with what came
/// after, not hours later behind it.
#[tokio::test]
async fn enabling_an_endpoint_sends_at_once_a_delivery_it_held_partway_through_its_schedule() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|_| {}).await;
    let (endpoint, secret) = register(&app, &receiver.url("resting"), &["ticket.created"]).await;
    receiver.configure("resting", &[&secret], "ok").await;
    let set_disabled = |disabled: bool| {
        let mut client = endpoints(&app);
        let request = app.as_admin(v1::UpdateWebhookEndpointRequest {
            webhook_endpoint: Some(v1::WebhookEndpoint {
                id: endpoint.id.clone(),
                disabled,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["disabled".to_owned()],
            }),
        });
        async move { client.update_webhook_endpoint(request).await }
    };
    set_disabled(true).await.expect("disabled");
    let held = app.create_ticket("Partway through its schedule").await;
    let mut conn = app.database.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "UPDATE webhook_deliveries SET attempts = 2, \
                 next_attempt_at = now() + interval '5 hours' WHERE endpoint_id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(endpoint.id.parse::<uuid::Uuid>().unwrap()),
        &mut conn,
    )
    .await
    .unwrap();
    let later = app.create_ticket("After it").await;

    set_disabled(false).await.expect("enabled");

    let attempts = receiver.wait_for_attempts("resting", 2, PATIENCE).await;
    let delivered: Vec<&str> = attempts
        .iter()
        .filter(|attempt| attempt.status == Some(200) && attempt.verified())
        .map(|attempt| attempt.payload["ticket"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(delivered, [held.id.as_str(), later.id.as_str()]);
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM webhook_deliveries \
                 WHERE endpoint_id = '{}' AND state = 'succeeded'",
                endpoint.id
            ),
        )
        .await,
        2
    );
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_until_its_overlap_ends() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|settings| {
        settings.outbound_webhooks.secret_overlap = Duration::from_secs(2);
    })
    .await;
    let (endpoint, old) = register(&app, &receiver.url("rotating"), &["ticket.created"]).await;
    let rotated = endpoints(&app)
        .rotate_webhook_endpoint_secret(keyed(app.as_admin(
            v1::RotateWebhookEndpointSecretRequest {
                id: endpoint.id.clone(),
            },
        )))
        .await
        .unwrap()
        .into_inner();
    let new = rotated.secret;
    assert_ne!(new, old);
    assert!(
        rotated
            .webhook_endpoint
            .unwrap()
            .previous_secret_expire_time
            .is_some()
    );
    receiver.configure("rotating", &[&old, &new], "ok").await;

    app.create_ticket("During the overlap").await;
    let during = receiver.wait_for_attempts("rotating", 1, PATIENCE).await;
    assert_eq!(during[0].verified_with, [0, 1], "both secrets verify");

    wait_until("the overlap ends", PATIENCE, || async {
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM webhook_endpoints \
                 WHERE id = '{}' AND previous_secret_expires_at < now()",
                endpoint.id
            ),
        )
        .await
            == 1
    })
    .await;
    app.create_ticket("After the overlap").await;
    let after = receiver.wait_for_attempts("rotating", 2, PATIENCE).await;
    assert_eq!(after[1].verified_with, [1], "only the new secret verifies");
}

#[tokio::test]
async fn a_host_resolving_to_the_metadata_address_is_refused_before_anything_is_dialled() {
    let (app, seam) = delivering_app(|settings| {
        settings.outbound_webhooks.resolve.insert(
            "metadata.test".to_owned(),
            vec!["169.254.169.254".parse().unwrap()],
        );
        settings.outbound_webhooks.resolve.insert(
            "private.test".to_owned(),
            vec![
                "10.0.0.7".parse().unwrap(),
                "::ffff:192.168.0.1".parse().unwrap(),
            ],
        );
    })
    .await;
    let (metadata, _) = register(
        &app,
        "http://metadata.test/latest/meta-data",
        &["ticket.created"],
    )
    .await;
    let (private, _) = register(&app, "http://private.test:8080/hook", &["ticket.created"]).await;

    app.create_ticket("Reach for the cloud").await;
    for (endpoint, words) in [
        (&metadata, "the cloud metadata address"),
        (&private, "a private address"),
    ] {
        wait_until("the refused attempt is recorded", PATIENCE, || async {
            count_of(
                &app.database,
                &format!(
                    "SELECT count(*) AS count FROM webhook_delivery_attempts \
                     WHERE endpoint_id = '{}' AND http_status IS NULL \
                       AND error LIKE '%{words}%'",
                    endpoint.id
                ),
            )
            .await
                >= 1
        })
        .await;
    }
    assert!(
        seam.non_loopback_asked().is_empty(),
        "the policy refused before the dial seam was asked: {:?}",
        seam.non_loopback_asked()
    );
}

#[tokio::test]
async fn an_internal_address_is_refused_when_registered_unless_the_operator_allows_its_network() {
    let app = TestApp::spawn_with(|settings| {
        settings.outbound_webhooks.allow_http = true;
    })
    .await;
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://[::ffff:169.254.169.254]/",
        "http://10.1.2.3/",
        "http://localhost:8080/",
    ] {
        let refused = app.webhook_endpoint(url).try_create().await.expect_err(url);
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{url}");
        assert_eq!(
            crate::support::violated_fields(&refused),
            ["webhook_endpoint.url"],
            "{url}"
        );
    }
    let https_only = TestApp::spawn().await;
    let refused = https_only
        .webhook_endpoint("http://hooks.example.com/")
        .try_create()
        .await
        .unwrap_err();
    assert!(refused.message().contains("https"), "{}", refused.message());
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM webhook_endpoints"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_6to4_or_teredo_address_embedding_an_internal_ipv4_address_is_never_registered_or_dialled()
 {
    // 2002:7f00:1:: is 6to4 for 127.0.0.1, 2002:a9fe:a9fe:: for the metadata address; the
    // Teredo address carries 127.0.0.1 inverted in its last 32 bits.
    let (app, seam) = delivering_app(|settings| {
        settings.outbound_webhooks.allow_networks = Vec::new();
        settings.outbound_webhooks.resolve.insert(
            "six-to-four.test".to_owned(),
            vec!["2002:a9fe:a9fe::".parse().unwrap()],
        );
    })
    .await;
    for url in [
        "http://[2002:7f00:1::]/",
        "http://[2002:a9fe:a9fe::1]:8080/latest/meta-data",
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
    ] {
        let refused = app.webhook_endpoint(url).try_create().await.expect_err(url);
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{url}");
        assert_eq!(
            crate::support::violated_fields(&refused),
            ["webhook_endpoint.url"],
            "{url}"
        );
    }
    let (endpoint, _) = register(&app, "http://six-to-four.test/hook", &["ticket.created"]).await;
    app.create_ticket("Tunnel to the metadata").await;
    wait_until("the refused attempt is recorded", PATIENCE, || async {
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM webhook_delivery_attempts \
                 WHERE endpoint_id = '{}' AND http_status IS NULL \
                   AND error LIKE '%the cloud metadata address%'",
                endpoint.id
            ),
        )
        .await
            >= 1
    })
    .await;
    assert!(
        seam.asked.lock().unwrap().is_empty(),
        "the policy refused before the dial seam was asked: {:?}",
        seam.asked.lock().unwrap()
    );
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM webhook_endpoints"
        )
        .await,
        1,
        "only the host name was registered"
    );
}

#[tokio::test]
async fn a_redirect_is_never_followed() {
    let receiver = WebhookReceiver::start().await;
    let (app, seam) = delivering_app(|_| {}).await;
    let (endpoint, secret) = register(&app, &receiver.url("moved"), &["ticket.created"]).await;
    receiver
        .configure(
            "moved",
            &[&secret],
            "redirect:http://169.254.169.254/latest/meta-data",
        )
        .await;

    app.create_ticket("Follow me").await;
    wait_until(
        "the redirect is recorded as a failed attempt",
        PATIENCE,
        || async {
            count_of(
                &app.database,
                &format!(
                    "SELECT count(*) AS count FROM webhook_delivery_attempts \
                 WHERE endpoint_id = '{}' AND http_status = 302",
                    endpoint.id
                ),
            )
            .await
                >= 1
        },
    )
    .await;
    assert!(seam.non_loopback_asked().is_empty());
}

#[tokio::test]
async fn a_test_event_goes_to_its_endpoint_alone_and_carries_no_secret() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|_| {}).await;
    let (tested, secret) = register(&app, &receiver.url("tested"), &[]).await;
    let (_, bystander_secret) = register(&app, &receiver.url("bystander"), &[]).await;
    receiver.configure("tested", &[&secret], "ok").await;
    receiver
        .configure("bystander", &[&bystander_secret], "ok")
        .await;

    let delivery = endpoints(&app)
        .send_test_webhook_event(app.as_admin(v1::SendTestWebhookEventRequest {
            id: tested.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(delivery.event_type, "endpoint.test");
    let attempts = receiver.wait_for_attempts("tested", 1, PATIENCE).await;
    assert_eq!(event_type(&attempts[0]), "endpoint.test");
    assert_eq!(
        attempts[0].payload["webhookEndpoint"]["id"],
        tested.id.as_str()
    );
    assert!(attempts[0].verified());
    assert!(receiver.attempts(Some("bystander")).await.is_empty());
    // Neither the delivery nor the stored event holds the endpoint's secret in any form.
    let key = secret.trim_start_matches("whsec_");
    assert!(!attempts[0].body.contains(key) && !attempts[0].body.contains("whsec_"));
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM events WHERE snapshot ?| \
             array['secret_ciphertext', 'previous_secret_ciphertext', 'lease_token']",
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_paid_charge_and_a_declined_one_are_told_as_charge_succeeded_and_charge_failed() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|_| {}).await;
    let (_, secret) = register(
        &app,
        &receiver.url("billing"),
        &["charge.succeeded", "charge.failed"],
    )
    .await;
    receiver.configure("billing", &[&secret], "ok").await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;

    let mut charges = Vec::new();
    for payment_method in ["pm_card_visa", "pm_card_chargeDeclined"] {
        let answer = app
            .charge(customer.id, 2500, "EUR")
            .paid_with(payment_method)
            .try_create()
            .await;
        charges.push(answer);
    }
    let paid = charges.remove(0).expect("the visa card pays");
    assert_eq!(
        charges.remove(0).expect_err("the card is declined").code(),
        tonic::Code::FailedPrecondition
    );

    let attempts = receiver.wait_for_attempts("billing", 2, PATIENCE).await;
    assert!(attempts.iter().all(ReceivedAttempt::verified));
    assert_eq!(
        attempts.iter().map(event_type).collect::<Vec<_>>(),
        ["charge.succeeded", "charge.failed"]
    );
    let succeeded = &attempts[0].payload["charge"];
    assert_eq!(succeeded["id"], paid.id.as_str());
    assert_eq!(succeeded["status"], "CHARGE_STATUS_SUCCEEDED");
    assert_eq!(succeeded["amount"]["amountMinor"], "2500");
    let failed = &attempts[1].payload["charge"];
    assert_eq!(failed["status"], "CHARGE_STATUS_FAILED");
    assert_eq!(failed["failureCode"], "card_declined");
}

#[tokio::test]
async fn a_refund_is_told_as_refund_succeeded_carrying_the_charge_after_it_and_the_refund() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|_| {}).await;
    let (_, secret) = register(&app, &receiver.url("refunds"), &["refund.succeeded"]).await;
    receiver.configure("refunds", &[&secret], "ok").await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let paid = app.charge(customer.id, 2500, "EUR").create().await;
    let refunded = app
        .billing
        .clone()
        .refund_charge(keyed(app.as_admin(v1::RefundChargeRequest {
            id: paid.id.clone(),
            amount: Some(v1::Money {
                amount_minor: 700,
                currency_code: "EUR".to_owned(),
            }),
        })))
        .await
        .expect("the refund is made")
        .into_inner();

    let attempts = receiver.wait_for_attempts("refunds", 1, PATIENCE).await;
    assert!(attempts[0].verified());
    assert_eq!(event_type(&attempts[0]), "refund.succeeded");
    let payload = &attempts[0].payload;
    assert_eq!(payload["charge"]["id"], paid.id.as_str());
    assert_eq!(payload["charge"]["amountRefunded"]["amountMinor"], "700");
    assert_eq!(payload["charge"]["etag"], refunded.etag.as_str());
    assert_eq!(payload["refund"]["amount"]["amountMinor"], "700");
    assert_eq!(payload["refund"]["amount"]["currencyCode"], "EUR");
    let refund_id = payload["refund"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM refunds WHERE id = '{refund_id}' \
                 AND charge_id = '{}' AND status = 'succeeded' AND amount_minor = 700",
                paid.id
            ),
        )
        .await,
        1
    );
    assert!(
        payload["refund"]["providerRefundId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

#[tokio::test]
async fn a_completed_upload_and_a_finished_import_are_told_as_attachment_ready_and_operation_done()
{
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|settings| settings.operations.workers = 1).await;
    let (_, secret) = register(
        &app,
        &receiver.url("work"),
        &["attachment.ready", "operation.done"],
    )
    .await;
    receiver.configure("work", &[&secret], "ok").await;

    let attachment = crate::support::attachments::ready_attachment(&app).await;
    let attempts = receiver.wait_for_attempts("work", 1, PATIENCE).await;
    assert_eq!(event_type(&attempts[0]), "attachment.ready");
    assert_eq!(
        attempts[0].payload["attachment"]["id"],
        attachment.id.as_str()
    );
    assert_eq!(
        attempts[0].payload["attachment"]["state"],
        "ATTACHMENT_STATE_READY"
    );
    assert_eq!(
        attempts[0].payload["attachment"]["sha256"],
        attachment.sha256.as_str()
    );

    let started = app
        .tickets
        .clone()
        .import_tickets(app.as_admin(v1::ImportTicketsRequest {
            format: v1::ImportFormat::Csv.into(),
            content: format!(
                "subject,description,requester_email,priority\n\
                 Imported one,From the old desk,{email},low\n\
                 ,No subject,{email},low\n",
                email = app.admin.email
            ),
        }))
        .await
        .expect("the import is accepted")
        .into_inner();
    let attempts = receiver.wait_for_attempts("work", 2, PATIENCE).await;
    assert!(attempts.iter().all(ReceivedAttempt::verified));
    assert_eq!(event_type(&attempts[1]), "operation.done");
    let operation = &attempts[1].payload["operation"];
    assert_eq!(operation["name"], started.name.as_str());
    assert_eq!(operation["done"], true);
    assert_eq!(operation["response"]["rowsImported"], "1");
    assert_eq!(operation["response"]["rowsFailed"], "1");
    assert_eq!(operation["response"]["rowErrors"][0]["field"], "subject");
    assert_eq!(
        operation["metadata"]["@type"],
        "type.googleapis.com/supportdesk.v1.ImportTicketsMetadata"
    );
    // The import's rows are no part of what is sent.
    assert!(!attempts[1].body.contains("From the old desk"));
}

/// The attempts PostgreSQL holds for `endpoint`, as (http status, error, excerpt length).
async fn recorded_attempts(
    app: &TestApp,
    endpoint: &str,
) -> Vec<(Option<i32>, Option<String>, i32)> {
    #[derive(diesel::QueryableByName)]
    struct Attempt {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
        http_status: Option<i32>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        error: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        excerpt_bytes: i32,
    }
    let mut conn = app.database.connect().await;
    let rows: Vec<Attempt> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT http_status, error, octet_length(response_excerpt) AS excerpt_bytes \
             FROM webhook_delivery_attempts WHERE endpoint_id = $1 ORDER BY started_at",
        )
        .bind::<diesel::sql_types::Uuid, _>(uuid::Uuid::parse_str(endpoint).unwrap()),
        &mut conn,
    )
    .await
    .expect("read the attempts");
    rows.into_iter()
        .map(|row| (row.http_status, row.error, row.excerpt_bytes))
        .collect()
}

#[tokio::test]
async fn endpoints_that_hang_reset_fail_or_answer_forever_do_not_hold_back_a_healthy_one() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|settings| {
        // The attempts that never end outlast the test: nothing the healthy endpoint received can
        // have waited for one of them to time out.
        settings.outbound_webhooks.attempt_timeout = Duration::from_secs(120);
        settings.outbound_webhooks.workers = 6;
    })
    .await;
    let mut troubled = Vec::new();
    for behaviour in [
        "hang",
        "hang_after_headers",
        "slow:300000",
        "reset",
        "status:500",
        "endless_body",
    ] {
        let name = behaviour.replace(':', "-");
        let (endpoint, secret) = register(&app, &receiver.url(&name), &["ticket.created"]).await;
        receiver.configure(&name, &[&secret], behaviour).await;
        troubled.push((behaviour, endpoint.id));
    }
    let (_, secret) = register(&app, &receiver.url("healthy"), &["ticket.created"]).await;
    receiver.configure("healthy", &[&secret], "ok").await;

    let mut subjects = Vec::new();
    for n in 0..20 {
        let subject = format!("Isolated {n}");
        app.create_ticket(&subject).await;
        subjects.push(subject);
    }

    let delivered = receiver.wait_for_attempts("healthy", 20, PATIENCE).await;
    assert!(delivered.iter().all(ReceivedAttempt::verified));
    assert_eq!(
        delivered
            .iter()
            .map(|attempt| attempt.payload["ticket"]["subject"]
                .as_str()
                .unwrap()
                .to_owned())
            .collect::<Vec<_>>(),
        subjects
    );
    // The three that never finish answering are still being waited for, each by one worker.
    for (behaviour, endpoint) in &troubled[..3] {
        assert_eq!(recorded_attempts(&app, endpoint).await, [], "{behaviour}");
        assert_eq!(
            receiver
                .attempts(Some(&behaviour.replace(':', "-")))
                .await
                .len(),
            1
        );
    }
    // The reset and the 500 failed and wait for their retries; the endless answer was cut at
    // the bounded read.
    let (reset, failing, endless) = (&troubled[3].1, &troubled[4].1, &troubled[5].1);
    wait_until("the reset attempt is recorded", PATIENCE, || async {
        !recorded_attempts(&app, reset).await.is_empty()
    })
    .await;
    let (status, error, _) = recorded_attempts(&app, reset).await.remove(0);
    assert_eq!(status, None);
    assert!(error.is_some_and(|error| !error.is_empty()));
    wait_until("the 500 is recorded", PATIENCE, || async {
        !recorded_attempts(&app, failing).await.is_empty()
    })
    .await;
    assert_eq!(recorded_attempts(&app, failing).await[0].0, Some(500));
    wait_until("the endless answer is recorded", PATIENCE, || async {
        !recorded_attempts(&app, endless).await.is_empty()
    })
    .await;
    let (status, _, excerpt_bytes) = recorded_attempts(&app, endless).await.remove(0);
    assert_eq!(status, Some(200));
    assert!(excerpt_bytes <= 2048, "{excerpt_bytes}");
}

#[tokio::test]
async fn events_past_their_retention_are_deleted_once_none_of_their_deliveries_is_pending() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|settings| {
        settings.outbound_webhooks.event_sweep_interval = Duration::from_millis(100);
        // A failed attempt is retried an hour later: its delivery stays pending.
        settings.outbound_webhooks.retry_schedule =
            supportdesk::domain::RetrySchedule::parse("1h").unwrap();
    })
    .await;
    let (_, secret) = register(
        &app,
        &receiver.url("answering"),
        &["ticket.created", "ticket.updated"],
    )
    .await;
    receiver.configure("answering", &[&secret], "ok").await;
    let (_, secret) = register(&app, &receiver.url("failing"), &["ticket.updated"]).await;
    receiver
        .configure("failing", &[&secret], "status:500")
        .await;

    let settled = app.create_ticket("Told everyone").await;
    app.tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: settled.id.clone(),
                priority: v1::TicketPriority::High.into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["priority".to_owned()],
            }),
        }))
        .await
        .expect("the ticket is updated");
    let recent = app.create_ticket("Told just now").await;
    receiver.wait_for_attempts("answering", 3, PATIENCE).await;
    receiver.wait_for_attempts("failing", 1, PATIENCE).await;
    let events_of = |ticket: &str, kind: &str| {
        format!(
            "SELECT count(*) AS count FROM events \
             WHERE resource_id = '{ticket}' AND type = '{kind}'"
        )
    };
    wait_until("the failed attempt is recorded", PATIENCE, || async {
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM webhook_deliveries \
             WHERE state = 'pending' AND attempts = 1",
        )
        .await
            == 1
    })
    .await;

    // Both of the first ticket's events are past the retention of 30 days.
    let mut conn = app.database.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE events SET created_at = now() - interval '31 days' \
             WHERE resource_id = '{}'",
            settled.id
        )),
        &mut conn,
    )
    .await
    .expect("the events are backdated");

    wait_until("the settled old event is swept", PATIENCE, || async {
        count_of(&app.database, &events_of(&settled.id, "ticket.created")).await == 0
    })
    .await;
    // Its delivery and attempt went with it; the old event still owed to an endpoint stays, with
    // both deliveries; the recent one stays.
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM webhook_deliveries WHERE event_type = 'ticket.created' \
             AND event_id NOT IN (SELECT id FROM events)",
        )
        .await,
        0
    );
    assert_eq!(
        count_of(&app.database, &events_of(&settled.id, "ticket.updated")).await,
        1
    );
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM webhook_deliveries d JOIN events e \
                 ON e.id = d.event_id WHERE e.resource_id = '{}'",
                settled.id
            ),
        )
        .await,
        2
    );
    assert_eq!(
        count_of(&app.database, &events_of(&recent.id, "ticket.created")).await,
        1
    );
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM webhook_delivery_attempts a \
             WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = a.delivery_id)",
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_redrive_committed_while_the_retention_sweep_runs_is_delivered_not_swept_away() {
    use diesel_async::RunQueryDsl;

    // No workers and no sweeper of the app's own: the test runs the sweep itself, at the moment
    // it chooses.
    let app = TestApp::spawn_with(|settings| {
        settings.outbound_webhooks.workers = 0;
        settings.outbound_webhooks.event_sweep_interval = Duration::from_secs(3600);
    })
    .await;
    let (endpoint, _) = register(&app, "https://hooks.example.com/gone", &["ticket.created"]).await;
    let ticket = app.create_ticket("Failed long ago").await;
    let mut conn = app.database.connect().await;
    let delivery: uuid::Uuid = diesel::sql_query(
        "UPDATE webhook_deliveries SET state = 'failed', attempts = 3, done_at = now() \
         WHERE endpoint_id = $1 RETURNING id",
    )
    .bind::<diesel::sql_types::Uuid, _>(endpoint.id.parse::<uuid::Uuid>().unwrap())
    .get_result::<DeliveryId>(&mut conn)
    .await
    .expect("the delivery is marked failed")
    .id;
    diesel::sql_query(format!(
        "UPDATE events SET created_at = now() - interval '31 days' WHERE resource_id = '{}'",
        ticket.id
    ))
    .execute(&mut conn)
    .await
    .expect("the event is backdated");

    // The redrive is held at the delivery's row, mid-statement, by a lock of the test's.
    diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
    diesel::sql_query("SELECT id FROM webhook_deliveries WHERE id = $1 FOR UPDATE")
        .bind::<diesel::sql_types::Uuid, _>(delivery)
        .execute(&mut conn)
        .await
        .unwrap();
    let redrive = tokio::spawn({
        let mut client = endpoints(&app);
        let request = app.as_admin(v1::RedriveWebhookDeliveryRequest {
            endpoint_id: endpoint.id.clone(),
            id: delivery.to_string(),
        });
        async move { client.redrive_webhook_delivery(request).await }
    });
    wait_until(
        "the redrive waits for the delivery's row",
        PATIENCE,
        || async { crate::support::backends_waiting_on_locks(&app.database).await == 1 },
    )
    .await;
    let pool = supportdesk::db::build_pool(&app.settings.database, Duration::from_secs(5));
    let sweep = tokio::spawn(async move {
        supportdesk::service::events::sweep_past_retention(&pool, Duration::from_secs(30 * 86_400))
            .await
    });
    wait_until(
        "the sweep has finished or waits for a lock",
        PATIENCE,
        || async {
            sweep.is_finished()
                || crate::support::backends_waiting_on_locks(&app.database).await == 2
        },
    )
    .await;
    diesel::sql_query("ROLLBACK")
        .execute(&mut conn)
        .await
        .unwrap();

    let redriven = redrive
        .await
        .unwrap()
        .expect("the delivery is redriven")
        .into_inner();
    assert_eq!(redriven.state, v1::WebhookDeliveryState::Pending as i32);
    assert_eq!(
        sweep.await.unwrap().expect("the sweep ran"),
        0,
        "the sweep skipped the event being redriven"
    );
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM webhook_deliveries \
                 WHERE id = '{delivery}' AND state = 'pending' AND redrive_count = 1 \
                   AND event_id IN (SELECT id FROM events)"
            ),
        )
        .await,
        1,
        "the redriven delivery and its event are kept, owed to the endpoint"
    );
    // Once the redrive has committed, a sweep sees the delivery pending and keeps the event.
    let pool = supportdesk::db::build_pool(&app.settings.database, Duration::from_secs(5));
    assert_eq!(
        supportdesk::service::events::sweep_past_retention(&pool, Duration::from_secs(30 * 86_400))
            .await
            .expect("the sweep ran"),
        0
    );
}

#[tokio::test]
async fn a_ticket_written_while_an_endpoint_is_being_deleted_is_saved_and_owes_that_endpoint_nothing()
 {
    use diesel_async::RunQueryDsl;

    let app = TestApp::spawn().await;
    let (leaving, _) = register(&app, "https://hooks.example.com/leaving", &[]).await;
    let (staying, _) = register(&app, "https://hooks.example.com/staying", &[]).await;
    // The endpoint's deletion holds its row until the test commits it.
    let mut conn = app.database.connect().await;
    diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
    diesel::sql_query("DELETE FROM webhook_endpoints WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(leaving.id.parse::<uuid::Uuid>().unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    let created = tokio::spawn({
        let mut tickets = app.tickets.clone();
        let request = keyed(app.as_admin(crate::support::valid_create_request(
            "Written during a deletion",
        )));
        async move { tickets.create_ticket(request).await }
    });
    wait_until(
        "the ticket's event waits for the endpoint's row",
        PATIENCE,
        || async { crate::support::backends_waiting_on_locks(&app.database).await == 1 },
    )
    .await;
    diesel::sql_query("COMMIT")
        .execute(&mut conn)
        .await
        .unwrap();

    let ticket = created
        .await
        .unwrap()
        .expect("the ticket is created")
        .into_inner();
    let deliveries_to = |endpoint: &str| {
        format!(
            "SELECT count(*) AS count FROM webhook_deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.endpoint_id = '{endpoint}' AND e.resource_id = '{}' \
               AND e.type = 'ticket.created'",
            ticket.id
        )
    };
    assert_eq!(
        count_of(&app.database, &deliveries_to(&staying.id)).await,
        1
    );
    assert_eq!(
        count_of(&app.database, &deliveries_to(&leaving.id)).await,
        0
    );
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM tickets WHERE id = '{}'",
                ticket.id
            ),
        )
        .await,
        1
    );
}

/// Enabling an endpoint after a long outage reschedules its whole backlog while it holds the
/// endpoint's row; every event its account writes meanwhile locks that row too (`FOR KEY SHARE`,
/// the fan-out's). The enabling takes the weakest lock that still serialises changes of the
/// endpoint (`FOR NO KEY UPDATE`), so the account's ticket writes go on beside it. With
/// `FOR UPDATE` they queued behind it.
#[tokio::test]
async fn a_ticket_written_while_an_endpoint_is_being_enabled_does_not_wait_for_the_enabling() {
    use diesel_async::RunQueryDsl;

    let app = TestApp::spawn().await;
    let (endpoint, _) = register(&app, "https://hooks.example.com/back", &[]).await;
    let endpoint_id = endpoint.id.parse::<uuid::Uuid>().unwrap();
    let set_disabled = |disabled: bool| {
        let mut client = endpoints(&app);
        let request = app.as_admin(v1::UpdateWebhookEndpointRequest {
            webhook_endpoint: Some(v1::WebhookEndpoint {
                id: endpoint.id.clone(),
                disabled,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["disabled".to_owned()],
            }),
        });
        async move { client.update_webhook_endpoint(request).await }
    };
    set_disabled(true).await.expect("disabled");
    app.create_ticket("Owed from the outage").await;
    // The owed delivery is partway through its schedule, so the enabling reschedules it; the
    // test holds its row, so the enabling waits there, holding the endpoint's row.
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '5 hours' \
         WHERE endpoint_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(endpoint_id)
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
    diesel::sql_query("SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 FOR UPDATE")
        .bind::<diesel::sql_types::Uuid, _>(endpoint_id)
        .execute(&mut conn)
        .await
        .unwrap();
    let enabling = tokio::spawn(set_disabled(false));
    wait_until(
        "the enabling waits for the delivery's row",
        PATIENCE,
        || async { crate::support::backends_waiting_on_locks(&app.database).await == 1 },
    )
    .await;

    let mut tickets = app.tickets.clone();
    let ticket = tokio::time::timeout(
        PATIENCE,
        tickets.create_ticket(keyed(app.as_admin(crate::support::valid_create_request(
            "Written while the endpoint is enabled",
        )))),
    )
    .await
    .expect("the ticket's write does not wait for the enabling")
    .expect("the ticket is created")
    .into_inner();
    assert!(!enabling.is_finished(), "the enabling still waits");
    assert_eq!(
        crate::support::backends_waiting_on_locks(&app.database).await,
        1
    );

    diesel::sql_query("COMMIT")
        .execute(&mut conn)
        .await
        .unwrap();
    enabling.await.unwrap().expect("the endpoint is enabled");
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM webhook_deliveries d \
                 JOIN events e ON e.id = d.event_id \
                 JOIN webhook_endpoints w ON w.id = d.endpoint_id \
                 WHERE w.id = '{endpoint_id}' AND w.state = 'enabled' \
                   AND e.resource_id = '{}' AND d.state = 'pending'",
                ticket.id
            ),
        )
        .await,
        1,
        "the ticket's event is owed to the enabled endpoint"
    );
}

#[derive(diesel::QueryableByName)]
struct DeliveryId {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: uuid::Uuid,
}

#[tokio::test]
async fn two_instances_deliver_every_event_to_every_endpoint_and_never_make_one_attempt_twice() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|settings| {
        settings.outbound_webhooks.batch = 5;
    })
    .await;
    let mut endpoints_made = Vec::new();
    for index in 0..20 {
        let name = format!("fleet-{index}");
        let (endpoint, secret) = register(&app, &receiver.url(&name), &["ticket.created"]).await;
        receiver.configure(&name, &[&secret], "ok").await;
        endpoints_made.push((name, endpoint));
    }
    let (_channel, second) = crate::support::second_instance(&app.settings).await;

    // 500 events for each of the 20 endpoints: 10,000 deliveries, shared by two instances.
    let mut conn = app.database.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "INSERT INTO tickets (id, account_id, subject, description, priority, status, requester_id) \
             SELECT gen_random_uuid(), $1, 'fleet ' || n, 'for every endpoint', 'normal', 'new', $2 \
             FROM generate_series(1, 500) n",
        )
        .bind::<diesel::sql_types::Uuid, _>(app.account_id.as_uuid())
        .bind::<diesel::sql_types::Uuid, _>(app.admin.id.as_uuid()),
        &mut conn,
    )
    .await
    .unwrap();

    wait_until(
        "every delivery succeeds",
        Duration::from_secs(120),
        || async {
            count_of(
                &app.database,
                "SELECT count(*) AS count FROM webhook_deliveries WHERE state = 'succeeded'",
            )
            .await
                == 10_000
        },
    )
    .await;
    second.abort();
    let attempts = receiver.attempts(None).await;
    assert!(attempts.iter().all(ReceivedAttempt::verified));
    // Every request the receiver got is one attempt the service recorded: had two instances
    // made the same attempt, the receiver would hold two requests where PostgreSQL keeps one
    // (a second record of one attempt number is refused). An attempt that failed (a timeout on
    // a loaded machine) and was made again is two recorded attempts, as at least once allows.
    let recorded = recorded_attempts_by_endpoint_and_event(&app).await;
    let endpoint_names: HashMap<String, &str> = endpoints_made
        .iter()
        .map(|(name, endpoint)| (endpoint.id.clone(), name.as_str()))
        .collect();
    let mut received: HashMap<(&str, &str), i64> = HashMap::new();
    for attempt in &attempts {
        let webhook_id = attempt.webhook_id.as_deref().expect("a webhook-id");
        *received.entry((&attempt.endpoint, webhook_id)).or_default() += 1;
    }
    let recorded: HashMap<(&str, String), i64> = recorded
        .iter()
        .map(|row| {
            let name = endpoint_names[&row.endpoint_id.to_string()];
            (
                (name, supportdesk::domain::event_public_id(row.event_id)),
                row.attempts,
            )
        })
        .collect();
    let unaccounted: Vec<_> = received
        .iter()
        .filter(|((name, id), count)| recorded.get(&(*name, (*id).to_owned())) != Some(*count))
        .collect();
    assert!(
        unaccounted.is_empty(),
        "requests received that are not each one recorded attempt (endpoint and webhook-id: \
         requests): {unaccounted:?}"
    );
    assert_eq!(received.len(), 10_000, "every event reached every endpoint");
    assert_eq!(
        recorded.values().sum::<i64>(),
        i64::try_from(attempts.len()).unwrap()
    );
    for (name, _) in &endpoints_made {
        let events = received.keys().filter(|(endpoint, _)| endpoint == name);
        assert_eq!(events.count(), 500, "{name}");
    }
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM webhook_delivery_attempts WHERE attempt = 1"
        )
        .await,
        10_000
    );
}

/// One delivery's recorded attempts: of which event, to which endpoint.
#[derive(diesel::QueryableByName)]
struct RecordedAttempts {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    endpoint_id: uuid::Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    event_id: uuid::Uuid,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    attempts: i64,
}

/// The attempts PostgreSQL recorded, per delivery.
async fn recorded_attempts_by_endpoint_and_event(app: &TestApp) -> Vec<RecordedAttempts> {
    let mut conn = app.database.connect().await;
    diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT d.endpoint_id, d.event_id, count(*) AS attempts \
             FROM webhook_delivery_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
             GROUP BY d.endpoint_id, d.event_id",
        ),
        &mut conn,
    )
    .await
    .expect("the recorded attempts")
}

#[tokio::test]
async fn another_accounts_endpoint_is_not_found_and_an_account_has_at_most_its_endpoints() {
    let app = TestApp::spawn_with(|settings| {
        settings.outbound_webhooks.max_endpoints_per_account = 2;
    })
    .await;
    let (first, _) = register(&app, "https://hooks.example.com/one", &[]).await;
    register(&app, "https://hooks.example.com/two", &[]).await;
    let over = app
        .webhook_endpoint("https://hooks.example.com/three")
        .try_create()
        .await
        .unwrap_err();
    assert_eq!(over.code(), tonic::Code::FailedPrecondition);
    assert_reason(&over, Reason::WebhookEndpointLimit);
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM webhook_endpoints"
        )
        .await,
        2
    );

    let other = app.sign_up_another_account().await;
    let hidden = endpoints(&app)
        .get_webhook_endpoint(other.request(v1::GetWebhookEndpointRequest {
            id: first.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    assert_reason(&hidden, Reason::WebhookEndpointNotFound);
    let no_delivery = endpoints(&app)
        .redrive_webhook_delivery(app.as_admin(v1::RedriveWebhookDeliveryRequest {
            endpoint_id: first.id.clone(),
            id: uuid::Uuid::now_v7().to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(no_delivery.code(), tonic::Code::NotFound);
    assert_reason(&no_delivery, Reason::WebhookDeliveryNotFound);
}

/// An instance whose clock runs two days ahead (libfaketime) sweeps events past a retention of
/// one day by PostgreSQL's clock, which wrote them: an event three days old goes, one recorded a
/// moment ago stays. By its own clock both were past the retention.
#[tokio::test]
async fn an_instance_whose_clock_runs_ahead_sweeps_only_the_events_past_their_retention() {
    let app = TestApp::spawn().await;
    let old = app.create_ticket("recorded three days ago").await;
    let fresh = app.create_ticket("recorded a moment ago").await;
    let mut conn = app.database.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE events SET created_at = now() - interval '3 days' WHERE resource_id = '{}'",
            old.id
        )),
        &mut conn,
    )
    .await
    .expect("the event is backdated");
    let events_of = |ticket: &v1::Ticket| {
        format!(
            "SELECT count(*) AS count FROM events WHERE resource_id = '{}'",
            ticket.id
        )
    };
    assert_eq!(count_of(&app.database, &events_of(&fresh)).await, 1);

    let _ahead = crate::support::binary::Running::start_with_clock(
        &app.database,
        &[
            ("EVENT_RETENTION_DAYS", "1"),
            ("EVENT_SWEEP_INTERVAL_SECS", "1"),
        ],
        Some("+2d"),
    );
    wait_until("the three-day-old event swept", PATIENCE, async || {
        count_of(&app.database, &events_of(&old)).await == 0
    })
    .await;

    assert_eq!(
        count_of(&app.database, &events_of(&fresh)).await,
        1,
        "the event within its retention is kept"
    );
}

/// An instance whose clock lags two hours schedules a failed delivery's next attempt, and its
/// endpoint's rest, by PostgreSQL's clock, which the claims compare with: an hour from the
/// attempt, not an hour before it (which would have sent it again at once, and again).
#[tokio::test]
async fn an_instance_whose_clock_lags_schedules_a_failed_delivery_by_postgresqls_clock() {
    let receiver = WebhookReceiver::start().await;
    let app = TestApp::spawn_with(|settings| {
        delivering(settings);
        settings.outbound_webhooks.workers = 0;
    })
    .await;
    let (endpoint, secret) = register(&app, &receiver.url("down"), &["ticket.created"]).await;
    receiver
        .configure("down", &[&secret], "fail_first:1000")
        .await;
    app.create_ticket("Deliver me later").await;

    let _lagging = crate::support::binary::Running::start_with_clock(
        &app.database,
        &[
            ("OUTBOUND_WEBHOOK_WORKERS", "1"),
            ("OUTBOUND_WEBHOOK_ALLOW_HTTP", "true"),
            ("OUTBOUND_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8"),
            ("OUTBOUND_WEBHOOK_POLL_INTERVAL_MS", "50"),
            ("OUTBOUND_WEBHOOK_RETRY_SCHEDULE", "1h,1h"),
        ],
        Some("-2h"),
    );
    let delivery = format!(
        "SELECT count(*) AS count FROM webhook_deliveries WHERE endpoint_id = '{}'",
        endpoint.id
    );
    wait_until("the first attempt is recorded", PATIENCE, || async {
        count_of(&app.database, &format!("{delivery} AND attempts >= 1")).await == 1
    })
    .await;

    // The schedule's hour, jittered by at most a fifth, from PostgreSQL's now.
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "{delivery} AND attempts = 1 AND state = 'pending' \
                 AND next_attempt_at >= now() + interval '47 minutes' \
                 AND next_attempt_at <= now() + interval '73 minutes'"
            ),
        )
        .await,
        1,
        "the next attempt is due an hour after the first, by PostgreSQL's clock"
    );
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM webhook_endpoints WHERE id = '{}' \
                 AND retry_at > now() + interval '30 seconds' \
                 AND failing_since BETWEEN now() - interval '1 minute' AND now()",
                endpoint.id
            ),
        )
        .await,
        1,
        "the endpoint rests from now and has been failing since now, by PostgreSQL's clock"
    );
}
