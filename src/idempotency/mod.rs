//! Exactly-once mutations with Stripe's semantics. A request sent with an idempotency key claims
//! the key in the transaction that does its work and writes its outcome there too: the response,
//! or the final error it ended with. A retry with the same key and the same request replays that
//! outcome and does nothing; with another request it is refused; while the first still runs it
//! gets ABORTED after a short wait, to retry. A request that dies midway rolls back with its
//! claim, so the key is free again at once: the claim is a row lock, held by the request's own
//! transaction, which PostgreSQL releases when the request's connection or deadline ends.
//!
//! A request is recognised by its *fingerprint*: an HMAC, under a server secret, of the request
//! message with its secret fields (passwords) cleared, so that the table holds nothing a reader
//! could test password guesses against.
//!
//! The whole mechanism lives here: [`Idempotent`] (one request's scope, key and fingerprint),
//! [`KeyedWrite`] (what a service's write takes: the request's scope and, with a key, its
//! [`Idempotent`]), [`transaction`] (claim, work in a savepoint, store, in one transaction),
//! [`StoredResponse`] (the one stored form of an outcome, success or final error) and the sweep
//! of expired keys. It knows nothing of tonic: `api/` turns a response into a
//! [`StoredResponse`] and a [`StoredResponse`] back into a response or a status, so a handler
//! writes its response once and the same function serves the answer and its replay.

use std::collections::BTreeMap;
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

use crate::auth::{Caller, Principal};
use crate::db::models::{IdempotencyOutcome, IdempotencyRow, NewIdempotencyKey};
use crate::db::{self, Limits, PgPool};
use crate::domain::IdempotencyKey;
use crate::errors::{AppError, AppResult, Reason};
use crate::scope::RequestScope;

/// The settings every idempotent request shares.
#[derive(Clone, Debug)]
pub struct IdempotencyPolicy {
    /// How long a key's outcome is kept (at least 24 hours by default).
    pub retention: Duration,
    /// How long a retry waits for the first request holding its key before ABORTED.
    pub wait: Duration,
    /// The key request fingerprints (and anonymous scopes) are made with.
    pub fingerprint_key: FingerprintKey,
}

/// The server secret fingerprints are HMACs with (`IDEMPOTENCY_FINGERPRINT_KEY`). Unkeyed, a
/// fingerprint kept for a day is a fast hash of the request, against which anyone reading the
/// table could test guesses of what the request held; keyed, it tells nothing without the key.
#[derive(Clone)]
pub struct FingerprintKey(std::sync::Arc<Hmac<Sha256>>);

impl FingerprintKey {
    pub fn new(secret: &SecretString) -> Self {
        Self(std::sync::Arc::new(
            Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
                .expect("HMAC takes keys of any length"),
        ))
    }

    /// HMAC-SHA256 of `data` under the key.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        let mut mac = (*self.0).clone();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
}

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey([REDACTED])")
    }
}

/// An outcome as stored for replays: a success (the encoded response message and the metadata
/// it was answered with) or a final error (its gRPC code, message and encoded details).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredResponse {
    Success {
        body: Vec<u8>,
        metadata: BTreeMap<String, String>,
    },
    Failure {
        code: i32,
        message: String,
        details: Vec<u8>,
    },
}

impl StoredResponse {
    fn into_outcome(self, kept_for: Duration) -> AppResult<IdempotencyOutcome> {
        Ok(match self {
            Self::Success { body, metadata } => IdempotencyOutcome {
                status_code: 0,
                status_message: String::new(),
                status_details: None,
                response_body: Some(body),
                response_metadata: serde_json::to_value(&metadata)
                    .map_err(|error| AppError::internal(anyhow::anyhow!(error)))?,
                recovery_point: None,
                kept_for,
            },
            Self::Failure {
                code,
                message,
                details,
            } => IdempotencyOutcome {
                status_code: code,
                status_message: message,
                status_details: Some(details),
                response_body: None,
                response_metadata: serde_json::json!({}),
                recovery_point: None,
                kept_for,
            },
        })
    }

