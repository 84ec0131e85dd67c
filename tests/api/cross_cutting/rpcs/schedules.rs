//! The ScheduleService rows of the RPC fixture table: for each RPC, its contract case (a call
//! through Envoy that succeeds and one that fails as documented) and its tenancy probe (the
//! same call aimed at another account's schedule).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{
    DENIED, HIDDEN_OR_DENIED, assert_refused, office_hours, schedules,
};

const UNKNOWN: &str = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "ScheduleService.CreateSchedule",
        case: Some(create_schedule_case),
        probe: create_schedule_probe,
    },
    RpcFixture {
        rpc: "ScheduleService.GetSchedule",
        case: Some(get_schedule_case),
        probe: get_schedule_probe,
    },
    RpcFixture {
        rpc: "ScheduleService.ListSchedules",
        case: Some(list_schedules_case),
        probe: list_schedules_probe,
    },
    RpcFixture {
        rpc: "ScheduleService.UpdateSchedule",
        case: Some(update_schedule_case),
        probe: update_schedule_probe,
    },
    RpcFixture {
        rpc: "ScheduleService.DeleteSchedule",
        case: Some(delete_schedule_case),
        probe: delete_schedule_probe,
    },
    RpcFixture {
        rpc: "ScheduleService.ComputeDueTime",
        case: Some(compute_due_time_case),
        probe: compute_due_time_probe,
    },
];

/// Office hours in Berlin as the REST API takes them, named `name`.
fn office_hours_json(name: &str) -> Value {
    json!({
        "name": name,
        "timeZone": "Europe/Berlin",
        "intervals": [
            {"weekday": "WEEKDAY_MONDAY", "start": "09:00", "end": "17:00"},
            {"weekday": "WEEKDAY_FRIDAY", "start": "09:00", "end": "17:00"},
        ],
        "holidays": [{"name": "Christmas", "first": "2026-12-24", "last": "2026-12-26"}],
    })
}

/// A new schedule of the harness's account, created through Envoy; its id.
async fn fresh_schedule(harness: &Harness) -> String {
    let created = harness
        .send(call(
            Method::POST,
            "/v1/schedules",
            harness.admin(),
            Some(office_hours_json(&format!(
                "contract {}",
                uuid::Uuid::now_v7()
            ))),
        ))
        .await
        .json();
    created["id"].as_str().expect("a schedule id").to_owned()
}

fn create_schedule_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let name = format!("contract {}", uuid::Uuid::now_v7());
        let mut overlapping = office_hours_json("overlapping");
        overlapping["intervals"] = json!([
            {"weekday": "WEEKDAY_MONDAY", "start": "09:00", "end": "17:00"},
            {"weekday": "WEEKDAY_MONDAY", "start": "16:00", "end": "18:00"},
        ]);
        (
            call(
                Method::POST,
                "/v1/schedules",
                harness.admin(),
                Some(office_hours_json(&name)),
            ),
            Some("/v1/schedules/".to_owned()),
            call(
                Method::POST,
                "/v1/schedules",
                harness.admin(),
                Some(overlapping),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn create_schedule_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = schedules(app)
            .create_schedule(attacker.request(v1::CreateScheduleRequest {
                schedule: Some(office_hours("probe")),
            }))
            .await;
        if foreign {
            // An admin elsewhere makes a schedule of their own account, never of the target's.
            let created = result
                .expect("created in the attacker's account")
                .into_inner();
            let listed = schedules(app)
                .list_schedules(target.admin.request(v1::ListSchedulesRequest::default()))
                .await
                .unwrap()
                .into_inner();
            assert!(
                listed
                    .schedules
                    .iter()
                    .all(|schedule| schedule.id != created.id)
            );
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn get_schedule_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_schedule(harness).await;
        (
            call(
                Method::GET,
                format!("/v1/schedules/{id}"),
                Some(&harness.agent.access_token),
                None,
            ),
            None,
            call(
                Method::GET,
                format!("/v1/schedules/{UNKNOWN}"),
                harness.admin(),
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_schedule_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = schedules(app)
            .get_schedule(attacker.request(v1::GetScheduleRequest {
                id: target.schedule_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn list_schedules_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        (
            call(
                Method::GET,
                "/v1/schedules",
                Some(&harness.agent.access_token),
                None,
            ),
            None,
            call(
                Method::GET,
                "/v1/schedules",
                Some(&harness.customer.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_schedules_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = schedules(app)
            .list_schedules(attacker.request(v1::ListSchedulesRequest::default()))
            .await;
        if foreign {
            let listed = result.expect("the attacker's own schedules").into_inner();
            assert!(
                listed
                    .schedules
                    .iter()
                    .all(|schedule| schedule.id != target.schedule_id)
            );
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn update_schedule_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_schedule(harness).await;
        (
            call(
                Method::PATCH,
                format!("/v1/schedules/{id}?updateMask=timeZone"),
                harness.admin(),
                Some(json!({"timeZone": "America/Sao_Paulo"})),
            ),
            None,
            call(
                Method::PATCH,
                format!("/v1/schedules/{id}?updateMask=timeZone"),
                harness.admin(),
                Some(json!({"timeZone": "Mars/Olympus_Mons"})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn update_schedule_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = schedules(app)
            .update_schedule(attacker.request(v1::UpdateScheduleRequest {
                schedule: Some(v1::Schedule {
                    id: target.schedule_id.clone(),
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

fn delete_schedule_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_schedule(harness).await;
        (
            call(
                Method::DELETE,
                format!("/v1/schedules/{id}"),
                harness.admin(),
                None,
            ),
            None,
            call(
                Method::DELETE,
                format!("/v1/schedules/{UNKNOWN}"),
                harness.admin(),
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn delete_schedule_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = schedules(app)
            .delete_schedule(attacker.request(v1::DeleteScheduleRequest {
                id: target.schedule_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn compute_due_time_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let id = fresh_schedule(harness).await;
        (
            call(
                Method::POST,
                "/v1/schedules:computeDueTime",
                Some(&harness.agent.access_token),
                Some(json!({
                    "scheduleId": id,
                    "startTime": "2026-12-04T15:00:00Z",
                    "minutes": 120,
                })),
            ),
            None,
            call(
                Method::POST,
                "/v1/schedules:computeDueTime",
                Some(&harness.agent.access_token),
                Some(json!({"scheduleId": UNKNOWN, "startTime": "2026-12-04T15:00:00Z"})),
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn compute_due_time_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = schedules(app)
            .compute_due_time(attacker.request(v1::ComputeDueTimeRequest {
                clock: Some(v1::compute_due_time_request::Clock::ScheduleId(
                    target.schedule_id.clone(),
                )),
                start_time: Some(prost_types::Timestamp {
                    seconds: 1_790_000_000,
                    nanos: 0,
                }),
                minutes: 60,
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}
