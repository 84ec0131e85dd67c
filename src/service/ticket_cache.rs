//! Cache-aside for GetTicket, in Redis, per account: `ticket:<account>:<id>`.
//!
//! Entries carry the ticket's version, and a Lua script stores an entry only when it is newer
//! than the one cached. Every write stores the ticket as it committed (a deleted ticket as a
//! tombstone), so a reader that loaded an older row before the write cannot put it back after:
//! no stale read follows a write. When Redis fails, reads and writes go on without it for a
//! short while (logged and counted), then try it again; the database stays the truth.
//!
//! GetTicket declares `prefetch: PREFETCH_TICKET`: admission reads the entry in the same Redis
//! round trip as the caller's quota and state, so a hit costs no round trip of its own.
//!
//! An entry is the cache's own serde type, [`CachedTicket`], stamped with [`SCHEMA`]: never a
//! database row, so a migration cannot silently change what the cache holds, and an entry of
//! another schema (written by an older or newer release) is a miss, not an error.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    AccountId, Email, InvalidValue, Ticket, TicketDescription, TicketId, TicketPriority,
    TicketStatus, TicketSubject, UserId,
};
use crate::errors::AppResult;
use crate::metrics::Metrics;
use crate::redis_pool::{Redis, RedisBackoff, RedisKeys};

/// How long the cache is left alone after Redis failed.
const BACKOFF: Duration = Duration::from_secs(2);

/// Stores ARGV[1] under KEYS[1] for ARGV[3] seconds unless the entry there has a version at
/// least ARGV[2].
const STORE_IF_NEWER: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and tonumber(decoded.version) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
";

static STORE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(STORE_IF_NEWER));

/// The scripts this module runs, for loading at start-up.
pub fn scripts() -> [&'static Script; 1] {
    [&STORE_SCRIPT]
}

/// The version of [`CachedTicket`]'s layout; bump it with any change to that type.
const SCHEMA: u32 = 2;

/// A cache entry: the ticket, or a tombstone for a deleted ticket, at the ticket's `version`
/// (which the store script compares).
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    version: i64,
    #[serde(default)]
    schema: u32,
    #[serde(default)]
    ticket: Option<serde_json::Value>,
}

/// A ticket as the cache keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct CachedTicket {
    id: Uuid,
    account_id: Uuid,
    subject: String,
    description: String,
    priority: String,
    status: String,
    requester_id: Uuid,
    requester_email: String,
    assignee_id: Option<Uuid>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    version: i64,
}

impl From<&Ticket> for CachedTicket {
    fn from(ticket: &Ticket) -> Self {
        Self {
            id: ticket.id.as_uuid(),
            account_id: ticket.account_id.as_uuid(),
            subject: ticket.subject.as_str().to_owned(),
            description: ticket.description.as_str().to_owned(),
            priority: ticket.priority.as_str().to_owned(),
            status: ticket.status.as_str().to_owned(),
            requester_id: ticket.requester_id.as_uuid(),
            requester_email: ticket.requester_email.as_str().to_owned(),
            assignee_id: ticket.assignee_id.map(|id| id.as_uuid()),
            created_at: ticket.created_at,
            updated_at: ticket.updated_at,
            version: ticket.version,
        }
    }
}

impl TryFrom<CachedTicket> for Ticket {
    type Error = InvalidValue;

    /// Parsed like any input: an entry that no longer parses is a miss.
    fn try_from(cached: CachedTicket) -> Result<Self, InvalidValue> {
        Ok(Self {
            id: TicketId::from_uuid(cached.id),
            account_id: AccountId::from_uuid(cached.account_id),
            subject: TicketSubject::parse(&cached.subject)?,
            description: TicketDescription::parse(&cached.description)?,
            priority: TicketPriority::parse(&cached.priority)?,
            status: TicketStatus::parse(&cached.status)?,
            requester_id: UserId::from_uuid(cached.requester_id),
            requester_email: Email::parse(&cached.requester_email)?,
            assignee_id: cached.assignee_id.map(UserId::from_uuid),
            created_at: cached.created_at,
            updated_at: cached.updated_at,
            version: cached.version,
        })
    }
}

/// A ticket cache entry that admission read in its round trip (`PREFETCH_TICKET`), handed to
/// the handler as a request extension.
#[derive(Clone, Debug)]
pub struct PrefetchedEntry {
    pub key: String,
    pub value: Option<String>,
}

/// What the cache knows about a ticket.
#[derive(Debug)]
pub enum Cached {
    Ticket(Ticket),
    Deleted,
    Unknown,
}

