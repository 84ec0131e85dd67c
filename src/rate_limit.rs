//! Fair use: a GCRA rate limiter in Redis, one atomic Lua script per decision, so that every
//! instance sharing the Redis enforces one global limit. Time comes from Redis (`TIME`), not
//! from the instances' clocks.
//!
//! When Redis cannot decide (the connection fails, or no answer comes within
//! [`DECISION_TIMEOUT`]), the configured policy applies (let the request through, or refuse it),
//! the failure is logged and counted, and Redis is left alone for [`BACKOFF`] so that an outage
//! costs requests nothing. The timeout is for a Redis that does not answer (paused,
//! partitioned), not for a busy service: under load a decision waits in the same queues as the
//! rest of the request and must not be abandoned, or the quota would lapse exactly when it
//! matters (docs/performance.md, "Redis: one multiplexed connection", measured a 150 ms budget
//! letting thousands of calls through undecided under load, and one second none).

mod login;

pub use login::{LoginAttempt, LoginGate, LoginOutcome};

use std::fmt;
use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::app::metrics::Metrics;
use crate::auth::Credential;
use crate::auth::principals::{LEASE_TTL, Lease};
use crate::configuration::{RateLimitSettings, RateQuota};
use crate::errors::{AppError, AppResult};
use crate::redis::backoff::RedisBackoff;
use crate::redis::connection::Redis;
use crate::redis::keys::RedisKeys;

const DECISION_TIMEOUT: Duration = Duration::from_secs(1);

/// GCRA: KEYS[1] holds the theoretical arrival time (ms). ARGV: emission interval (ms), burst.
/// With KEYS[2], also reads that key in the same round trip, and when it is empty stores ARGV[3]
/// there (NX, for ARGV[4] ms): a reader's lease ([`crate::auth::principals`]). ARGV[5] then names
/// what the keys after KEYS[2] are, one letter each: `p`, a key to read (a prefetch); `f`, the
/// client's failed-authentication quota (interval ARGV[6], burst ARGV[7]), looked at only when
/// KEYS[2] is empty: a client over it is *barred* (no lease is taken, and the caller does not ask
/// PostgreSQL about a credential Redis does not know).
///
/// The quota, the state and the prefetch are read with one `MGET`: every command a script
/// calls costs Redis about a microsecond of its one thread. The answer is one bulk string, not
/// an array, so that the client parses one value (eight cost the redis crate's parser several
/// times more; docs/performance.md): `"<allowed 0/1> <remaining> <retry_after_ms> <reset_ms> <lease taken 0/1>
/// <ms the client stays barred, 0: not> <length of the value read, -1: empty> "` followed by
/// the value read and the value prefetched (`""` when empty or not asked for).
const GCRA: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local wanted = {KEYS[1]}
local extra = ARGV[5] or ''
local failures_key = false
if KEYS[2] then
  wanted[2] = KEYS[2]
  for i = 1, #extra do
    local kind = string.sub(extra, i, i)
    if kind == 'p' then
      wanted[#wanted + 1] = KEYS[2 + i]
    elseif kind == 'f' then
      failures_key = KEYS[2 + i]
    end
  end
end
local got = redis.call('MGET', unpack(wanted))
local read = got[2]
local fetched = got[3] or ''
local leased = 0
local barred = 0
if KEYS[2] and not read then
  if failures_key then
    local failures_tat = tonumber(redis.call('GET', failures_key))
    if failures_tat then
      local failure_interval = tonumber(ARGV[6])
      local wait = failures_tat + failure_interval - failure_interval * tonumber(ARGV[7]) - now
      if wait > 0 then barred = wait end
    end
  end
  if barred == 0 and redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then
    leased = 1
  end
end
local read_length = -1
if read then read_length = #read else read = '' end
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(got[1]) or now
if tat < now then tat = now end
local new_tat = tat + interval
local head
if new_tat - tolerance > now then
  head = string.format('0 0 %d %d %d %d %d ', new_tat - tolerance - now, tat - now, leased, barred, read_length)
else
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
  head = string.format('1 %d 0 %d %d %d %d ', math.floor((tolerance - (new_tat - now)) / interval), new_tat - now, leased, barred, read_length)
end
return head .. read .. fetched
";

/// GCRA without counting: would one more event fit in KEYS[1]'s quota now? Same ARGV; returns
/// {fits, events that fit, retry_after_ms, reset_ms}.
const GCRA_PEEK: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat + interval - tolerance > now then
  return {0, 0, tat + interval - tolerance - now, tat - now}
end
return {1, math.floor((tolerance - (tat - now)) / interval), 0, tat - now}
";

static GCRA_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA));
static GCRA_PEEK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_PEEK));

