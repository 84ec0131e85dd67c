//! The identity side of notifications, against a real SMTP server: a password reset end to end
//! (request, mail, the link's token, ResetPassword, login with the new password, every earlier
//! token refused), each refused token with its own reason, an unknown address answered
//! identically and sent nothing, throttling per address and per client, invitations, and
//! sessions ended at once by Logout (also when Redis has lost the revocation).

use std::time::Duration;

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use prost::Message;
use secrecy::ExposeSecret;
use supportdesk::configuration::RateQuota;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::auth_service_client::AuthServiceClient;
use tonic::Code;

use crate::support::binary::{Running, sign_up_through};
use crate::support::notifications::token_from_outbox;
use crate::support::proxy::{TcpProxy, socket_address_of, url_through};
use crate::support::smtp::{Received, SmtpServer, send_to};
use crate::support::{
    Count, PATIENCE, TEST_PASSWORD, TestApp, TestUser, assert_reason, backends_waiting_on_locks,
    count_of, details, log_in, redis_url, release_once_waiting, wait_until, with_token,
};

const NEW_PASSWORD: &str = "a brand new passphrase";

fn reset_request(user: &TestUser) -> v1::RequestPasswordResetRequest {
    v1::RequestPasswordResetRequest {
        account: user.account_slug.clone(),
        email: user.email.clone(),
    }
}

async fn request_reset(
    app: &TestApp,
    request: v1::RequestPasswordResetRequest,
) -> Result<tonic::Response<v1::RequestPasswordResetResponse>, tonic::Status> {
    app.auth
        .clone()
        .request_password_reset(tonic::Request::new(request))
        .await
}

