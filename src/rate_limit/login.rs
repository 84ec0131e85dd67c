//! The login quotas (docs/rate-limits.md, "Logins"): a scheme that stops password guessing
//! without letting a guesser lock the rightful user out.
//!
//! - `login-attempt`, per client IP **and** login name, every attempt: strict; a guesser at one
//!   address is stopped here, and stopping them costs nobody else anything.
//! - `login-name`, per login name, failed attempts only, higher: guessing one name from many
//!   addresses. It does not apply at an address the name has logged in from before (kept 30
//!   days), so the owner logs in from home while a botnet is refused.
//! - `login` (the RPC's declared quota), per client IP, failed attempts only, higher: one address
//!   trying many names. Failures only, so the users behind a shared address are not refused
//!   because one of them (or an attacker among them) hammers one name: those attempts stop at
//!   `login-attempt` and fail no further.
//!
//! Before the password is checked one script (the gate) looks at all three and counts the
//! attempt. From an address the name has not logged in from, the gate also counts the attempt
//! as a failure against the address and the name at once, so that attempts checked at the same
//! time each see the others (counted after the check, a wave of concurrent guesses would all
//! pass a gate that has seen none of them fail); a success gives that failure back in the call
//! that remembers the address, and an attempt that ends without a verdict (the database away)
//! gives it back too. From a known address a failure is counted after the check, and a success
//! costs nothing more.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{Decision, Policy, RateLimiter, Subject, duration_of_millis};

/// How long an address a name logged in from stays known to it.
const KNOWN_ADDRESS_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// KEYS: the address's failed logins (GCRA), the (address, name) attempts (GCRA), the name's
/// failed logins (GCRA), the set of addresses the name logged in from. ARGV: interval and burst
/// of each quota in that order, then the address. Counts the attempt unless it is refused, and
/// from an unknown address counts it as a failure of the address and the name too (given back
/// by [`LOGIN_SETTLE`] if it is not one). Returns {0 (open) or the refusing quota 1/2/3, ms
/// until it would be admitted, address known 0/1}.
const LOGIN_GATE: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local function wait(key, interval, burst)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local over = tat + interval - interval * burst - now
  if over > 0 then return over, tat end
  return 0, tat
end
local address_interval = tonumber(ARGV[1])
local address_wait, address_tat = wait(KEYS[1], address_interval, tonumber(ARGV[2]))
if address_wait > 0 then return {1, address_wait, 0} end
local attempt_interval = tonumber(ARGV[3])
local attempt_wait, attempt_tat = wait(KEYS[2], attempt_interval, tonumber(ARGV[4]))
if attempt_wait > 0 then return {2, attempt_wait, 0} end
redis.call('SET', KEYS[2], attempt_tat + attempt_interval, 'PX', attempt_tat + attempt_interval - now)
local known = redis.call('SISMEMBER', KEYS[4], ARGV[7])
if known == 0 then
  local name_interval = tonumber(ARGV[5])
  local name_wait, name_tat = wait(KEYS[3], name_interval, tonumber(ARGV[6]))
  if name_wait > 0 then return {3, name_wait, 0} end
  redis.call('SET', KEYS[1], address_tat + address_interval, 'PX', address_tat + address_interval - now)
  redis.call('SET', KEYS[3], name_tat + name_interval, 'PX', name_tat + name_interval - now)
end
return {0, 0, known}
";

/// After the password was checked. KEYS: the address's and the name's failed logins (GCRA), the
/// name's known addresses. ARGV[1] `failed` (from a known address): counts a failure against
/// both quotas (intervals and bursts in ARGV[2..5]). `succeeded` (from a new address): adds the
/// address ARGV[2] to the known addresses for ARGV[3] ms and gives back the failure the gate
/// counted (the intervals in ARGV[4], ARGV[5]). `released` (from a new address, no verdict):
/// gives that failure back only (the intervals in ARGV[2], ARGV[3]).
const LOGIN_SETTLE: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local function give_back(key, interval)
  local tat = tonumber(redis.call('GET', key))
  if not tat then return end
  local back = tat - interval
  if back <= now then
    redis.call('DEL', key)
  else
    redis.call('SET', key, back, 'PX', back - now)
  end
end
if ARGV[1] == 'succeeded' then
  redis.call('SADD', KEYS[3], ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  give_back(KEYS[1], tonumber(ARGV[4]))
  give_back(KEYS[2], tonumber(ARGV[5]))
  return 1
end
if ARGV[1] == 'released' then
  give_back(KEYS[1], tonumber(ARGV[2]))
  give_back(KEYS[2], tonumber(ARGV[3]))
  return 1
end
local function count(key, interval, burst)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  if new_tat - interval * burst <= now then
    redis.call('SET', key, new_tat, 'PX', new_tat - now)
  end
end
count(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
count(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]))
return 1
";

pub(super) static LOGIN_GATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LOGIN_GATE));
pub(super) static LOGIN_SETTLE_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(LOGIN_SETTLE));

/// One login attempt as the quotas see it: from where, for which name.
#[derive(Clone, Debug)]
pub struct LoginAttempt {
    /// The client address (`ip:<address>`).
    client: Subject,
    /// `<account slug>/<email>`, lower-cased.
    name: String,
}

impl LoginAttempt {
    pub fn new(client: Subject, account: &str, email: &str) -> Self {
        Self {
            client,
            name: format!(
                "{}/{}",
                account.trim().to_lowercase(),
                email.trim().to_lowercase()
            ),
        }
    }

