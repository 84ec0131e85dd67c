//! Fair use: quotas per caller and per client IP, global across instances, visible in headers,
//! and a Redis outage handled by the configured policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use supportdesk::configuration::{RateQuota, Settings};
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::user_service_client::UserServiceClient;
use tonic::Code;

use crate::support::envoy::Envoy;
use crate::support::proxy::{TcpProxy, socket_address_of, url_through};
use crate::support::{
    PATIENCE, TEST_PASSWORD, TestApp, assert_reason, details, error_reason, redis_url,
    second_instance, with_token,
};

fn quota(count: u32, seconds: u64) -> RateQuota {
    RateQuota {
        count,
        window: Duration::from_secs(seconds),
    }
}

fn header(metadata: &tonic::metadata::MetadataMap, name: &str) -> String {
    metadata
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_caller_gets_exactly_its_quota_then_429_with_the_retry_details() {
    let app = TestApp::spawn_with(|settings| settings.rate_limits.read = quota(5, 3600)).await;
    let mut users = app.users.clone();
    for expected_remaining in (0..5).rev() {
        let response = users
            .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
            .await
            .expect("within the quota");
        // t: seconds until the whole quota is back, one 720 s slot per request used.
        let used = 5 - expected_remaining;
        assert_eq!(
            header(response.metadata(), "ratelimit"),
            format!("\"read\";r={expected_remaining};t={}", used * 720),
        );
        assert_eq!(
            header(response.metadata(), "ratelimit-policy"),
            "\"read\";q=5;w=3600"
        );
    }
    let status = users
        .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
        .await
        .expect_err("over the quota");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_reason(&status, Reason::RateLimited);
    let failure = details(&status);
    let retry = failure
        .retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo");
    assert!(
        retry > Duration::from_secs(600),
        "{retry:?}: the next slot is 12 minutes away"
    );
    assert_eq!(
        failure.quota_failure().expect("QuotaFailure").violations[0].subject,
        format!("user:{}", app.admin.id)
    );
    assert!(
        header(status.metadata(), "retry-after")
            .parse::<u64>()
            .unwrap()
            > 600
    );
    assert_eq!(
        header(status.metadata(), "ratelimit"),
        "\"read\";r=0;t=3600"
    );

    // Another caller, and the admin's writes, have quotas of their own.
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    users
        .get_current_user(agent.request(v1::GetCurrentUserRequest {}))
        .await
        .expect("another caller is unaffected");
    app.create_ticket("writes are counted apart").await;
}

#[tokio::test]
async fn two_instances_sharing_redis_admit_no_more_than_the_quota_together() {
    let app = TestApp::spawn_with(|settings| settings.rate_limits.read = quota(6, 3600)).await;
    let (channel, server) = second_instance(&app.settings).await;
    let other = UserServiceClient::new(channel);
    let mut admitted = 0;
    for attempt in 0..20 {
        let mut client = if attempt % 2 == 0 {
            app.users.clone()
        } else {
            other.clone()
        };
        if client
            .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
            .await
            .is_ok()
        {
            admitted += 1;
        }
    }
    server.abort();
    assert_eq!(admitted, 6);
}

#[tokio::test]
async fn over_the_quota_rest_clients_get_429_with_retry_after_and_ratelimit_headers() {
    let app = TestApp::spawn_with(|settings| settings.rate_limits.read = quota(2, 3600)).await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    let call = || {
        http.get(envoy.url("/v1/me"))
            .bearer_auth(&app.admin.access_token)
            .send()
    };
    let allowed = call().await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert!(allowed.headers().contains_key("ratelimit"));
    call().await.unwrap();
    let refused = call().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(refused.headers()["ratelimit-policy"], "\"read\";q=2;w=3600");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], 8);
}

/// The request deadline of the Redis-down tests: what a call waiting on the dead Redis would run
/// into.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// A call the limiter answers without waiting on the dead Redis: milliseconds, or seconds on a
/// loaded machine, far from the request deadline.
const ANSWERED_FAST: Duration = Duration::from_secs(8);

/// An app whose Redis is cut once it runs; `configure` adjusts the rest of its settings.
async fn with_redis_cut(configure: impl FnOnce(&mut Settings)) -> (TestApp, TcpProxy) {
    let proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let app = TestApp::spawn_with(|settings| {
        settings.redis.url = url_through(settings.redis.url.expose_secret(), proxy.address).into();
        configure(settings);
    })
    .await;
    proxy.cut();
    (app, proxy)
}

