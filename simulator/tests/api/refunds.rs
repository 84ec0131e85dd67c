//! Refunds: partial and full, never beyond the payment, also under concurrency and from outside.

use futures::future::join_all;
use payment_simulator::OutsideRefund;
use serde_json::Value;

use crate::helpers::spawn_simulator;

#[tokio::test]
async fn partial_refunds_add_up_to_the_payment_and_no_further() {
    let sim = spawn_simulator().await;
    let intent = sim.paid_intent("c1", "1000").await;

    let partial = sim
        .post(
            "/v1/refunds",
            Some("r1"),
            &[("payment_intent", &intent), ("amount", "400")],
        )
        .await;
    assert_eq!(partial.status(), 200);
    let refund: Value = partial.json().await.unwrap();
    assert_eq!(refund["object"], "refund");
    assert_eq!(refund["status"], "succeeded");
    assert_eq!(refund["amount"], 400);
    assert_eq!(refund["payment_intent"], intent.as_str());

    let too_large = sim
        .post(
            "/v1/refunds",
            Some("r2"),
            &[("payment_intent", &intent), ("amount", "601")],
        )
        .await;
    assert_eq!(too_large.status(), 400);
    let body: Value = too_large.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], "amount");

    // Without an amount, the rest is refunded.
    let rest = sim
        .post("/v1/refunds", Some("r3"), &[("payment_intent", &intent)])
        .await;
    let rest: Value = rest.json().await.unwrap();
    assert_eq!(rest["amount"], 600);

    let again = sim
        .post(
            "/v1/refunds",
            Some("r4"),
            &[("payment_intent", &intent), ("amount", "1")],
        )
        .await;
    assert_eq!(again.status(), 400);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "charge_already_refunded");

    let charge: Value = sim
        .get(&format!(
            "/v1/charges/{}",
            refund["charge"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(charge["amount_refunded"], 1000);
    assert_eq!(charge["refunded"], true);
    let read: Value = sim
        .get(&format!("/v1/refunds/{}", rest["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, rest);
    assert_eq!(sim.handle.ledger().summary().amount_refunded, 1000);
}

#[tokio::test]
async fn ten_concurrent_partial_refunds_only_those_that_fit_succeed() {
    let sim = spawn_simulator().await;
    let intent = sim.paid_intent("c1", "1000").await;
    let keys: Vec<String> = (0..10).map(|i| format!("refund-{i}")).collect();
    let params = [("payment_intent", intent.as_str()), ("amount", "300")];
    let requests = keys
        .iter()
        .map(|key| sim.post("/v1/refunds", Some(key), &params));
    let statuses: Vec<u16> = join_all(requests)
        .await
        .iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|&&status| status == 200).count(), 3);
    assert_eq!(statuses.iter().filter(|&&status| status == 400).count(), 7);
    let ledger = sim.handle.ledger();
    assert_eq!(ledger.refunds.len(), 3);
    assert_eq!(ledger.charges[0].amount_refunded, 900);
}

#[tokio::test]
async fn a_payment_without_a_successful_charge_cannot_be_refunded() {
    let sim = spawn_simulator().await;
    let declined: Value = sim
        .pay(Some("k"), "c1", "1000", "pm_card_chargeDeclined")
        .await
        .json()
        .await
        .unwrap();
    let intent = declined["error"]["payment_intent"]["id"].as_str().unwrap();
    let response = sim
        .post("/v1/refunds", Some("r"), &[("payment_intent", intent)])
        .await;
    assert_eq!(response.status(), 400);
    let missing = sim
        .post("/v1/refunds", Some("r2"), &[("payment_intent", "pi_nope")])
        .await;
    assert_eq!(missing.status(), 400);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resource_missing");
    assert!(sim.handle.ledger().refunds.is_empty());
}

#[tokio::test]
async fn a_refund_made_outside_the_service_counts_against_the_limit() {
    let sim = spawn_simulator().await;
    let intent = sim.paid_intent("c1", "1000").await;
    let outside = sim
        .client
        .post(sim.url(&format!("/_sim/payment_intents/{intent}/refunds")))
        .json(&serde_json::json!({ "amount": 700 }))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), 200);
    let refund: Value = outside.json().await.unwrap();
    assert_eq!(refund["amount"], 700);

    let too_large = sim
        .post(
            "/v1/refunds",
            Some("r"),
            &[("payment_intent", &intent), ("amount", "400")],
        )
        .await;
    assert_eq!(too_large.status(), 400);
    let rest = sim
        .handle
        .refund_outside(&intent, OutsideRefund::default())
        .unwrap();
    assert_eq!(rest.amount, 300);
}

#[tokio::test]
async fn the_ledger_filters_by_metadata_and_resets() {
    let sim = spawn_simulator().await;
    let first = sim.paid_intent("c1", "1000").await;
    sim.paid_intent("c2", "500").await;
    sim.post("/v1/refunds", Some("r"), &[("payment_intent", &first)])
        .await;

    let ledger: Value = sim
        .client
        .get(sim.url("/_sim/ledger?metadata%5Bcharge_id%5D=c1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["payment_intents"].as_array().unwrap().len(), 1);
    assert_eq!(ledger["payment_intents"][0]["id"], first.as_str());
    assert_eq!(ledger["charges"].as_array().unwrap().len(), 1);
    assert_eq!(ledger["refunds"][0]["amount"], 1000);
    let summary = sim.handle.ledger().summary();
    assert_eq!(summary.payment_intents, 2);
    assert_eq!(summary.amount_received, 1500);
    assert_eq!(summary.amount_refunded, 1000);

    let reset = sim
        .client
        .post(sim.url("/_sim/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(sim.handle.ledger(), Default::default());
    assert!(sim.handle.events().is_empty());
    // The keys went too: the same key now charges anew.
    sim.paid_intent("c1", "1000").await;
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);
}
