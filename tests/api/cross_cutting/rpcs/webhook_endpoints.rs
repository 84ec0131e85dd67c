//! The WebhookEndpointService rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{DENIED, HIDDEN_OR_DENIED, assert_refused, endpoints};
use crate::support::keyed;

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "WebhookEndpointService.CreateWebhookEndpoint",
        case: Some(create_webhook_endpoint_case),
        probe: create_webhook_endpoint_probe,
    },
    RpcFixture {
        rpc: "WebhookEndpointService.GetWebhookEndpoint",
        case: Some(get_webhook_endpoint_case),
        probe: get_webhook_endpoint_probe,
    },
    RpcFixture {
        rpc: "WebhookEndpointService.ListWebhookEndpoints",
        case: Some(list_webhook_endpoints_case),
        probe: list_webhook_endpoints_probe,
    },
    RpcFixture {
        rpc: "WebhookEndpointService.UpdateWebhookEndpoint",
        case: Some(update_webhook_endpoint_case),
        probe: update_webhook_endpoint_probe,
    },
    RpcFixture {
        rpc: "WebhookEndpointService.DeleteWebhookEndpoint",
        case: Some(delete_webhook_endpoint_case),
        probe: delete_webhook_endpoint_probe,
    },
    RpcFixture {
        rpc: "WebhookEndpointService.RotateWebhookEndpointSecret",
        case: Some(rotate_webhook_endpoint_secret_case),
        probe: rotate_webhook_endpoint_secret_probe,
    },
    RpcFixture {
        rpc: "WebhookEndpointService.SendTestWebhookEvent",
        case: Some(send_test_webhook_event_case),
        probe: send_test_webhook_event_probe,
    },
    RpcFixture {
        rpc: "WebhookEndpointService.ListWebhookDeliveries",
        case: Some(list_webhook_deliveries_case),
        probe: list_webhook_deliveries_probe,
    },
    RpcFixture {
        rpc: "WebhookEndpointService.RedriveWebhookDelivery",
        case: Some(redrive_webhook_delivery_case),
        probe: redrive_webhook_delivery_probe,
    },
    RpcFixture {
        rpc: "WebhookEndpointService.RedriveFailedWebhookDeliveries",
        case: Some(redrive_failed_webhook_deliveries_case),
        probe: redrive_failed_webhook_deliveries_probe,
    },
];

