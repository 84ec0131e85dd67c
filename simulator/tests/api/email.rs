//! The email simulator over real HTTP: Resend's `POST /emails` with its key, validation,
//! idempotency and error shape, the faults tests set at run time, and the list of what it
//! accepted; once as the built `email-simulator` binary.

use std::process::Stdio;
use std::time::Duration;

use payment_simulator::email::{
    EmailFaultAction, EmailFaultRule, EmailSimulator, EmailSimulatorConfig, EmailSimulatorHandle,
};
use reqwest::Response;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

struct TestEmailApi {
    handle: EmailSimulatorHandle,
    client: reqwest::Client,
}

async fn spawn() -> TestEmailApi {
    TestEmailApi {
        handle: EmailSimulator::start(EmailSimulatorConfig::default())
            .await
            .expect("the email simulator starts"),
        client: reqwest::Client::new(),
    }
}

fn message(subject: &str) -> Value {
    json!({
        "from": "Support <support@desk.example.com>",
        "to": ["Ann <ann@example.com>"],
        "subject": subject,
        "html": "<p>Hello</p>",
        "text": "Hello",
        "reply_to": "replies@desk.example.com",
        "headers": {
            "Message-ID": "<n1@desk.example.com>",
            "In-Reply-To": "<ticket-t1@desk.example.com>",
            "References": "<ticket-t1@desk.example.com>",
        },
    })
}

impl TestEmailApi {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url())
    }

    fn post(&self, key: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(self.url("/emails"))
            .bearer_auth(self.handle.api_key())
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request
    }

    async fn send(&self, key: Option<&str>, body: &Value) -> Response {
        self.post(key, body)
            .send()
            .await
            .expect("the simulator answers")
    }

    async fn control(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("the control API answers")
            .json()
            .await
            .expect("JSON")
    }
}

async fn error_of(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.expect("an error body"))
}

#[tokio::test]
async fn an_accepted_email_is_listed_with_its_parts_and_headers_and_a_replay_returns_the_same_id() {
    let api = spawn().await;
    let first = api.send(Some("notification-1"), &message("Hello")).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let id = first["id"].as_str().expect("an id").to_owned();

    let again = api.send(Some("notification-1"), &message("Hello")).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id.as_str());

    let emails = api.control("/_sim/emails").await;
    let emails = emails.as_array().expect("a list");
    assert_eq!(emails.len(), 1, "one email for one key");
    let email = &emails[0];
    assert_eq!(email["id"], id.as_str());
    assert_eq!(email["to"], json!(["Ann <ann@example.com>"]));
    assert_eq!(email["reply_to"], json!(["replies@desk.example.com"]));
    assert_eq!(email["text"], "Hello");
    assert_eq!(email["html"], "<p>Hello</p>");
    assert_eq!(email["headers"]["Message-ID"], "<n1@desk.example.com>");
    assert_eq!(email["idempotency_key"], "notification-1");

    let requests = api.handle.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests
            .iter()
            .map(|request| (request.status, request.replayed))
            .collect::<Vec<_>>(),
        [(Some(200), false), (Some(200), true)]
    );
}

#[tokio::test]
async fn another_body_under_a_key_is_refused_and_a_key_still_running_is_a_conflict() {
    let api = spawn().await;
    api.send(Some("k1"), &message("Hello")).await;
    let (status, body) = error_of(api.send(Some("k1"), &message("Another")).await).await;
    assert_eq!(status, 409);
    assert_eq!(body["name"], "invalid_idempotent_request");
    assert_eq!(body["statusCode"], 409);

    api.handle
        .add_fault(EmailFaultRule::new(
            EmailFaultAction::Latency { millis: 600 },
            1,
        ))
        .unwrap();
    let slow = tokio::spawn(api.post(Some("k2"), &message("Slow")).send());
    // The first has taken the latency fault (and then the key, at once); the second meets it
    // running.
    while !api.handle.faults().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, conflict) = error_of(api.send(Some("k2"), &message("Slow")).await).await;
    assert_eq!(status, 409);
    assert_eq!(conflict["name"], "concurrent_idempotent_requests");
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status(), 200);
    assert_eq!(api.handle.emails().len(), 2);
}

