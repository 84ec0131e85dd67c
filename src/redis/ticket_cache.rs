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
//! An entry kept longer than the TTL is dropped instead of stored: the previous version has
//! expired by then, and a newer one stored since by another instance may have too.
//!
//! A write whose COMMIT was sent but whose answer never came (the connection lost, the caller
//! gone) may have committed. Whoever wrote it arms an [`Unsettled`] before the COMMIT: unless the
//! answer settles it, it keeps a *marker* for repair, an entry of layout 0 (`sd0:<version>:`)
//! that no release decodes (a miss) and that ranks just above the version the write replaced
//! (below the next one), so that the entry of the version before the write, and any fill of it,
//! give way to it, and the first read of the committed row replaces it. A write that did not
//! commit after all costs misses until the marker's TTL or the next write. The replay of such a
//! write (its client sending it again with its idempotency key, to any instance) reads the
//! ticket as committed and stores it. A read on the instance prefers the entry it keeps for
//! repair to an older one admission prefetched.
//!
//! GetTicket declares `prefetch: PREFETCH_TICKET`: admission reads the entry in the same Redis
//! round trip as the caller's quota and state, so a hit costs no round trip of its own.
//!
//! An entry is the cache's own protobuf message, [`CachedTicket`], behind a header naming its
//! layout and the ticket's version: `sd<SCHEMA>:<version>:` then the message (nothing after the
//! header: a tombstone). Never a database row or an API message, so neither a migration nor an
//! API change silently changes what the cache holds; an entry of another layout (written by an
//! older or newer release, JSON included) is a miss, not an error. A hit decodes a few strings
//! and integers: no JSON, no timestamp parsing. The store script reads the version of an entry
//! of any layout (the header of any `sd<n>:`, or the `version` of the JSON entries of earlier
//! releases), so that instances of two releases never put an older version over a newer one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prost::Message;
use redis::{AsyncCommands, Script};
use tracing::Instrument;
use uuid::Uuid;

use crate::domain::{
    AccountId, Email, InvalidValue, Tag, Ticket, TicketDescription, TicketId, TicketPriority,
    TicketStatus, TicketSubject, UserId,
};
use crate::errors::AppResult;
use crate::redis::backoff::RedisBackoff;
use crate::redis::connection::Redis;
use crate::redis::keys::RedisKeys;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces;

/// How many entries that could not be stored an instance keeps for repair; past that, the oldest
/// version in Redis may be served until its TTL (logged).
pub const MAX_UNSYNCED: usize = 10_000;

/// How often the repair of entries that could not be stored is tried.
pub const REPAIR_INTERVAL: Duration = Duration::from_secs(1);

/// Stores ARGV[1] under KEYS[1] for ARGV[2] seconds unless the entry there ranks at least as
/// high ([`rank`]): its version read from the header of an entry of any layout
/// (`sd<n>:<version>:`, a marker of layout 0 half a version above), or from a JSON entry of an
/// earlier release.
const STORE_IF_NEWER: &str = r"
local function rank(entry)
  local layout, version = string.match(entry, '^sd(%d+):(%-?%d+):')
  if version then
    if layout == '0' then return tonumber(version) * 2 + 1 end
    return tonumber(version) * 2
  end
  local ok, decoded = pcall(cjson.decode, entry)
  if ok and type(decoded) == 'table' and tonumber(decoded.version) then
    return tonumber(decoded.version) * 2
  end
  return nil
end
local current = redis.call('GET', KEYS[1])
if current then
  local held = rank(current)
  if held and held >= rank(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
";

static STORE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(STORE_IF_NEWER));

/// The scripts this module runs, for loading at start-up.
pub fn scripts() -> [&'static Script; 1] {
    [&STORE_SCRIPT]
}

/// The layout of an entry: its header is `sd<SCHEMA>:`. Bump it with any change to
/// [`CachedTicket`] that an older release would misread. (2 was JSON; 3 had no tags, and an
/// entry an older release wrote of a tagged ticket would read back without them; 4 had no
/// group, and would read back a grouped ticket without it; 5 had no custom field values.)
const SCHEMA: u32 = 6;

/// The layout of a marker ([`Unsettled`]): a version and no content, read by no release.
const MARKER: u32 = 0;

/// Where an entry stands among a ticket's entries: by version, a marker just above the version
/// it names (the one a write that may have committed replaced). The store script ranks alike.
fn rank(version: i64, marker: bool) -> i64 {
    version.saturating_mul(2).saturating_add(i64::from(marker))
}

