//! A started simulator with a client that speaks to it the way billing's adapter will.

use std::future::Future;
use std::time::{Duration, Instant};

use payment_simulator::{Simulator, SimulatorConfig, SimulatorHandle};
use reqwest::Response;
use serde_json::Value;

pub(crate) struct TestSimulator {
    pub(crate) handle: SimulatorHandle,
    pub(crate) client: reqwest::Client,
}

pub(crate) async fn spawn_simulator() -> TestSimulator {
    spawn_simulator_with(SimulatorConfig::default()).await
}

pub(crate) async fn spawn_simulator_with(config: SimulatorConfig) -> TestSimulator {
    let handle = Simulator::start(config).await.expect("simulator starts");
    TestSimulator {
        handle,
        client: reqwest::Client::new(),
    }
}

/// `name=value&...`, percent-encoded as Stripe's clients send it.
pub(crate) fn form(params: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

impl TestSimulator {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url())
    }

    pub(crate) fn post_request(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        params: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(self.url(path))
            .bearer_auth(self.handle.api_key())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(params));
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        request
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        params: &[(&str, &str)],
    ) -> Response {
        self.post_request(path, idempotency_key, params)
            .send()
            .await
            .expect("the simulator answers")
    }

    /// `POST /v1/payment_intents` confirming `amount` usd with `payment_method`, tagged with
    /// `metadata[charge_id]`.
    pub(crate) async fn pay(
        &self,
        idempotency_key: Option<&str>,
        charge_id: &str,
        amount: &str,
        payment_method: &str,
    ) -> Response {
        self.post(
            "/v1/payment_intents",
            idempotency_key,
            &payment_params(charge_id, amount, payment_method),
        )
        .await
    }

    /// A succeeded payment's id.
    pub(crate) async fn paid_intent(&self, charge_id: &str, amount: &str) -> String {
        let response = self
            .pay(Some(charge_id), charge_id, amount, "pm_card_visa")
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(self.handle.api_key())
            .send()
            .await
            .expect("the simulator answers")
    }
}

pub(crate) fn payment_params<'a>(
    charge_id: &'a str,
    amount: &'a str,
    payment_method: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("amount", amount),
        ("currency", "usd"),
        ("customer", "cus_test"),
        ("payment_method", payment_method),
        ("confirm", "true"),
        ("metadata[charge_id]", charge_id),
    ]
}

/// Polls `probe` every 10 ms until it yields a value, failing after five seconds.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    // A poll: generous, since it ends as soon as the condition holds.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
