//! The health name liveness probes ask (`supportdesk::telemetry::health::LIVENESS_SERVICE`): SERVING
//! while the process answers, whatever PostgreSQL and Redis do, so a dependency outage (which
//! makes every instance NOT_SERVING at once) restarts no pod.

use secrecy::ExposeSecret;
use supportdesk::telemetry::health::LIVENESS_SERVICE;

use crate::support::proxy::{TcpProxy, socket_address_of, url_through};
use crate::support::{PATIENCE, TestApp, redis_url};

#[tokio::test]
async fn liveness_stays_serving_while_postgres_and_redis_are_both_down() {
    let database_url = crate::support::test_settings("unused").database.url;
    let postgres = TcpProxy::start(socket_address_of(database_url.expose_secret())).await;
    let redis = TcpProxy::start(socket_address_of(&redis_url())).await;
    let app = TestApp::spawn_with(|settings| {
        settings.database.url =
            url_through(settings.database.url.expose_secret(), postgres.address).into();
        settings.redis.url = url_through(settings.redis.url.expose_secret(), redis.address).into();
    })
    .await;
    app.wait_for_health("Serving", PATIENCE).await;
    assert_eq!(app.health_of(LIVENESS_SERVICE).await, "Serving");

    postgres.cut();
    redis.cut();
    app.wait_for_health("NotServing", PATIENCE).await;
    assert_eq!(
        app.health_of("supportdesk.v1.TicketService").await,
        "NotServing",
        "readiness follows the dependencies"
    );
    assert_eq!(
        app.health_of(LIVENESS_SERVICE).await,
        "Serving",
        "liveness does not"
    );

    postgres.restore();
    redis.restore();
    app.wait_for_health("Serving", PATIENCE).await;
    assert_eq!(app.health_of(LIVENESS_SERVICE).await, "Serving");
}
