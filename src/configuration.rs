//! Settings, read once at start-up from environment variables (and an optional dotenv-style
//! file) and validated as a whole: a missing or malformed setting stops the process with a
//! message naming every offending variable. Connection URLs are secrets and never print.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use crate::domain::RateQuota;

/// Everything the service needs to run. Built by [`Settings::load`] or, in tests, by hand.
#[derive(Clone, Debug)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub tickets: TicketSettings,
    pub rate_limits: RateLimitSettings,
    pub idempotency: IdempotencySettings,
    pub log: LogSettings,
    /// The payment provider; `None` when `PAYMENT_PROVIDER_URL` is unset (billing unconfigured).
    pub payment_provider: Option<PaymentProviderSettings>,
    /// `BILLING_COMPLETER_INTERVAL_MS`: how often the completer looks for charges and refunds
    /// left pending (docs/billing.md).
    pub billing_completer_interval: Duration,
    /// Reconciliation against the provider's ledger (docs/billing.md, "Reconciliation").
    pub reconciliation: ReconciliationSettings,
    /// The workers that apply the payment provider's webhook events (docs/webhooks.md).
    pub webhook_workers: WebhookWorkerSettings,
    /// How payment webhooks are received (docs/webhooks.md).
    pub webhook_receiving: WebhookReceivingSettings,
    /// Email notifications (docs/notifications.md).
    pub notifications: NotificationSettings,
}

/// Email notifications: where links point, how mail leaves, and the workers that send it
/// (docs/notifications.md).
#[derive(Clone, Debug)]
pub struct NotificationSettings {
    /// `PUBLIC_BASE_URL`: the address people open the desk at; links in messages start with it
    /// and its host is the domain of every `Message-ID`. Required with an email provider.
    pub public_base_url: Option<url::Url>,
    /// `EMAIL_PROVIDER`: `None` when unset or `none` (notifications are then held, unsent).
    pub email: Option<EmailSettings>,
    /// The workers that send queued notifications.
    pub workers: NotificationWorkerSettings,
    /// `NOTIFICATION_QUEUE_SAMPLE_INTERVAL_MS`: how often the queue's depth and oldest due age
    /// are sampled for `/metrics` (only while `METRICS_LISTEN_ADDR` is set).
    pub queue_sample_interval: Duration,
}

impl NotificationSettings {
    /// The domain of the notifications' `Message-ID`s: the public base URL's host, or
    /// `supportdesk.invalid` (a reserved name) while none is configured.
    pub fn message_domain(&self) -> &str {
        self.public_base_url
            .as_ref()
            .and_then(url::Url::host_str)
            .unwrap_or("supportdesk.invalid")
    }
}

/// How mail leaves the service.
#[derive(Clone, Debug)]
pub struct EmailSettings {
    /// `EMAIL_FROM`: the sender (`Support <support@example.com>` or a bare address).
    pub from: String,
    /// `EMAIL_REPLY_TO`: where replies go, when not to the sender.
    pub reply_to: Option<String>,
    /// `EMAIL_MAX_CONCURRENCY`: messages this instance may have in flight to the provider at once.
    pub max_concurrency: u32,
    /// `EMAIL_BREAKER_FAILURES`: consecutive failures of the provider that open its circuit
    /// breaker.
    pub breaker_failure_threshold: u32,
    /// `EMAIL_BREAKER_COOL_DOWN_MS`: how long the breaker stays open before one probe.
    pub breaker_cool_down: Duration,
    /// The provider `EMAIL_PROVIDER` names.
    pub provider: EmailProviderSettings,
}

/// The email provider and its own settings.
#[derive(Clone, Debug)]
pub enum EmailProviderSettings {
    /// `EMAIL_PROVIDER=smtp`.
    Smtp(SmtpSettings),
    /// `EMAIL_PROVIDER=http`: an HTTP email API in Resend's dialect.
    Http(HttpEmailSettings),
}

/// An HTTP email API in Resend's dialect (`EMAIL_PROVIDER=http`; docs/notifications.md).
#[derive(Clone, Debug)]
pub struct HttpEmailSettings {
    /// `EMAIL_API_URL`: the API's base URL (`http://` or `https://`); messages are POSTed to
    /// `{EMAIL_API_URL}/emails`.
    pub url: url::Url,
    /// `EMAIL_API_KEY`: sent as `Authorization: Bearer`; a secret, never printed.
    pub api_key: SecretString,
    /// `EMAIL_API_TIMEOUT_MS`: how long one attempt may take, the answer included.
    pub timeout: Duration,
    /// `EMAIL_API_MAX_ATTEMPTS`: attempts per send, the first included, before the
    /// notification goes back to the queue.
    pub max_attempts: u32,
    /// `EMAIL_API_BACKOFF_BASE_MS`: the cap of the first retry's random delay; doubles.
    pub backoff_base: Duration,
    /// `EMAIL_API_BACKOFF_MAX_MS`: the largest cap of a retry's random delay.
    pub backoff_max: Duration,
    /// `EMAIL_API_RETRY_BUDGET_PERCENT`: retries may be at most this share of sends.
    pub retry_budget_percent: u32,
    /// `EMAIL_API_RETRY_BUDGET_MIN_PER_SEC`: retries a second allowed on top of the share.
    pub retry_budget_min_per_second: u32,
}

/// An SMTP relay (`EMAIL_PROVIDER=smtp`).
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// `SMTP_HOST`.
    pub host: String,
    /// `SMTP_PORT`: 587 with STARTTLS, 465 with implicit TLS, 25 without TLS by default.
    pub port: u16,
    /// `SMTP_TLS`: `starttls` (the default), `implicit` or `none` (local test servers only).
    pub tls: SmtpTls,
    /// `SMTP_USERNAME` and `SMTP_PASSWORD`: both or neither.
    pub credentials: Option<(String, SecretString)>,
    /// `SMTP_TIMEOUT_MS`: how long one SMTP conversation may take.
    pub timeout: Duration,
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text: only for a server on the same machine (tests, a local relay).
    None,
    /// Plain text upgraded with STARTTLS, which the server must offer.
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
}

impl FromStr for SmtpTls {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "none" => Ok(Self::None),
            "starttls" => Ok(Self::StartTls),
            "implicit" => Ok(Self::Implicit),
            _ => Err("must be none, starttls or implicit".to_owned()),
        }
    }
}

/// The notification workers (docs/notifications.md, "Retries").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationWorkerSettings {
    /// `NOTIFICATION_WORKERS`: workers in this instance (with an email provider).
    pub workers: u32,
    /// `NOTIFICATION_LEASE_SECS`: how long a claimed notification is its worker's.
    pub lease: Duration,
    /// `NOTIFICATION_MAX_ATTEMPTS`: attempts after which a notification is dead.
    pub max_attempts: u32,
    /// `NOTIFICATION_RETRY_BASE_MS`: the cap of the first retry's random delay; doubles.
    pub retry_base: Duration,
    /// `NOTIFICATION_RETRY_MAX_MS`: the largest cap.
    pub retry_max: Duration,
    /// `NOTIFICATION_POLL_INTERVAL_MS`: how often an idle worker looks for due notifications.
    pub poll_interval: Duration,
}

/// How often reconciliation runs, over what period, and what it leaves alone
/// (docs/billing.md, "Reconciliation").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconciliationSettings {
    /// `BILLING_RECONCILIATION_INTERVAL_MS` (an hour): how often a run starts.
    pub interval: Duration,
    /// `BILLING_RECONCILIATION_PERIOD_SECS` (48 hours): a run compares the charges and refunds
    /// created this long before it started.
    pub period: Duration,
    /// `BILLING_RECONCILIATION_SETTLE_MS` (10 minutes): rows younger than this are left to the
    /// request path and the completer.
    pub settle: Duration,
}

/// How the webhook workers take events from the queue, retry them and give up on them
/// (docs/webhooks.md, "Settings").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookWorkerSettings {
    /// `WEBHOOK_WORKERS`: workers in this instance; 0 receives events but processes none.
    pub workers: u32,
    /// `WEBHOOK_LEASE_SECS`: how long a claimed event is its worker's before another may take it.
    pub lease: Duration,
    /// `WEBHOOK_MAX_ATTEMPTS`: attempts after which an event is dead.
    pub max_attempts: u32,
    /// `WEBHOOK_RETRY_BASE_MS`: the cap of the first retry's random delay; doubles per attempt.
    pub retry_base: Duration,
    /// `WEBHOOK_RETRY_MAX_MS`: the largest cap.
    pub retry_max: Duration,
    /// `WEBHOOK_POLL_INTERVAL_MS`: how often an idle worker looks for due events without being
    /// woken (events received by other instances, retries coming due).
    pub poll_interval: Duration,
}

