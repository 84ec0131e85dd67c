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
use crate::domain::IdempotencyKey;
use crate::domain::{InvalidValue, PageCursor, PageSize};
use crate::errors::{AppError, AppResult, FieldViolations};
use crate::middleware::RequestDeadline;
use crate::service::idempotency::{
    IdempotencyPolicy, Idempotent, Outcome, StoredSuccess, caller_scope, fingerprint,
};

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

/// The idempotency of one request: the key the middleware found (if any), the caller's scope,
/// and the request's fingerprint.
pub(crate) struct IdempotencyRequest {
    key: Option<IdempotencyKey>,
    caller: String,
    hash: Vec<u8>,
    policy: IdempotencyPolicy,
}

impl IdempotencyRequest {
    /// Reads the key from `request` (put there by the middleware) and fingerprints the message.
    pub(crate) fn of<T: prost::Message>(
        request: &Request<T>,
        caller: Option<&Caller>,
        policy: IdempotencyPolicy,
    ) -> Self {
        Self {
            key: request.extensions().get::<IdempotencyKey>().cloned(),
            caller: caller_scope(caller),
            hash: fingerprint(&request.get_ref().encode_to_vec()),
            policy,
        }
    }

    /// Fails with INVALID_ARGUMENT when the RPC requires a key and none was sent.
    pub(crate) fn require(&self) -> AppResult<()> {
        if self.key.is_none() {
            return Err(AppError::invalid_field(
                "idempotency-key",
                &InvalidValue::new(
                    "this RPC requires an Idempotency-Key (1 to 255 printable ASCII characters)",
                ),
            ));
        }
        Ok(())
    }

    /// The service's view, with `encode` turning a success into the stored response.
    pub(crate) fn for_rpc<'a, D>(
        &self,
        rpc: &'static str,
        encode: &'a (dyn Fn(&D) -> StoredSuccess + Send + Sync),
    ) -> Option<Idempotent<'a, D>> {
        self.key.clone().map(|key| Idempotent {
            caller: self.caller.clone(),
            rpc,
            key,
            request_hash: self.hash.clone(),
            policy: self.policy,
            encode,
        })
    }
}

/// A success to store: the response message and the metadata it is answered with.
pub(crate) fn stored<R: prost::Message>(
    response: &R,
    metadata: &[(&str, String)],
) -> StoredSuccess {
    StoredSuccess {
        body: response.encode_to_vec(),
        metadata: metadata
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect(),
    }
}

/// The response for `outcome`: `fresh` builds it from a new success; a failure is its status; a
/// replay is the stored outcome, marked `idempotent-replayed: true`.
pub(crate) fn respond<D, R: prost::Message + Default>(
    outcome: Outcome<D>,
    fresh: impl FnOnce(D) -> tonic::Response<R>,
) -> Result<tonic::Response<R>, tonic::Status> {
    let replayed = tonic::metadata::MetadataValue::from_static("true");
    match outcome {
        Outcome::Done(value) => Ok(fresh(value)),
        Outcome::Failed(error) => Err(error.into()),
        Outcome::Replay(row) if row.status_code == 0 => {
            let body =
                R::decode(row.response_body.unwrap_or_default().as_slice()).map_err(|error| {
                    AppError::internal(anyhow::anyhow!("a stored response: {error}"))
                })?;
            let mut response = tonic::Response::new(body);
            if let serde_json::Value::Object(entries) = row.response_metadata {
                for (name, value) in entries {
                    if let (Ok(name), Some(Ok(value))) = (
                        tonic::metadata::MetadataKey::from_bytes(name.as_bytes()),
                        value.as_str().map(str::parse),
                    ) {
                        response.metadata_mut().insert(name, value);
                    }
                }
            }
            response
                .metadata_mut()
                .insert(IDEMPOTENT_REPLAYED, replayed);
            Ok(response)
        }
        Outcome::Replay(row) => {
            let row = *row;
            let mut status = tonic::Status::with_details(
                tonic::Code::from(row.status_code),
                row.status_message,
                row.status_details.unwrap_or_default().into(),
            );
            status.metadata_mut().insert(IDEMPOTENT_REPLAYED, replayed);
            Err(status)
        }
    }
}

/// The response metadata entry that marks a replayed outcome.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The metadata of a stored create: 201 and where the new resource is.
pub(crate) fn created_metadata(location: String) -> [(&'static str, String); 2] {
    [("x-http-status", "201".to_owned()), ("location", location)]
}