/// The rank of a stored entry of this release's layout or a marker; `None` for anything else.
fn rank_of_entry(raw: &[u8]) -> Option<i64> {
    let rest = raw.strip_prefix(b"sd")?;
    let (layout, rest) = split_number(rest)?;
    let (version, _) = split_number(rest)?;
    match u32::try_from(layout).ok()? {
        MARKER => Some(rank(version, true)),
        SCHEMA => Some(rank(version, false)),
        _ => None,
    }
}

/// A ticket as the cache keeps it. Its version is in the entry's header.
#[derive(Clone, PartialEq, Message)]
struct CachedTicket {
    #[prost(message, optional, tag = "1")]
    id: Option<CachedUuid>,
    #[prost(message, optional, tag = "2")]
    account_id: Option<CachedUuid>,
    #[prost(string, tag = "3")]
    subject: String,
    #[prost(string, tag = "4")]
    description: String,
    #[prost(string, tag = "5")]
    priority: String,
    #[prost(string, tag = "6")]
    status: String,
    #[prost(message, optional, tag = "7")]
    requester_id: Option<CachedUuid>,
    #[prost(string, tag = "8")]
    requester_email: String,
    #[prost(message, optional, tag = "9")]
    assignee_id: Option<CachedUuid>,
    #[prost(message, optional, tag = "10")]
    created_at: Option<prost_types::Timestamp>,
    #[prost(message, optional, tag = "11")]
    updated_at: Option<prost_types::Timestamp>,
    #[prost(string, repeated, tag = "12")]
    tags: Vec<String>,
    #[prost(message, optional, tag = "13")]
    group_id: Option<CachedUuid>,
    /// The custom field values as their JSON object's text; empty for none.
    #[prost(string, tag = "14")]
    custom_fields: String,
}

/// A UUID as two fixed 64-bit halves: no allocation, no text.
#[derive(Clone, Copy, PartialEq, Message)]
struct CachedUuid {
    #[prost(fixed64, tag = "1")]
    high: u64,
    #[prost(fixed64, tag = "2")]
    low: u64,
}

impl From<Uuid> for CachedUuid {
    fn from(id: Uuid) -> Self {
        let (high, low) = id.as_u64_pair();
        Self { high, low }
    }
}

impl From<CachedUuid> for Uuid {
    fn from(id: CachedUuid) -> Self {
        Uuid::from_u64_pair(id.high, id.low)
    }
}

fn cached_instant(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // Always below 2e9: chrono keeps nanoseconds within the second.
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn instant(at: Option<prost_types::Timestamp>) -> Result<DateTime<Utc>, InvalidValue> {
    at.and_then(|at| DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).ok()?))
        .ok_or_else(|| InvalidValue::new("no valid instant"))
}

fn uuid(id: Option<CachedUuid>) -> Result<Uuid, InvalidValue> {
    id.map(Uuid::from).ok_or_else(|| InvalidValue::new("no id"))
}

impl From<&Ticket> for CachedTicket {
    fn from(ticket: &Ticket) -> Self {
        Self {
            id: Some(ticket.id.as_uuid().into()),
            account_id: Some(ticket.account_id.as_uuid().into()),
            subject: ticket.subject.as_str().to_owned(),
            description: ticket.description.as_str().to_owned(),
            priority: ticket.priority.as_str().to_owned(),
            status: ticket.status.as_str().to_owned(),
            requester_id: Some(ticket.requester_id.as_uuid().into()),
            requester_email: ticket.requester_email.as_str().to_owned(),
            assignee_id: ticket.assignee_id.map(|id| id.as_uuid().into()),
            created_at: Some(cached_instant(ticket.created_at)),
            updated_at: Some(cached_instant(ticket.updated_at)),
            tags: ticket.tags.to_strings(),
            group_id: ticket.group_id.map(CachedUuid::from),
            custom_fields: if ticket.custom_fields.is_empty() {
                String::new()
            } else {
                serde_json::Value::Object(ticket.custom_fields.clone()).to_string()
            },
        }
    }
}

