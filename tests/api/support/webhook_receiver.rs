//! A real receiver of the service's outbound webhooks for the webhook tests:
//! `webhook_receiver.py` beside this file, run by the Python that deploy/local/setup gave the
//! Standard Webhooks reference library (`standardwebhooks` from PyPI; `WEBHOOK_PYTHON_BIN`), one
//! per test on a port the kernel picks. It checks every delivery's `webhook-signature` with that
//! library, not with code of ours, so a signature the service gets wrong (or right only by our
//! own reading of the spec) fails the tests. Each endpoint (`/hooks/<name>`) is given its secrets
//! and how to answer ([`WebhookReceiver::configure`]); every request it gets is recorded, verified
//! or not, and read back with [`WebhookReceiver::attempts`]. A missing Python or package fails the
//! test.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::{Child, Command};

use super::{PATIENCE, repository_root, tool};

/// One request to `/hooks/<endpoint>` as the receiver saw it, in arrival order.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ReceivedAttempt {
    pub(crate) endpoint: String,
    /// `POST` for a delivery; anything else is a client that should not have sent it (a redirect
    /// followed as a `GET`, say).
    pub(crate) method: String,
    /// The `webhook-id`, `webhook-timestamp` and `webhook-signature` headers, as sent.
    pub(crate) webhook_id: Option<String>,
    pub(crate) webhook_timestamp: Option<String>,
    pub(crate) webhook_signature: Option<String>,
    /// The indexes (into the secrets the endpoint was configured with) of the secrets that
    /// `standardwebhooks.Webhook(secret).verify(body, headers)` accepted the delivery with.
    pub(crate) verified_with: Vec<usize>,
    /// The body parsed as JSON; `Null` when it is not JSON.
    pub(crate) payload: serde_json::Value,
    /// The body as text (bytes that are not UTF-8 replaced).
    pub(crate) body: String,
    /// Every header, its name in lower case (the last of a repeated one).
    pub(crate) headers: BTreeMap<String, String>,
    /// When it arrived, in seconds since the Unix epoch.
    pub(crate) received_at: f64,
    /// The endpoint's behaviour when it arrived (`ok`, `status:503`, `hang`, ...).
    pub(crate) behaviour: String,
    /// The status it was answered (or is being answered) with; `None` for `hang` and `reset`,
    /// which never answer.
    pub(crate) status: Option<u16>,
}

impl ReceivedAttempt {
    /// Whether one of the endpoint's secrets verified it (the spec's signature, an id, and a
    /// timestamp within the library's five minutes of now).
    pub(crate) fn verified(&self) -> bool {
        !self.verified_with.is_empty()
    }
}

/// The receiver process; killed when dropped.
pub(crate) struct WebhookReceiver {
    port: u16,
    http: reqwest::Client,
    _process: Child,
    _dir: tempfile::TempDir,
}

impl WebhookReceiver {
    /// Starts the receiver and waits until it answers its health check. It picks its own port
    /// (binding port 0 in its own process, so no other test can be handed it meanwhile) and
    /// writes it to a file, whole, which is polled for.
    pub(crate) async fn start() -> Self {
        let python = tool("WEBHOOK_PYTHON_BIN");
        assert!(
            python.exists(),
            "{} is missing: run deploy/local/setup test",
            python.display()
        );
        let dir = tempfile::tempdir().expect("a scratch directory");
        let port_file = dir.path().join("port");
        let mut process = Command::new(&python)
            .arg(repository_root().join("tests/api/support/webhook_receiver.py"))
            .arg("--port-file")
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
        let started = tokio::time::Instant::now();
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| text.trim().parse::<u16>().ok())
            {
                break port;
            }
            // A receiver that cannot start (no standardwebhooks, say) says why on stderr and
            // exits: fail at once rather than after the whole patience.
            if let Some(status) = process.try_wait().expect("the receiver's state") {
                panic!(
                    "the webhook receiver exited ({status}) before serving: is standardwebhooks \
                     installed in {}? run deploy/local/setup test",
                    python.display()
                );
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the webhook receiver wrote no port within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let receiver = Self {
            port,
            // Never through a proxy from the environment: the receiver is on the loopback.
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("a client"),
            _process: process,
            _dir: dir,
        };
        loop {
            let health = receiver.http.get(receiver.control("health")).send().await;
            if health.is_ok_and(|answer| answer.status().is_success()) {
                break;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the webhook receiver did not answer its health check within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        receiver
    }

    /// The URL to register for `endpoint` (deliveries to it are recorded under that name).
    pub(crate) fn url(&self, endpoint: &str) -> String {
        format!("http://127.0.0.1:{}/hooks/{endpoint}", self.port)
    }

    fn control(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/_control/{path}", self.port)
    }

    /// Gives `endpoint` the secrets (`whsec_` and base64) its deliveries are verified with, any
    /// of which may match, and how it answers from now on (restarting a `fail_first:<n>` count):
    /// `ok`, `status:<code>`, `slow:<ms>`, `hang`, `hang_after_headers`, `redirect:<url>`,
    /// `endless_body`, `reset`, `fail_first:<n>` or `nul_body` (webhook_receiver.py says what
    /// each does). An
    /// endpoint never configured has no secrets and answers 200.
    pub(crate) async fn configure(&self, endpoint: &str, secrets: &[&str], behaviour: &str) {
        let answer = self
            .http
            .put(self.control(&format!("endpoints/{endpoint}")))
            .json(&serde_json::json!({ "secrets": secrets, "behaviour": behaviour }))
            .send()
            .await
            .expect("the webhook receiver answers");
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert_eq!(
            status,
            reqwest::StatusCode::NO_CONTENT,
            "configuring endpoint {endpoint} with {behaviour:?}: {text}"
        );
    }

    /// Every request received so far, to `endpoint` or to any, in arrival order (a request is
    /// recorded once its body is read, before it is answered).
    pub(crate) async fn attempts(&self, endpoint: Option<&str>) -> Vec<ReceivedAttempt> {
        let mut request = self.http.get(self.control("attempts"));
        if let Some(endpoint) = endpoint {
            request = request.query(&[("endpoint", endpoint)]);
        }
        request
            .send()
            .await
            .expect("the webhook receiver answers")
            .error_for_status()
            .expect("the attempts")
            .json()
            .await
            .expect("the attempts as JSON")
    }

    /// The `webhook-id`s of the verified deliveries to `endpoint` that were answered 2xx with a
    /// whole response (so not `hang_after_headers` nor `endless_body`), in order: what a
    /// subscriber would have processed, duplicates included.
    pub(crate) async fn delivered(&self, endpoint: &str) -> Vec<String> {
        let mut delivered: BTreeMap<String, Vec<String>> = self
            .http
            .get(self.control("delivered"))
            .query(&[("endpoint", endpoint)])
            .send()
            .await
            .expect("the webhook receiver answers")
            .error_for_status()
            .expect("the deliveries")
            .json()
            .await
            .expect("the deliveries as JSON");
        delivered.remove(endpoint).unwrap_or_default()
    }

    /// Polls (every 50 ms) until `endpoint` has received at least `count` requests, and returns
    /// them all; fails the test with those it has once `timeout` has passed.
    pub(crate) async fn wait_for_attempts(
        &self,
        endpoint: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<ReceivedAttempt> {
        let started = tokio::time::Instant::now();
        loop {
            let attempts = self.attempts(Some(endpoint)).await;
            if attempts.len() >= count {
                return attempts;
            }
            assert!(
                started.elapsed() < timeout,
                "endpoint {endpoint} received {} of {count} request(s) within {timeout:?}: \
                 {attempts:#?}",
                attempts.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
