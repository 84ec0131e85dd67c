//! The EventService rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{DENIED, assert_refused};

pub(super) const FIXTURES: &[RpcFixture] = &[RpcFixture {
    rpc: "EventService.WatchEvents",
    case: Some(watch_events_case),
    probe: watch_events_probe,
}];

fn watch_events_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        harness.new_ticket().await;
        (
            call(
                Method::GET,
                "/v1/events:watch?cursor=0.0&endWhenCaughtUp=true",
                admin,
                None,
            ),
            None,
            call(
                Method::GET,
                "/v1/events:watch?cursor=yesterday",
                admin,
                None,
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn watch_events_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        // The attacker's stream carries the attacker's account's events only: the target's
        // changes made meanwhile never appear on it.
        let result = v1::event_service_client::EventServiceClient::new(
            tonic::transport::Channel::from_shared(format!("http://{}", app.address))
                .unwrap()
                .connect_lazy(),
        )
        .watch_events(attacker.request(v1::WatchEventsRequest {
            cursor: "0.0".to_owned(),
            ..Default::default()
        }))
        .await;
        if foreign {
            let mut stream = result.expect("the attacker's own stream").into_inner();
            let target_account = target.admin.account_id.to_string();
            // Everything of the attacker's account since the beginning, then a heartbeat
            // or the end of the patience: none of it the target's.
            while let Ok(Ok(Some(message))) =
                tokio::time::timeout(std::time::Duration::from_millis(500), stream.message()).await
            {
                let Some(event) = message.event else { break };
                assert_ne!(event.account_id, target_account, "{rpc}: {event:?}");
            }
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}
