//! Deliveries through the service's own failures: the delivering instance killed mid-attempt,
//! and PostgreSQL gone while attempts are made (briefly: the record waits for it; or for longer).
//! Either way every event arrives, at least once, and PostgreSQL ends with every delivery
//! recorded as succeeded.

use std::time::Duration;

use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use supportdesk::wire::proto::v1::webhook_endpoint_service_client::WebhookEndpointServiceClient;

use super::{delivering_app, register};
use crate::support::binary::{Running, sign_up_through};
use crate::support::proxy::{TcpProxy, socket_address_of, url_through};
use crate::support::webhook_receiver::{ReceivedAttempt, WebhookReceiver};
use crate::support::{
    PATIENCE, TestApp, TestDatabase, count_of, keyed, valid_create_request, wait_until,
};

/// How many of the database's deliveries are in `state`.
async fn deliveries_in(database: &TestDatabase, state: &str) -> i64 {
    count_of(
        database,
        &format!("SELECT count(*) AS count FROM webhook_deliveries WHERE state = '{state}'"),
    )
    .await
}

/// An app reaching PostgreSQL through a proxy the test can cut, whose workers take one delivery
/// a lease and wait `attempt_timeout` for an endpoint's answer.
async fn delivering_one_at_a_time_through_a_proxy(
    attempt_timeout: Duration,
) -> (TestApp, TcpProxy) {
    let database_url = crate::support::test_settings("unused").database.url;
    let proxy = TcpProxy::start(socket_address_of(secrecy::ExposeSecret::expose_secret(
        &database_url,
    )))
    .await;
    let (app, _seam) = delivering_app(|settings| {
        let url = url_through(
            secrecy::ExposeSecret::expose_secret(&settings.database.url),
            proxy.address,
        );
        settings.database.url = url.into();
        settings.outbound_webhooks.batch = 1;
        settings.outbound_webhooks.attempt_timeout = attempt_timeout;
    })
    .await;
    (app, proxy)
}

