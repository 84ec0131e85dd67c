//! Creating and reading payment intents: test cards, validation, authentication.

use serde_json::Value;

use crate::helpers::{payment_params, spawn_simulator};

#[tokio::test]
async fn a_visa_payment_succeeds_and_reads_back_with_its_charge() {
    let sim = spawn_simulator().await;

    let response = sim.pay(Some("k1"), "c1", "2000", "pm_card_visa").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().get("idempotent-replayed").is_none());
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["object"], "payment_intent");
    assert_eq!(created["status"], "succeeded");
    assert_eq!(created["amount"], 2000);
    assert_eq!(created["amount_received"], 2000);
    assert_eq!(created["currency"], "usd");
    assert_eq!(created["customer"], "cus_test");
    assert_eq!(created["metadata"]["charge_id"], "c1");
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("pi_"));

    let read: Value = sim
        .get(&format!("/v1/payment_intents/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, created);

    let expanded: Value = sim
        .get(&format!(
            "/v1/payment_intents/{id}?expand%5B%5D=latest_charge"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(expanded["latest_charge"]["object"], "charge");
    assert_eq!(expanded["latest_charge"]["id"], created["latest_charge"]);
    assert_eq!(expanded["latest_charge"]["amount_captured"], 2000);
    assert_eq!(expanded["latest_charge"]["amount_refunded"], 0);
    assert_eq!(sim.handle.payment_intent_count_for_charge_id("c1"), 1);
}

#[tokio::test]
async fn each_declining_test_card_answers_a_card_error_carrying_the_payment_intent() {
    let sim = spawn_simulator().await;
    let cases = [
        (
            "pm_card_chargeDeclined",
            "card_declined",
            Some("generic_decline"),
        ),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "card_declined",
            Some("insufficient_funds"),
        ),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", None),
    ];
    for (payment_method, code, decline_code) in cases {
        let response = sim
            .pay(Some(payment_method), payment_method, "1500", payment_method)
            .await;
        assert_eq!(response.status(), 402, "{payment_method}");
        assert_eq!(response.headers()["stripe-should-retry"], "false");
        let body: Value = response.json().await.unwrap();
        let error = &body["error"];
        assert_eq!(error["type"], "card_error", "{payment_method}");
        assert_eq!(error["code"], code, "{payment_method}");
        assert_eq!(
            error["decline_code"].as_str(),
            decline_code,
            "{payment_method}"
        );
        assert!(error["message"].as_str().unwrap().starts_with("Your card"));
        assert_eq!(error["payment_intent"]["status"], "requires_payment_method");
        assert_eq!(error["payment_intent"]["last_payment_error"]["code"], code);
        assert!(error["charge"].as_str().unwrap().starts_with("ch_"));

        // The attempt is in the ledger: a decline is a provider-side payment intent too.
        let ledger = sim.handle.ledger_for_metadata("charge_id", payment_method);
        assert_eq!(ledger.payment_intents.len(), 1, "{payment_method}");
        assert_eq!(ledger.payment_intents[0].id, error["payment_intent"]["id"]);
        assert_eq!(ledger.payment_intents[0].amount_received, 0);
    }
}

#[tokio::test]
async fn invalid_amounts_and_currencies_are_refused_naming_the_param_and_charge_nothing() {
    let sim = spawn_simulator().await;
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("currency", "usd")], "amount"),
        (&[("amount", "0"), ("currency", "usd")], "amount"),
        (&[("amount", "-100"), ("currency", "usd")], "amount"),
        (&[("amount", "10.50"), ("currency", "usd")], "amount"),
        (&[("amount", "100"), ("currency", "dollars")], "currency"),
        (&[("amount", "100")], "currency"),
    ];
    for (params, param) in cases {
        let response = sim.post("/v1/payment_intents", None, params).await;
        assert_eq!(response.status(), 400, "{params:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{params:?}");
        assert_eq!(body["error"]["param"], param, "{params:?}");
    }
    assert!(sim.handle.ledger().payment_intents.is_empty());
}

#[tokio::test]
async fn an_unknown_payment_intent_is_a_404_resource_missing() {
    let sim = spawn_simulator().await;
    let response = sim.get("/v1/payment_intents/pi_missing").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "resource_missing");
    assert_eq!(
        body["error"]["message"],
        "No such payment_intent: 'pi_missing'"
    );
}

#[tokio::test]
async fn a_missing_or_wrong_api_key_is_refused_with_401_and_charges_nothing() {
    let sim = spawn_simulator().await;
    let params = payment_params("c1", "100", "pm_card_visa");
    let body = crate::helpers::form(&params);

    let missing = sim
        .client
        .post(sim.url("/v1/payment_intents"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");

    let wrong = sim
        .client
        .post(sim.url("/v1/payment_intents"))
        .bearer_auth("sk_test_wrongkey1234")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let error: Value = wrong.json().await.unwrap();
    assert_eq!(
        error["error"]["message"],
        "Invalid API Key provided: sk_****1234"
    );
    assert!(sim.handle.ledger().payment_intents.is_empty());
}

#[tokio::test]
async fn the_key_is_also_accepted_as_basic_auth_user_as_curl_u_sends_it() {
    let sim = spawn_simulator().await;
    let response = sim
        .client
        .post(sim.url("/v1/payment_intents"))
        .basic_auth(sim.handle.api_key(), None::<&str>)
        .body(crate::helpers::form(&payment_params(
            "c1",
            "100",
            "pm_card_visa",
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_unknown_url_answers_stripes_404() {
    let sim = spawn_simulator().await;
    let response = sim.get("/v1/customers").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Unrecognized request URL (GET: /v1/customers)."
    );
}
