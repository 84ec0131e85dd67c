//! The request log: every `/v1` request the simulator received and what became of it.
//!
//! Billing's tests assert on more than the ledger: that every attempt for one charge carried the
//! same idempotency key, how many retries a fault caused. The log is written by a middleware
//! around the `/v1` routes; a request whose connection was dropped on purpose (a reset or
//! timeout fault) never produces a response, so the entry is written when its future is dropped,
//! with no status.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::form::FormParams;
use crate::ids::unix_now_millis;
use crate::state::Shared;

/// Bodies larger than this are not Stripe requests; the simulator refuses to buffer them.
const MAX_BODY_BYTES: usize = 1 << 20;

/// One `/v1` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRequest {
    /// When it arrived, in Unix milliseconds.
    pub received_at_unix_ms: u64,
    /// `GET` or `POST`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The `Idempotency-Key` header, if any.
    pub idempotency_key: Option<String>,
    /// The W3C `traceparent` header, if any: the caller's trace (the service's traces tests).
    #[serde(default)]
    pub traceparent: Option<String>,
    /// The decoded form (POST) or query (GET) parameters, in wire order.
    pub params: Vec<(String, String)>,
    /// The status answered; none when the connection was dropped without an answer.
    pub status: Option<u16>,
    /// Whether the answer was an idempotent replay.
    pub replayed: bool,
}

impl ApiRequest {
    /// The value of one parameter (`metadata[charge_id]`, `amount`, ...).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Writes the entry when dropped, so requests that never get an answer are logged too.
struct PendingEntry {
    shared: Arc<Shared>,
    entry: Option<ApiRequest>,
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.shared.log_request(entry);
        }
    }
}

pub(crate) async fn record(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        let mut response = Response::new(Body::from("request body too large"));
        *response.status_mut() = axum::http::StatusCode::PAYLOAD_TOO_LARGE;
        return response;
    };
    let raw_params: &[u8] = if parts.method == axum::http::Method::GET {
        parts.uri.query().unwrap_or_default().as_bytes()
    } else {
        &bytes
    };
    let mut pending = PendingEntry {
        shared,
        entry: Some(ApiRequest {
            received_at_unix_ms: u64::try_from(unix_now_millis()).unwrap_or(u64::MAX),
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            idempotency_key: parts
                .headers
                .get("idempotency-key")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
            traceparent: parts
                .headers
                .get("traceparent")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
            params: FormParams::parse(raw_params).pairs().to_vec(),
            status: None,
            replayed: false,
        }),
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if let Some(entry) = pending.entry.as_mut() {
        entry.status = Some(response.status().as_u16());
        entry.replayed = response.headers().contains_key("idempotent-replayed");
    }
    drop(pending);
    response
}