async fn reset_password(
    app: &TestApp,
    account: &str,
    token: &str,
    password: &str,
) -> Result<v1::ResetPasswordResponse, tonic::Status> {
    app.auth
        .clone()
        .reset_password(tonic::Request::new(v1::ResetPasswordRequest {
            account: account.to_owned(),
            token: token.to_owned(),
            new_password: password.to_owned(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn login(
    app: &TestApp,
    user: &TestUser,
    password: &str,
) -> Result<v1::LoginResponse, tonic::Status> {
    app.auth
        .clone()
        .login(tonic::Request::new(v1::LoginRequest {
            account: user.account_slug.clone(),
            email: user.email.clone(),
            password: password.to_owned(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn current_user(app: &TestApp, token: &str) -> Result<v1::User, tonic::Status> {
    app.users
        .clone()
        .get_current_user(with_token(token, v1::GetCurrentUserRequest {}))
        .await
        .map(tonic::Response::into_inner)
}

/// A ResetPassword of `user` with `token`, under way and waiting at its write for the user's
/// row, which the returned connection holds until it rolls back.
async fn reset_held_at_its_write(
    app: &TestApp,
    user: &TestUser,
    token: &str,
) -> (
    diesel_async::AsyncPgConnection,
    tokio::task::JoinHandle<Result<tonic::Response<v1::ResetPasswordResponse>, tonic::Status>>,
) {
    let lock = hold_row_of(app, user).await;
    let reset = spawn_reset(app, user, token, NEW_PASSWORD);
    wait_until("the reset waits for the user's row", PATIENCE, async || {
        backends_waiting_on_locks(&app.database).await == 1
    })
    .await;
    (lock, reset)
}

/// A connection holding `user`'s row locked until it rolls back.
async fn hold_row_of(app: &TestApp, user: &TestUser) -> diesel_async::AsyncPgConnection {
    let mut lock = app.database.connect().await;
    diesel::sql_query("BEGIN").execute(&mut lock).await.unwrap();
    diesel::sql_query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
        .bind::<SqlUuid, _>(user.id.as_uuid())
        .execute(&mut lock)
        .await
        .unwrap();
    lock
}

/// A ResetPassword of `user` with `token` to `password`, sent on a task of its own.
fn spawn_reset(
    app: &TestApp,
    user: &TestUser,
    token: &str,
    password: &str,
) -> tokio::task::JoinHandle<Result<tonic::Response<v1::ResetPasswordResponse>, tonic::Status>> {
    let mut auth = app.auth.clone();
    let request = tonic::Request::new(v1::ResetPasswordRequest {
        account: user.account_slug.clone(),
        token: token.to_owned(),
        new_password: password.to_owned(),
    });
    tokio::spawn(async move { auth.reset_password(request).await })
}

/// The `token` parameter of the link in a message's text part.
fn token_in(message: &Received, path: &str) -> String {
    let text = message.part("text/plain");
    let start = text
        .find(&format!("https://desk.example.com{path}?account="))
        .unwrap_or_else(|| panic!("no {path} link in {text}"));
    let link = text[start..].split_whitespace().next().unwrap();
    let url = url::Url::parse(link).expect("a link");
    url.query_pairs()
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .expect("a token in the link")
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    count_of(&app.database, sql).await
}

#[tokio::test]
async fn a_reset_link_from_the_mail_sets_the_password_once_and_ends_every_earlier_token() {
    let smtp = SmtpServer::start_new().await;
    let app = TestApp::spawn_with(|settings| send_to(settings, &smtp)).await;
    let user = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let second = log_in(&app.auth, &user.account_slug, &user.email).await;

    request_reset(&app, reset_request(&user))
        .await
        .expect("answered");

    let received = smtp.wait_for(1).await;
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.envelope_recipients(), [user.email.as_str()]);
    assert_eq!(mail.header("Subject"), "Reset your password");
    let token = token_in(mail, "/reset-password");
    assert!(
        mail.part("text/html").contains(&token),
        "both parts carry the link"
    );
    // Only the token's hash is stored; the outbox keeps the seed, not the token.
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS count FROM password_tokens WHERE purpose = 'reset' \
                 AND encode(token_hash, 'hex') = '{hash}' AND used_at IS NULL \
                 AND expires_at BETWEEN now() + interval '29 minutes' AND now() + interval '30 minutes'"
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS count FROM notifications WHERE data::text LIKE '%{token}%'"
            )
        )
        .await,
        0
    );

    reset_password(&app, &user.account_slug, &token, NEW_PASSWORD)
        .await
        .expect("the password is set");

    let fresh = login(&app, &user, NEW_PASSWORD)
        .await
        .expect("the new password works");
    let status = login(&app, &user, TEST_PASSWORD)
        .await
        .expect_err("the old one does not");
    assert_reason(&status, Reason::InvalidCredentials);
    for earlier in [&user.access_token, &second.access_token] {
        let status = current_user(&app, earlier)
            .await
            .expect_err("refused at once");
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_reason(&status, Reason::SessionRevoked);
    }
    for earlier in [&user.refresh_token, &second.refresh_token] {
        let status = app
            .auth
            .clone()
            .refresh_token(tonic::Request::new(v1::RefreshTokenRequest {
                refresh_token: earlier.clone(),
            }))
            .await
            .expect_err("the session is over");
        assert_reason(&status, Reason::InvalidCredentials);
    }
    current_user(&app, &fresh.tokens.unwrap().access_token)
        .await
        .expect("the new session works");
    current_user(&app, &app.admin.access_token)
        .await
        .expect("another user's token is untouched");

    let status = reset_password(&app, &user.account_slug, &token, "yet another passphrase")
        .await
        .expect_err("a link works once");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_reason(&status, Reason::PasswordTokenUsed);
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS count FROM revoked_sessions WHERE user_id = '{}'",
                user.id
            )
        )
        .await,
        2,
        "both sessions' revocations are recorded in PostgreSQL"
    );
}

#[tokio::test]
async fn a_reset_whose_redis_step_failed_after_its_commit_refuses_the_old_refresh_tokens_for_their_whole_life()
 {
    let redis_proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let app = TestApp::spawn_with(|settings| {
        settings.redis.url =
            url_through(settings.redis.url.expose_secret(), redis_proxy.address).into();
    })
    .await;
    let user = app.add_user(&app.admin, v1::UserRole::Agent).await;
    request_reset(&app, reset_request(&user))
        .await
        .expect("answered");
    let token = token_from_outbox(&app, &user).await;

    // The reset waits at its write for the user's row; Redis goes away meanwhile.
    let (mut lock, reset) = reset_held_at_its_write(&app, &user, &token).await;
    redis_proxy.cut();
    diesel::sql_query("ROLLBACK")
        .execute(&mut lock)
        .await
        .unwrap();
    let status = reset
        .await
        .unwrap()
        .expect_err("the sessions could not be ended in Redis");
    assert_eq!(status.code(), Code::Unavailable);
    redis_proxy.restore();
    let status = reset_password(&app, &user.account_slug, &token, NEW_PASSWORD)
        .await
        .expect_err("the password did change: the link is used");
    assert_reason(&status, Reason::PasswordTokenUsed);

    // Redis still has the session and its refresh token; PostgreSQL's record refuses it for as
    // long as the token may live, not only for the access tokens' fifteen minutes.
    let lifetime = app.settings.auth.refresh_token_ttl.as_secs();
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS count FROM revoked_sessions WHERE user_id = '{}' \
                 AND expires_at >= now() + interval '{lifetime} seconds'",
                user.id.as_uuid()
            )
        )
        .await,
        1,
        "the revocation is remembered as long as the session's refresh tokens live"
    );
    let status = app
        .auth
        .clone()
        .refresh_token(tonic::Request::new(v1::RefreshTokenRequest {
            refresh_token: user.refresh_token.clone(),
        }))
        .await
        .expect_err("the session is over");
    assert_reason(&status, Reason::InvalidCredentials);
}

