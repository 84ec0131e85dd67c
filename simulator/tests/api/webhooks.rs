//! Webhooks against a tiny receiver that verifies signatures on its own and can fail on purpose.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::{Router, routing};
use hmac::{KeyInit, Mac};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use payment_simulator::{
    DeliveryFault, DeliveryFaultRule, DisputeRequest, OutsideRefund, RetryPolicy, SimulatorConfig,
    WebhookEndpoint,
};
use serde_json::Value;
use tower::ServiceExt;

use crate::helpers::{TestSimulator, eventually, spawn_simulator_with};

const SECRET: &str = "whsec_test_secret";

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    signature: String,
    body: Bytes,
    verified: bool,
}

impl Received {
    fn event(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A tiny axum app standing in for the service's webhook endpoint.
#[derive(Clone)]
struct WebhookReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    failures_left: Arc<AtomicUsize>,
}

/// Verifies like Stripe's libraries, written here independently of the simulator's code.
fn signature_matches(header: &str, body: &[u8], secret: &str) -> bool {
    let Some(timestamp) = header.split(',').find_map(|part| part.strip_prefix("t=")) else {
        return false;
    };
    header
        .split(',')
        .filter_map(|part| part.strip_prefix("v1="))
        .filter_map(|hex_signature| hex::decode(hex_signature).ok())
        .any(|signature| {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{timestamp}.").as_bytes());
            mac.update(body);
            mac.verify_slice(&signature).is_ok()
        })
}

impl WebhookReceiver {
    async fn start(secret: &'static str, failures: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Self {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            failures_left: Arc::new(AtomicUsize::new(failures)),
        };
        let app = Router::new()
            .route("/webhooks", routing::post(receive))
            .with_state((receiver.clone(), secret));
        // Served with hyper directly: the simulator builds axum without its `serve` feature.
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let app = app.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        app.clone().oneshot(request.map(Body::new))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/webhooks", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The verified deliveries of events of `event_type`.
    fn verified_of_type(&self, event_type: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|received| received.verified && received.event()["type"] == event_type)
            .collect()
    }
}

