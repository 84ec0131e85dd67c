//! Login sessions and their rotating refresh tokens, in Redis.
//!
//! A login starts a session (a family of refresh tokens). Every refresh marks the presented
//! token used and issues the next one; presenting a used token again means it was stolen or
//! replayed, so the whole session is revoked (RFC 9700, section 4.14.2). Only SHA-256 hashes of
//! tokens are stored, and every key expires with the refresh-token lifetime. Each step is one
//! Lua script, so concurrent refreshes of one token cannot both succeed.
//!
//! Keys, under the configured prefix: `session:<sid>` (hash: user, account),
//! `refresh:<sha256>` (hash: sid, state live|used), `user-sessions:<uid>` (set of sids).

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use rand::rngs::OsRng;
use redis::Script;
use sha2::{Digest, Sha256};

use crate::domain::{AccountId, SessionId, UserId};
use crate::errors::{AppError, AppResult};
use crate::redis_pool::{Redis, RedisKeys};

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
    /// The token was live: here is the next one.
    Rotated {
        owner: SessionOwner,
        next: RefreshToken,
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

const ROTATE: &str = r"
local sid = redis.call('HGET', KEYS[1], 'sid')
if not sid then return {'invalid'} end
local session = ARGV[1] .. sid
local user = redis.call('HGET', session, 'user')
if not user then return {'invalid'} end
local account = redis.call('HGET', session, 'account')
if redis.call('HGET', KEYS[1], 'state') ~= 'live' then
  redis.call('DEL', session)
  redis.call('SREM', ARGV[3] .. user, sid)
  return {'reused', sid, user, account}
end
redis.call('HSET', KEYS[1], 'state', 'used')
redis.call('HSET', KEYS[2], 'sid', sid, 'state', 'live')
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', session, ARGV[2])
redis.call('EXPIRE', ARGV[3] .. user, ARGV[2])
return {'rotated', sid, user, account}
";

const END_ALL: &str = r"
local sids = redis.call('SMEMBERS', KEYS[1])
for _, sid in ipairs(sids) do
  redis.call('DEL', ARGV[1] .. sid)
end
redis.call('DEL', KEYS[1])
return #sids
";

static START_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(START));
static ROTATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ROTATE));
static END_ALL_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(END_ALL));

/// The scripts this module runs, for loading at start-up.
pub fn scripts() -> [&'static Script; 3] {
    [&START_SCRIPT, &ROTATE_SCRIPT, &END_ALL_SCRIPT]
}

#[derive(Clone)]
pub struct SessionStore {
    pool: Redis,
    keys: RedisKeys,
    lifetime: Duration,
}

impl SessionStore {
    pub fn new(pool: Redis, keys: RedisKeys, lifetime: Duration) -> Self {
        Self {
            pool,
            keys,
            lifetime,
        }
    }

    fn expires_at(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::from_std(self.lifetime).unwrap_or(chrono::Duration::MAX)
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

    /// Uses `presented` up and, if it was live, returns the session's next token.
    pub async fn rotate(&self, presented: &RefreshToken) -> AppResult<RefreshTokenOutcome> {
        let next = RefreshToken::generate();
        let mut connection = self.pool.get().await?;
        let answer: Vec<String> = ROTATE_SCRIPT
            .key(self.keys.key(&format!("refresh:{}", presented.hash())))
            .key(self.keys.key(&format!("refresh:{}", next.hash())))
            .arg(self.keys.key("session:"))
            .arg(self.lifetime.as_secs())
            .arg(self.keys.key("user-sessions:"))
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
            Some("rotated") => RefreshTokenOutcome::Rotated {
                owner: owner(&answer)?,
                next,
                expires_at: self.expires_at(),
            },
            Some("reused") => RefreshTokenOutcome::Reused {
                owner: owner(&answer)?,
            },
            _ => RefreshTokenOutcome::Invalid,
        })
    }

    /// Ends one session: its refresh tokens stop working.
    pub async fn end(&self, session_id: SessionId, user_id: UserId) -> AppResult<()> {
        let mut connection = self.pool.get().await?;
        redis::pipe()
            .atomic()
            .del(self.keys.key(&format!("session:{session_id}")))
            .srem(
                self.keys.key(&format!("user-sessions:{user_id}")),
                session_id.to_string(),
            )
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    /// Ends every session of `user_id`; returns how many there were.
    pub async fn end_all(&self, user_id: UserId) -> AppResult<u32> {
        let mut connection = self.pool.get().await?;
        let ended: u32 = END_ALL_SCRIPT
            .key(self.keys.key(&format!("user-sessions:{user_id}")))
            .arg(self.keys.key("session:"))
            .invoke_async(&mut connection)
            .await?;
        Ok(ended)
    }
}