#[tokio::test]
async fn a_login_with_the_old_password_that_a_reset_overtook_while_it_verified_gets_no_session() {
    // A pool connection made on a loaded machine may take more than the suite's 2 s: the login
    // must not be refused for want of one.
    let app = TestApp::spawn_with(|settings| {
        settings.database.connect_timeout = Duration::from_secs(20);
    })
    .await;
    'attempts: for _ in 0..5 {
        let user = app.add_user(&app.admin, v1::UserRole::Agent).await;
        // The old password's hash made costly (its parameters travel with it): verifying it takes
        // long enough for a whole reset to happen meanwhile.
        let costly = tokio::task::spawn_blocking(|| {
            use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
            let params = argon2::Params::new(19 * 1024, 20, 1, None).unwrap();
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(TEST_PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string()
        })
        .await
        .unwrap();
        let mut conn = app.database.connect().await;
        diesel::sql_query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind::<SqlUuid, _>(user.id.as_uuid())
            .bind::<Text, _>(&costly)
            .execute(&mut conn)
            .await
            .unwrap();
        request_reset(&app, reset_request(&user))
            .await
            .expect("answered");
        let token = token_from_outbox(&app, &user).await;

        // The reset waits at its write for the user's row...
        let (mut lock, reset) = reset_held_at_its_write(&app, &user, &token).await;
        // ...while a login with the old password reads its hash and starts verifying it;
        let mut watcher = app.database.connect().await;
        let since: String = {
            #[derive(diesel::QueryableByName)]
            struct Now {
                #[diesel(sql_type = Text)]
                now: String,
            }
            diesel::sql_query("SELECT clock_timestamp()::text AS now")
                .get_result::<Now>(&mut app.database.connect().await)
                .await
                .unwrap()
                .now
        };
        let login = tokio::spawn({
            let auth = app.auth.clone();
            let (account, email) = (user.account_slug.clone(), user.email.clone());
            async move {
                auth.clone()
                    .login(tonic::Request::new(v1::LoginRequest {
                        account,
                        email,
                        password: TEST_PASSWORD.to_owned(),
                    }))
                    .await
            }
        });
        // The login's connection shows its read in pg_stat_activity only until the pool lends it
        // to another query, so a connection of the test's own, made before the login starts, looks
        // every few milliseconds; polls (which quote the read's text) do not count.
        let seen = format!(
            "SELECT count(*) AS count FROM pg_stat_activity \
             WHERE datname = current_database() AND query_start > '{since}' \
             AND query LIKE '%\"users\".\"email\" = $2%' \
             AND query NOT LIKE '%pg_stat_activity%'"
        );
        let started = tokio::time::Instant::now();
        while diesel::sql_query(&seen)
            .get_result::<Count>(&mut watcher)
            .await
            .expect("pg_stat_activity")
            .count
            == 0
        {
            if login.is_finished() {
                // The read was not seen (the pool lent its connection on first): the login came
                // before the reset, and this attempt shows nothing. Let the reset finish; again.
                diesel::sql_query("ROLLBACK")
                    .execute(&mut lock)
                    .await
                    .unwrap();
                reset.await.unwrap().expect("the password is reset");
                continue 'attempts;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the login's read was not seen"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // then the reset commits and ends every session the user has, before the login has one.
        diesel::sql_query("ROLLBACK")
            .execute(&mut lock)
            .await
            .unwrap();
        reset.await.unwrap().expect("the password is reset");

        let status = login
            .await
            .unwrap()
            .expect_err("the password the login verified is no longer the user's");
        assert_reason(&status, Reason::InvalidCredentials);
        let client = redis::Client::open(redis_url()).expect("redis url");
        let mut redis = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis");
        let sessions: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}user-sessions:{}", app.redis_prefix, user.id))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(
            sessions,
            Vec::<String>::new(),
            "the user has no session left"
        );
        return;
    }
    panic!("in 5 attempts, no login's read of the old hash was seen before it ended");
}

