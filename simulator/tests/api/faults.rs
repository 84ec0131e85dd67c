//! Scripted faults: each does what it says, and the idempotency key makes the retry safe.

use std::time::{Duration, Instant};

use payment_simulator::{Endpoint, FaultAction, FaultRule, SettleOutcome};
use serde_json::Value;

use crate::helpers::{eventually, payment_params, spawn_simulator};

#[tokio::test]
async fn a_503_fault_answers_once_without_charging_and_the_retry_with_the_same_key_charges() {
    let sim = spawn_simulator().await;
    sim.handle
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::ServerError { status: 503 },
            1,
        ))
        .unwrap();
    let failed = sim.pay(Some("k"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(failed.status(), 503);
    assert_eq!(failed.headers()["stripe-should-retry"], "true");
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error");
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 0);

    let retry = sim.pay(Some("k"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(retry.status(), 200);
    assert!(retry.headers().get("idempotent-replayed").is_none());
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);
    assert!(sim.handle.faults().is_empty());
}

#[tokio::test]
async fn a_proxy_page_answers_html_without_reaching_the_provider_and_the_retry_charges() {
    let sim = spawn_simulator().await;
    sim.handle
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::ProxyPage { status: 403 },
            1,
        ))
        .unwrap();
    let refused = sim.pay(Some("k"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["content-type"], "text/html");
    assert!(refused.headers().get("request-id").is_none());
    let page = refused.text().await.unwrap();
    assert!(page.starts_with("<html>"), "{page}");
    assert!(serde_json::from_str::<Value>(&page).is_err());
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 0);

    let retry = sim.pay(Some("k"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(retry.status(), 200);
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);
}

#[tokio::test]
async fn a_proxy_page_needs_an_error_status() {
    let sim = spawn_simulator().await;
    for status in [200, 302, 600] {
        assert!(
            sim.handle
                .add_fault(FaultRule::new(
                    Endpoint::Any,
                    FaultAction::ProxyPage { status },
                    1
                ))
                .is_err(),
            "{status}"
        );
    }
}

#[tokio::test]
async fn a_rate_limit_fault_answers_429_with_retry_after() {
    let sim = spawn_simulator().await;
    sim.handle
        .add_fault(FaultRule::new(
            Endpoint::Any,
            FaultAction::RateLimit {
                retry_after_secs: 2,
            },
            2,
        ))
        .unwrap();
    for _ in 0..2 {
        let response = sim.get("/v1/payment_intents/pi_x").await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "2");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limit");
    }
    assert_eq!(sim.get("/v1/payment_intents/pi_x").await.status(), 404);
}

#[tokio::test]
async fn a_reset_fault_drops_the_connection_without_executing() {
    let sim = spawn_simulator().await;
    sim.handle
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::ResetConnection,
            1,
        ))
        .unwrap();
    let error = sim
        .post_request(
            "/v1/payment_intents",
            Some("k"),
            &payment_params("c1", "2000", "pm_card_visa"),
        )
        .send()
        .await
        .expect_err("no response on a reset connection");
    assert!(error.is_request(), "{error:?}");
    assert!(!error.is_timeout(), "{error:?}");
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 0);

    let retry = sim.pay(Some("k"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(retry.status(), 200);
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);

    // The request log shows both attempts, the first without an answer.
    let requests = sim.handle.requests();
    let statuses: Vec<_> = requests.iter().map(|request| request.status).collect();
    assert_eq!(statuses, [None, Some(200)]);
    assert!(requests.iter().all(|request| {
        request.idempotency_key.as_deref() == Some("k")
            && request.param("metadata[charge_id]") == Some("c1")
    }));
}

#[tokio::test]
async fn the_timeout_fault_charges_while_the_client_times_out_and_the_retry_replays_the_charge() {
    let sim = spawn_simulator().await;
    sim.handle
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::ExecuteThenTimeout { hang_millis: 5_000 },
            1,
        ))
        .unwrap();
    let error = sim
        .post_request(
            "/v1/payment_intents",
            Some("k"),
            &payment_params("c1", "2000", "pm_card_visa"),
        )
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("the answer never comes");
    assert!(error.is_timeout(), "{error:?}");

    // The provider charged: the unknown outcome is a real payment.
    let ledger = eventually("the charge in the ledger", || async {
        let ledger = sim.handle.ledger_for_metadata("charge_id", "c1");
        (!ledger.payment_intents.is_empty()).then_some(ledger)
    })
    .await;
    assert_eq!(ledger.payment_intents.len(), 1);
    let charged = &ledger.payment_intents[0];
    assert_eq!(charged.amount_received, 2000);

    // Billing never learned the id; searching by its own charge id finds the payment.
    let found: Value = sim
        .get("/v1/payment_intents/search?query=metadata%5B%27charge_id%27%5D%3A%27c1%27")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["object"], "search_result");
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(found["data"][0]["id"], charged.id.as_str());

    // Retrying with the same key resolves it to the same payment, never a second one.
    let retry = sim.pay(Some("k"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let body: Value = retry.json().await.unwrap();
    assert_eq!(body["id"], charged.id.as_str());
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);
}

#[tokio::test]
async fn the_timeout_fault_with_no_hang_closes_the_connection_after_charging() {
    let sim = spawn_simulator().await;
    sim.handle
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::ExecuteThenTimeout { hang_millis: 0 },
            1,
        ))
        .unwrap();
    let error = sim
        .post_request(
            "/v1/payment_intents",
            Some("k"),
            &payment_params("c1", "2000", "pm_card_visa"),
        )
        .send()
        .await
        .expect_err("the connection closes without an answer");
    assert!(error.is_request(), "{error:?}");
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);
}