    fn from_row(row: IdempotencyRow) -> Self {
        if row.status_code == 0 {
            // Written by `into_outcome` as an object of strings; anything else holds nothing.
            let metadata = row
                .response_metadata
                .as_object()
                .map(|entries| {
                    entries
                        .iter()
                        .filter_map(|(name, value)| {
                            Some((name.clone(), value.as_str()?.to_owned()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Self::Success {
                body: row.response_body.unwrap_or_default(),
                metadata,
            }
        } else {
            Self::Failure {
                code: row.status_code,
                message: row.status_message,
                details: row.status_details.unwrap_or_default(),
            }
        }
    }
}

/// What a request made idempotent did.
#[derive(Debug)]
pub enum Outcome<T> {
    /// It ran now and succeeded.
    Done(T),
    /// It ran now and ended with a final error, stored for retries.
    Failed(AppError),
    /// It ran before: here is what it answered then.
    Replay(StoredResponse),
}

impl<T> Outcome<T> {
    /// The value of a fresh success; `None` for a replay, `Err` for a failure.
    pub fn done(self) -> AppResult<Option<T>> {
        match self {
            Self::Done(value) => Ok(Some(value)),
            Self::Failed(error) => Err(error),
            Self::Replay(_) => Ok(None),
        }
    }
}

/// A write as the service receives it: the request's scope (who calls, until when) and, when
/// the request carries an idempotency key, that key's [`Idempotent`].
pub struct KeyedWrite<'a, D> {
    pub scope: &'a RequestScope,
    pub idempotent: Option<Idempotent<'a, D>>,
}

impl<'a, D> KeyedWrite<'a, D> {
    /// A write without a key (a caller outside a request, or a test).
    pub fn unkeyed(scope: &'a RequestScope) -> Self {
        Self {
            scope,
            idempotent: None,
        }
    }

    /// Who is calling; failing closed where admission found no caller.
    pub fn caller(&self) -> AppResult<&'a Caller> {
        self.scope.caller()
    }

    /// The key's claim, store and replay, when the request carries a key.
    pub fn idempotent(&self) -> Option<&Idempotent<'a, D>> {
        self.idempotent.as_ref()
    }

    /// How long the work may still take.
    pub fn remaining(&self) -> Duration {
        self.scope.remaining()
    }
}

/// One request's idempotency: its scope, key and fingerprint, and how its outcomes are stored
/// (given by `api/`, which alone knows the wire form).
pub struct Idempotent<'a, D> {
    pub caller: String,
    pub rpc: &'a str,
    pub key: IdempotencyKey,
    pub request_hash: Vec<u8>,
    pub policy: IdempotencyPolicy,
    pub store_success: &'a (dyn Fn(&D) -> StoredResponse + Send + Sync),
    pub store_failure: fn(&AppError) -> StoredResponse,
    /// The recovery points a request of this RPC may stop at; empty for the RPCs whose key and
    /// effect commit in one transaction.
    pub phases: &'static [&'static str],
}

// By hand: a derive would ask `D: Clone` of the value it only stores through a reference.
impl<D> Clone for Idempotent<'_, D> {
    fn clone(&self) -> Self {
        Self {
            caller: self.caller.clone(),
            rpc: self.rpc,
            key: self.key.clone(),
            request_hash: self.request_hash.clone(),
            policy: self.policy.clone(),
            store_success: self.store_success,
            store_failure: self.store_failure,
            phases: self.phases,
        }
    }
}

/// Whether the request owns its key now, or ran before.
pub enum Claimed {
    Fresh(Uuid),
    Replay(StoredResponse),
    /// A request with the key committed its first phase and stopped at this recovery point
    /// without an outcome (a crash, an unknown provider outcome): resume from there. Only
    /// requests that commit in phases ([`Idempotent::reach`]) leave such a key.
    Resume {
        id: Uuid,
        recovery_point: RecoveryPoint,
    },
}

/// Where a request that commits in phases stopped: the phase reached, and the id of what its
/// committed phases created (a charge, a refund), stored as `<phase>:<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryPoint {
    pub phase: &'static str,
    pub resource: Uuid,
}

impl RecoveryPoint {
    fn to_stored(&self) -> String {
        format!("{}:{}", self.phase, self.resource)
    }