fn create_webhook_endpoint_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(
                Method::POST,
                "/v1/webhookEndpoints",
                admin,
                Some(json!({"url": "https://hooks.example.com/contract"})),
            ),
            Some("/v1/webhookEndpoints/".to_owned()),
            call(
                Method::POST,
                "/v1/webhookEndpoints",
                admin,
                Some(json!({"url": "http://hooks.example.com/contract"})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn create_webhook_endpoint_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = endpoints(app)
            .create_webhook_endpoint(keyed(attacker.request(v1::CreateWebhookEndpointRequest {
                webhook_endpoint: Some(v1::WebhookEndpoint {
                    url: "https://attacker.example.com/hook".to_owned(),
                    ..Default::default()
                }),
            })))
            .await;
        if foreign {
            // Registered in the attacker's own account: the target's events never reach it
            // (outbound_webhooks::an_endpoint_is_sent_only_..._never_another_accounts_events).
            let created = result
                .expect("created in the attacker's account")
                .into_inner();
            let listed = endpoints(app)
                .list_webhook_endpoints(
                    target
                        .admin
                        .request(v1::ListWebhookEndpointsRequest::default()),
                )
                .await
                .unwrap()
                .into_inner();
            assert!(
                listed.webhook_endpoints.iter().all(|endpoint| {
                    endpoint.id != created.webhook_endpoint.as_ref().unwrap().id
                })
            );
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn get_webhook_endpoint_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = harness.new_endpoint().await;
        (
            call(
                Method::GET,
                format!("/v1/webhookEndpoints/{id}"),
                admin,
                None,
            ),
            None,
            call(
                Method::GET,
                format!("/v1/webhookEndpoints/{unknown}"),
                admin,
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_webhook_endpoint_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = endpoints(app)
            .get_webhook_endpoint(attacker.request(v1::GetWebhookEndpointRequest {
                id: target.endpoint_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn list_webhook_endpoints_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/webhookEndpoints", admin, None),
            None,
            call(
                Method::GET,
                "/v1/webhookEndpoints",
                Some(&harness.agent.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_webhook_endpoints_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = endpoints(app)
            .list_webhook_endpoints(attacker.request(v1::ListWebhookEndpointsRequest::default()))
            .await;
        if foreign {
            let listed = result.expect("the attacker's own endpoints").into_inner();
            assert!(
                listed
                    .webhook_endpoints
                    .iter()
                    .all(|endpoint| endpoint.id != target.endpoint_id)
            );
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn update_webhook_endpoint_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let id = harness.new_endpoint().await;
        (
            call(
                Method::PATCH,
                format!("/v1/webhookEndpoints/{id}?updateMask=description"),
                admin,
                Some(json!({"description": "renamed"})),
            ),
            None,
            call(
                Method::PATCH,
                format!("/v1/webhookEndpoints/{id}?updateMask=secret"),
                admin,
                Some(json!({"description": "renamed"})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn update_webhook_endpoint_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = endpoints(app)
            .update_webhook_endpoint(attacker.request(v1::UpdateWebhookEndpointRequest {
                webhook_endpoint: Some(v1::WebhookEndpoint {
                    id: target.endpoint_id.clone(),
                    url: "https://attacker.example.com/stolen".to_owned(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["url".to_owned()],
                }),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn delete_webhook_endpoint_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = harness.fresh_endpoint().await;
        (
            call(
                Method::DELETE,
                format!("/v1/webhookEndpoints/{id}"),
                admin,
                None,
            ),
            None,
            call(
                Method::DELETE,
                format!("/v1/webhookEndpoints/{unknown}"),
                admin,
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn delete_webhook_endpoint_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = endpoints(app)
            .delete_webhook_endpoint(attacker.request(v1::DeleteWebhookEndpointRequest {
                id: target.endpoint_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn rotate_webhook_endpoint_secret_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = harness.new_endpoint().await;
        (
            call(
                Method::POST,
                format!("/v1/webhookEndpoints/{id}:rotateSecret"),
                admin,
                Some(json!({})),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/webhookEndpoints/{unknown}:rotateSecret"),
                admin,
                Some(json!({})),
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn rotate_webhook_endpoint_secret_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = endpoints(app)
            .rotate_webhook_endpoint_secret(keyed(attacker.request(
                v1::RotateWebhookEndpointSecretRequest {
                    id: target.endpoint_id.clone(),
                },
            )))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn send_test_webhook_event_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = harness.new_endpoint().await;
        (
            call(
                Method::POST,
                format!("/v1/webhookEndpoints/{id}:sendTestEvent"),
                admin,
                Some(json!({})),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/webhookEndpoints/{unknown}:sendTestEvent"),
                admin,
                Some(json!({})),
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn send_test_webhook_event_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = endpoints(app)
            .send_test_webhook_event(attacker.request(v1::SendTestWebhookEventRequest {
                id: target.endpoint_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn list_webhook_deliveries_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = harness.new_endpoint().await;
        (
            call(
                Method::GET,
                format!("/v1/webhookEndpoints/{id}/deliveries"),
                admin,
                None,
            ),
            None,
            call(
                Method::GET,
                format!("/v1/webhookEndpoints/{unknown}/deliveries"),
                admin,
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn list_webhook_deliveries_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = endpoints(app)
            .list_webhook_deliveries(attacker.request(v1::ListWebhookDeliveriesRequest {
                endpoint_id: target.endpoint_id.clone(),
                ..Default::default()
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn redrive_webhook_delivery_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = harness.new_endpoint().await;
        let delivery = harness
            .send(call(
                Method::POST,
                format!("/v1/webhookEndpoints/{id}:sendTestEvent"),
                admin,
                Some(json!({})),
            ))
            .await
            .json();
        let delivery = delivery["id"].as_str().expect("a delivery id").to_owned();
        (
            call(
                Method::POST,
                format!("/v1/webhookEndpoints/{id}/deliveries/{delivery}:redrive"),
                admin,
                Some(json!({})),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/webhookEndpoints/{id}/deliveries/{unknown}:redrive"),
                admin,
                Some(json!({})),
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn redrive_webhook_delivery_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = endpoints(app)
            .redrive_webhook_delivery(attacker.request(v1::RedriveWebhookDeliveryRequest {
                endpoint_id: target.endpoint_id.clone(),
                id: target.delivery_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn redrive_failed_webhook_deliveries_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let id = harness.new_endpoint().await;
        (
            call(
                Method::POST,
                format!("/v1/webhookEndpoints/{id}:redriveFailed"),
                admin,
                Some(json!({"since": "2026-01-01T00:00:00Z"})),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/webhookEndpoints/{id}:redriveFailed"),
                admin,
                Some(json!({})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn redrive_failed_webhook_deliveries_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = endpoints(app)
            .redrive_failed_webhook_deliveries(attacker.request(
                v1::RedriveFailedWebhookDeliveriesRequest {
                    endpoint_id: target.endpoint_id.clone(),
                    since: Some(prost_types::Timestamp::default()),
                },
            ))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}