/// The scripts this module runs, for loading at start-up.
pub fn scripts() -> [&'static Script; 4] {
    [
        &GCRA_SCRIPT,
        &GCRA_PEEK_SCRIPT,
        &login::LOGIN_GATE_SCRIPT,
        &login::LOGIN_SETTLE_SCRIPT,
    ]
}

/// Which quota a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Read,
    Write,
    Public,
    /// Failed logins per client IP.
    Login,
    /// Login attempts per client IP and login name.
    LoginAttempt,
    /// Failed logins per login name, from addresses the name has not logged in from.
    LoginName,
    /// Failed authentications (a bad access token or API key) per client IP.
    AuthFailure,
    /// The payment provider's webhook deliveries per client IP.
    Webhook,
}

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Public => "public",
            Self::Login => "login",
            Self::LoginAttempt => "login-attempt",
            Self::LoginName => "login-name",
            Self::AuthFailure => "auth-failure",
            Self::Webhook => "webhook",
        }
    }
}

/// A limiter's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub policy: Policy,
    pub quota: RateQuota,
    /// Requests left before the limit.
    pub remaining: u32,
    /// When a refused request may be retried.
    pub retry_after: Duration,
    /// When the quota is whole again.
    pub reset: Duration,
    /// False when Redis could not decide and the failure policy answered.
    pub decided: bool,
}

impl Decision {
    /// The IETF `RateLimit-Policy` field: `"write";q=100;w=60`.
    pub fn policy_header(&self) -> String {
        self.field(
            "q=",
            u64::from(self.quota.count),
            ";w=",
            self.quota.window.as_secs(),
        )
    }

    /// The IETF `RateLimit` field: `"write";r=99;t=1`.
    pub fn limit_header(&self) -> String {
        self.field(
            "r=",
            u64::from(self.remaining),
            ";t=",
            self.reset.as_secs_f64().ceil() as u64,
        )
    }

    /// `"<policy>";<first><a><second><b>`, written without the formatting machinery: two of
    /// these go out with every response.
    fn field(&self, first: &str, a: u64, second: &str, b: u64) -> String {
        let name = self.policy.name();
        let mut numbers = itoa::Buffer::new();
        let mut field = String::with_capacity(name.len() + 32);
        field.push('"');
        field.push_str(name);
        field.push_str("\";");
        field.push_str(first);
        field.push_str(numbers.format(a));
        field.push_str(second);
        field.push_str(numbers.format(b));
        field
    }

    /// The error a refused request is answered with: RESOURCE_EXHAUSTED naming `subject` in its
    /// QuotaFailure, or UNAVAILABLE when Redis could not decide and the policy is to fail closed.
    pub fn refusal(&self, subject: &Subject) -> AppError {
        if self.decided {
            AppError::RateLimited {
                subject: subject.as_str().to_owned(),
                policy: self.policy.name(),
                quota: self.quota,
                retry_after: self.retry_after,
            }
        } else {
            AppError::Unavailable {
                dependency: crate::errors::Dependency::Redis,
                source: anyhow::anyhow!("the rate limiter cannot decide and fails closed"),
            }
        }
    }

    /// Whole seconds for `retry-after`, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        (self.retry_after.as_secs_f64().ceil() as u64).max(1)
    }
}

/// What [`RateLimiter::admit`] read beside its decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// The key's value; `None` when it was empty.
    pub value: Option<String>,
    /// Whether the lease was stored there (the key was empty).
    pub took_lease: bool,
    /// The prefetched key's value (bytes: a ticket cache entry is protobuf); `None` when it
    /// was empty or none was asked for.
    pub prefetched: Option<Vec<u8>>,
    /// When the key was empty and the client is over its failed-authentication quota: how long
    /// until it is not. No lease was taken then.
    pub barred_for: Option<Duration>,
}

