//! The list endpoints reconciliation reads the ledger with: `GET /v1/payment_intents` and
//! `GET /v1/refunds`, newest first, in a `created` range, paged with `limit` and
//! `starting_after`, authenticated like every `/v1` endpoint.

use payment_simulator::OutsideRefund;
use serde_json::Value;

use crate::helpers::{TestSimulator, spawn_simulator};

async fn list(sim: &TestSimulator, path: &str) -> Value {
    let answer = sim.get(path).await;
    assert_eq!(answer.status(), 200, "{path}");
    answer.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|object| object["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn payment_intents_are_listed_newest_first_in_pages_that_continue_after_the_cursor() {
    let sim = spawn_simulator().await;
    let mut made = Vec::new();
    for index in 0..5 {
        made.push(sim.paid_intent(&format!("c{index}"), "1000").await);
    }
    made.reverse();

    let first = list(&sim, "/v1/payment_intents?limit=2").await;
    assert_eq!(first["object"], "list");
    assert_eq!(first["url"], "/v1/payment_intents");
    assert_eq!(first["has_more"], true);
    assert_eq!(ids(&first), made[..2]);
    let mut seen = ids(&first);
    let mut page = first;
    while page["has_more"] == true {
        let last = seen.last().unwrap().clone();
        page = list(
            &sim,
            &format!("/v1/payment_intents?limit=2&starting_after={last}"),
        )
        .await;
        seen.extend(ids(&page));
    }
    assert_eq!(seen, made);

    // The range is on `created`, in unix seconds.
    let created = page["data"][0]["created"].as_i64().unwrap();
    let empty = list(
        &sim,
        &format!("/v1/payment_intents?created[gte]={}", created + 3600),
    )
    .await;
    assert_eq!(ids(&empty), Vec::<String>::new());
    assert_eq!(empty["has_more"], false);
    let all = list(
        &sim,
        &format!(
            "/v1/payment_intents?created[gte]={}&created[lt]={}&limit=100",
            created - 60,
            created + 60
        ),
    )
    .await;
    assert_eq!(ids(&all), made);
    assert_eq!(all["data"][0]["metadata"]["charge_id"], "c4");
}

#[tokio::test]
async fn an_expanded_latest_charge_shows_refunds_made_in_the_dashboard() {
    let sim = spawn_simulator().await;
    let intent = sim.paid_intent("c1", "1000").await;
    sim.handle
        .refund_outside(
            &intent,
            OutsideRefund {
                amount: Some(300),
                reason: None,
            },
        )
        .unwrap();
    let page = list(&sim, "/v1/payment_intents?expand[]=data.latest_charge").await;
    assert_eq!(page["data"][0]["latest_charge"]["amount_refunded"], 300);
    let plain = list(&sim, "/v1/payment_intents").await;
    assert!(plain["data"][0]["latest_charge"].is_string());

    let refunds = list(&sim, "/v1/refunds").await;
    assert_eq!(refunds["url"], "/v1/refunds");
    assert_eq!(refunds["data"][0]["payment_intent"], intent.as_str());
    assert_eq!(refunds["data"][0]["amount"], 300);
}

#[tokio::test]
async fn a_bad_limit_an_unknown_cursor_and_a_missing_key_are_refused() {
    let sim = spawn_simulator().await;
    for path in [
        "/v1/payment_intents?limit=0",
        "/v1/refunds?limit=101",
        "/v1/payment_intents?starting_after=pi_nope",
        "/v1/refunds?created[gte]=yesterday",
    ] {
        let answer = sim.get(path).await;
        assert_eq!(answer.status(), 400, "{path}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{path}");
    }
    let anonymous = sim
        .client
        .get(sim.url("/v1/payment_intents"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
