//! The `/v1` API: authentication, faults, idempotency and the ledger, in that order.
//!
//! A POST goes: authenticate → take a fault (a front-door fault answers here, saving nothing) →
//! parse and validate the form (a refusal saves nothing) → claim the idempotency key (replay,
//! 409 or `idempotency_error` end here) → added latency → execute against the ledger → save the
//! status and body under the key → answer (or, for `execute_then_timeout`, hang and close).
//! The claim-to-save part, with scheduling a `settle_later` outcome, runs in its own task, so a
//! client that disconnects mid-request leaves neither its key claimed forever nor a payment
//! `processing` forever: like Stripe, the simulator finishes what it started.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::{Extension, Router, routing};
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiFailure;
use crate::faults::{Endpoint, FaultAction, SettleOutcome};
use crate::form::{FormParams, NewPaymentIntent, NewRefund};
use crate::idempotency::{Claim, MAX_KEY_LENGTH, RequestFingerprint, SavedResponse};
use crate::ids::new_id;
use crate::ledger::{Ledger, Origin};
use crate::list::ListQuery;
use crate::search::SearchQuery;
use crate::server::{Abort, ConnectionControl};
use crate::state::{Settlement, Shared};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/v1/payment_intents",
            routing::post(create_payment_intent).get(list_payment_intents),
        )
        .route(
            "/v1/payment_intents/search",
            routing::get(search_payment_intents),
        )
        .route(
            "/v1/payment_intents/{id}",
            routing::get(retrieve_payment_intent),
        )
        .route(
            "/v1/refunds",
            routing::post(create_refund).get(list_refunds),
        )
        .route("/v1/refunds/{id}", routing::get(retrieve_refund))
        .route("/v1/charges/{id}", routing::get(retrieve_charge))
}

/// Stripe's answer to an unknown URL.
pub(crate) async fn unrecognized_url(method: Method, uri: Uri) -> Response {
    let failure = ApiFailure::invalid_request(
        StatusCode::NOT_FOUND,
        None,
        format!("Unrecognized request URL ({method}: {}).", uri.path()),
    );
    json_response(failure.status, &failure.body(), &ResponseHeaders::default())
}

/// Headers that vary per answer.
#[derive(Debug, Default)]
struct ResponseHeaders {
    request_id: Option<String>,
    idempotency_key: Option<String>,
    replayed: bool,
    retry_after_secs: Option<u64>,
}

fn json_response<T: Serialize>(
    status: StatusCode,
    body: &T,
    headers: &ResponseHeaders,
) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes_response(status, Bytes::from(bytes), headers)
}