impl CachedTicket {
    /// Parsed like any input: an entry that no longer parses is a miss.
    fn into_ticket(self, version: i64) -> Result<Ticket, InvalidValue> {
        Ok(Ticket {
            id: TicketId::from_uuid(uuid(self.id)?),
            account_id: AccountId::from_uuid(uuid(self.account_id)?),
            subject: TicketSubject::parse(&self.subject)?,
            description: TicketDescription::parse(&self.description)?,
            priority: TicketPriority::parse(&self.priority)?,
            status: TicketStatus::parse(&self.status)?,
            requester_id: UserId::from_uuid(uuid(self.requester_id)?),
            requester_email: Email::from_stored(&self.requester_email),
            assignee_id: self.assignee_id.map(|id| UserId::from_uuid(id.into())),
            created_at: instant(self.created_at)?,
            updated_at: instant(self.updated_at)?,
            tags: self
                .tags
                .iter()
                .map(|tag| Tag::parse(tag))
                .collect::<Result<_, _>>()?,
            group_id: self.group_id.map(Uuid::from),
            custom_fields: if self.custom_fields.is_empty() {
                serde_json::Map::new()
            } else {
                serde_json::from_str(&self.custom_fields).map_err(|error| {
                    InvalidValue::new(format!(
                        "custom field values that are not an object: {error}"
                    ))
                })?
            },
            version,
        })
    }
}

/// An entry as stored: the header, then the ticket's message, or nothing for a deleted ticket.
fn encode_entry(version: i64, ticket: Option<&Ticket>) -> Vec<u8> {
    let header = format!("sd{SCHEMA}:{version}:");
    let message = ticket.map(CachedTicket::from);
    let mut entry =
        Vec::with_capacity(header.len() + message.as_ref().map_or(0, Message::encoded_len));
    entry.extend_from_slice(header.as_bytes());
    if let Some(message) = message {
        message.encode_raw(&mut entry);
    }
    entry
}

/// What an entry says: the version and the ticket (`None`: deleted); `None` for an entry of
/// another layout or one that does not decode.
fn decode_entry(raw: &[u8]) -> Option<(i64, Option<Ticket>)> {
    let rest = raw.strip_prefix(b"sd")?;
    let (schema, rest) = split_number(rest)?;
    if schema != i64::from(SCHEMA) {
        return None;
    }
    let (version, message) = split_number(rest)?;
    if message.is_empty() {
        return Some((version, None));
    }
    let ticket = CachedTicket::decode(message)
        .ok()?
        .into_ticket(version)
        .ok()?;
    Some((version, Some(ticket)))
}

/// The decimal number before the first `:` of `raw`, and what follows that `:`.
fn split_number(raw: &[u8]) -> Option<(i64, &[u8])> {
    let colon = raw.iter().position(|byte| *byte == b':')?;
    let number = std::str::from_utf8(&raw[..colon]).ok()?.parse().ok()?;
    Some((number, &raw[colon + 1..]))
}

/// An entry's version and ticket (`None`: a tombstone), for tests and operators looking at
/// Redis; `None` when it is no entry of this release's layout.
pub fn read_entry(raw: &[u8]) -> Option<(i64, Option<Ticket>)> {
    decode_entry(raw)
}

/// A ticket cache entry that admission read in its round trip (`PREFETCH_TICKET`), kept in the
/// request's scope for [`TicketCache::get`] to read back.
#[derive(Clone, Debug)]
pub struct PrefetchedEntry {
    /// Whose ticket: the entry read was this ticket's in this account.
    pub account_id: AccountId,
    pub ticket: TicketId,
    pub value: Option<Vec<u8>>,
}

/// Where admission may have left an entry of this cache: the request's scope (`None` when the
/// read is no request's, or nothing was prefetched). The cache reads its own prefetch, so the
/// entry is no parameter of the services between admission and here.
pub trait Prefetched {
    fn prefetched(&self) -> Option<&PrefetchedEntry>;
}

impl Prefetched for Option<&PrefetchedEntry> {
    fn prefetched(&self) -> Option<&PrefetchedEntry> {
        *self
    }
}

/// An entry kept for repair: its [`rank`], its payload, and when it was written (its age bounds
/// how long it may still be stored, [`TicketCache::repair`]).
type Unsynced = (i64, Vec<u8>, Instant);

/// A write of a ticket whose commit may be under way: dropped before [`Unsettled::settled`]
/// once the write is made, it keeps a marker for repair (module docs), since the COMMIT may have
/// been sent and its answer lost. Arm it before the transaction; call [`Unsettled::writes`]
/// when the transaction writes the ticket.
pub struct Unsettled<'a> {
    cache: &'a TicketCache,
    /// The ticket written and the version the write replaced.
    written: Mutex<Option<(AccountId, TicketId, i64)>>,
}

