//! The TicketService rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::google::longrunning as lro;
use supportdesk::wire::proto::v1;
use tonic::Code;

use super::{Attack, CaseFuture, Cases, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, IMPORT_CSV, call};
use crate::cross_cutting::tenancy::{
    DENIED, HIDDEN, HIDDEN_OR_DENIED, TARGET_TAG, assert_refused, operations,
};
use crate::support::valid_create_request;

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "TicketService.CreateTicket",
        case: Some(create_ticket_case),
        probe: create_ticket_probe,
    },
    RpcFixture {
        rpc: "TicketService.GetTicket",
        case: Some(get_ticket_case),
        probe: get_ticket_probe,
    },
    RpcFixture {
        rpc: "TicketService.ListTickets",
        case: Some(list_tickets_case),
        probe: list_tickets_probe,
    },
    RpcFixture {
        rpc: "TicketService.ExportTickets",
        case: Some(export_tickets_case),
        probe: export_tickets_probe,
    },
    RpcFixture {
        rpc: "TicketService.SearchTickets",
        case: Some(search_tickets_case),
        probe: search_tickets_probe,
    },
    RpcFixture {
        rpc: "TicketService.ListTicketChanges",
        case: Some(list_ticket_changes_case),
        probe: list_ticket_changes_probe,
    },
    RpcFixture {
        rpc: "TicketService.UpdateTicket",
        case: Some(update_ticket_case),
        probe: update_ticket_probe,
    },
    RpcFixture {
        rpc: "TicketService.AssignTicket",
        case: Some(assign_ticket_case),
        probe: assign_ticket_probe,
    },
    RpcFixture {
        rpc: "TicketService.AddTicketTags",
        case: Some(add_ticket_tags_case),
        probe: add_ticket_tags_probe,
    },
    RpcFixture {
        rpc: "TicketService.RemoveTicketTags",
        case: Some(remove_ticket_tags_case),
        probe: remove_ticket_tags_probe,
    },
    RpcFixture {
        rpc: "TicketService.MarkTicketPending",
        case: Some(mark_ticket_pending_case),
        probe: mark_ticket_pending_probe,
    },
    RpcFixture {
        rpc: "TicketService.HoldTicket",
        case: Some(hold_ticket_case),
        probe: hold_ticket_probe,
    },
    RpcFixture {
        rpc: "TicketService.ResolveTicket",
        case: Some(resolve_ticket_case),
        probe: resolve_ticket_probe,
    },
    RpcFixture {
        rpc: "TicketService.ReopenTicket",
        case: Some(reopen_ticket_case),
        probe: reopen_ticket_probe,
    },
    RpcFixture {
        rpc: "TicketService.CloseTicket",
        case: Some(close_ticket_case),
        probe: close_ticket_probe,
    },
    RpcFixture {
        rpc: "TicketService.DeleteTicket",
        case: Some(delete_ticket_case),
        probe: delete_ticket_probe,
    },
    RpcFixture {
        rpc: "TicketService.AddComment",
        case: Some(add_comment_case),
        probe: add_comment_probe,
    },
    RpcFixture {
        rpc: "TicketService.ListComments",
        case: Some(list_comments_case),
        probe: list_comments_probe,
    },
    RpcFixture {
        rpc: "TicketService.ListTicketActivity",
        case: Some(list_ticket_activity_case),
        probe: list_ticket_activity_probe,
    },
    RpcFixture {
        rpc: "TicketService.ListTags",
        case: Some(list_tags_case),
        probe: list_tags_probe,
    },
    RpcFixture {
        rpc: "TicketService.ImportTickets",
        case: Some(import_tickets_case),
        probe: import_tickets_probe,
    },
];

fn create_ticket_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(
                Method::POST,
                "/v1/tickets",
                admin,
                Some(
                    json!({"subject": "REST", "description": "Contract", "requesterEmail": "r@example.com"}),
                ),
            ),
            Some("/v1/tickets/".to_owned()),
            call(
                Method::POST,
                "/v1/tickets",
                admin,
                Some(json!({"subject": ""})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn create_ticket_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let agent_id = target.agent.id.to_string();
        // Aimed at the target: assign it to the target's agent, or raise it for its owner.
        let mut request = valid_create_request("probe");
        let ticket = request.ticket.as_mut().unwrap();
        if foreign {
            ticket.assignee_id = agent_id;
        } else {
            ticket.requester_email = target.owner.email.clone();
        }
        let result = app
            .tickets
            .clone()
            .create_ticket(attacker.request(request))
            .await;
        assert_refused(rpc, result, &[Code::InvalidArgument]);
    })
}

