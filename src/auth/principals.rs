//! What authentication must know fresh on every call (is this user still active, and with which
//! role; is this API key still valid), kept in Redis so that it is read in the same round trip
//! as the rate-limit decision ([`crate::rate_limit::RateLimiter::admit`]) instead of from
//! PostgreSQL on every call.
//!
//! PostgreSQL stays the truth, and the copy can never be staler than one call:
//! - A reader that finds nothing takes a *lease* (`lease:<nonce>`, in the same script as the
//!   lookup), reads PostgreSQL, and stores what it read only if its lease is still there.
//! - A writer that changes a principal (deactivation, role change, key revocation) first
//!   replaces whatever is stored with a *change marker* (`changing:<nonce>`), before its
//!   transaction commits; while the marker is there every reader goes to PostgreSQL. After the
//!   commit the writer swaps its own marker for the new state. A reader that read PostgreSQL
//!   before the commit cannot store its (old) answer: the marker replaced its lease.
//! - Writers at once share the marker (`changing+:<nonce>,<nonce>`): each joins it, and each
//!   leaves it after its commit. None of them stores its state, since the last to settle need
//!   not be the last to commit (its state could lack the other's change); the last to leave
//!   removes the marker, and the next reader stores what PostgreSQL has after both.
//! - A writer that cannot set the marker (Redis down) fails before its transaction commits, so
//!   no change is ever committed without the marker in place. A marker whose writer died expires
//!   after [`ChangeWindow`], longer than any transaction may run; until then readers use
//!   PostgreSQL.
//!
//! Keys, under the configured prefix: `principal:user:<user id>`,
//! `principal:key:<SHA-256 of the API key, hex>`. Values: `user|<account>|<role>|<active 0/1>` and
//! `key|<account>|<key id>|<role,role>|<revoked 0/1>`.

use std::sync::LazyLock;
use std::time::Duration;

use rand::Rng;
use redis::Script;

use crate::domain::{AccountId, ApiKeyId, Role, SessionId, UserId};
use crate::errors::{AppError, AppResult, Dependency};
use crate::redis::connection::Redis;
use crate::redis::keys::RedisKeys;

/// How long a stored state lives without being read again; any change replaces it at once.
const STATE_TTL: Duration = Duration::from_secs(3600);
/// How long a revocation marker put back from PostgreSQL lives: longer than any access token
/// (15 minutes by default); a marker that outlives its session's tokens costs a few bytes.
const REMARK_TTL: Duration = Duration::from_secs(3600);
/// How long a reader's lease lasts: a PostgreSQL read that takes longer stores nothing.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// Replaces KEYS[1] with ARGV[2] (for ARGV[3] ms) only when it still holds ARGV[1]: a reader's
/// lease or a writer's marker. Returns 1 when it did.
const SWAP_IF_STILL: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  end
  return 1
end
return 0
";

/// Marks KEYS[1] as changing for writer ARGV[1], for ARGV[2] ms: joins the writers already
/// there (the marker becomes shared) or replaces whatever else is stored.
const MARK: &str = r"
local current = redis.call('GET', KEYS[1])
local writers = current and string.match(current, '^changing%+?:(.+)$')
if writers then
  redis.call('SET', KEYS[1], 'changing+:' .. writers .. ',' .. ARGV[1], 'PX', ARGV[2])
else
  redis.call('SET', KEYS[1], 'changing:' .. ARGV[1], 'PX', ARGV[2])
end
return 1
";

/// Takes writer ARGV[1] off KEYS[1]'s marker after its commit. Others still writing: the marker
/// stays (2). The last writer: its state ARGV[2] is stored for ARGV[3] ms when it wrote alone,
/// and the key is removed when it did not or stores nothing (1). Not on the marker: nothing (0).
const SETTLE: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local shared, writers = string.match(current, '^changing(%+?):(.+)$')
if not writers then return 0 end
local others = {}
local mine = false
for writer in string.gmatch(writers, '[^,]+') do
  if writer == ARGV[1] and not mine then mine = true else others[#others + 1] = writer end
end
if not mine then return 0 end
if #others > 0 then
  redis.call('SET', KEYS[1], 'changing+:' .. table.concat(others, ','), 'KEEPTTL')
  return 2
end
if shared == '+' or ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
";

static SWAP_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SWAP_IF_STILL));
static MARK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(MARK));
static SETTLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SETTLE));

/// The scripts this module runs, for loading at start-up.
pub fn scripts() -> [&'static Script; 3] {
    [&SWAP_SCRIPT, &MARK_SCRIPT, &SETTLE_SCRIPT]
}

/// Whose state: a user (from a verified access token) or an API key (by its secret's hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalKey {
    User(UserId),
    ApiKey { secret_hash: Vec<u8> },
}

impl PrincipalKey {
    fn suffix(&self) -> String {
        match self {
            Self::User(user_id) => format!("principal:user:{user_id}"),
            Self::ApiKey { secret_hash } => format!("principal:key:{}", hex::encode(secret_hash)),
        }
    }
}

