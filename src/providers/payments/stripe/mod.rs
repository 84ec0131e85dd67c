//! [`StripeHttpProvider`]: the [`PaymentProvider`] that speaks the subset of Stripe's REST API
//! in the team's PROVIDER.md: form-encoded bodies, `Authorization: Bearer`, an `Idempotency-Key`
//! on every POST, Stripe's error object and its `Stripe-Should-Retry` header.
//!
//! Every call runs the same loop (docs/billing.md): ask the circuit breaker, make one attempt
//! bounded by `min(attempt timeout, time left before the caller's deadline)`, classify the answer,
//! and retry only what is retryable, after a full-jitter backoff (at least the provider's
//! `Retry-After`), while attempts, the retry budget and the deadline allow. A POST is retried with
//! the very same body and idempotency key, so the provider executes it at most once; once any
//! attempt's outcome is unknown, a call that ends without an answer reports `UnknownOutcome`,
//! never a plain failure, because the payment may exist.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;
use tracing::Instrument;
use url::Url;

use super::provider::{
    BillingReference, CreatePayment, CreateRefund, LedgerPage, LedgerPeriod, Payment,
    PaymentFailure, PaymentProvider, PaymentStatus, ProviderCharge, ProviderError, ProviderFuture,
    Refund, RefundStatus,
};
use crate::configuration::PaymentProviderSettings;
use crate::domain::Money;
use crate::resilience::breaker::{BreakerConfig, CallOutcome, CallResult, CircuitBreaker};
use crate::resilience::bulkhead::Bulkhead;
use crate::resilience::retry::{RetryDriver, RetryPolicy, Stopped, TpsBudget, retry_budget};
use crate::telemetry::traces;

mod classification;
mod wire;

use classification::{
    Answer, Failure, classify, error_chain, is_providers_refusal, resolve, unexpected,
};
use wire::*;

/// The HTTP client of a Stripe-style provider, with its retry budget and circuit breaker.
#[derive(Debug)]
pub struct StripeHttpProvider {
    client: reqwest::Client,
    base_url: Url,
    secret_key: SecretString,
    attempt_timeout: Duration,
    policy: RetryPolicy,
    budget: TpsBudget,
    breaker: CircuitBreaker,
    bulkhead: Bulkhead,
    key_retention: Duration,
}

/// The provider's name in errors, metrics and logs.
pub const PROVIDER_NAME: &str = "payments";

/// Why a [`StripeHttpProvider`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProviderSetupError {
    #[error("PAYMENT_PROVIDER_URL uses {0}://: only http:// and https:// are spoken")]
    UnsupportedScheme(String),
    #[error("PAYMENT_PROVIDER_CA_FILE {path}: {problem}")]
    CaFile { path: String, problem: String },
    #[error("the HTTP client could not be built: {0}")]
    Client(#[from] reqwest::Error),
}

