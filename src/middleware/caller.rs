//! Who is calling. Fails closed: every RPC needs a caller except the explicit allow-list below
//! (probes, tooling, signing up and logging in). The caller is established by
//! [`Authenticator`] and handed to handlers as a [`Caller`] request extension, never as raw
//! metadata.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::auth::Authenticator;

/// RPC paths (or path prefixes, ending in `/`) that answer without credentials.
const PUBLIC_PATHS: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/supportdesk.v1.AuthService/Login",
    "/supportdesk.v1.AuthService/RefreshToken",
    "/supportdesk.v1.AccountService/CreateAccount",
];

/// Whether `path` may be called without credentials.
pub fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.iter().any(|public| {
        if public.ends_with('/') {
            path.starts_with(public)
        } else {
            path == *public
        }
    })
}

#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Authenticator,
}

impl AuthLayer {
    pub fn new(authenticator: Authenticator) -> Self {
        Self { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    authenticator: Authenticator,
}

impl<S, B> Service<Request<B>> for Authenticate<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
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
        if is_public(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        // The service that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        Box::pin(async move {
            let authorization = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|value| value.to_str().unwrap_or_default().to_owned());
            match authenticator.authenticate(authorization.as_deref()).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(error) => Ok(tonic::Status::from(error).into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn only_the_allow_list_is_public() {
        assert!(is_public("/grpc.health.v1.Health/Check"));
        assert!(is_public("/supportdesk.v1.AuthService/Login"));
        assert!(!is_public("/supportdesk.v1.AuthService/LoginAll"));
        assert!(!is_public("/supportdesk.v1.AuthService/Logout"));
        assert!(!is_public("/supportdesk.v1.TicketService/GetTicket"));
        assert!(!is_public("/"));
    }
}