#[derive(Clone)]
pub struct TicketCache {
    pool: Redis,
    keys: RedisKeys,
    ttl: Duration,
    backoff: RedisBackoff,
    metrics: Metrics,
}

impl TicketCache {
    /// A cache counting its hits, misses and failures in `metrics`.
    pub fn new(pool: Redis, keys: RedisKeys, ttl: Duration, metrics: &Metrics) -> Self {
        Self {
            pool,
            keys,
            ttl,
            backoff: RedisBackoff::new(BACKOFF, metrics.ticket_cache().redis_failures.clone()),
            metrics: metrics.clone(),
        }
    }

    /// The Redis key of a ticket's entry.
    pub fn entry_key(&self, account_id: AccountId, id: TicketId) -> String {
        self.keys.key(&format!("ticket:{account_id}:{id}"))
    }

    fn resting(&self) -> bool {
        self.backoff.resting()
    }

    fn failed(&self, operation: &str, error: &dyn std::fmt::Display) {
        self.backoff.failed();
        tracing::warn!(
            %error,
            operation,
            failures = self.backoff.failures(),
            "ticket cache unavailable: serving from PostgreSQL"
        );
    }

    /// What the cache knows of the ticket: from `prefetched` when admission read its entry
    /// already (no round trip), else from Redis.
    pub async fn get(
        &self,
        account_id: AccountId,
        id: TicketId,
        prefetched: Option<&PrefetchedEntry>,
    ) -> Cached {
        let key = self.entry_key(account_id, id);
        if let Some(prefetched) = prefetched.filter(|prefetched| prefetched.key == key) {
            return self.decode(prefetched.value.as_deref());
        }
        if self.resting() {
            return Cached::Unknown;
        }
        let read = async {
            let mut connection = self.pool.get().await?;
            let raw: Option<String> = connection.get(&key).await?;
            Ok::<_, crate::errors::AppError>(raw)
        };
        match read.await {
            Ok(raw) => self.decode(raw.as_deref()),
            Err(error) => {
                self.failed("get", &error);
                Cached::Unknown
            }
        }
    }

    fn decode(&self, raw: Option<&str>) -> Cached {
        let Some(raw) = raw else {
            self.metrics.ticket_cache().looked_up(false);
            return Cached::Unknown;
        };
        let cached = match serde_json::from_str::<Entry>(raw) {
            Ok(Entry { schema, .. }) if schema != SCHEMA => Cached::Unknown,
            Ok(Entry {
                ticket: Some(ticket),
                ..
            }) => serde_json::from_value::<CachedTicket>(ticket)
                .ok()
                .and_then(|cached| Ticket::try_from(cached).ok())
                .map_or(Cached::Unknown, Cached::Ticket),
            Ok(Entry { ticket: None, .. }) => Cached::Deleted,
            Err(error) => {
                tracing::warn!(%error, "an unreadable ticket cache entry: ignored");
                Cached::Unknown
            }
        };
        let hit = !matches!(cached, Cached::Unknown);
        self.metrics.ticket_cache().looked_up(hit);
        cached
    }

    /// Caches `ticket` unless a newer version is cached already.
    pub async fn store(&self, ticket: &Ticket) {
        let Ok(cached) = serde_json::to_value(CachedTicket::from(ticket)) else {
            return;
        };
        let entry = Entry {
            version: ticket.version,
            schema: SCHEMA,
            ticket: Some(cached),
        };
        self.store_entry(ticket.account_id, ticket.id, &entry).await;
    }

    /// Remembers that the ticket is gone, at `version`.
    pub async fn store_deleted(&self, account_id: AccountId, id: TicketId, version: i64) {
        let entry = Entry {
            version,
            schema: SCHEMA,
            ticket: None,
        };
        self.store_entry(account_id, id, &entry).await;
    }

    async fn store_entry(&self, account_id: AccountId, id: TicketId, entry: &Entry) {
        if self.resting() {
            return;
        }
        let result: AppResult<()> = async {
            let payload = serde_json::to_string(entry)
                .map_err(|error| crate::errors::AppError::internal(anyhow::anyhow!(error)))?;
            let mut connection = self.pool.get().await?;
            STORE_SCRIPT
                .key(self.entry_key(account_id, id))
                .arg(payload)
                .arg(entry.version)
                .arg(self.ttl.as_secs().max(1))
                .invoke_async::<i64>(&mut connection)
                .await?;
            Ok(())
        }
        .await;
        if let Err(error) = result {
            self.failed("store", &error);
        }
    }
}
