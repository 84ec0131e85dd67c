//! The one ordered tower stack every RPC passes through. The first layer listed sees the request
//! first:
//!
//! 1. request id: `x-request-id` taken from the caller when it is short and plain, else
//!    generated ([`request_id`], tower-http);
//! 2. trace: a span per RPC carrying the method, the request id and (once admission knows it)
//!    the caller, so every log line of the request has them; caller text is recorded as string
//!    values, which both log formats quote and escape, so it cannot forge a field; with traces
//!    on, the span is OpenTelemetry's server span, child of the caller's well-formed
//!    `traceparent` if any (`telemetry::traces`);
//! 3. request id propagation: the id is returned in the response metadata;
//! 4. header limit: a header list over `MAX_REQUEST_HEADER_BYTES` is refused as
//!    `HEADERS_TOO_LARGE` ([`header_limit`]);
//! 5. RPC metrics: every answer counted by method and gRPC code, and timed ([`rpc_metrics`]);
//! 6. method: the RPC's declaration from the method table, for every layer below and the
//!    handler; on the way back, the declared REST success status, and `REQUEST_TOO_LARGE` for
//!    tonic's bare refusal of an oversized message ([`method`]);
//! 7. REST field paths: over REST, an error's `BadRequest` names fields as the JSON body has
//!    them (`requesterEmail`), not as the request message does ([`rest_fields`]);
//! 8. deadline: the caller's `grpc-timeout` capped by the server's maximum ([`deadline`]);
//! 9. admission: who is calling (failing closed), with the declared role, within the declared
//!    quota of the caller (or client IP), in one Redis round trip ([`admission`],
//!    [`rate_limit`]); it builds the request's scope ([`crate::scope::RequestScope`]: the
//!    caller, the deadline, the method, the client, what it prefetched), the one extension
//!    handlers read;
//! 10. path binding: a REST request whose body or query names another resource than its path
//!     is refused as `PATH_BODY_MISMATCH` ([`path_binding`]);
//! 11. idempotency key: read, checked, and required where declared, and added to the scope; the
//!     handler decides what it means.

mod admission;
mod deadline;
mod header_limit;
mod idempotency_key;
mod method;
mod path_binding;
mod rate_limit;
mod request_id;
mod rest_fields;
mod rpc_metrics;
mod unary_body;

pub use admission::{AdmissionLayer, Admit};
pub use deadline::{Deadline, DeadlineLayer};
pub use header_limit::{HeaderLimitLayer, LimitHeaders, header_list_size};
pub use idempotency_key::{IdempotencyKeyLayer, ReadIdempotencyKey};
pub use method::{MethodLayer, ResolveMethod, declared_method};
pub use path_binding::{CheckPathBinding, PathBindingLayer};
pub use rate_limit::client_ip;
pub use request_id::{
    MAX_REQUEST_ID_LEN, NewRequestId, PlainRequestId, PlainRequestIdLayer, is_plain_request_id,
};
pub use rest_fields::{RestFields, RestFieldsLayer};
pub use rpc_metrics::{CountRpcs, RpcMetricsLayer};

use std::time::Duration;