    /// Parses a stored point whose phase is one of `phases`.
    fn parse(raw: &str, phases: &[&'static str]) -> AppResult<Self> {
        raw.split_once(':')
            .and_then(|(phase, id)| {
                Some(Self {
                    phase: phases.iter().copied().find(|known| *known == phase)?,
                    resource: Uuid::try_parse(id).ok()?,
                })
            })
            .ok_or_else(|| {
                AppError::internal(anyhow::anyhow!(
                    "stored recovery point {raw:?} does not parse"
                ))
            })
    }
}

/// The projection of a transaction result that is already the stored domain value.
pub fn as_is<T: Clone>(value: &T) -> AppResult<T> {
    Ok(value.clone())
}

/// The scope part naming the caller: user and key ids are unique across accounts. A request
/// without a caller is scoped to its client address (`client`, e.g. `ip:203.0.113.7`), kept
/// only as a keyed hash: a stranger elsewhere who happens on the same key gets a scope of their
/// own, so IDEMPOTENCY_KEY_REUSED cannot tell them that someone else used it.
pub fn caller_scope(caller: Option<&Caller>, client: &str, key: &FingerprintKey) -> String {
    match caller.map(|caller| &caller.principal) {
        Some(Principal::User { user_id, .. }) => format!("user:{user_id}"),
        Some(Principal::ApiKey { key_id, .. }) => format!("key:{key_id}"),
        None => format!(
            "anonymous:{}",
            hex::encode(&key.sign(format!("client\0{client}").as_bytes())[..16])
        ),
    }
}

/// The fingerprint of a request message (encoded with its secret fields cleared: prost encodes
/// fields in a fixed order): a keyed HMAC, never a plain hash.
pub fn fingerprint(key: &FingerprintKey, encoded_request: &[u8]) -> Vec<u8> {
    key.sign(encoded_request)
}

impl<D> Idempotent<'_, D> {
    /// How long a claim waits for a concurrent request holding the same key before answering
    /// IDEMPOTENCY_KEY_IN_USE: the lock wait of the transaction that claims
    /// ([`crate::db::Limits::waiting_for_locks_at_most`]).
    pub fn wait(&self) -> Duration {
        self.policy.wait
    }

    /// Claims the key inside the caller's transaction, or finds its stored outcome. The
    /// transaction must have opened with lock waits bounded by [`Self::wait`]; work that follows
    /// a fresh claim lifts the bound ([`db::savepoint`]).
    pub async fn claim(&self, conn: &mut AsyncPgConnection) -> AppResult<Claimed> {
        for _ in 0..3 {
            let claimed = NewIdempotencyKey {
                id: Uuid::now_v7(),
                caller: self.caller.clone(),
                rpc: self.rpc.to_owned(),
                key: self.key.as_str().to_owned(),
                request_hash: self.request_hash.clone(),
                status_code: -1,
                kept_for: self.policy.retention,
            }
            .claim(conn)
            .await?;
            if let Some(id) = claimed {
                return Ok(Claimed::Fresh(id));
            }
            let Some((existing, expired)) =
                IdempotencyRow::find(conn, &self.caller, self.rpc, self.key.as_str()).await?
            else {
                continue; // swept meanwhile: claim again
            };
            // A key kept until its outcome has no expiry ([`Self::reach_keeping_key`]).
            if expired {
                IdempotencyRow::delete(conn, existing.id).await?;
                continue;
            }
            if existing.request_hash != self.request_hash {
                return Err(AppError::invalid_field_reason(
                    "idempotency-key",
                    Reason::IdempotencyKeyReused,
                    "was used with a different request; use a new key for a new request",
                ));
            }
            if let Some(point) = &existing.recovery_point {
                return Ok(Claimed::Resume {
                    id: existing.id,
                    recovery_point: RecoveryPoint::parse(point, self.phases)?,
                });
            }
            return Ok(Claimed::Replay(StoredResponse::from_row(existing)));
        }
        Err(AppError::idempotency_key_in_use())
    }

    /// Records, in the transaction that claimed key `id`, that its request reached `point`: the
    /// transaction then commits the claim with its first phase, and a retry resumes from there.
    /// The key keeps its expiry: what the stopped request left behind is swept in time, and a
    /// retry after the key expired starts afresh.
    pub async fn reach(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        point: &RecoveryPoint,
    ) -> AppResult<()> {
        self.record_point(conn, id, point, false).await
    }

    /// [`Self::reach`] for a request whose effect outlives any expiry (a charge, a refund): the
    /// key stops expiring until its outcome is stored, so that a retry however late resumes the
    /// request instead of making its effect a second time. The outcome gives it the usual
    /// retention from then on.
    pub async fn reach_keeping_key(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        point: &RecoveryPoint,
    ) -> AppResult<()> {
        self.record_point(conn, id, point, true).await
    }

    async fn record_point(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        point: &RecoveryPoint,
        kept_until_outcome: bool,
    ) -> AppResult<()> {
        debug_assert!(self.phases.contains(&point.phase));
        IdempotencyRow::record_recovery_point(conn, id, &point.to_stored(), kept_until_outcome)
            .await?;
        Ok(())
    }

    /// Stores the success of the request that claimed `id`, in its transaction.
    pub async fn succeeded(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        value: &D,
    ) -> AppResult<()> {
        let outcome = (self.store_success)(value).into_outcome(self.policy.retention)?;
        IdempotencyRow::record(conn, id, outcome).await?;
        Ok(())
    }

