//! The UserService rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{DENIED, HIDDEN_OR_DENIED, assert_refused};
use crate::support::TEST_PASSWORD;

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "UserService.CreateUser",
        case: Some(create_user_case),
        probe: create_user_probe,
    },
    RpcFixture {
        rpc: "UserService.GetUser",
        case: Some(get_user_case),
        probe: get_user_probe,
    },
    RpcFixture {
        rpc: "UserService.ListUsers",
        case: Some(list_users_case),
        probe: list_users_probe,
    },
    RpcFixture {
        rpc: "UserService.UpdateUser",
        case: Some(update_user_case),
        probe: update_user_probe,
    },
    RpcFixture {
        rpc: "UserService.GetCurrentUser",
        case: Some(get_current_user_case),
        probe: get_current_user_probe,
    },
];

fn create_user_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let body = |email: &str| json!({"user": {"email": email, "role": "USER_ROLE_AGENT"}, "password": TEST_PASSWORD});
        let email = format!("{}@contract.example", uuid::Uuid::now_v7().simple());
        (
            call(Method::POST, "/v1/users", admin, Some(body(&email))),
            Some("/v1/users/".to_owned()),
            call(
                Method::POST,
                "/v1/users",
                admin,
                Some(body(&harness.agent.email)),
            ),
            StatusCode::CONFLICT,
        )
    })
}

fn create_user_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = app
            .users
            .clone()
            .create_user(attacker.request(v1::CreateUserRequest {
                user: Some(v1::User {
                    email: target.agent.email.clone(),
                    role: v1::UserRole::Admin.into(),
                    ..Default::default()
                }),
                password: TEST_PASSWORD.to_owned(),
            }))
            .await;
        if foreign {
            let created = result
                .expect("created in the attacker's account")
                .into_inner();
            assert_eq!(created.account_id, attacker.account_id.to_string());
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn get_user_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        (
            call(
                Method::GET,
                format!("/v1/users/{}", harness.agent.id),
                admin,
                None,
            ),
            None,
            call(Method::GET, format!("/v1/users/{unknown}"), admin, None),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_user_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let agent_id = target.agent.id.to_string();
        let result = app
            .users
            .clone()
            .get_user(attacker.request(v1::GetUserRequest { id: agent_id }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn list_users_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/users", admin, None),
            None,
            call(
                Method::GET,
                "/v1/users",
                Some(&harness.customer.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_users_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = app
            .users
            .clone()
            .list_users(attacker.request(v1::ListUsersRequest {
                page_size: 100,
                page_token: String::new(),
            }))
            .await;
        if foreign {
            let users = result.expect("the attacker's own users").into_inner().users;
            assert!(
                users
                    .iter()
                    .all(|user| user.account_id == attacker.account_id.to_string())
            );
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn update_user_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(
                Method::PATCH,
                format!("/v1/users/{}?updateMask=displayName", harness.agent.id),
                admin,
                Some(json!({"displayName": "Renamed"})),
            ),
            None,
            call(
                Method::PATCH,
                format!("/v1/users/{}?updateMask=role", harness.app.admin.id),
                admin,
                Some(json!({"role": "USER_ROLE_AGENT"})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn update_user_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let agent_id = target.agent.id.to_string();
        let result = app
            .users
            .clone()
            .update_user(attacker.request(v1::UpdateUserRequest {
                user: Some(v1::User {
                    id: agent_id,
                    role: v1::UserRole::Customer.into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["role".to_owned()],
                }),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn get_current_user_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/me", admin, None),
            None,
            call(Method::GET, "/v1/me", Some(&harness.api_key), None),
            StatusCode::FORBIDDEN,
        )
    })
}

fn get_current_user_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack { app, attacker, .. } = attack;
        let me = app
            .users
            .clone()
            .get_current_user(attacker.request(v1::GetCurrentUserRequest {}))
            .await
            .expect("the attacker themselves")
            .into_inner();
        assert_eq!(me.id, attacker.id.to_string());
    })
}
