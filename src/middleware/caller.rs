//! Who is calling. Fails closed: every RPC needs a [`Caller`] except the explicit allow-list of
//! health and reflection. Until user authentication lands, the caller is the account named by the
//! `x-account-id` metadata entry.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::domain::AccountId;
use crate::errors::AppError;

/// The metadata entry that names the caller's account.
pub const ACCOUNT_HEADER: &str = "x-account-id";

/// RPC paths (prefixes) that answer without a caller: probes and tooling.
const PUBLIC_PATH_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The authenticated caller, put in the request's extensions for handlers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub account_id: AccountId,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct AuthLayer;

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate { inner }
    }
}

#[derive(Clone, Debug)]
pub struct Authenticate<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Authenticate<S>
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
        let path = request.uri().path();
        if !PUBLIC_PATH_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            match identify(&request) {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                }
                Err(error) => {
                    let response = tonic::Status::from(error).into_http();
                    return Box::pin(async move { Ok(response) });
                }
            }
        }
        Box::pin(self.inner.call(request))
    }
}

fn identify<B>(request: &Request<B>) -> Result<Caller, AppError> {
    let Some(value) = request.headers().get(ACCOUNT_HEADER) else {
        return Err(AppError::Unauthenticated {
            reason: "MISSING_CREDENTIALS",
            message: format!("this RPC needs the {ACCOUNT_HEADER} metadata entry"),
        });
    };
    let account_id = value
        .to_str()
        .ok()
        .and_then(|raw| AccountId::parse(raw).ok())
        .ok_or_else(|| AppError::Unauthenticated {
            reason: "INVALID_CREDENTIALS",
            message: format!("{ACCOUNT_HEADER} must be an account id (a UUID)"),
        })?;
    Ok(Caller { account_id })
}
