//! Reads the `idempotency-key` metadata entry (the `Idempotency-Key` header through Envoy) and,
//! for an RPC declared `IDEMPOTENCY_OPTIONAL` or `IDEMPOTENCY_REQUIRED`, adds it to the request's
//! scope ([`RequestScope`], which admission built) as an [`IdempotencyKey`]. A malformed key is refused before anything runs, whatever
//! the RPC; so is a call without a key to an RPC that requires one. What the key means is
//! decided where the work is done (`idempotency`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use super::method::declared_method;
use crate::domain::{IdempotencyKey, InvalidValue};
use crate::errors::AppError;
use crate::scope::RequestScope;
use crate::wire::headers::IDEMPOTENCY_KEY_HEADER;
use crate::wire::methods::Idempotency;

/// The header, for lookups that do not parse the name on every request.
const IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static(IDEMPOTENCY_KEY_HEADER);

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
        let declared =
            declared_method(&request).map_or(Idempotency::Ignored, |method| method.idempotency);
        let key = request.headers().get(IDEMPOTENCY_KEY).map(|value| {
            value
                .to_str()
                .map_err(|_| InvalidValue::new("must be printable ASCII"))
                .and_then(IdempotencyKey::parse)
        });
        let refusal = match (key, declared) {
            (Some(Err(problem)), _) => Some(problem),
            (None, Idempotency::Required) => Some(InvalidValue::new(
                "this RPC requires an Idempotency-Key (1 to 255 printable ASCII characters)",
            )),
            (Some(Ok(key)), Idempotency::Optional | Idempotency::Required) => {
                let Some(scope) = request.extensions_mut().get_mut::<RequestScope>() else {
                    let response = tonic::Status::from(AppError::internal(anyhow::anyhow!(
                        "no RequestScope: is the admission layer in the stack?"
                    )))
                    .into_http();
                    return Box::pin(async move { Ok(response) });
                };
                scope.with_idempotency_key(key);
                None
            }
            (Some(Ok(_)) | None, Idempotency::Ignored) | (None, Idempotency::Optional) => None,
        };
        if let Some(problem) = refusal {
            let response =
                tonic::Status::from(AppError::invalid_field(IDEMPOTENCY_KEY_HEADER, &problem))
                    .into_http();
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(request))
    }
}
