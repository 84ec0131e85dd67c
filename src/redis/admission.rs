//! The admission script: the one Redis round trip of every request. It counts the request against
//! its quota (GCRA, with time from Redis's `TIME`, not the instances' clocks) and, in the same
//! script, reads what admission needs besides: the caller's state with the lease a reader takes
//! when it is missing (`auth::principals`), a key to prefetch (the ticket cache's entry), a
//! session's revocation marker, and the client's failed-authentication quota that bars a lookup
//! Redis cannot answer.
//!
//! What the keys mean is the callers' knowledge (`rate_limit`, `auth`, the ticket cache); this
//! module knows the script, its inputs ([`Admission`]) and its answer ([`Answer`]), a value of
//! fixed binary layout packed by Lua's `struct` library and decoded by `FromRedisValue`, so the
//! client reads numbers at known offsets instead of parsing text.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Script, ScriptInvocation, Value};

/// KEYS[1] holds the quota's theoretical arrival time (ms); ARGV: emission interval (ms), burst.
/// With KEYS[2] (the caller's state), also reads that key and, when it is empty, stores ARGV[3]
/// there (NX, for ARGV[4] ms): a reader's lease. ARGV[5] names the keys after KEYS[2], one letter
/// each: `p`, a key to prefetch; `r`, a revocation marker; `f`, the client's failed-authentication
/// quota (interval ARGV[6], burst ARGV[7]), looked at only when KEYS[2] is empty: a client over
/// it is barred (no lease is taken).
///
/// Every key read is read by one `MGET`: each command a script calls costs Redis about a
/// microsecond of its one thread. The answer is one bulk string: the head [`HEAD_LAYOUT`]
/// (allowed, remaining, retry-after ms, reset ms, lease taken, barred ms, revoked, length of the
/// state read or -1), then the state read and the value prefetched.
const SCRIPT: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local wanted = {KEYS[1]}
local extra = ARGV[5] or ''
local failures_key = false
local fetch_at = false
local revoked_at = false
if KEYS[2] then
  wanted[2] = KEYS[2]
  for i = 1, #extra do
    local kind = string.sub(extra, i, i)
    if kind == 'p' then
      wanted[#wanted + 1] = KEYS[2 + i]
      fetch_at = #wanted
    elseif kind == 'r' then
      wanted[#wanted + 1] = KEYS[2 + i]
      revoked_at = #wanted
    elseif kind == 'f' then
      failures_key = KEYS[2 + i]
    end
  end
end
local got = redis.call('MGET', unpack(wanted))
local read = got[2]
local fetched = (fetch_at and got[fetch_at]) or ''
local revoked = 0
if revoked_at and got[revoked_at] then revoked = 1 end
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
  head = struct.pack('>BI4I8I8BI8Bi4', 0, 0, new_tat - tolerance - now, tat - now, leased, barred, revoked, read_length)
else
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
  head = struct.pack('>BI4I8I8BI8Bi4', 1, math.floor((tolerance - (new_tat - now)) / interval), 0, new_tat - now, leased, barred, revoked, read_length)
end
return head .. read .. fetched
";

/// The `struct.pack` format of the answer's head, big-endian: a byte, a `u32`, two `u64`s, a
/// byte, a `u64`, a byte and an `i32`. [`Head::decode`] reads the same offsets.
pub const HEAD_LAYOUT: &str = ">BI4I8I8BI8Bi4";

/// The head's length in bytes.
const HEAD_BYTES: usize = 1 + 4 + 8 + 8 + 1 + 8 + 1 + 4;

/// GCRA without counting: would one more event fit in KEYS[1]'s quota now? Same ARGV as the
/// first two of [`SCRIPT`]; answers {fits, events that fit, retry_after_ms, reset_ms}.
const PEEK_SCRIPT: &str = r"
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

static ADMISSION: LazyLock<Script> = LazyLock::new(|| Script::new(SCRIPT));
static PEEK: LazyLock<Script> = LazyLock::new(|| Script::new(PEEK_SCRIPT));

/// The scripts of this module, for loading at start-up.
pub fn scripts() -> [&'static Script; 2] {
    [&ADMISSION, &PEEK]
}

/// A quota: its key, GCRA's emission interval and its burst.
#[derive(Clone, Copy, Debug)]
pub struct Quota<'a> {
    pub key: &'a str,
    pub interval_ms: u64,
    pub burst: u32,
}

/// What one admission asks of Redis.
#[derive(Clone, Copy, Debug)]
pub struct Admission<'a> {
    /// The quota the request counts against.
    pub quota: Quota<'a>,
    /// What to read besides.
    pub also: Option<AlsoRead<'a>>,
}