    /// Stores the final error of the request that claimed `id`, in its transaction.
    pub async fn failed(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        error: &AppError,
    ) -> AppResult<()> {
        let outcome = (self.store_failure)(error).into_outcome(self.policy.retention)?;
        IdempotencyRow::record(conn, id, outcome).await?;
        Ok(())
    }
}

/// The limits of a transaction that may claim `idempotent`'s key first: the request's remaining
/// `budget`, and with a key, lock waits bounded by the key's wait until the work's savepoint.
pub fn claiming_limits<D>(budget: Duration, idempotent: Option<&Idempotent<'_, D>>) -> Limits {
    let limits = Limits::within(budget);
    match idempotent {
        Some(idempotent) => limits.waiting_for_locks_at_most(idempotent.wait()),
        None => limits,
    }
}

/// Deletes expired keys in small batches, so the sweep never holds many locks at once.
pub async fn sweep_expired(pool: &PgPool, batch: i64) -> AppResult<usize> {
    let mut connection = crate::db::connection(pool).await?;
    let mut deleted = 0;
    loop {
        let swept = IdempotencyRow::sweep(&mut connection, batch).await?;
        deleted += swept;
        if i64::try_from(swept).unwrap_or(i64::MAX) < batch {
            return Ok(deleted);
        }
    }
}

/// [`db::pooled_transaction`] for a write that may carry an idempotency key, within what is left
/// of its request's deadline. With a key, the transaction opens with lock waits bounded by the
/// key's wait and first claims it (or finds the outcome of an earlier request with it, and
/// answers that as [`Outcome::Replay`] without running `body`); `body` then runs in a savepoint
/// ([`db::savepoint`], which lifts the bound in the same round trip), and its success (converted
/// by `project`) or final error is stored before the commit.
#[allow(
    clippy::manual_async_fn,
    reason = "the future is declared `Send` here, where the body's bounds prove it; an `async fn` leaves the proof to each caller, which fails for bodies that borrow (\"Send is not general enough\")"
)]
pub fn transaction<'a, 'pool, T, D, P, F>(
    pool: &'pool PgPool,
    write: &'a KeyedWrite<'a, D>,
    project: P,
    body: F,
) -> impl Future<Output = AppResult<Outcome<T>>> + Send + 'pool
where
    for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> AppResult<T>
        + db::Body<&'r mut AsyncPgConnection, AppResult<T>, Fut: Send>
        + Send
        + 'a,
    P: FnOnce(&T) -> AppResult<D> + Send + 'a,
    T: Send,
    D: Send + Sync + 'a,
    'a: 'pool,
{
    async move {
        let idempotent = write.idempotent();
        let limits = claiming_limits(write.remaining(), idempotent);
        let mut connection = db::connection(pool).await?;
        db::transaction(&mut connection, limits, async move |conn| {
            let Some(idempotent) = idempotent else {
                return Ok(Outcome::Done(body(conn).await?));
            };
            let id = match idempotent.claim(conn).await? {
                Claimed::Fresh(id) => id,
                Claimed::Replay(row) => return Ok(Outcome::Replay(row)),
                Claimed::Resume { .. } => {
                    // Only RPCs that declare phases record recovery points.
                    return Err(AppError::internal(anyhow::anyhow!(
                        "an idempotency key of a one-transaction RPC has a recovery point"
                    )));
                }
            };
            // A savepoint: a final error undoes the work but keeps the claim, to store it.
            match db::savepoint(&mut *conn, body).await {
                Ok(value) => {
                    idempotent.succeeded(conn, id, &project(&value)?).await?;
                    Ok(Outcome::Done(value))
                }
                Err(error) if error.is_final() => {
                    idempotent.failed(conn, id, &error).await?;
                    Ok(Outcome::Failed(error))
                }
                Err(error) => Err(error),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recovery_point_reads_back_as_stored_and_only_for_a_declared_phase() {
        let point = RecoveryPoint {
            phase: "charge_created",
            resource: Uuid::now_v7(),
        };
        let stored = point.to_stored();
        assert_eq!(stored, format!("charge_created:{}", point.resource));
        assert_eq!(
            RecoveryPoint::parse(&stored, &["charge_created"]).unwrap(),
            point
        );
        assert!(RecoveryPoint::parse(&stored, &["refund_created"]).is_err());
        assert!(RecoveryPoint::parse("charge_created:not-a-uuid", &["charge_created"]).is_err());
        assert!(RecoveryPoint::parse("charge_created", &["charge_created"]).is_err());
    }
}