/// How the payment provider's webhook deliveries are verified.
#[derive(Clone, Debug)]
pub struct WebhookReceivingSettings {
    /// `PAYMENT_WEBHOOK_SECRET`: the endpoint's signing secrets (`whsec_...`), comma-separated;
    /// several during a rotation, every one accepted. Empty when unset: every delivery is then
    /// refused with UNAVAILABLE `WEBHOOKS_NOT_CONFIGURED`, so the provider keeps retrying.
    pub secrets: Vec<SecretString>,
    /// `PAYMENT_WEBHOOK_TOLERANCE_SECS`: how far a signature's timestamp may be from now.
    pub tolerance: Duration,
}

#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: may hold a password, hence secret.
    pub url: SecretString,
    /// `DATABASE_POOL_SIZE`
    pub pool_size: u32,
    /// `DATABASE_CONNECT_TIMEOUT_MS`: how long a request waits for a connection before it is
    /// answered UNAVAILABLE. Short on purpose: bb8's default of 30 s outlives every client.
    pub connect_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `REDIS_URL`: may hold a password, hence secret.
    pub url: SecretString,
    /// `REDIS_KEY_PREFIX`: prepended to every key, so instances (and tests) can share a server.
    pub key_prefix: String,
    /// `REDIS_CONNECT_TIMEOUT_MS`
    pub connect_timeout: Duration,
    /// `REDIS_FAILURE_PAUSE_MS`: after a Redis failure, how long the rate limiter and the ticket
    /// cache leave Redis alone (answering by their failure policies) unless the health probe
    /// sees it back first.
    pub failure_pause: Duration,
}

/// The least `MAX_REQUEST_HEADER_BYTES` accepted: hyper's own default.
const MIN_REQUEST_HEADER_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// `GRPC_LISTEN_ADDR`; port 0 picks a free port (tests).
    pub listen_addr: SocketAddr,
    /// `METRICS_LISTEN_ADDR`: where Prometheus scrapes `GET /metrics`; unset, nothing is served.
    pub metrics_listen_addr: Option<SocketAddr>,
    /// `REQUEST_TIMEOUT_MS`: the deadline of a request that brings none, and the longest one a
    /// client may ask for with `grpc-timeout`.
    pub request_timeout: Duration,
    /// `MAX_REQUEST_BYTES`: the largest request message accepted.
    pub max_request_bytes: usize,
    /// `MAX_REQUEST_HEADER_BYTES`: the largest request header list (metadata) accepted, counted
    /// as HTTP/2 counts it (name + value + 32 bytes per field). The default leaves room above
    /// Envoy's 32 KiB for what Envoy adds, so nothing Envoy forwards is refused here.
    pub max_request_header_bytes: usize,
    /// `MAX_CONCURRENT_STREAMS`: concurrent RPCs per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// `HTTP2_KEEPALIVE_INTERVAL_MS`
    pub http2_keepalive_interval: Duration,
    /// `HTTP2_KEEPALIVE_TIMEOUT_MS`
    pub http2_keepalive_timeout: Duration,
    /// `HEALTH_PROBE_INTERVAL_MS`: how often PostgreSQL and Redis are probed.
    pub health_probe_interval: Duration,
    /// `SHUTDOWN_DELAY_MS`: after a signal, how long the server keeps serving while health says
    /// NOT_SERVING, so that load balancers stop sending traffic before it stops listening.
    pub shutdown_delay: Duration,
    /// `SHUTDOWN_DRAIN_TIMEOUT_MS`: how long in-flight RPCs may then take to finish.
    pub shutdown_drain_timeout: Duration,
    /// `WORKER_THREADS`: the async runtime's worker threads; unset, one per core. For a
    /// container whose CPU share is smaller than the cores it sees; on the benchmark's two shared
    /// cores one worker spent less CPU per call but served less (docs/performance.md).
    pub worker_threads: Option<std::num::NonZeroUsize>,
}

#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// `JWT_SECRET`: the HS256 key access tokens are signed with; at least 32 bytes.
    pub jwt_secret: SecretString,
    /// `ACCESS_TOKEN_TTL_SECS`: how long an access token works.
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_SECS`: how long an unused refresh token (and so a session) lives.
    pub refresh_token_ttl: Duration,
    /// `PAGE_TOKEN_KEYS`: comma-separated keys (at least 32 bytes each) page tokens are signed
    /// with; the first signs, all verify, so a key is rotated by putting a new one first and
    /// dropping the old one a release later. Unset: one key derived from `JWT_SECRET`.
    pub page_token_keys: Vec<SecretString>,
    /// `REFRESH_TOKEN_REUSE_GRACE_SECS`: how long after a rotation the rotated token answers
    /// the same successor again (two tabs refreshing at once) instead of revoking the session;
    /// 0 turns the window off.
    pub refresh_reuse_grace: Duration,
}

#[derive(Clone, Debug)]
pub struct TicketSettings {
    /// `MAX_OPEN_TICKETS_PER_REQUESTER`: how many tickets one requester may have open (not solved
    /// or closed) at once.
    pub max_open_per_requester: u32,
    /// `TICKET_CACHE_TTL_SECS`: how long GetTicket may serve a ticket from Redis.
    pub cache_ttl: Duration,
}

#[derive(Clone, Debug)]
pub struct IdempotencySettings {
    /// `IDEMPOTENCY_KEY_TTL_SECS`: how long a key's outcome is kept for replays.
    pub retention: Duration,
    /// `IDEMPOTENCY_WAIT_MS`: how long a retry waits for the first request holding its key
    /// before answering ABORTED.
    pub wait: Duration,
    /// `IDEMPOTENCY_SWEEP_INTERVAL_SECS`: how often expired keys are deleted.
    pub sweep_interval: Duration,
    /// `IDEMPOTENCY_FINGERPRINT_KEY`: the HMAC key of request fingerprints; at least 32 bytes.
    pub fingerprint_key: SecretString,
}

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
    /// `TRUSTED_PROXIES`: peers whose `x-forwarded-for` is believed (Envoy).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// The payment provider billing charges and refunds through (docs/billing.md).
#[derive(Clone, Debug)]
pub struct PaymentProviderSettings {
    /// `PAYMENT_PROVIDER_URL`: the base URL of its Stripe-style API (`http://` or `https://`).
    pub url: url::Url,
    /// `PAYMENT_PROVIDER_SECRET_KEY`: sent as `Authorization: Bearer`; required with the URL.
    pub secret_key: SecretString,
    /// `PAYMENT_PROVIDER_TIMEOUT_MS`: how long one attempt may take, the answer included.
    pub timeout: Duration,
    /// `PAYMENT_PROVIDER_MAX_ATTEMPTS`: attempts per call, the first included.
    pub max_attempts: u32,
    /// `PAYMENT_PROVIDER_BACKOFF_BASE_MS`: the cap of the first retry's random delay; doubles.
    pub backoff_base: Duration,
    /// `PAYMENT_PROVIDER_BACKOFF_MAX_MS`: the largest cap of a retry's random delay.
    pub backoff_max: Duration,
    /// `PAYMENT_PROVIDER_RETRY_BUDGET_PERCENT`: retries may be at most this share of calls.
    pub retry_budget_percent: u32,
    /// `PAYMENT_PROVIDER_RETRY_BUDGET_MIN_PER_SEC`: retries a second allowed on top of the
    /// share, whatever the traffic (over the budget's 10-second window).
    pub retry_budget_min_per_second: u32,
    /// `PAYMENT_PROVIDER_BREAKER_FAILURES`: consecutive failures that open the circuit breaker.
    pub breaker_failure_threshold: u32,
    /// `PAYMENT_PROVIDER_BREAKER_COOL_DOWN_MS`: how long it stays open before one probe.
    pub breaker_cool_down: Duration,
    /// `PAYMENT_PROVIDER_CA_FILE`: a PEM file of CA certificates trusted for `https://` besides
    /// Mozilla's roots (a private CA, a TLS-inspecting proxy); read when the client is built.
    pub ca_file: Option<std::path::PathBuf>,
    /// `PAYMENT_PROVIDER_MAX_CONCURRENCY`: calls this instance may have in flight to the provider
    /// (its bulkhead); a charge or refund over the bound is refused at once, PROVIDER_BUSY.
    pub max_concurrency: usize,
}

#[derive(Clone, Debug)]
pub struct LogSettings {
    /// `LOG_FORMAT`
    pub format: LogFormat,
    /// `RUST_LOG`: a tracing-subscriber filter directive.
    pub filter: String,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object a line: for production and log shippers.
    Json,
    /// Human-readable, coloured: for a terminal.
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            _ => Err("must be `json` or `pretty`".to_owned()),
        }
    }
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
struct IpList(Vec<std::net::IpAddr>);