/// The keys an admission reads besides its quota.
#[derive(Clone, Copy, Debug)]
pub struct AlsoRead<'a> {
    /// The caller's state, and the lease stored there when it is empty, for `lease_ttl_ms`.
    pub state_key: &'a str,
    pub lease: &'a str,
    pub lease_ttl_ms: u64,
    /// A key to prefetch.
    pub prefetch: Option<&'a str>,
    /// A revocation marker: its presence is [`Answer::revoked`].
    pub revocation: Option<&'a str>,
    /// The failed-authentication quota that bars a lookup Redis cannot answer.
    pub barring: Option<Quota<'a>>,
}

impl Admission<'_> {
    /// The script call, keys and arguments in the order [`SCRIPT`] reads them.
    pub fn invocation(&self) -> ScriptInvocation<'static> {
        let mut invocation = ADMISSION.key(self.quota.key);
        invocation.arg(self.quota.interval_ms).arg(self.quota.burst);
        if let Some(also) = &self.also {
            invocation
                .key(also.state_key)
                .arg(also.lease)
                .arg(also.lease_ttl_ms);
            let mut kinds = String::with_capacity(3);
            if let Some(prefetch) = also.prefetch {
                invocation.key(prefetch);
                kinds.push('p');
            }
            if let Some(revocation) = also.revocation {
                invocation.key(revocation);
                kinds.push('r');
            }
            if let Some(barring) = &also.barring {
                invocation.key(barring.key);
                kinds.push('f');
            }
            invocation.arg(kinds);
            if let Some(barring) = &also.barring {
                invocation.arg(barring.interval_ms).arg(barring.burst);
            }
        }
        invocation
    }
}

/// The quota-only check of [`PEEK_SCRIPT`].
pub fn peek(quota: Quota<'_>) -> ScriptInvocation<'static> {
    let mut invocation = PEEK.key(quota.key);
    invocation.arg(quota.interval_ms).arg(quota.burst);
    invocation
}

/// The admission script's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Whether the request fits in its quota (and was counted).
    pub allowed: bool,
    /// Requests left before the limit.
    pub remaining: u32,
    /// When a refused request may be retried.
    pub retry_after: Duration,
    /// When the quota is whole again.
    pub reset: Duration,
    /// Whether the lease was stored (the state was empty).
    pub leased: bool,
    /// How long the client stays barred; `None` when it is not.
    pub barred: Option<Duration>,
    /// Whether the revocation marker asked for was there.
    pub revoked: bool,
    /// The caller's state; `None` when it was empty.
    pub state: Option<String>,
    /// The prefetched value; `None` when empty or not asked for.
    pub prefetched: Option<Vec<u8>>,
}

/// The fixed part of the answer, at the offsets of [`HEAD_LAYOUT`].
struct Head {
    allowed: bool,
    remaining: u32,
    retry_after_ms: u64,
    reset_ms: u64,
    leased: bool,
    barred_ms: u64,
    revoked: bool,
    /// The state's length; negative when it was empty.
    state_length: i32,
}

impl Head {
    fn decode(bytes: &[u8; HEAD_BYTES]) -> Self {
        let u64_at = |at: usize| {
            u64::from_be_bytes(
                bytes[at..at + 8]
                    .try_into()
                    .expect("eight bytes of the head"),
            )
        };
        Self {
            allowed: bytes[0] == 1,
            remaining: u32::from_be_bytes(bytes[1..5].try_into().expect("four bytes")),
            retry_after_ms: u64_at(5),
            reset_ms: u64_at(13),
            leased: bytes[21] == 1,
            barred_ms: u64_at(22),
            revoked: bytes[30] == 1,
            state_length: i32::from_be_bytes(bytes[31..35].try_into().expect("four bytes")),
        }
    }
}

