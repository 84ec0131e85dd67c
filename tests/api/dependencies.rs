//! Health and failure behaviour when PostgreSQL or Redis goes away and comes back, observed
//! through a TCP proxy the test cuts (the real servers keep running for everyone else).

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use supportdesk::proto::v1;
use tonic::Code;

use super::helpers::{TestApp, error_reason, redis_url};
use super::proxy::{TcpProxy, socket_address_of, url_through};

#[tokio::test]
async fn health_reports_serving_for_the_server_and_every_service() {
    let app = TestApp::spawn().await;
    app.wait_for_health("Serving", Duration::from_secs(5)).await;
    assert_eq!(
        app.health_of("supportdesk.v1.TicketService").await,
        "Serving"
    );
}

#[tokio::test]
async fn losing_postgres_flips_health_and_answers_unavailable_fast_then_recovers() {
    let database_url = super::helpers::test_settings("unused").database.url;
    let proxy = TcpProxy::start(socket_address_of(database_url.expose_secret())).await;
    let app = TestApp::spawn_with(|settings| {
        let url = url_through(settings.database.url.expose_secret(), proxy.address);
        settings.database.url = url.into();
    })
    .await;
    app.wait_for_health("Serving", Duration::from_secs(5)).await;
    app.create_ticket("before the outage").await;

    proxy.cut();
    app.wait_for_health("NotServing", Duration::from_secs(5))
        .await;
    assert_eq!(
        app.health_of("supportdesk.v1.TicketService").await,
        "NotServing"
    );
    let started = Instant::now();
    let status = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest::default()))
        .await
        .expect_err("no database");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(error_reason(&status), "DATABASE_UNAVAILABLE");
    assert!(
        super::helpers::details(&status).retry_info().is_some(),
        "UNAVAILABLE says when to retry"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered within the pool's connect timeout, not after {:?}",
        started.elapsed()
    );

    proxy.restore();
    app.wait_for_health("Serving", Duration::from_secs(5)).await;
    app.create_ticket("after the outage").await;
}

#[tokio::test]
async fn losing_redis_flips_health_until_it_returns() {
    let proxy = TcpProxy::start(socket_address_of(&redis_url())).await;
    let app = TestApp::spawn_with(|settings| {
        let url = url_through(settings.redis.url.expose_secret(), proxy.address);
        settings.redis.url = url.into();
    })
    .await;
    app.wait_for_health("Serving", Duration::from_secs(5)).await;

    proxy.cut();
    app.wait_for_health("NotServing", Duration::from_secs(5))
        .await;

    proxy.restore();
    app.wait_for_health("Serving", Duration::from_secs(5)).await;
}
