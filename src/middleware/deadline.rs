//! Every RPC runs against a deadline: the caller's `grpc-timeout` when it sends one, capped by the
//! RPC's own declared deadline (`deadline_ms`, the dashboard's panels) and by the server's
//! `REQUEST_TIMEOUT_MS`, which is also the default. Admission moves the [`RequestDeadline`] this
//! layer puts on the request into the request's scope, from which services read what is left
//! and hand it to PostgreSQL as `statement_timeout`; a handler still
//! running at the deadline is dropped and answered DEADLINE_EXCEEDED.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::errors::AppError;
use crate::scope::RequestDeadline;
use crate::wire::methods::Method;

const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

#[derive(Clone, Debug)]
pub struct DeadlineLayer {
    max: Duration,
}

impl DeadlineLayer {
    pub fn new(max: Duration) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            max: self.max,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    max: Duration,
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let budget = request
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map_or(self.max, |asked| asked.min(self.max));
        // The RPC's declaration (resolved by the method layer, above this one) may lower it.
        let budget = request
            .extensions()
            .get::<&'static Method>()
            .and_then(|method| method.deadline)
            .map_or(budget, |declared| budget.min(declared));
        let deadline = Instant::now() + budget;
        request
            .extensions_mut()
            .insert(RequestDeadline::at(deadline));
        let response = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, response).await {
                Ok(result) => result,
                Err(_elapsed) => {
                    tracing::warn!(?budget, "deadline exceeded");
                    Ok(tonic::Status::from(AppError::DeadlineExceeded).into_http())
                }
            }
        })
    }
}

/// `grpc-timeout` is at most 8 digits and a unit (gRPC over HTTP/2 spec).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for value in ["", "S", "12", "1x", "123456789S", "-1S"] {
            assert_eq!(parse_grpc_timeout(value), None, "{value:?}");
        }
    }
}
