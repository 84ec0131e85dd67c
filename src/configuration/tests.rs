//! The settings as a whole: defaults, every problem named at once, secrets never shown.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::ExposeSecret;

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
    assert_eq!(
        (smtp.timeout, smtp.data_reply_timeout),
        (Duration::from_secs(10), Duration::from_secs(600)),
        "RFC 5321 §4.5.3.2.6's ten minutes for the reply to the end of the data"
    );
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
        text.contains("EMAIL_API_KEY is set but EMAIL_PROVIDER is not (set EMAIL_PROVIDER=http)"),
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
        ("SMTP_DATA_REPLY_TIMEOUT_SECS", "0"),
    ]);
    let text = Settings::from_lookup(lookup_from(&values))
        .expect_err("invalid settings")
        .to_string();
    for key in [
        "SMTP_HOST",
        "SMTP_TLS",
        "SMTP_DATA_REPLY_TIMEOUT_SECS must be between 1 and 3600",
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
    let error = Settings::from_lookup(lookup_from(&[("DATABASE_URL", "mysql://root:hunter2@db")]))
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
        ("PAYMENT_PROVIDER_KEY_RETENTION_SECS", "0"),
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
            "PAYMENT_PROVIDER_KEY_RETENTION_SECS must be greater than 0",
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

#[test]
fn the_email_webhook_secret_is_optional_and_checked_without_being_echoed() {
    let unset = Settings::from_lookup(lookup_from(&REQUIRED)).expect("valid without a secret");
    assert!(unset.email_webhook.secret.is_none());
    assert_eq!(unset.email_webhook.tolerance, Duration::from_secs(300));
    let set = Settings::from_lookup(lookup_from(&with_required(&[(
        "EMAIL_WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )])))
    .expect("a Svix secret");
    assert!(set.email_webhook.secret.is_some());
    let error = Settings::from_lookup(lookup_from(&with_required(&[
        ("EMAIL_WEBHOOK_SECRET", "not-a-secret-hunter2"),
        ("EMAIL_WEBHOOK_TOLERANCE_SECS", "0"),
    ])))
    .expect_err("refused")
    .to_string();
    assert!(error.contains("EMAIL_WEBHOOK_SECRET must be"), "{error}");
    assert!(error.contains("EMAIL_WEBHOOK_TOLERANCE_SECS"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

// Attachments.

fn settings(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let values: HashMap<String, String> = [
        ("DATABASE_URL", "postgres://app@db/supportdesk"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        (
            "IDEMPOTENCY_FINGERPRINT_KEY",
            "fedcba9876543210fedcba9876543210",
        ),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    Settings::from_lookup(move |key| values.get(key).cloned())
}

#[test]
fn without_an_endpoint_attachments_are_unconfigured_with_their_default_limits() {
    let attachments = settings(&[]).expect("valid").attachments;
    assert!(attachments.storage.is_none());
    assert_eq!(attachments.max_bytes, 25 * 1024 * 1024);
    assert_eq!(attachments.max_per_ticket, 100);
    assert_eq!(attachments.upload_url_ttl, Duration::from_secs(900));
    assert_eq!(attachments.download_url_ttl, Duration::from_secs(300));
}

#[test]
fn an_endpoint_needs_its_bucket_and_keys_and_url_lifetimes_are_bounded() {
    let problems = settings(&[
        ("STORAGE_ENDPOINT", "http://127.0.0.1:8333"),
        ("ATTACHMENT_UPLOAD_URL_TTL_SECS", "901"),
        ("ATTACHMENT_DOWNLOAD_URL_TTL_SECS", "301"),
    ])
    .expect_err("incomplete")
    .problems;
    for expected in [
        "STORAGE_BUCKET is not set (required with STORAGE_ENDPOINT)",
        "STORAGE_ACCESS_KEY_ID is not set (required with STORAGE_ENDPOINT)",
        "STORAGE_SECRET_ACCESS_KEY is not set (required with STORAGE_ENDPOINT)",
        "ATTACHMENT_UPLOAD_URL_TTL_SECS must be between 1 and 900",
        "ATTACHMENT_DOWNLOAD_URL_TTL_SECS must be between 1 and 300",
    ] {
        assert!(
            problems.iter().any(|problem| problem == expected),
            "{problems:?}"
        );
    }
    let storage = settings(&[
        ("STORAGE_ENDPOINT", "http://127.0.0.1:8333"),
        ("STORAGE_BUCKET", "files"),
        ("STORAGE_ACCESS_KEY_ID", "key"),
        ("STORAGE_SECRET_ACCESS_KEY", "hunter2-secret"),
    ])
    .expect("valid")
    .attachments
    .storage
    .expect("configured");
    assert_eq!(storage.region, "us-east-1");
    assert!(
        !format!("{storage:?}").contains("hunter2"),
        "the secret never prints"
    );
}

#[test]
fn traces_are_off_without_an_endpoint_and_read_with_opentelemetrys_defaults() {
    let settings = Settings::from_lookup(lookup_from(&REQUIRED)).expect("valid settings");
    assert_eq!(settings.traces, None, "no endpoint, no traces");

    let mut pairs = REQUIRED.to_vec();
    pairs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"));
    let settings = Settings::from_lookup(lookup_from(&pairs)).expect("valid settings");
    let traces = settings.traces.expect("traces on");
    assert_eq!(traces.endpoint.as_str(), "http://127.0.0.1:4317/");
    assert_eq!(traces.service_name, "supportdesk");
    assert_eq!(traces.sampler, TraceSampler::ParentBasedAlwaysOn);
    assert_eq!(traces.export_timeout, Duration::from_secs(10));

    pairs.extend([
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4317",
        ),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ("OTEL_SERVICE_NAME", "desk-eu"),
    ]);
    let traces = Settings::from_lookup(lookup_from(&pairs))
        .expect("valid settings")
        .traces
        .expect("traces on");
    assert_eq!(
        traces.endpoint.as_str(),
        "http://collector:4317/",
        "the traces one wins"
    );
    assert_eq!(traces.sampler, TraceSampler::ParentBasedRatio(0.25));
    assert_eq!(traces.service_name, "desk-eu");

    pairs.push(("OTEL_SDK_DISABLED", "true"));
    let settings = Settings::from_lookup(lookup_from(&pairs)).expect("valid settings");
    assert_eq!(settings.traces, None, "disabled");
}

#[test]
fn every_bad_trace_setting_is_named() {
    let mut pairs = REQUIRED.to_vec();
    pairs.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
        ("OTEL_SDK_DISABLED", "maybe"),
    ]);
    let error = Settings::from_lookup(lookup_from(&pairs)).expect_err("invalid settings");
    for variable in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_TRACES_SAMPLER",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_SDK_DISABLED",
    ] {
        assert!(
            error
                .problems
                .iter()
                .any(|problem| problem.contains(variable)),
            "{variable} not named: {error}"
        );
    }

    let mut pairs = REQUIRED.to_vec();
    pairs.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
    ]);
    let error = Settings::from_lookup(lookup_from(&pairs)).expect_err("invalid settings");
    assert_eq!(error.problems.len(), 1, "{error}");
    assert!(
        error.problems[0].contains("OTEL_TRACES_SAMPLER_ARG"),
        "{error}"
    );
}

#[test]
fn trusted_proxies_are_addresses_or_networks() {
    let mut values = REQUIRED.to_vec();
    values.push(("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,fd00::/8"));
    let settings = Settings::from_lookup(lookup_from(&values)).expect("valid settings");
    assert_eq!(
        settings
            .rate_limits
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]
    );
    let mut values = REQUIRED.to_vec();
    values.push(("TRUSTED_PROXIES", "10.0.0.0/33"));
    let text = Settings::from_lookup(lookup_from(&values))
        .expect_err("no such network")
        .to_string();
    assert!(text.contains("TRUSTED_PROXIES"), "{text}");
}
