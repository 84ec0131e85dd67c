//! Exactly-once mutations with Stripe's semantics. A request sent with an idempotency key claims
//! the key in the transaction that does its work and writes its outcome there too: the response,
//! or the final error it ended with. A retry with the same key and the same request replays that
//! outcome and does nothing; with another request it is refused; while the first still runs it
//! gets ABORTED after a short wait, to retry. A request that dies midway rolls back with its
//! claim, so the key is free again at once: the claim is a row lock, held by the request's own
//! transaction, which PostgreSQL releases when the request's connection or deadline ends.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::{Caller, Principal};
use crate::db::PgPool;
use crate::db::models::{IdempotencyOutcome, IdempotencyRow, NewIdempotencyKey};
use crate::domain::IdempotencyKey;
use crate::errors::{AppError, AppResult};

/// The settings every idempotent request shares.
#[derive(Clone, Copy, Debug)]
pub struct IdempotencyPolicy {
    /// How long a key's outcome is kept (at least 24 hours by default).
    pub retention: Duration,
    /// How long a retry waits for the first request holding its key before ABORTED.
    pub wait: Duration,
}

/// A success as stored: the encoded response and the metadata it carried.
#[derive(Clone, Debug)]
pub struct StoredSuccess {
    pub body: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
}

/// What a request made idempotent did.
#[derive(Debug)]
pub enum Outcome<T> {
    /// It ran now and succeeded.
    Done(T),
    /// It ran now and ended with a final error, stored for retries.
    Failed(AppError),
    /// It ran before: here is what it answered then.
    Replay(Box<IdempotencyRow>),
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

/// One request's idempotency: its scope, key and fingerprint, and how to store its success.
pub struct Idempotent<'a, D> {
    pub caller: String,
    pub rpc: &'static str,
    pub key: IdempotencyKey,
    pub request_hash: Vec<u8>,
    pub policy: IdempotencyPolicy,
    pub encode: &'a (dyn Fn(&D) -> StoredSuccess + Send + Sync),
}

/// Whether the request owns its key now, or ran before.
pub enum Claimed {
    Fresh(Uuid),
    Replay(Box<IdempotencyRow>),
}

/// The projection of a transaction result that is already the stored domain value.
pub fn as_is<T: Clone>(value: &T) -> AppResult<T> {
    Ok(value.clone())
}

/// The scope part naming the caller: user and key ids are unique across accounts.
pub fn caller_scope(caller: Option<&Caller>) -> String {
    match caller.map(|caller| &caller.principal) {
        Some(Principal::User { user_id, .. }) => format!("user:{user_id}"),
        Some(Principal::ApiKey { key_id, .. }) => format!("key:{key_id}"),
        None => "anonymous".to_owned(),
    }
}

/// The fingerprint of a request message: prost encodes fields in a fixed order.
pub fn fingerprint(encoded_request: &[u8]) -> Vec<u8> {
    Sha256::digest(encoded_request).to_vec()
}

fn in_use() -> AppError {
    AppError::Aborted {
        reason: "IDEMPOTENCY_KEY_IN_USE",
        message: "a request with this idempotency key is still running; retry shortly".to_owned(),
    }
}

impl<D> Idempotent<'_, D> {
    /// Claims the key inside the caller's transaction, or finds its stored outcome.
    pub async fn claim(&self, conn: &mut AsyncPgConnection) -> AppResult<Claimed> {
        set_lock_timeout(conn, self.policy.wait).await?;
        for _ in 0..3 {
            let claimed = NewIdempotencyKey {
                id: Uuid::now_v7(),
                caller: &self.caller,
                rpc: self.rpc,
                key: self.key.as_str(),
                request_hash: &self.request_hash,
                status_code: -1,
                expires_at: Utc::now()
                    + chrono::Duration::from_std(self.policy.retention)
                        .unwrap_or(chrono::Duration::days(1)),
            }
            .claim(conn)
            .await
            .map_err(lock_timeout_is_in_use)?;
            if let Some(id) = claimed {
                // The work itself waits for its locks as long as its deadline allows.
                set_lock_timeout(conn, Duration::ZERO).await?;
                return Ok(Claimed::Fresh(id));
            }
            let Some(existing) =
                IdempotencyRow::find(conn, &self.caller, self.rpc, self.key.as_str()).await?
            else {
                continue; // swept meanwhile: claim again
            };
            if existing.expires_at < Utc::now() {
                IdempotencyRow::delete(conn, existing.id).await?;
                continue;
            }
            if existing.request_hash != self.request_hash {
                return Err(AppError::invalid_field_reason(
                    "idempotency-key",
                    "IDEMPOTENCY_KEY_REUSED",
                    "was used with a different request; use a new key for a new request",
                ));
            }
            set_lock_timeout(conn, Duration::ZERO).await?;
            return Ok(Claimed::Replay(Box::new(existing)));
        }
        Err(in_use())
    }

    /// Stores the success of the request that claimed `id`, in its transaction.
    pub async fn succeeded(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        value: &D,
    ) -> AppResult<()> {
        let stored = (self.encode)(value);
        let outcome = IdempotencyOutcome {
            status_code: 0,
            status_message: String::new(),
            status_details: None,
            response_body: Some(stored.body),
            response_metadata: serde_json::to_value(&stored.metadata)
                .map_err(|error| AppError::internal(anyhow::anyhow!(error)))?,
        };
        IdempotencyRow::record(conn, id, &outcome).await?;
        Ok(())
    }

    /// Stores the final error of the request that claimed `id`, in its transaction.
    pub async fn failed(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        error: &AppError,
    ) -> AppResult<()> {
        let status = tonic::Status::from(error);
        let outcome = IdempotencyOutcome {
            status_code: status.code() as i32,
            status_message: status.message().to_owned(),
            status_details: Some(status.details().to_vec()),
            response_body: None,
            response_metadata: serde_json::json!({}),
        };
        IdempotencyRow::record(conn, id, &outcome).await?;
        Ok(())
    }
}

async fn set_lock_timeout(conn: &mut AsyncPgConnection, timeout: Duration) -> AppResult<()> {
    diesel::sql_query("SELECT set_config('lock_timeout', $1, true)")
        .bind::<Text, _>(timeout.as_millis().to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// PostgreSQL's lock_timeout (SQLSTATE 55P03) while claiming means another request holds the key.
fn lock_timeout_is_in_use(error: diesel::result::Error) -> AppError {
    if let diesel::result::Error::DatabaseError(_, info) = &error
        && info.message().contains("lock timeout")
    {
        return in_use();
    }
    error.into()
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
