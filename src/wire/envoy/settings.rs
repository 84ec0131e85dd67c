//! What a deployment tells `supportdesk envoy-config`: the settings `deploy/envoy/render` took
//! (same names, same defaults, same checks), read from the environment, each refused with the
//! setting and the bad entry named (the command exits 2 on one).

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// The browser origins allowed when `CORS_ALLOWED_ORIGINS` is unset (set and empty: none).
pub const DEFAULT_ORIGINS: &str = "http://localhost:3000,http://127.0.0.1:3000";

/// An origin is a scheme, a host (a DNS name, an IPv4 address or a bracketed IPv6 one) and an
/// optional port: no path, no trailing slash, no wildcard, no credentials.
static ORIGIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^https?://([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$",
    )
    .expect("the origin pattern")
});

/// An upstream is `host:port`, the port without a leading zero.
static UPSTREAM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9.-]+:[1-9][0-9]{0,4}$").expect("the upstream pattern")
});

/// A setting refused: which one, and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub setting: &'static str,
    pub problem: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for SettingError {}

/// One instance of the supportdesk cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u32,
}

/// Every input of Envoy's configuration that a deployment chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoySettings {
    /// `CORS_ALLOWED_ORIGINS`: the browser origins allowed, with credentials.
    pub origins: Vec<String>,
    /// `ROUTE_TIMEOUT_SECS`: the deadline of every request but the long streams.
    pub route_timeout_secs: u64,
    /// `SHUTDOWN_DELAY_MS`: the drain's one setting; the health-check interval is a third of it.
    pub shutdown_delay_ms: u64,
    /// `UPSTREAM_ADDRESSES`: the instances.
    pub upstreams: Vec<Upstream>,
    /// `STREAM_INSTANCES`: how many instances the long streams' circuit breaker counts.
    pub stream_instances: u64,
    /// `WATCH_MAX_STREAMS_PER_INSTANCE`.
    pub watch_streams_per_instance: u64,
    /// `EXPORT_MAX_CONCURRENT_PER_INSTANCE`.
    pub export_streams_per_instance: u64,
    /// `WATCH_MAX_DURATION_SECS`.
    pub watch_duration_secs: u64,
    /// `EXPORT_MAX_DURATION_SECS`.
    pub export_duration_secs: u64,
    /// `WATCH_HEARTBEAT_SECS`.
    pub watch_heartbeat_secs: u64,
}

impl EnvoySettings {
    /// The settings from the process's environment, `default_upstreams` standing for an unset
    /// `UPSTREAM_ADDRESSES`.
    pub fn from_env(default_upstreams: &str) -> Result<Self, SettingError> {
        Self::from_lookup(default_upstreams, |name| std::env::var(name).ok())
    }

    /// The settings `lookup` gives (a name to its value, `None` when unset). An unset or empty
    /// setting takes its default, but for `CORS_ALLOWED_ORIGINS`, where empty allows no origin.
    pub fn from_lookup(
        default_upstreams: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingError> {
        let value = |name: &str, default: &str| {
            lookup(name)
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let origins =
            origins(&lookup("CORS_ALLOWED_ORIGINS").unwrap_or_else(|| DEFAULT_ORIGINS.to_owned()))?;
        let route_timeout_secs = bounded(
            "ROUTE_TIMEOUT_SECS",
            &value("ROUTE_TIMEOUT_SECS", "15"),
            1..=3600,
            "a whole number of seconds from 1 to 3600",
        )?;
        // Three to six digits: what the drain's arithmetic was written for.
        let shutdown_delay = value("SHUTDOWN_DELAY_MS", "3000");
        let shutdown_delay_ms = if (3..=6).contains(&shutdown_delay.len()) {
            bounded(
                "SHUTDOWN_DELAY_MS",
                &shutdown_delay,
                1..=600_000,
                "a whole number of milliseconds from 300 to 600000",
            )?
        } else {
            return Err(SettingError {
                setting: "SHUTDOWN_DELAY_MS",
                problem: format!(
                    "\"{shutdown_delay}\" is not a whole number of milliseconds from 300 to 600000"
                ),
            });
        };
        let whole = |name: &'static str, default: &str| {
            bounded(
                name,
                &value(name, default),
                1..=1_000_000,
                "a whole number from 1 to 1000000",
            )
        };
        let watch_streams_per_instance = whole("WATCH_MAX_STREAMS_PER_INSTANCE", "100")?;
        let export_streams_per_instance = whole("EXPORT_MAX_CONCURRENT_PER_INSTANCE", "3")?;
        let watch_duration_secs = whole("WATCH_MAX_DURATION_SECS", "3600")?;
        let export_duration_secs = whole("EXPORT_MAX_DURATION_SECS", "600")?;
        let watch_heartbeat_secs = whole("WATCH_HEARTBEAT_SECS", "15")?;
        let upstreams = upstreams(&value("UPSTREAM_ADDRESSES", default_upstreams))?;
        let stream_instances = whole("STREAM_INSTANCES", &upstreams.len().to_string())?;
        Ok(Self {
            origins,
            route_timeout_secs,
            shutdown_delay_ms,
            upstreams,
            stream_instances,
            watch_streams_per_instance,
            export_streams_per_instance,
            watch_duration_secs,
            export_duration_secs,
            watch_heartbeat_secs,
        })
    }
}

/// A whole number in `range`, written without a sign or a leading zero.
fn bounded(
    setting: &'static str,
    value: &str,
    range: std::ops::RangeInclusive<u64>,
    what: &str,
) -> Result<u64, SettingError> {
    let refused = || SettingError {
        setting,
        problem: format!("\"{value}\" is not {what}"),
    };
    if value.starts_with('0') || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(refused());
    }
    value
        .parse::<u64>()
        .ok()
        .filter(|number| range.contains(number))
        .ok_or_else(refused)
}