#[tokio::test]
async fn with_redis_down_the_limiter_fails_open_by_default_and_answers_fast() {
    // The policy is left at its default: that default is what this test is about.
    let (app, _proxy) = with_redis_cut(|settings| {
        settings.server.request_timeout = REQUEST_DEADLINE;
    })
    .await;
    for _ in 0..5 {
        let started = Instant::now();
        app.users
            .clone()
            .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
            .await
            .expect("let through");
        assert!(started.elapsed() < ANSWERED_FAST, "{:?}", started.elapsed());
    }
}

#[tokio::test]
async fn with_redis_down_a_closed_limiter_refuses_fast_with_unavailable_and_one_retry_delay() {
    let (app, _proxy) = with_redis_cut(|settings| {
        settings.rate_limits.fail_open = false;
        settings.server.request_timeout = REQUEST_DEADLINE;
        settings.redis.failure_pause = Duration::from_secs(3);
    })
    .await;
    let started = Instant::now();
    let status = app
        .users
        .clone()
        .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(started.elapsed() < ANSWERED_FAST, "{:?}", started.elapsed());
    assert_reason(&status, Reason::RedisUnavailable);
    // The header and RetryInfo say the same: the limiter's pause before it asks Redis again.
    assert_eq!(status.metadata().get("retry-after").unwrap(), "3");
    assert_eq!(
        details(&status).retry_info().unwrap().retry_delay,
        Some(Duration::from_secs(3))
    );
}

fn login_from(
    ip: &str,
    account: &str,
    email: &str,
    password: &str,
) -> tonic::Request<v1::LoginRequest> {
    let mut request = tonic::Request::new(v1::LoginRequest {
        account: account.to_owned(),
        email: email.to_owned(),
        password: password.to_owned(),
    });
    request
        .metadata_mut()
        .insert("x-forwarded-for", ip.parse().unwrap());
    request
}

/// Adds a user (an agent) with `email` to the app's account without logging them in, so that
/// no login attempt is spent before the test's own.
async fn add_user_without_logging_in(app: &TestApp, email: &str) {
    app.users
        .clone()
        .create_user(app.as_admin(v1::CreateUserRequest {
            user: Some(v1::User {
                email: email.to_owned(),
                role: v1::UserRole::Agent.into(),
                ..Default::default()
            }),
            password: TEST_PASSWORD.to_owned(),
        }))
        .await
        .expect("the user exists");
}

