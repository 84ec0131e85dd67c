//! The ApiKeyService rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{DENIED, HIDDEN_OR_DENIED, assert_refused};
use crate::support::keyed;

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "ApiKeyService.CreateApiKey",
        case: Some(create_api_key_case),
        probe: create_api_key_probe,
    },
    RpcFixture {
        rpc: "ApiKeyService.ListApiKeys",
        case: Some(list_api_keys_case),
        probe: list_api_keys_probe,
    },
    RpcFixture {
        rpc: "ApiKeyService.RevokeApiKey",
        case: Some(revoke_api_key_case),
        probe: revoke_api_key_probe,
    },
];

fn create_api_key_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let body = json!({"name": "contract", "roles": ["USER_ROLE_AGENT"]});
        (
            call(Method::POST, "/v1/apiKeys", admin, Some(body.clone())),
            Some("/v1/apiKeys".to_owned()),
            call(
                Method::POST,
                "/v1/apiKeys",
                Some(&harness.agent.access_token),
                Some(body),
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn create_api_key_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = app
            .api_keys
            .clone()
            .create_api_key(keyed(attacker.request(v1::CreateApiKeyRequest {
                api_key: Some(v1::ApiKey {
                    name: "probe".to_owned(),
                    roles: vec![v1::UserRole::Admin.into()],
                    ..Default::default()
                }),
            })))
            .await;
        if foreign {
            // An admin elsewhere makes a key of their own account, never of the target's.
            let created = result
                .expect("created in the attacker's account")
                .into_inner();
            let listed = app
                .api_keys
                .clone()
                .list_api_keys(target.admin.request(v1::ListApiKeysRequest::default()))
                .await
                .unwrap()
                .into_inner();
            assert!(
                listed
                    .api_keys
                    .iter()
                    .all(|key| key.id != created.api_key.as_ref().unwrap().id)
            );
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn list_api_keys_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/apiKeys", admin, None),
            None,
            call(
                Method::GET,
                "/v1/apiKeys",
                Some(&harness.agent.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_api_keys_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = app
            .api_keys
            .clone()
            .list_api_keys(attacker.request(v1::ListApiKeysRequest::default()))
            .await;
        if foreign {
            let keys = result
                .expect("the attacker's own keys")
                .into_inner()
                .api_keys;
            assert!(keys.iter().all(|key| key.id != target.api_key_id));
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn revoke_api_key_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let created = harness
            .send(call(
                Method::POST,
                "/v1/apiKeys",
                admin,
                Some(json!({"name": "to revoke", "roles": ["USER_ROLE_AGENT"]})),
            ))
            .await
            .json();
        let id = created["apiKey"]["id"].as_str().expect("key id").to_owned();
        (
            call(
                Method::POST,
                format!("/v1/apiKeys/{id}:revoke"),
                admin,
                Some(json!({})),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/apiKeys/{unknown}:revoke"),
                admin,
                Some(json!({})),
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn revoke_api_key_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .api_keys
            .clone()
            .revoke_api_key(attacker.request(v1::RevokeApiKeyRequest {
                id: target.api_key_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}
