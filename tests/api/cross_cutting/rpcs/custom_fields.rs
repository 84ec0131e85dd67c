//! The CustomFieldService rows of the RPC fixture table: for each RPC, its contract case (a call
//! through Envoy that succeeds and one that fails as documented) and its tenancy probe (the same
//! call aimed at another account's fields).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{DENIED, HIDDEN_OR_DENIED, assert_refused, custom_fields};

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "CustomFieldService.CreateCustomField",
        case: Some(create_custom_field_case),
        probe: create_custom_field_probe,
    },
    RpcFixture {
        rpc: "CustomFieldService.GetCustomField",
        case: Some(get_custom_field_case),
        probe: get_custom_field_probe,
    },
    RpcFixture {
        rpc: "CustomFieldService.ListCustomFields",
        case: Some(list_custom_fields_case),
        probe: list_custom_fields_probe,
    },
    RpcFixture {
        rpc: "CustomFieldService.UpdateCustomField",
        case: Some(update_custom_field_case),
        probe: update_custom_field_probe,
    },
    RpcFixture {
        rpc: "CustomFieldService.RetireCustomField",
        case: Some(retire_custom_field_case),
        probe: retire_custom_field_probe,
    },
];

const UNKNOWN: &str = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";

fn create_custom_field_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let key = format!("contract_{}", uuid::Uuid::now_v7().simple());
        let key = &key[..40];
        (
            call(
                Method::POST,
                "/v1/customFields",
                admin,
                Some(json!({"key": key, "title": "Plan", "kind": "CUSTOM_FIELD_KIND_TEXT"})),
            ),
            Some("/v1/customFields/".to_owned()),
            call(
                Method::POST,
                "/v1/customFields",
                admin,
                Some(json!({"key": "Plan", "title": "Plan", "kind": "CUSTOM_FIELD_KIND_TEXT"})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn create_custom_field_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = custom_fields(app)
            .create_custom_field(attacker.request(v1::CreateCustomFieldRequest {
                custom_field: Some(v1::CustomField {
                    key: format!("probe_{}", uuid::Uuid::now_v7().simple()),
                    title: "Probe".to_owned(),
                    kind: v1::CustomFieldKind::Text.into(),
                    ..Default::default()
                }),
            }))
            .await;
        if foreign {
            // Defined in the attacker's own account: the target's catalogue does not show it.
            let created = result
                .expect("created in the attacker's account")
                .into_inner();
            let listed = custom_fields(app)
                .list_custom_fields(
                    target
                        .admin
                        .request(v1::ListCustomFieldsRequest { show_retired: true }),
                )
                .await
                .unwrap()
                .into_inner();
            assert!(
                listed
                    .custom_fields
                    .iter()
                    .all(|field| field.id != created.id)
            );
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn get_custom_field_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let id = harness.fresh_custom_field().await;
        (
            call(Method::GET, format!("/v1/customFields/{id}"), admin, None),
            None,
            call(
                Method::GET,
                format!("/v1/customFields/{UNKNOWN}"),
                admin,
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_custom_field_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = custom_fields(app)
            .get_custom_field(attacker.request(v1::GetCustomFieldRequest {
                id: target.custom_field_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn list_custom_fields_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        (
            call(
                Method::GET,
                "/v1/customFields",
                Some(&harness.agent.access_token),
                None,
            ),
            None,
            call(
                Method::GET,
                "/v1/customFields",
                Some(&harness.customer.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_custom_fields_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = custom_fields(app)
            .list_custom_fields(
                attacker.request(v1::ListCustomFieldsRequest { show_retired: true }),
            )
            .await;
        if foreign {
            let listed = result.expect("the attacker's own fields").into_inner();
            assert!(
                listed
                    .custom_fields
                    .iter()
                    .all(|field| field.id != target.custom_field_id)
            );
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn update_custom_field_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let id = harness.fresh_custom_field().await;
        (
            call(
                Method::PATCH,
                format!("/v1/customFields/{id}?updateMask=title"),
                admin,
                Some(json!({"title": "Renamed"})),
            ),
            None,
            call(
                Method::PATCH,
                format!("/v1/customFields/{id}?updateMask=kind"),
                admin,
                Some(json!({"kind": "CUSTOM_FIELD_KIND_INTEGER"})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn update_custom_field_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = custom_fields(app)
            .update_custom_field(attacker.request(v1::UpdateCustomFieldRequest {
                custom_field: Some(v1::CustomField {
                    id: target.custom_field_id.clone(),
                    title: "Stolen".to_owned(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["title".to_owned()],
                }),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn retire_custom_field_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let id = harness.fresh_custom_field().await;
        (
            call(
                Method::POST,
                format!("/v1/customFields/{id}:retire"),
                admin,
                Some(json!({})),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/customFields/{UNKNOWN}:retire"),
                admin,
                Some(json!({})),
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn retire_custom_field_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = custom_fields(app)
            .retire_custom_field(attacker.request(v1::RetireCustomFieldRequest {
                id: target.custom_field_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}