impl StripeHttpProvider {
    pub fn new(settings: &PaymentProviderSettings) -> Result<Self, ProviderSetupError> {
        if !matches!(settings.url.scheme(), "http" | "https") {
            return Err(ProviderSetupError::UnsupportedScheme(
                settings.url.scheme().to_owned(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            // Redirects would resend a POST somewhere we did not configure.
            .redirect(reqwest::redirect::Policy::none())
            // Certificates are verified against Mozilla's roots (and the extra CAs below); TLS
            // 1.2 is the floor, as the providers require.
            .min_tls_version(reqwest::tls::Version::TLS_1_2);
        if let Some(path) = &settings.ca_file {
            for certificate in extra_roots(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build()?;
        let mut base_url = settings.url.clone();
        // `join` replaces the last path segment unless the base ends with a slash.
        if !base_url.path().ends_with('/') {
            base_url.set_path(&format!("{}/", base_url.path()));
        }
        Ok(Self {
            client,
            base_url,
            secret_key: settings.secret_key.clone(),
            attempt_timeout: settings.timeout,
            policy: RetryPolicy {
                max_attempts: settings.max_attempts.max(1),
                base_delay: settings.backoff_base,
                max_delay: settings.backoff_max,
            },
            budget: retry_budget(
                settings.retry_budget_percent,
                settings.retry_budget_min_per_second,
            ),
            breaker: CircuitBreaker::new(
                PROVIDER_NAME,
                BreakerConfig {
                    failure_threshold: settings.breaker_failure_threshold,
                    cool_down: settings.breaker_cool_down,
                },
            ),
            // A refused caller comes back after about one attempt's time, when places free up.
            bulkhead: Bulkhead::new(PROVIDER_NAME, settings.max_concurrency, settings.timeout),
            key_retention: settings.key_retention,
        })
    }

    /// The provider's circuit breaker: its state, and a way to watch it change.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// One call: attempts, backoff and classification, within `deadline`
    /// ([`RetryDriver`]).
    async fn call<T>(
        &self,
        request: &HttpRequest,
        deadline: Instant,
        parse: fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, ProviderError> {
        // Once an attempt of a POST may have executed, a later failure without an answer must
        // not hide that: the caller has to resolve the payment, not treat it as failed.
        let mut outcome_unknown: Option<ProviderError> = None;
        let driver = RetryDriver {
            breaker: &self.breaker,
            policy: self.policy,
            budget: &self.budget,
            attempt_timeout: self.attempt_timeout,
        };
        let attempt = |timeout| async move {
            let answer = self.attempt(request, timeout).await?;
            classify(request, answer, parse)
        };
        let result = driver
            .run(deadline, attempt, |attempt, failure: &Failure| {
                // Declines and refusals are the provider doing its job; only trouble is a warning.
                if failure.breaker == CallOutcome::Success {
                    tracing::info!(attempt, path = request.path, error = %failure.error, "payment provider refused");
                } else {
                    tracing::warn!(
                        attempt,
                        path = request.path,
                        error = %failure.error,
                        retryable = failure.retryable,
                        "payment provider attempt failed"
                    );
                }
                if failure.error.outcome_unknown() {
                    outcome_unknown = Some(failure.error.clone());
                }
            })
            .await;
        let last = match result {
            Ok(value) => return Ok(value),
            // What the provider said last: once anything was sent, a deadline that ends the
            // retries reports that (a sleep can overrun the deadline on a busy machine), and
            // `DeadlineExceeded` keeps its meaning, "nothing was sent".
            Err(Stopped::OutOfTime { last }) => last.unwrap_or(ProviderError::DeadlineExceeded),
            Err(Stopped::CircuitOpen { retry_after, .. }) => {
                ProviderError::CircuitOpen { retry_after }
            }
            Err(Stopped::BudgetSpent(error)) => {
                tracing::warn!(path = request.path, "payment provider retry budget spent");
                error
            }
            Err(Stopped::Failed(error)) => error,
        };
        Err(resolve(last, outcome_unknown))
    }

    /// One attempt in its trace span (`provider.call`, docs/observability.md), whose trace
    /// context the request carries as `traceparent`.
    async fn attempt(&self, request: &HttpRequest, timeout: Duration) -> Result<Answer, Failure> {
        let method = if request.is_post() { "POST" } else { "GET" };
        let span = traces::provider_call("payments", method, &request.path);
        let started = Instant::now();
        let result = self
            .attempt_once(request, timeout)
            .instrument(span.clone())
            .await;
        let (status, outcome) = match &result {
            Ok(answer) => (
                Some(answer.status.as_u16()),
                if answer.status.is_success() {
                    CallResult::Ok
                } else if is_providers_refusal(answer) {
                    CallResult::Refused
                } else {
                    CallResult::Failed
                },
            ),
            Err(_) => (None, CallResult::NoAnswer),
        };
        self.breaker.timed(outcome, started.elapsed());
        traces::provider_outcome(
            &span,
            status,
            outcome.as_str(),
            status.is_none_or(|status| status >= 500),
        );
        result
    }

    /// Sends the request once and reads the whole answer, or says why there is none.
    async fn attempt_once(
        &self,
        request: &HttpRequest,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let url = self
            .base_url
            .join(request.path.trim_start_matches('/'))
            .map_err(|error| Failure::final_error(unexpected(0, error.to_string())))?;
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", self.secret_key.expose_secret())).map_err(
                |_| {
                    Failure::final_error(ProviderError::InvalidRequest {
                        status: 0,
                        code: String::new(),
                        param: None,
                        message: "the secret key is not a valid header value".to_owned(),
                    })
                },
            )?;
        authorization.set_sensitive(true);
        let builder = match &request.method {
            Method::Get { query } => {
                let mut url = url;
                if !query.is_empty() {
                    url.query_pairs_mut().extend_pairs(query);
                }
                self.client.get(url)
            }
            Method::Post {
                form,
                idempotency_key,
            } => {
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish();
                self.client
                    .post(url)
                    .header("Idempotency-Key", idempotency_key)
                    .header(
                        http::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
            }
        };
        let exchange = async {
            let response = builder
                .header(http::header::AUTHORIZATION, authorization)
                .headers(traces::outgoing_headers())
                .send()
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(Answer {
                status,
                headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Err(_elapsed) => {
                Err(request.no_answer(format!("no answer within {} ms", timeout.as_millis())))
            }
            // Refused or unreachable: the request never left, so nothing can have happened.
            Ok(Err(error)) if error.is_connect() => Err(Failure {
                error: ProviderError::Unavailable {
                    detail: format!("cannot connect: {}", error_chain(&error)),
                },
                retryable: true,
                retry_after: None,
                breaker: CallOutcome::Failure,
            }),
            // Reset or closed after the request may have been written: for a POST, unknown.
            Ok(Err(error)) => {
                Err(request.no_answer(format!("the connection failed: {}", error_chain(&error))))
            }
        }
    }
}

impl PaymentProvider for StripeHttpProvider {
    fn create_payment<'a>(
        &'a self,
        request: &'a CreatePayment,
        deadline: Instant,
    ) -> ProviderFuture<'a, Payment> {
        let mut form = vec![
            (
                "amount".to_owned(),
                request.amount().amount_minor().to_string(),
            ),
            (
                "currency".to_owned(),
                request.amount().currency().lowercase_code(),
            ),
            ("customer".to_owned(), request.customer().to_owned()),
            (
                "payment_method".to_owned(),
                request.payment_method().to_owned(),
            ),
            ("confirm".to_owned(), "true".to_owned()),
        ];
        form.extend(
            request
                .metadata()
                .into_iter()
                .map(|(key, value)| (format!("metadata[{key}]"), value)),
        );
        let http = HttpRequest {
            path: "v1/payment_intents".to_owned(),
            method: Method::Post {
                form,
                idempotency_key: request.idempotency_key(),
            },
        };
        Box::pin(async move { self.call(&http, deadline, parse_payment).await })
    }

    fn get_payment<'a>(
        &'a self,
        payment_id: &'a str,
        deadline: Instant,
    ) -> ProviderFuture<'a, Payment> {
        Box::pin(async move {
            if !is_provider_id(payment_id) {
                return Err(ProviderError::InvalidRequest {
                    status: 0,
                    code: "invalid_payment_id".to_owned(),
                    param: Some("payment_id".to_owned()),
                    message: "a payment id is ASCII letters, digits and '_'".to_owned(),
                });
            }
            let http = HttpRequest {
                path: format!("v1/payment_intents/{payment_id}"),
                method: Method::Get {
                    query: vec![("expand[]".to_owned(), "latest_charge".to_owned())],
                },
            };
            self.call(&http, deadline, parse_payment).await
        })
    }

    fn find_payments_by_charge_id<'a>(
        &'a self,
        charge_id: &'a BillingReference,
        deadline: Instant,
    ) -> ProviderFuture<'a, Vec<Payment>> {
        // The reference's alphabet never needs escaping inside the quotes.
        let query = format!(
            "metadata['{}']:'{charge_id}'",
            CreatePayment::CHARGE_ID_METADATA_KEY
        );
        let http = HttpRequest {
            path: "v1/payment_intents/search".to_owned(),
            method: Method::Get {
                query: vec![
                    ("query".to_owned(), query),
                    ("limit".to_owned(), "100".to_owned()),
                ],
            },
        };
        Box::pin(async move { self.call(&http, deadline, parse_search).await })
    }

    fn refusing_calls_for(&self) -> Option<Duration> {
        self.breaker.refusing_for()
    }

    fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    fn key_retention(&self) -> Duration {
        self.key_retention
    }

    fn get_charge<'a>(
        &'a self,
        charge_id: &'a str,
        deadline: Instant,
    ) -> ProviderFuture<'a, ProviderCharge> {
        Box::pin(async move {
            if !is_provider_id(charge_id) {
                return Err(ProviderError::InvalidRequest {
                    status: 0,
                    code: "invalid_charge_id".to_owned(),
                    param: Some("charge_id".to_owned()),
                    message: "a charge id is ASCII letters, digits and '_'".to_owned(),
                });
            }
            let http = HttpRequest {
                path: format!("v1/charges/{charge_id}"),
                method: Method::Get { query: Vec::new() },
            };
            self.call(&http, deadline, parse_charge).await
        })
    }

    fn list_payments<'a>(
        &'a self,
        period: &'a LedgerPeriod,
        after: Option<&'a str>,
        deadline: Instant,
    ) -> ProviderFuture<'a, LedgerPage<Payment>> {
        let mut query = list_query(period, after);
        query.push(("expand[]".to_owned(), "data.latest_charge".to_owned()));
        let http = HttpRequest {
            path: "v1/payment_intents".to_owned(),
            method: Method::Get { query },
        };
        Box::pin(async move { self.call(&http, deadline, parse_payment_list).await })
    }

    fn list_refunds<'a>(
        &'a self,
        period: &'a LedgerPeriod,
        after: Option<&'a str>,
        deadline: Instant,
    ) -> ProviderFuture<'a, LedgerPage<Refund>> {
        let http = HttpRequest {
            path: "v1/refunds".to_owned(),
            method: Method::Get {
                query: list_query(period, after),
            },
        };
        Box::pin(async move { self.call(&http, deadline, parse_refund_list).await })
    }

    fn create_refund<'a>(
        &'a self,
        request: &'a CreateRefund,
        deadline: Instant,
    ) -> ProviderFuture<'a, Refund> {
        let mut form = vec![
            ("payment_intent".to_owned(), request.payment_id().to_owned()),
            (
                format!("metadata[{}]", CreateRefund::REFUND_ID_METADATA_KEY),
                request.refund_id().as_str().to_owned(),
            ),
        ];
        if let Some(amount) = request.amount() {
            form.push(("amount".to_owned(), amount.amount_minor().to_string()));
        }
        let http = HttpRequest {
            path: "v1/refunds".to_owned(),
            method: Method::Post {
                form,
                idempotency_key: request.idempotency_key(),
            },
        };
        Box::pin(async move { self.call(&http, deadline, parse_refund).await })
    }
}

