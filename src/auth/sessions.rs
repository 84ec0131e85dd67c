//! Login sessions and their rotating refresh tokens, in Redis.
//!
//! A login starts a session (a family of refresh tokens). Every refresh marks the presented
//! token used and issues the next one; presenting a used token again means it was stolen or
//! replayed, so the whole session is revoked (RFC 9700, section 4.14.2). Only SHA-256 hashes of
//! tokens are stored, and every key expires with the refresh-token lifetime. Each step is one
//! Lua script, so concurrent refreshes of one token cannot rotate it twice.
//!
//! **Grace window.** Two tabs refreshing with the same token at once are not a theft: for a
//! short window after a rotation (`REFRESH_TOKEN_REUSE_GRACE_SECS`) presenting the token just
//! rotated answers the same successor again instead of revoking. The successor is not stored
//! to make that possible: it is derived from the presented token with a server key (an HMAC), so
//! whoever presents the old token within the window computes the same successor, the script
//! recognises it by its hash, and the access token is re-issued with the same claims (time of
//! the rotation, an id derived from the successor): a byte-identical pair. Without the server
//! key nobody can derive a successor from a stolen token; after the window, reuse revokes as
//! before.
//!
//! **Ending a session at once.** Ending a session (Logout, LogoutAll, a password reset, a reused
//! refresh token, a deactivation) records it in PostgreSQL's `revoked_sessions` first, then, in
//! the same Redis step that deletes the session, sets `revoked-session:<sid>` for as long as an
//! access token of the session may live. The admission script reads that marker in the round
//! trip it makes anyway ([`crate::rate_limit::AlsoRead::revocation`]), so the session's access
//! tokens are refused on the very next call. When Redis has lost the caller's state, the
//! authenticator reads the user from PostgreSQL with the session's revocation in the same
//! statement, and a refresh checks it too ([`crate::db::models::UserRow::find_for_session`]).
//!
//! Keys, under the configured prefix: `session:<sid>` (hash: user, account),
//! `refresh:<sha256>` (hash: sid, state live|used), `refresh-grace:<sha256>` (hash: the
//! successor's record key, the rotation time; lives as long as the grace window),
//! `user-sessions:<uid>` (set of sids), `revoked-session:<sid>` (`1`, for the access tokens'
//! lifetime).

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use redis::Script;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::models::RevokedSessionRow;
use crate::db::{self, PgPool};
use crate::domain::{AccountId, SessionId, UserId};
use crate::errors::{AppError, AppResult};
use crate::redis::connection::Redis;
use crate::redis::keys::RedisKeys;

/// A refresh token as handed to a client or presented by one. Never printed.
pub struct RefreshToken(String);

