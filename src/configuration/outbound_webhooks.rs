//! Webhooks the desk sends to its customers' endpoints (`OUTBOUND_WEBHOOK_*`; docs/webhooks.md,
//! "Webhooks we send"): the delivery workers, the attempt timeout and retry schedule, the
//! addresses deliveries may reach, and the key endpoint secrets are stored under.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;

use super::reader::Reader;
use crate::domain::RetrySchedule;

/// The schedule of retries: about three days in ten attempts.
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,14h,20h,20h";

#[derive(Clone, Debug)]
pub struct OutboundWebhookSettings {
    /// `OUTBOUND_WEBHOOK_WORKERS`: endpoints this instance delivers to at once (one attempt
    /// each, at most half of them failing or slow); 0 makes none (the deliveries wait for another
    /// instance's workers).
    pub workers: u32,
    /// `OUTBOUND_WEBHOOK_MAX_PLACES_PER_ACCOUNT`: how many of this instance's places the
    /// endpoints of one account may hold at once, so that another account's deliveries find a
    /// free place while one account's slow endpoints hold theirs.
    pub max_places_per_account: u32,
    /// `OUTBOUND_WEBHOOK_TIMEOUT_MS`: the longest one attempt may take, connection to the end of
    /// the bounded read of the answer.
    pub attempt_timeout: Duration,
    /// `OUTBOUND_WEBHOOK_RETRY_SCHEDULE`: the delays between attempts (`5s,5m,...`).
    pub retry_schedule: RetrySchedule,
    /// `OUTBOUND_WEBHOOK_POLL_INTERVAL_MS`: how often an idle worker looks for due deliveries.
    pub poll_interval: Duration,
    /// `OUTBOUND_WEBHOOK_BATCH`: how many of one endpoint's due deliveries a worker takes at once
    /// (delivered one after the other, in event order).
    pub batch: u32,
    /// `OUTBOUND_WEBHOOK_SECRET_OVERLAP_SECS`: how long a rotated-out secret keeps signing.
    pub secret_overlap: Duration,
    /// `OUTBOUND_WEBHOOK_MAX_ENDPOINTS`: the most endpoints one account may register.
    pub max_endpoints_per_account: u32,
    /// `OUTBOUND_WEBHOOK_ALLOW_HTTP`: accept `http://` endpoints (local runs and tests only).
    pub allow_http: bool,
    /// `OUTBOUND_WEBHOOK_ALLOW_NETWORKS`: networks deliveries may reach although they are not
    /// public (`127.0.0.0/8` for local runs and tests); empty in production.
    pub allow_networks: Vec<IpNet>,
    /// `OUTBOUND_WEBHOOK_RESOLVE`: host names answered without DNS (`host=addr|addr,...`, as
    /// curl's `--resolve`), still checked against the allowed addresses.
    pub resolve: BTreeMap<String, Vec<IpAddr>>,
    /// `WEBHOOK_ENDPOINT_SECRETS_KEY`: the key endpoint secrets are encrypted under (32 bytes or
    /// more); derived from `JWT_SECRET` when unset.
    pub secrets_key: Option<SecretString>,
    /// `WATCH_POLL_INTERVAL_MS`: how often a caught-up WatchEvents stream looks for new events.
    pub watch_poll_interval: Duration,
    /// `WATCH_HEARTBEAT_SECS`: the longest a WatchEvents stream stays silent (a heartbeat then;
    /// below proxies' idle timeouts, Envoy's 30 s).
    pub watch_heartbeat: Duration,
    /// `WATCH_MAX_DURATION_SECS`: how long one WatchEvents stream lasts before it ends and its
    /// client resumes from its cursor.
    pub watch_max_duration: Duration,
    /// `WATCH_MAX_STREAMS_PER_ACCOUNT`: how many WatchEvents streams of one account may run at
    /// once on one instance; beyond, RESOURCE_EXHAUSTED `STREAM_LIMIT`.
    pub watch_max_per_account: u32,
    /// `WATCH_MAX_STREAMS_PER_INSTANCE`: how many WatchEvents streams may run at once on one
    /// instance.
    pub watch_max_per_instance: u32,
    /// `EVENT_RETENTION_DAYS`: how long events are kept, with their deliveries and attempts,
    /// once none of their deliveries is pending (as long as Stripe keeps its events).
    pub event_retention: Duration,
    /// `EVENT_SWEEP_INTERVAL_SECS`: how often the sweeper deletes events past their retention.
    pub event_sweep_interval: Duration,
}

