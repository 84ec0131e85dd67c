//! Counts every RPC by method and gRPC code and times it ([`crate::telemetry::metrics::RpcMetrics`]). It
//! sits above [`super::MethodLayer`], which hands the answer's method declaration back on the
//! response, so the `method` label is the declared path (bounded by the API) or `unknown`.
//!
//! An error is answered trailers-only: its `grpc-status` is among the headers, and the RPC is
//! counted when the headers pass. A success sends its status in the trailers, after the
//! message: the body is watched and the RPC counted when the trailers pass, so the time is the
//! whole answer's. A body dropped before its trailers (the client went away) counts as
//! CANCELLED.
//!
//! The answer is also where the request's one INFO line is written, `rpc answered`, with the
//! gRPC `code` and `latency_ms`, in the RPC's span (method, request id, caller): an operator reads
//! who called what and how it ended from one line.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::telemetry::metrics::{RpcMetrics, RpcName, grpc_code_name};
use crate::telemetry::traces;
use crate::wire::methods::Method;

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// The `method` label of a path the method table does not know.
const UNKNOWN_METHOD: &str = "unknown";

/// gRPC's CANCELLED, for an answer whose body was dropped before its status.
const CANCELLED: u16 = 1;

/// gRPC's UNKNOWN, for a `grpc-status` that is not a code.
const UNKNOWN_CODE: u16 = 2;

#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: RpcMetrics,
}

impl RpcMetricsLayer {
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = CountRpcs<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountRpcs {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CountRpcs<S> {
    inner: S,
    metrics: RpcMetrics,
}

/// The code in a `grpc-status` of `headers`, when there is one.
fn status_in(headers: &HeaderMap) -> Option<u16> {
    let value = headers.get(GRPC_STATUS)?;
    Some(
        std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(UNKNOWN_CODE),
    )
}

/// An RPC whose status is not known yet.
struct Pending {
    metrics: RpcMetrics,
    rpc: RpcName,
    started: Instant,
    /// The RPC's span (the trace layer's), where the answer is logged.
    span: tracing::Span,
}

impl Pending {
    fn answered(self, code: u16) {
        let took = self.started.elapsed();
        self.metrics.answered(self.rpc, code, took);
        let latency_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        if traces::enabled() {
            traces::rpc_answered(&self.span, code);
        }
        self.span.in_scope(|| {
            tracing::info!(code = grpc_code_name(code), latency_ms, "rpc answered");
        });
    }
}

impl<S, B> Service<Request<B>> for CountRpcs<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let span = tracing::Span::current();
        let metrics = self.metrics.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let rpc = response.extensions().get::<&'static Method>().map_or(
                RpcName {
                    path: UNKNOWN_METHOD,
                    index: None,
                },
                |method| RpcName {
                    path: method.path.as_str(),
                    index: Some(method.index),
                },
            );
            let pending = Pending {
                metrics,
                rpc,
                started,
                span,
            };
            if let Some(code) = status_in(response.headers()) {
                pending.answered(code);
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(WatchedBody {
                    inner: body,
                    pending: Some(pending),
                })
            }))
        })
    }
}

/// A success's body, counted when its trailers pass.
struct WatchedBody {
    inner: Body,
    pending: Option<Pending>,
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(status_in),
            Poll::Ready(Some(Err(status))) => Some(Some(status.code() as u16)),
            Poll::Ready(None) => Some(None),
            Poll::Pending => None,
        };
        if let Some(code) = code
            && let Some(pending) = self.pending.take()
        {
            pending.answered(code.unwrap_or(UNKNOWN_CODE));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.answered(CANCELLED);
        }
    }
}
