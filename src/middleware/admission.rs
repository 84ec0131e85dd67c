//! Admission: who is calling, whether they may call this RPC, and whether their quota allows it,
//! decided before the request is read, at a cost of one Redis round trip and no PostgreSQL when
//! the caller's state is in Redis:
//!
//! 1. a public RPC (`ACCESS_PUBLIC` in its declaration: signing up, logging in; health and
//!    reflection as infrastructure) counts against the client IP's quota and goes on;
//! 2. any other call must bring a credential, checked without I/O ([`Authenticator::verify`]):
//!    a missing, malformed, forged or expired one is UNAUTHENTICATED before any pool is touched;
//!    a malformed, forged or unknown one costs one Redis round trip, counting it against the
//!    client IP's `auth-failure` quota: past it, RESOURCE_EXHAUSTED (a genuine credential that
//!    expired or was ended is not counted: `failed_authentication`);
//! 3. one Redis script counts the call against the caller's declared quota and reads the
//!    caller's state ([`crate::auth::principals`]), and what the RPC declares to prefetch (for
//!    GetTicket, the ticket's cache entry, found through the request's `id`: the unary request
//!    body is read here for that, and handed on unchanged);
//!    An access token's session revocation marker is read in the same `MGET`: a session that
//!    has ended (logout, password reset) is UNAUTHENTICATED `SESSION_REVOKED` at once;
//! 4. the caller is resolved from that state, or from PostgreSQL when Redis had none
//!    ([`Authenticator::resolve`]): a deactivated user or revoked key is UNAUTHENTICATED (not
//!    counted), an unknown key too (counted as in 2). An API key Redis does not know, from a client over its `auth-failure`
//!    quota, is refused before PostgreSQL is asked (the script of 3 looks at that quota too);
//! 5. a caller below the RPC's declared least `role` is PERMISSION_DENIED, so each role rule is
//!    written once, beside its RPC;
//! 6. a spent quota is RESOURCE_EXHAUSTED (after the checks above, so a refused credential
//!    never learns about quotas).
//!
//! What it established goes on the request as its one scope ([`RequestScope`]: the caller, the
//! client, what was prefetched, with the deadline and the method known above), never raw
//! metadata. A path the method table does not know needs a caller too: this layer fails closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use super::method::declared_method;
use super::rate_limit::{add_headers, client_subject, policy_for, refusal};
use super::unary_body::Peeked;

use crate::auth::principals::{KnownState, Lease};
use crate::auth::{Authenticator, Caller, Credential, Principal, ValidUntil, session_revoked};
use crate::domain::TicketId;
use crate::errors::{AppError, Reason};
use crate::rate_limit::{AlsoRead, Decision, Policy, RateLimiter, Subject};
use crate::redis::ticket_cache::{PrefetchedEntry, TicketCache};
use crate::scope::{self, ClientAddress, RequestDeadline, RequestScope};
use crate::wire::methods::{Access, Method, Prefetch};

/// What admission works with, shared by every request through one `Arc`: a request clones a
/// pointer, not the authenticator's keys and the limiter's settings.
struct Gate {
    authenticator: Authenticator,
    limiter: RateLimiter,
    ticket_cache: TicketCache,
    max_request_bytes: usize,
}

#[derive(Clone)]
pub struct AdmissionLayer {
    gate: Arc<Gate>,
}

impl AdmissionLayer {
    pub fn new(
        authenticator: Authenticator,
        limiter: RateLimiter,
        ticket_cache: TicketCache,
        max_request_bytes: usize,
    ) -> Self {
        Self {
            gate: Arc::new(Gate {
                authenticator,
                limiter,
                ticket_cache,
                max_request_bytes,
            }),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admit {
            inner,
            gate: Arc::clone(&self.gate),
        }
    }
}

#[derive(Clone)]
pub struct Admit<S> {
    inner: S,
    gate: Arc<Gate>,
}

/// What admission decided about a request that may go on.
struct Admitted {
    /// The caller, and until when their credential lets them in by itself (for long streams,
    /// which re-check the caller while they run: [`crate::auth::Standing`]).
    caller: Option<(Caller, ValidUntil)>,
    decision: Option<Decision>,
    prefetched: Option<PrefetchedEntry>,
}

/// What admission needs of a request, taken out of it so that the request is not borrowed
/// across the round trip.
struct Presented {
    method: Option<&'static Method>,
    authorization: Option<String>,
    client: Subject,
    /// The ticket the request's `id` names, for a declared `PREFETCH_TICKET`.
    ticket: Option<TicketId>,
}

impl Presented {
    fn of<B>(request: &Request<B>, limiter: &RateLimiter, ticket: Option<TicketId>) -> Self {
        Self {
            method: declared_method(request),
            authorization: request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|value| value.to_str().unwrap_or_default().to_owned()),
            client: client_subject(request, &limiter.settings().trusted_proxies),
            ticket,
        }
    }
}