use http::Request;
use tower::{Layer, ServiceBuilder};
use tower_http::classify::{GrpcCode, GrpcErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{
    PropagateRequestId, PropagateRequestIdLayer, SetRequestId, SetRequestIdLayer,
};
use tower_http::trace::{
    DefaultOnBodyChunk, DefaultOnEos, DefaultOnFailure, DefaultOnRequest, DefaultOnResponse,
    MakeSpan, Trace, TraceLayer,
};
use tracing::{Level, Span};

use crate::auth::Authenticator;
use crate::configuration::ServerSettings;
use crate::rate_limit::RateLimiter;
use crate::redis::ticket_cache::TicketCache;
use crate::telemetry::metrics::RpcMetrics;
use crate::telemetry::traces;
use crate::wire::headers::REQUEST_ID_HEADER;
use crate::wire::methods::MethodTable;

const REQUEST_ID: http::HeaderName = http::HeaderName::from_static(REQUEST_ID_HEADER);

/// The whole stack as one layer, so `startup` adds it in one call.
#[derive(Clone)]
pub struct MiddlewareLayer {
    methods: &'static MethodTable,
    max_request_time: Duration,
    max_request_bytes: usize,
    max_request_header_bytes: usize,
    authenticator: Authenticator,
    limiter: RateLimiter,
    ticket_cache: TicketCache,
    rpc_metrics: RpcMetrics,
}

impl MiddlewareLayer {
    pub fn new(
        methods: &'static MethodTable,
        server: &ServerSettings,
        authenticator: Authenticator,
        limiter: RateLimiter,
        ticket_cache: TicketCache,
        rpc_metrics: RpcMetrics,
    ) -> Self {
        Self {
            methods,
            max_request_time: server.request_timeout,
            max_request_bytes: server.max_request_bytes,
            max_request_header_bytes: server.max_request_header_bytes,
            authenticator,
            limiter,
            ticket_cache,
            rpc_metrics,
        }
    }
}

/// What [`MiddlewareLayer`] wraps a service in, outermost first.
pub type MiddlewareStack<S> = PlainRequestId<
    SetRequestId<
        Trace<
            PropagateRequestId<
                LimitHeaders<
                    CountRpcs<
                        ResolveMethod<
                            RestFields<Deadline<Admit<CheckPathBinding<ReadIdempotencyKey<S>>>>>,
                        >,
                    >,
                >,
            >,
            SharedClassifier<GrpcErrorsAsFailures>,
            RpcSpan,
            DefaultOnRequest,
            DefaultOnResponse,
            DefaultOnBodyChunk,
            DefaultOnEos,
            DefaultOnFailure,
        >,
        NewRequestId,
    >,
>;

impl<S> Layer<S> for MiddlewareLayer {
    type Service = MiddlewareStack<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServiceBuilder::new()
            .layer(PlainRequestIdLayer)
            .layer(SetRequestIdLayer::x_request_id(NewRequestId))
            .layer(
                TraceLayer::new(SharedClassifier::new(client_errors_are_not_failures()))
                    .make_span_with(RpcSpan)
                    .on_request(DefaultOnRequest::new().level(Level::DEBUG))
                    .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                    .on_failure(DefaultOnFailure::new().level(Level::WARN)),
            )
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(HeaderLimitLayer::new(self.max_request_header_bytes))
            .layer(RpcMetricsLayer::new(self.rpc_metrics.clone()))
            .layer(MethodLayer::new(self.methods, self.max_request_bytes))
            .layer(RestFieldsLayer)
            .layer(DeadlineLayer::new(self.max_request_time))
            .layer(AdmissionLayer::new(
                self.authenticator.clone(),
                self.limiter.clone(),
                self.ticket_cache.clone(),
                self.max_request_bytes,
            ))
            .layer(PathBindingLayer::new(self.max_request_bytes))
            .layer(IdempotencyKeyLayer)
            .service(inner)
    }
}

/// Codes that answer a bad request rather than report a fault of the service: logged with the
/// answer (`rpc answered`) at INFO, not as failures at WARN.
fn client_errors_are_not_failures() -> GrpcErrorsAsFailures {
    [
        GrpcCode::InvalidArgument,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::Unauthenticated,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::ResourceExhausted,
    ]
    .into_iter()
    .fold(
        GrpcErrorsAsFailures::new(),
        GrpcErrorsAsFailures::with_success,
    )
}

/// The span of one RPC: its method path and request id, and the caller (`account_id`, and
/// `caller`: `user:<id>` or `api_key:<id>`) recorded by admission once known. Every value is
/// recorded as a string (never through `Display`), so the JSON format writes it as a JSON string
/// and the pretty format quotes and escapes it: no caller text can end a field early.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcSpan;

impl<B> MakeSpan<B> for RpcSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let request_id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if traces::enabled() {
            let span = traces::rpc_span(request.uri().path(), request_id);
            traces::accept_parent(&span, request.headers());
            return span;
        }
        tracing::info_span!(
            "rpc",
            method = request.uri().path(),
            request_id = request_id,
            account_id = tracing::field::Empty,
            caller = tracing::field::Empty,
        )
    }
}
