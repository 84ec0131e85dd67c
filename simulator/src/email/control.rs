//! The email simulator's control API under `/_sim` (JSON, no API key: a local test tool). Every
//! operation is also a method of [`super::EmailSimulatorHandle`]; both go through `Shared`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing};
use serde_json::json;

use super::{AcceptedEmail, ActiveEmailFault, EmailFaultRule, EmailRequest, Shared};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/health", routing::get(health))
        .route("/_sim/emails", routing::get(emails))
        .route("/_sim/requests", routing::get(requests))
        .route(
            "/_sim/faults",
            routing::post(add_fault).get(faults).delete(clear_faults),
        )
        .route("/_sim/reset", routing::post(reset))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn emails(State(shared): State<Arc<Shared>>) -> Json<Vec<AcceptedEmail>> {
    Json(shared.book().emails.clone())
}

async fn requests(State(shared): State<Arc<Shared>>) -> Json<Vec<EmailRequest>> {
    Json(shared.book().requests.clone())
}

async fn add_fault(
    State(shared): State<Arc<Shared>>,
    Json(rule): Json<EmailFaultRule>,
) -> Response {
    match shared.add_fault(rule) {
        Ok(fault) => (StatusCode::CREATED, Json(fault)).into_response(),
        Err(invalid) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": invalid.to_string()})),
        )
            .into_response(),
    }
}

async fn faults(State(shared): State<Arc<Shared>>) -> Json<Vec<ActiveEmailFault>> {
    Json(shared.book().faults.iter().cloned().collect())
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.book().faults.clear();
    StatusCode::NO_CONTENT
}

async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset();
    StatusCode::NO_CONTENT
}
