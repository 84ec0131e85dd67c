//! The AccountService rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::support::TEST_PASSWORD;

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "AccountService.CreateAccount",
        case: Some(create_account_case),
        probe: create_account_probe,
    },
    RpcFixture {
        rpc: "AccountService.GetAccount",
        case: Some(get_account_case),
        probe: get_account_probe,
    },
];

fn create_account_case(_harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let slug = format!("contract-{}", uuid::Uuid::now_v7().simple());
        let body = |slug: &str| {
            json!({"name": "Contract", "slug": slug, "adminEmail": "c@contract.example",
                   "adminPassword": TEST_PASSWORD})
        };
        (
            call(Method::POST, "/v1/accounts", None, Some(body(&slug))),
            Some("/v1/account".to_owned()),
            call(Method::POST, "/v1/accounts", None, Some(body("Not A Slug"))),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn create_account_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack { app, target, .. } = attack;
        // Public: it creates a new account and touches no other.
        let created = app
            .accounts
            .clone()
            .create_account(v1::CreateAccountRequest {
                name: "Another".to_owned(),
                slug: format!("probe-{}", uuid::Uuid::now_v7().simple()),
                admin_email: target.admin.email.clone(),
                admin_password: TEST_PASSWORD.to_owned(),
                admin_display_name: String::new(),
            })
            .await
            .expect("signing up is open")
            .into_inner();
        assert_ne!(
            created.account.unwrap().id,
            target.admin.account_id.to_string()
        );
    })
}

fn get_account_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/account", admin, None),
            None,
            call(Method::GET, "/v1/account", None, None),
            StatusCode::UNAUTHORIZED,
        )
    })
}

fn get_account_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack { app, attacker, .. } = attack;
        let account = app
            .accounts
            .clone()
            .get_account(attacker.request(v1::GetAccountRequest {}))
            .await
            .expect("the caller's own account")
            .into_inner();
        assert_eq!(account.id, attacker.account_id.to_string());
    })
}
