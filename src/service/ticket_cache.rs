//! Cache-aside for GetTicket, in Redis, per account: `ticket:<account>:<id>`.
//!
//! Entries carry the ticket's version, and a Lua script stores an entry only when it is newer
//! than the one cached. Every write stores the ticket as it committed (a deleted ticket as a
//! tombstone), so a reader that loaded an older row before the write cannot put it back after:
//! no stale read follows a write whose entry reached Redis. When Redis fails, reads and writes
//! go on without it for a short while (logged and counted), then try it again; the database
//! stays the truth.
//!
//! A write whose entry could not reach Redis (Redis down, or this instance cut off from it) left
//! the previous version there. The instance keeps such entries ([`MAX_UNSYNCED`] at most) and
//! stores them as soon as it reaches Redis again: [`TicketCache::run_repairs`] tries every
//! [`REPAIR_INTERVAL`], and every cache operation first. Until then, instances that do reach
//! Redis may serve the previous version; an instance that stops first leaves it at most the TTL.
//!
//! GetTicket declares `prefetch: PREFETCH_TICKET`: admission reads the entry in the same Redis
//! round trip as the caller's quota and state, so a hit costs no round trip of its own.
//!
//! An entry is the cache's own serde type, [`CachedTicket`], stamped with [`SCHEMA`]: never a
//! database row, so a migration cannot silently change what the cache holds, and an entry of
//! another schema (written by an older or newer release) is a miss, not an error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
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

/// How many entries that could not be stored an instance keeps for repair; past that, the oldest
/// version in Redis may be served until its TTL (logged).
pub const MAX_UNSYNCED: usize = 10_000;

/// How often the repair of entries that could not be stored is tried.
pub const REPAIR_INTERVAL: Duration = Duration::from_secs(1);

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
    /// Entries of committed writes that did not reach Redis, by key: (version, payload).
    unsynced: Arc<Mutex<HashMap<String, (i64, String)>>>,
    /// `unsynced.len()`, read without the lock on every cache operation.
    unsynced_count: Arc<AtomicUsize>,
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
            unsynced: Arc::new(Mutex::new(HashMap::new())),
            unsynced_count: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Stores the entries that could not reach Redis every [`REPAIR_INTERVAL`] until `stop`.
    pub async fn run_repairs(self, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(REPAIR_INTERVAL) => {}
            }
            self.repair().await;
        }
    }

    /// Stores every entry kept for repair, unless Redis is resting; one that fails again is
    /// kept, and Redis rests.
    async fn repair(&self) {
        if self.unsynced_count.load(Ordering::Relaxed) == 0 || self.resting() {
            return;
        }
        let pending: Vec<(String, (i64, String))> = {
            let mut unsynced = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
            self.unsynced_count.store(0, Ordering::Relaxed);
            unsynced.drain().collect()
        };
        let mut repaired = 0_usize;
        let mut pending = pending.into_iter();
        for (key, (version, payload)) in pending.by_ref() {
            if let Err(error) = self.store_payload(&key, version, &payload).await {
                self.failed("repair", &error);
                self.keep_unsynced(key, version, payload);
                break;
            }
            repaired += 1;
        }
        for (key, (version, payload)) in pending {
            self.keep_unsynced(key, version, payload);
        }
        if repaired > 0 {
            tracing::info!(
                repaired,
                "ticket cache entries written while Redis was unreachable are stored now"
            );
        }
    }

    /// Keeps an entry that could not reach Redis, unless a newer one of the key is kept.
    fn keep_unsynced(&self, key: String, version: i64, payload: String) {
        let mut unsynced = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((kept, _)) = unsynced.get(&key)
            && *kept >= version
        {
            return;
        }
        if unsynced.len() >= MAX_UNSYNCED && !unsynced.contains_key(&key) {
            tracing::warn!(
                key,
                "too many ticket cache entries await Redis: this one may be stale there until its TTL"
            );
            return;
        }
        unsynced.insert(key, (version, payload));
        self.unsynced_count.store(unsynced.len(), Ordering::Relaxed);
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
        self.repair().await;
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
        let Ok(payload) = serde_json::to_string(entry) else {
            return;
        };
        let key = self.entry_key(account_id, id);
        if self.resting() {
            self.keep_unsynced(key, entry.version, payload);
            return;
        }
        self.repair().await;
        if let Err(error) = self.store_payload(&key, entry.version, &payload).await {
            self.failed("store", &error);
            self.keep_unsynced(key, entry.version, payload);
        }
    }

    async fn store_payload(&self, key: &str, version: i64, payload: &str) -> AppResult<()> {
        let mut connection = self.pool.get().await?;
        STORE_SCRIPT
            .key(key)
            .arg(payload)
            .arg(version)
            .arg(self.ttl.as_secs().max(1))
            .invoke_async::<i64>(&mut connection)
            .await?;
        Ok(())
    }
}