/// The code, reason and (for RESOURCE_EXHAUSTED) policy of a login of `email` from `ip`.
async fn log_in_from(app: &TestApp, ip: &str, email: &str, password: &str) -> (Code, String) {
    match app
        .auth
        .clone()
        .login(login_from(ip, &app.admin.account_slug, email, password))
        .await
    {
        Ok(_) => (Code::Ok, String::new()),
        Err(status) if status.code() == Code::ResourceExhausted => {
            let policy = details(&status)
                .error_info()
                .and_then(|info| info.metadata.get("policy").cloned())
                .unwrap_or_default();
            let delay = details(&status)
                .retry_info()
                .and_then(|info| info.retry_delay)
                .expect("a refused login says when to retry");
            assert_eq!(
                header(status.metadata(), "retry-after"),
                (delay.as_secs() + u64::from(delay.subsec_nanos() > 0))
                    .max(1)
                    .to_string(),
                "and says it as HTTP does, in retry-after"
            );
            (status.code(), policy)
        }
        Err(status) => (
            status.code(),
            error_reason(&status)
                .map(Reason::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
    }
}

fn wrong(code_and_reason: &(Code, String)) -> bool {
    *code_and_reason
        == (
            Code::Unauthenticated,
            Reason::InvalidCredentials.as_str().to_owned(),
        )
}

fn refused_by(policy: &str) -> (Code, String) {
    (Code::ResourceExhausted, policy.to_owned())
}

#[tokio::test]
async fn an_attackers_burst_is_stopped_while_the_owner_logs_in_from_another_address() {
    let app = TestApp::spawn_with(|settings| {
        settings.rate_limits.login_attempt = quota(3, 900);
        settings.rate_limits.login_name = quota(5, 900);
    })
    .await;
    let victim = "victim@example.com";
    add_user_without_logging_in(&app, victim).await;
    // The test client is on loopback, which is a trusted proxy: its x-forwarded-for is believed,
    // exactly as Envoy's would be.
    let attacker = "203.0.113.7";
    for _ in 0..3 {
        assert!(wrong(
            &log_in_from(&app, attacker, victim, "a wrong guess, really").await
        ));
    }
    for _ in 0..10 {
        assert_eq!(
            log_in_from(&app, attacker, victim, "another wrong guess").await,
            refused_by("login-attempt"),
            "the burst is stopped for this address and name"
        );
    }
    assert_eq!(
        log_in_from(&app, attacker, victim, TEST_PASSWORD).await,
        refused_by("login-attempt"),
        "a right guess is refused too: the password is not even checked"
    );

    // The burst spent 3 of the name's 5 failures: the refused attempts failed nothing.
    assert_eq!(
        log_in_from(&app, "198.51.100.20", victim, TEST_PASSWORD).await,
        (Code::Ok, String::new()),
        "the owner logs in from an address they never used"
    );
    assert_eq!(
        log_in_from(&app, attacker, &app.admin.email, TEST_PASSWORD).await,
        (Code::Ok, String::new()),
        "another user at the attacker's address is unaffected"
    );
    app.users
        .clone()
        .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
        .await
        .expect("callers already logged in are unaffected");
}

#[tokio::test]
async fn guessing_from_many_addresses_is_stopped_but_not_where_the_owner_logged_in_before() {
    let app = TestApp::spawn_with(|settings| {
        settings.rate_limits.login_attempt = quota(3, 900);
        settings.rate_limits.login_name = quota(4, 900);
    })
    .await;
    let owner = "owner@example.com";
    add_user_without_logging_in(&app, owner).await;
    let home = "198.51.100.20";
    assert_eq!(
        log_in_from(&app, home, owner, TEST_PASSWORD).await,
        (Code::Ok, String::new()),
        "the owner logs in from home once"
    );

    // A botnet: one guess from each address, under every address's own quota.
    for bot in 1..=4 {
        let address = format!("203.0.113.{bot}");
        assert!(wrong(&log_in_from(&app, &address, owner, "a guess").await));
    }
    for bot in 5..=8 {
        let address = format!("203.0.113.{bot}");
        assert_eq!(
            log_in_from(&app, &address, owner, TEST_PASSWORD).await,
            refused_by("login-name"),
            "the name's failures are spent: even a right guess from a new address is refused"
        );
    }
    assert_eq!(
        log_in_from(&app, "192.0.2.99", owner, TEST_PASSWORD).await,
        refused_by("login-name"),
        "the price: while the name is under attack, a new address cannot log in as it"
    );
    assert_eq!(
        log_in_from(&app, home, owner, TEST_PASSWORD).await,
        (Code::Ok, String::new()),
        "the other addresses' failures do not keep the owner out at home"
    );
}

#[tokio::test]
async fn a_wave_of_concurrent_guesses_from_many_addresses_gets_no_more_checks_than_the_names_quota()
{
    let app = TestApp::spawn_with(|settings| {
        settings.rate_limits.login_attempt = quota(3, 900);
        settings.rate_limits.login_name = quota(4, 900);
    })
    .await;
    let owner = "owner@example.com";
    add_user_without_logging_in(&app, owner).await;

    // A botnet's wave: one guess from each of twelve addresses, all at once. Each is counted as
    // a failure when the gate lets it through, so the ones behind see it before any password is
    // checked.
    let mut wave = tokio::task::JoinSet::new();
    for bot in 1..=12 {
        let mut auth = app.auth.clone();
        let request = login_from(
            &format!("203.0.113.{bot}"),
            &app.admin.account_slug,
            owner,
            "a guess",
        );
        wave.spawn(async move { auth.login(request).await });
    }
    let mut answers = Vec::new();
    while let Some(answer) = wave.join_next().await {
        let status = answer.unwrap().expect_err("a guess never logs in");
        let policy = details(&status)
            .error_info()
            .and_then(|info| info.metadata.get("policy").cloned())
            .unwrap_or_default();
        answers.push((status.code(), policy));
    }
    let checked = answers
        .iter()
        .filter(|(code, _)| *code == Code::Unauthenticated)
        .count();
    let refused = answers
        .iter()
        .filter(|answer| **answer == refused_by("login-name"))
        .count();
    assert_eq!((checked, refused), (4, 8), "{answers:?}");
}

#[tokio::test]
async fn the_owner_logging_in_from_new_addresses_spends_none_of_the_names_failures() {
    let app = TestApp::spawn_with(|settings| {
        settings.rate_limits.login_name = quota(2, 900);
    })
    .await;
    let owner = "owner@example.com";
    add_user_without_logging_in(&app, owner).await;
    for address in [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
    ] {
        assert_eq!(
            log_in_from(&app, address, owner, TEST_PASSWORD).await,
            (Code::Ok, String::new()),
            "from {address}: a success gives back the failure its gate counted"
        );
    }
    for bot in 1..=2 {
        let address = format!("203.0.113.{bot}");
        assert!(wrong(&log_in_from(&app, &address, owner, "a guess").await));
    }
    assert_eq!(
        log_in_from(&app, "192.0.2.99", owner, "a guess").await,
        refused_by("login-name"),
        "the name's two failures are the guesses'"
    );
}

#[tokio::test]
async fn an_attacker_rotating_through_the_addresses_of_one_ipv6_network_is_one_address() {
    let app = TestApp::spawn_with(|settings| {
        settings.rate_limits.login_attempt = quota(3, 900);
    })
    .await;
    let victim = "victim@example.com";
    add_user_without_logging_in(&app, victim).await;
    for host in 1..=3 {
        let address = format!("2001:db8:7:7::{host}");
        assert!(wrong(&log_in_from(&app, &address, victim, "a guess").await));
    }
    assert_eq!(
        log_in_from(&app, "2001:db8:7:7:ffff::9", victim, "a guess").await,
        refused_by("login-attempt"),
        "another address of the same /64 is the same attacker"
    );
    assert!(
        wrong(&log_in_from(&app, "2001:db8:7:8::1", victim, "a guess").await),
        "the next /64 is someone else"
    );
}

/// Every address but those of `excluded`: the networks that, together with it, cover the whole
/// address space (one per bit of its prefix, each the prefix up to that bit with the bit
/// flipped).
fn all_but(excluded: ipnet::Ipv6Net) -> Vec<ipnet::IpNet> {
    let bits = u128::from(excluded.network());
    (0..excluded.prefix_len())
        .map(|length| {
            let flipped = (bits ^ (1u128 << (127 - length))) & !(u128::MAX >> (length + 1));
            ipnet::IpNet::V6(
                ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(flipped), length + 1).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_client_inside_the_trusted_network_cannot_choose_its_address_with_x_forwarded_for() {
    // As in the example overlay, whose TRUSTED_PROXIES (10.0.0.0/8) holds Envoy's pods and
    // every client inside the cluster: here every IPv4 address (Envoy appends this host's own,
    // not 127.0.0.1) and every IPv6 address but the documentation network the client claims.
    let claimed: ipnet::Ipv6Net = "2001:db8::/32".parse().unwrap();
    let app = TestApp::spawn_with(|settings| {
        settings.rate_limits.public = quota(3, 3600);
        settings.rate_limits.trusted_proxies = ["127.0.0.0/8", "::1/128", "0.0.0.0/0"]
            .into_iter()
            .map(|network| network.parse().unwrap())
            .chain(all_but(claimed))
            .collect();
    })
    .await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for network in 1..=6 {
        // A fresh /64 each time: counted by what it claims, each would be a quota of its own.
        let response = http
            .post(envoy.url("/v1/auth:refresh"))
            .header("x-forwarded-for", format!("2001:db8:{network}::1"))
            .json(&serde_json::json!({ "refresh_token": "not-a-refresh-token" }))
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let body: serde_json::Value = response.json().await.unwrap();
            let text = body.to_string();
            assert!(
                !text.contains("2001:db8"),
                "counted against the hop Envoy appended, not the claimed address: {text}"
            );
        }
    }
    assert_eq!(
        statuses
            .iter()
            .map(|status| *status == StatusCode::TOO_MANY_REQUESTS)
            .collect::<Vec<_>>(),
        [false, false, false, true, true, true],
        "one client, one quota of 3, whatever it claims: {statuses:?}"
    );
}

#[tokio::test]
async fn a_shared_address_is_not_blocked_by_one_attackers_name_but_stops_a_sweep_of_names() {
    let app = TestApp::spawn_with(|settings| {
        settings.rate_limits.login = quota(5, 900);
        settings.rate_limits.login_attempt = quota(3, 900);
    })
    .await;
    let office = "192.0.2.10";
    let victim = "victim@example.com";
    add_user_without_logging_in(&app, victim).await;
    for _ in 0..3 {
        assert!(wrong(
            &log_in_from(&app, office, victim, "a wrong guess").await
        ));
    }
    for _ in 0..20 {
        assert_eq!(
            log_in_from(&app, office, victim, "and another").await,
            refused_by("login-attempt")
        );
    }
    // Three failures of the office's five: everyone else there logs in.
    let colleagues = ["ann@example.com", "bob@example.com", "cid@example.com"];
    for colleague in colleagues {
        add_user_without_logging_in(&app, colleague).await;
        let response = app
            .auth
            .clone()
            .login(login_from(
                office,
                &app.admin.account_slug,
                colleague,
                TEST_PASSWORD,
            ))
            .await
            .expect("a colleague behind the same address logs in");
        let remaining = header(response.metadata(), "ratelimit");
        assert!(
            remaining.starts_with("\"login\";r=2;"),
            "the office's failed logins, not its logins, are counted: {remaining}"
        );
    }

    // One address sweeping many names: its failures run out whatever the names.
    for name in ["x1@example.com", "x2@example.com"] {
        assert!(wrong(&log_in_from(&app, office, name, "a guess").await));
    }
    assert_eq!(
        log_in_from(&app, office, "x3@example.com", "a guess").await,
        refused_by("login"),
        "five failures from one address"
    );
}

#[tokio::test]
async fn failed_authentications_past_the_quota_answer_429_and_valid_credentials_still_pass() {
    let app =
        TestApp::spawn_with(|settings| settings.rate_limits.auth_failure = quota(5, 3600)).await;
    let forger = "203.0.113.50";
    let forged = |token: &str| {
        let mut request = with_token(token, v1::GetCurrentUserRequest {});
        request
            .metadata_mut()
            .insert("x-forwarded-for", forger.parse().unwrap());
        request
    };
    for (attempt, token) in [
        "not-a-token",
        "a.b.c",
        "sd_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sd_live_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
        "eyJhbGciOiJub25lIn0.e30.",
    ]
    .into_iter()
    .enumerate()
    {
        let status = app
            .users
            .clone()
            .get_current_user(forged(token))
            .await
            .expect_err("forged");
        assert_eq!(status.code(), Code::Unauthenticated, "attempt {attempt}");
    }
    let status = app
        .users
        .clone()
        .get_current_user(forged(
            "sd_live_CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
        ))
        .await
        .expect_err("over the quota");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_reason(&status, Reason::RateLimited);
    let refusal = details(&status);
    assert_eq!(
        refusal.error_info().unwrap().metadata["policy"],
        "auth-failure"
    );
    assert!(
        refusal.retry_info().and_then(|info| info.retry_delay) > Some(Duration::from_secs(600)),
        "one failure comes back every 12 minutes"
    );
    assert_eq!(
        refusal.quota_failure().expect("QuotaFailure").violations[0].subject,
        format!("ip:{forger}")
    );
    assert!(
        header(status.metadata(), "retry-after")
            .parse::<u64>()
            .unwrap()
            > 600
    );

    // Counted in Redis, where every instance sees it.
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    let counted: Option<String> = redis::cmd("GET")
        .arg(format!("{}rl:auth-failure:ip:{forger}", app.redis_prefix))
        .query_async(&mut redis)
        .await
        .expect("read");
    assert!(counted.is_some(), "the address's failures are in Redis");

    // A valid credential from the same address is never refused for others' failures...
    let mut genuine = app.as_admin(v1::GetCurrentUserRequest {});
    genuine
        .metadata_mut()
        .insert("x-forwarded-for", forger.parse().unwrap());
    app.users
        .clone()
        .get_current_user(genuine)
        .await
        .expect("a genuine token passes");
    // ...another address has a quota of its own, and no credential at all is not an attempt.
    let mut elsewhere = with_token("not-a-token", v1::GetCurrentUserRequest {});
    elsewhere
        .metadata_mut()
        .insert("x-forwarded-for", "198.51.100.60".parse().unwrap());
    let status = app
        .users
        .clone()
        .get_current_user(elsewhere)
        .await
        .unwrap_err();
    assert_reason(&status, Reason::InvalidCredentials);
    for _ in 0..10 {
        let mut anonymous = tonic::Request::new(v1::GetCurrentUserRequest {});
        anonymous
            .metadata_mut()
            .insert("x-forwarded-for", "198.51.100.61".parse().unwrap());
        let status = app
            .users
            .clone()
            .get_current_user(anonymous)
            .await
            .unwrap_err();
        assert_reason(&status, Reason::MissingCredentials);
    }
}

#[tokio::test]
async fn a_flood_of_bad_tokens_from_one_address_does_not_slow_good_callers() {
    // The default failed-authentication quota (RATE_LIMIT_AUTH_FAILURES).
    let app =
        TestApp::spawn_with(|settings| settings.rate_limits.auth_failure = quota(30, 60)).await;
    let flood_started = Instant::now();
    let flood_channel = tonic::transport::Channel::from_shared(format!("http://{}", app.address))
        .unwrap()
        .connect()
        .await
        .expect("the flood's own connection");
    let forged = {
        let genuine = &app.admin.access_token;
        let (signed, _) = genuine.rsplit_once('.').unwrap();
        format!("{signed}.{}", "A".repeat(43))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let unauthenticated = Arc::new(AtomicU32::new(0));
    let exhausted = Arc::new(AtomicU32::new(0));
    let floods: Vec<_> = (0..8)
        .map(|_| {
            let mut client = UserServiceClient::new(flood_channel.clone());
            let forged = forged.clone();
            let (stop, unauthenticated, exhausted) =
                (stop.clone(), unauthenticated.clone(), exhausted.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut request = with_token(&forged, v1::GetCurrentUserRequest {});
                    request
                        .metadata_mut()
                        .insert("x-forwarded-for", "203.0.113.66".parse().unwrap());
                    let counter = match client.get_current_user(request).await {
                        Err(status) if status.code() == Code::Unauthenticated => &unauthenticated,
                        Err(status) if status.code() == Code::ResourceExhausted => &exhausted,
                        other => panic!("a forged token was answered {other:?}"),
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let total = || unauthenticated.load(Ordering::Relaxed) + exhausted.load(Ordering::Relaxed);
    crate::support::wait_until("the flood is past its quota", PATIENCE, || {
        let refused = exhausted.load(Ordering::Relaxed);
        async move { refused > 0 }
    })
    .await;

    // The good caller, on its own connection, one call at a time, while the flood goes on.
    let flood_before = total();
    let mut latencies = Vec::new();
    for _ in 0..40 {
        let started = Instant::now();
        app.users
            .clone()
            .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
            .await
            .expect("the good caller is served");
        latencies.push(started.elapsed());
    }
    let flood_during = total() - flood_before;
    stop.store(true, Ordering::Relaxed);
    for flood in floods {
        flood.await.expect("a flood task");
    }
    let (unauthenticated, exhausted) = (
        unauthenticated.load(Ordering::Relaxed),
        exhausted.load(Ordering::Relaxed),
    );
    assert!(
        flood_during >= 40,
        "the flood went on while the good caller was measured: {flood_during} forged calls"
    );
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let slowest = latencies[latencies.len() - 1];
    // The bound is the feature: on the 2-core test machine an unloaded call takes a few ms, and
    // under the flood the good caller's median stays below 250 ms and no call takes 3 s, also
    // with both cores kept busy by another process (deploy/local/test --load). A flood that
    // reached PostgreSQL or queued the good caller behind it would take seconds.
    assert!(
        median < Duration::from_millis(250),
        "median {median:?} under a flood of {flood_during} forged calls"
    );
    assert!(slowest < Duration::from_secs(3), "slowest {slowest:?}");
    // The burst of 30, and one more for every 2 s the flood went on.
    let came_back = u32::try_from(flood_started.elapsed().as_secs() / 2).unwrap() + 1;
    assert!(
        (30..=30 + came_back).contains(&unauthenticated),
        "{unauthenticated} failures answered UNAUTHENTICATED, then the quota refused"
    );
    assert!(
        exhausted >= flood_during / 2,
        "past the quota the flood is refused: {exhausted} of {}",
        unauthenticated + exhausted
    );
}