impl FromStr for IpList {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse()
                    .map_err(|_| format!("{item:?} is not an IP address"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// Every setting that was missing or malformed, so one start-up names them all.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.problems.join("; "))
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Reads the process environment, falling back to `config_file` (dotenv syntax) for
    /// variables the environment does not set.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut values: HashMap<String, String> = HashMap::new();
        if let Some(path) = config_file {
            let entries = dotenvy::from_path_iter(path).map_err(|error| ConfigError {
                problems: vec![format!("config file {}: {error}", path.display())],
            })?;
            for entry in entries {
                let (key, value) = entry.map_err(|error| ConfigError {
                    problems: vec![format!("config file {}: {error}", path.display())],
                })?;
                values.insert(key, value);
            }
        }
        values.extend(std::env::vars());
        Self::from_lookup(|key| values.get(key).cloned())
    }

    /// Builds settings from any key → value source; every problem is collected, not just the
    /// first.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut reader = Reader {
            lookup: &lookup,
            problems: Vec::new(),
        };
        let settings = Self {
            database: DatabaseSettings {
                url: reader.secret_url("DATABASE_URL", &["postgres", "postgresql"]),
                pool_size: reader.parsed("DATABASE_POOL_SIZE", 10),
                connect_timeout: reader.millis("DATABASE_CONNECT_TIMEOUT_MS", 2_000),
            },
            redis: RedisSettings {
                url: reader.secret_url("REDIS_URL", &["redis", "rediss"]),
                key_prefix: reader.parsed("REDIS_KEY_PREFIX", "supportdesk:".to_owned()),
                connect_timeout: reader.millis("REDIS_CONNECT_TIMEOUT_MS", 1_000),
                failure_pause: reader.millis("REDIS_FAILURE_PAUSE_MS", 2_000),
            },
            server: ServerSettings {
                listen_addr: reader.parsed(
                    "GRPC_LISTEN_ADDR",
                    SocketAddr::from(([127, 0, 0, 1], 50051)),
                ),
                metrics_listen_addr: reader.optional("METRICS_LISTEN_ADDR"),
                request_timeout: reader.millis("REQUEST_TIMEOUT_MS", 10_000),
                max_request_bytes: reader.parsed("MAX_REQUEST_BYTES", 1024 * 1024),
                max_request_header_bytes: reader.parsed("MAX_REQUEST_HEADER_BYTES", 40 * 1024),
                max_concurrent_streams: reader.parsed("MAX_CONCURRENT_STREAMS", 200),
                http2_keepalive_interval: reader.millis("HTTP2_KEEPALIVE_INTERVAL_MS", 30_000),
                http2_keepalive_timeout: reader.millis("HTTP2_KEEPALIVE_TIMEOUT_MS", 10_000),
                health_probe_interval: reader.millis("HEALTH_PROBE_INTERVAL_MS", 1_000),
                shutdown_delay: reader.millis_or_zero("SHUTDOWN_DELAY_MS", 1_000),
                shutdown_drain_timeout: reader.millis("SHUTDOWN_DRAIN_TIMEOUT_MS", 30_000),
                worker_threads: reader.optional("WORKER_THREADS"),
            },
            auth: AuthSettings {
                jwt_secret: reader.secret_key("JWT_SECRET", 32),
                access_token_ttl: Duration::from_secs(reader.parsed("ACCESS_TOKEN_TTL_SECS", 900)),
                refresh_token_ttl: Duration::from_secs(
                    reader.parsed("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600),
                ),
                page_token_keys: reader.secret_keys("PAGE_TOKEN_KEYS", 32),
                refresh_reuse_grace: Duration::from_secs(
                    reader.parsed("REFRESH_TOKEN_REUSE_GRACE_SECS", 15),
                ),
            },
            tickets: TicketSettings {
                max_open_per_requester: reader.parsed("MAX_OPEN_TICKETS_PER_REQUESTER", 10),
                cache_ttl: Duration::from_secs(reader.parsed("TICKET_CACHE_TTL_SECS", 300)),
            },
            rate_limits: RateLimitSettings {
                read: reader.parsed(
                    "RATE_LIMIT_READ",
                    RateQuota {
                        count: 600,
                        window: Duration::from_secs(60),
                    },
                ),
                write: reader.parsed(
                    "RATE_LIMIT_WRITE",
                    RateQuota {
                        count: 120,
                        window: Duration::from_secs(60),
                    },
                ),
                public: reader.parsed(
                    "RATE_LIMIT_PUBLIC",
                    RateQuota {
                        count: 30,
                        window: Duration::from_secs(60),
                    },
                ),
                login: reader.parsed(
                    "RATE_LIMIT_LOGIN",
                    RateQuota {
                        count: 100,
                        window: Duration::from_secs(900),
                    },
                ),
                login_attempt: reader.parsed(
                    "RATE_LIMIT_LOGIN_ATTEMPTS",
                    RateQuota {
                        count: 10,
                        window: Duration::from_secs(900),
                    },
                ),
                login_name: reader.parsed(
                    "RATE_LIMIT_LOGIN_NAME_FAILURES",
                    RateQuota {
                        count: 30,
                        window: Duration::from_secs(900),
                    },
                ),
                auth_failure: reader.parsed(
                    "RATE_LIMIT_AUTH_FAILURES",
                    RateQuota {
                        count: 30,
                        window: Duration::from_secs(60),
                    },
                ),
                webhook: reader.parsed(
                    "RATE_LIMIT_WEBHOOK",
                    RateQuota {
                        count: 6000,
                        window: Duration::from_secs(60),
                    },
                ),
                fail_open: reader.parsed("RATE_LIMIT_ON_REDIS_FAILURE", FailurePolicy::Open)
                    == FailurePolicy::Open,
                trusted_proxies: reader
                    .parsed(
                        "TRUSTED_PROXIES",
                        IpList(vec![
                            [127, 0, 0, 1].into(),
                            std::net::Ipv6Addr::LOCALHOST.into(),
                        ]),
                    )
                    .0,
            },
            idempotency: IdempotencySettings {
                retention: Duration::from_secs(
                    reader.parsed("IDEMPOTENCY_KEY_TTL_SECS", 24 * 3600),
                ),
                wait: reader.millis("IDEMPOTENCY_WAIT_MS", 100),
                sweep_interval: Duration::from_secs(
                    reader.parsed("IDEMPOTENCY_SWEEP_INTERVAL_SECS", 60),
                ),
                fingerprint_key: reader.secret_key("IDEMPOTENCY_FINGERPRINT_KEY", 32),
            },
            log: LogSettings {
                format: reader.parsed("LOG_FORMAT", LogFormat::Json),
                filter: reader.parsed("RUST_LOG", "info".to_owned()),
            },
            payment_provider: reader.payment_provider(),
            billing_completer_interval: reader.millis("BILLING_COMPLETER_INTERVAL_MS", 5_000),
            reconciliation: ReconciliationSettings {
                interval: reader.millis("BILLING_RECONCILIATION_INTERVAL_MS", 60 * 60 * 1000),
                period: Duration::from_secs(
                    reader.parsed("BILLING_RECONCILIATION_PERIOD_SECS", 48 * 3600),
                ),
                settle: reader.millis("BILLING_RECONCILIATION_SETTLE_MS", 10 * 60 * 1000),
            },
            webhook_workers: reader.webhook_workers(),
            webhook_receiving: reader.webhook_receiving(),
            notifications: reader.notifications(),
        };
        reader.positive_duration(
            "BILLING_COMPLETER_INTERVAL_MS",
            settings.billing_completer_interval,
        );
        reader.positive_duration(
            "BILLING_RECONCILIATION_INTERVAL_MS",
            settings.reconciliation.interval,
        );
        reader.positive_duration(
            "BILLING_RECONCILIATION_PERIOD_SECS",
            settings.reconciliation.period,
        );
        // A period no longer than the settle time would compare nothing.
        if settings.reconciliation.period <= settings.reconciliation.settle {
            reader.problems.push(
                "BILLING_RECONCILIATION_PERIOD_SECS must be longer than BILLING_RECONCILIATION_SETTLE_MS"
                    .to_owned(),
            );
        }
        reader.positive("DATABASE_POOL_SIZE", settings.database.pool_size);
        reader.positive(
            "MAX_CONCURRENT_STREAMS",
            settings.server.max_concurrent_streams,
        );
        reader.positive_duration("ACCESS_TOKEN_TTL_SECS", settings.auth.access_token_ttl);
        reader.positive_duration("TICKET_CACHE_TTL_SECS", settings.tickets.cache_ttl);
        reader.positive_duration("IDEMPOTENCY_KEY_TTL_SECS", settings.idempotency.retention);
        reader.positive_duration(
            "IDEMPOTENCY_SWEEP_INTERVAL_SECS",
            settings.idempotency.sweep_interval,
        );
        reader.positive(
            "MAX_OPEN_TICKETS_PER_REQUESTER",
            settings.tickets.max_open_per_requester,
        );
        reader.positive_duration("REFRESH_TOKEN_TTL_SECS", settings.auth.refresh_token_ttl);
        // Below hyper's own default every ordinary client would be refused (a token and a few
        // headers already take some kilobytes).
        if settings.server.max_request_header_bytes < MIN_REQUEST_HEADER_BYTES {
            reader.problems.push(format!(
                "MAX_REQUEST_HEADER_BYTES must be at least {MIN_REQUEST_HEADER_BYTES}"
            ));
        }
        // RFC 9700 allows a short window; a long one would let a thief's replay pass too.
        if settings.auth.refresh_reuse_grace > Duration::from_secs(60) {
            reader
                .problems
                .push("REFRESH_TOKEN_REUSE_GRACE_SECS must be at most 60".to_owned());
        }
        if reader.problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError {
                problems: reader.problems,
            })
        }
    }
}