impl Reader<'_> {
    pub(super) fn outbound_webhooks(&mut self) -> OutboundWebhookSettings {
        let schedule_raw = self
            .raw("OUTBOUND_WEBHOOK_RETRY_SCHEDULE")
            .unwrap_or_else(|| DEFAULT_RETRY_SCHEDULE.to_owned());
        let retry_schedule = RetrySchedule::parse(&schedule_raw).unwrap_or_else(|problem| {
            self.problems.push(format!(
                "OUTBOUND_WEBHOOK_RETRY_SCHEDULE={schedule_raw:?} is invalid: {problem}"
            ));
            RetrySchedule::parse(DEFAULT_RETRY_SCHEDULE).expect("the default schedule parses")
        });
        let mut allow_networks = Vec::new();
        if let Some(raw) = self.raw("OUTBOUND_WEBHOOK_ALLOW_NETWORKS") {
            for item in raw
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
            {
                match item.parse::<IpNet>() {
                    Ok(network) => allow_networks.push(network),
                    Err(error) => self.problems.push(format!(
                        "OUTBOUND_WEBHOOK_ALLOW_NETWORKS: {item:?} is not a network ({error})"
                    )),
                }
            }
        }
        let mut resolve = BTreeMap::new();
        if let Some(raw) = self.raw("OUTBOUND_WEBHOOK_RESOLVE") {
            for item in raw
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
            {
                let parsed = item.split_once('=').and_then(|(host, addresses)| {
                    let addresses: Option<Vec<IpAddr>> = addresses
                        .split('|')
                        .map(|address| address.trim().parse().ok())
                        .collect();
                    Some((host.trim().to_ascii_lowercase(), addresses?))
                });
                match parsed {
                    Some((host, addresses)) if !host.is_empty() && !addresses.is_empty() => {
                        resolve.insert(host, addresses);
                    }
                    _ => self.problems.push(format!(
                        "OUTBOUND_WEBHOOK_RESOLVE: {item:?} is not host=address[|address]"
                    )),
                }
            }
        }
        let secrets_key = self
            .raw("WEBHOOK_ENDPOINT_SECRETS_KEY")
            .map(|_| self.secret_key("WEBHOOK_ENDPOINT_SECRETS_KEY", 32));
        let settings = OutboundWebhookSettings {
            workers: self.parsed("OUTBOUND_WEBHOOK_WORKERS", 32),
            max_places_per_account: self.parsed("OUTBOUND_WEBHOOK_MAX_PLACES_PER_ACCOUNT", 8),
            attempt_timeout: self.millis("OUTBOUND_WEBHOOK_TIMEOUT_MS", 10_000),
            retry_schedule,
            poll_interval: self.millis("OUTBOUND_WEBHOOK_POLL_INTERVAL_MS", 250),
            batch: self.parsed("OUTBOUND_WEBHOOK_BATCH", 10),
            secret_overlap: Duration::from_secs(
                self.parsed("OUTBOUND_WEBHOOK_SECRET_OVERLAP_SECS", 86_400),
            ),
            max_endpoints_per_account: self.parsed("OUTBOUND_WEBHOOK_MAX_ENDPOINTS", 20),
            allow_http: self.parsed("OUTBOUND_WEBHOOK_ALLOW_HTTP", false),
            allow_networks,
            resolve,
            secrets_key,
            watch_poll_interval: self.millis("WATCH_POLL_INTERVAL_MS", 250),
            watch_heartbeat: Duration::from_secs(self.parsed("WATCH_HEARTBEAT_SECS", 15)),
            watch_max_duration: Duration::from_secs(self.parsed("WATCH_MAX_DURATION_SECS", 3600)),
            watch_max_per_account: self.parsed("WATCH_MAX_STREAMS_PER_ACCOUNT", 5),
            watch_max_per_instance: self.parsed("WATCH_MAX_STREAMS_PER_INSTANCE", 100),
            event_retention: Duration::from_secs(
                self.parsed::<u64>("EVENT_RETENTION_DAYS", 30)
                    .saturating_mul(86_400),
            ),
            event_sweep_interval: Duration::from_secs(
                self.parsed("EVENT_SWEEP_INTERVAL_SECS", 600),
            ),
        };
        self.positive_duration("EVENT_RETENTION_DAYS", settings.event_retention);
        self.positive_duration("EVENT_SWEEP_INTERVAL_SECS", settings.event_sweep_interval);
        self.positive_duration("WATCH_HEARTBEAT_SECS", settings.watch_heartbeat);
        self.positive_duration("WATCH_MAX_DURATION_SECS", settings.watch_max_duration);
        self.positive("OUTBOUND_WEBHOOK_BATCH", settings.batch);
        self.positive(
            "WATCH_MAX_STREAMS_PER_ACCOUNT",
            settings.watch_max_per_account,
        );
        self.positive(
            "WATCH_MAX_STREAMS_PER_INSTANCE",
            settings.watch_max_per_instance,
        );
        self.positive(
            "OUTBOUND_WEBHOOK_MAX_PLACES_PER_ACCOUNT",
            settings.max_places_per_account,
        );
        self.positive(
            "OUTBOUND_WEBHOOK_MAX_ENDPOINTS",
            settings.max_endpoints_per_account,
        );
        settings
    }
}
