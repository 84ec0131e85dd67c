//! One request's scope: everything the middleware stack learns about a call that the handler and
//! the service need, as one typed value. Admission builds it (it is the layer that learns the
//! caller, the client and what its Redis round trip prefetched; the deadline and the method are
//! known above it) and puts it in the request extensions; the idempotency-key layer below adds
//! the key. `api/` takes it out of the request ([`crate::api`]'s `scope` and `KeyedRequest`) and
//! hands it to `service/`, whose functions take this one value instead of a caller, a budget and
//! an idempotency key apiece. Work that is no request (tests, the CLI) builds one with
//! [`RequestScope::for_caller`] or [`RequestScope::without_caller`].
//!
//! Nothing here is a transport type: the prefetched cache entry is read back by the cache itself
//! ([`Prefetched`]), so no service signature names it.

use std::time::Duration;

use tokio::time::Instant;

use crate::auth::{Caller, ValidUntil};
use crate::domain::IdempotencyKey;
use crate::errors::{AppError, AppResult};
use crate::rate_limit::Subject;
use crate::redis::ticket_cache::{Prefetched, PrefetchedEntry};
use crate::wire::methods::Method;

/// When the current request must be done by: the caller's `grpc-timeout` capped by the RPC's
/// declared deadline and the server's maximum (the deadline layer decides it).
#[derive(Clone, Copy, Debug)]
pub struct RequestDeadline(Instant);

impl RequestDeadline {
    pub fn at(deadline: Instant) -> Self {
        Self(deadline)
    }

    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    /// The time left; zero once passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// The client's address as admission established it (`ip:<address>`): what `Login` throttles
/// by and what scopes an anonymous idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAddress(Subject);

impl ClientAddress {
    pub fn new(subject: Subject) -> Self {
        Self(subject)
    }

    pub fn subject(&self) -> &Subject {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// What admission established about a call, before the scope is built from it.
pub struct Admitted {
    /// The caller, and until when their credential lets them in by itself (for long streams,
    /// which re-check the caller while they run: [`crate::auth::Standing`]); `None` for a
    /// public RPC.
    pub caller: Option<(Caller, ValidUntil)>,
    pub client: ClientAddress,
    pub prefetched: Option<PrefetchedEntry>,
}

/// One request's scope (module docs). Cloneable as request extensions must be; the handler takes
/// it out of its request rather than cloning it.
#[derive(Clone, Debug)]
pub struct RequestScope {
    caller: Option<Caller>,
    valid_until: ValidUntil,
    deadline: RequestDeadline,
    method: Option<&'static Method>,
    idempotency_key: Option<IdempotencyKey>,
    client: Option<ClientAddress>,
    prefetched: Option<PrefetchedEntry>,
}

impl RequestScope {
    /// The scope of a request admission let in, for the RPC `method` (`None`: a path the
    /// method table does not know), due by `deadline`.
    pub fn admitted(
        admitted: Admitted,
        method: Option<&'static Method>,
        deadline: RequestDeadline,
    ) -> Self {
        let (caller, valid_until) = match admitted.caller {
            Some((caller, valid_until)) => (Some(caller), valid_until),
            None => (None, ValidUntil::default()),
        };
        Self {
            caller,
            valid_until,
            deadline,
            method,
            idempotency_key: None,
            client: Some(admitted.client),
            prefetched: admitted.prefetched,
        }
    }

    /// The scope of work done for `caller` outside any request (a test, a tool), due by
    /// `deadline`: no method, no key, no client, nothing prefetched.
    pub fn for_caller(caller: Caller, deadline: RequestDeadline) -> Self {
        Self::outside_requests(Some(caller), deadline)
    }

    /// The scope of work done outside any request and for no caller (the command that creates
    /// an account), due by `deadline`.
    pub fn without_caller(deadline: RequestDeadline) -> Self {
        Self::outside_requests(None, deadline)
    }

    fn outside_requests(caller: Option<Caller>, deadline: RequestDeadline) -> Self {
        Self {
            caller,
            valid_until: ValidUntil::default(),
            deadline,
            method: None,
            idempotency_key: None,
            client: None,
            prefetched: None,
        }
    }

    /// Adds the request's idempotency key (the idempotency-key layer, once it has read it).
    pub fn with_idempotency_key(&mut self, key: IdempotencyKey) {
        self.idempotency_key = Some(key);
    }

    /// Who is calling. Every RPC but the public ones has a caller (admission fails closed), so
    /// its absence where one is needed is a wiring bug, and fails closed too.
    pub fn caller(&self) -> AppResult<&Caller> {
        self.caller.as_ref().ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "no Caller: is the auth layer in the stack?"
            ))
        })
    }

    /// The caller, for the RPCs that may be called without one (anonymous idempotency keys).
    pub fn optional_caller(&self) -> Option<&Caller> {
        self.caller.as_ref()
    }

    /// Until when the call's credential lets its caller in by itself (absent: as long as its
    /// principal stands), for a long stream to end at.
    pub fn valid_until(&self) -> ValidUntil {
        self.valid_until
    }

    /// How long the work may still take; zero once the deadline passed.
    pub fn remaining(&self) -> Duration {
        self.deadline.remaining()
    }

    /// When the work must be done by, for calls that take an instant (a provider's).
    pub fn deadline(&self) -> Instant {
        self.deadline.0
    }

    /// The RPC called, from the method table.
    pub fn method(&self) -> AppResult<&'static Method> {
        self.method.ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "no Method: is the method layer in the stack?"
            ))
        })
    }

    /// The idempotency key the request carries, for an RPC that honours keys.
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.idempotency_key.as_ref()
    }

    /// The client's address; `None` outside a request.
    pub fn client(&self) -> Option<&ClientAddress> {
        self.client.as_ref()
    }
}

impl Prefetched for &RequestScope {
    fn prefetched(&self) -> Option<&PrefetchedEntry> {
        self.prefetched.as_ref()
    }
}