/// The ticket id in a unary gRPC request body (one uncompressed frame), the string field
/// numbered `id_field`, and the body to hand on: the same bytes. `None` when the body is not
/// such a frame, or the id not a ticket id: the handler then decodes and refuses it as it would
/// anyway.
async fn ticket_named_in(
    body: Body,
    id_field: u32,
    max_request_bytes: usize,
) -> Result<(Body, Option<TicketId>), Response<Body>> {
    let peeked = Peeked::read(body, max_request_bytes).await?;
    let id = peeked
        .string_field(id_field)
        .and_then(|id| TicketId::parse(id).ok());
    Ok((peeked.into_body(), id))
}

/// Admits a request, or answers why not.
async fn admit(gate: &Gate, presented: Presented) -> Result<Admitted, Response<Body>> {
    let Gate {
        authenticator,
        limiter,
        ticket_cache,
        ..
    } = gate;
    let Presented {
        method,
        authorization,
        client,
        ticket,
    } = presented;
    let policy = policy_for(method);
    if method.is_some_and(|method| method.access == Access::Public) {
        let Some(policy) = policy else {
            return Ok(Admitted {
                caller: None,
                decision: None,
                prefetched: None,
            });
        };
        // The login quota counts failed logins, known only once the password is checked (by
        // the handler, with the other login quotas): here the address is only looked at, so
        // that one already over it is refused before its request is read.
        let decision = if policy == Policy::Login {
            limiter.peek(policy, &client).await
        } else {
            limiter.check(policy, &client).await
        };
        if !decision.allowed {
            return Err(refusal(&client, &decision));
        }
        return Ok(Admitted {
            caller: None,
            decision: Some(decision),
            prefetched: None,
        });
    }

    let credential = match authenticator.verify(authorization.as_deref()) {
        Ok(credential) => credential,
        Err(error) => return Err(failed_authentication(limiter, &client, error).await),
    };
    let subject = Subject::of_credential(&credential);
    let state_key = authenticator.states().key(&credential.principal());
    let lease = Lease::new();
    // The account comes from the verified token; the state read beside it confirms it.
    let prefetch = match (&credential, ticket) {
        (Credential::AccessToken(claims), Some(ticket)) => Some((
            claims.account_id,
            ticket,
            ticket_cache.entry_key(claims.account_id, ticket),
        )),
        _ => None,
    };
    // An API key Redis does not know costs a PostgreSQL lookup: a client over its
    // failed-authentication quota (guessing keys) does not get one. A token's signature already
    // proved it genuine.
    let barring = matches!(credential, Credential::ApiKey(_)).then_some(&client);
    // An access token's session may have ended (logout, password reset): its marker is read in
    // the same round trip.
    let revocation = match &credential {
        Credential::AccessToken(claims) => Some(
            authenticator
                .states()
                .revoked_session_key(claims.session_id),
        ),
        Credential::ApiKey(_) => None,
    };
    let (decision, mut read) = match policy {
        Some(policy) => {
            let (decision, read) = limiter
                .admit(
                    policy,
                    &subject,
                    Some(AlsoRead {
                        key: &state_key,
                        lease: &lease,
                        prefetch: prefetch.as_ref().map(|(_, _, key)| key.as_str()),
                        barring,
                        revocation: revocation.as_deref(),
                    }),
                )
                .await;
            (Some(decision), read)
        }
        None => (None, None),
    };
    if let Some(barred_for) = read.as_ref().and_then(|read| read.barred_for) {
        let quota = limiter.quota(Policy::AuthFailure);
        let decision = Decision {
            allowed: false,
            policy: Policy::AuthFailure,
            quota,
            remaining: 0,
            retry_after: barred_for,
            reset: quota.window,
            decided: true,
        };
        return Err(refusal(&client, &decision));
    }
    let prefetched = prefetch
        .zip(read.as_mut())
        .map(|((account_id, ticket, _), read)| PrefetchedEntry {
            account_id,
            ticket,
            value: read.prefetched.take(),
        });
    let revoked = read.as_ref().is_some_and(|read| read.revoked);
    let known = match read {
        Some(read) => KnownState::from_read(read.value.as_deref(), lease, read.took_lease),
        None => KnownState::Unknown { lease: None },
    };
    let caller = match authenticator.resolve(&credential, known).await {
        Ok(caller) => caller,
        Err(error @ AppError::Unauthenticated { .. }) => {
            return Err(failed_authentication(limiter, &client, error).await);
        }
        Err(error) => return Err(answer(error)),
    };
    // After the user's own state: a deactivated user hears that, not that a session ended.
    if revoked {
        return Err(failed_authentication(limiter, &client, session_revoked()).await);
    }
    if let Some(role) = method.and_then(|method| method.role) {
        caller.require(role).map_err(answer)?;
    }
    if let Some(decision) = &decision
        && !decision.allowed
    {
        return Err(refusal(&subject, decision));
    }
    Ok(Admitted {
        caller: Some((caller, ValidUntil::of(&credential))),
        decision,
        prefetched,
    })
}

