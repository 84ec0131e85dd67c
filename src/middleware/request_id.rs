//! The request id every log line of a request carries and every answer returns. A caller's
//! `x-request-id` is kept only when it is short and plain: at most [`MAX_REQUEST_ID_LEN`]
//! characters of `[A-Za-z0-9._:-]`. Anything else (too long, spaces, quotes, braces, non-ASCII)
//! is dropped here, before tower-http's `SetRequestId` runs, so that a fresh id
//! ([`NewRequestId`]) replaces it and is returned to the caller instead. Log lines therefore
//! never echo a caller's arbitrary text as the request id.

use std::task::{Context, Poll};

use http::{HeaderValue, Request};
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::wire::headers::REQUEST_ID_HEADER;

const REQUEST_ID: http::HeaderName = http::HeaderName::from_static(REQUEST_ID_HEADER);

/// The longest caller-chosen request id kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// True when `id` is a request id the service keeps: 1 to [`MAX_REQUEST_ID_LEN`] bytes of
/// `[A-Za-z0-9._:-]`.
pub fn is_plain_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-'))
}

/// Drops every `x-request-id` of a request unless there is exactly one and it is plain.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainRequestIdLayer;

impl<S> Layer<S> for PlainRequestIdLayer {
    type Service = PlainRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PlainRequestId { inner }
    }
}

#[derive(Clone, Debug)]
pub struct PlainRequestId<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for PlainRequestId<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let mut ids = request.headers().get_all(REQUEST_ID).iter();
        let keep = match (ids.next(), ids.next()) {
            (Some(id), None) => is_plain_request_id(id.as_bytes()),
            (None, _) => true,
            (Some(_), Some(_)) => false,
        };
        if !keep {
            request.headers_mut().remove(REQUEST_ID);
        }
        self.inner.call(request)
    }
}

/// A request id for a request that came without one (or with one that was dropped): a random
/// UUID (v4), written without the formatting machinery (tower-http's `MakeRequestUuid` formats
/// it through `Display`, which docs/performance.md measured as a visible share of every call).
#[derive(Clone, Copy, Debug, Default)]
pub struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let mut text = [0_u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_plain_ids_are_kept_and_anything_else_is_not() {
        for kept in [
            "a",
            "log-me-42",
            "trace.id_1:2-3",
            &"x".repeat(MAX_REQUEST_ID_LEN),
        ] {
            assert!(is_plain_request_id(kept.as_bytes()), "{kept}");
        }
        for dropped in [
            "",
            "a\"b} injected=1",
            "has space",
            "brace{",
            "é",
            "a/b",
            &"x".repeat(MAX_REQUEST_ID_LEN + 1),
        ] {
            assert!(!is_plain_request_id(dropped.as_bytes()), "{dropped}");
        }
    }
}
