//! The HTTP [`EmailSender`] (`EMAIL_PROVIDER=http`): an email API in Resend's dialect.
//! `POST {EMAIL_API_URL}/emails` with `Authorization: Bearer {EMAIL_API_KEY}`, an
//! `Idempotency-Key` that is the notification's own (the same on every attempt, so the provider
//! records one email however often the answer is lost), and the JSON body `{from, to, subject,
//! html, text, reply_to, headers}`, the identity headers (`Message-ID`, `In-Reply-To`,
//! `References`, `List-Unsubscribe`) in `headers`.
//!
//! A send runs the payment client's loop (docs/billing.md), in small: ask the circuit breaker,
//! make one attempt bounded by `min(EMAIL_API_TIMEOUT_MS, time left)`, classify the answer, and
//! retry at once what may pass at once (a 5xx, no answer, a lost answer, a concurrent request
//! with the key) after a full-jitter backoff, while attempts, the retry budget and the deadline
//! allow. What cannot pass now goes back to the queue (docs/notifications.md):
//!
//! | answer | the notification | the breaker |
//! |---|---|---|
//! | 2xx | sent; the provider's `id` kept | success |
//! | 429 | due again no earlier than `retry-after` | neutral: the provider is up |
//! | 400, 413, 422, 409 `invalid_idempotent_request`, other 4xx | dead, with the provider's words | success: it answered |
//! | 401, 403, 404, 405 | retried later: a key or URL problem is not the message's fault | failure: nothing can be sent until someone fixes it |
//! | 5xx, connection refused | retried now (same key), then later | failure |
//! | no answer in time, connection cut after the request went, lost answer | retried now (same key); when the send's last attempt ends so, an unknown outcome: resent at most once more | failure |
//! | 409 `concurrent_idempotent_requests` | retried (an earlier attempt is still running) | neutral |

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::Instrument;
use url::Url;

use super::{EmailSender, HandOver, OutgoingEmail, SendError, SendFuture, Sent};
use crate::configuration::{EmailSettings, HttpEmailSettings};
use crate::domain::idna_form;
use crate::resilience::breaker::{CallOutcome, CallResult, CircuitBreaker};
use crate::resilience::bulkhead::Bulkhead;
use crate::resilience::retry::{
    AttemptFailed, RetryDriver, RetryPolicy, Stopped, TpsBudget, retry_budget,
};
use crate::telemetry::traces;

/// The longest `retry-after` believed: a day (a quota that resets tomorrow).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Sends through one email API.
pub struct HttpSender {
    client: reqwest::Client,
    /// `{EMAIL_API_URL}/emails`.
    endpoint: Url,
    api_key: SecretString,
    from: String,
    reply_to: Option<String>,
    attempt_timeout: Duration,
    policy: RetryPolicy,
    budget: TpsBudget,
    breaker: CircuitBreaker,
    bulkhead: Bulkhead,
}

impl std::fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("HttpSender")
            .field("endpoint", &self.endpoint.as_str())
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// The request body, in the API's field names.
#[derive(Debug, Serialize)]
struct EmailBody<'a> {
    from: &'a str,
    to: [String; 1],
    subject: &'a str,
    html: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    headers: BTreeMap<&'static str, &'a str>,
    /// `[{"name": "notification_id", "value": "<uuid>"}]`: given back in the provider's events.
    tags: [Tag; 1],
}

/// A tag of the API's (`name`, `value`).
#[derive(Debug, Serialize)]
struct Tag {
    name: &'static str,
    value: String,
}

/// A successful answer: `{"id": "..."}`.
#[derive(Debug, Deserialize)]
struct Accepted {
    id: String,
}

/// An error answer: `{"statusCode", "message", "name"}`.
#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    name: String,
}

/// One attempt that did not send, classified.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    error: SendError,
    /// What it says of the provider's health.
    breaker: CallOutcome,
    /// Worth another attempt within this send (after a short backoff), rather than later.
    again_now: bool,
}