#[tokio::test]
async fn a_wrong_an_expired_a_used_and_another_accounts_token_each_get_their_reason() {
    let app = TestApp::spawn().await;
    let user = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let other = app.sign_up_another_account().await;

    let status = reset_password(&app, &user.account_slug, "not-a-token-at-all", NEW_PASSWORD)
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_reason(&status, Reason::PasswordTokenInvalid);

    request_reset(&app, reset_request(&user))
        .await
        .expect("answered");
    let token = token_from_outbox(&app, &user).await;
    // Presented for another account: the same answer as a token nobody issued.
    let status = reset_password(&app, &other.account_slug, &token, NEW_PASSWORD)
        .await
        .expect_err("another account's token");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_reason(&status, Reason::PasswordTokenInvalid);

    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "UPDATE password_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1",
    )
    .bind::<SqlUuid, _>(user.id.as_uuid())
    .execute(&mut conn)
    .await
    .expect("expired");
    let status = reset_password(&app, &user.account_slug, &token, NEW_PASSWORD)
        .await
        .expect_err("expired");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_reason(&status, Reason::PasswordTokenExpired);

    request_reset(&app, reset_request(&user))
        .await
        .expect("answered");
    let token = token_from_outbox(&app, &user).await;
    reset_password(&app, &user.account_slug, &token, NEW_PASSWORD)
        .await
        .expect("set");
    let status = reset_password(&app, &user.account_slug, &token, NEW_PASSWORD)
        .await
        .expect_err("used");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_reason(&status, Reason::PasswordTokenUsed);

    let status = reset_password(&app, &user.account_slug, &token, "short")
        .await
        .expect_err("the password policy applies");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(crate::support::violated_fields(&status), ["new_password"]);
}

#[tokio::test]
async fn two_resets_of_one_user_with_two_links_at_once_set_one_password_and_tell_the_other_its_link_is_used()
 {
    let app = TestApp::spawn().await;
    let user = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let mut links = Vec::new();
    for _ in 0..2 {
        request_reset(&app, reset_request(&user))
            .await
            .expect("answered");
        links.push(token_from_outbox(&app, &user).await);
    }
    assert_ne!(links[0], links[1], "two links");

    // Each link's reset reaches the user's row while the other's is under way.
    let lock = hold_row_of(&app, &user).await;
    let passwords = [
        "the first link's passphrase",
        "the second link's passphrase",
    ];
    let resets: Vec<_> = links
        .iter()
        .zip(passwords)
        .map(|(link, password)| spawn_reset(&app, &user, link, password))
        .collect();
    release_once_waiting(
        &app.database,
        lock,
        2,
        "both resets wait for the user's row",
    )
    .await;

    let mut set = Vec::new();
    for (reset, password) in resets.into_iter().zip(passwords) {
        match reset.await.unwrap() {
            Ok(_) => set.push(password),
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                assert_reason(&status, Reason::PasswordTokenUsed);
            }
        }
    }
    let [password] = set.as_slice() else {
        panic!("one reset sets the password, not {set:?}");
    };
    login(&app, &user, password)
        .await
        .expect("the password the reset set");
    for other in passwords.iter().filter(|other| *other != password) {
        let status = login(&app, &user, other)
            .await
            .expect_err("the other link set nothing");
        assert_reason(&status, Reason::InvalidCredentials);
    }
}

