//! Finds the RPC a request calls in the [`MethodTable`] and hands its declaration to the layers
//! and handlers below as a `&'static Method` request extension, so that none of them matches on
//! path strings. On the way back it applies the declared REST success status: a successful
//! answer of an RPC declared `HTTP_SUCCESS_CREATED` or `HTTP_SUCCESS_NO_CONTENT` carries
//! `x-http-status`, which Envoy's response filter turns into 201 or 204 (deploy/envoy/envoy.yaml).
//! It also gives tonic's bare refusal of a message over `MAX_REQUEST_BYTES` the ErrorInfo every
//! other refusal has (`REQUEST_TOO_LARGE`).
//! Errors whose reason has a REST status of its own (CARD_DECLINED: 402) carry the same header,
//! set where statuses are made (`errors::declare_http_status`), fresh or replayed.
//!
//! The declaration also goes back up on the response, for the layers above.
//!
//! A path the table does not know gets no extension: every layer below then treats the request
//! as strictly as it can (authentication required), and tonic answers UNIMPLEMENTED.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::errors::AppError;
use crate::methods::{Method, MethodTable};
use crate::wire::headers::HTTP_STATUS_HEADER;

// Header names looked up on every response, made once instead of parsed on every lookup.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
const GRPC_STATUS_DETAILS: http::HeaderName =
    http::HeaderName::from_static("grpc-status-details-bin");

/// The declaration of the RPC a request calls, when the table knows it.
pub fn declared_method<B>(request: &Request<B>) -> Option<&'static Method> {
    request.extensions().get::<&'static Method>().copied()
}

#[derive(Clone, Copy)]
pub struct MethodLayer {
    table: &'static MethodTable,
    max_request_bytes: usize,
}

impl MethodLayer {
    /// `max_request_bytes`: the limit tonic enforces on request messages, named in the answer
    /// to a message over it.
    pub fn new(table: &'static MethodTable, max_request_bytes: usize) -> Self {
        Self {
            table,
            max_request_bytes,
        }
    }
}

impl<S> Layer<S> for MethodLayer {
    type Service = ResolveMethod<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResolveMethod {
            inner,
            table: self.table,
            max_request_bytes: self.max_request_bytes,
        }
    }
}

#[derive(Clone)]
pub struct ResolveMethod<S> {
    inner: S,
    table: &'static MethodTable,
    max_request_bytes: usize,
}

/// Whether `response` is tonic's own answer to a request message over its size limit:
/// OUT_OF_RANGE with no details. Nothing of ours answers OUT_OF_RANGE (errors.rs has no such
/// variant), so this is the only source of it.
fn is_tonics_size_refusal(response: &Response<Body>) -> bool {
    let headers = response.headers();
    headers.get(GRPC_STATUS).map(HeaderValue::as_bytes) == Some(b"11")
        && !headers.contains_key(GRPC_STATUS_DETAILS)
}

impl<S, B> Service<Request<B>> for ResolveMethod<S>
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

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let method = self.table.lookup(request.uri().path());
        let success_status = method.and_then(|method| method.http_success.status_code());
        if let Some(method) = method {
            request.extensions_mut().insert(method);
        }
        let answer = self.inner.call(request);
        let max_request_bytes = self.max_request_bytes;
        Box::pin(async move {
            let mut response = answer.await?;
            // tonic refuses a message over its limit before any of our code runs, with a bare
            // status; clients get the same ErrorInfo as for every other refusal.
            if is_tonics_size_refusal(&response) {
                response = tonic::Status::from(AppError::MessageTooLarge {
                    limit: max_request_bytes,
                })
                .into_http();
            }
            // The layers above (the RPC metrics) learn which RPC was answered.
            if let Some(method) = method {
                response.extensions_mut().insert(method);
            }
            // An error is answered trailers-only, with grpc-status among the headers; a success
            // sends its status in the trailers.
            if let Some(status) = success_status
                && !response.headers().contains_key(GRPC_STATUS)
            {
                response
                    .headers_mut()
                    .insert(HTTP_STATUS_HEADER, HeaderValue::from_static(status));
            }
            Ok(response)
        })
    }
}