impl AttemptFailed for Failure {
    type Error = SendError;

    fn breaker_outcome(&self) -> CallOutcome {
        self.breaker
    }

    fn worth_retrying(&self) -> bool {
        self.again_now
    }

    /// The email API's `retry-after` sends a notification back to its queue rather than
    /// delaying this send (`classify`): within one send only the backoff spaces attempts.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    fn into_error(self) -> SendError {
        self.error
    }
}

impl HttpSender {
    /// A sender for the API `api` describes; connects lazily (the API may be down at start-up:
    /// notifications wait for it).
    pub fn new(email: &EmailSettings, api: &HttpEmailSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(api.timeout)
            // A redirect would resend the message somewhere we did not configure.
            .redirect(reqwest::redirect::Policy::none())
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            .build()
            .context("the email API's HTTP client cannot be built")?;
        let mut base = api.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let endpoint = base
            .join("emails")
            .context("EMAIL_API_URL cannot take the path `emails`")?;
        Ok(Self {
            client,
            endpoint,
            api_key: api.api_key.clone(),
            from: email.from.clone(),
            reply_to: email.reply_to.clone(),
            attempt_timeout: api.timeout,
            policy: RetryPolicy {
                max_attempts: api.max_attempts.max(1),
                base_delay: api.backoff_base,
                max_delay: api.backoff_max,
            },
            budget: retry_budget(api.retry_budget_percent, api.retry_budget_min_per_second),
            breaker: super::breaker(email),
            bulkhead: super::bulkhead(email),
        })
    }

    /// The JSON body of `email`: the same bytes on every attempt (the provider compares them
    /// under the idempotency key).
    fn body(&self, email: &OutgoingEmail) -> Result<Bytes, SendError> {
        // `Name <address>` quoted as a mail header would be, the domain in the IDNA form the
        // SMTP relay is sent too (`idna_form`); an address the mail parser refuses goes as it
        // is, for the provider to judge (it answers 422, and the message is dead).
        let address = idna_form(&email.to_address);
        let to = match address.parse() {
            Ok(address) => {
                let name = email.to_name.trim();
                Mailbox::new((!name.is_empty()).then(|| name.to_owned()), address).to_string()
            }
            Err(_) => address.into_owned(),
        };
        let mut headers = BTreeMap::from([("Message-ID", email.message_id.as_str())]);
        if let Some(root) = &email.thread_root {
            headers.insert("In-Reply-To", root);
            headers.insert("References", root);
        }
        if let Some(unsubscribe) = &email.list_unsubscribe {
            headers.insert("List-Unsubscribe", unsubscribe);
        }
        let body = EmailBody {
            from: &self.from,
            to: [to],
            subject: &email.subject,
            html: &email.html,
            text: &email.text,
            reply_to: self.reply_to.as_deref(),
            headers,
            tags: [Tag {
                name: "notification_id",
                value: email.notification_id.to_string(),
            }],
        };
        serde_json::to_vec(&body).map(Bytes::from).map_err(|error| {
            SendError::Permanent(format!("the message cannot be encoded: {error}"))
        })
    }

    /// Attempts, backoff and classification, by `deadline` ([`RetryDriver`]).
    async fn call(&self, body: Bytes, key: &str, deadline: Instant) -> Result<Sent, SendError> {
        let driver = RetryDriver {
            breaker: &self.breaker,
            policy: self.policy,
            budget: &self.budget,
            attempt_timeout: self.attempt_timeout,
        };
        let attempt = |timeout| self.attempt(body.clone(), key, timeout);
        let result = driver
            .run(deadline, attempt, |attempt, failure: &Failure| {
                tracing::warn!(
                    attempt,
                    error = %failure.error,
                    again_now = failure.again_now,
                    "email API attempt failed"
                );
            })
            .await;
        match result {
            Ok(sent) => Ok(sent),
            Err(Stopped::OutOfTime { last }) => {
                Err(last.unwrap_or_else(|| SendError::retry("no time left to send")))
            }
            // After an attempt, the send ends with what that attempt said.
            Err(Stopped::CircuitOpen { retry_after, last }) => {
                Err(last.unwrap_or(SendError::CircuitOpen { retry_after }))
            }
            Err(Stopped::BudgetSpent(error)) => {
                tracing::warn!("email API retry budget spent");
                Err(error)
            }
            Err(Stopped::Failed(error)) => Err(error),
        }
    }