/// The prefix of the payment provider's webhook signing secrets.
const WEBHOOK_SECRET_PREFIX: &str = "whsec_";
/// The fewest characters a signing secret has after its prefix (Stripe's have 32).
const MIN_WEBHOOK_SECRET_CHARS: usize = 16;
/// The largest tolerance accepted: beyond an hour a captured delivery stays replayable too long.
const MAX_WEBHOOK_TOLERANCE_SECS: u64 = 3600;

impl Reader<'_> {
    fn webhook_receiving(&mut self) -> WebhookReceivingSettings {
        let secrets = match self.raw("PAYMENT_WEBHOOK_SECRET") {
            None => Vec::new(),
            Some(value) => {
                let secrets: Vec<&str> = value.split(',').map(str::trim).collect();
                let malformed = secrets.iter().position(|secret| {
                    secret
                        .strip_prefix(WEBHOOK_SECRET_PREFIX)
                        .is_none_or(|rest| rest.chars().count() < MIN_WEBHOOK_SECRET_CHARS)
                });
                if let Some(position) = malformed {
                    // Which one, never what it is.
                    self.problems.push(format!(
                        "PAYMENT_WEBHOOK_SECRET: secret {} of {} must be `{WEBHOOK_SECRET_PREFIX}` \
                         followed by at least {MIN_WEBHOOK_SECRET_CHARS} characters",
                        position + 1,
                        secrets.len()
                    ));
                }
                secrets
                    .into_iter()
                    .map(|secret| SecretString::from(secret.to_owned()))
                    .collect()
            }
        };
        let tolerance_secs = self.parsed("PAYMENT_WEBHOOK_TOLERANCE_SECS", 300);
        if !(1..=MAX_WEBHOOK_TOLERANCE_SECS).contains(&tolerance_secs) {
            self.problems.push(format!(
                "PAYMENT_WEBHOOK_TOLERANCE_SECS must be between 1 and {MAX_WEBHOOK_TOLERANCE_SECS}"
            ));
        }
        WebhookReceivingSettings {
            secrets,
            tolerance: Duration::from_secs(tolerance_secs),
        }
    }

    /// Every knob is read and checked even without a URL, so a typo shows up before billing is
    /// switched on; the settings exist only with a URL.
    fn payment_provider(&mut self) -> Option<PaymentProviderSettings> {
        let timeout = self.millis("PAYMENT_PROVIDER_TIMEOUT_MS", 3_000);
        let max_attempts = self.parsed("PAYMENT_PROVIDER_MAX_ATTEMPTS", 3);
        self.positive("PAYMENT_PROVIDER_MAX_ATTEMPTS", max_attempts);
        let backoff_base = self.millis("PAYMENT_PROVIDER_BACKOFF_BASE_MS", 100);
        let backoff_max = self.millis("PAYMENT_PROVIDER_BACKOFF_MAX_MS", 2_000);
        if backoff_max < backoff_base {
            self.problems.push(
                "PAYMENT_PROVIDER_BACKOFF_MAX_MS must not be less than PAYMENT_PROVIDER_BACKOFF_BASE_MS"
                    .to_owned(),
            );
        }
        let retry_budget_percent = self.parsed("PAYMENT_PROVIDER_RETRY_BUDGET_PERCENT", 20);
        if retry_budget_percent > 100 {
            self.problems
                .push("PAYMENT_PROVIDER_RETRY_BUDGET_PERCENT must be between 0 and 100".to_owned());
        }
        if self.raw("PAYMENT_PROVIDER_RETRY_BUDGET_BURST").is_some() {
            self.problems.push(
                "PAYMENT_PROVIDER_RETRY_BUDGET_BURST is gone: set PAYMENT_PROVIDER_RETRY_BUDGET_MIN_PER_SEC \
                 (retries a second allowed on top of the share; 1 allows the old default's 10 per \
                 10 seconds)"
                    .to_owned(),
            );
        }
        let retry_budget_min_per_second =
            self.parsed("PAYMENT_PROVIDER_RETRY_BUDGET_MIN_PER_SEC", 1);
        let breaker_failure_threshold = self.parsed("PAYMENT_PROVIDER_BREAKER_FAILURES", 5);
        self.positive(
            "PAYMENT_PROVIDER_BREAKER_FAILURES",
            breaker_failure_threshold,
        );
        let breaker_cool_down = self.millis("PAYMENT_PROVIDER_BREAKER_COOL_DOWN_MS", 10_000);
        let max_concurrency: u32 = self.parsed("PAYMENT_PROVIDER_MAX_CONCURRENCY", 16);
        self.positive("PAYMENT_PROVIDER_MAX_CONCURRENCY", max_concurrency);
        let ca_file = self
            .raw("PAYMENT_PROVIDER_CA_FILE")
            .map(|path| std::path::PathBuf::from(path.trim()));

        let secret = self.raw("PAYMENT_PROVIDER_SECRET_KEY");
        let Some(raw_url) = self.raw("PAYMENT_PROVIDER_URL") else {
            if secret.is_some() {
                self.problems.push(
                    "PAYMENT_PROVIDER_SECRET_KEY is set but PAYMENT_PROVIDER_URL is not".to_owned(),
                );
            }
            return None;
        };
        let url = match url::Url::parse(raw_url.trim()) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                self.problems.push(
                    "PAYMENT_PROVIDER_URL must be a URL starting with http:// or https://"
                        .to_owned(),
                );
                None
            }
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                self.problems
                    .push("PAYMENT_PROVIDER_URL names no host".to_owned());
                None
            }
            Ok(url) => Some(url),
            Err(error) => {
                self.problems
                    .push(format!("PAYMENT_PROVIDER_URL is not a valid URL: {error}"));
                None
            }
        };
        let Some(secret) = secret else {
            self.problems.push(
                "PAYMENT_PROVIDER_SECRET_KEY is not set (required with PAYMENT_PROVIDER_URL)"
                    .to_owned(),
            );
            return None;
        };
        Some(PaymentProviderSettings {
            url: url?,
            secret_key: SecretString::from(secret.trim().to_owned()),
            timeout,
            max_attempts,
            backoff_base,
            backoff_max,
            retry_budget_percent,
            retry_budget_min_per_second,
            breaker_failure_threshold,
            breaker_cool_down,
            ca_file,
            max_concurrency: usize::try_from(max_concurrency).unwrap_or(usize::MAX),
        })
    }
}

impl Reader<'_> {
    fn webhook_workers(&mut self) -> WebhookWorkerSettings {
        let settings = WebhookWorkerSettings {
            workers: self.parsed("WEBHOOK_WORKERS", 2),
            lease: Duration::from_secs(self.parsed("WEBHOOK_LEASE_SECS", 60)),
            max_attempts: self.parsed("WEBHOOK_MAX_ATTEMPTS", 8),
            retry_base: self.millis("WEBHOOK_RETRY_BASE_MS", 5_000),
            retry_max: self.millis("WEBHOOK_RETRY_MAX_MS", 600_000),
            poll_interval: self.millis("WEBHOOK_POLL_INTERVAL_MS", 1_000),
        };
        self.positive_duration("WEBHOOK_LEASE_SECS", settings.lease);
        self.positive("WEBHOOK_MAX_ATTEMPTS", settings.max_attempts);
        // More workers than this would only wait for pooled connections.
        if settings.workers > 64 {
            self.problems
                .push("WEBHOOK_WORKERS must be at most 64".to_owned());
        }
        if settings.retry_max < settings.retry_base {
            self.problems.push(
                "WEBHOOK_RETRY_MAX_MS must not be less than WEBHOOK_RETRY_BASE_MS".to_owned(),
            );
        }
        settings
    }
}

impl DatabaseSettings {
    /// The URL with the database name replaced: tests clone one database per test.
    pub fn with_database_name(&self, name: &str) -> SecretString {
        let url = self.url.expose_secret();
        let base = url.split('?').next().unwrap_or(url);
        let query = url.strip_prefix(base).unwrap_or("");
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        SecretString::from(format!("{server}/{name}{query}"))
    }
}

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<String>,
}