/// What [`RateLimiter::admit`] reads beside its decision.
pub struct AlsoRead<'a> {
    /// The key to read, and the lease to store there when it is empty.
    pub key: &'a str,
    pub lease: &'a Lease,
    /// A key to read as well.
    pub prefetch: Option<&'a str>,
    /// The client whose failed-authentication quota bars a lookup Redis cannot answer.
    pub barring: Option<&'a Subject>,
}

/// Who a quota belongs to: a user, an API key, an IP address, or a login name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    pub fn new(kind: &str, id: impl fmt::Display) -> Self {
        Self(format!("{kind}:{id}"))
    }

    /// `kind:<uuid>`, written without the formatting machinery (a subject of every call).
    /// Who the rate limit counts for `credential`: the user, or the key (by its hash, known
    /// before the key's id).
    pub fn of_credential(credential: &Credential) -> Self {
        match credential {
            Credential::AccessToken(claims) => Self::of_uuid("user", claims.user_id.as_uuid()),
            Credential::ApiKey(secret) => Self::new("key", hex::encode(secret.hash())),
        }
    }

    pub fn of_uuid(kind: &str, id: uuid::Uuid) -> Self {
        let mut text = uuid::Uuid::encode_buffer();
        let id = id.hyphenated().encode_lower(&mut text);
        let mut subject = String::with_capacity(kind.len() + 1 + id.len());
        subject.push_str(kind);
        subject.push(':');
        subject.push_str(id);
        Self(subject)
    }

    /// `ip:<address>`; an IPv4 address written without the formatting machinery.
    pub fn of_ip(ip: std::net::IpAddr) -> Self {
        let std::net::IpAddr::V4(v4) = ip else {
            return Self::new("ip", ip);
        };
        let mut subject = String::with_capacity(18);
        subject.push_str("ip:");
        let mut number = itoa::Buffer::new();
        for (index, octet) in v4.octets().into_iter().enumerate() {
            if index > 0 {
                subject.push('.');
            }
            subject.push_str(number.format(octet));
        }
        Self(subject)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone)]
pub struct RateLimiter {
    redis: Redis,
    keys: RedisKeys,
    settings: RateLimitSettings,
    backoff: RedisBackoff,
    metrics: Metrics,
}

impl RateLimiter {
    /// A limiter counting its decisions in `metrics`.
    pub fn new(
        redis: Redis,
        keys: RedisKeys,
        settings: RateLimitSettings,
        failure_pause: Duration,
        metrics: &Metrics,
    ) -> Self {
        let counters = metrics.rate_limit();
        counters.fail_open.set(u64::from(settings.fail_open));
        Self {
            redis,
            keys,
            settings,
            backoff: RedisBackoff::new(failure_pause, counters.redis_failures.clone()),
            metrics: metrics.clone(),
        }
    }

    pub fn settings(&self) -> &RateLimitSettings {
        &self.settings
    }

    /// The limiter's Redis backoff, for the health probe: with the closed policy a limiter that
    /// cannot decide refuses every request, so health must say so as soon as it happens, and
    /// the limiter must try again as soon as health sees Redis back.
    pub fn backoff(&self) -> &RedisBackoff {
        &self.backoff
    }

    pub fn quota(&self, policy: Policy) -> RateQuota {
        match policy {
            Policy::Read => self.settings.read,
            Policy::Write => self.settings.write,
            Policy::Public => self.settings.public,
            Policy::Login => self.settings.login,
            Policy::LoginAttempt => self.settings.login_attempt,
            Policy::LoginName => self.settings.login_name,
            Policy::AuthFailure => self.settings.auth_failure,
            Policy::Webhook => self.settings.webhook,
        }
    }

    /// The Redis key of `subject`'s GCRA state under `policy`.
    fn quota_key(&self, policy: Policy, subject: &Subject) -> String {
        self.keys
            .key_of_parts(&["rl:", policy.name(), ":", subject.as_str()])
    }

    /// GCRA's emission interval of `quota` in ms: the quota comes back one request at a time.
    fn interval_ms(quota: RateQuota) -> u64 {
        u64::try_from((quota.window.as_millis() / u128::from(quota.count)).max(1))
            .unwrap_or(u64::MAX)
    }