impl RefreshToken {
    fn generate() -> Self {
        let mut bytes = [0_u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn from_presented(raw: &str) -> Self {
        Self(raw.trim().to_owned())
    }

    fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The token that rotating this one issues: the same for every presenter of this one,
    /// unknowable without the server key.
    fn successor(&self, key: &Hmac<Sha256>) -> Self {
        let mut mac = key.clone();
        mac.update(self.0.as_bytes());
        Self(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// An id derived from the token, for the access token issued beside it: the same pair for
    /// every presenter of its predecessor within the grace window.
    pub fn derived_id(&self) -> Uuid {
        let digest = Sha256::digest(format!("jti\0{}", self.0).as_bytes());
        let mut bytes = [0_u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    /// The token itself: only for the response that hands it over.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken([REDACTED])")
    }
}

/// A session, as its refresh token identifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOwner {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub account_id: AccountId,
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum RefreshTokenOutcome {
    /// The token was live, or was rotated within the grace window: here is the next one, and
    /// when the rotation happened (the access token issued with it carries that time).
    Rotated {
        owner: SessionOwner,
        next: RefreshToken,
        rotated_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    /// The token had been used already: the session is now revoked.
    Reused { owner: SessionOwner },
    /// Unknown, expired, or its session ended.
    Invalid,
}

const START: &str = r"
redis.call('HSET', KEYS[1], 'user', ARGV[2], 'account', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('HSET', KEYS[2], 'sid', ARGV[1], 'state', 'live')
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return 1
";

/// KEYS: the presented token's record, its successor's record, the presented token's grace
/// record. ARGV: the session key prefix, the lifetime (s), the user-sessions key prefix, the
/// grace window (ms). Returns {outcome, sid, user, account, rotation time in ms}.
const ROTATE: &str = r"
local sid = redis.call('HGET', KEYS[1], 'sid')
if not sid then return {'invalid'} end
local session = ARGV[1] .. sid
local user = redis.call('HGET', session, 'user')
if not user then return {'invalid'} end
local account = redis.call('HGET', session, 'account')
if redis.call('HGET', KEYS[1], 'state') ~= 'live' then
  if redis.call('HGET', KEYS[3], 'next') == KEYS[2] then
    return {'rotated', sid, user, account, redis.call('HGET', KEYS[3], 'at')}
  end
  redis.call('DEL', session)
  redis.call('SREM', ARGV[3] .. user, sid)
  return {'reused', sid, user, account}
end
local now_parts = redis.call('TIME')
local now = string.format('%.0f', tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000))
redis.call('HSET', KEYS[1], 'state', 'used')
redis.call('HSET', KEYS[2], 'sid', sid, 'state', 'live')
redis.call('EXPIRE', KEYS[2], ARGV[2])
if tonumber(ARGV[4]) > 0 then
  redis.call('HSET', KEYS[3], 'next', KEYS[2], 'at', now)
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
redis.call('EXPIRE', session, ARGV[2])
redis.call('EXPIRE', ARGV[3] .. user, ARGV[2])
return {'rotated', sid, user, account, now}
";

/// KEYS[1]: the presented token's record. ARGV: the session key prefix. Reads, changing nothing,
/// whose session the token is of: {sid, user, account}, or nothing.
const OWNER: &str = r"
local sid = redis.call('HGET', KEYS[1], 'sid')
if not sid then return {} end
local fields = redis.call('HMGET', ARGV[1] .. sid, 'user', 'account')
if not fields[1] or not fields[2] then return {} end
return {sid, fields[1], fields[2]}
";

/// KEYS[1]: the user's set of sessions. ARGV: the session key prefix, the revocation marker
/// prefix, the markers' lifetime (ms). Ends every session of the set and marks it revoked.
const END_ALL: &str = r"
local sids = redis.call('SMEMBERS', KEYS[1])
for _, sid in ipairs(sids) do
  redis.call('DEL', ARGV[1] .. sid)
  redis.call('SET', ARGV[2] .. sid, '1', 'PX', ARGV[3])
end
redis.call('DEL', KEYS[1])
return #sids
";

/// The prefix (under the configured one) of a revoked session's marker, read by admission.
pub const REVOKED_SESSION_PREFIX: &str = "revoked-session:";

static START_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(START));
static ROTATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ROTATE));
static END_ALL_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(END_ALL));
static OWNER_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(OWNER));

/// The scripts this module runs, for loading at start-up.
pub fn scripts() -> [&'static Script; 4] {
    [
        &START_SCRIPT,
        &ROTATE_SCRIPT,
        &END_ALL_SCRIPT,
        &OWNER_SCRIPT,
    ]
}

#[derive(Clone)]
pub struct SessionStore {
    pool: Redis,
    keys: RedisKeys,
    /// Where revocations are recorded first.
    database: PgPool,
    /// How long a revoked session's access tokens may still be presented (their lifetime and
    /// the clock-skew allowance): how long a revocation must be remembered.
    revocation_lifetime: Duration,
    lifetime: Duration,
    /// How long after a rotation the rotated token still answers its successor.
    reuse_grace: Duration,
    /// The key successors are derived with.
    successor_key: Hmac<Sha256>,
}

impl SessionStore {
    /// `secret` is the server secret the successor key is derived from (`JWT_SECRET`);
    /// `access_lifetime` the access tokens' lifetime.
    pub fn new(
        pool: Redis,
        keys: RedisKeys,
        database: PgPool,
        access_lifetime: Duration,
        lifetime: Duration,
        reuse_grace: Duration,
        secret: &SecretString,
    ) -> Self {
        let hmac = |key: &[u8]| {
            Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length")
        };
        let mut derive = hmac(secret.expose_secret().as_bytes());
        derive.update(b"supportdesk refresh-token successor v1");
        Self {
            pool,
            keys,
            database,
            revocation_lifetime: access_lifetime + REVOCATION_MARGIN,
            lifetime,
            reuse_grace,
            successor_key: hmac(&derive.finalize().into_bytes()),
        }
    }

