//! The control API under `/_sim`: JSON endpoints for tests and scripts to read the ledger, script
//! faults, act "outside the service" (refunds from the dashboard, disputes from the bank) and
//! steer webhooks. It needs no API key: the simulator is a local test tool.
//!
//! Every operation is also a method of [`crate::SimulatorHandle`]; both call the `Shared` methods
//! below, so the two surfaces cannot drift apart.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ApiFailure;
use crate::faults::{ActiveFault, FaultRule, InvalidFault};
use crate::form::{FormParams, NewRefund, RefundTarget, check_refund_reason};
use crate::ledger::{LedgerSnapshot, Origin};
use crate::objects::{Dispute, Event, Refund};
use crate::state::Shared;
use crate::webhooks::{DeliveryAttempt, DeliveryFaultRule, WebhookEndpoint};

/// The body of `POST /_sim/payment_intents/{id}/refunds`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutsideRefund {
    /// The amount; the whole unrefunded rest when none.
    #[serde(default)]
    pub amount: Option<i64>,
    /// `duplicate`, `fraudulent` or `requested_by_customer`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The body of `POST /_sim/payment_intents/{id}/dispute`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DisputeRequest {
    /// Stripe's dispute reason; `fraudulent` when none.
    #[serde(default)]
    pub reason: Option<String>,
}

impl Shared {
    pub(crate) fn snapshot(&self, metadata_filter: Option<(&str, &str)>) -> LedgerSnapshot {
        self.book().ledger.snapshot(metadata_filter)
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.book().ledger.events()
    }

    pub(crate) fn add_fault(&self, rule: FaultRule) -> Result<ActiveFault, InvalidFault> {
        self.book().faults.add(rule)
    }

    pub(crate) fn faults(&self) -> Vec<ActiveFault> {
        self.book().faults.list()
    }

    pub(crate) fn remove_fault(&self, id: u64) -> bool {
        self.book().faults.remove(id)
    }

    pub(crate) fn clear_faults(&self) {
        self.book().faults.clear();
    }

    pub(crate) fn release_held_answer(&self) {
        self.answer_releases.add_permits(1);
    }

    /// A refund made outside the service (say, from the provider's dashboard).
    pub(crate) fn refund_outside(
        &self,
        payment_intent_id: &str,
        request: OutsideRefund,
    ) -> Result<Refund, ApiFailure> {
        if let Some(amount) = request.amount
            && amount < 1
        {
            return Err(ApiFailure::invalid_param(
                "amount",
                Some("parameter_invalid_integer"),
                "This value must be greater than or equal to 1.",
            ));
        }
        if let Some(reason) = &request.reason {
            check_refund_reason(reason)?;
        }
        let refund = NewRefund {
            target: RefundTarget::PaymentIntent(payment_intent_id.to_owned()),
            amount: request.amount,
            reason: request.reason,
            metadata: Default::default(),
        };
        self.book()
            .ledger
            .create_refund(refund, false, &Origin::default())
    }

    pub(crate) fn dispute(
        &self,
        payment_intent_id: &str,
        request: DisputeRequest,
    ) -> Result<Dispute, ApiFailure> {
        let reason = request.reason.unwrap_or_else(|| "fraudulent".to_owned());
        self.book().ledger.create_dispute(payment_intent_id, reason)
    }

    pub(crate) fn set_webhook_endpoint(&self, endpoint: Option<WebhookEndpoint>) {
        self.webhooks().endpoint = endpoint;
    }

    pub(crate) fn webhook_endpoint(&self) -> Option<WebhookEndpoint> {
        self.webhooks().endpoint.clone()
    }

    pub(crate) fn add_delivery_fault(&self, rule: DeliveryFaultRule) {
        self.webhooks().add_fault(rule);
    }

    pub(crate) fn delivery_faults(&self) -> Vec<DeliveryFaultRule> {
        self.webhooks().faults()
    }

    pub(crate) fn clear_delivery_faults(&self) {
        self.webhooks().clear_faults();
    }

    pub(crate) fn deliveries(&self) -> Vec<DeliveryAttempt> {
        self.webhooks().deliveries.clone()
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/health", routing::get(health))
        .route("/_sim/reset", routing::post(reset))
        .route("/_sim/ledger", routing::get(ledger))
        .route("/_sim/ledger/summary", routing::get(ledger_summary))
        .route("/_sim/events", routing::get(events))
        .route("/_sim/idempotency", routing::get(idempotency_stats))
        .route("/_sim/requests", routing::get(requests))
        .route(
            "/_sim/faults",
            routing::get(list_faults)
                .post(add_fault)
                .delete(clear_faults),
        )
        .route("/_sim/faults/{id}", routing::delete(remove_fault))
        .route("/_sim/answers/release", routing::post(release_held_answer))
        .route(
            "/_sim/payment_intents/{id}/refunds",
            routing::post(refund_outside),
        )
        .route("/_sim/payment_intents/{id}/dispute", routing::post(dispute))
        .route(
            "/_sim/webhooks/endpoint",
            routing::get(webhook_endpoint)
                .put(set_webhook_endpoint)
                .delete(remove_webhook_endpoint),
        )
        .route(
            "/_sim/webhooks/faults",
            routing::get(list_delivery_faults)
                .post(add_delivery_fault)
                .delete(clear_delivery_faults),
        )
        .route("/_sim/webhooks/deliveries", routing::get(deliveries))
}

fn control_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(json!({ "error": { "message": message.to_string() } })),
    )
        .into_response()
}