    /// One attempt in its trace span (`provider.call`, docs/observability.md), whose trace
    /// context the request carries as `traceparent`.
    async fn attempt(&self, body: Bytes, key: &str, timeout: Duration) -> Result<Sent, Failure> {
        let span = traces::provider_call("email", "POST", self.endpoint.path());
        let started = Instant::now();
        let result = self
            .attempt_once(body, key, timeout)
            .instrument(span.clone())
            .await;
        let (outcome, failed) = match &result {
            Ok(_) => (CallResult::Ok, false),
            Err(failure) => (
                if failure.again_now {
                    CallResult::Failed
                } else {
                    CallResult::Refused
                },
                failure.breaker == CallOutcome::Failure,
            ),
        };
        self.breaker.timed(outcome, started.elapsed());
        traces::provider_outcome(&span, None, outcome.as_str(), failed);
        result
    }

    /// Sends the request once and reads the whole answer, or says why there is none.
    async fn attempt_once(
        &self,
        body: Bytes,
        key: &str,
        timeout: Duration,
    ) -> Result<Sent, Failure> {
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", self.api_key.expose_secret())).map_err(
                |_| Failure {
                    error: SendError::retry("EMAIL_API_KEY is not a valid header value"),
                    breaker: CallOutcome::Failure,
                    again_now: false,
                },
            )?;
        authorization.set_sensitive(true);
        let exchange = async {
            let response = self
                .client
                .post(self.endpoint.clone())
                .header(http::header::AUTHORIZATION, authorization)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header("Idempotency-Key", key)
                .headers(traces::outgoing_headers())
                .body(body)
                .send()
                .await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        };
        // No answer after the request may have arrived: the email may exist (an unknown
        // outcome). The retry carries the same key, so the provider answers it from what it
        // recorded.
        let no_answer = |detail: String| Failure {
            error: SendError::Unknown(format!("email API: {detail}")),
            breaker: CallOutcome::Failure,
            again_now: true,
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((status, headers, body))) => classify(status, &headers, &body),
            Err(_elapsed) => Err(no_answer(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
            // Nothing arrived: a known outcome.
            Ok(Err(error)) if error.is_connect() => Err(Failure {
                error: SendError::retry(format!(
                    "email API: cannot connect: {}",
                    error_chain(&error)
                )),
                breaker: CallOutcome::Failure,
                again_now: true,
            }),
            Ok(Err(error)) => Err(no_answer(format!(
                "the answer was lost: {}",
                error_chain(&error)
            ))),
        }
    }
}

impl EmailSender for HttpSender {
    /// The send's requests, all with the notification's key and the same body, after the
    /// hand-over is recorded: from the first request on, the email may exist.
    fn send<'a>(
        &'a self,
        email: &'a OutgoingEmail,
        deadline: Instant,
        hand_over: &'a dyn HandOver,
    ) -> SendFuture<'a> {
        Box::pin(async move {
            let body = self.body(email)?;
            hand_over
                .handing_over(deadline.saturating_duration_since(Instant::now()))
                .await
                .map_err(|reason| {
                    SendError::retry(format!(
                        "the send could not be recorded before the request went, so it did not \
                         go: {reason}"
                    ))
                })?;
            self.call(body, &email.idempotency_key, deadline).await
        })
    }

    fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