#[tokio::test]
async fn an_attempt_cut_short_by_sigkill_is_made_again_by_the_next_instance_and_arrives() {
    let receiver = WebhookReceiver::start().await;
    let database = TestDatabase::create().await;
    let settings = [
        ("OUTBOUND_WEBHOOK_WORKERS", "1"),
        ("OUTBOUND_WEBHOOK_ALLOW_HTTP", "true"),
        ("OUTBOUND_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8"),
        ("OUTBOUND_WEBHOOK_POLL_INTERVAL_MS", "50"),
        // A lease lasts the batch's attempts and 5 s: the next instance takes over within 8 s.
        ("OUTBOUND_WEBHOOK_TIMEOUT_MS", "3000"),
        ("OUTBOUND_WEBHOOK_BATCH", "1"),
    ];
    let first = Running::start(&database, &settings);
    let channel = first.channel().await;
    let admin = sign_up_through(&channel).await;
    let created = WebhookEndpointServiceClient::new(channel.clone())
        .create_webhook_endpoint(keyed(admin.request(v1::CreateWebhookEndpointRequest {
            webhook_endpoint: Some(v1::WebhookEndpoint {
                url: receiver.url("crash"),
                event_types: vec!["ticket.created".to_owned()],
                ..Default::default()
            }),
        })))
        .await
        .expect("the endpoint is registered")
        .into_inner();
    receiver
        .configure("crash", &[&created.secret], "hang")
        .await;
    let ticket = TicketServiceClient::new(channel)
        .create_ticket(admin.request(valid_create_request("Cut short")))
        .await
        .expect("the ticket is created")
        .into_inner();

    let hung = receiver.wait_for_attempts("crash", 1, PATIENCE).await;
    first.kill();
    receiver.configure("crash", &[&created.secret], "ok").await;
    let _second = Running::start(&database, &settings);

    let attempts = receiver.wait_for_attempts("crash", 2, PATIENCE).await;
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[1].webhook_id, hung[0].webhook_id);
    assert!(attempts[1].verified());
    assert_eq!(attempts[1].payload["ticket"]["id"], ticket.id.as_str());
    wait_until("the delivery is recorded", PATIENCE, || async {
        deliveries_in(&database, "succeeded").await == 1
    })
    .await;
    // The killed attempt left no record; the one made again is attempt 1, answered 200.
    assert_eq!(
        count_of(
            &database,
            "SELECT count(*) AS count FROM webhook_delivery_attempts \
             WHERE attempt = 1 AND http_status = 200",
        )
        .await,
        1
    );
    assert_eq!(
        count_of(
            &database,
            "SELECT count(*) AS count FROM webhook_delivery_attempts"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn every_event_arrives_in_order_when_postgresql_is_away_while_attempts_are_answered() {
    let receiver = WebhookReceiver::start().await;
    // One delivery a lease, and a short lease (2 s + 5 s): an attempt whose record could not be
    // written within it is made again within seconds.
    let (app, proxy) = delivering_one_at_a_time_through_a_proxy(Duration::from_secs(2)).await;
    let (_, secret) = register(&app, &receiver.url("outage"), &["ticket.created"]).await;
    // Each answer takes a while: the outage begins while one is awaited.
    receiver.configure("outage", &[&secret], "slow:700").await;
    let mut tickets = Vec::new();
    for n in 0..4 {
        tickets.push(app.create_ticket(&format!("Outage {n}")).await.id);
    }

    receiver.wait_for_attempts("outage", 1, PATIENCE).await;
    proxy.cut();
    // Attempts go on being answered, none of them recorded yet, for a few answers' time.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    proxy.restore();

    wait_until("every delivery is recorded", PATIENCE, || async {
        deliveries_in(&app.database, "succeeded").await == 4
    })
    .await;
    let delivered = receiver.delivered("outage").await;
    let attempts = receiver.attempts(Some("outage")).await;
    assert!(attempts.iter().all(ReceivedAttempt::verified));
    // Each event arrived, first in the order they happened; one whose answer could not be
    // recorded while its lease lasted arrived again (at least once).
    let mut first_arrivals: Vec<String> = Vec::new();
    for attempt in &attempts {
        let id = attempt.payload["ticket"]["id"].as_str().unwrap().to_owned();
        if !first_arrivals.contains(&id) {
            first_arrivals.push(id);
        }
    }
    assert_eq!(first_arrivals, tickets);
    let mut distinct = delivered.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{delivered:?}");
    assert_eq!(deliveries_in(&app.database, "pending").await, 0);
}

#[tokio::test]
async fn an_attempt_answered_while_postgresql_is_briefly_away_is_recorded_once_and_not_made_again()
{
    let receiver = WebhookReceiver::start().await;
    // A lease of 3 s + 5 s: the outage below ends well within it.
    let (app, proxy) = delivering_one_at_a_time_through_a_proxy(Duration::from_secs(3)).await;
    let (endpoint, secret) = register(&app, &receiver.url("blip"), &["ticket.created"]).await;
    receiver.configure("blip", &[&secret], "slow:500").await;
    app.create_ticket("Told during a blip").await;

    // PostgreSQL goes away while the endpoint is answering, and stays away for a second after
    // the answer: the worker's first tries at recording it fail.
    receiver.wait_for_attempts("blip", 1, PATIENCE).await;
    proxy.cut();
    wait_until("the endpoint has answered", PATIENCE, || async {
        receiver.delivered("blip").await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.restore();

    wait_until("the delivery is recorded", PATIENCE, || async {
        deliveries_in(&app.database, "succeeded").await == 1
    })
    .await;
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM webhook_delivery_attempts \
                 WHERE endpoint_id = '{}' AND attempt = 1 AND http_status = 200",
                endpoint.id
            ),
        )
        .await,
        1
    );
    assert_eq!(
        count_of(
            &app.database,
            "SELECT count(*) AS count FROM webhook_delivery_attempts"
        )
        .await,
        1,
        "one attempt recorded"
    );
    assert_eq!(
        receiver.attempts(Some("blip")).await.len(),
        1,
        "the endpoint was sent the event once"
    );
}