/// Records the POST; answers 400 to a bad signature, 500 while failures are left, else 200.
async fn receive(
    State((receiver, secret)): State<(WebhookReceiver, &'static str)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let verified = signature_matches(&signature, &body, secret);
    receiver.received.lock().unwrap().push(Received {
        signature,
        body,
        verified,
    });
    if !verified {
        StatusCode::BAD_REQUEST
    } else if receiver
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok()
    {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn simulator_sending_to(receiver: &WebhookReceiver, secrets: &[&str]) -> TestSimulator {
    spawn_simulator_with(SimulatorConfig {
        webhook_endpoint: Some(WebhookEndpoint {
            url: receiver.url(),
            secrets: secrets.iter().map(|secret| (*secret).to_owned()).collect(),
        }),
        webhook_retry: RetryPolicy {
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_attempts: 6,
            attempt_timeout: Duration::from_secs(2),
        },
        ..SimulatorConfig::default()
    })
    .await
}

#[tokio::test]
async fn a_successful_payment_sends_a_signed_payment_intent_succeeded_event() {
    let receiver = WebhookReceiver::start(SECRET, 0).await;
    let sim = simulator_sending_to(&receiver, &[SECRET]).await;
    let intent = sim.paid_intent("c1", "2000").await;

    let delivered = eventually("payment_intent.succeeded", || async {
        receiver.verified_of_type("payment_intent.succeeded").pop()
    })
    .await;
    let event = delivered.event();
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(event["object"], "event");
    assert!(event["created"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(event["data"]["object"]["id"], intent.as_str());
    assert_eq!(event["data"]["object"]["status"], "succeeded");
    assert_eq!(event["data"]["object"]["metadata"]["charge_id"], "c1");
    assert_eq!(event["request"]["idempotency_key"], "c1");
    assert!(delivered.signature.starts_with("t="));
    assert_eq!(delivered.signature.matches(",v1=").count(), 1);

    let log = eventually("the delivery log", || async {
        let log = sim.handle.deliveries();
        (!log.is_empty()).then_some(log)
    })
    .await;
    assert_eq!(log[0].status, Some(200));
    assert_eq!(log[0].attempt, 1);
    assert_eq!(log[0].event_id, event["id"].as_str().unwrap());
}

#[tokio::test]
async fn while_secrets_rotate_each_one_signs_the_event() {
    let old_receiver = WebhookReceiver::start("whsec_old", 0).await;
    let sim = simulator_sending_to(&old_receiver, &["whsec_old", "whsec_new"]).await;
    sim.paid_intent("c1", "2000").await;
    let delivered = eventually("a delivery", || async { old_receiver.received().pop() }).await;
    assert!(delivered.verified);
    assert_eq!(delivered.signature.matches(",v1=").count(), 2);
    assert!(signature_matches(
        &delivered.signature,
        &delivered.body,
        "whsec_new"
    ));
    assert!(!signature_matches(
        &delivered.signature,
        &delivered.body,
        "whsec_other"
    ));
}

#[tokio::test]
async fn a_receiver_answering_500_gets_the_event_again_until_it_accepts() {
    let receiver = WebhookReceiver::start(SECRET, 2).await;
    let sim = simulator_sending_to(&receiver, &[SECRET]).await;
    sim.paid_intent("c1", "2000").await;

    let log = eventually("an accepted delivery", || async {
        let log = sim.handle.deliveries();
        log.iter().any(|attempt| attempt.succeeded()).then_some(log)
    })
    .await;
    let statuses: Vec<_> = log.iter().map(|attempt| attempt.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(200)]);
    let attempts: Vec<_> = log.iter().map(|attempt| attempt.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    let first_id = received_id(&received[0]);
    assert!(received.iter().all(|copy| copy.event()["id"] == first_id));
}

fn received_id(received: &Received) -> Value {
    received.event()["id"].clone()
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retried_and_logged_without_a_status() {
    // Bind and drop a listener so the port is (almost certainly) closed.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let sim = spawn_simulator_with(SimulatorConfig {
        webhook_endpoint: Some(WebhookEndpoint {
            url: format!("http://{closed}/webhooks"),
            secrets: vec![SECRET.to_owned()],
        }),
        webhook_retry: RetryPolicy {
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(1),
        },
        ..SimulatorConfig::default()
    })
    .await;
    sim.paid_intent("c1", "2000").await;
    let log = eventually("three failed attempts", || async {
        let log = sim.handle.deliveries();
        (log.len() == 3).then_some(log)
    })
    .await;
    assert!(
        log.iter()
            .all(|attempt| attempt.status.is_none() && attempt.error.is_some())
    );
}

#[tokio::test]
async fn declines_refunds_from_outside_and_disputes_send_their_events() {
    let receiver = WebhookReceiver::start(SECRET, 0).await;
    let sim = simulator_sending_to(&receiver, &[SECRET]).await;
    sim.pay(Some("d"), "c-declined", "1000", "pm_card_chargeDeclined")
        .await;
    let intent = sim.paid_intent("c1", "1000").await;
    sim.handle
        .refund_outside(
            &intent,
            OutsideRefund {
                amount: Some(250),
                reason: Some("requested_by_customer".to_owned()),
            },
        )
        .unwrap();
    let dispute = sim
        .client
        .post(sim.url(&format!("/_sim/payment_intents/{intent}/dispute")))
        .json(&serde_json::json!({ "reason": "product_not_received" }))
        .send()
        .await
        .unwrap();
    assert_eq!(dispute.status(), 200);

    let failed = eventually("payment_intent.payment_failed", || async {
        receiver
            .verified_of_type("payment_intent.payment_failed")
            .pop()
    })
    .await;
    assert_eq!(
        failed.event()["data"]["object"]["last_payment_error"]["decline_code"],
        "generic_decline"
    );
    let refunded = eventually("charge.refunded", || async {
        receiver.verified_of_type("charge.refunded").pop()
    })
    .await;
    let charge = &refunded.event()["data"]["object"];
    assert_eq!(charge["object"], "charge");
    assert_eq!(charge["payment_intent"], intent.as_str());
    assert_eq!(charge["amount_refunded"], 250);
    assert_eq!(refunded.event()["request"]["id"], Value::Null);
    let disputed = eventually("charge.dispute.created", || async {
        receiver.verified_of_type("charge.dispute.created").pop()
    })
    .await;
    let dispute = &disputed.event()["data"]["object"];
    assert_eq!(dispute["object"], "dispute");
    assert_eq!(dispute["reason"], "product_not_received");
    assert_eq!(dispute["amount"], 750);
    assert_eq!(dispute["payment_intent"], intent.as_str());

    let again = sim
        .handle
        .dispute(&intent, DisputeRequest::default())
        .unwrap_err();
    assert_eq!(again.error.code.as_deref(), Some("charge_disputed"));
}

#[tokio::test]
async fn a_duplicate_fault_delivers_the_event_twice() {
    let receiver = WebhookReceiver::start(SECRET, 0).await;
    let sim = simulator_sending_to(&receiver, &[SECRET]).await;
    sim.handle
        .add_delivery_fault(DeliveryFaultRule::new(DeliveryFault::Duplicate, 1));
    sim.paid_intent("c1", "2000").await;
    let copies = eventually("two copies", || async {
        let copies = receiver.verified_of_type("payment_intent.succeeded");
        (copies.len() == 2).then_some(copies)
    })
    .await;
    assert_eq!(received_id(&copies[0]), received_id(&copies[1]));
    let log = eventually("both copies logged", || async {
        let log = sim.handle.deliveries();
        (log.len() == 2).then_some(log)
    })
    .await;
    let mut logged: Vec<u32> = log.iter().map(|attempt| attempt.copy).collect();
    logged.sort_unstable();
    assert_eq!(logged, [1, 2]);
}

#[tokio::test]
async fn corrupted_first_attempts_fail_verification_and_the_retries_are_clean() {
    for fault in [DeliveryFault::BadSignature, DeliveryFault::MangledBody] {
        let receiver = WebhookReceiver::start(SECRET, 0).await;
        let sim = simulator_sending_to(&receiver, &[SECRET]).await;
        sim.handle
            .add_delivery_fault(DeliveryFaultRule::new(fault.clone(), 1));
        sim.paid_intent("c1", "2000").await;

        let log = eventually("an accepted delivery", || async {
            let log = sim.handle.deliveries();
            log.iter().any(|attempt| attempt.succeeded()).then_some(log)
        })
        .await;
        assert_eq!(log.len(), 2, "{fault:?}");
        assert_eq!(log[0].status, Some(400), "{fault:?}");
        assert!(log[0].corruption.is_some(), "{fault:?}");
        assert_eq!(log[1].status, Some(200), "{fault:?}");
        assert_eq!(log[1].corruption, None, "{fault:?}");
        let received = receiver.received();
        assert!(!received[0].verified, "{fault:?}");
        assert!(received[1].verified, "{fault:?}");
    }
}

#[tokio::test]
async fn a_reordered_event_arrives_after_the_next_one() {
    let receiver = WebhookReceiver::start(SECRET, 0).await;
    let sim = simulator_sending_to(&receiver, &[SECRET]).await;
    sim.handle
        .add_delivery_fault(DeliveryFaultRule::new(DeliveryFault::Reorder, 1));
    let intent = sim.paid_intent("c1", "2000").await;
    sim.post("/v1/refunds", Some("r"), &[("payment_intent", &intent)])
        .await;

    let received = eventually("both events", || async {
        let received = receiver.received();
        (received.len() == 2).then_some(received)
    })
    .await;
    let types: Vec<_> = received
        .iter()
        .map(|received| received.event()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["charge.refunded", "payment_intent.succeeded"]);
}

#[tokio::test]
async fn the_webhook_endpoint_can_be_set_through_the_control_api() {
    let receiver = WebhookReceiver::start(SECRET, 0).await;
    let sim = spawn_simulator_with(SimulatorConfig::default()).await;
    let set = sim
        .client
        .put(sim.url("/_sim/webhooks/endpoint"))
        .json(&serde_json::json!({ "url": receiver.url(), "secrets": [SECRET] }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    sim.paid_intent("c1", "2000").await;
    eventually("a verified delivery", || async {
        receiver.verified_of_type("payment_intent.succeeded").pop()
    })
    .await;
    let log: Value = sim
        .client
        .get(sim.url("/_sim/webhooks/deliveries"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log[0]["status"], 200);
    let events: Value = sim
        .client
        .get(sim.url("/_sim/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events[0]["type"], "payment_intent.succeeded");
}

#[tokio::test]
async fn a_delay_fault_holds_the_first_attempt_back() {
    let receiver = WebhookReceiver::start(SECRET, 0).await;
    let sim = simulator_sending_to(&receiver, &[SECRET]).await;
    sim.handle.add_delivery_fault(DeliveryFaultRule::new(
        DeliveryFault::Delay { millis: 400 },
        1,
    ));
    let paid_at = std::time::Instant::now();
    sim.paid_intent("c1", "2000").await;
    eventually("the delayed delivery", || async {
        receiver.verified_of_type("payment_intent.succeeded").pop()
    })
    .await;
    assert!(paid_at.elapsed() >= Duration::from_millis(400));
    // The receiver records before it answers; the simulator logs once the answer is in.
    let log = eventually("the logged attempt", || async {
        let log = sim.handle.deliveries();
        (!log.is_empty()).then_some(log)
    })
    .await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, Some(200));
}