fn stripe_error(failure: &ApiFailure) -> Response {
    (failure.status, Json(failure.body())).into_response()
}

/// `metadata[key]=value` in the query string, if any.
fn metadata_filter(query: Option<&str>) -> Option<(String, String)> {
    FormParams::parse(query.unwrap_or_default().as_bytes())
        .metadata()
        .ok()?
        .into_iter()
        .next()
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset();
    StatusCode::NO_CONTENT
}

async fn ledger(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Json<LedgerSnapshot> {
    let filter = metadata_filter(query.as_deref());
    let filter = filter.as_ref().map(|(k, v)| (k.as_str(), v.as_str()));
    Json(shared.snapshot(filter))
}

async fn ledger_summary(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Json<crate::ledger::LedgerSummary> {
    let filter = metadata_filter(query.as_deref());
    let filter = filter.as_ref().map(|(k, v)| (k.as_str(), v.as_str()));
    Json(shared.snapshot(filter).summary())
}

async fn events(State(shared): State<Arc<Shared>>) -> Json<Vec<Event>> {
    Json(shared.events())
}

async fn idempotency_stats(
    State(shared): State<Arc<Shared>>,
) -> Json<crate::idempotency::IdempotencyStats> {
    Json(shared.book().idempotency.stats())
}

async fn requests(State(shared): State<Arc<Shared>>) -> Json<Vec<crate::ApiRequest>> {
    Json(shared.requests())
}

async fn list_faults(State(shared): State<Arc<Shared>>) -> Json<Vec<ActiveFault>> {
    Json(shared.faults())
}

async fn add_fault(State(shared): State<Arc<Shared>>, Json(rule): Json<FaultRule>) -> Response {
    match shared.add_fault(rule) {
        Ok(active) => (StatusCode::CREATED, Json(active)).into_response(),
        Err(invalid) => control_error(StatusCode::BAD_REQUEST, invalid),
    }
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_faults();
    StatusCode::NO_CONTENT
}

async fn release_held_answer(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.release_held_answer();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(shared): State<Arc<Shared>>, Path(id): Path<u64>) -> Response {
    if shared.remove_fault(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        control_error(StatusCode::NOT_FOUND, format!("no fault {id}"))
    }
}

async fn refund_outside(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Option<Json<OutsideRefund>>,
) -> Response {
    let request = body.map(|Json(request)| request).unwrap_or_default();
    match shared.refund_outside(&id, request) {
        Ok(refund) => Json(refund).into_response(),
        Err(failure) => stripe_error(&failure),
    }
}

async fn dispute(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Option<Json<DisputeRequest>>,
) -> Response {
    let request = body.map(|Json(request)| request).unwrap_or_default();
    match shared.dispute(&id, request) {
        Ok(dispute) => Json(dispute).into_response(),
        Err(failure) => stripe_error(&failure),
    }
}

async fn webhook_endpoint(State(shared): State<Arc<Shared>>) -> Json<Option<WebhookEndpoint>> {
    Json(shared.webhook_endpoint())
}

async fn set_webhook_endpoint(
    State(shared): State<Arc<Shared>>,
    Json(endpoint): Json<WebhookEndpoint>,
) -> Response {
    if !endpoint.url.starts_with("http://") {
        return control_error(
            StatusCode::BAD_REQUEST,
            "the webhook url must start with http:// (the simulator speaks no TLS)",
        );
    }
    if endpoint.secrets.is_empty() {
        return control_error(
            StatusCode::BAD_REQUEST,
            "at least one signing secret (whsec_...) is needed",
        );
    }
    shared.set_webhook_endpoint(Some(endpoint));
    StatusCode::NO_CONTENT.into_response()
}

async fn remove_webhook_endpoint(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.set_webhook_endpoint(None);
    StatusCode::NO_CONTENT
}

async fn list_delivery_faults(State(shared): State<Arc<Shared>>) -> Json<Vec<DeliveryFaultRule>> {
    Json(shared.delivery_faults())
}

async fn add_delivery_fault(
    State(shared): State<Arc<Shared>>,
    Json(rule): Json<DeliveryFaultRule>,
) -> Response {
    if rule.times == Some(0) {
        return control_error(StatusCode::BAD_REQUEST, InvalidFault::ZeroTimes);
    }
    shared.add_delivery_fault(rule);
    StatusCode::CREATED.into_response()
}

async fn clear_delivery_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_delivery_faults();
    StatusCode::NO_CONTENT
}

async fn deliveries(State(shared): State<Arc<Shared>>) -> Json<Vec<DeliveryAttempt>> {
    Json(shared.deliveries())
}