/// The comma-separated origins, blank entries skipped.
fn origins(list: &str) -> Result<Vec<String>, SettingError> {
    let mut origins = Vec::new();
    for entry in list
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        if !ORIGIN.is_match(entry) {
            return Err(SettingError {
                setting: "CORS_ALLOWED_ORIGINS",
                problem: format!(
                    "\"{entry}\" is not an origin (scheme://host[:port], e.g. https://desk.example.com)"
                ),
            });
        }
        origins.push(entry.to_owned());
    }
    Ok(origins)
}

/// The comma-separated `host:port` instances.
fn upstreams(list: &str) -> Result<Vec<Upstream>, SettingError> {
    list.split(',')
        .map(|entry| {
            let parsed = UPSTREAM
                .is_match(entry)
                .then(|| entry.rsplit_once(':'))
                .flatten()
                .and_then(|(host, port)| {
                    Some(Upstream {
                        host: host.to_owned(),
                        port: port.parse().ok()?,
                    })
                });
            parsed.ok_or_else(|| SettingError {
                setting: "UPSTREAM_ADDRESSES",
                problem: format!("\"{entry}\" is not host:port (e.g. 127.0.0.1:50051)"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<EnvoySettings, SettingError> {
        EnvoySettings::from_lookup("127.0.0.1:50051", |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn the_defaults_are_the_services() {
        let defaults = settings(&[]).unwrap();
        assert_eq!(
            defaults.origins,
            ["http://localhost:3000", "http://127.0.0.1:3000"]
        );
        assert_eq!(defaults.route_timeout_secs, 15);
        assert_eq!(defaults.shutdown_delay_ms, 3000);
        assert_eq!(defaults.stream_instances, 1);
        assert_eq!(
            settings(&[("CORS_ALLOWED_ORIGINS", "")]).unwrap().origins,
            Vec::<String>::new()
        );
        assert_eq!(
            settings(&[("UPSTREAM_ADDRESSES", "a:1,b:2")])
                .unwrap()
                .stream_instances,
            2
        );
    }

    #[test]
    fn a_bad_entry_is_named_with_its_setting() {
        for (name, value) in [
            ("CORS_ALLOWED_ORIGINS", "https://desk.example.com/"),
            ("CORS_ALLOWED_ORIGINS", "*"),
            ("ROUTE_TIMEOUT_SECS", "3601"),
            ("ROUTE_TIMEOUT_SECS", "1.5"),
            ("SHUTDOWN_DELAY_MS", "99"),
            ("SHUTDOWN_DELAY_MS", "600001"),
            ("UPSTREAM_ADDRESSES", "127.0.0.1"),
            ("STREAM_INSTANCES", "0"),
            ("WATCH_HEARTBEAT_SECS", "015"),
        ] {
            let error = settings(&[(name, value)]).unwrap_err();
            assert_eq!(error.setting, name);
            assert!(error.problem.contains(value), "{error}");
        }
    }
}