    fn expires_at(&self) -> DateTime<Utc> {
        self.expires_after(Utc::now())
    }

    fn expires_after(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        at + chrono::Duration::from_std(self.lifetime).unwrap_or(chrono::Duration::MAX)
    }

    /// Starts a session for a user who just logged in.
    pub async fn start(
        &self,
        user_id: UserId,
        account_id: AccountId,
    ) -> AppResult<(SessionId, RefreshToken, DateTime<Utc>)> {
        let session_id = SessionId::generate();
        let token = RefreshToken::generate();
        let mut connection = self.pool.get().await?;
        START_SCRIPT
            .key(self.keys.key(&format!("session:{session_id}")))
            .key(self.keys.key(&format!("refresh:{}", token.hash())))
            .key(self.keys.key(&format!("user-sessions:{user_id}")))
            .arg(session_id.to_string())
            .arg(user_id.to_string())
            .arg(account_id.to_string())
            .arg(self.lifetime.as_secs())
            .invoke_async::<i64>(&mut connection)
            .await?;
        Ok((session_id, token, self.expires_at()))
    }

    /// The session `presented` belongs to, if it still exists; uses nothing up.
    pub async fn owner_of(&self, presented: &RefreshToken) -> AppResult<Option<SessionOwner>> {
        let mut connection = self.pool.get().await?;
        let answer: Vec<String> = OWNER_SCRIPT
            .key(self.keys.key(&format!("refresh:{}", presented.hash())))
            .arg(self.keys.key("session:"))
            .invoke_async(&mut connection)
            .await?;
        let [sid, user, account] = answer.as_slice() else {
            return Ok(None);
        };
        let corrupt = || AppError::internal(anyhow::anyhow!("malformed session record"));
        Ok(Some(SessionOwner {
            session_id: SessionId::parse(sid).map_err(|_| corrupt())?,
            user_id: UserId::parse(user).map_err(|_| corrupt())?,
            account_id: AccountId::parse(account).map_err(|_| corrupt())?,
        }))
    }