#[tokio::test]
async fn a_held_answer_comes_once_released_after_the_payment_and_its_event_exist() {
    let sim = spawn_simulator().await;
    sim.handle
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::ExecuteThenHoldAnswer { max_millis: 60_000 },
            1,
        ))
        .unwrap();
    let request = sim.post_request(
        "/v1/payment_intents",
        Some("k"),
        &payment_params("c1", "2000", "pm_card_visa"),
    );
    let paying = tokio::spawn(request.send());
    let event = eventually("the payment's event", || async {
        sim.handle
            .events()
            .into_iter()
            .find(|event| event.event_type == "payment_intent.succeeded")
    })
    .await;
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);
    assert!(!paying.is_finished(), "the answer is held");

    let released = sim
        .client
        .post(sim.url("/_sim/answers/release"))
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), 204);
    let answer = paying.await.unwrap().expect("the held answer comes");
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["id"], event.data.object["id"]);
    assert_eq!(body["status"], "succeeded");
}

#[tokio::test]
async fn a_latency_fault_delays_the_answer_and_applies_to_its_endpoint_only() {
    let sim = spawn_simulator().await;
    sim.handle
        .add_fault(FaultRule::new(
            Endpoint::CreateRefund,
            FaultAction::Latency { millis: 300 },
            1,
        ))
        .unwrap();
    let intent = sim.paid_intent("c1", "1000").await;
    assert_eq!(sim.handle.faults().len(), 1, "payments are not refunds");

    let started = Instant::now();
    let refund = sim
        .post("/v1/refunds", Some("r"), &[("payment_intent", &intent)])
        .await;
    assert_eq!(refund.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(sim.handle.faults().is_empty());
}

#[tokio::test]
async fn faults_set_through_the_control_api_apply_and_can_be_cleared() {
    let sim = spawn_simulator().await;
    let created = sim
        .client
        .post(sim.url("/_sim/faults"))
        .json(&serde_json::json!({
            "endpoint": "retrieve_payment_intent",
            "action": { "kind": "server_error", "status": 500 },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for _ in 0..3 {
        assert_eq!(sim.get("/v1/payment_intents/pi_x").await.status(), 500);
    }
    let listed: Value = sim
        .client
        .get(sim.url("/_sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["applied"], 3);
    assert_eq!(listed[0]["remaining"], Value::Null);

    let cleared = sim
        .client
        .delete(sim.url("/_sim/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    assert_eq!(sim.get("/v1/payment_intents/pi_x").await.status(), 404);

    let refused = sim
        .client
        .post(sim.url("/_sim/faults"))
        .json(&serde_json::json!({
            "endpoint": "any",
            "action": { "kind": "server_error", "status": 404 },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn a_settle_later_payment_is_processing_then_succeeds() {
    let sim = spawn_simulator().await;
    sim.handle
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::SettleLater {
                after_millis: 200,
                outcome: SettleOutcome::Succeed,
            },
            1,
        ))
        .unwrap();
    let created: Value = sim
        .pay(Some("k"), "c1", "2000", "pm_card_visa")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(created["status"], "processing");
    assert_eq!(created["amount_received"], 0);
    let id = created["id"].as_str().unwrap().to_owned();
    let settled: Value = eventually("the payment to settle", || async {
        let read: Value = sim
            .get(&format!("/v1/payment_intents/{id}"))
            .await
            .json()
            .await
            .ok()?;
        (read["status"] == "succeeded").then_some(read)
    })
    .await;
    assert_eq!(settled["amount_received"], 2000);
}

#[tokio::test]
async fn a_settle_later_refund_is_pending_then_fails_and_frees_its_amount() {
    let sim = spawn_simulator().await;
    let intent = sim.paid_intent("c1", "1000").await;
    sim.handle
        .add_fault(FaultRule::new(
            Endpoint::CreateRefund,
            FaultAction::SettleLater {
                after_millis: 100,
                outcome: SettleOutcome::Fail,
            },
            1,
        ))
        .unwrap();
    let pending: Value = sim
        .post("/v1/refunds", Some("r"), &[("payment_intent", &intent)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["status"], "pending");
    let id = pending["id"].as_str().unwrap().to_owned();
    eventually("the refund to fail", || async {
        let read: Value = sim
            .get(&format!("/v1/refunds/{id}"))
            .await
            .json()
            .await
            .ok()?;
        (read["status"] == "failed").then_some(())
    })
    .await;
    assert_eq!(sim.handle.ledger().charges[0].amount_refunded, 0);
    let retry = sim
        .post("/v1/refunds", Some("r2"), &[("payment_intent", &intent)])
        .await;
    assert_eq!(retry.status(), 200);
}

#[tokio::test]
async fn a_500_after_execution_is_saved_and_replayed_while_the_payment_exists() {
    let sim = spawn_simulator().await;
    sim.handle
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::ExecuteThenServerError { status: 500 },
            1,
        ))
        .unwrap();
    let failed = sim.pay(Some("k"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(failed.status(), 500);
    let failed_body = failed.bytes().await.unwrap();

    let retry = sim.pay(Some("k"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(retry.status(), 500);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.bytes().await.unwrap(), failed_body);

    let ledger = sim.handle.ledger_for_metadata("charge_id", "c1");
    assert_eq!(ledger.payment_intents.len(), 1);
    assert_eq!(ledger.payment_intents[0].amount_received, 2000);
}
