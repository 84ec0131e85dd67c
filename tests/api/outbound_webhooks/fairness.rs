//! Delivery places shared between accounts (docs/webhooks.md, "Isolation"): one account whose
//! endpoints answer 200 just under the attempt timeout cannot hold every place of an instance,
//! so another account's webhook goes out while the slow account's backlog is still being sent.
//! The bound is one of order, read in PostgreSQL, not of wall-clock time.

use std::time::Duration;

use supportdesk::wire::proto::v1;

use super::{delivering_app, endpoints, register};
use crate::support::webhook_receiver::WebhookReceiver;
use crate::support::{PATIENCE, count_of, keyed, valid_create_request};

#[tokio::test]
async fn an_account_whose_endpoints_answer_just_under_the_timeout_does_not_hold_back_another_accounts_webhook()
 {
    // Two of the instance's four places at most for one account.
    slow_account_leaves_room_for_another(|outbound| outbound.max_places_per_account = 2).await;
}

#[tokio::test]
async fn endpoints_that_answer_just_under_the_timeout_share_the_places_of_the_failing_ones() {
    // No cap that binds (four places each), one delivery per claim: once their successes are
    // slow, the slow account's endpoints are claimed in the lane of the failing, which holds at
    // most half of the places.
    slow_account_leaves_room_for_another(|outbound| {
        outbound.max_places_per_account = 4;
        outbound.batch = 1;
    })
    .await;
}

/// An account with as many endpoints as the instance has places (four), each answering 200
/// after three quarters of the attempt timeout, and a backlog of five events each; another
/// account's webhook, written once the slow one's deliveries are under way, arrives while at
/// least half of that backlog is still pending in PostgreSQL.
async fn slow_account_leaves_room_for_another(
    configure: impl FnOnce(&mut supportdesk::configuration::OutboundWebhookSettings),
) {
    const SLOW_ENDPOINTS: usize = 4;
    const TICKETS: usize = 5;
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|settings| {
        let outbound = &mut settings.outbound_webhooks;
        outbound.workers = 4;
        outbound.attempt_timeout = Duration::from_secs(2);
        configure(outbound);
    })
    .await;
    let mut slow = Vec::new();
    for n in 0..SLOW_ENDPOINTS {
        let name = format!("slow-{n}");
        let (endpoint, secret) = register(&app, &receiver.url(&name), &["ticket.created"]).await;
        receiver.configure(&name, &[&secret], "slow:1500").await;
        slow.push(format!("'{}'", endpoint.id));
    }
    let slow = slow.join(", ");
    for n in 0..TICKETS {
        app.create_ticket(&format!("Slow backlog {n}")).await;
    }
    let backlog = i64::try_from(SLOW_ENDPOINTS * TICKETS).unwrap();
    let pending_of_slow = format!(
        "SELECT count(*) AS count FROM webhook_deliveries \
         WHERE endpoint_id IN ({slow}) AND state = 'pending'"
    );
    assert_eq!(count_of(&app.database, &pending_of_slow).await, backlog);
    // The slow account's deliveries are under way before the other account's event happens.
    receiver.wait_for_attempts("slow-0", 1, PATIENCE).await;

    let other = app.sign_up_another_account().await;
    let created = endpoints(&app)
        .create_webhook_endpoint(keyed(other.request(v1::CreateWebhookEndpointRequest {
            webhook_endpoint: Some(v1::WebhookEndpoint {
                url: receiver.url("other-account"),
                event_types: vec!["ticket.created".to_owned()],
                ..Default::default()
            }),
        })))
        .await
        .unwrap()
        .into_inner();
    receiver
        .configure("other-account", &[&created.secret], "ok")
        .await;
    app.tickets
        .clone()
        .create_ticket(other.request(valid_create_request("Not held back")))
        .await
        .unwrap();

    let received = receiver
        .wait_for_attempts("other-account", 1, PATIENCE)
        .await;
    assert!(received[0].verified());
    // When the other account's webhook arrived, most of the slow account's backlog was still
    // to be sent: it did not wait for that backlog to drain.
    let still_pending = count_of(&app.database, &pending_of_slow).await;
    assert!(
        still_pending * 2 >= backlog,
        "the other account's webhook arrived with {still_pending} of the slow account's \
         {backlog} deliveries still pending: it waited for the slow account's backlog"
    );
}