pub(super) struct HttpRequest {
    pub(super) path: String,
    pub(super) method: Method,
}

pub(super) enum Method {
    Get {
        query: Vec<(String, String)>,
    },
    Post {
        form: Vec<(String, String)>,
        idempotency_key: String,
    },
}

impl HttpRequest {
    fn is_post(&self) -> bool {
        matches!(self.method, Method::Post { .. })
    }

    /// The request may have arrived and no answer came back. A POST may have executed: its
    /// outcome is unknown, and a retry is safe only because it carries the same key. A GET
    /// changed nothing.
    fn no_answer(&self, detail: String) -> Failure {
        let error = if self.is_post() {
            ProviderError::UnknownOutcome { detail }
        } else {
            ProviderError::Unavailable { detail }
        };
        Failure {
            error,
            retryable: true,
            retry_after: None,
            breaker: CallOutcome::Failure,
        }
    }
}

/// The CA certificates of a PEM file, or why the file cannot serve as one.
fn extra_roots(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, ProviderSetupError> {
    let problem = |problem: String| ProviderSetupError::CaFile {
        path: path.display().to_string(),
        problem,
    };
    let pem = std::fs::read(path).map_err(|error| problem(error.to_string()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|error| problem(format!("not PEM certificates: {error}")))?;
    if certificates.is_empty() {
        return Err(problem("holds no PEM certificate".to_owned()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post() -> HttpRequest {
        HttpRequest {
            path: "v1/payment_intents".to_owned(),
            method: Method::Post {
                form: Vec::new(),
                idempotency_key: "k".to_owned(),
            },
        }
    }

    fn answer(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: Bytes::from(body.to_owned()),
        }
    }

    fn failure(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> Failure {
        match classify(&post(), answer(status, headers, body), parse_payment) {
            Ok(_) => panic!("{status} classified as a success"),
            Err(failure) => failure,
        }
    }

    #[test]
    fn a_500_on_a_post_is_an_unknown_outcome_and_a_replayed_one_is_final() {
        let fresh = failure(
            500,
            &[],
            r#"{"error":{"type":"api_error","message":"boom"}}"#,
        );
        assert!(fresh.error.outcome_unknown());
        assert!(fresh.retryable);
        let replayed = failure(
            500,
            &[
                ("idempotent-replayed", "true"),
                ("stripe-should-retry", "true"),
            ],
            "{}",
        );
        assert!(replayed.error.outcome_unknown());
        assert!(!replayed.retryable);
    }

    #[test]
    fn the_providers_should_retry_header_wins_over_the_status() {
        assert!(!failure(503, &[("stripe-should-retry", "false")], "{}").retryable);
        assert!(failure(503, &[], "{}").retryable);
        assert!(failure(400, &[("stripe-should-retry", "true")], "{}").retryable);
    }

    #[test]
    fn a_4xx_page_of_something_in_front_of_the_provider_is_the_way_failing_not_a_refusal() {
        let page = "<html><body><h1>404 Not Found</h1></body></html>";
        for status in [400, 402, 403, 404, 407, 413] {
            let failure = failure(status, &[("content-type", "text/html")], page);
            assert!(
                matches!(failure.error, ProviderError::Unavailable { .. }),
                "{status}: {:?}",
                failure.error
            );
            assert!(failure.retryable, "{status}");
            assert_eq!(failure.breaker, CallOutcome::Failure, "{status}");
            assert!(
                !is_providers_refusal(&answer(status, &[], page)),
                "{status}"
            );
        }
        let untyped = failure(400, &[], r#"{"error":{"message":"bad"}}"#);
        assert!(matches!(untyped.error, ProviderError::Unavailable { .. }));

        let missing = r#"{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such payment_intent"}}"#;
        assert!(matches!(
            failure(404, &[], missing).error,
            ProviderError::InvalidRequest { status: 404, .. }
        ));
        assert!(is_providers_refusal(&answer(404, &[], missing)));
        let declined = r#"{"error":{"type":"card_error","code":"card_declined","message":"no"}}"#;
        assert!(matches!(
            failure(402, &[], declined).error,
            ProviderError::Declined { .. }
        ));
    }

    #[test]
    fn an_unknown_earlier_outcome_survives_a_later_failure_without_an_answer() {
        let unknown = ProviderError::UnknownOutcome {
            detail: "timed out".to_owned(),
        };
        let later = ProviderError::CircuitOpen {
            retry_after: Duration::from_secs(1),
        };
        assert!(resolve(later.clone(), Some(unknown.clone())).outcome_unknown());
        assert_eq!(resolve(later.clone(), None), later);
        let decline = ProviderError::Declined {
            code: "card_declined".to_owned(),
            decline_code: None,
            message: String::new(),
            payment_id: None,
        };
        assert_eq!(resolve(decline.clone(), Some(unknown)), decline);
    }

    #[test]
    fn a_url_of_another_scheme_and_a_ca_file_that_is_no_certificate_are_refused_naming_them() {
        let settings = PaymentProviderSettings {
            url: "ftp://api.stripe.com".parse().unwrap(),
            secret_key: SecretString::from("sk_test_x".to_owned()),
            timeout: Duration::from_secs(1),
            max_attempts: 1,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
            retry_budget_percent: 0,
            retry_budget_min_per_second: 0,
            breaker_failure_threshold: 1,
            breaker_cool_down: Duration::from_secs(1),
            max_concurrency: 16,
            key_retention: Duration::from_secs(24 * 60 * 60),
            ca_file: None,
        };
        assert!(matches!(
            StripeHttpProvider::new(&settings),
            Err(ProviderSetupError::UnsupportedScheme(scheme)) if scheme == "ftp"
        ));
        let not_pem = std::env::temp_dir().join(format!("not-a-ca-{}.pem", std::process::id()));
        std::fs::write(&not_pem, "hello").unwrap();
        let error = StripeHttpProvider::new(&PaymentProviderSettings {
            url: "https://api.stripe.com".parse().unwrap(),
            ca_file: Some(not_pem.clone()),
            ..settings.clone()
        })
        .expect_err("no certificate in it");
        std::fs::remove_file(&not_pem).unwrap();
        assert!(
            error.to_string().starts_with("PAYMENT_PROVIDER_CA_FILE "),
            "{error}"
        );
        let https = PaymentProviderSettings {
            url: "https://api.stripe.com".parse().unwrap(),
            ..settings
        };
        assert!(StripeHttpProvider::new(&https).is_ok(), "https is spoken");
    }

    #[test]
    fn an_unknown_payment_status_is_not_guessed() {
        let body = r#"{"id":"pi_1","amount":1,"currency":"usd","status":"weird"}"#;
        assert!(parse_payment(body.as_bytes()).is_err());
    }

    fn payments_page(items: &[&str], has_more: bool) -> String {
        format!(
            r#"{{"object":"list","has_more":{has_more},"data":[{}]}}"#,
            items.join(",")
        )
    }

    const OURS: &str = r#"{"id":"pi_ours","amount":500,"currency":"usd","status":"succeeded",
        "metadata":{"charge_id":"0190f8a0-0000-7000-8000-000000000001"}}"#;
    // Another system's payment on the same account, in a currency the service does not support.
    const FOREIGN_PESOS: &str =
        r#"{"id":"pi_pesos","amount":900,"currency":"mxn","status":"succeeded","metadata":{}}"#;
    // Another system's payment in a shape the service does not read (no amount at all).
    const FOREIGN_SHAPE: &str = r#"{"id":"pi_odd","status":"requires_capture"}"#;

    #[test]
    fn a_list_leaves_out_the_objects_other_systems_made_that_it_cannot_read_and_pages_past_them() {
        let body = payments_page(&[OURS, FOREIGN_PESOS, FOREIGN_SHAPE], true);

        let page = parse_payment_list(body.as_bytes()).expect("the page is read");

        let ids: Vec<&str> = page
            .items
            .iter()
            .map(|payment| payment.id.as_str())
            .collect();
        assert_eq!(ids, ["pi_ours"]);
        assert_eq!(
            page.items[0].charge_id.as_deref(),
            Some("0190f8a0-0000-7000-8000-000000000001")
        );
        // The next page starts after the last object listed, read or not.
        assert_eq!(page.next.as_deref(), Some("pi_odd"));
    }

    #[test]
    fn a_list_holding_an_object_the_service_made_and_cannot_read_is_refused_naming_it() {
        let ours_unreadable = r#"{"id":"pi_ours_odd","amount":500,"currency":"mxn",
            "status":"succeeded","metadata":{"charge_id":"0190f8a0-0000-7000-8000-000000000002"}}"#;
        let body = payments_page(&[OURS, ours_unreadable], false);

        let problem = parse_payment_list(body.as_bytes()).expect_err("refused");

        assert!(problem.contains("pi_ours_odd"), "{problem}");
    }

    #[test]
    fn a_refund_list_leaves_out_another_systems_refund_of_a_charge_without_a_payment_intent() {
        let ours = r#"{"id":"re_ours","amount":300,"currency":"usd","payment_intent":"pi_ours",
            "status":"succeeded","metadata":{"refund_id":"0190f8a0-0000-7000-8000-000000000003"}}"#;
        let legacy = r#"{"id":"re_legacy","amount":300,"currency":"usd","payment_intent":null,
            "status":"succeeded","metadata":{}}"#;
        let body = format!(r#"{{"has_more":false,"data":[{ours},{legacy}]}}"#);

        let page = parse_refund_list(body.as_bytes()).expect("the page is read");

        let ids: Vec<&str> = page.items.iter().map(|refund| refund.id.as_str()).collect();
        assert_eq!(ids, ["re_ours"]);
        assert_eq!(page.next, None);
    }
}