/// What an answer means (the table in the module's documentation).
fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Sent, Failure> {
    if (200..300).contains(&status) {
        // The provider took it: an id we cannot read does not make it unsent.
        let provider_id = serde_json::from_slice::<Accepted>(body)
            .map(|accepted| accepted.id)
            .ok();
        return Ok(Sent { provider_id });
    }
    let error: ApiError = serde_json::from_slice(body).unwrap_or_default();
    let said = if error.name.is_empty() && error.message.is_empty() {
        format!("email API: HTTP {status}")
    } else {
        format!("email API: HTTP {status} {}: {}", error.name, error.message)
    };
    let failure = |error, breaker, again_now| Failure {
        error,
        breaker,
        again_now,
    };
    Err(match status {
        429 => {
            let not_before = retry_after(headers);
            let reason = match not_before {
                Some(wait) => format!("{said} (retry after {} s)", wait.as_secs()),
                None => said,
            };
            failure(
                SendError::Retry { reason, not_before },
                CallOutcome::Neutral,
                false,
            )
        }
        409 if error.name == "concurrent_idempotent_requests" => {
            failure(SendError::retry(said), CallOutcome::Neutral, true)
        }
        401 | 403 | 404 | 405 => failure(SendError::retry(said), CallOutcome::Failure, false),
        408 | 500..=599 => failure(SendError::retry(said), CallOutcome::Failure, true),
        _ => failure(SendError::Permanent(said), CallOutcome::Success, false),
    })
}