#[tokio::test]
async fn an_unknown_address_gets_the_same_answer_byte_for_byte_and_no_mail() {
    let smtp = SmtpServer::start_new().await;
    let app = TestApp::spawn_with(|settings| send_to(settings, &smtp)).await;
    let user = app.add_user(&app.admin, v1::UserRole::Customer).await;

    let unknown = request_reset(
        &app,
        v1::RequestPasswordResetRequest {
            account: user.account_slug.clone(),
            email: "nobody-here@example.com".to_owned(),
        },
    )
    .await
    .expect("answered");
    let known = request_reset(&app, reset_request(&user))
        .await
        .expect("answered");

    assert_eq!(
        unknown.get_ref().encode_to_vec(),
        known.get_ref().encode_to_vec(),
        "the same message"
    );
    // The same headers, apart from the quota's count of what is left.
    let headers = |response: &tonic::Response<v1::RequestPasswordResetResponse>| {
        let mut headers: Vec<(String, String)> = response
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .filter(|(name, _)| !["date", "ratelimit", "x-request-id"].contains(&name.as_str()))
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
            .collect();
        headers.sort();
        headers
    };
    assert_eq!(headers(&unknown), headers(&known));

    let received = smtp.wait_for(1).await;
    wait_until("the known address's mail is marked sent", PATIENCE, async || {
        count(
            &app,
            "SELECT count(*) AS count FROM notifications WHERE kind = 'password_reset' AND state = 'sent'",
        )
        .await
            == 1
    })
    .await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].envelope_recipients(), [user.email.as_str()]);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS count FROM notifications WHERE kind = 'password_reset'"
        )
        .await,
        1,
        "nothing was written for the unknown address"
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS count FROM password_tokens").await,
        1
    );
}

#[tokio::test]
async fn reset_requests_are_throttled_per_address_and_per_client() {
    let app = TestApp::spawn_with(|settings| {
        settings.password_reset.per_address = RateQuota {
            count: 2,
            window: Duration::from_secs(3600),
        };
        settings.password_reset.per_client = RateQuota {
            count: 4,
            window: Duration::from_secs(3600),
        };
    })
    .await;
    let user = app.add_user(&app.admin, v1::UserRole::Customer).await;
    for _ in 0..2 {
        request_reset(&app, reset_request(&user))
            .await
            .expect("within the quota");
    }
    let status = request_reset(&app, reset_request(&user))
        .await
        .expect_err("the address's quota is spent");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_reason(&status, Reason::RateLimited);
    let refusal = details(&status);
    assert_eq!(
        refusal
            .error_info()
            .unwrap()
            .metadata
            .get("policy")
            .map(String::as_str),
        Some("password-reset-address")
    );
    assert!(
        refusal
            .retry_info()
            .and_then(|info| info.retry_delay)
            .is_some()
    );
    assert_eq!(
        refusal.quota_failure().expect("QuotaFailure").violations[0].subject,
        format!("address:{}/{}", user.account_slug, user.email)
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS count FROM password_tokens").await,
        2,
        "a refused request issues nothing"
    );

    // Other addresses from the same client: the client's own quota (4, the refused one counted).
    request_reset(&app, reset_request(&app.admin))
        .await
        .expect("another address");
    let status = request_reset(
        &app,
        v1::RequestPasswordResetRequest {
            account: user.account_slug.clone(),
            email: "someone-else@example.com".to_owned(),
        },
    )
    .await
    .expect_err("the client's quota is spent");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_reason(&status, Reason::RateLimited);
    assert_eq!(
        details(&status)
            .error_info()
            .unwrap()
            .metadata
            .get("policy")
            .map(String::as_str),
        Some("password-reset")
    );
}