#[tokio::test]
async fn keys_and_required_fields_are_checked_with_resends_error_shape_and_store_nothing() {
    let api = spawn().await;
    let unauthenticated = api
        .client
        .post(api.url("/emails"))
        .json(&message("Hello"))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(unauthenticated).await;
    assert_eq!(
        (status, body["name"].as_str()),
        (401, Some("missing_api_key"))
    );
    let wrong_key = api
        .client
        .post(api.url("/emails"))
        .bearer_auth("re_wrong")
        .json(&message("Hello"))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(wrong_key).await;
    assert_eq!(
        (status, body["name"].as_str()),
        (403, Some("invalid_api_key"))
    );

    let mut no_to = message("Hello");
    no_to.as_object_mut().unwrap().remove("to");
    let (status, body) = error_of(api.send(Some("k"), &no_to).await).await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"statusCode": 422, "name": "missing_required_field", "message": "Missing `to` field."})
    );
    let mut bad_to = message("Hello");
    bad_to["to"] = json!("not an address");
    let (status, body) = error_of(api.send(Some("k"), &bad_to).await).await;
    assert_eq!(
        (status, body["name"].as_str()),
        (422, Some("validation_error"))
    );
    let (status, body) = error_of(api.send(Some(&"k".repeat(257)), &message("Hello")).await).await;
    assert_eq!(
        (status, body["name"].as_str()),
        (400, Some("invalid_idempotency_key"))
    );

    // Nothing was stored under the key: the corrected body is accepted with it.
    assert_eq!(api.send(Some("k"), &message("Hello")).await.status(), 200);
    assert_eq!(api.handle.emails().len(), 1);
    let unknown = api.client.get(api.url("/nothing")).send().await.unwrap();
    assert_eq!(error_of(unknown).await.1["name"], "not_found");
}

#[tokio::test]
async fn the_next_n_answers_fail_with_a_5xx_then_the_same_key_is_accepted_once() {
    let api = spawn().await;
    api.handle
        .add_fault(EmailFaultRule::new(
            EmailFaultAction::ServerError { status: 500 },
            2,
        ))
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            api.send(Some("k"), &message("Hello"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [500, 500, 200]);
    assert_eq!(api.handle.emails().len(), 1);
    let next = api.send(Some("other"), &message("Hello")).await;
    assert_eq!(next.status(), 200, "the fault is used up");
    assert!(api.handle.faults().is_empty());
}

#[tokio::test]
async fn a_rate_limit_answers_429_with_retry_after_and_accepts_nothing() {
    let api = spawn().await;
    api.handle
        .add_fault(EmailFaultRule::new(
            EmailFaultAction::RateLimit {
                retry_after_secs: 30,
            },
            1,
        ))
        .unwrap();
    let limited = api.send(Some("k"), &message("Hello")).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "30");
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    assert_eq!(error_of(limited).await.1["name"], "rate_limit_exceeded");
    assert!(api.handle.emails().is_empty());
}

#[tokio::test]
async fn accept_then_drop_keeps_the_email_loses_the_answer_and_a_retry_gets_the_stored_one() {
    let api = spawn().await;
    api.handle
        .add_fault(EmailFaultRule::new(EmailFaultAction::AcceptThenDrop, 1))
        .unwrap();
    let lost = api.post(Some("k"), &message("Hello")).send().await;
    assert!(lost.is_err(), "no answer: {lost:?}");
    let emails = api.handle.emails();
    assert_eq!(emails.len(), 1, "accepted before the connection closed");

    let retried = api.send(Some("k"), &message("Hello")).await;
    assert_eq!(retried.status(), 200);
    assert_eq!(retried.json::<Value>().await.unwrap()["id"], emails[0].id);
    assert_eq!(api.handle.emails().len(), 1, "one email");
    let statuses: Vec<_> = api
        .handle
        .requests()
        .iter()
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, [None, Some(200)]);
}

#[tokio::test]
async fn faults_are_set_listed_and_cleared_through_the_control_api() {
    let api = spawn().await;
    let created = api
        .client
        .post(api.url("/_sim/faults"))
        .json(&json!({
            "action": {"kind": "error", "status": 422, "name": "validation_error", "message": "no"},
            "times": 1,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let refused = api
        .client
        .post(api.url("/_sim/faults"))
        .json(&json!({"action": {"kind": "server_error", "status": 404}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        api.control("/_sim/faults").await.as_array().unwrap().len(),
        1
    );

    let (status, body) = error_of(api.send(Some("k"), &message("Hello")).await).await;
    assert_eq!(
        (status, body["name"].as_str()),
        (422, Some("validation_error"))
    );
    assert_eq!(api.handle.requests()[0].fault.as_deref(), Some("error"));

    api.client
        .post(api.url("/_sim/faults"))
        .json(&json!({"action": {"kind": "server_error", "status": 503}}))
        .send()
        .await
        .unwrap();
    let cleared = api
        .client
        .delete(api.url("/_sim/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    assert_eq!(api.send(Some("k"), &message("Hello")).await.status(), 200);
    let reset = api
        .client
        .post(api.url("/_sim/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert!(api.handle.emails().is_empty());
    assert_eq!(api.control("/_sim/health").await["status"], "ok");
}

#[tokio::test]
async fn the_email_binary_prints_its_address_and_serves_the_api() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_email-simulator"))
        .args(["--listen", "127.0.0.1:0", "--api-key", "re_binary"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let client = reqwest::Client::new();
    let sent = client
        .post(format!("http://{addr}/emails"))
        .bearer_auth("re_binary")
        .json(&message("Hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let listed: Value = client
        .get(format!("http://{addr}/_sim/emails"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    child.kill().await.unwrap();
}
