//! Health and failure behaviour when PostgreSQL or Redis goes away and comes back, observed
//! through a TCP proxy the test cuts (the real servers keep running for everyone else).

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::proxy::{TcpProxy, socket_address_of, url_through};
use crate::support::{PATIENCE, TestApp, assert_reason, redis_url};

#[tokio::test]
async fn health_reports_serving_for_the_server_and_every_service() {
    let app = TestApp::spawn().await;
    app.wait_for_health("Serving", PATIENCE).await;
    assert_eq!(
        app.health_of("supportdesk.v1.TicketService").await,
        "Serving"
    );
}

/// A proxy in front of the tests' PostgreSQL, and the app reaching it only through that proxy,
/// its other settings as `configure` leaves them.
pub(crate) async fn app_behind_a_postgres_proxy(
    configure: impl FnOnce(&mut supportdesk::configuration::Settings),
) -> (TcpProxy, TestApp) {
    let database_url = crate::support::test_settings("unused").database.url;
    let proxy = TcpProxy::start(socket_address_of(database_url.expose_secret())).await;
    let app = TestApp::spawn_with(|settings| {
        let url = url_through(settings.database.url.expose_secret(), proxy.address);
        settings.database.url = url.into();
        configure(settings);
    })
    .await;
    (proxy, app)
}

/// ListTickets as the app's admin.
async fn list_tickets(app: &TestApp) -> Result<v1::ListTicketsResponse, tonic::Status> {
    app.tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest::default()))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn losing_postgres_flips_health_and_answers_unavailable_fast_then_recovers() {
    let (proxy, app) = app_behind_a_postgres_proxy(|_| {}).await;
    app.wait_for_health("Serving", PATIENCE).await;
    app.create_ticket("before the outage").await;

    proxy.cut();
    app.wait_for_health("NotServing", PATIENCE).await;
    assert_eq!(
        app.health_of("supportdesk.v1.TicketService").await,
        "NotServing"
    );
    let started = Instant::now();
    let status = list_tickets(&app).await.expect_err("no database");
    assert_eq!(status.code(), Code::Unavailable);
    assert_reason(&status, Reason::DatabaseUnavailable);
    assert!(
        crate::support::details(&status).retry_info().is_some(),
        "UNAVAILABLE says when to retry"
    );
    // The pool's connect timeout (2 s) ends the wait; bb8's default would wait 30 s, and the
    // 10 s request deadline would answer DEADLINE_EXCEEDED, not DATABASE_UNAVAILABLE.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "answered within the pool's connect timeout, not after {:?}",
        started.elapsed()
    );

    proxy.restore();
    app.wait_for_health("Serving", PATIENCE).await;
    app.create_ticket("after the outage").await;
}