#[tokio::test]
async fn a_user_added_without_a_password_is_invited_by_a_link_that_works_once() {
    let smtp = SmtpServer::start_new().await;
    let app = TestApp::spawn_with(|settings| send_to(settings, &smtp)).await;
    let email = format!("invitee-{}@example.com", uuid::Uuid::now_v7().simple());
    let created = app
        .user(&email)
        .display_name("Ivy <Invitee>")
        .role(v1::UserRole::Agent)
        .without_password()
        .try_create()
        .await
        .expect("added without a password");
    // An admin who sets the password hands it over: no invitation then.
    app.add_user(&app.admin, v1::UserRole::Agent).await;

    let received = smtp.wait_for(1).await;
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.envelope_recipients(), [email.as_str()]);
    assert_eq!(
        mail.header("Subject"),
        "You have been invited to the support desk"
    );
    assert!(
        mail.part("text/html")
            .contains("Hello Ivy &lt;Invitee&gt;,")
    );
    assert!(mail.part("text/plain").contains("Hello Ivy <Invitee>,"));
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS count FROM password_tokens WHERE purpose = 'invitation' \
                 AND user_id = '{}' AND expires_at > now() + interval '6 days 23 hours'",
                created.id
            )
        )
        .await,
        1
    );
    let invitee = TestUser {
        id: supportdesk::domain::UserId::parse(&created.id).unwrap(),
        account_id: app.account_id,
        account_slug: app.admin.account_slug.clone(),
        email: email.clone(),
        access_token: String::new(),
        refresh_token: String::new(),
    };
    let status = login(&app, &invitee, NEW_PASSWORD)
        .await
        .expect_err("no password yet");
    assert_reason(&status, Reason::InvalidCredentials);

    let token = token_in(mail, "/accept-invitation");
    reset_password(&app, &app.admin.account_slug, &token, NEW_PASSWORD)
        .await
        .expect("the invitee chooses a password");
    login(&app, &invitee, NEW_PASSWORD)
        .await
        .expect("and logs in");
    let status = reset_password(&app, &app.admin.account_slug, &token, "another passphrase!")
        .await
        .expect_err("once");
    assert_reason(&status, Reason::PasswordTokenUsed);
}

#[tokio::test]
async fn after_logout_the_same_access_token_is_refused_at_once_even_when_redis_lost_the_revocation()
{
    let app = TestApp::spawn().await;
    let user = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let other_session = log_in(&app.auth, &user.account_slug, &user.email).await;

    app.auth
        .clone()
        .logout(user.request(v1::LogoutRequest {}))
        .await
        .expect("logged out");
    let status = current_user(&app, &user.access_token)
        .await
        .expect_err("refused at once, not when it expires");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_reason(&status, Reason::SessionRevoked);
    current_user(&app, &other_session.access_token)
        .await
        .expect("the user's other session goes on");
    current_user(&app, &app.admin.access_token)
        .await
        .expect("other users are untouched");

    // Redis loses everything it knew of the user: PostgreSQL still says the session ended.
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("DEL")
        .arg(format!(
            "{}revoked-session:{}",
            app.redis_prefix,
            session_of(&user.access_token)
        ))
        .arg(format!("{}principal:user:{}", app.redis_prefix, user.id))
        .query_async(&mut redis)
        .await
        .expect("deleted");
    let status = current_user(&app, &user.access_token)
        .await
        .expect_err("still refused");
    assert_reason(&status, Reason::SessionRevoked);
    let status = current_user(&app, &user.access_token)
        .await
        .expect_err("and the marker is back in Redis");
    assert_reason(&status, Reason::SessionRevoked);
    current_user(&app, &other_session.access_token)
        .await
        .expect("the other session still goes on");

    let ended = app
        .auth
        .clone()
        .logout_all(other_session.request(v1::LogoutAllRequest {}))
        .await
        .expect("logged out everywhere")
        .into_inner()
        .ended_sessions;
    assert_eq!(ended, 1);
    let status = current_user(&app, &other_session.access_token)
        .await
        .expect_err("LogoutAll ends access tokens at once too");
    assert_reason(&status, Reason::SessionRevoked);
}

/// The `sid` claim of an access token (read, not verified).
fn session_of(access_token: &str) -> String {
    use base64::Engine;
    let payload = access_token.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64"),
    )
    .expect("JSON");
    claims["sid"].as_str().expect("sid").to_owned()
}

async fn notices(app: &TestApp, kind: &str) -> i64 {
    count(
        app,
        &format!("SELECT count(*) AS count FROM notifications WHERE kind = '{kind}'"),
    )
    .await
}