/// What PostgreSQL says of a principal, as kept in Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalState {
    User {
        account_id: AccountId,
        role: Role,
        active: bool,
    },
    ApiKey {
        account_id: AccountId,
        key_id: ApiKeyId,
        roles: Vec<Role>,
        revoked: bool,
    },
}

impl PrincipalState {
    fn encode(&self) -> String {
        match self {
            Self::User {
                account_id,
                role,
                active,
            } => format!("user|{account_id}|{role}|{}", u8::from(*active)),
            Self::ApiKey {
                account_id,
                key_id,
                roles,
                revoked,
            } => {
                let roles: Vec<&str> = roles.iter().map(Role::as_str).collect();
                format!(
                    "key|{account_id}|{key_id}|{}|{}",
                    roles.join(","),
                    u8::from(*revoked)
                )
            }
        }
    }

    /// The state in a stored value; `None` for a lease, a marker, or anything unreadable.
    pub fn decode(value: &str) -> Option<Self> {
        let flag = |text: &str| match text {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        };
        let fields: Vec<&str> = value.split('|').collect();
        match fields.as_slice() {
            ["user", account, role, active] => Some(Self::User {
                account_id: AccountId::parse(account).ok()?,
                role: Role::parse(role).ok()?,
                active: flag(active)?,
            }),
            ["key", account, key, roles, revoked] => Some(Self::ApiKey {
                account_id: AccountId::parse(account).ok()?,
                key_id: ApiKeyId::parse(key).ok()?,
                roles: roles
                    .split(',')
                    .filter(|role| !role.is_empty())
                    .map(|role| Role::parse(role).ok())
                    .collect::<Option<_>>()?,
                revoked: flag(revoked)?,
            }),
            _ => None,
        }
    }
}

/// What the admission round trip found for a principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KnownState {
    /// A stored state: no database read needed.
    Stored(PrincipalState),
    /// Nothing usable: read PostgreSQL; with a lease, the answer may be stored.
    Unknown { lease: Option<Lease> },
}

/// A reader's right to store what it reads, taken in the admission script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease(String);

impl Lease {
    /// A new random lease token: what the admission script stores when it finds nothing.
    pub fn new() -> Self {
        Self(format!("lease:{}", random_nonce()))
    }

    pub fn value(&self) -> &str {
        &self.0
    }
}

impl Default for Lease {
    fn default() -> Self {
        Self::new()
    }
}

impl KnownState {
    /// What the admission script answered: the value it read and whether it took `lease`.
    pub fn from_read(value: Option<&str>, lease: Lease, took_lease: bool) -> Self {
        match value.and_then(PrincipalState::decode) {
            Some(state) => Self::Stored(state),
            None => Self::Unknown {
                lease: took_lease.then_some(lease),
            },
        }
    }
}

/// How long a change marker outlives its writer: longer than any request (so any transaction)
/// may run.
#[derive(Clone, Copy, Debug)]
pub struct ChangeWindow(pub Duration);

impl ChangeWindow {
    /// Twice the longest request deadline and ten seconds more.
    pub fn for_requests_up_to(request_timeout: Duration) -> Self {
        Self(request_timeout * 2 + Duration::from_secs(10))
    }
}

/// Principals' states in Redis. Cheap to clone.
#[derive(Clone)]
pub struct PrincipalStates {
    redis: Redis,
    keys: RedisKeys,
    change_window: ChangeWindow,
}

impl PrincipalStates {
    pub fn new(redis: Redis, keys: RedisKeys, change_window: ChangeWindow) -> Self {
        Self {
            redis,
            keys,
            change_window,
        }
    }

    /// The Redis key of `principal`'s state.
    pub fn key(&self, principal: &PrincipalKey) -> String {
        match principal {
            // Every authenticated call makes this key: written without the formatting machinery.
            PrincipalKey::User(user_id) => {
                let mut text = uuid::Uuid::encode_buffer();
                let id = user_id.as_uuid().hyphenated().encode_lower(&mut text);
                self.keys.key_of_parts(&["principal:user:", id])
            }
            PrincipalKey::ApiKey { .. } => self.keys.key(&principal.suffix()),
        }
    }

    /// The Redis key of session `session_id`'s revocation marker ([`super::sessions`]), which
    /// the admission script reads beside the caller's state.
    pub fn revoked_session_key(&self, session_id: SessionId) -> String {
        let mut text = uuid::Uuid::encode_buffer();
        let id = session_id.as_uuid().hyphenated().encode_lower(&mut text);
        self.keys
            .key_of_parts(&[super::sessions::REVOKED_SESSION_PREFIX, id])
    }

