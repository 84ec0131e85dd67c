//! Fair use: the quotas ([`Policy`]), who they count for ([`Subject`]) and what the limiter
//! answers ([`Decision`], with its IETF header fields). The counting is GCRA in Redis, one atomic
//! script per decision (`crate::redis::admission`), so that every instance sharing the Redis
//! enforces one global limit, on Redis's clock.
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
use std::time::Duration;

use tracing::Instrument;

use crate::auth::Credential;
use crate::auth::principals::{LEASE_TTL, Lease};
use crate::configuration::{PasswordResetSettings, RateLimitSettings, RateQuota};
use crate::errors::{AppError, AppResult};
use crate::redis::admission::{self, Admission, Answer};
use crate::redis::backoff::RedisBackoff;
use crate::redis::connection::Redis;
use crate::redis::keys::RedisKeys;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces;

const DECISION_TIMEOUT: Duration = Duration::from_secs(1);

/// The scripts this module runs, for loading at start-up.
pub fn scripts() -> [&'static redis::Script; 4] {
    let [admit, peek] = admission::scripts();
    [
        admit,
        peek,
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
    /// Password-reset requests per client IP.
    PasswordReset,
    /// Password-reset requests per email address (account and email).
    PasswordResetAddress,
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
            Self::PasswordReset => "password-reset",
            Self::PasswordResetAddress => "password-reset-address",
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
            // The same whole seconds as the `retry-after` header.
            AppError::RateLimiterUndecided {
                retry_after: Duration::from_secs(self.retry_after_secs()),
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
    /// Whether the revocation marker asked for was there: the caller's session has ended.
    pub revoked: bool,
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
    /// A session's revocation marker, whose presence refuses the caller (an access token of
    /// a session that has ended).
    pub revocation: Option<&'a str>,
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

    /// `ip:<address>` for an IPv4 address (written without the formatting machinery), and
    /// `ip:<network>/64` for an IPv6 one: one host is routinely given a whole /64, and counted
    /// address by address it would have 2^64 quotas to rotate through. An IPv4-mapped IPv6
    /// address counts as its IPv4 address.
    pub fn of_ip(ip: std::net::IpAddr) -> Self {
        let v4 = match ip.to_canonical() {
            std::net::IpAddr::V4(v4) => v4,
            std::net::IpAddr::V6(v6) => {
                let network = std::net::Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)));
                return Self(format!("ip:{network}/64"));
            }
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
    /// The password-reset quotas; the public quota stands in until they are given.
    password_reset: Option<PasswordResetSettings>,
    backoff: RedisBackoff,
    metrics: Metrics,
}

impl RateLimiter {
    /// A limiter counting its decisions in `metrics`, on `redis`'s view of Redis's health.
    pub fn new(
        redis: Redis,
        keys: RedisKeys,
        settings: RateLimitSettings,
        metrics: &Metrics,
    ) -> Self {
        let counters = metrics.rate_limit();
        counters.fail_open.set(u64::from(settings.fail_open));
        Self {
            backoff: redis.health().counting(counters.redis_failures.clone()),
            redis,
            keys,
            settings,
            password_reset: None,
            metrics: metrics.clone(),
        }
    }

    /// The same limiter with the password-reset quotas.
    pub fn with_password_reset(mut self, quotas: PasswordResetSettings) -> Self {
        self.password_reset = Some(quotas);
        self
    }

    pub fn settings(&self) -> &RateLimitSettings {
        &self.settings
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
            Policy::PasswordReset => self
                .password_reset
                .as_ref()
                .map_or(self.settings.public, |quotas| quotas.per_client),
            Policy::PasswordResetAddress => self
                .password_reset
                .as_ref()
                .map_or(self.settings.public, |quotas| quotas.per_address),
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
                let started = std::time::Instant::now();
                let answer = admission::peek(admission::Quota {
                    key: &key,
                    interval_ms: Self::interval_ms(quota),
                    burst: quota.count,
                })
                .invoke_async::<(i64, i64, i64, i64)>(&mut connection)
                .instrument(traces::redis_script("admission.peek"))
                .await;
                self.metrics.redis_calls().peek.observe(started.elapsed());
                Ok(answer?)
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
            retry_after: duration_of_millis(retry_after),
            reset: duration_of_millis(reset),
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
                let failures = self.quota(Policy::AuthFailure);
                let admission = Admission {
                    quota: admission::Quota {
                        key: &key,
                        interval_ms: Self::interval_ms(quota),
                        burst: quota.count,
                    },
                    also: also.as_ref().map(|also| admission::AlsoRead {
                        state_key: also.key,
                        lease: also.lease.value(),
                        lease_ttl_ms: u64::try_from(LEASE_TTL.as_millis()).unwrap_or(u64::MAX),
                        prefetch: also.prefetch,
                        revocation: also.revocation,
                        barring: barring_key.as_deref().map(|key| admission::Quota {
                            key,
                            interval_ms: Self::interval_ms(failures),
                            burst: failures.count,
                        }),
                    }),
                };
                let started = std::time::Instant::now();
                let answer = admission
                    .invocation()
                    .invoke_async::<Answer>(&mut connection)
                    .instrument(traces::redis_script("admission.admit"))
                    .await;
                self.metrics.redis_calls().admit.observe(started.elapsed());
                Ok(answer?)
            })
            .await;
        let Some(answer) = answer else {
            return (self.undecided(policy), None);
        };
        self.metrics.rate_limit().decided(answer.allowed);
        let decision = Decision {
            allowed: answer.allowed,
            policy,
            quota,
            remaining: answer.remaining,
            retry_after: answer.retry_after,
            reset: answer.reset,
            decided: true,
        };
        let read = also.map(|_| Read {
            value: answer.state,
            took_lease: answer.leased,
            prefetched: answer.prefetched,
            barred_for: answer.barred,
            revoked: answer.revoked,
        });
        (decision, read)
    }
}

/// Milliseconds from a script's answer as a duration; a negative one (never sent) as zero.
fn duration_of_millis(value: i64) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::Subject;

    fn subject_of(ip: &str) -> String {
        Subject::of_ip(ip.parse::<IpAddr>().unwrap())
            .as_str()
            .to_owned()
    }

    #[test]
    fn the_addresses_of_one_ipv6_network_are_one_subject_and_ipv4_ones_each_their_own() {
        assert_eq!(subject_of("203.0.113.7"), "ip:203.0.113.7");
        assert_eq!(subject_of("::ffff:203.0.113.7"), "ip:203.0.113.7");
        assert_eq!(subject_of("2001:db8:1:2:aaaa::1"), "ip:2001:db8:1:2::/64");
        assert_eq!(
            subject_of("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "ip:2001:db8:1:2::/64"
        );
        assert_eq!(subject_of("2001:db8:1:3::1"), "ip:2001:db8:1:3::/64");
    }
}