/// What a proxy in front of the provider answers: its own HTML page, none of Stripe's headers.
fn proxy_page(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let page = format!(
        "<html><head><title>{code} {reason}</title></head>\
         <body><h1>{code} {reason}</h1><hr><p>proxy</p></body></html>\n",
        code = status.as_u16()
    );
    let mut response = Response::new(Body::from(page));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

fn bytes_response(status: StatusCode, body: Bytes, headers: &ResponseHeaders) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let map = response.headers_mut();
    map.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(value) = headers
        .request_id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        map.insert("request-id", value);
    }
    if let Some(value) = headers
        .idempotency_key
        .as_deref()
        .and_then(|key| HeaderValue::from_str(key).ok())
    {
        map.insert("idempotency-key", value);
    }
    if headers.replayed {
        map.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(seconds) = headers.retry_after_secs {
        map.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    // Stripe's own opinion on retrying: conflicts, rate limits and its own errors are worth a
    // retry with the same key; the caller's errors and declines are not.
    if !status.is_success() {
        let retry = status == StatusCode::CONFLICT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error();
        map.insert(
            "stripe-should-retry",
            HeaderValue::from_static(if retry { "true" } else { "false" }),
        );
    }
    response
}

/// The secret key in `Authorization`: `Bearer <key>`, or Basic with the key as user name (what
/// `curl -u sk_test_...:` sends, as in Stripe's documentation).
fn presented_key(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(key) = value.strip_prefix("Bearer ") {
        return Some(key.trim().to_owned());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let credentials = String::from_utf8(decoded).ok()?;
    let (user, _password) = credentials.split_once(':').unwrap_or((&credentials, ""));
    Some(user.to_owned())
}

/// Finds the caller's secret key, or the 401 to answer.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<String, ApiFailure> {
    let presented = presented_key(headers);
    let Some(key) = presented.as_deref().filter(|key| !key.is_empty()) else {
        return Err(ApiFailure::invalid_request(
            StatusCode::UNAUTHORIZED,
            None,
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
             YOUR_SECRET_KEY') or Basic auth with the key as user name.",
        ));
    };
    if shared.config.api_keys.iter().any(|known| known == key) {
        return Ok(key.to_owned());
    }
    // Stripe shows only the key's last four characters.
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(ApiFailure::invalid_request(
        StatusCode::UNAUTHORIZED,
        Some("api_key_invalid"),
        format!("Invalid API Key provided: sk_****{tail}"),
    ))
}

/// What a request meets before execution.
enum Admission {
    /// Answer this now (a fault answered, or the caller is not authenticated).
    Answer(Response),
    /// Drop the connection now.
    Abort(Abort),
    /// Go ahead, maybe with a fault that acts during or after execution.
    Proceed {
        api_key: String,
        fault: Option<FaultAction>,
    },
}

fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    endpoint: Endpoint,
    response: &ResponseHeaders,
) -> Admission {
    let api_key = match authenticate(shared, headers) {
        Ok(api_key) => api_key,
        Err(failure) => {
            let mut answer = json_response(failure.status, &failure.body(), response);
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"Stripe\""),
            );
            return Admission::Answer(answer);
        }
    };
    let fault = shared.book().faults.take(endpoint);
    if let Some(fault) = &fault {
        tracing::info!(?endpoint, ?fault, "applying fault");
    }
    match fault {
        Some(FaultAction::ServerError { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let failure = ApiFailure::api_error(status);
            Admission::Answer(json_response(failure.status, &failure.body(), response))
        }
        Some(FaultAction::RateLimit { retry_after_secs }) => {
            let failure = ApiFailure::rate_limited();
            let headers = ResponseHeaders {
                retry_after_secs: Some(retry_after_secs),
                request_id: response.request_id.clone(),
                idempotency_key: response.idempotency_key.clone(),
                replayed: false,
            };
            Admission::Answer(json_response(failure.status, &failure.body(), &headers))
        }
        Some(FaultAction::ResetConnection) => Admission::Abort(Abort::Reset),
        Some(FaultAction::ProxyPage { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            Admission::Answer(proxy_page(status))
        }
        Some(FaultAction::Refuse {
            status,
            error_type,
            code,
            decline_code,
            param,
        }) => {
            let failure = ApiFailure::refusal(status, &error_type, code, decline_code, param);
            Admission::Answer(json_response(failure.status, &failure.body(), response))
        }
        other => Admission::Proceed {
            api_key,
            fault: other,
        },
    }
}

fn latency_of(fault: Option<&FaultAction>) -> Duration {
    match fault {
        Some(FaultAction::Latency { millis }) => Duration::from_millis(*millis),
        Some(_) | None => Duration::ZERO,
    }
}

fn settle_later_of(fault: Option<&FaultAction>) -> Option<(Duration, SettleOutcome)> {
    match fault {
        Some(FaultAction::SettleLater {
            after_millis,
            outcome,
        }) => Some((Duration::from_millis(*after_millis), *outcome)),
        Some(_) | None => None,
    }
}

/// Answers normally, for `execute_then_timeout` hangs and closes the connection instead, and for
/// `execute_then_hold_answer` answers once released (or its time is up).
async fn deliver_or_hang(
    shared: &Shared,
    connection: &ConnectionControl,
    fault: Option<&FaultAction>,
    response: Response,
) -> Response {
    match fault {
        Some(FaultAction::ExecuteThenTimeout { hang_millis }) => {
            tokio::time::sleep(Duration::from_millis(*hang_millis)).await;
            connection.abort(Abort::Close).await
        }
        Some(FaultAction::ExecuteThenHoldAnswer { max_millis }) => {
            let released = tokio::time::timeout(
                Duration::from_millis(*max_millis),
                shared.answer_releases.acquire(),
            )
            .await;
            // A permit stands for one release: it is used up, not given back.
            if let Ok(Ok(permit)) = released {
                permit.forget();
            }
            response
        }
        Some(_) | None => response,
    }
}

/// A validated POST, ready to execute.
enum Write {
    PaymentIntent(NewPaymentIntent),
    Refund(NewRefund),
}

impl Write {
    /// Executes against the ledger; returns the status, the body and a settlement to schedule.
    fn execute(
        self,
        ledger: &mut Ledger,
        settle_later: bool,
        origin: &Origin,
    ) -> (StatusCode, Value, Option<Settlement>) {
        let outcome = match self {
            Write::PaymentIntent(request) => ledger
                .create_payment_intent(request, settle_later, origin)
                .map(|intent| {
                    let value = serde_json::to_value(&intent).unwrap_or_default();
                    (value, Settlement::PaymentIntent { id: intent.id })
                }),
            Write::Refund(request) => {
                ledger
                    .create_refund(request, settle_later, origin)
                    .map(|refund| {
                        let value = serde_json::to_value(&refund).unwrap_or_default();
                        (value, Settlement::Refund { id: refund.id })
                    })
            }
        };
        match outcome {
            Ok((body, settlement)) => (StatusCode::OK, body, Some(settlement)),
            Err(failure) => (failure.status, failure.body(), None),
        }
    }
}

fn idempotency_key_of(shared: &Shared, headers: &HeaderMap) -> Result<Option<String>, ApiFailure> {
    let Some(value) = headers.get("idempotency-key") else {
        if shared.config.require_idempotency_key {
            return Err(ApiFailure::invalid_request(
                StatusCode::BAD_REQUEST,
                Some("idempotency_key_missing"),
                "This simulator is configured to require an Idempotency-Key header on every POST.",
            ));
        }
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > MAX_KEY_LENGTH {
        return Err(ApiFailure::invalid_request(
            StatusCode::BAD_REQUEST,
            None,
            format!(
                "Invalid Idempotency-Key: it must be 1 to {MAX_KEY_LENGTH} visible ASCII \
                 characters."
            ),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// What the execution task of a POST answers.
struct Answer {
    status: StatusCode,
    body: Bytes,
    replayed: bool,
}

impl Answer {
    fn replayed(saved: SavedResponse) -> Self {
        Self {
            status: saved.status,
            body: saved.body,
            replayed: true,
        }
    }

    fn refused(failure: &ApiFailure) -> Self {
        Self {
            status: failure.status,
            body: Bytes::from(serde_json::to_vec(&failure.body()).unwrap_or_default()),
            replayed: false,
        }
    }
}

/// Everything a POST's execution needs once it was admitted and validated.
struct Execution {
    api_key: String,
    key: Option<String>,
    fingerprint: RequestFingerprint,
    path: &'static str,
    write: Write,
    latency: Duration,
    settle_later: Option<(Duration, SettleOutcome)>,
    failed_after_execution: Option<StatusCode>,
    origin: Origin,
}

/// Claims the key, executes once and saves the answer. Runs as its own task so that it completes
/// even when the client goes away.
async fn execute_once(shared: Arc<Shared>, execution: Execution) -> Answer {
    let Execution {
        api_key,
        key,
        fingerprint,
        path,
        write,
        latency,
        settle_later,
        failed_after_execution,
        origin,
    } = execution;
    if let Some(key) = &key {
        let claim = shared
            .book()
            .idempotency
            .claim(&api_key, key, fingerprint, Instant::now());
        match claim {
            Claim::Execute => {}
            Claim::Replay(saved) => return Answer::replayed(saved),
            Claim::StillRunning => {
                return Answer::refused(&ApiFailure::idempotency(
                    StatusCode::CONFLICT,
                    format!(
                        "There is currently another in-progress request using this \
                         Idempotent Key (that probably means you submitted twice, and the \
                         other request is still going through): {key}. Please try again \
                         later."
                    ),
                ));
            }
            Claim::Mismatch { first_path } => {
                let message = if first_path == path {
                    format!(
                        "Keys for idempotent requests can only be used with the same \
                         parameters they were first used with. Try using a key other than \
                         '{key}' if you meant to execute a different request."
                    )
                } else {
                    format!(
                        "Keys for idempotent requests can only be used for the same endpoint \
                         they were first used for ('{first_path}' vs '{path}'). Try using a \
                         key other than '{key}' if you meant to execute a different request."
                    )
                };
                return Answer::refused(&ApiFailure::idempotency(StatusCode::BAD_REQUEST, message));
            }
        }
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut book = shared.book();
    let (mut status, mut body, settlement) =
        write.execute(&mut book.ledger, settle_later.is_some(), &origin);
    if let Some(error_status) = failed_after_execution {
        // The work is done and stays done; only the answer (and so the replay) is an error.
        let failure = ApiFailure::api_error(error_status);
        (status, body) = (failure.status, failure.body());
    }
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    if let Some(key) = &key {
        let saved = SavedResponse {
            status,
            body: body.clone(),
        };
        book.idempotency.save(&api_key, key, saved);
    }
    drop(book);
    if let (Some(settlement), Some((after, outcome))) = (settlement, settle_later) {
        shared.settle_later(settlement, after, outcome);
    }
    Answer {
        status,
        body,
        replayed: false,
    }
}

async fn run_post(
    shared: Arc<Shared>,
    connection: ConnectionControl,
    headers: HeaderMap,
    body: Bytes,
    endpoint: Endpoint,
    path: &'static str,
    parse: fn(&FormParams) -> Result<Write, ApiFailure>,
) -> Response {
    let mut response_headers = ResponseHeaders {
        request_id: Some(new_id("req")),
        ..ResponseHeaders::default()
    };
    let (api_key, fault) = match admit(&shared, &headers, endpoint, &response_headers) {
        Admission::Answer(response) => return response,
        Admission::Abort(how) => return connection.abort(how).await,
        Admission::Proceed { api_key, fault } => (api_key, fault),
    };
    let key = match idempotency_key_of(&shared, &headers) {
        Ok(key) => key,
        Err(failure) => return json_response(failure.status, &failure.body(), &response_headers),
    };
    response_headers.idempotency_key = key.clone();
    let params = FormParams::parse(&body);
    let write = match parse(&params) {
        Ok(write) => write,
        Err(failure) => return json_response(failure.status, &failure.body(), &response_headers),
    };

    let origin = Origin {
        request_id: response_headers.request_id.clone(),
        idempotency_key: key.clone(),
    };
    let latency = latency_of(fault.as_ref());
    let failed_after_execution = match &fault {
        Some(FaultAction::ExecuteThenServerError { status }) => {
            Some(StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        }
        Some(_) | None => None,
    };
    let execution = tokio::spawn(execute_once(
        Arc::clone(&shared),
        Execution {
            api_key,
            key,
            fingerprint: params.fingerprint(path),
            path,
            write,
            latency,
            settle_later: settle_later_of(fault.as_ref()),
            failed_after_execution,
            origin,
        },
    ));
    let Ok(answer) = execution.await else {
        let failure = ApiFailure::api_error(StatusCode::INTERNAL_SERVER_ERROR);
        return json_response(failure.status, &failure.body(), &response_headers);
    };
    response_headers.replayed = answer.replayed;
    tracing::info!(
        ?endpoint,
        status = answer.status.as_u16(),
        replayed = answer.replayed,
        idempotency_key = response_headers.idempotency_key.as_deref(),
        "answered"
    );
    let response = bytes_response(answer.status, answer.body, &response_headers);
    deliver_or_hang(&shared, &connection, fault.as_ref(), response).await
}

async fn create_payment_intent(
    State(shared): State<Arc<Shared>>,
    Extension(connection): Extension<ConnectionControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run_post(
        shared,
        connection,
        headers,
        body,
        Endpoint::CreatePaymentIntent,
        "/v1/payment_intents",
        |params| NewPaymentIntent::parse(params).map(Write::PaymentIntent),
    )
    .await
}

async fn create_refund(
    State(shared): State<Arc<Shared>>,
    Extension(connection): Extension<ConnectionControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run_post(
        shared,
        connection,
        headers,
        body,
        Endpoint::CreateRefund,
        "/v1/refunds",
        |params| NewRefund::parse(params).map(Write::Refund),
    )
    .await
}

/// The shared path of the GET endpoints: authenticate, take a fault, read.
async fn run_get(
    shared: Arc<Shared>,
    connection: ConnectionControl,
    headers: HeaderMap,
    endpoint: Endpoint,
    read: impl FnOnce(&Ledger) -> Result<Value, ApiFailure>,
) -> Response {
    let response_headers = ResponseHeaders {
        request_id: Some(new_id("req")),
        ..ResponseHeaders::default()
    };
    let fault = match admit(&shared, &headers, endpoint, &response_headers) {
        Admission::Answer(response) => return response,
        Admission::Abort(how) => return connection.abort(how).await,
        Admission::Proceed { fault, .. } => fault,
    };
    let latency = latency_of(fault.as_ref());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut outcome = read(&shared.book().ledger);
    if let Some(FaultAction::ExecuteThenServerError { status }) = &fault {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        outcome = Err(ApiFailure::api_error(status));
    }
    let response = match outcome {
        Ok(body) => json_response(StatusCode::OK, &body, &response_headers),
        Err(failure) => json_response(failure.status, &failure.body(), &response_headers),
    };
    deliver_or_hang(&shared, &connection, fault.as_ref(), response).await
}

async fn retrieve_payment_intent(
    State(shared): State<Arc<Shared>>,
    Extension(connection): Extension<ConnectionControl>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let expand = FormParams::parse(query.unwrap_or_default().as_bytes()).expand();
    run_get(
        shared,
        connection,
        headers,
        Endpoint::RetrievePaymentIntent,
        move |ledger| {
            let intent = ledger
                .payment_intent(&id)
                .ok_or_else(|| ApiFailure::no_such_object("payment_intent", &id, "intent"))?;
            let mut value = serde_json::to_value(intent).unwrap_or_default();
            // `expand[]=latest_charge` replaces the id by the object, as on Stripe.
            if expand.iter().any(|field| field == "latest_charge")
                && let Some(charge) = intent
                    .latest_charge
                    .as_deref()
                    .and_then(|charge_id| ledger.charge(charge_id))
            {
                value["latest_charge"] = serde_json::to_value(charge).unwrap_or_default();
            }
            Ok(value)
        },
    )
    .await
}

async fn search_payment_intents(
    State(shared): State<Arc<Shared>>,
    Extension(connection): Extension<ConnectionControl>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    let raw_query = raw_query.unwrap_or_default();
    let params = FormParams::parse(raw_query.as_bytes());
    run_get(
        shared,
        connection,
        headers,
        Endpoint::SearchPaymentIntents,
        move |ledger| {
            let query = params
                .get("query")
                .ok_or_else(|| ApiFailure::missing_param("query"))?;
            let parsed = SearchQuery::parse(query)?;
            let limit = match params.get("limit") {
                None => 10,
                Some(raw) => raw
                    .parse::<usize>()
                    .ok()
                    .filter(|limit| (1..=100).contains(limit))
                    .ok_or_else(|| {
                        ApiFailure::invalid_param(
                            "limit",
                            Some("parameter_invalid_integer"),
                            "limit must be an integer between 1 and 100.",
                        )
                    })?,
            };
            let found = ledger.search_payment_intents(&parsed);
            Ok(serde_json::json!({
                "object": "search_result",
                "url": "/v1/payment_intents/search",
                "has_more": found.len() > limit,
                "next_page": null,
                "data": found.into_iter().take(limit).collect::<Vec<_>>(),
            }))
        },
    )
    .await
}

async fn list_payment_intents(
    State(shared): State<Arc<Shared>>,
    Extension(connection): Extension<ConnectionControl>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    let params = FormParams::parse(raw_query.unwrap_or_default().as_bytes());
    run_get(
        shared,
        connection,
        headers,
        Endpoint::ListPaymentIntents,
        move |ledger| ledger.list_payment_intents(&ListQuery::parse(&params)?),
    )
    .await
}

async fn list_refunds(
    State(shared): State<Arc<Shared>>,
    Extension(connection): Extension<ConnectionControl>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    let params = FormParams::parse(raw_query.unwrap_or_default().as_bytes());
    run_get(
        shared,
        connection,
        headers,
        Endpoint::ListRefunds,
        move |ledger| ledger.list_refunds(&ListQuery::parse(&params)?),
    )
    .await
}

async fn retrieve_refund(
    State(shared): State<Arc<Shared>>,
    Extension(connection): Extension<ConnectionControl>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    run_get(
        shared,
        connection,
        headers,
        Endpoint::RetrieveRefund,
        move |ledger| {
            let refund = ledger
                .refund(&id)
                .ok_or_else(|| ApiFailure::no_such_object("refund", &id, "refund"))?;
            Ok(serde_json::to_value(refund).unwrap_or_default())
        },
    )
    .await
}

async fn retrieve_charge(
    State(shared): State<Arc<Shared>>,
    Extension(connection): Extension<ConnectionControl>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    run_get(
        shared,
        connection,
        headers,
        Endpoint::RetrieveCharge,
        move |ledger| {
            let charge = ledger
                .charge(&id)
                .ok_or_else(|| ApiFailure::no_such_object("charge", &id, "charge"))?;
            Ok(serde_json::to_value(charge).unwrap_or_default())
        },
    )
    .await
}
