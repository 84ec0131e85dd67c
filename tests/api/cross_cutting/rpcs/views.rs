//! The ViewService rows of the RPC fixture table: for each RPC, its contract case (a call
//! through Envoy that succeeds and one that fails as documented) and its tenancy probe (the
//! same call aimed at another account's view).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{HIDDEN_OR_DENIED, assert_refused, views};

const UNKNOWN: &str = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "ViewService.CreateView",
        case: Some(create_view_case),
        probe: create_view_probe,
    },
    RpcFixture {
        rpc: "ViewService.GetView",
        case: Some(get_view_case),
        probe: get_view_probe,
    },
    RpcFixture {
        rpc: "ViewService.ListViews",
        case: Some(list_views_case),
        probe: list_views_probe,
    },
    RpcFixture {
        rpc: "ViewService.UpdateView",
        case: Some(update_view_case),
        probe: update_view_probe,
    },
    RpcFixture {
        rpc: "ViewService.DeleteView",
        case: Some(delete_view_case),
        probe: delete_view_probe,
    },
    RpcFixture {
        rpc: "ViewService.CountViews",
        case: Some(count_views_case),
        probe: count_views_probe,
    },
];

/// A new account view of the harness's account, created through Envoy; its id.
async fn fresh_view(harness: &Harness) -> String {
    let created = harness
        .send(call(
            Method::POST,
            "/v1/views",
            harness.admin(),
            Some(json!({"name": "contract", "filter": "status = open", "scope": "VIEW_SCOPE_ACCOUNT"})),
        ))
        .await
        .json();
    created["id"].as_str().expect("a view id").to_owned()
}

fn create_view_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        (
            call(
                Method::POST,
                "/v1/views",
                harness.admin(),
                Some(json!({"name": "My open urgent tickets",
                    "filter": "assignee = me AND status = open AND priority = urgent",
                    "scope": "VIEW_SCOPE_PERSONAL"})),
            ),
            Some("/v1/views/".to_owned()),
            call(
                Method::POST,
                "/v1/views",
                Some(&harness.agent.access_token),
                Some(json!({"name": "agents cannot share", "scope": "VIEW_SCOPE_ACCOUNT"})),
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn create_view_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = views(app)
            .create_view(attacker.request(v1::CreateViewRequest {
                view: Some(v1::View {
                    name: "probe".to_owned(),
                    scope: v1::ViewScope::Account.into(),
                    ..Default::default()
                }),
            }))
            .await;
        if foreign {
            // An admin elsewhere makes a view of their own account, never of the target's.
            let created = result
                .expect("created in the attacker's account")
                .into_inner();
            let listed = views(app)
                .list_views(target.admin.request(v1::ListViewsRequest::default()))
                .await
                .unwrap()
                .into_inner();
            assert!(listed.views.iter().all(|view| view.id != created.id));
        } else {
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
    })
}

fn get_view_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_view(harness).await;
        (
            call(
                Method::GET,
                format!("/v1/views/{id}"),
                harness.admin(),
                None,
            ),
            None,
            call(
                Method::GET,
                format!("/v1/views/{UNKNOWN}"),
                harness.admin(),
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_view_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let id = target.view_id.clone();
        let result = views(app)
            .get_view(attacker.request(v1::GetViewRequest { id }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn list_views_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        (
            call(
                Method::GET,
                "/v1/views",
                Some(&harness.agent.access_token),
                None,
            ),
            None,
            call(
                Method::GET,
                "/v1/views",
                Some(&harness.customer.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_views_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let id = target.view_id.clone();
        let foreign = attacker.account_id != target.admin.account_id;
        let result = views(app)
            .list_views(attacker.request(v1::ListViewsRequest::default()))
            .await;
        if foreign {
            let listed = result.expect("the attacker's own views").into_inner();
            assert!(listed.views.iter().all(|view| view.id != id));
        } else {
            assert_refused(rpc, result, HIDDEN_OR_DENIED);
        }
    })
}

fn update_view_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_view(harness).await;
        (
            call(
                Method::PATCH,
                format!("/v1/views/{id}?updateMask=name"),
                harness.admin(),
                Some(json!({"name": "renamed"})),
            ),
            None,
            call(
                Method::PATCH,
                format!("/v1/views/{id}?updateMask=scope"),
                harness.admin(),
                Some(json!({"name": "renamed"})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn update_view_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let id = target.view_id.clone();
        let result = views(app)
            .update_view(attacker.request(v1::UpdateViewRequest {
                view: Some(v1::View {
                    id,
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

fn delete_view_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_view(harness).await;
        (
            call(
                Method::DELETE,
                format!("/v1/views/{id}"),
                harness.admin(),
                None,
            ),
            None,
            call(
                Method::DELETE,
                format!("/v1/views/{UNKNOWN}"),
                harness.admin(),
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn delete_view_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let id = target.view_id.clone();
        let result = views(app)
            .delete_view(attacker.request(v1::DeleteViewRequest { id }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn count_views_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_view(harness).await;
        (
            call(
                Method::GET,
                format!("/v1/views:count?viewIds={id}"),
                Some(&harness.agent.access_token),
                None,
            ),
            None,
            call(
                Method::GET,
                format!("/v1/views:count?viewIds={UNKNOWN}"),
                harness.admin(),
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn count_views_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let id = target.view_id.clone();
        let result = views(app)
            .count_views(attacker.request(v1::CountViewsRequest { view_ids: vec![id] }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}