impl Unsettled<'_> {
    /// The transaction writes `id`, replacing `version`.
    pub fn writes(&self, account_id: AccountId, id: TicketId, version: i64) {
        *self.written.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((account_id, id, version));
    }

    /// The transaction's outcome is known: what it committed is cached by the caller (or it
    /// committed nothing).
    pub fn settled(self) {
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        let written = self
            .written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((account_id, id, version)) = written {
            tracing::info!(
                ticket = %id,
                version,
                "a ticket write may have committed without its answer: its cache entry is invalidated"
            );
            let key = self.cache.entry_key(account_id, id);
            let marker = format!("sd{MARKER}:{version}:").into_bytes();
            self.cache
                .keep_unsynced(key, rank(version, true), marker, Instant::now());
        }
    }
}

/// What the cache knows about a ticket.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a hit is the answer the cache is for, moved once to its reader: boxing it would allocate on every hit to save bytes on the misses"
)]
pub enum Cached {
    Ticket(Ticket),
    Deleted,
    Unknown,
}

/// Entries on their way to Redis, kept for repair if they do not get there: those left in
/// `entries` when it is dropped, whether the store failed or the caller stopped waiting.
struct KeptUnlessStored<'a> {
    cache: &'a TicketCache,
    entries: Vec<(String, Unsynced)>,
}

impl Drop for KeptUnlessStored<'_> {
    fn drop(&mut self) {
        for (key, (version, payload, written)) in self.entries.drain(..) {
            self.cache.keep_unsynced(key, version, payload, written);
        }
    }
}

#[derive(Clone)]
pub struct TicketCache {
    pool: Redis,
    keys: RedisKeys,
    ttl: Duration,
    backoff: RedisBackoff,
    metrics: Metrics,
    /// Entries of committed writes that did not reach Redis, by key: (version, payload).
    unsynced: Arc<Mutex<HashMap<String, Unsynced>>>,
    /// `unsynced.len()`, read without the lock on every cache operation.
    unsynced_count: Arc<AtomicUsize>,
}