fn get_ticket_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = harness.new_ticket().await;
        (
            call(Method::GET, format!("/v1/tickets/{id}"), admin, None),
            None,
            call(Method::GET, format!("/v1/tickets/{unknown}"), admin, None),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_ticket_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let result = app
            .tickets
            .clone()
            .get_ticket(attacker.request(v1::GetTicketRequest {
                id: ticket_id,
                ..Default::default()
            }))
            .await;
        assert_refused(rpc, result, HIDDEN);
    })
}

fn list_tickets_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(
                Method::GET,
                "/v1/tickets?statuses=TICKET_STATUS_NEW&orderBy=update_time%20desc",
                admin,
                None,
            ),
            None,
            call(Method::GET, "/v1/tickets?pageSize=-1", admin, None),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn list_tickets_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            attacker,
            target,
            ..
        } = attack;
        let tickets = app
            .tickets
            .clone()
            .list_tickets(attacker.request(v1::ListTicketsRequest {
                page_size: 100,
                page_token: String::new(),
                ..Default::default()
            }))
            .await
            .expect("the attacker's own tickets")
            .into_inner()
            .tickets;
        assert!(tickets.iter().all(|ticket| ticket.id != target.ticket.id));
    })
}

fn export_tickets_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        harness.new_ticket().await;
        (
            call(
                Method::GET,
                "/v1/tickets:export?statuses=TICKET_STATUS_NEW&readMask=id,subject",
                admin,
                None,
            ),
            None,
            call(
                Method::GET,
                "/v1/tickets:export?readMask=colour",
                admin,
                None,
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn export_tickets_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let mut stream = app
            .tickets
            .clone()
            .export_tickets(attacker.request(v1::ExportTicketsRequest::default()))
            .await
            .expect("the attacker's own export")
            .into_inner();
        while let Some(ticket) = stream.message().await.expect("the export streams") {
            assert_ne!(
                ticket.id, target.ticket.id,
                "{rpc} leaked the target's ticket"
            );
        }
    })
}

fn search_tickets_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        harness.new_ticket().await;
        (
            call(Method::GET, "/v1/tickets:search?q=contract", admin, None),
            None,
            call(Method::GET, "/v1/tickets:search?q=%20", admin, None),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn search_tickets_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let results = app
            .tickets
            .clone()
            .search_tickets(attacker.request(v1::SearchTicketsRequest {
                q: target.ticket.subject.clone(),
                page_size: 100,
                ..Default::default()
            }))
            .await
            .expect("the attacker's own search")
            .into_inner()
            .results;
        assert!(
            results
                .iter()
                .all(|result| result.ticket.as_ref().map(|ticket| &ticket.id)
                    != Some(&target.ticket.id)),
            "{rpc} found the target's ticket"
        );
    })
}

fn list_ticket_changes_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/tickets:changes?pageSize=5", admin, None),
            None,
            call(
                Method::GET,
                "/v1/tickets:changes",
                Some(&harness.customer.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_ticket_changes_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .tickets
            .clone()
            .list_ticket_changes(attacker.request(v1::ListTicketChangesRequest {
                page_size: 100,
                ..Default::default()
            }))
            .await;
        match result {
            Ok(response) => assert!(
                response.into_inner().changes.iter().all(|change| change
                    .ticket
                    .as_ref()
                    .map(|ticket| &ticket.id)
                    != Some(&target.ticket.id)),
                "{rpc} leaked the target's ticket"
            ),
            Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{rpc}"),
        }
    })
}

fn update_ticket_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let id = harness.new_ticket().await;
        (
            call(
                Method::PATCH,
                format!("/v1/tickets/{id}?updateMask=subject"),
                admin,
                Some(json!({"subject": "renamed"})),
            ),
            None,
            call(
                Method::PATCH,
                format!("/v1/tickets/{id}?updateMask=subject"),
                admin,
                Some(json!({"subject": "stale", "etag": "v999"})),
            ),
            StatusCode::CONFLICT,
        )
    })
}