    /// Uses `presented` up and, if it was live (or rotated within the grace window), returns the
    /// session's next token.
    pub async fn rotate(&self, presented: &RefreshToken) -> AppResult<RefreshTokenOutcome> {
        let next = presented.successor(&self.successor_key);
        let presented_hash = presented.hash();
        let mut connection = self.pool.get().await?;
        let answer: Vec<String> = ROTATE_SCRIPT
            .key(self.keys.key(&format!("refresh:{presented_hash}")))
            .key(self.keys.key(&format!("refresh:{}", next.hash())))
            .key(self.keys.key(&format!("refresh-grace:{presented_hash}")))
            .arg(self.keys.key("session:"))
            .arg(self.lifetime.as_secs())
            .arg(self.keys.key("user-sessions:"))
            .arg(u64::try_from(self.reuse_grace.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut connection)
            .await?;
        let owner = |answer: &[String]| -> AppResult<SessionOwner> {
            let corrupt = || AppError::internal(anyhow::anyhow!("malformed session record"));
            Ok(SessionOwner {
                session_id: SessionId::parse(answer.get(1).ok_or_else(corrupt)?)
                    .map_err(|_| corrupt())?,
                user_id: UserId::parse(answer.get(2).ok_or_else(corrupt)?)
                    .map_err(|_| corrupt())?,
                account_id: AccountId::parse(answer.get(3).ok_or_else(corrupt)?)
                    .map_err(|_| corrupt())?,
            })
        };
        Ok(match answer.first().map(String::as_str) {
            Some("rotated") => {
                let rotated_at = answer
                    .get(4)
                    .and_then(|millis| millis.parse::<i64>().ok())
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
                    .ok_or_else(|| {
                        AppError::internal(anyhow::anyhow!("malformed rotation time"))
                    })?;
                RefreshTokenOutcome::Rotated {
                    owner: owner(&answer)?,
                    next,
                    rotated_at,
                    expires_at: self.expires_after(rotated_at),
                }
            }
            Some("reused") => RefreshTokenOutcome::Reused {
                owner: owner(&answer)?,
            },
            _ => RefreshTokenOutcome::Invalid,
        })
    }

    /// Until when a revocation recorded now must be remembered in PostgreSQL: as long as the
    /// session's refresh tokens may live, not only its access tokens. The Redis step that ends
    /// the session follows the record and may fail (the call answers UNAVAILABLE, and a reset's
    /// retry finds its link used): the refresh tokens then stay in Redis for their lifetime, and
    /// only this row refuses them (`RefreshToken` reads it).
    pub fn revoked_until(&self) -> DateTime<Utc> {
        let remembered = self.lifetime.max(self.revocation_lifetime) + REVOCATION_MARGIN;
        Utc::now() + chrono::Duration::from_std(remembered).unwrap_or(chrono::Duration::MAX)
    }

    /// Ends one session at once: recorded in PostgreSQL, then (one Redis step) its refresh
    /// tokens stop working and its access tokens are refused from the next call on.
    pub async fn end(&self, session_id: SessionId, user_id: UserId) -> AppResult<()> {
        {
            let mut conn = db::connection(&self.database).await?;
            RevokedSessionRow::record(
                &mut conn,
                user_id.as_uuid(),
                &[session_id.as_uuid()],
                self.revoked_until(),
            )
            .await?;
        }
        let mut connection = self.pool.get().await?;
        redis::pipe()
            .atomic()
            .del(self.keys.key(&format!("session:{session_id}")))
            .srem(
                self.keys.key(&format!("user-sessions:{user_id}")),
                session_id.to_string(),
            )
            .cmd("SET")
            .arg(self.revocation_key(session_id))
            .arg(1)
            .arg("PX")
            .arg(u64::try_from(self.revocation_lifetime.as_millis()).unwrap_or(u64::MAX))
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    /// The sessions `user_id` has now (to record their revocation before ending them).
    pub async fn sessions_of(&self, user_id: UserId) -> AppResult<Vec<SessionId>> {
        let mut connection = self.pool.get().await?;
        let sids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.key(&format!("user-sessions:{user_id}")))
            .query_async(&mut connection)
            .await?;
        Ok(sids
            .iter()
            .filter_map(|sid| SessionId::parse(sid).ok())
            .collect())
    }

    /// Ends every session of `user_id` at once: recorded in PostgreSQL, then ended and marked
    /// revoked in Redis (one script); returns how many there were.
    pub async fn end_all(&self, user_id: UserId) -> AppResult<u32> {
        let sessions = self.sessions_of(user_id).await?;
        {
            let mut conn = db::connection(&self.database).await?;
            let ids: Vec<uuid::Uuid> = sessions.iter().map(|sid| sid.as_uuid()).collect();
            RevokedSessionRow::record(&mut conn, user_id.as_uuid(), &ids, self.revoked_until())
                .await?;
        }
        self.end_recorded(user_id).await
    }

    /// Ends and marks revoked every session of `user_id` in Redis, once their revocation is
    /// recorded in PostgreSQL (by [`Self::end_all`], or by the caller's own statement).
    pub async fn end_recorded(&self, user_id: UserId) -> AppResult<u32> {
        let mut connection = self.pool.get().await?;
        let ended: u32 = END_ALL_SCRIPT
            .key(self.keys.key(&format!("user-sessions:{user_id}")))
            .arg(self.keys.key("session:"))
            .arg(self.keys.key(REVOKED_SESSION_PREFIX))
            .arg(u64::try_from(self.revocation_lifetime.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut connection)
            .await?;
        Ok(ended)
    }

    fn revocation_key(&self, session_id: SessionId) -> String {
        self.keys
            .key(&format!("{REVOKED_SESSION_PREFIX}{session_id}"))
    }
}

/// How much longer than the access tokens' lifetime a revocation is remembered: the clock-skew
/// allowance on a token's issue time and expiry, and then some.
const REVOCATION_MARGIN: Duration = Duration::from_secs(30);