/// The answer to a credential that did not authenticate. Only a guess is counted against the
/// client's failed-authentication quota (one Redis round trip, nothing else; past the quota the
/// answer is RESOURCE_EXHAUSTED instead of UNAUTHENTICATED): a malformed or forged credential,
/// an unknown API key, a token naming no user of its account (`INVALID_CREDENTIALS`). A
/// genuine credential that no longer lets its holder in (expired, of an ended session, a
/// revoked key, a deactivated user) is nobody guessing: counted, it would turn its neighbours
/// behind one NAT into RESOURCE_EXHAUSTED, a client that should refresh into one that stops, and
/// bar their uncached API keys; its refusal is read from memory or Redis. A call without any
/// credential is no attempt to authenticate and is not counted either.
async fn failed_authentication(
    limiter: &RateLimiter,
    client: &Subject,
    error: AppError,
) -> Response<Body> {
    if !matches!(
        error,
        AppError::Unauthenticated {
            reason: Reason::InvalidCredentials,
            ..
        }
    ) {
        return answer(error);
    }
    let decision = limiter.check(Policy::AuthFailure, client).await;
    if decision.decided && !decision.allowed {
        return refusal(client, &decision);
    }
    answer(error)
}

fn answer(error: AppError) -> Response<Body> {
    tonic::Status::from(error).into_http()
}

impl<S> Service<Request<Body>> for Admit<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The service that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = Arc::clone(&self.gate);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let (body, ticket) = match parts
                .extensions
                .get::<&'static Method>()
                .and_then(|method| method.prefetch.as_ref())
            {
                Some(Prefetch::Ticket { id_field }) => {
                    match ticket_named_in(body, *id_field, gate.max_request_bytes).await {
                        Ok(peeked) => peeked,
                        Err(refused) => return Ok(refused),
                    }
                }
                None => (body, None),
            };
            let mut request = Request::from_parts(parts, body);
            let presented = Presented::of(&request, &gate.limiter, ticket);
            let client = ClientAddress::new(presented.client.clone());
            let method = presented.method;
            let Admitted {
                caller,
                decision,
                prefetched,
            } = match admit(&gate, presented).await {
                Ok(admitted) => admitted,
                Err(refused) => return Ok(refused),
            };
            if let Some((caller, _)) = &caller {
                record_caller(caller);
            }
            let Some(deadline) = request.extensions_mut().remove::<RequestDeadline>() else {
                return Ok(answer(AppError::internal(anyhow::anyhow!(
                    "no RequestDeadline: is the deadline layer in the stack?"
                ))));
            };
            let scope = RequestScope::admitted(
                scope::Admitted {
                    caller,
                    client,
                    prefetched,
                },
                method,
                deadline,
            );
            request.extensions_mut().insert(scope);
            let mut response = inner.call(request).await?;
            if let Some(decision) = decision.filter(|decision| decision.decided) {
                add_headers(&mut response, &decision);
            }
            Ok(response)
        })
    }
}

/// Records who is calling on the RPC's span (see `RpcSpan`), so that every later line of the
/// request, the answer's included, names the account and the user or API key.
fn record_caller(caller: &Caller) {
    let span = tracing::Span::current();
    span.record("account_id", caller.account_id.to_string().as_str());
    let who = match &caller.principal {
        Principal::User { user_id, .. } => format!("user:{user_id}"),
        Principal::ApiKey { key_id, .. } => format!("api_key:{key_id}"),
    };
    span.record("caller", who.as_str());
}
