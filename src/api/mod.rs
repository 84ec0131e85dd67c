//! The gRPC surface: one module per proto service, each converting wire messages to domain types
//! (naming every refused field), calling `service/`, and converting the result back. Nothing here
//! holds business rules.

pub mod tickets;

use std::time::Duration;

use tonic::Request;

use crate::errors::{AppError, AppResult};
use crate::middleware::{Caller, RequestDeadline};

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
    let budget = request
        .extensions()
        .get::<RequestDeadline>()
        .map(RequestDeadline::remaining)
        .ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "no RequestDeadline: is the deadline layer in the stack?"
            ))
        })?;
    Ok((caller, budget))
}

/// A chrono instant as a protobuf Timestamp.
pub(crate) fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // Always below 2e9: chrono keeps nanoseconds within the second.
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}
