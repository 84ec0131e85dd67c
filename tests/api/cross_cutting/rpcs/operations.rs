//! The google.longrunning.Operations rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::google::longrunning as lro;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{DENIED, HIDDEN_OR_DENIED, assert_refused, operations};

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "google.longrunning.Operations.GetOperation",
        case: Some(get_operation_case),
        probe: get_operation_probe,
    },
    RpcFixture {
        rpc: "google.longrunning.Operations.ListOperations",
        case: Some(list_operations_case),
        probe: list_operations_probe,
    },
    RpcFixture {
        rpc: "google.longrunning.Operations.CancelOperation",
        case: Some(cancel_operation_case),
        probe: cancel_operation_probe,
    },
    RpcFixture {
        rpc: "google.longrunning.Operations.DeleteOperation",
        case: Some(delete_operation_case),
        probe: delete_operation_probe,
    },
    RpcFixture {
        rpc: "google.longrunning.Operations.WaitOperation",
        case: None,
        probe: wait_operation_probe,
    },
];

fn get_operation_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let name = harness.import(false).await;
        (
            call(Method::GET, format!("/v1/{name}"), admin, None),
            None,
            call(
                Method::GET,
                format!("/v1/operations/{unknown}"),
                admin,
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_operation_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = operations(app)
            .get_operation(attacker.request(lro::GetOperationRequest {
                name: target.operation.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn list_operations_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/operations?pageSize=2", admin, None),
            None,
            call(Method::GET, "/v1/operations?filter=owner%3Dme", admin, None),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn list_operations_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = operations(app)
            .list_operations(attacker.request(lro::ListOperationsRequest::default()))
            .await;
        if foreign {
            let listed = result.expect("their own list").into_inner();
            assert!(
                listed
                    .operations
                    .iter()
                    .all(|operation| operation.name != target.operation),
                "{rpc} listed the target's operation"
            );
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn cancel_operation_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let name = harness.import(false).await;
        (
            call(
                Method::POST,
                format!("/v1/{name}:cancel"),
                admin,
                Some(json!({})),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/operations/{unknown}:cancel"),
                admin,
                Some(json!({})),
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn cancel_operation_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = operations(app)
            .cancel_operation(attacker.request(lro::CancelOperationRequest {
                name: target.operation.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn delete_operation_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let finished = harness.import(true).await;
        let queued = harness.import(false).await;
        (
            call(Method::DELETE, format!("/v1/{finished}"), admin, None),
            None,
            call(Method::DELETE, format!("/v1/{queued}"), admin, None),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn delete_operation_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = operations(app)
            .delete_operation(attacker.request(lro::DeleteOperationRequest {
                name: target.operation.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn wait_operation_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = operations(app)
            .wait_operation(attacker.request(lro::WaitOperationRequest {
                name: target.operation.clone(),
                timeout: None,
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}
