//! Reads the `idempotency-key` metadata entry (the `Idempotency-Key` header through Envoy) and
//! hands it to handlers as an [`IdempotencyKey`] extension; a malformed key is refused before
//! anything runs. What the key means is decided where the work is done (`service::idempotency`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::domain::{IdempotencyKey, InvalidValue};
use crate::errors::AppError;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

#[derive(Clone, Copy, Debug, Default)]
pub struct IdempotencyKeyLayer;

impl<S> Layer<S> for IdempotencyKeyLayer {
    type Service = ReadIdempotencyKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadIdempotencyKey { inner }
    }
}

#[derive(Clone, Debug)]
pub struct ReadIdempotencyKey<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for ReadIdempotencyKey<S>
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
        if let Some(value) = request.headers().get(IDEMPOTENCY_KEY_HEADER) {
            let parsed = value
                .to_str()
                .map_err(|_| InvalidValue::new("must be printable ASCII"))
                .and_then(IdempotencyKey::parse);
            match parsed {
                Ok(key) => {
                    request.extensions_mut().insert(key);
                }
                Err(problem) => {
                    let response = tonic::Status::from(AppError::invalid_field(
                        IDEMPOTENCY_KEY_HEADER,
                        &problem,
                    ))
                    .into_http();
                    return Box::pin(async move { Ok(response) });
                }
            }
        }
        Box::pin(self.inner.call(request))
    }
}
