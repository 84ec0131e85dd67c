//! The GroupService rows of the RPC fixture table: for each RPC, its contract case (a call
//! through Envoy that succeeds and one that fails as documented) and its tenancy probe (the
//! same call aimed at another account's group).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{DENIED, HIDDEN_OR_DENIED, assert_refused, groups};

const UNKNOWN: &str = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "GroupService.CreateGroup",
        case: Some(create_group_case),
        probe: create_group_probe,
    },
    RpcFixture {
        rpc: "GroupService.GetGroup",
        case: Some(get_group_case),
        probe: get_group_probe,
    },
    RpcFixture {
        rpc: "GroupService.ListGroups",
        case: Some(list_groups_case),
        probe: list_groups_probe,
    },
    RpcFixture {
        rpc: "GroupService.UpdateGroup",
        case: Some(update_group_case),
        probe: update_group_probe,
    },
    RpcFixture {
        rpc: "GroupService.DeleteGroup",
        case: Some(delete_group_case),
        probe: delete_group_probe,
    },
    RpcFixture {
        rpc: "GroupService.AddGroupMember",
        case: Some(add_group_member_case),
        probe: add_group_member_probe,
    },
    RpcFixture {
        rpc: "GroupService.RemoveGroupMember",
        case: Some(remove_group_member_case),
        probe: remove_group_member_probe,
    },
    RpcFixture {
        rpc: "GroupService.ListGroupMembers",
        case: Some(list_group_members_case),
        probe: list_group_members_probe,
    },
];

/// A new group of the harness's account, created through Envoy; its id.
async fn fresh_group(harness: &Harness) -> String {
    let created = harness
        .send(call(
            Method::POST,
            "/v1/groups",
            harness.admin(),
            Some(json!({"name": format!("contract {}", uuid::Uuid::now_v7())})),
        ))
        .await
        .json();
    created["id"].as_str().expect("a group id").to_owned()
}

fn create_group_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let name = format!("contract {}", uuid::Uuid::now_v7());
        (
            call(
                Method::POST,
                "/v1/groups",
                harness.admin(),
                Some(json!({"name": name, "description": "made by the contract"})),
            ),
            Some("/v1/groups/".to_owned()),
            call(
                Method::POST,
                "/v1/groups",
                Some(&harness.agent.access_token),
                Some(json!({"name": "agents cannot"})),
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn create_group_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = groups(app)
            .create_group(attacker.request(v1::CreateGroupRequest {
                group: Some(v1::Group {
                    name: "probe".to_owned(),
                    ..Default::default()
                }),
            }))
            .await;
        if foreign {
            // An admin elsewhere makes a group of their own account, never of the target's.
            let created = result
                .expect("created in the attacker's account")
                .into_inner();
            let listed = groups(app)
                .list_groups(target.admin.request(v1::ListGroupsRequest::default()))
                .await
                .unwrap()
                .into_inner();
            assert!(listed.groups.iter().all(|group| group.id != created.id));
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn get_group_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_group(harness).await;
        (
            call(
                Method::GET,
                format!("/v1/groups/{id}"),
                harness.admin(),
                None,
            ),
            None,
            call(
                Method::GET,
                format!("/v1/groups/{UNKNOWN}"),
                harness.admin(),
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_group_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = groups(app)
            .get_group(attacker.request(v1::GetGroupRequest {
                id: target.group_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn list_groups_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        (
            call(
                Method::GET,
                "/v1/groups",
                Some(&harness.agent.access_token),
                None,
            ),
            None,
            call(
                Method::GET,
                "/v1/groups",
                Some(&harness.customer.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_groups_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        for user_id in [String::new(), target.agent.id.to_string()] {
            let result = groups(app)
                .list_groups(attacker.request(v1::ListGroupsRequest {
                    user_id,
                    ..Default::default()
                }))
                .await;
            if foreign {
                let listed = result.expect("the attacker's own groups").into_inner();
                assert!(
                    listed
                        .groups
                        .iter()
                        .all(|group| group.id != target.group_id)
                );
            } else {
                assert_refused(rpc, result, DENIED);
            }
        }
    })
}

fn update_group_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_group(harness).await;
        (
            call(
                Method::PATCH,
                format!("/v1/groups/{id}?updateMask=description"),
                harness.admin(),
                Some(json!({"description": "renamed"})),
            ),
            None,
            call(
                Method::PATCH,
                format!("/v1/groups/{id}?updateMask=memberCount"),
                harness.admin(),
                Some(json!({"description": "renamed"})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn update_group_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = groups(app)
            .update_group(attacker.request(v1::UpdateGroupRequest {
                group: Some(v1::Group {
                    id: target.group_id.clone(),
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

fn delete_group_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_group(harness).await;
        (
            call(
                Method::DELETE,
                format!("/v1/groups/{id}"),
                harness.admin(),
                None,
            ),
            None,
            call(
                Method::DELETE,
                format!("/v1/groups/{UNKNOWN}"),
                harness.admin(),
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn delete_group_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = groups(app)
            .delete_group(attacker.request(v1::DeleteGroupRequest {
                id: target.group_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn add_group_member_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_group(harness).await;
        (
            call(
                Method::POST,
                format!("/v1/groups/{id}/members"),
                harness.admin(),
                Some(json!({"userId": harness.agent.id.to_string()})),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/groups/{id}/members"),
                harness.admin(),
                Some(json!({"userId": harness.customer.id.to_string()})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn add_group_member_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        // The attacker joining the target's group: the group is another account's.
        let result = groups(app)
            .add_group_member(attacker.request(v1::AddGroupMemberRequest {
                group_id: target.group_id.clone(),
                user_id: attacker.id.to_string(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn remove_group_member_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_group(harness).await;
        let agent = harness.agent.id.to_string();
        harness
            .send(call(
                Method::POST,
                format!("/v1/groups/{id}/members"),
                harness.admin(),
                Some(json!({"userId": agent})),
            ))
            .await;
        (
            call(
                Method::DELETE,
                format!("/v1/groups/{id}/members/{agent}"),
                harness.admin(),
                None,
            ),
            None,
            call(
                Method::DELETE,
                format!("/v1/groups/{id}/members/{UNKNOWN}"),
                harness.admin(),
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn remove_group_member_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = groups(app)
            .remove_group_member(attacker.request(v1::RemoveGroupMemberRequest {
                group_id: target.group_id.clone(),
                user_id: target.agent.id.to_string(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn list_group_members_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_group(harness).await;
        (
            call(
                Method::GET,
                format!("/v1/groups/{id}/members"),
                Some(&harness.agent.access_token),
                None,
            ),
            None,
            call(
                Method::GET,
                format!("/v1/groups/{UNKNOWN}/members"),
                harness.admin(),
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn list_group_members_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = groups(app)
            .list_group_members(attacker.request(v1::ListGroupMembersRequest {
                group_id: target.group_id.clone(),
                ..Default::default()
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}
