//! The request header limit, answered as an error of the API: a header list (metadata) over
//! `MAX_REQUEST_HEADER_BYTES` is RESOURCE_EXHAUSTED with ErrorInfo `HEADERS_TOO_LARGE` and the
//! limit in its metadata, as gRPC itself answers oversized metadata.
//!
//! Sizes are counted as HTTP/2 counts them for `SETTINGS_MAX_HEADER_LIST_SIZE` (RFC 9113 6.5.2:
//! name, value and 32 bytes per field, pseudo-headers included), so the number means the same
//! here, in hyper and in the docs. Envoy refuses a REST or gRPC-Web request over its own, smaller
//! limit (32 KiB, `max_request_headers_kb`) first, with its JSON 431; the service's default
//! leaves room for what Envoy adds, so nothing Envoy forwards is refused here. hyper's own limit
//! is set above this one (startup.rs) so that, up to it, a direct gRPC client gets this answer
//! instead of hyper's bare HTTP 431.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::errors::AppError;

/// What RFC 9113 adds to each field's name and value length.
const FIELD_OVERHEAD: usize = 32;

/// The size of `request`'s header list as HTTP/2 counts it.
pub fn header_list_size<B>(request: &Request<B>) -> usize {
    let uri = request.uri();
    let pseudo = [
        (":method", request.method().as_str().len()),
        (":scheme", uri.scheme_str().map_or(0, str::len)),
        (
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path",
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        ),
    ]
    .into_iter()
    .map(|(name, value)| name.len() + value + FIELD_OVERHEAD)
    .sum::<usize>();
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + FIELD_OVERHEAD)
        .sum::<usize>()
        + pseudo
}

#[derive(Clone, Copy)]
pub struct HeaderLimitLayer {
    limit: usize,
}

impl HeaderLimitLayer {
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for HeaderLimitLayer {
    type Service = LimitHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LimitHeaders {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Clone)]
pub struct LimitHeaders<S> {
    inner: S,
    limit: usize,
}

impl<S, B> Service<Request<B>> for LimitHeaders<S>
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
        let size = header_list_size(&request);
        if size > self.limit {
            let refused = tonic::Status::from(AppError::HeadersTooLarge {
                size,
                limit: self.limit,
            })
            .into_http();
            return Box::pin(async move { Ok(refused) });
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_counts_names_values_and_32_bytes_per_field_pseudo_headers_included() {
        let request = Request::builder()
            .method("POST")
            .uri("http://svc/pkg.S/M")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let expected = (7 + 4 + 32) // :method POST
            + (7 + 4 + 32) // :scheme http
            + (10 + 3 + 32) // :authority svc
            + (5 + 8 + 32) // :path /pkg.S/M
            + (2 + 8 + 32); // te trailers
        assert_eq!(header_list_size(&request), expected);
    }
}