#[tokio::test]
async fn a_paid_charge_sends_one_receipt_and_a_refund_one_notice_with_amounts_in_their_currency() {
    let smtp = SmtpServer::start_new().await;
    let app = TestApp::spawn_with(|settings| send_to(settings, &smtp)).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let charge = app.charge(customer.id, 123_456, "USD").create().await;

    let received = smtp.wait_for(1).await;
    assert_eq!(received.len(), 1);
    let receipt = &received[0];
    assert_eq!(receipt.envelope_recipients(), [customer.email.as_str()]);
    assert_eq!(
        receipt.header("Subject"),
        "Receipt for your payment of 1234.56 USD"
    );
    assert!(receipt.part("text/plain").contains("Amount: 1234.56 USD"));
    assert!(
        receipt
            .part("text/html")
            .contains("<strong>1234.56 USD</strong>")
    );
    assert!(receipt.part("text/plain").contains(&charge.id));

    // The success seen again: the receipt's statement replayed as the completer or a webhook
    // would run it. One receipt still.
    let mut conn = app.database.connect().await;
    let written = supportdesk::db::models::notification::payment_notices::charge_receipt(
        &mut conn,
        uuid::Uuid::parse_str(&charge.id).unwrap(),
        "desk.example.com",
    )
    .await
    .expect("replayed");
    assert!(!written, "the receipt exists: the replay writes nothing");
    assert_eq!(notices(&app, "charge_receipt").await, 1);

    app.billing
        .clone()
        .refund_charge(crate::support::keyed(app.as_admin(
            v1::RefundChargeRequest {
                id: charge.id.clone(),
                amount: Some(v1::Money {
                    amount_minor: 5,
                    currency_code: "USD".to_owned(),
                }),
            },
        )))
        .await
        .expect("refunded");
    let received = smtp.wait_for(2).await;
    let notice = received
        .iter()
        .find(|message| message.header("Subject").starts_with("Refund"))
        .expect("the refund notice");
    assert_eq!(notice.header("Subject"), "Refund of 0.05 USD");
    assert_eq!(notice.envelope_recipients(), [customer.email.as_str()]);
    assert!(notice.part("text/html").contains("0.05 USD"));
    let refund_id: String = {
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = Text)]
            id: String,
        }
        diesel::sql_query("SELECT id::text AS id FROM refunds LIMIT 1")
            .get_result::<Id>(&mut conn)
            .await
            .expect("the refund")
            .id
    };
    let written = supportdesk::db::models::notification::payment_notices::refund_notice(
        &mut conn,
        uuid::Uuid::parse_str(&refund_id).unwrap(),
        "desk.example.com",
    )
    .await
    .expect("replayed");
    assert!(!written);
    assert_eq!(notices(&app, "refund_notice").await, 1);
    wait_until("both are sent", PATIENCE, async || {
        count(
            &app,
            "SELECT count(*) AS count FROM notifications WHERE state = 'sent'",
        )
        .await
            == 2
    })
    .await;
    assert_eq!(smtp.received().len(), 2, "one receipt, one notice");
}

#[tokio::test]
async fn the_completer_and_a_webhook_that_both_see_a_charge_succeed_write_one_receipt() {
    use payment_simulator::SettleOutcome;

    let queue = crate::webhooks::processing::Queue::open(2).await;
    let (_, succeeded) = queue
        .settling_later(2_000, "settles-later", 100, SettleOutcome::Succeed)
        .await;
    let completer = supportdesk::service::Billing::new(
        supportdesk::db::build_pool(&queue.app.settings.database, Duration::from_secs(5)),
        std::sync::Arc::new(
            supportdesk::providers::payments::StripeHttpProvider::new(
                queue.app.settings.payment_provider.as_ref().unwrap(),
            )
            .unwrap(),
        ),
    );
    // Both at once: the webhook worker applies the event while the completer asks the provider.
    let policy = supportdesk::service::CompleterPolicy {
        min_age: Duration::ZERO,
        ..Default::default()
    };
    let (_, completed) = tokio::join!(
        queue.deliver(&succeeded),
        completer.complete_pending(&policy)
    );
    completed.expect("the completer ran");
    let row = queue.processed(&succeeded.id).await;
    let charge_id = row
        .charge_id
        .expect("the event names our charge")
        .to_string();
    assert_eq!(queue.charge(&charge_id).await.0, "succeeded");
    assert_eq!(
        count(
            &queue.app,
            &format!(
                "SELECT count(*) AS count FROM notifications \
                 WHERE kind = 'charge_receipt' AND dedupe_key = 'charge_receipt:{charge_id}' \
                 AND data->>'amount_minor' = '2000' AND data->>'currency' = 'USD'"
            )
        )
        .await,
        1
    );
    assert_eq!(notices(&queue.app, "charge_receipt").await, 1);
}

