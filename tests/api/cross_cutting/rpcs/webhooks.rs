//! The WebhookService rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::v1;
use tonic::Code;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call, webhook_delivery, webhook_event};
use crate::cross_cutting::tenancy::{DENIED, HIDDEN_OR_DENIED, assert_refused};
use crate::support::TEST_WEBHOOK_SECRET;

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "WebhookService.ReceivePaymentEvent",
        case: Some(receive_payment_event_case),
        probe: receive_payment_event_probe,
    },
    RpcFixture {
        rpc: "WebhookService.ListWebhookEvents",
        case: Some(list_webhook_events_case),
        probe: list_webhook_events_probe,
    },
    RpcFixture {
        rpc: "WebhookService.GetWebhookEvent",
        case: Some(get_webhook_event_case),
        probe: get_webhook_event_probe,
    },
    RpcFixture {
        rpc: "WebhookService.RedriveWebhookEvent",
        case: Some(redrive_webhook_event_case),
        probe: redrive_webhook_event_probe,
    },
];

fn receive_payment_event_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let (_, event) = webhook_event(&harness.new_charge().await);
        (
            webhook_delivery(event.clone(), TEST_WEBHOOK_SECRET),
            None,
            webhook_delivery(event, "whsec_not_the_endpoint_secret_0123"),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn receive_payment_event_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app, rpc, target, ..
        } = attack;
        // Public, and answerable only with the endpoint's secret: the attacker replays the
        // target's event with a signature of their own making.
        let (_, body) = &target.webhook_event;
        let forged = crate::webhooks::receiving::signed(
            body,
            &["whsec_attacker_made_this_0123456789"],
            chrono::Utc::now().timestamp(),
        );
        let mut request = tonic::Request::new(v1::ReceivePaymentEventRequest {
            http_body: Some(supportdesk::wire::proto::google::api::HttpBody {
                content_type: "application/json".to_owned(),
                data: body.clone(),
                extensions: Vec::new(),
            }),
        });
        request
            .metadata_mut()
            .insert("stripe-signature", forged.parse().expect("ascii"));
        let result = app.webhooks.clone().receive_payment_event(request).await;
        assert_refused(rpc, result, &[Code::InvalidArgument]);
    })
}

fn list_webhook_events_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(
                Method::GET,
                "/v1/webhook-events?state=WEBHOOK_EVENT_STATE_RECEIVED",
                admin,
                None,
            ),
            None,
            call(
                Method::GET,
                "/v1/webhook-events?state=WEBHOOK_EVENT_STATE_RECEIVED",
                Some(&harness.agent.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_webhook_events_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = app
            .webhooks
            .clone()
            .list_webhook_events(attacker.request(v1::ListWebhookEventsRequest {
                state: v1::WebhookEventState::Dead.into(),
                ..Default::default()
            }))
            .await;
        if foreign {
            let listed = result.expect("their own list").into_inner();
            assert!(listed.events.is_empty(), "{rpc}: {listed:?}");
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn get_webhook_event_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let id = harness.stored_webhook_event(false).await;
        (
            call(Method::GET, format!("/v1/webhook-events/{id}"), admin, None),
            None,
            call(Method::GET, "/v1/webhook-events/evt_unknown", admin, None),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_webhook_event_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .webhooks
            .clone()
            .get_webhook_event(attacker.request(v1::GetWebhookEventRequest {
                id: target.webhook_event.0.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn redrive_webhook_event_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let dead = harness.stored_webhook_event(true).await;
        let processed = harness.stored_webhook_event(false).await;
        crate::webhooks::admin::make_processed(&harness.app, &processed).await;
        (
            call(
                Method::POST,
                format!("/v1/webhook-events/{dead}:redrive"),
                admin,
                Some(json!({})),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/webhook-events/{processed}:redrive"),
                admin,
                Some(json!({})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn redrive_webhook_event_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .webhooks
            .clone()
            .redrive_webhook_event(attacker.request(v1::RedriveWebhookEventRequest {
                id: target.webhook_event.0.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}