    /// Puts back the revocation marker of a session PostgreSQL says was revoked (Redis lost
    /// it), for [`REMARK_TTL`]. Best effort: without it the next call asks PostgreSQL again
    /// only if Redis has no state for the caller either.
    pub async fn remark_revoked(&self, session_id: SessionId) {
        let millis = u64::try_from(REMARK_TTL.as_millis()).unwrap_or(u64::MAX);
        let marked = async {
            let mut connection = self.redis.get().await?;
            redis::cmd("SET")
                .arg(self.revoked_session_key(session_id))
                .arg(1)
                .arg("PX")
                .arg(millis)
                .query_async::<()>(&mut connection)
                .await?;
            Ok::<_, AppError>(())
        };
        if let Err(error) = marked.await {
            tracing::debug!(%error, "a revoked session's marker was not put back");
        }
    }

    /// Stores what a leaseholder read, if its lease still stands. Best effort: a failure only
    /// means the next call reads PostgreSQL again.
    pub async fn store(&self, principal: &PrincipalKey, lease: &Lease, state: &PrincipalState) {
        if let Err(error) = self.swap(principal, lease.value(), Some(state)).await {
            tracing::debug!(%error, "principal state not stored");
        }
    }

    /// Marks `principal` as changing, before the transaction that changes it commits. Fails
    /// (UNAVAILABLE) when Redis cannot take the marker: the caller must not commit then.
    pub async fn changing(&self, principal: PrincipalKey) -> AppResult<ChangeMarker> {
        let writer = random_nonce();
        let window = u64::try_from(self.change_window.0.as_millis()).unwrap_or(u64::MAX);
        let mut connection = self.redis.get().await?;
        MARK_SCRIPT
            .key(self.key(&principal))
            .arg(&writer)
            .arg(window)
            .invoke_async::<i64>(&mut connection)
            .await
            .map_err(|error| AppError::Unavailable {
                dependency: Dependency::Redis,
                source: anyhow::anyhow!(error).context("cannot mark a principal as changing"),
            })?;
        Ok(ChangeMarker {
            states: self.clone(),
            principal,
            writer,
        })
    }

    async fn swap(
        &self,
        principal: &PrincipalKey,
        expected: &str,
        state: Option<&PrincipalState>,
    ) -> AppResult<bool> {
        let mut connection = self.redis.get().await?;
        let swapped: i64 = SWAP_SCRIPT
            .key(self.key(principal))
            .arg(expected)
            .arg(state.map(PrincipalState::encode).unwrap_or_default())
            .arg(u64::try_from(STATE_TTL.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut connection)
            .await?;
        Ok(swapped == 1)
    }
}

/// A writer's place on a principal's change marker; settled after the commit.
pub struct ChangeMarker {
    states: PrincipalStates,
    principal: PrincipalKey,
    /// This writer's nonce on the marker.
    writer: String,
}

impl ChangeMarker {
    /// The principal whose change this marks.
    pub fn principal(&self) -> &PrincipalKey {
        &self.principal
    }

    /// After the transaction: takes this writer off the marker, and stores the committed state
    /// when it wrote alone (or, when the change did not commit, or other writers shared the
    /// marker, removes the marker once the last of them has settled). A failure is logged: the
    /// marker then expires by itself, and readers use PostgreSQL until it does.
    pub async fn settle(self, committed: Option<PrincipalState>) {
        let settled = async {
            let mut connection = self.states.redis.get().await?;
            SETTLE_SCRIPT
                .key(self.states.key(&self.principal))
                .arg(&self.writer)
                .arg(
                    committed
                        .as_ref()
                        .map(PrincipalState::encode)
                        .unwrap_or_default(),
                )
                .arg(u64::try_from(STATE_TTL.as_millis()).unwrap_or(u64::MAX))
                .invoke_async::<i64>(&mut connection)
                .await?;
            Ok::<_, AppError>(())
        };
        if let Err(error) = settled.await {
            tracing::warn!(%error, "a principal's change marker stays until it expires");
        }
    }
}

fn random_nonce() -> String {
    // ThreadRng is a CSPRNG seeded from the OS: no system call for each request's lease.
    hex::encode(rand::thread_rng().r#gen::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_survive_their_encoding_and_markers_are_not_states() {
        let user = PrincipalState::User {
            account_id: AccountId::from_uuid(uuid::Uuid::now_v7()),
            role: Role::Agent,
            active: false,
        };
        let key = PrincipalState::ApiKey {
            account_id: AccountId::from_uuid(uuid::Uuid::now_v7()),
            key_id: ApiKeyId::from_uuid(uuid::Uuid::now_v7()),
            roles: vec![Role::Agent, Role::Admin],
            revoked: true,
        };
        assert_eq!(PrincipalState::decode(&user.encode()), Some(user));
        assert_eq!(PrincipalState::decode(&key.encode()), Some(key));
        assert_eq!(PrincipalState::decode("changing:abc"), None);
        assert_eq!(PrincipalState::decode(Lease::new().value()), None);
        assert_eq!(PrincipalState::decode("user|x|admin|1"), None);
    }
}
