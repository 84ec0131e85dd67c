//! Who is calling. Fails closed: every RPC needs a caller unless its declaration in the method
//! table says `ACCESS_PUBLIC` (signing up, logging in; health and reflection as
//! infrastructure); a path the table does not know needs one too. The caller is established by
//! [`Authenticator`] and handed to handlers as a [`Caller`] request extension, never as raw
//! metadata. A caller below the RPC's declared least `role` is PERMISSION_DENIED here, before the
//! request is decoded or validated: each role rule is written once, beside its RPC.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use super::method::declared_method;
use crate::auth::Authenticator;
use crate::methods::Access;

/// Whether a request may go on without credentials: only when its RPC is declared public.
fn is_public<B>(request: &Request<B>) -> bool {
    declared_method(request).is_some_and(|method| method.access == Access::Public)
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
        if is_public(&request) {
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
            let least_role = declared_method(&request).and_then(|method| method.role);
            let authorized = authenticator
                .authenticate(authorization.as_deref())
                .await
                .and_then(|caller| {
                    if let Some(role) = least_role {
                        caller.require(role)?;
                    }
                    Ok(caller)
                });
            match authorized {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(error) => Ok(tonic::Status::from(error).into_http()),
            }
        })
    }
}