    /// Runs `decide` against Redis within [`DECISION_TIMEOUT`], unless Redis is resting after a
    /// failure; `None` (logged and counted) when Redis cannot decide.
    async fn ask<T>(&self, decide: impl Future<Output = AppResult<T>>) -> Option<T> {
        if self.backoff.resting() {
            self.metrics.rate_limit().undecided.increment();
            return None;
        }
        match tokio::time::timeout(DECISION_TIMEOUT, decide).await {
            Ok(Ok(answer)) => {
                self.backoff.succeeded();
                Some(answer)
            }
            outcome => {
                self.backoff.failed();
                self.metrics.rate_limit().undecided.increment();
                let problem = match outcome {
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => "no answer in time".to_owned(),
                    Ok(Ok(_)) => "a malformed answer".to_owned(),
                };
                tracing::warn!(
                    %problem,
                    fail_open = self.settings.fail_open,
                    failures = self.backoff.failures(),
                    "rate limiter: Redis cannot decide"
                );
                None
            }
        }
    }

    /// The decision the failure policy makes when Redis could not.
    fn undecided(&self, policy: Policy) -> Decision {
        let quota = self.quota(policy);
        Decision {
            allowed: self.settings.fail_open,
            policy,
            quota,
            remaining: 0,
            retry_after: self.backoff.pause(),
            reset: quota.window,
            decided: false,
        }
    }

    /// Whether one more request of `subject` would fit in `policy` now, without counting it:
    /// for quotas that count failures, known only once the request has run.
    pub async fn peek(&self, policy: Policy, subject: &Subject) -> Decision {
        let quota = self.quota(policy);
        let key = self.quota_key(policy, subject);
        let answer = self
            .ask(async {
                let mut connection = self.redis.get().await?;
                let answer: (i64, i64, i64, i64) = GCRA_PEEK_SCRIPT
                    .key(key)
                    .arg(Self::interval_ms(quota))
                    .arg(quota.count)
                    .invoke_async(&mut connection)
                    .await?;
                Ok(answer)
            })
            .await;
        let Some((fits, remaining, retry_after, reset)) = answer else {
            return self.undecided(policy);
        };
        self.metrics.rate_limit().decided(fits == 1);
        Decision {
            allowed: fits == 1,
            policy,
            quota,
            remaining: u32::try_from(remaining).unwrap_or(0),
            retry_after: millis(retry_after),
            reset: millis(reset),
            decided: true,
        }
    }

    /// Counts one request of `subject` against `policy`.
    pub async fn check(&self, policy: Policy, subject: &Subject) -> Decision {
        self.admit(policy, subject, None).await.0
    }

    /// Counts one request of `subject` against `policy` and, in the same round trip, reads
    /// `also` (a key, with the lease to store there when it is empty, a prefetch, the client
    /// whose failed authentications may bar a lookup). The read is `None` when Redis could not
    /// answer.
    pub async fn admit(
        &self,
        policy: Policy,
        subject: &Subject,
        also: Option<AlsoRead<'_>>,
    ) -> (Decision, Option<Read>) {
        let quota = self.quota(policy);
        let key = self.quota_key(policy, subject);
        let barring_key = also
            .as_ref()
            .and_then(|also| also.barring)
            .map(|client| self.quota_key(Policy::AuthFailure, client));
        let answer = self
            .ask(async {
                let mut connection = self.redis.get().await?;
                let mut invocation = GCRA_SCRIPT.key(key);
                invocation.arg(Self::interval_ms(quota)).arg(quota.count);
                if let Some(also) = &also {
                    invocation
                        .key(also.key)
                        .arg(also.lease.value())
                        .arg(u64::try_from(LEASE_TTL.as_millis()).unwrap_or(u64::MAX));
                    let mut extra = String::new();
                    if let Some(prefetch) = also.prefetch {
                        invocation.key(prefetch);
                        extra.push('p');
                    }
                    if let Some(barring_key) = &barring_key {
                        invocation.key(barring_key);
                        extra.push('f');
                    }
                    let failures = self.quota(Policy::AuthFailure);
                    invocation
                        .arg(extra)
                        .arg(Self::interval_ms(failures))
                        .arg(failures.count);
                }
                let answer: redis::Value = invocation.invoke_async(&mut connection).await?;
                ScriptAnswer::parse(answer).ok_or_else(|| {
                    AppError::internal(anyhow::anyhow!(
                        "the rate-limit script's answer is malformed"
                    ))
                })
            })
            .await;
        let Some(ScriptAnswer {
            allowed,
            remaining,
            retry_after,
            reset,
            leased,
            barred,
            value,
            prefetched,
        }) = answer
        else {
            return (self.undecided(policy), None);
        };
        self.metrics.rate_limit().decided(allowed);
        let decision = Decision {
            allowed,
            policy,
            quota,
            remaining: u32::try_from(remaining).unwrap_or(0),
            retry_after: millis(retry_after),
            reset: millis(reset),
            decided: true,
        };
        let read = also.map(|_| Read {
            value,
            took_lease: leased,
            prefetched: (!prefetched.is_empty()).then_some(prefetched),
            barred_for: (barred > 0).then(|| millis(barred)),
        });
        (decision, read)
    }
}