impl Reader<'_> {
    fn raw(&self, key: &str) -> Option<String> {
        (self.lookup)(key).filter(|value| !value.trim().is_empty())
    }

    fn parsed<T>(&mut self, key: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(key) {
            None => default,
            Some(value) => value.trim().parse().unwrap_or_else(|error| {
                self.problems
                    .push(format!("{key}={value:?} is invalid: {error}"));
                default
            }),
        }
    }

    fn optional<T>(&mut self, key: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let value = self.raw(key)?;
        match value.trim().parse() {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                self.problems
                    .push(format!("{key}={value:?} is invalid: {error}"));
                None
            }
        }
    }

    fn millis(&mut self, key: &str, default_ms: u64) -> Duration {
        let millis = self.parsed(key, default_ms);
        if millis == 0 {
            self.problems.push(format!("{key} must be greater than 0"));
        }
        Duration::from_millis(millis)
    }

    fn millis_or_zero(&mut self, key: &str, default_ms: u64) -> Duration {
        Duration::from_millis(self.parsed(key, default_ms))
    }

    fn positive(&mut self, key: &str, value: u32) {
        if value == 0 {
            self.problems.push(format!("{key} must be greater than 0"));
        }
    }

    fn positive_duration(&mut self, key: &str, value: Duration) {
        if value.is_zero() {
            self.problems.push(format!("{key} must be greater than 0"));
        }
    }

    fn secret_key(&mut self, key: &str, min_bytes: usize) -> SecretString {
        match self.raw(key) {
            None => self.problems.push(format!(
                "{key} is not set (use at least {min_bytes} random bytes, e.g. `openssl rand -hex 32`)"
            )),
            Some(value) if value.len() < min_bytes => self
                .problems
                .push(format!("{key} must be at least {min_bytes} bytes long")),
            Some(_) => {}
        }
        SecretString::from(self.raw(key).unwrap_or_default())
    }

    /// `EMAIL_*`, `SMTP_*`, `PUBLIC_BASE_URL` and `NOTIFICATION_*`.
    fn notifications(&mut self) -> NotificationSettings {
        let workers = NotificationWorkerSettings {
            workers: self.parsed("NOTIFICATION_WORKERS", 2),
            lease: Duration::from_secs(self.parsed("NOTIFICATION_LEASE_SECS", 60)),
            max_attempts: self.parsed("NOTIFICATION_MAX_ATTEMPTS", 12),
            retry_base: self.millis("NOTIFICATION_RETRY_BASE_MS", 10_000),
            retry_max: self.millis("NOTIFICATION_RETRY_MAX_MS", 3_600_000),
            poll_interval: self.millis("NOTIFICATION_POLL_INTERVAL_MS", 1_000),
        };
        self.positive_duration("NOTIFICATION_LEASE_SECS", workers.lease);
        self.positive("NOTIFICATION_MAX_ATTEMPTS", workers.max_attempts);
        if workers.workers > 64 {
            self.problems
                .push("NOTIFICATION_WORKERS must be at most 64".to_owned());
        }
        if workers.retry_max < workers.retry_base {
            self.problems.push(
                "NOTIFICATION_RETRY_MAX_MS must not be less than NOTIFICATION_RETRY_BASE_MS"
                    .to_owned(),
            );
        }
        let public_base_url =
            self.raw("PUBLIC_BASE_URL")
                .and_then(|raw| match url::Url::parse(raw.trim()) {
                    Ok(url)
                        if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() =>
                    {
                        Some(url)
                    }
                    Ok(_) => {
                        self.problems.push(
                            "PUBLIC_BASE_URL must be an http:// or https:// URL with a host"
                                .to_owned(),
                        );
                        None
                    }
                    Err(error) => {
                        self.problems
                            .push(format!("PUBLIC_BASE_URL is not a valid URL: {error}"));
                        None
                    }
                });
        let provider = self.raw("EMAIL_PROVIDER");
        let email = match provider.as_deref().map(str::trim) {
            None | Some("none") => {
                for (key, provider) in [
                    ("SMTP_HOST", "smtp"),
                    ("EMAIL_FROM", "smtp or http"),
                    ("EMAIL_API_URL", "http"),
                    ("EMAIL_API_KEY", "http"),
                ] {
                    if self.raw(key).is_some() {
                        self.problems.push(format!(
                            "{key} is set but EMAIL_PROVIDER is not (set EMAIL_PROVIDER={provider})"
                        ));
                    }
                }
                None
            }
            Some(name @ ("smtp" | "http")) => {
                if public_base_url.is_none() && self.raw("PUBLIC_BASE_URL").is_none() {
                    self.problems.push(
                        "PUBLIC_BASE_URL is not set (required with EMAIL_PROVIDER: links and \
                         Message-IDs are built from it)"
                            .to_owned(),
                    );
                }
                let provider = if name == "smtp" {
                    EmailProviderSettings::Smtp(self.smtp())
                } else {
                    EmailProviderSettings::Http(self.email_api())
                };
                Some(self.email(provider))
            }
            Some(other) => {
                self.problems.push(format!(
                    "EMAIL_PROVIDER={other:?} is invalid: must be smtp, http or none"
                ));
                None
            }
        };
        let queue_sample_interval = self.millis("NOTIFICATION_QUEUE_SAMPLE_INTERVAL_MS", 15_000);
        NotificationSettings {
            public_base_url,
            email,
            workers,
            queue_sample_interval,
        }
    }

    /// What every provider shares: the sender, the bound and the breaker.
    fn email(&mut self, provider: EmailProviderSettings) -> EmailSettings {
        let mailbox = |reader: &mut Self, key: &str| {
            let value = reader.raw(key)?;
            match value.trim().parse::<lettre::message::Mailbox>() {
                Ok(_) => Some(value.trim().to_owned()),
                Err(error) => {
                    reader
                        .problems
                        .push(format!("{key}={value:?} is not an email address: {error}"));
                    None
                }
            }
        };
        let from = mailbox(self, "EMAIL_FROM").unwrap_or_default();
        if self.raw("EMAIL_FROM").is_none() {
            self.problems
                .push("EMAIL_FROM is not set (required with EMAIL_PROVIDER)".to_owned());
        }
        let reply_to = mailbox(self, "EMAIL_REPLY_TO");
        let max_concurrency = self.parsed("EMAIL_MAX_CONCURRENCY", 4);
        self.positive("EMAIL_MAX_CONCURRENCY", max_concurrency);
        let breaker_failure_threshold = self.parsed("EMAIL_BREAKER_FAILURES", 5);
        self.positive("EMAIL_BREAKER_FAILURES", breaker_failure_threshold);
        EmailSettings {
            from,
            reply_to,
            max_concurrency,
            breaker_failure_threshold,
            breaker_cool_down: self.millis("EMAIL_BREAKER_COOL_DOWN_MS", 30_000),
            provider,
        }
    }

    /// `SMTP_*`.
    fn smtp(&mut self) -> SmtpSettings {
        let host = self.raw("SMTP_HOST").unwrap_or_else(|| {
            self.problems
                .push("SMTP_HOST is not set (required with EMAIL_PROVIDER=smtp)".to_owned());
            String::new()
        });
        let tls: SmtpTls = self.parsed("SMTP_TLS", SmtpTls::StartTls);
        let default_port = match tls {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
        };
        let port: u16 = self.parsed("SMTP_PORT", default_port);
        if port == 0 {
            self.problems
                .push("SMTP_PORT must be greater than 0".to_owned());
        }
        let credentials = match (self.raw("SMTP_USERNAME"), self.raw("SMTP_PASSWORD")) {
            (Some(username), Some(password)) => Some((username, SecretString::from(password))),
            (None, None) => None,
            (Some(_), None) => {
                self.problems
                    .push("SMTP_USERNAME is set but SMTP_PASSWORD is not".to_owned());
                None
            }
            (None, Some(_)) => {
                self.problems
                    .push("SMTP_PASSWORD is set but SMTP_USERNAME is not".to_owned());
                None
            }
        };
        SmtpSettings {
            host,
            port,
            tls,
            credentials,
            timeout: self.millis("SMTP_TIMEOUT_MS", 10_000),
        }
    }

    /// `EMAIL_API_*`.
    fn email_api(&mut self) -> HttpEmailSettings {
        let url = match self.raw("EMAIL_API_URL") {
            None => {
                self.problems.push(
                    "EMAIL_API_URL is not set (required with EMAIL_PROVIDER=http)".to_owned(),
                );
                None
            }
            Some(raw) => match url::Url::parse(raw.trim()) {
                Ok(url)
                    if matches!(url.scheme(), "http" | "https")
                        && url.host_str().is_some_and(|host| !host.is_empty()) =>
                {
                    Some(url)
                }
                Ok(_) => {
                    self.problems.push(
                        "EMAIL_API_URL must be an http:// or https:// URL with a host".to_owned(),
                    );
                    None
                }
                Err(error) => {
                    self.problems
                        .push(format!("EMAIL_API_URL is not a valid URL: {error}"));
                    None
                }
            },
        };
        let api_key = self.raw("EMAIL_API_KEY").unwrap_or_else(|| {
            self.problems
                .push("EMAIL_API_KEY is not set (required with EMAIL_PROVIDER=http)".to_owned());
            String::new()
        });
        let max_attempts = self.parsed("EMAIL_API_MAX_ATTEMPTS", 3);
        self.positive("EMAIL_API_MAX_ATTEMPTS", max_attempts);
        let backoff_base = self.millis("EMAIL_API_BACKOFF_BASE_MS", 100);
        let backoff_max = self.millis("EMAIL_API_BACKOFF_MAX_MS", 2_000);
        if backoff_max < backoff_base {
            self.problems.push(
                "EMAIL_API_BACKOFF_MAX_MS must not be less than EMAIL_API_BACKOFF_BASE_MS"
                    .to_owned(),
            );
        }
        let retry_budget_percent = self.parsed("EMAIL_API_RETRY_BUDGET_PERCENT", 20);
        if retry_budget_percent > 100 {
            self.problems
                .push("EMAIL_API_RETRY_BUDGET_PERCENT must be between 0 and 100".to_owned());
        }
        HttpEmailSettings {
            // A placeholder when the URL is missing or malformed: the problem stops the start.
            url: url.unwrap_or_else(|| url::Url::parse("http://invalid.invalid/").expect("a URL")),
            api_key: SecretString::from(api_key.trim().to_owned()),
            timeout: self.millis("EMAIL_API_TIMEOUT_MS", 10_000),
            max_attempts,
            backoff_base,
            backoff_max,
            retry_budget_percent,
            retry_budget_min_per_second: self.parsed("EMAIL_API_RETRY_BUDGET_MIN_PER_SEC", 1),
        }
    }

    /// A comma-separated list of secret keys, each at least `min_bytes` long; empty when unset.
    fn secret_keys(&mut self, key: &str, min_bytes: usize) -> Vec<SecretString> {
        let Some(value) = self.raw(key) else {
            return Vec::new();
        };
        let keys: Vec<&str> = value.split(',').map(str::trim).collect();
        if let Some(position) = keys.iter().position(|item| item.len() < min_bytes) {
            // Which one, never what it is.
            self.problems.push(format!(
                "{key}: key {} of {} must be at least {min_bytes} bytes long",
                position + 1,
                keys.len()
            ));
        }
        keys.into_iter()
            .map(|item| SecretString::from(item.to_owned()))
            .collect()
    }

    fn secret_url(&mut self, key: &str, schemes: &[&str]) -> SecretString {
        let Some(value) = self.raw(key) else {
            self.problems.push(format!("{key} is not set"));
            return SecretString::from(String::new());
        };
        // The value itself is never echoed: it may carry a password.
        let scheme = value.split_once("://").map(|(scheme, _)| scheme);
        if !scheme.is_some_and(|scheme| schemes.contains(&scheme)) {
            self.problems.push(format!(
                "{key} must be a URL starting with {}",
                schemes
                    .iter()
                    .map(|scheme| format!("{scheme}://"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        } else {
            match url::Url::parse(&value) {
                // url's messages ("invalid port number", "empty host") say what, never the value.
                Err(error) => self
                    .problems
                    .push(format!("{key} is not a valid URL: {error}")),
                // A socket directory in `?host=` stands in for the host (libpq's convention).
                Ok(parsed)
                    if parsed.host_str().is_none_or(str::is_empty)
                        && !parsed.query_pairs().any(|(name, _)| name == "host") =>
                {
                    self.problems.push(format!("{key} names no host"));
                }
                Ok(_) => {}
            }
        }
        SecretString::from(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        move |key| map.get(key).cloned()
    }

    const REQUIRED: [(&str, &str); 4] = [
        ("DATABASE_URL", "postgres://app:hunter2@db/supportdesk"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef-hunter2"),
        (
            "IDEMPOTENCY_FINGERPRINT_KEY",
            "fedcba9876543210fedcba9876543210-hunter2",
        ),
    ];

    #[test]
    fn the_urls_and_secrets_are_enough_and_everything_else_has_a_default() {
        let settings = Settings::from_lookup(lookup_from(&REQUIRED)).expect("valid settings");
        assert_eq!(
            settings.server.listen_addr,
            "127.0.0.1:50051".parse().unwrap()
        );
        assert_eq!(settings.log.format, LogFormat::Json);
        assert_eq!(settings.database.connect_timeout, Duration::from_secs(2));
        assert_eq!(settings.server.metrics_listen_addr, None, "metrics are off");
        assert_eq!(settings.server.worker_threads, None, "one worker per core");
    }

    #[test]
    fn reconciliation_runs_hourly_over_two_days_and_a_period_within_the_settle_time_is_refused() {
        let settings = Settings::from_lookup(lookup_from(&REQUIRED)).expect("valid settings");
        assert_eq!(
            settings.reconciliation,
            ReconciliationSettings {
                interval: Duration::from_secs(3600),
                period: Duration::from_secs(48 * 3600),
                settle: Duration::from_secs(600),
            }
        );
        let mut values = REQUIRED.to_vec();
        values.push(("BILLING_RECONCILIATION_PERIOD_SECS", "60"));
        values.push(("BILLING_RECONCILIATION_INTERVAL_MS", "0"));
        let text = Settings::from_lookup(lookup_from(&values))
            .expect_err("invalid settings")
            .to_string();
        assert!(
            text.contains("BILLING_RECONCILIATION_PERIOD_SECS"),
            "{text}"
        );
        assert!(
            text.contains("BILLING_RECONCILIATION_INTERVAL_MS"),
            "{text}"
        );
    }

    #[test]
    fn worker_threads_can_be_fewer_than_the_cores() {
        let mut values = REQUIRED.to_vec();
        values.push(("WORKER_THREADS", "1"));
        let settings = Settings::from_lookup(lookup_from(&values)).expect("valid settings");
        assert_eq!(settings.server.worker_threads.map(|n| n.get()), Some(1));
    }

    #[test]
    fn every_missing_or_malformed_setting_is_named_at_once() {
        let error = Settings::from_lookup(lookup_from(&[
            ("DATABASE_URL", "mysql://nope"),
            ("LOG_FORMAT", "xml"),
            ("GRPC_LISTEN_ADDR", "localhost"),
            ("METRICS_LISTEN_ADDR", "9090"),
            ("DATABASE_POOL_SIZE", "0"),
            ("WORKER_THREADS", "0"),
        ]))
        .expect_err("invalid settings");
        let text = error.to_string();
        for key in [
            "DATABASE_URL",
            "REDIS_URL",
            "JWT_SECRET",
            "IDEMPOTENCY_FINGERPRINT_KEY",
            "LOG_FORMAT",
            "GRPC_LISTEN_ADDR",
            "METRICS_LISTEN_ADDR",
            "DATABASE_POOL_SIZE",
            "WORKER_THREADS",
        ] {
            assert!(text.contains(key), "{key} missing from: {text}");
        }
    }

    #[test]
    fn malformed_urls_and_a_short_key_are_all_named_together() {
        let error = Settings::from_lookup(lookup_from(&[
            (
                "DATABASE_URL",
                "postgres://app:hunter2@db:notaport/supportdesk",
            ),
            ("REDIS_URL", "redis://:hunter2@cache:99999"),
            ("JWT_SECRET", "short"),
            ("PAGE_TOKEN_KEYS", "0123456789abcdef0123456789abcdef, short"),
            (
                "IDEMPOTENCY_FINGERPRINT_KEY",
                "fedcba9876543210fedcba9876543210",
            ),
        ]))
        .expect_err("invalid settings");
        assert_eq!(
            error.problems,
            [
                "DATABASE_URL is not a valid URL: invalid port number",
                "REDIS_URL is not a valid URL: invalid port number",
                "JWT_SECRET must be at least 32 bytes long",
                "PAGE_TOKEN_KEYS: key 2 of 2 must be at least 32 bytes long",
            ]
        );
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn webhook_workers_default_to_two_and_every_bad_knob_is_named() {
        let settings = Settings::from_lookup(lookup_from(&REQUIRED)).expect("valid settings");
        assert_eq!(
            settings.webhook_workers,
            WebhookWorkerSettings {
                workers: 2,
                lease: Duration::from_secs(60),
                max_attempts: 8,
                retry_base: Duration::from_secs(5),
                retry_max: Duration::from_secs(600),
                poll_interval: Duration::from_secs(1),
            }
        );
        let mut receiving_only = REQUIRED.to_vec();
        receiving_only.push(("WEBHOOK_WORKERS", "0"));
        let settings = Settings::from_lookup(lookup_from(&receiving_only)).expect("0 is valid");
        assert_eq!(settings.webhook_workers.workers, 0);

        let mut bad = REQUIRED.to_vec();
        bad.extend([
            ("WEBHOOK_WORKERS", "-1"),
            ("WEBHOOK_LEASE_SECS", "0"),
            ("WEBHOOK_MAX_ATTEMPTS", "0"),
            ("WEBHOOK_RETRY_BASE_MS", "5000"),
            ("WEBHOOK_RETRY_MAX_MS", "1000"),
            ("WEBHOOK_POLL_INTERVAL_MS", "0"),
        ]);
        let text = Settings::from_lookup(lookup_from(&bad))
            .expect_err("invalid settings")
            .to_string();
        for problem in [
            "WEBHOOK_WORKERS=\"-1\" is invalid",
            "WEBHOOK_LEASE_SECS must be greater than 0",
            "WEBHOOK_MAX_ATTEMPTS must be greater than 0",
            "WEBHOOK_RETRY_MAX_MS must not be less than WEBHOOK_RETRY_BASE_MS",
            "WEBHOOK_POLL_INTERVAL_MS must be greater than 0",
        ] {
            assert!(text.contains(problem), "{problem} missing from: {text}");
        }
    }

    #[test]
    fn email_is_off_by_default_and_smtp_settings_are_read_with_their_defaults() {
        let settings = Settings::from_lookup(lookup_from(&REQUIRED)).expect("valid settings");
        assert!(settings.notifications.email.is_none());
        assert_eq!(
            settings.notifications.message_domain(),
            "supportdesk.invalid"
        );
        let mut values = REQUIRED.to_vec();
        values.extend([
            ("EMAIL_PROVIDER", "smtp"),
            ("SMTP_HOST", "mail.example.com"),
            ("SMTP_USERNAME", "desk"),
            ("SMTP_PASSWORD", "hunter22"),
            ("EMAIL_FROM", "Support <support@example.com>"),
            ("PUBLIC_BASE_URL", "https://desk.example.com/"),
        ]);
        let settings = Settings::from_lookup(lookup_from(&values)).expect("valid settings");
        assert_eq!(settings.notifications.message_domain(), "desk.example.com");
        let email = settings.notifications.email.expect("email configured");
        assert_eq!(
            (email.breaker_failure_threshold, email.breaker_cool_down),
            (5, Duration::from_secs(30))
        );
        let EmailProviderSettings::Smtp(smtp) = email.provider else {
            panic!("the SMTP provider");
        };
        assert_eq!((smtp.tls, smtp.port), (SmtpTls::StartTls, 587));
        assert!(!format!("{smtp:?}").contains("hunter22"));
    }

    #[test]
    fn the_http_provider_is_read_with_its_defaults_and_its_key_never_printed() {
        let mut values = REQUIRED.to_vec();
        values.extend([
            ("EMAIL_PROVIDER", "http"),
            ("EMAIL_API_URL", "https://api.resend.com"),
            ("EMAIL_API_KEY", "re_supersecret_123"),
            ("EMAIL_FROM", "Support <support@example.com>"),
            ("PUBLIC_BASE_URL", "https://desk.example.com/"),
            ("EMAIL_BREAKER_FAILURES", "2"),
            ("EMAIL_BREAKER_COOL_DOWN_MS", "250"),
        ]);
        let settings = Settings::from_lookup(lookup_from(&values)).expect("valid settings");
        let email = settings.notifications.email.expect("email configured");
        assert_eq!(
            (email.breaker_failure_threshold, email.breaker_cool_down),
            (2, Duration::from_millis(250))
        );
        assert!(!format!("{email:?}").contains("re_supersecret_123"));
        let EmailProviderSettings::Http(api) = email.provider else {
            panic!("the HTTP provider");
        };
        assert_eq!(api.url.as_str(), "https://api.resend.com/");
        assert_eq!(api.api_key.expose_secret(), "re_supersecret_123");
        assert_eq!(
            (
                api.timeout,
                api.max_attempts,
                api.backoff_base,
                api.backoff_max
            ),
            (
                Duration::from_secs(10),
                3,
                Duration::from_millis(100),
                Duration::from_secs(2)
            )
        );
        assert_eq!(
            (api.retry_budget_percent, api.retry_budget_min_per_second),
            (20, 1)
        );
    }

    #[test]
    fn every_bad_http_provider_setting_is_named_and_the_key_never_echoed() {
        let mut values = REQUIRED.to_vec();
        values.extend([
            ("EMAIL_PROVIDER", "http"),
            ("EMAIL_API_URL", "ftp://mail.example.com"),
            ("EMAIL_FROM", "Support <support@example.com>"),
            ("PUBLIC_BASE_URL", "https://desk.example.com/"),
            ("EMAIL_API_MAX_ATTEMPTS", "0"),
            ("EMAIL_API_BACKOFF_BASE_MS", "500"),
            ("EMAIL_API_BACKOFF_MAX_MS", "100"),
            ("EMAIL_API_RETRY_BUDGET_PERCENT", "101"),
            ("EMAIL_BREAKER_FAILURES", "0"),
            ("EMAIL_BREAKER_COOL_DOWN_MS", "0"),
        ]);
        let error = Settings::from_lookup(lookup_from(&values)).expect_err("invalid settings");
        assert_eq!(
            error.problems,
            [
                "EMAIL_API_URL must be an http:// or https:// URL with a host",
                "EMAIL_API_KEY is not set (required with EMAIL_PROVIDER=http)",
                "EMAIL_API_MAX_ATTEMPTS must be greater than 0",
                "EMAIL_API_BACKOFF_MAX_MS must not be less than EMAIL_API_BACKOFF_BASE_MS",
                "EMAIL_API_RETRY_BUDGET_PERCENT must be between 0 and 100",
                "EMAIL_BREAKER_FAILURES must be greater than 0",
                "EMAIL_BREAKER_COOL_DOWN_MS must be greater than 0",
            ]
        );
        let mut stray = REQUIRED.to_vec();
        stray.push(("EMAIL_API_KEY", "re_supersecret_123"));
        let text = Settings::from_lookup(lookup_from(&stray))
            .expect_err("a key without a provider")
            .to_string();
        assert!(
            text.contains(
                "EMAIL_API_KEY is set but EMAIL_PROVIDER is not (set EMAIL_PROVIDER=http)"
            ),
            "{text}"
        );
        assert!(!text.contains("re_supersecret_123"), "{text}");
    }

    #[test]
    fn every_bad_email_setting_is_named_and_the_password_never_echoed() {
        let mut values = REQUIRED.to_vec();
        values.extend([
            ("EMAIL_PROVIDER", "smtp"),
            ("SMTP_TLS", "sometimes"),
            ("SMTP_PASSWORD", "hunter22"),
            ("EMAIL_FROM", "not an address"),
            ("EMAIL_REPLY_TO", "also\r\nnot"),
            ("NOTIFICATION_MAX_ATTEMPTS", "0"),
        ]);
        let text = Settings::from_lookup(lookup_from(&values))
            .expect_err("invalid settings")
            .to_string();
        for key in [
            "SMTP_HOST",
            "SMTP_TLS",
            "SMTP_PASSWORD is set but SMTP_USERNAME is not",
            "EMAIL_FROM",
            "EMAIL_REPLY_TO",
            "PUBLIC_BASE_URL is not set",
            "NOTIFICATION_MAX_ATTEMPTS",
        ] {
            assert!(text.contains(key), "{key} not named in: {text}");
        }
        assert!(!text.contains("hunter22"), "{text}");
        let mut unknown = REQUIRED.to_vec();
        unknown.push(("EMAIL_PROVIDER", "carrier-pigeon"));
        let text = Settings::from_lookup(lookup_from(&unknown))
            .expect_err("unknown provider")
            .to_string();
        assert!(text.contains("EMAIL_PROVIDER"), "{text}");
    }

    #[test]
    fn a_url_without_a_host_is_refused() {
        let error = Settings::from_lookup(lookup_from(&[
            ("DATABASE_URL", "postgres:///supportdesk"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            (
                "IDEMPOTENCY_FINGERPRINT_KEY",
                "fedcba9876543210fedcba9876543210",
            ),
        ]))
        .expect_err("no host");
        assert_eq!(error.problems, ["DATABASE_URL names no host"]);
    }

    #[test]
    fn a_header_limit_below_16_kib_is_refused_and_the_default_is_40_kib() {
        let settings = Settings::from_lookup(lookup_from(&REQUIRED)).expect("valid settings");
        assert_eq!(settings.server.max_request_header_bytes, 40 * 1024);
        let mut small = REQUIRED.to_vec();
        small.push(("MAX_REQUEST_HEADER_BYTES", "1000"));
        let error = Settings::from_lookup(lookup_from(&small)).expect_err("too small");
        assert!(
            error
                .to_string()
                .contains("MAX_REQUEST_HEADER_BYTES must be at least 16384"),
            "{error}"
        );
    }

    #[test]
    fn a_short_fingerprint_key_and_a_long_refresh_grace_window_are_refused() {
        let mut pairs = REQUIRED.to_vec();
        pairs.retain(|(key, _)| *key != "IDEMPOTENCY_FINGERPRINT_KEY");
        pairs.push(("IDEMPOTENCY_FINGERPRINT_KEY", "too-short"));
        pairs.push(("REFRESH_TOKEN_REUSE_GRACE_SECS", "61"));
        let text = Settings::from_lookup(lookup_from(&pairs))
            .expect_err("invalid settings")
            .to_string();
        assert!(
            text.contains("IDEMPOTENCY_FINGERPRINT_KEY must be at least 32 bytes"),
            "{text}"
        );
        assert!(
            text.contains("REFRESH_TOKEN_REUSE_GRACE_SECS must be at most 60"),
            "{text}"
        );
        assert!(
            !text.contains("too-short"),
            "a secret is never echoed: {text}"
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_output_or_errors() {
        let settings = Settings::from_lookup(lookup_from(&REQUIRED)).expect("valid settings");
        assert!(!format!("{settings:?}").contains("hunter2"));
        let error =
            Settings::from_lookup(lookup_from(&[("DATABASE_URL", "mysql://root:hunter2@db")]))
                .expect_err("wrong scheme");
        assert!(!error.to_string().contains("hunter2"));
    }

    fn with_required(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        REQUIRED.iter().chain(extra).copied().collect()
    }

    #[test]
    fn billing_is_unconfigured_without_a_payment_provider_url() {
        let settings = Settings::from_lookup(lookup_from(&REQUIRED)).expect("valid settings");
        assert!(settings.payment_provider.is_none());
    }

    #[test]
    fn a_payment_provider_url_and_key_are_enough_and_the_knobs_have_defaults() {
        let settings = Settings::from_lookup(lookup_from(&with_required(&[
            ("PAYMENT_PROVIDER_URL", "http://127.0.0.1:12111"),
            ("PAYMENT_PROVIDER_SECRET_KEY", "sk_test_hunter2"),
        ])))
        .expect("valid settings");
        let provider = settings.payment_provider.expect("billing configured");
        assert_eq!(provider.url.as_str(), "http://127.0.0.1:12111/");
        assert_eq!(provider.secret_key.expose_secret(), "sk_test_hunter2");
        assert_eq!(provider.timeout, Duration::from_secs(3));
        assert_eq!(provider.max_attempts, 3);
        assert_eq!(provider.backoff_base, Duration::from_millis(100));
        assert_eq!(provider.backoff_max, Duration::from_secs(2));
        assert_eq!(provider.retry_budget_percent, 20);
        assert_eq!(provider.retry_budget_min_per_second, 1);
        assert_eq!(provider.breaker_failure_threshold, 5);
        assert_eq!(provider.breaker_cool_down, Duration::from_secs(10));
        assert!(!format!("{provider:?}").contains("hunter2"));
    }

    #[test]
    fn webhooks_are_unconfigured_without_a_secret_and_tolerate_five_minutes() {
        let settings = Settings::from_lookup(lookup_from(&REQUIRED)).expect("valid settings");
        assert!(settings.webhook_receiving.secrets.is_empty());
        assert_eq!(
            settings.webhook_receiving.tolerance,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn several_webhook_secrets_are_read_and_never_printed() {
        let settings = Settings::from_lookup(lookup_from(&with_required(&[
            (
                "PAYMENT_WEBHOOK_SECRET",
                "whsec_new_hunter2_0123456789, whsec_old_hunter2_0123456789",
            ),
            ("PAYMENT_WEBHOOK_TOLERANCE_SECS", "120"),
        ])))
        .expect("valid settings");
        let receiving = settings.webhook_receiving;
        let secrets: Vec<&str> = receiving
            .secrets
            .iter()
            .map(ExposeSecret::expose_secret)
            .collect();
        assert_eq!(
            secrets,
            [
                "whsec_new_hunter2_0123456789",
                "whsec_old_hunter2_0123456789"
            ]
        );
        assert_eq!(receiving.tolerance, Duration::from_secs(120));
        assert!(!format!("{receiving:?}").contains("hunter2"));
    }

    #[test]
    fn a_webhook_secret_that_is_not_whsec_or_a_tolerance_out_of_range_is_refused_unechoed() {
        let error = Settings::from_lookup(lookup_from(&with_required(&[
            (
                "PAYMENT_WEBHOOK_SECRET",
                "whsec_good_hunter2_0123456789,sk_hunter2_0123456789012",
            ),
            ("PAYMENT_WEBHOOK_TOLERANCE_SECS", "0"),
        ])))
        .expect_err("invalid settings")
        .to_string();
        assert!(
            error.contains("PAYMENT_WEBHOOK_SECRET: secret 2 of 2"),
            "{error}"
        );
        assert!(error.contains("PAYMENT_WEBHOOK_TOLERANCE_SECS"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_payment_provider_url_without_its_secret_key_is_refused() {
        let error = Settings::from_lookup(lookup_from(&with_required(&[(
            "PAYMENT_PROVIDER_URL",
            "https://api.stripe.com",
        )])))
        .expect_err("no key");
        assert_eq!(
            error.problems,
            ["PAYMENT_PROVIDER_SECRET_KEY is not set (required with PAYMENT_PROVIDER_URL)"]
        );
        let error = Settings::from_lookup(lookup_from(&with_required(&[(
            "PAYMENT_PROVIDER_SECRET_KEY",
            "sk_live_hunter2",
        )])))
        .expect_err("a key without a URL is a mistake");
        assert_eq!(
            error.problems,
            ["PAYMENT_PROVIDER_SECRET_KEY is set but PAYMENT_PROVIDER_URL is not"]
        );
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn malformed_payment_provider_settings_are_all_named_together() {
        let error = Settings::from_lookup(lookup_from(&with_required(&[
            ("PAYMENT_PROVIDER_URL", "ftp://payments.example"),
            ("PAYMENT_PROVIDER_SECRET_KEY", "sk_live_hunter2"),
            ("PAYMENT_PROVIDER_TIMEOUT_MS", "0"),
            ("PAYMENT_PROVIDER_MAX_ATTEMPTS", "0"),
            ("PAYMENT_PROVIDER_BACKOFF_BASE_MS", "500"),
            ("PAYMENT_PROVIDER_BACKOFF_MAX_MS", "100"),
            ("PAYMENT_PROVIDER_RETRY_BUDGET_PERCENT", "150"),
            ("PAYMENT_PROVIDER_RETRY_BUDGET_MIN_PER_SEC", "many"),
            ("PAYMENT_PROVIDER_BREAKER_FAILURES", "0"),
            ("PAYMENT_PROVIDER_BREAKER_COOL_DOWN_MS", "-1"),
        ])))
        .expect_err("invalid settings");
        assert_eq!(
            error.problems,
            [
                "PAYMENT_PROVIDER_TIMEOUT_MS must be greater than 0",
                "PAYMENT_PROVIDER_MAX_ATTEMPTS must be greater than 0",
                "PAYMENT_PROVIDER_BACKOFF_MAX_MS must not be less than PAYMENT_PROVIDER_BACKOFF_BASE_MS",
                "PAYMENT_PROVIDER_RETRY_BUDGET_PERCENT must be between 0 and 100",
                "PAYMENT_PROVIDER_RETRY_BUDGET_MIN_PER_SEC=\"many\" is invalid: invalid digit found in string",
                "PAYMENT_PROVIDER_BREAKER_FAILURES must be greater than 0",
                "PAYMENT_PROVIDER_BREAKER_COOL_DOWN_MS=\"-1\" is invalid: invalid digit found in string",
                "PAYMENT_PROVIDER_URL must be a URL starting with http:// or https://",
            ]
        );
        assert!(!error.to_string().contains("hunter2"));
        let error = Settings::from_lookup(lookup_from(&with_required(&[
            ("PAYMENT_PROVIDER_URL", "http://:80"),
            ("PAYMENT_PROVIDER_SECRET_KEY", "sk_live_hunter2"),
        ])))
        .expect_err("no host");
        assert_eq!(
            error.problems,
            ["PAYMENT_PROVIDER_URL is not a valid URL: empty host"]
        );
    }

    #[test]
    fn the_database_name_can_be_swapped_keeping_server_and_options() {
        let settings = Settings::from_lookup(lookup_from(&[
            ("DATABASE_URL", "postgres://u:p@h:5432/main?sslmode=disable"),
            ("REDIS_URL", "redis://r"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            (
                "IDEMPOTENCY_FINGERPRINT_KEY",
                "fedcba9876543210fedcba9876543210",
            ),
        ]))
        .unwrap();
        assert_eq!(
            settings
                .database
                .with_database_name("other")
                .expose_secret(),
            "postgres://u:p@h:5432/other?sslmode=disable"
        );
    }
}