/// `retry-after` in seconds (the form the API sends), at most a day.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// An error and its causes, for the logs and `last_error` (reqwest's own message is terse).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::EmailProviderSettings;

    fn settings(url: &str) -> (EmailSettings, HttpEmailSettings) {
        let api = HttpEmailSettings {
            url: url.parse().unwrap(),
            api_key: SecretString::from("re_test_secret".to_owned()),
            timeout: Duration::from_secs(1),
            max_attempts: 3,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
            retry_budget_percent: 100,
            retry_budget_min_per_second: 100,
        };
        let email = EmailSettings {
            from: "Support <support@example.com>".to_owned(),
            reply_to: Some("help@example.com".to_owned()),
            max_concurrency: 2,
            breaker_failure_threshold: 5,
            breaker_cool_down: Duration::from_secs(60),
            provider: EmailProviderSettings::Http(api.clone()),
        };
        (email, api)
    }

    fn sender() -> HttpSender {
        let (email, api) = settings("https://api.example.com/v2");
        HttpSender::new(&email, &api).unwrap()
    }

    fn outgoing() -> OutgoingEmail {
        OutgoingEmail {
            to_address: "ann@example.com".to_owned(),
            to_name: "Ann \"the\" Admin".to_owned(),
            subject: "Help".to_owned(),
            text: "text".to_owned(),
            html: "<p>html</p>".to_owned(),
            message_id: "<n1@desk.example.com>".to_owned(),
            thread_root: Some("<ticket-t1@desk.example.com>".to_owned()),
            list_unsubscribe: None,
            idempotency_key: "notification-n1".to_owned(),
            notification_id: uuid::Uuid::nil(),
        }
    }

    fn failure(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> Failure {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        classify(status, &map, body.as_bytes()).expect_err("a failure")
    }

    #[test]
    fn the_body_names_every_field_in_the_apis_terms_and_the_endpoint_keeps_the_base_path() {
        let sender = sender();
        assert_eq!(
            sender.endpoint.as_str(),
            "https://api.example.com/v2/emails"
        );
        let body: serde_json::Value =
            serde_json::from_slice(&sender.body(&outgoing()).unwrap()).expect("JSON");
        assert_eq!(
            body,
            serde_json::json!({
                "from": "Support <support@example.com>",
                "to": ["\"Ann \\\"the\\\" Admin\" <ann@example.com>"],
                "subject": "Help",
                "html": "<p>html</p>",
                "text": "text",
                "reply_to": "help@example.com",
                "headers": {
                    "Message-ID": "<n1@desk.example.com>",
                    "In-Reply-To": "<ticket-t1@desk.example.com>",
                    "References": "<ticket-t1@desk.example.com>",
                },
                "tags": [{"name": "notification_id", "value": uuid::Uuid::nil().to_string()}],
            })
        );
        assert_eq!(
            sender.body(&outgoing()).unwrap(),
            sender.body(&outgoing()).unwrap(),
            "the same bytes on every attempt"
        );
        assert!(!format!("{sender:?}").contains("re_test_secret"));
    }

    #[test]
    fn a_success_keeps_the_providers_id_and_an_unreadable_one_is_still_sent() {
        let empty = HeaderMap::new();
        assert_eq!(
            classify(200, &empty, br#"{"id":"4ef9a417"}"#),
            Ok(Sent {
                provider_id: Some("4ef9a417".to_owned())
            })
        );
        assert_eq!(classify(200, &empty, b"nonsense"), Ok(Sent::default()));
    }

    #[test]
    fn a_refused_message_is_dead_and_the_provider_answering_is_no_failure() {
        for status in [400, 413, 422, 451] {
            let refused = failure(
                status,
                &[],
                r#"{"statusCode":422,"name":"missing_required_field","message":"Missing `to` field."}"#,
            );
            assert!(matches!(refused.error, SendError::Permanent(_)), "{status}");
            assert_eq!(refused.breaker, CallOutcome::Success, "{status}");
        }
        let other_body = failure(409, &[], r#"{"name":"invalid_idempotent_request"}"#);
        assert!(matches!(other_body.error, SendError::Permanent(_)));
        assert_eq!(
            failure(
                422,
                &[],
                r#"{"name":"missing_required_field","message":"Missing `to` field."}"#
            )
            .error
            .to_string(),
            "email API: HTTP 422 missing_required_field: Missing `to` field."
        );
    }

    #[test]
    fn a_rate_limit_asks_the_queue_to_wait_and_says_nothing_of_the_providers_health() {
        let limited = failure(
            429,
            &[("retry-after", "30")],
            r#"{"name":"rate_limit_exceeded"}"#,
        );
        assert_eq!(limited.breaker, CallOutcome::Neutral);
        assert!(!limited.again_now);
        let SendError::Retry { not_before, .. } = limited.error else {
            panic!("a retry");
        };
        assert_eq!(not_before, Some(Duration::from_secs(30)));
        let SendError::Retry { not_before, .. } =
            failure(429, &[("retry-after", "soon")], "").error
        else {
            panic!("a retry");
        };
        assert_eq!(
            not_before, None,
            "an unreadable retry-after: the usual backoff"
        );
    }

    #[test]
    fn a_key_problem_is_retried_later_and_counts_against_the_breaker() {
        for status in [401, 403, 404, 405] {
            let refused = failure(status, &[], r#"{"name":"invalid_api_key"}"#);
            assert!(matches!(refused.error, SendError::Retry { .. }), "{status}");
            assert_eq!(refused.breaker, CallOutcome::Failure, "{status}");
            assert!(!refused.again_now, "{status}: retrying at once cannot help");
        }
    }

    #[test]
    fn server_errors_and_a_concurrent_request_are_tried_again_at_once() {
        for status in [500, 502, 503, 408] {
            let failed = failure(status, &[], "");
            assert!(failed.again_now, "{status}");
            assert_eq!(failed.breaker, CallOutcome::Failure, "{status}");
            assert_eq!(
                failed.error.to_string(),
                format!("email API: HTTP {status}")
            );
        }
        let concurrent = failure(409, &[], r#"{"name":"concurrent_idempotent_requests"}"#);
        assert!(concurrent.again_now);
        assert_eq!(concurrent.breaker, CallOutcome::Neutral);
    }
}
