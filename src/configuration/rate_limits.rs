//! `RATE_LIMIT_*` and `TRUSTED_PROXIES`: the quotas of callers, clients and logins, and what the
//! limiter does when Redis cannot decide (docs/rate-limits.md).

use std::str::FromStr;
use std::time::Duration;

use super::reader::Reader;
use crate::domain::RateQuota;

#[derive(Clone, Debug)]
pub struct RateLimitSettings {
    /// `RATE_LIMIT_READ` (`count/seconds`): Get and List RPCs, per caller.
    pub read: RateQuota,
    /// `RATE_LIMIT_WRITE`: every other RPC of a caller.
    pub write: RateQuota,
    /// `RATE_LIMIT_PUBLIC`: RPCs without credentials (sign-up, refresh), per client IP.
    pub public: RateQuota,
    /// `RATE_LIMIT_LOGIN`: failed logins per client IP.
    pub login: RateQuota,
    /// `RATE_LIMIT_LOGIN_ATTEMPTS`: login attempts per client IP and login name (account and
    /// email), successful or not.
    pub login_attempt: RateQuota,
    /// `RATE_LIMIT_LOGIN_NAME_FAILURES`: failed logins per login name, from addresses the name
    /// has not logged in from.
    pub login_name: RateQuota,
    /// `RATE_LIMIT_AUTH_FAILURES`: failed authentications (bad access token or API key) per
    /// client IP.
    pub auth_failure: RateQuota,
    /// `RATE_LIMIT_WEBHOOK`: the payment provider's webhook deliveries per client IP, apart from
    /// the public quota so that a burst of events never spends the quota of sign-ups and logins.
    pub webhook: RateQuota,
    /// `RATE_LIMIT_ON_REDIS_FAILURE`: `open` lets requests through when Redis cannot decide,
    /// `closed` refuses them with UNAVAILABLE.
    pub fail_open: bool,
    /// `TRUSTED_PROXIES`: peers whose `x-forwarded-for` is believed (Envoy): addresses, or
    /// networks such as a Kubernetes pod network, where Envoy's addresses are not known ahead.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// What the rate limiter does when Redis cannot decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailurePolicy {
    Open,
    Closed,
}

impl FromStr for FailurePolicy {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err("must be `open` or `closed`".to_owned()),
        }
    }
}

/// A comma-separated list of IP addresses.
struct IpList(Vec<ipnet::IpNet>);

impl FromStr for IpList {
    type Err = String;

    /// Addresses (`127.0.0.1`, one host) and networks (`10.0.0.0/8`), comma-separated.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<ipnet::IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("{item:?} is not an IP address or network (such as 10.0.0.0/8)")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl Reader<'_> {
    pub(super) fn rate_limits(&mut self) -> RateLimitSettings {
        RateLimitSettings {
            read: self.parsed(
                "RATE_LIMIT_READ",
                RateQuota {
                    count: 600,
                    window: Duration::from_secs(60),
                },
            ),
            write: self.parsed(
                "RATE_LIMIT_WRITE",
                RateQuota {
                    count: 120,
                    window: Duration::from_secs(60),
                },
            ),
            public: self.parsed(
                "RATE_LIMIT_PUBLIC",
                RateQuota {
                    count: 30,
                    window: Duration::from_secs(60),
                },
            ),
            login: self.parsed(
                "RATE_LIMIT_LOGIN",
                RateQuota {
                    count: 100,
                    window: Duration::from_secs(900),
                },
            ),
            login_attempt: self.parsed(
                "RATE_LIMIT_LOGIN_ATTEMPTS",
                RateQuota {
                    count: 10,
                    window: Duration::from_secs(900),
                },
            ),
            login_name: self.parsed(
                "RATE_LIMIT_LOGIN_NAME_FAILURES",
                RateQuota {
                    count: 30,
                    window: Duration::from_secs(900),
                },
            ),
            auth_failure: self.parsed(
                "RATE_LIMIT_AUTH_FAILURES",
                RateQuota {
                    count: 30,
                    window: Duration::from_secs(60),
                },
            ),
            webhook: self.parsed(
                "RATE_LIMIT_WEBHOOK",
                RateQuota {
                    count: 6000,
                    window: Duration::from_secs(60),
                },
            ),
            fail_open: self.parsed("RATE_LIMIT_ON_REDIS_FAILURE", FailurePolicy::Open)
                == FailurePolicy::Open,
            trusted_proxies: self
                .parsed(
                    "TRUSTED_PROXIES",
                    IpList(vec![
                        std::net::IpAddr::from([127, 0, 0, 1]).into(),
                        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST).into(),
                    ]),
                )
                .0,
        }
    }
}