#[tokio::test]
async fn with_postgres_refusing_connections_calls_are_refused_at_once_not_after_the_connect_timeout()
 {
    let (proxy, app) = app_behind_a_postgres_proxy(|settings| {
        // Longer than a request's 10 s deadline: a checkout that waited it out would answer
        // DEADLINE_EXCEEDED. Two connections, which the first calls after the cut use up.
        settings.database.connect_timeout = Duration::from_secs(60);
        settings.database.pool_size = 2;
    })
    .await;
    app.wait_for_health("Serving", PATIENCE).await;
    app.create_ticket("before the outage").await;

    // PostgreSQL goes away as in a restart: connections cut, new ones refused.
    proxy.cut();
    for call in 0..5 {
        let status = list_tickets(&app).await.expect_err("no database");
        assert_eq!(status.code(), Code::Unavailable, "call {call}: {status:?}");
        assert_reason(&status, Reason::DatabaseUnavailable);
    }

    // Back: a connection is made again (by the health probe's checkout, or the first one after
    // the refusal window) and calls succeed.
    proxy.restore();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match list_tickets(&app).await {
            Ok(page) => {
                assert_eq!(page.tickets.len(), 1);
                break;
            }
            Err(status) => {
                assert_reason(&status, Reason::DatabaseUnavailable);
                assert!(
                    Instant::now() < deadline,
                    "no call succeeded after PostgreSQL returned"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn losing_redis_flips_health_until_it_returns() {
    let proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let app = TestApp::spawn_with(|settings| {
        let url = url_through(settings.redis.url.expose_secret(), proxy.address);
        settings.redis.url = url.into();
    })
    .await;
    app.wait_for_health("Serving", PATIENCE).await;

    proxy.cut();
    app.wait_for_health("NotServing", PATIENCE).await;

    proxy.restore();
    app.wait_for_health("Serving", PATIENCE).await;
}

/// A call of a rate-limited RPC as the app's admin.
async fn call_as_admin(app: &TestApp) -> Result<(), tonic::Status> {
    app.users
        .clone()
        .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
        .await
        .map(drop)
}

#[tokio::test]
async fn with_a_closed_limiter_health_says_not_serving_exactly_while_requests_are_refused() {
    let proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let app = TestApp::spawn_with(|settings| {
        settings.redis.url = url_through(settings.redis.url.expose_secret(), proxy.address).into();
        settings.rate_limits.fail_open = false;
        // The scheduled probe would come too late to matter: what this test sees, the
        // limiter's own failures and recoveries made happen.
        settings.server.health_probe_interval = Duration::from_secs(60);
    })
    .await;
    app.wait_for_health("Serving", PATIENCE).await;
    call_as_admin(&app)
        .await
        .expect("admitted while Redis answers");

    proxy.cut();
    let refused = call_as_admin(&app)
        .await
        .expect_err("refused without Redis");
    assert_eq!(refused.code(), Code::Unavailable);
    assert_reason(&refused, Reason::RedisUnavailable);
    app.wait_for_health("NotServing", PATIENCE).await;

    proxy.restore();
    // The limiter tries Redis again after its pause; its first decision brings health back.
    let deadline = Instant::now() + PATIENCE;
    while call_as_admin(&app).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "never admitted after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.wait_for_health("Serving", PATIENCE).await;
    call_as_admin(&app)
        .await
        .expect("health and admission agree once Redis is back");
}

#[tokio::test]
async fn with_a_closed_limiter_requests_are_admitted_as_soon_as_health_sees_redis_back() {
    let proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let app = TestApp::spawn_with(|settings| {
        settings.redis.url = url_through(settings.redis.url.expose_secret(), proxy.address).into();
        settings.rate_limits.fail_open = false;
        // Longer than the test: only health's probe can end the limiter's pause.
        settings.redis.failure_pause = Duration::from_secs(600);
    })
    .await;
    app.wait_for_health("Serving", PATIENCE).await;
    proxy.cut();
    // The limiter fails and pauses from here.
    call_as_admin(&app)
        .await
        .expect_err("refused without Redis");
    app.wait_for_health("NotServing", PATIENCE).await;
    proxy.restore();
    app.wait_for_health("Serving", PATIENCE).await;
    call_as_admin(&app)
        .await
        .expect("admitted: health's probe ended the limiter's pause");
}

#[tokio::test]
async fn a_transaction_whose_instance_goes_silent_gives_its_locks_back_within_its_budget() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    let database = crate::support::TestDatabase::create().await;
    let url = database.url();
    // An instance's connection through a network that will stop carrying its bytes.
    let proxy = TcpProxy::start(socket_address_of(url.expose_secret())).await;
    let mut silent = AsyncPgConnection::establish(&url_through(url.expose_secret(), proxy.address))
        .await
        .expect("connect through the proxy");
    supportdesk::db::begin(
        &mut silent,
        supportdesk::db::Limits::within(Duration::from_secs(1)),
    )
    .await
    .expect("begin");
    diesel::sql_query("SELECT pg_advisory_xact_lock(4747)")
        .execute(&mut silent)
        .await
        .expect("the lock");
    proxy.stall();

    // Another instance wants the same lock, and would wait up to 10 s for it: a transaction
    // left open by a silent instance holds it for as long as the silence lasts, unless
    // PostgreSQL ends the session once it has been idle for its budget.
    let mut other = database.connect().await;
    diesel::sql_query("SET lock_timeout = '10s'")
        .execute(&mut other)
        .await
        .expect("set the wait");
    let waited = Instant::now();
    diesel::sql_query("SELECT pg_advisory_xact_lock(4747)")
        .execute(&mut other)
        .await
        .expect("the lock is given back within the silent transaction's budget");
    assert!(
        waited.elapsed() < Duration::from_secs(10),
        "the lock came only after the wait's own limit"
    );
    proxy.unstall();
}