/// The answer of [`GCRA`], parsed from its one bulk string.
#[derive(Debug, PartialEq, Eq)]
struct ScriptAnswer {
    allowed: bool,
    remaining: i64,
    retry_after: i64,
    reset: i64,
    leased: bool,
    barred: i64,
    value: Option<String>,
    prefetched: Vec<u8>,
}

impl ScriptAnswer {
    /// `None` for anything but the script's answer.
    fn parse(answer: redis::Value) -> Option<Self> {
        let redis::Value::BulkString(mut bytes) = answer else {
            return None;
        };
        let (numbers, header_length) = Self::split(&bytes)?;
        let [
            allowed,
            remaining,
            retry_after,
            reset,
            leased,
            barred,
            read_length,
        ] = numbers;
        bytes.drain(..header_length);
        let value = match usize::try_from(read_length) {
            Ok(length) if length <= bytes.len() => {
                let value = String::from_utf8(bytes[..length].to_vec()).ok()?;
                bytes.drain(..length);
                Some(value)
            }
            Ok(_) => return None,
            Err(_) => None,
        };
        Some(Self {
            allowed: allowed == 1,
            remaining,
            retry_after,
            reset,
            leased: leased == 1,
            barred,
            value,
            prefetched: bytes,
        })
    }

    /// The seven numbers of the answer's head, and the length of the head (each number ends
    /// with a space).
    fn split(bytes: &[u8]) -> Option<([i64; 7], usize)> {
        let mut numbers = [0_i64; 7];
        let mut at = 0;
        for number in &mut numbers {
            let length = bytes[at..].iter().position(|&byte| byte == b' ')?;
            *number = std::str::from_utf8(&bytes[at..at + length])
                .ok()?
                .parse()
                .ok()?;
            at += length + 1;
        }
        Some((numbers, at))
    }
}

/// Milliseconds from a script's answer as a duration; a negative one (never sent) as zero.
fn millis(value: i64) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &[u8]) -> Option<ScriptAnswer> {
        ScriptAnswer::parse(redis::Value::BulkString(text.to_vec()))
    }

    #[test]
    fn the_scripts_answer_reads_back_with_values_that_contain_spaces() {
        assert_eq!(
            answer(b"1 41 0 1200 0 0 9 user x 1\x00pro to"),
            Some(ScriptAnswer {
                allowed: true,
                remaining: 41,
                retry_after: 0,
                reset: 1200,
                leased: false,
                barred: 0,
                value: Some("user x 1\u{0}".to_owned()),
                prefetched: b"pro to".to_vec(),
            })
        );
        assert_eq!(
            answer(b"0 0 350 900 1 0 -1 "),
            Some(ScriptAnswer {
                allowed: false,
                remaining: 0,
                retry_after: 350,
                reset: 900,
                leased: true,
                barred: 0,
                value: None,
                prefetched: Vec::new(),
            })
        );
    }

    #[test]
    fn a_malformed_answer_is_no_decision() {
        assert_eq!(answer(b"1 41 0 1200 0 0"), None, "a number short");
        assert_eq!(
            answer(b"1 41 0 1200 0 0 99 short"),
            None,
            "a value longer than sent"
        );
        assert_eq!(answer(b"1 x 0 1200 0 0 -1 "), None, "not a number");
        assert_eq!(ScriptAnswer::parse(redis::Value::Int(1)), None);
    }
}