impl TicketCache {
    /// A cache counting its hits, misses and failures in `metrics`, leaving Redis alone while
    /// `pool`'s view of Redis's health says it rests after a failure (its own, or any other
    /// caller's).
    pub fn new(pool: Redis, keys: RedisKeys, ttl: Duration, metrics: &Metrics) -> Self {
        Self {
            backoff: pool
                .health()
                .counting(metrics.ticket_cache().redis_failures.clone()),
            pool,
            keys,
            ttl,
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
    /// kept, and Redis rests. Cancel-safe: what is not stored yet when the caller stops waiting
    /// (a request's deadline, a client gone) is kept again.
    async fn repair(&self) {
        if self.unsynced_count.load(Ordering::Relaxed) == 0 || self.resting() {
            return;
        }
        let drained: Vec<(String, Unsynced)> = {
            let mut unsynced = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
            self.unsynced_count.store(0, Ordering::Relaxed);
            unsynced.drain().collect()
        };
        let mut pending = KeptUnlessStored {
            cache: self,
            entries: drained,
        };
        // An entry older than the TTL is dropped: whatever older entry it was to replace has
        // expired by now, and a newer one another instance stored since may have expired too,
        // in which case storing this one would bring back an older version (store-if-newer
        // compares only with what Redis still has).
        let before = pending.entries.len();
        pending
            .entries
            .retain(|(_, (_, _, written))| written.elapsed() < self.ttl);
        let outlived = before - pending.entries.len();
        if outlived > 0 {
            tracing::info!(
                outlived,
                "ticket cache entries kept longer than their TTL are dropped, not stored"
            );
        }
        let mut repaired = 0_usize;
        while let Some((key, (_, payload, _))) = pending.entries.last() {
            if let Err(error) = self.store_payload(key, payload).await {
                self.failed("repair", &error);
                break;
            }
            pending.entries.pop();
            repaired += 1;
        }
        drop(pending);
        if repaired > 0 {
            tracing::info!(
                repaired,
                "ticket cache entries written while Redis was unreachable are stored now"
            );
        }
    }

    /// Keeps an entry that could not reach Redis, unless one of the key that ranks as high is
    /// kept.
    fn keep_unsynced(&self, key: String, rank: i64, payload: Vec<u8>, written: Instant) {
        let mut unsynced = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((kept, _, _)) = unsynced.get(&key)
            && *kept >= rank
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
        unsynced.insert(key, (rank, payload, written));
        self.unsynced_count.store(unsynced.len(), Ordering::Relaxed);
    }

    /// The Redis key of a ticket's entry.
    pub fn entry_key(&self, account_id: AccountId, id: TicketId) -> String {
        let (mut account_text, mut id_text) =
            (uuid::Uuid::encode_buffer(), uuid::Uuid::encode_buffer());
        self.keys.key_of_parts(&[
            "ticket:",
            account_id
                .as_uuid()
                .hyphenated()
                .encode_lower(&mut account_text),
            ":",
            id.as_uuid().hyphenated().encode_lower(&mut id_text),
        ])
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

    /// What the cache knows of the ticket: from the entry admission prefetched for `request`
    /// when it read this one already (no round trip), else from Redis.
    pub async fn get(
        &self,
        account_id: AccountId,
        id: TicketId,
        request: impl Prefetched,
    ) -> Cached {
        if let Some(prefetched) = request
            .prefetched()
            .filter(|prefetched| prefetched.account_id == account_id && prefetched.ticket == id)
        {
            // An entry this instance could not store yet is newer than what Redis had.
            if let Some(kept) = self.kept_newer_than(account_id, id, prefetched.value.as_deref()) {
                return self.decode(Some(&kept));
            }
            return self.decode(prefetched.value.as_deref());
        }
        let key = self.entry_key(account_id, id);
        if self.resting() {
            return Cached::Unknown;
        }
        self.repair().await;
        let read = async {
            let mut connection = self.pool.get().await?;
            let started = std::time::Instant::now();
            let raw = connection
                .get::<_, Option<Vec<u8>>>(&key)
                .instrument(traces::redis_call("ticket_cache.get", "GET"))
                .await;
            self.metrics
                .redis_calls()
                .cache_get
                .observe(started.elapsed());
            Ok::<_, crate::errors::AppError>(raw?)
        };
        match read.await {
            Ok(raw) => self.decode(raw.as_deref()),
            Err(error) => {
                self.failed("get", &error);
                Cached::Unknown
            }
        }
    }

    /// The entry of the ticket kept for repair, when it ranks above `than` (an entry read from
    /// Redis, or none).
    fn kept_newer_than(
        &self,
        account_id: AccountId,
        id: TicketId,
        than: Option<&[u8]>,
    ) -> Option<Vec<u8>> {
        if self.unsynced_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let key = self.entry_key(account_id, id);
        let unsynced = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
        let (kept, payload, _) = unsynced.get(&key)?;
        let read = than.and_then(rank_of_entry);
        (read.is_none_or(|read| *kept > read)).then(|| payload.clone())
    }

    /// Arms an [`Unsettled`] for a write about to run.
    pub fn unsettled(&self) -> Unsettled<'_> {
        Unsettled {
            cache: self,
            written: Mutex::new(None),
        }
    }

    fn decode(&self, raw: Option<&[u8]>) -> Cached {
        let Some(raw) = raw else {
            self.metrics.ticket_cache().looked_up(false);
            return Cached::Unknown;
        };
        let cached = match decode_entry(raw) {
            Some((_, Some(ticket))) => Cached::Ticket(ticket),
            Some((_, None)) => Cached::Deleted,
            // Another release's layout, or an entry that no longer parses: the database answers.
            None => Cached::Unknown,
        };
        let hit = !matches!(cached, Cached::Unknown);
        self.metrics.ticket_cache().looked_up(hit);
        cached
    }

    /// Caches `ticket` unless a newer version is cached already.
    pub async fn store(&self, ticket: &Ticket) {
        let payload = encode_entry(ticket.version, Some(ticket));
        self.store_entry(ticket.account_id, ticket.id, ticket.version, payload)
            .await;
    }

    /// Caches `ticket` as a read found it, unless a newer version is cached already. Unlike a
    /// write's [`Self::store`], a fill that does not reach Redis is not kept for repair: nothing
    /// in Redis is older than a committed write because of it, and while Redis rests, reads
    /// must not fill the room kept for writes ([`MAX_UNSYNCED`]).
    pub async fn fill(&self, ticket: &Ticket) {
        if self.resting() {
            return;
        }
        self.repair().await;
        let key = self.entry_key(ticket.account_id, ticket.id);
        let payload = encode_entry(ticket.version, Some(ticket));
        if let Err(error) = self.store_payload(&key, &payload).await {
            self.failed("fill", &error);
        }
    }

    /// Remembers that the ticket is gone, at `version`.
    pub async fn store_deleted(&self, account_id: AccountId, id: TicketId, version: i64) {
        self.store_entry(account_id, id, version, encode_entry(version, None))
            .await;
    }

    async fn store_entry(
        &self,
        account_id: AccountId,
        id: TicketId,
        version: i64,
        payload: Vec<u8>,
    ) {
        let key = self.entry_key(account_id, id);
        let written = Instant::now();
        let version = rank(version, false);
        if self.resting() {
            self.keep_unsynced(key, version, payload, written);
            return;
        }
        // Kept for repair unless stored, also when the caller stops waiting first (the write
        // is committed: a request cut off by its deadline here must not leave the old entry in
        // Redis until its TTL).
        let mut entry = KeptUnlessStored {
            cache: self,
            entries: vec![(key, (version, payload, written))],
        };
        self.repair().await;
        let (key, (_, payload, _)) = &entry.entries[0];
        match self.store_payload(key, payload).await {
            Ok(()) => entry.entries.clear(),
            Err(error) => self.failed("store", &error),
        }
    }

    async fn store_payload(&self, key: &str, payload: &[u8]) -> AppResult<()> {
        let mut connection = self.pool.get().await?;
        let started = std::time::Instant::now();
        let stored = STORE_SCRIPT
            .key(key)
            .arg(payload)
            .arg(self.ttl.as_secs().max(1))
            .invoke_async::<i64>(&mut connection)
            .instrument(traces::redis_script("ticket_cache.store"))
            .await;
        self.metrics
            .redis_calls()
            .cache_store
            .observe(started.elapsed());
        stored?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(assignee: Option<UserId>) -> Ticket {
        Ticket {
            id: TicketId::generate(),
            account_id: AccountId::generate(),
            subject: TicketSubject::parse("Printer on fire").unwrap(),
            description: TicketDescription::parse("Second floor.\nSmoke.").unwrap(),
            priority: TicketPriority::High,
            status: TicketStatus::Open,
            requester_id: UserId::generate(),
            requester_email: Email::parse("jane@example.com").unwrap(),
            assignee_id: assignee,
            tags: ["refund", "vip"]
                .into_iter()
                .map(|raw| Tag::parse(raw).unwrap())
                .collect(),
            group_id: assignee.map(|_| Uuid::now_v7()),
            custom_fields: serde_json::json!({"plan": "pro", "seats": 12, "areas": ["a", "b"]})
                .as_object()
                .unwrap()
                .clone(),
            created_at: DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap(),
            updated_at: DateTime::from_timestamp(1_700_000_100, 999_999_000).unwrap(),
            version: 7,
        }
    }

    #[test]
    fn an_entry_reads_back_as_the_ticket_it_stored_at_its_version() {
        for assignee in [None, Some(UserId::generate())] {
            let ticket = ticket(assignee);
            let entry = encode_entry(ticket.version, Some(&ticket));
            assert!(entry.starts_with(b"sd6:7:"));
            assert_eq!(decode_entry(&entry), Some((7, Some(ticket))));
        }
    }

    #[test]
    fn a_tombstone_reads_back_as_deleted_at_its_version() {
        let entry = encode_entry(12, None);
        assert_eq!(entry, b"sd6:12:");
        assert_eq!(decode_entry(&entry), Some((12, None)));
    }

    #[test]
    fn entries_of_other_layouts_and_damaged_ones_are_misses() {
        let ticket = ticket(None);
        let stored = encode_entry(7, Some(&ticket));
        let json = br#"{"version":7,"schema":2,"ticket":{"subject":"x"}}"#;
        let newer = [b"sd7:7:".as_slice(), &stored[6..]].concat();
        let truncated = &stored[..stored.len() - 3];
        let no_version = b"sd6::".as_slice();
        for raw in [json.as_slice(), &newer, truncated, no_version, b"", b"sd6"] {
            assert_eq!(decode_entry(raw), None, "{raw:?} was read");
        }
    }

    #[test]
    fn an_entry_that_no_longer_parses_as_a_ticket_is_a_miss() {
        let mut message = CachedTicket::from(&ticket(None));
        message.subject = "   ".to_owned();
        let entry = [b"sd6:7:".as_slice(), &message.encode_to_vec()].concat();
        assert_eq!(decode_entry(&entry), None);
    }
}
