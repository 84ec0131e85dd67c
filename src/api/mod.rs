//! The gRPC surface: one module per proto service, each converting wire messages to domain types
//! (naming every refused field), calling `service/`, and converting the result back. Nothing here
//! holds business rules.

pub mod accounts;
pub mod api_keys;
pub mod auth;
pub mod tickets;
pub mod users;

use std::time::Duration;

use tonic::Request;

use crate::auth::Caller;
use crate::domain::{InvalidValue, PageCursor, PageSize};
use crate::errors::{AppError, AppResult, FieldViolations};
use crate::middleware::RequestDeadline;

/// How long the work of a public RPC (no caller) may take.
pub(crate) fn request_budget<T>(request: &Request<T>) -> AppResult<Duration> {
    request
        .extensions()
        .get::<RequestDeadline>()
        .map(RequestDeadline::remaining)
        .ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "no RequestDeadline: is the deadline layer in the stack?"
            ))
        })
}

/// Who is calling and how long the work may take, as the middleware stack established them.
/// Their absence is a wiring bug, so it fails closed.
pub(crate) fn request_context<T>(request: &Request<T>) -> AppResult<(Caller, Duration)> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "no Caller: is the auth layer in the stack?"
            ))
        })?;
    Ok((caller, request_budget(request)?))
}

/// A chrono instant as a protobuf Timestamp.
pub(crate) fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // Always below 2e9: chrono keeps nanoseconds within the second.
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// An optional chrono instant as an optional protobuf Timestamp.
pub(crate) fn optional_timestamp(
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<prost_types::Timestamp> {
    at.map(timestamp)
}

/// `page_size` and `page_token` of a List request, both checked, for the list named `list`.
pub(crate) fn page_request(
    page_size: i32,
    page_token: &str,
    list: &str,
) -> AppResult<(PageSize, Option<PageCursor>)> {
    let mut violations = FieldViolations::new();
    let size = violations.check("page_size", PageSize::parse(page_size));
    let after = match page_token {
        "" => None,
        token => violations.check("page_token", PageCursor::parse(token, list)),
    };
    match size {
        Some(size) if violations.is_empty() => Ok((size, after)),
        _ => Err(AppError::InvalidArgument(violations)),
    }
}

/// The token of the page after `cursor`, or empty on the last page.
pub(crate) fn next_page_token(cursor: Option<PageCursor>, list: &str) -> String {
    cursor.map(|cursor| cursor.encode(list)).unwrap_or_default()
}

/// A required field that was left out.
pub(crate) fn required() -> InvalidValue {
    InvalidValue::new("is required")
}

/// The response metadata entry Envoy turns into the HTTP status (see deploy/envoy/envoy.yaml):
/// REST clients get 201 Created, 204 No Content where gRPC can only say OK.
const HTTP_STATUS: &str = "x-http-status";

/// Marks `response` as creating the resource at `location` (HTTP 201 + Location).
pub(crate) fn created<T>(mut response: tonic::Response<T>, location: &str) -> tonic::Response<T> {
    let metadata = response.metadata_mut();
    metadata.insert(
        HTTP_STATUS,
        tonic::metadata::MetadataValue::from_static("201"),
    );
    if let Ok(value) = location.parse() {
        metadata.insert("location", value);
    }
    response
}

/// Marks `response` as having no content (HTTP 204, empty body).
pub(crate) fn no_content<T>(mut response: tonic::Response<T>) -> tonic::Response<T> {
    response.metadata_mut().insert(
        HTTP_STATUS,
        tonic::metadata::MetadataValue::from_static("204"),
    );
    response
}