/// The mail server is away longer than a reset link lives (its token's expiry is moved to a
/// second ago, as thirty minutes of outage would leave it): the message, tried and failed while
/// the link worked, is skipped at its next claim (`link_expired`), not mailed with a link that
/// answers "expired". A reset asked for once the server is back is sent, alone.
#[tokio::test]
async fn a_reset_mail_whose_link_expired_while_the_mail_server_was_away_is_skipped_not_sent() {
    let mut smtp = SmtpServer::start_new().await;
    smtp.stop().await;
    let app = TestApp::spawn_with(|settings| send_to(settings, &smtp)).await;
    let user = app.add_user(&app.admin, v1::UserRole::Agent).await;
    request_reset(&app, reset_request(&user))
        .await
        .expect("answered");
    wait_until("the reset mail tried and failed", PATIENCE, async || {
        count(
            &app,
            "SELECT count(*) AS count FROM notifications \
             WHERE kind = 'password_reset' AND state = 'received' AND attempts >= 1",
        )
        .await
            == 1
    })
    .await;

    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "UPDATE password_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1",
    )
    .bind::<SqlUuid, _>(user.id.as_uuid())
    .execute(&mut conn)
    .await
    .expect("expired");

    wait_until("the reset mail skipped", PATIENCE, async || {
        count(
            &app,
            "SELECT count(*) AS count FROM notifications WHERE kind = 'password_reset' \
             AND state = 'skipped' AND skip_reason = 'link_expired' AND skipped_at IS NOT NULL",
        )
        .await
            == 1
    })
    .await;
    smtp.start().await;
    request_reset(&app, reset_request(&user))
        .await
        .expect("answered");
    let received = smtp.wait_for(1).await;
    wait_until(
        "the second reset mail recorded sent",
        PATIENCE,
        async || {
            count(
                &app,
                "SELECT count(*) AS count FROM notifications \
             WHERE kind = 'password_reset' AND state = 'sent'",
            )
            .await
                == 1
        },
    )
    .await;
    assert_eq!(received.len(), 1, "only the second reset mail");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS count FROM notifications \
             WHERE kind = 'password_reset' AND state = 'skipped'",
        )
        .await,
        1
    );
}

/// An instance whose clock lags two hours (libfaketime) issues a reset link: its expiry is
/// PostgreSQL's `now()` plus thirty minutes, the clock ResetPassword and the mail's claim read
/// it with, and the mail shows that expiry. By the instance's own clock the link was dead on
/// arrival, an hour and a half before it was issued.
#[tokio::test]
async fn a_reset_link_issued_by_an_instance_whose_clock_lags_works_for_its_thirty_minutes() {
    let database = crate::support::TestDatabase::create().await;
    let running = Running::start_with_clock(&database, &[], Some("-2h"));
    let channel = running.channel().await;
    running.wait_for_health("Serving").await;
    let admin = sign_up_through(&channel).await;

    AuthServiceClient::new(channel)
        .request_password_reset(tonic::Request::new(v1::RequestPasswordResetRequest {
            account: admin.account_slug.clone(),
            email: admin.email.clone(),
        }))
        .await
        .expect("answered");

    assert_eq!(
        count_of(
            &database,
            "SELECT count(*) AS count FROM password_tokens t \
             JOIN notifications n ON n.recipient_user_id = t.user_id \
                 AND n.kind = 'password_reset' \
             WHERE t.expires_at > now() + interval '29 minutes' \
               AND t.expires_at <= now() + interval '30 minutes' \
               AND n.data->>'expires_at' = \
                   to_char(t.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
        )
        .await,
        1,
        "one link living thirty minutes by PostgreSQL's clock, shown as it is stored"
    );
}