impl FromRedisValue for Answer {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let Value::BulkString(mut bytes) = value else {
            return Err("the admission script answered something other than a bulk string".into());
        };
        let Some(head) = bytes
            .get(..HEAD_BYTES)
            .and_then(|head| <&[u8; HEAD_BYTES]>::try_from(head).ok())
            .map(Head::decode)
        else {
            return Err("the admission script's answer is shorter than its head".into());
        };
        bytes.drain(..HEAD_BYTES);
        let state = match usize::try_from(head.state_length) {
            Err(_) => None,
            Ok(length) if length <= bytes.len() => {
                let rest = bytes.split_off(length);
                let state = String::from_utf8(std::mem::replace(&mut bytes, rest))?;
                Some(state)
            }
            Ok(_) => return Err("the admission script's state is longer than its answer".into()),
        };
        Ok(Self {
            allowed: head.allowed,
            remaining: head.remaining,
            retry_after: Duration::from_millis(head.retry_after_ms),
            reset: Duration::from_millis(head.reset_ms),
            leased: head.leased,
            barred: (head.barred_ms > 0).then(|| Duration::from_millis(head.barred_ms)),
            revoked: head.revoked,
            state,
            prefetched: (!bytes.is_empty()).then_some(bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head as `struct.pack(HEAD_LAYOUT, ...)` writes it.
    #[allow(
        clippy::too_many_arguments,
        reason = "one argument per field of the layout"
    )]
    fn head(
        allowed: u8,
        remaining: u32,
        retry_after: u64,
        reset: u64,
        leased: u8,
        barred: u64,
        revoked: u8,
        state_length: i32,
    ) -> Vec<u8> {
        let mut bytes = vec![allowed];
        bytes.extend(remaining.to_be_bytes());
        bytes.extend(retry_after.to_be_bytes());
        bytes.extend(reset.to_be_bytes());
        bytes.push(leased);
        bytes.extend(barred.to_be_bytes());
        bytes.push(revoked);
        bytes.extend(state_length.to_be_bytes());
        bytes
    }

    fn answer(bytes: Vec<u8>) -> Result<Answer, ParsingError> {
        Answer::from_redis_value(Value::BulkString(bytes))
    }

    #[test]
    fn the_head_is_as_long_as_its_layout_says() {
        assert_eq!(head(0, 0, 0, 0, 0, 0, 0, 0).len(), HEAD_BYTES);
    }

    #[test]
    fn an_answer_reads_back_with_a_state_and_a_prefetch_of_any_bytes() {
        let mut bytes = head(1, 41, 0, 1_200, 0, 0, 1, 9);
        bytes.extend(b"user x 1\x00");
        bytes.extend(b"pro to");
        assert_eq!(
            answer(bytes).unwrap(),
            Answer {
                allowed: true,
                remaining: 41,
                retry_after: Duration::ZERO,
                reset: Duration::from_millis(1_200),
                leased: false,
                barred: None,
                revoked: true,
                state: Some("user x 1\u{0}".to_owned()),
                prefetched: Some(b"pro to".to_vec()),
            }
        );
        let refused = answer(head(0, 0, 350, 900, 1, 2_000, 0, -1)).unwrap();
        assert_eq!(
            (
                refused.allowed,
                refused.leased,
                refused.barred,
                refused.state,
                refused.prefetched
            ),
            (false, true, Some(Duration::from_secs(2)), None, None)
        );
    }

    #[test]
    fn a_malformed_answer_is_an_error() {
        assert!(answer(head(1, 41, 0, 1_200, 0, 0, 0, 0)[..20].to_vec()).is_err());
        let mut too_short = head(1, 41, 0, 1_200, 0, 0, 0, 99);
        too_short.extend(b"short");
        assert!(answer(too_short).is_err());
        assert!(Answer::from_redis_value(Value::Int(1)).is_err());
    }
}
