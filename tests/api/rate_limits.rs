//! Fair use: quotas per caller and per client IP, global across instances, visible in headers,
//! and a Redis outage handled by the configured policy.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use supportdesk::configuration::{RateQuota, Settings};
use supportdesk::proto::v1;
use supportdesk::proto::v1::user_service_client::UserServiceClient;
use tonic::Code;

use super::envoy::Envoy;
use super::helpers::{TEST_PASSWORD, TestApp, details, error_reason, redis_url, second_instance};
use super::proxy::{TcpProxy, socket_address_of, url_through};

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
    assert_eq!(error_reason(&status), "RATE_LIMITED");
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
    let (app, _proxy) = with_redis_cut(|_| {}).await;
    for _ in 0..5 {
        let started = Instant::now();
        app.users
            .clone()
            .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
            .await
            .expect("let through");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn with_redis_down_a_closed_limiter_refuses_fast_with_unavailable() {
    let (app, _proxy) = with_redis_cut(|settings| settings.rate_limits.fail_open = false).await;
    let started = Instant::now();
    let status = app
        .users
        .clone()
        .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(started.elapsed() < Duration::from_millis(1500));
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

#[tokio::test]
async fn login_brute_force_is_stopped_while_everyone_else_carries_on() {
    let app = TestApp::spawn_with(|settings| settings.rate_limits.login = quota(3, 900)).await;
    // Added without logging in, so that no attempt is spent before the attack.
    let victim_email = "victim@example.com";
    app.users
        .clone()
        .create_user(app.as_admin(v1::CreateUserRequest {
            user: Some(v1::User {
                email: victim_email.to_owned(),
                role: v1::UserRole::Agent.into(),
                ..Default::default()
            }),
            password: TEST_PASSWORD.to_owned(),
        }))
        .await
        .expect("the victim exists");
    let slug = app.admin.account_slug.clone();
    // The test client is on loopback, which is a trusted proxy: its x-forwarded-for is believed,
    // exactly as Envoy's would be.
    for _ in 0..3 {
        let status = app
            .auth
            .clone()
            .login(login_from(
                "203.0.113.7",
                &slug,
                victim_email,
                "a wrong guess, really",
            ))
            .await
            .expect_err("wrong");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let status = app
        .auth
        .clone()
        .login(login_from(
            "203.0.113.7",
            &slug,
            victim_email,
            TEST_PASSWORD,
        ))
        .await
        .expect_err("throttled, even with the right password");
    assert_eq!(status.code(), Code::ResourceExhausted);
    let status = app
        .auth
        .clone()
        .login(login_from(
            "203.0.113.99",
            &slug,
            victim_email,
            TEST_PASSWORD,
        ))
        .await
        .expect_err("the name is throttled from any address");
    assert_eq!(status.code(), Code::ResourceExhausted);

    app.auth
        .clone()
        .login(login_from(
            "198.51.100.1",
            &slug,
            &app.admin.email,
            TEST_PASSWORD,
        ))
        .await
        .expect("another user from another address logs in");
    app.users
        .clone()
        .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
        .await
        .expect("callers already logged in are unaffected");
}
