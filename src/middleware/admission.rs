//! Admission: who is calling, whether they may call this RPC, and whether their quota allows it,
//! decided before the request is read, at a cost of one Redis round trip and no PostgreSQL when
//! the caller's state is in Redis:
//!
//! 1. a public RPC (`ACCESS_PUBLIC` in its declaration: signing up, logging in; health and
//!    reflection as infrastructure) counts against the client IP's quota and goes on;
//! 2. any other call must bring a credential, checked without I/O ([`Authenticator::verify`]):
//!    a missing, malformed, forged or expired one is UNAUTHENTICATED before any pool is touched;
//! 3. one Redis script counts the call against the caller's declared quota and reads the
//!    caller's state ([`crate::auth::principals`]);
//! 4. the caller is resolved from that state, or from PostgreSQL when Redis had none
//!    ([`Authenticator::resolve`]): a deactivated user or revoked key is UNAUTHENTICATED;
//! 5. a caller below the RPC's declared least `role` is PERMISSION_DENIED, so each role rule is
//!    written once, beside its RPC;
//! 6. a spent quota is RESOURCE_EXHAUSTED (after the checks above, so a refused credential
//!    never learns about quotas).
//!
//! Handlers get the [`crate::auth::Caller`] as a request extension, never raw metadata. A path
//! the method table does not know needs a caller too: this layer fails closed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use super::method::declared_method;
use super::rate_limit::{add_headers, client_subject, policy_for, refusal};
use crate::auth::principals::{KnownState, Lease};
use crate::auth::{Authenticator, Caller};
use crate::methods::{Access, Method};
use crate::rate_limit::{Decision, RateLimiter, Subject};

#[derive(Clone)]
pub struct AdmissionLayer {
    authenticator: Authenticator,
    limiter: RateLimiter,
}

impl AdmissionLayer {
    pub fn new(authenticator: Authenticator, limiter: RateLimiter) -> Self {
        Self {
            authenticator,
            limiter,
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admit {
            inner,
            authenticator: self.authenticator.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admit<S> {
    inner: S,
    authenticator: Authenticator,
    limiter: RateLimiter,
}

/// What admission decided about a request that may go on.
struct Admitted {
    caller: Option<Caller>,
    decision: Option<Decision>,
}

/// What admission needs of a request, taken out of it so that the request is not borrowed
/// across the round trip.
struct Presented {
    method: Option<&'static Method>,
    authorization: Option<String>,
    client: Subject,
}

impl Presented {
    fn of<B>(request: &Request<B>, limiter: &RateLimiter) -> Self {
        Self {
            method: declared_method(request),
            authorization: request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|value| value.to_str().unwrap_or_default().to_owned()),
            client: client_subject(request, &limiter.settings().trusted_proxies),
        }
    }
}

/// Admits a request, or answers why not.
async fn admit(
    authenticator: Authenticator,
    limiter: RateLimiter,
    presented: Presented,
) -> Result<Admitted, Response<Body>> {
    let Presented {
        method,
        authorization,
        client,
    } = presented;
    {
        let policy = policy_for(method);
        if method.is_some_and(|method| method.access == Access::Public) {
            let Some(policy) = policy else {
                return Ok(Admitted {
                    caller: None,
                    decision: None,
                });
            };
            let decision = limiter.check(policy, &client).await;
            if !decision.allowed {
                return Err(refusal(&client, &decision));
            }
            return Ok(Admitted {
                caller: None,
                decision: Some(decision),
            });
        }

        let credential = authenticator
            .verify(authorization.as_deref())
            .map_err(answer)?;
        let subject = credential.quota_subject();
        let state_key = authenticator.states().key(&credential.principal());
        let lease = Lease::new();
        let (decision, read) = match policy {
            Some(policy) => {
                let (decision, read) = limiter
                    .admit(policy, &subject, Some((&state_key, &lease)))
                    .await;
                (Some(decision), read)
            }
            None => (None, None),
        };
        let known = match read {
            Some(read) => KnownState::from_read(read.value.as_deref(), lease, read.took_lease),
            None => KnownState::Unknown { lease: None },
        };
        let caller = authenticator
            .resolve(&credential, known)
            .await
            .and_then(|caller| {
                if let Some(role) = method.and_then(|method| method.role) {
                    caller.require(role)?;
                }
                Ok(caller)
            })
            .map_err(answer)?;
        if let Some(decision) = &decision
            && !decision.allowed
        {
            return Err(refusal(&subject, decision));
        }
        Ok(Admitted {
            caller: Some(caller),
            decision,
        })
    }
}

fn answer(error: crate::errors::AppError) -> Response<Body> {
    tonic::Status::from(error).into_http()
}

impl<S, B> Service<Request<B>> for Admit<S>
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
        // The service that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        let limiter = self.limiter.clone();
        let presented = Presented::of(&request, &limiter);
        Box::pin(async move {
            let Admitted { caller, decision } = match admit(authenticator, limiter, presented).await
            {
                Ok(admitted) => admitted,
                Err(refused) => return Ok(refused),
            };
            if let Some(caller) = caller {
                request.extensions_mut().insert(caller);
            }
            let mut response = inner.call(request).await?;
            if let Some(decision) = decision.filter(|decision| decision.decided) {
                add_headers(&mut response, &decision);
            }
            Ok(response)
        })
    }
}
