//! The callers' states in Redis ([`supportdesk::auth::principals`]): what lets a cached call skip
//! PostgreSQL must never let a deactivated user, a demoted admin or a revoked key through, on
//! any instance, even when a reader and a writer race.

use diesel::sql_types::{Bool, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use secrecy::ExposeSecret;
use supportdesk::auth::principals::{
    ChangeWindow, KnownState, Lease, PrincipalKey, PrincipalState, PrincipalStates,
};
use supportdesk::domain::{AccountId, Role, UserId};
use supportdesk::errors::Reason;
use supportdesk::rate_limit::{AlsoRead, Policy, RateLimiter, Subject};
use supportdesk::redis::connection;
use supportdesk::redis::keys::RedisKeys;
use supportdesk::telemetry::metrics::Metrics;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::api_key_service_client::ApiKeyServiceClient;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use tonic::Code;

use crate::support::proxy::{TcpProxy, socket_address_of, url_through};
use crate::support::{TestApp, assert_reason, second_instance, with_token};

fn update_user(id: &str, user: v1::User, path: &str) -> v1::UpdateUserRequest {
    v1::UpdateUserRequest {
        user: Some(v1::User {
            id: id.to_owned(),
            ..user
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![path.to_owned()],
        }),
    }
}

#[tokio::test]
async fn a_change_made_on_one_instance_refuses_the_next_call_on_another_that_had_the_state_in_redis()
 {
    let app = TestApp::spawn().await;
    let (channel, _server) = second_instance(&app.settings).await;
    let mut tickets_on_b = TicketServiceClient::new(channel.clone());
    let mut keys_on_b = ApiKeyServiceClient::new(channel);
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let second_admin = app.add_user(&app.admin, v1::UserRole::Admin).await;
    let key = app.api_key("sync").create().await;
    // Each caller's state is now in Redis, put there by instance B.
    tickets_on_b
        .list_tickets(agent.request(v1::ListTicketsRequest::default()))
        .await
        .expect("the agent calls B");
    keys_on_b
        .list_api_keys(second_admin.request(v1::ListApiKeysRequest::default()))
        .await
        .expect("the second admin calls B");
    tickets_on_b
        .list_tickets(with_token(&key.secret, v1::ListTicketsRequest::default()))
        .await
        .expect("the key calls B");

    let mut users_on_a = app.users.clone();
    users_on_a
        .update_user(app.as_admin(update_user(
            &agent.id.to_string(),
            v1::User {
                active: false,
                ..Default::default()
            },
            "active",
        )))
        .await
        .expect("deactivated on A");
    users_on_a
        .update_user(app.as_admin(update_user(
            &second_admin.id.to_string(),
            v1::User {
                role: v1::UserRole::Agent.into(),
                ..Default::default()
            },
            "role",
        )))
        .await
        .expect("demoted on A");
    ApiKeyServiceClient::new(app_channel(&app).await)
        .revoke_api_key(app.as_admin(v1::RevokeApiKeyRequest {
            id: key.api_key.unwrap().id,
        }))
        .await
        .expect("revoked on A");

    let deactivated = tickets_on_b
        .list_tickets(agent.request(v1::ListTicketsRequest::default()))
        .await
        .expect_err("B refuses the deactivated agent");
    assert_reason(&deactivated, Reason::UserDeactivated);
    let demoted = keys_on_b
        .list_api_keys(second_admin.request(v1::ListApiKeysRequest::default()))
        .await
        .expect_err("B refuses the demoted admin an admin's RPC");
    assert_eq!(demoted.code(), Code::PermissionDenied);
    let revoked = tickets_on_b
        .list_tickets(with_token(&key.secret, v1::ListTicketsRequest::default()))
        .await
        .expect_err("B refuses the revoked key");
    assert_reason(&revoked, Reason::ApiKeyRevoked);
}

async fn app_channel(app: &TestApp) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{}", app.address))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The app's principal states and the rate limiter whose admission reads them, built apart from
/// the app so that a test can play the writers and the readers itself.
fn states_and_admission(app: &TestApp) -> (PrincipalStates, RateLimiter) {
    let redis = connection::build_pool(&app.settings.redis).unwrap();
    let keys = RedisKeys::new(app.settings.redis.key_prefix.clone());
    let states = PrincipalStates::new(
        redis.clone(),
        keys.clone(),
        ChangeWindow::for_requests_up_to(app.settings.server.request_timeout),
    );
    let limiter = RateLimiter::new(
        redis,
        keys,
        app.settings.rate_limits.clone(),
        &Metrics::default(),
    );
    (states, limiter)
}

/// What a call's admission finds for `principal`: a stored state, or nothing (with a lease when
/// the key was empty).
async fn admission_finds(
    states: &PrincipalStates,
    limiter: &RateLimiter,
    principal: &PrincipalKey,
) -> KnownState {
    let lease = Lease::new();
    let key = states.key(principal);
    let (_, read) = limiter
        .admit(
            Policy::Read,
            &Subject::new("user", "reader"),
            Some(AlsoRead {
                key: &key,
                lease: &lease,
                prefetch: None,
                barring: None,
                revocation: None,
            }),
        )
        .await;
    let read = read.expect("Redis answered");
    KnownState::from_read(read.value.as_deref(), lease, read.took_lease)
}

#[tokio::test]
async fn a_reader_that_read_postgresql_before_a_change_cannot_store_what_it_read() {
    let app = TestApp::spawn().await;
    let (states, limiter) = states_and_admission(&app);
    let user = PrincipalKey::User(UserId::from_uuid(uuid::Uuid::now_v7()));
    let account_id = AccountId::from_uuid(uuid::Uuid::now_v7());
    let as_admin = PrincipalState::User {
        account_id,
        role: Role::Admin,
        active: true,
    };
    let deactivated = PrincipalState::User {
        account_id,
        role: Role::Admin,
        active: false,
    };
    let read = async || admission_finds(&states, &limiter, &user).await;

    // The reader finds nothing and takes a lease; it reads PostgreSQL (the admin, still active)...
    let KnownState::Unknown { lease: Some(lease) } = read().await else {
        panic!("an empty state gives the reader a lease");
    };
    // ...while a writer marks the user as changing and commits the deactivation...
    let marker = states.changing(user.clone()).await.expect("marked");
    // ...so what the reader read before the commit is not stored,
    states.store(&user, &lease, &as_admin).await;
    assert_eq!(
        read().await,
        KnownState::Unknown { lease: None },
        "while a change is under way every reader goes to PostgreSQL, and none may store"
    );
    // and what the writer committed is.
    marker.settle(Some(deactivated.clone())).await;
    assert_eq!(read().await, KnownState::Stored(deactivated));
}

#[tokio::test]
async fn two_changes_at_once_leave_no_state_that_misses_either_whichever_settles_last() {
    let app = TestApp::spawn().await;
    let (states, limiter) = states_and_admission(&app);
    let user = PrincipalKey::User(UserId::from_uuid(uuid::Uuid::now_v7()));
    let account_id = AccountId::from_uuid(uuid::Uuid::now_v7());
    let read = async || admission_finds(&states, &limiter, &user).await;

    // A demotion marks the user, then waits before its commit; a rename marks the user too,
    // commits (its row still says admin) and settles first; the demotion commits and settles.
    let demotion = states.changing(user.clone()).await.expect("marked");
    let rename = states.changing(user.clone()).await.expect("marked");
    rename
        .settle(Some(PrincipalState::User {
            account_id,
            role: Role::Admin,
            active: true,
        }))
        .await;
    assert_eq!(
        read().await,
        KnownState::Unknown { lease: None },
        "the demotion is still under way: readers go to PostgreSQL, and none may store"
    );
    demotion
        .settle(Some(PrincipalState::User {
            account_id,
            role: Role::Agent,
            active: true,
        }))
        .await;

    // Neither writer's state is the whole truth: the next reader reads PostgreSQL, and may store.
    let KnownState::Unknown { lease: Some(_) } = read().await else {
        panic!("the marker is gone and nothing is stored: a reader takes a lease");
    };
}

#[tokio::test]
async fn a_change_is_refused_and_not_committed_when_redis_cannot_take_its_marker() {
    let redis_proxy = TcpProxy::start(socket_address_of(&crate::support::redis_url())).await;
    let app = TestApp::spawn_with(|settings| {
        settings.redis.url =
            url_through(settings.redis.url.expose_secret(), redis_proxy.address).into();
    })
    .await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;

    redis_proxy.cut();
    let status = app
        .users
        .clone()
        .update_user(app.as_admin(update_user(
            &agent.id.to_string(),
            v1::User {
                active: false,
                ..Default::default()
            },
            "active",
        )))
        .await
        .expect_err("no change without its marker");
    assert_eq!(status.code(), Code::Unavailable);

    #[derive(diesel::QueryableByName)]
    struct Active {
        #[diesel(sql_type = Bool)]
        active: bool,
    }
    let stored: Active = diesel::sql_query("SELECT active FROM users WHERE id = $1")
        .bind::<SqlUuid, _>(agent.id.as_uuid())
        .get_result(&mut app.database.connect().await)
        .await
        .unwrap();
    assert!(stored.active, "the deactivation was not committed");
}