    /// Who a refusal by `policy` names in its QuotaFailure: the address, the address with the
    /// name, or the name (as `login`: the caller typed it).
    fn subject(&self, policy: Policy) -> Subject {
        match policy {
            Policy::LoginAttempt => Subject(format!("{} login", self.client.as_str())),
            Policy::LoginName => Subject("login".to_owned()),
            Policy::Login
            | Policy::Read
            | Policy::Write
            | Policy::Public
            | Policy::AuthFailure
            | Policy::Webhook
            | Policy::PasswordReset
            | Policy::PasswordResetAddress => self.client.clone(),
        }
    }

    fn attempt_subject(&self) -> Subject {
        Subject::new("attempt", format!("{}|{}", self.client.as_str(), self.name))
    }

    fn name_subject(&self) -> Subject {
        Subject::new("login", &self.name)
    }
}

/// How an attempt the gate let through ended, where that changes what the quotas hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    /// A wrong password (or account, or email) from an address the name has logged in from: a
    /// failure for the address and the name. (From a new address the gate counted it already.)
    FailedFromKnownAddress,
    /// The right password, from an address the name had not logged in from: now known, and the
    /// failure the gate counted is given back.
    SucceededFromNewAddress,
    /// No verdict on the password (the database away), from a new address: the failure the gate
    /// counted is given back.
    UndecidedFromNewAddress,
}

/// The gate's answer.
#[derive(Debug)]
pub enum LoginGate {
    /// The password may be checked; `known_address`: the name has logged in from here before.
    Open { known_address: bool },
    /// A quota refuses the attempt: `subject` for the QuotaFailure.
    Refused {
        subject: Subject,
        decision: Decision,
    },
}

impl RateLimiter {
    /// Counts a login attempt and says whether its password may be checked. When Redis cannot
    /// decide, the failure policy does (fail open: as from an unknown address).
    pub async fn login_gate(&self, attempt: &LoginAttempt) -> LoginGate {
        let address = self.quota(Policy::Login);
        let per_attempt = self.quota(Policy::LoginAttempt);
        let per_name = self.quota(Policy::LoginName);
        let answer = self
            .ask(async {
                let mut connection = self.redis.get().await?;
                let answer: (i64, i64, i64) = LOGIN_GATE_SCRIPT
                    .key(self.quota_key(Policy::Login, &attempt.client))
                    .key(self.quota_key(Policy::LoginAttempt, &attempt.attempt_subject()))
                    .key(self.quota_key(Policy::LoginName, &attempt.name_subject()))
                    .key(self.known_addresses_key(attempt))
                    .arg(Self::interval_ms(address))
                    .arg(address.count)
                    .arg(Self::interval_ms(per_attempt))
                    .arg(per_attempt.count)
                    .arg(Self::interval_ms(per_name))
                    .arg(per_name.count)
                    .arg(attempt.client.as_str())
                    .invoke_async(&mut connection)
                    .await?;
                Ok(answer)
            })
            .await;
        let Some((refused_by, wait, known)) = answer else {
            let decision = self.undecided(Policy::Login);
            return if decision.allowed {
                LoginGate::Open {
                    known_address: false,
                }
            } else {
                LoginGate::Refused {
                    subject: attempt.client.clone(),
                    decision,
                }
            };
        };
        let policy = match refused_by {
            0 => {
                self.metrics.rate_limit().decided(true);
                return LoginGate::Open {
                    known_address: known == 1,
                };
            }
            1 => Policy::Login,
            2 => Policy::LoginAttempt,
            _ => Policy::LoginName,
        };
        self.metrics.rate_limit().decided(false);
        LoginGate::Refused {
            subject: attempt.subject(policy),
            decision: Decision {
                allowed: false,
                policy,
                quota: self.quota(policy),
                remaining: 0,
                retry_after: duration_of_millis(wait),
                reset: self.quota(policy).window,
                decided: true,
            },
        }
    }

    /// Records how the attempt the gate let through ended ([`LoginOutcome`]). Best effort: a
    /// Redis that cannot take it is logged and the login's answer stands.
    pub async fn login_settled(&self, attempt: &LoginAttempt, outcome: LoginOutcome) {
        let address = self.quota(Policy::Login);
        let per_name = self.quota(Policy::LoginName);
        self.ask(async {
            let mut connection = self.redis.get().await?;
            let mut invocation =
                LOGIN_SETTLE_SCRIPT.key(self.quota_key(Policy::Login, &attempt.client));
            invocation
                .key(self.quota_key(Policy::LoginName, &attempt.name_subject()))
                .key(self.known_addresses_key(attempt));
            match outcome {
                LoginOutcome::SucceededFromNewAddress => invocation
                    .arg("succeeded")
                    .arg(attempt.client.as_str())
                    .arg(u64::try_from(KNOWN_ADDRESS_TTL.as_millis()).unwrap_or(u64::MAX))
                    .arg(Self::interval_ms(address))
                    .arg(Self::interval_ms(per_name)),
                LoginOutcome::UndecidedFromNewAddress => invocation
                    .arg("released")
                    .arg(Self::interval_ms(address))
                    .arg(Self::interval_ms(per_name)),
                LoginOutcome::FailedFromKnownAddress => invocation
                    .arg("failed")
                    .arg(Self::interval_ms(address))
                    .arg(address.count)
                    .arg(Self::interval_ms(per_name))
                    .arg(per_name.count),
            };
            let _: i64 = invocation.invoke_async(&mut connection).await?;
            Ok(())
        })
        .await;
    }

    fn known_addresses_key(&self, attempt: &LoginAttempt) -> String {
        self.keys.key(&format!("login-known:{}", attempt.name))
    }
}
