//! Stripe's idempotency: one execution per key, replayed to every retry.

use futures::future::join_all;
use payment_simulator::{Endpoint, FaultAction, FaultRule, SimulatorConfig};
use serde_json::Value;

use crate::helpers::{eventually, payment_params, spawn_simulator, spawn_simulator_with};

#[tokio::test]
async fn replaying_a_payment_with_the_same_key_returns_the_first_body_and_charges_once() {
    let sim = spawn_simulator().await;
    let first = sim.pay(Some("key-1"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(first.status(), 200);
    let first_body = first.bytes().await.unwrap();

    let retry = sim.pay(Some("key-1"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["idempotency-key"], "key-1");
    assert_eq!(retry.bytes().await.unwrap(), first_body);
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);
}

#[tokio::test]
async fn a_declined_payment_is_replayed_with_its_402_and_not_attempted_again() {
    let sim = spawn_simulator().await;
    let first = sim
        .pay(Some("key-d"), "c1", "2000", "pm_card_chargeDeclined")
        .await;
    assert_eq!(first.status(), 402);
    let first_body = first.bytes().await.unwrap();

    let retry = sim
        .pay(Some("key-d"), "c1", "2000", "pm_card_chargeDeclined")
        .await;
    assert_eq!(retry.status(), 402);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.bytes().await.unwrap(), first_body);
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);
}

#[tokio::test]
async fn reusing_a_key_with_different_parameters_is_an_idempotency_error() {
    let sim = spawn_simulator().await;
    assert_eq!(
        sim.pay(Some("key-p"), "c1", "2000", "pm_card_visa")
            .await
            .status(),
        200
    );
    let response = sim.pay(Some("key-p"), "c1", "2500", "pm_card_visa").await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("idempotent-replayed").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "idempotency_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("same parameters")
    );

    let other_endpoint = sim
        .post("/v1/refunds", Some("key-p"), &[("payment_intent", "pi_x")])
        .await;
    assert_eq!(other_endpoint.status(), 400);
    let body: Value = other_endpoint.json().await.unwrap();
    assert_eq!(body["error"]["type"], "idempotency_error");
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);
}

#[tokio::test]
async fn the_order_of_parameters_does_not_make_a_different_request() {
    let sim = spawn_simulator().await;
    let mut params = payment_params("c1", "2000", "pm_card_visa");
    let first = sim
        .post("/v1/payment_intents", Some("key-o"), &params)
        .await;
    params.reverse();
    let retry = sim
        .post("/v1/payment_intents", Some("key-o"), &params)
        .await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(first.bytes().await.unwrap(), retry.bytes().await.unwrap());
}

#[tokio::test]
async fn fifty_concurrent_requests_with_one_key_create_exactly_one_payment_intent() {
    let sim = spawn_simulator().await;
    let requests = (0..50).map(|_| sim.pay(Some("key-c"), "c1", "2000", "pm_card_visa"));
    let responses = join_all(requests).await;

    let mut ids = Vec::new();
    let mut conflicts = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => {
                let body: Value = response.json().await.unwrap();
                ids.push(body["id"].as_str().unwrap().to_owned());
            }
            409 => conflicts += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ids.len() + conflicts, 50);
    assert!(!ids.is_empty());
    assert!(ids.iter().all(|id| *id == ids[0]), "one payment intent id");
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);
    let requests = sim.handle.requests();
    assert_eq!(requests.len(), 50);
    assert_eq!(
        requests.iter().filter(|request| !request.replayed).count(),
        1 + conflicts,
        "one execution, the rest replays or conflicts"
    );
}

#[tokio::test]
async fn a_retry_while_the_first_is_still_running_answers_409_then_replays() {
    let sim = spawn_simulator().await;
    sim.handle
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::Latency { millis: 1_000 },
            1,
        ))
        .unwrap();
    let first = tokio::spawn(
        sim.post_request(
            "/v1/payment_intents",
            Some("key-r"),
            &payment_params("c1", "2000", "pm_card_visa"),
        )
        .send(),
    );
    eventually("the first request to hold its key", || async {
        (sim.handle.idempotency_stats().running == 1).then_some(())
    })
    .await;

    let retry = sim.pay(Some("key-r"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(retry.status(), 409);
    assert_eq!(retry.headers()["stripe-should-retry"], "true");
    let body: Value = retry.json().await.unwrap();
    assert_eq!(body["error"]["type"], "idempotency_error");

    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    let first_body = first.bytes().await.unwrap();
    let replay = sim.pay(Some("key-r"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.bytes().await.unwrap(), first_body);
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);
}

#[tokio::test]
async fn a_request_refused_for_its_parameters_saves_nothing_under_its_key() {
    let sim = spawn_simulator().await;
    let refused = sim
        .post(
            "/v1/payment_intents",
            Some("key-v"),
            &[("amount", "-1"), ("currency", "usd")],
        )
        .await;
    assert_eq!(refused.status(), 400);
    // As on Stripe: validation failed before execution began, so the key is still free.
    let accepted = sim.pay(Some("key-v"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(accepted.status(), 200);
    assert!(accepted.headers().get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn keys_are_scoped_by_the_api_key() {
    let sim = spawn_simulator_with(SimulatorConfig {
        api_keys: vec!["sk_test_a".to_owned(), "sk_test_b".to_owned()],
        ..SimulatorConfig::default()
    })
    .await;
    for (api_key, amount) in [("sk_test_a", "100"), ("sk_test_b", "200")] {
        let response = sim
            .client
            .post(sim.url("/v1/payment_intents"))
            .bearer_auth(api_key)
            .header("idempotency-key", "shared-key")
            .body(crate::helpers::form(&payment_params(
                "c1",
                amount,
                "pm_card_visa",
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{api_key}");
        assert!(response.headers().get("idempotent-replayed").is_none());
    }
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 2);
}

#[tokio::test]
async fn a_simulator_requiring_keys_refuses_a_post_without_one() {
    let sim = spawn_simulator_with(SimulatorConfig {
        require_idempotency_key: true,
        ..SimulatorConfig::default()
    })
    .await;
    let response = sim.pay(None, "c1", "2000", "pm_card_visa").await;
    assert_eq!(response.status(), 400);
    assert!(sim.handle.ledger().payment_intents.is_empty());
    let too_long = "k".repeat(256);
    let response = sim.pay(Some(&too_long), "c1", "2000", "pm_card_visa").await;
    assert_eq!(response.status(), 400);
}