fn update_ticket_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let result = app
            .tickets
            .clone()
            .update_ticket(attacker.request(v1::UpdateTicketRequest {
                ticket: Some(v1::Ticket {
                    id: ticket_id,
                    subject: "hijacked".to_owned(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["subject".to_owned()],
                }),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn assign_ticket_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let id = harness.new_ticket().await;
        let body = json!({"assigneeId": harness.agent.id.to_string()});
        (
            call(
                Method::POST,
                format!("/v1/tickets/{id}:assign"),
                admin,
                Some(body.clone()),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/tickets/{id}:assign"),
                Some(&harness.customer.access_token),
                Some(body),
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn assign_ticket_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let agent_id = target.agent.id.to_string();
        let result = app
            .tickets
            .clone()
            .assign_ticket(attacker.request(v1::AssignTicketRequest {
                id: ticket_id,
                assignee_id: agent_id,
                etag: String::new(),
                group_id: None,
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn add_ticket_tags_case(harness: &Harness) -> CaseFuture<'_> {
    tag_case(harness, "addTags")
}

fn remove_ticket_tags_case(harness: &Harness) -> CaseFuture<'_> {
    tag_case(harness, "removeTags")
}

/// AddTicketTags and RemoveTicketTags: agents and admins tag, a customer is refused.
fn tag_case<'a>(harness: &'a Harness, verb: &'static str) -> CaseFuture<'a> {
    Box::pin(async move {
        let admin = harness.admin();
        let id = harness.new_ticket().await;
        let body = json!({"tags": ["vip"]});
        (
            call(
                Method::POST,
                format!("/v1/tickets/{id}:{verb}"),
                admin,
                Some(body.clone()),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/tickets/{id}:{verb}"),
                Some(&harness.customer.access_token),
                Some(body),
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn add_ticket_tags_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .tickets
            .clone()
            .add_ticket_tags(attacker.request(v1::AddTicketTagsRequest {
                id: target.ticket.id.clone(),
                tags: vec!["stolen".to_owned()],
                etag: String::new(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn remove_ticket_tags_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .tickets
            .clone()
            .remove_ticket_tags(attacker.request(v1::RemoveTicketTagsRequest {
                id: target.ticket.id.clone(),
                tags: vec!["vip".to_owned()],
                etag: String::new(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

/// A wait is set on a new ticket and refused on a solved one.
async fn wait_cases(harness: &Harness, verb: &str) -> Cases {
    let admin = harness.admin();
    let fresh = harness.new_ticket().await;
    let solved = harness.solved_ticket().await;
    (
        call(
            Method::POST,
            format!("/v1/tickets/{fresh}:{verb}"),
            admin,
            Some(json!({})),
        ),
        None,
        call(
            Method::POST,
            format!("/v1/tickets/{solved}:{verb}"),
            admin,
            Some(json!({})),
        ),
        StatusCode::BAD_REQUEST,
    )
}

fn mark_ticket_pending_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(wait_cases(harness, "markPending"))
}

fn mark_ticket_pending_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .tickets
            .clone()
            .mark_ticket_pending(attacker.request(v1::MarkTicketPendingRequest {
                id: target.ticket.id.clone(),
                etag: String::new(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn hold_ticket_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(wait_cases(harness, "hold"))
}

fn hold_ticket_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .tickets
            .clone()
            .hold_ticket(attacker.request(v1::HoldTicketRequest {
                id: target.ticket.id.clone(),
                etag: String::new(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn resolve_ticket_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let assigned = harness.assigned_ticket().await;
        let unassigned = harness.new_ticket().await;
        (
            call(
                Method::POST,
                format!("/v1/tickets/{assigned}:resolve"),
                admin,
                Some(json!({})),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/tickets/{unassigned}:resolve"),
                admin,
                Some(json!({})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn resolve_ticket_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let result = app
            .tickets
            .clone()
            .resolve_ticket(attacker.request(v1::ResolveTicketRequest {
                id: ticket_id,
                etag: String::new(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

async fn reopen_ticket_or_close_ticket_cases(harness: &Harness, rpc: &str) -> Cases {
    let admin = harness.admin();
    let solved = harness.solved_ticket().await;
    let fresh = harness.new_ticket().await;
    let verb = if rpc.ends_with("Reopen") || rpc.contains("Reopen") {
        "reopen"
    } else {
        "close"
    };
    (
        call(
            Method::POST,
            format!("/v1/tickets/{solved}:{verb}"),
            admin,
            Some(json!({})),
        ),
        None,
        call(
            Method::POST,
            format!("/v1/tickets/{fresh}:{verb}"),
            admin,
            Some(json!({})),
        ),
        StatusCode::BAD_REQUEST,
    )
}

fn reopen_ticket_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(reopen_ticket_or_close_ticket_cases(
        harness,
        "TicketService.ReopenTicket",
    ))
}

fn reopen_ticket_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let result = app
            .tickets
            .clone()
            .reopen_ticket(attacker.request(v1::ReopenTicketRequest {
                id: ticket_id,
                etag: String::new(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN);
    })
}

fn close_ticket_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(reopen_ticket_or_close_ticket_cases(
        harness,
        "TicketService.CloseTicket",
    ))
}

fn close_ticket_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let result = app
            .tickets
            .clone()
            .close_ticket(attacker.request(v1::CloseTicketRequest {
                id: ticket_id,
                etag: String::new(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn delete_ticket_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let id = harness.new_ticket().await;
        (
            call(Method::DELETE, format!("/v1/tickets/{id}"), admin, None),
            None,
            call(
                Method::DELETE,
                format!("/v1/tickets/{id}"),
                Some(&harness.agent.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn delete_ticket_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let result = app
            .tickets
            .clone()
            .delete_ticket(attacker.request(v1::DeleteTicketRequest {
                id: ticket_id,
                etag: String::new(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn add_comment_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let id = harness.new_ticket().await;
        (
            call(
                Method::POST,
                format!("/v1/tickets/{id}/comments"),
                admin,
                Some(json!({"body": "hello", "public": true})),
            ),
            Some(format!("/v1/tickets/{id}/comments")),
            call(
                Method::POST,
                format!("/v1/tickets/{id}/comments"),
                admin,
                Some(json!({"body": " "})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn add_comment_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let result = app
            .tickets
            .clone()
            .add_comment(attacker.request(v1::AddCommentRequest {
                ticket_id,
                comment: Some(v1::Comment {
                    body: "let me in".to_owned(),
                    public: true,
                    ..Default::default()
                }),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN);
    })
}

fn list_comments_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = harness.new_ticket().await;
        (
            call(
                Method::GET,
                format!("/v1/tickets/{id}/comments"),
                admin,
                None,
            ),
            None,
            call(
                Method::GET,
                format!("/v1/tickets/{unknown}/comments"),
                admin,
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn list_comments_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let result = app
            .tickets
            .clone()
            .list_comments(attacker.request(v1::ListCommentsRequest {
                ticket_id,
                ..Default::default()
            }))
            .await;
        assert_refused(rpc, result, HIDDEN);
    })
}

fn list_ticket_activity_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let id = harness.new_ticket().await;
        (
            call(
                Method::GET,
                format!("/v1/tickets/{id}/activity"),
                admin,
                None,
            ),
            None,
            call(
                Method::GET,
                format!("/v1/tickets/{id}/activity"),
                Some(&harness.customer.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_ticket_activity_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let result = app
            .tickets
            .clone()
            .list_ticket_activity(attacker.request(v1::ListTicketActivityRequest {
                ticket_id,
                ..Default::default()
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn import_tickets_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(
                Method::POST,
                "/v1/tickets:import",
                admin,
                Some(json!({"format": "IMPORT_FORMAT_CSV", "content": IMPORT_CSV})),
            ),
            None,
            call(
                Method::POST,
                "/v1/tickets:import",
                admin,
                Some(json!({"format": "IMPORT_FORMAT_UNSPECIFIED", "content": IMPORT_CSV})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn import_tickets_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        // An admin imports into their own account only; a customer may not import.
        let result = app
            .tickets
            .clone()
            .import_tickets(attacker.request(v1::ImportTicketsRequest {
                format: v1::ImportFormat::Csv.into(),
                content: format!(
                    "subject,description,requester_email\nProbe,probe,{}\n",
                    target.owner.email
                ),
            }))
            .await;
        if foreign {
            let name = result
                .expect("an admin imports into their own account")
                .into_inner()
                .name;
            let theirs = operations(app)
                .get_operation(attacker.request(lro::GetOperationRequest { name }))
                .await;
            assert!(theirs.is_ok(), "the import is the attacker's own");
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn list_tags_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/tags?prefix=v&pageSize=5", admin, None),
            None,
            call(
                Method::GET,
                "/v1/tags",
                Some(&harness.customer.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_tags_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app, rpc, attacker, ..
        } = attack;
        let result = app
            .tickets
            .clone()
            .list_tags(attacker.request(v1::ListTagsRequest {
                page_size: 100,
                ..Default::default()
            }))
            .await;
        match result {
            Ok(response) => assert!(
                response
                    .into_inner()
                    .tags
                    .iter()
                    .all(|tag| tag.tag != TARGET_TAG),
                "{rpc} leaked the target's tag"
            ),
            Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{rpc}"),
        }
    })
}
