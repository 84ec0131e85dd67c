//! Draining that Envoy and clients can see (docs/deployment.md, "Draining"): on SIGTERM an
//! instance says NOT_SERVING at once, goes on serving for `SHUTDOWN_DELAY_MS` while Envoy's
//! health checks notice (a third of the delay apart, two failures), and only then stops
//! listening; its liveness name answers SERVING to the end.

use std::time::{Duration, Instant};

use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;

use crate::support::fleet::{DRAIN_DELAY, Fleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_instance_is_left_by_envoy_before_it_stops_listening() {
    let mut fleet = Fleet::start(2, 2, None).await;
    let ticket = TicketServiceClient::new(fleet.direct_channel(0).await)
        .create_ticket(
            fleet
                .admin()
                .request(crate::support::valid_create_request("drained")),
        )
        .await
        .expect("a ticket")
        .into_inner();
    let address = format!("127.0.0.1:{}", fleet.ports[0]);
    let pid = fleet.pid(0);

    let signalled = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());

    // NOT_SERVING at once: well within one health-check interval (a third of the delay).
    while fleet.health_of(0, "").await.as_deref() != Some("NotServing") {
        assert!(
            signalled.elapsed() < DRAIN_DELAY / 3,
            "still not NOT_SERVING {:?} after SIGTERM",
            signalled.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        fleet.health_of(0, "liveness").await.as_deref(),
        Some("Serving")
    );

    // Envoy leaves it while it still listens and answers, on new connections too.
    fleet
        .envoy
        .wait_for_instance(fleet.ports[0], false, DRAIN_DELAY)
        .await;
    let left = signalled.elapsed();
    let answered = TicketServiceClient::new(fleet.direct_channel(0).await)
        .get_ticket(fleet.admin().request(v1::GetTicketRequest {
            id: ticket.id.clone(),
            read_mask: None,
        }))
        .await;
    assert!(
        answered.is_ok() && signalled.elapsed() < DRAIN_DELAY,
        "a new connection is still served before the delay ends: {answered:?}"
    );

    // Then the listener closes: a new connection is refused (a client tries another address).
    let deadline = Instant::now() + DRAIN_DELAY * 4;
    while tokio::net::TcpStream::connect(&address).await.is_ok() {
        assert!(Instant::now() < deadline, "the listener never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = signalled.elapsed();
    assert!(
        left < closed && closed >= DRAIN_DELAY,
        "Envoy left it after {left:?}, the listener closed after {closed:?}, the delay is \
         {DRAIN_DELAY:?}"
    );
    fleet.wait_for_exit(0).await;
}
