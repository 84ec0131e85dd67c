//! The SlaPolicyService rows of the RPC fixture table: for each RPC, its contract case (a call
//! through Envoy that succeeds and one that fails as documented) and its tenancy probe (the
//! same call aimed at another account's policy).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{
    DENIED, HIDDEN_OR_DENIED, assert_refused, sla_policies, urgent_policy,
};

const UNKNOWN: &str = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "SlaPolicyService.CreateSlaPolicy",
        case: Some(create_sla_policy_case),
        probe: create_sla_policy_probe,
    },
    RpcFixture {
        rpc: "SlaPolicyService.GetSlaPolicy",
        case: Some(get_sla_policy_case),
        probe: get_sla_policy_probe,
    },
    RpcFixture {
        rpc: "SlaPolicyService.ListSlaPolicies",
        case: Some(list_sla_policies_case),
        probe: list_sla_policies_probe,
    },
    RpcFixture {
        rpc: "SlaPolicyService.UpdateSlaPolicy",
        case: Some(update_sla_policy_case),
        probe: update_sla_policy_probe,
    },
    RpcFixture {
        rpc: "SlaPolicyService.DeleteSlaPolicy",
        case: Some(delete_sla_policy_case),
        probe: delete_sla_policy_probe,
    },
];

/// A calendar-time policy as the REST API takes it, named `name`.
fn policy_json(name: &str) -> Value {
    json!({
        "name": name,
        "filter": "priority = urgent AND tags: vip",
        "targets": [
            {"priority": "TICKET_PRIORITY_URGENT", "metric": "SLA_METRIC_FIRST_REPLY", "minutes": 30},
            {"priority": "TICKET_PRIORITY_URGENT", "metric": "SLA_METRIC_RESOLUTION", "minutes": 480},
        ],
        "warningMinutes": 10,
    })
}

/// A new policy of the harness's account, created through Envoy; its id.
async fn fresh_policy(harness: &Harness) -> String {
    let created = harness
        .send(call(
            Method::POST,
            "/v1/slaPolicies",
            harness.admin(),
            Some(policy_json(&format!("contract {}", uuid::Uuid::now_v7()))),
        ))
        .await
        .json();
    created["id"].as_str().expect("a policy id").to_owned()
}

fn create_sla_policy_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let name = format!("contract {}", uuid::Uuid::now_v7());
        let mut business_without_schedule = policy_json("no schedule");
        business_without_schedule["targets"][0]["businessHours"] = json!(true);
        (
            call(
                Method::POST,
                "/v1/slaPolicies",
                harness.admin(),
                Some(policy_json(&name)),
            ),
            Some("/v1/slaPolicies/".to_owned()),
            call(
                Method::POST,
                "/v1/slaPolicies",
                harness.admin(),
                Some(business_without_schedule),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn create_sla_policy_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        // Measured on the target's schedule: another account's, so not found.
        let result = sla_policies(app)
            .create_sla_policy(attacker.request(v1::CreateSlaPolicyRequest {
                sla_policy: Some(urgent_policy("probe", &target.schedule_id)),
            }))
            .await;
        if foreign {
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
            let own = sla_policies(app)
                .create_sla_policy(attacker.request(v1::CreateSlaPolicyRequest {
                    sla_policy: Some(urgent_policy("probe", "")),
                }))
                .await
                .expect("created in the attacker's account")
                .into_inner();
            let listed = sla_policies(app)
                .list_sla_policies(target.admin.request(v1::ListSlaPoliciesRequest::default()))
                .await
                .unwrap()
                .into_inner();
            assert!(listed.sla_policies.iter().all(|policy| policy.id != own.id));
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn get_sla_policy_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_policy(harness).await;
        (
            call(
                Method::GET,
                format!("/v1/slaPolicies/{id}"),
                Some(&harness.agent.access_token),
                None,
            ),
            None,
            call(
                Method::GET,
                format!("/v1/slaPolicies/{UNKNOWN}"),
                harness.admin(),
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_sla_policy_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = sla_policies(app)
            .get_sla_policy(attacker.request(v1::GetSlaPolicyRequest {
                id: target.sla_policy_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn list_sla_policies_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        (
            call(
                Method::GET,
                "/v1/slaPolicies",
                Some(&harness.agent.access_token),
                None,
            ),
            None,
            call(
                Method::GET,
                "/v1/slaPolicies",
                Some(&harness.customer.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_sla_policies_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = sla_policies(app)
            .list_sla_policies(attacker.request(v1::ListSlaPoliciesRequest::default()))
            .await;
        if foreign {
            let listed = result.expect("the attacker's own policies").into_inner();
            assert!(
                listed
                    .sla_policies
                    .iter()
                    .all(|policy| policy.id != target.sla_policy_id)
            );
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn update_sla_policy_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_policy(harness).await;
        (
            call(
                Method::PATCH,
                format!("/v1/slaPolicies/{id}?updateMask=warningMinutes"),
                harness.admin(),
                Some(json!({"warningMinutes": 20})),
            ),
            None,
            call(
                Method::PATCH,
                format!("/v1/slaPolicies/{id}?updateMask=filter"),
                harness.admin(),
                Some(json!({"filter": "assignee = me"})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn update_sla_policy_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = sla_policies(app)
            .update_sla_policy(attacker.request(v1::UpdateSlaPolicyRequest {
                sla_policy: Some(v1::SlaPolicy {
                    id: target.sla_policy_id.clone(),
                    name: "taken over".to_owned(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".to_owned()],
                }),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn delete_sla_policy_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_policy(harness).await;
        (
            call(
                Method::DELETE,
                format!("/v1/slaPolicies/{id}"),
                harness.admin(),
                None,
            ),
            None,
            call(
                Method::DELETE,
                format!("/v1/slaPolicies/{UNKNOWN}"),
                harness.admin(),
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn delete_sla_policy_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = sla_policies(app)
            .delete_sla_policy(attacker.request(v1::DeleteSlaPolicyRequest {
                id: target.sla_policy_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}
