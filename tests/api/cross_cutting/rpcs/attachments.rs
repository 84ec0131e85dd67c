//! The AttachmentService rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{HIDDEN, assert_refused};

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "AttachmentService.CreateUpload",
        case: Some(create_upload_case),
        probe: create_upload_probe,
    },
    RpcFixture {
        rpc: "AttachmentService.UploadAttachment",
        case: Some(upload_attachment_case),
        probe: upload_attachment_probe,
    },
    RpcFixture {
        rpc: "AttachmentService.CompleteUpload",
        case: Some(complete_upload_case),
        probe: complete_upload_probe,
    },
    RpcFixture {
        rpc: "AttachmentService.GetAttachment",
        case: Some(get_attachment_case),
        probe: get_attachment_probe,
    },
    RpcFixture {
        rpc: "AttachmentService.ListAttachments",
        case: Some(list_attachments_case),
        probe: list_attachments_probe,
    },
    RpcFixture {
        rpc: "AttachmentService.DeleteAttachment",
        case: Some(delete_attachment_case),
        probe: delete_attachment_probe,
    },
    RpcFixture {
        rpc: "AttachmentService.GetDownloadUrl",
        case: Some(get_download_url_case),
        probe: get_download_url_probe,
    },
];

fn create_upload_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let ticket = harness.new_ticket().await;
        let bytes = crate::support::attachments::png_bytes(1);
        let body = |content_type: &str| {
            json!({"filename": "a.png", "contentType": content_type,
                   "sizeBytes": bytes.len().to_string(),
                   "sha256": crate::support::attachments::sha256_hex(&bytes)})
        };
        let path = format!("/v1/tickets/{ticket}/attachments");
        (
            call(Method::POST, &path, admin, Some(body("image/png"))),
            Some("/v1/attachments/".to_owned()),
            call(Method::POST, &path, admin, Some(body("text/html"))),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn create_upload_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let bytes = crate::support::attachments::png_bytes(0);
        let result = app
            .attachments
            .clone()
            .create_upload(
                attacker.request(crate::support::attachments::upload_request(
                    &ticket_id,
                    "probe.png",
                    "image/png",
                    &bytes,
                )),
            )
            .await;
        assert_refused(rpc, result, HIDDEN);
    })
}

fn upload_attachment_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let ticket = harness.new_ticket().await;
        let text = b"the log says: disk full";
        let path = format!(
            "/v1/attachments:upload?ticketId={ticket}&filename=notes.txt&sizeBytes={}\
             &sha256={}",
            text.len(),
            crate::support::attachments::sha256_hex(text)
        );
        (
            call(Method::POST, &path, admin, None).with_raw_body("text/plain", text.to_vec()),
            Some("/v1/attachments/".to_owned()),
            call(Method::POST, &path, admin, None).with_raw_body("text/html", text.to_vec()),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn upload_attachment_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let result = app
            .attachments
            .clone()
            .upload_attachment(attacker.request(crate::support::attachments::streamed(
                crate::support::attachments::direct_upload(
                    &ticket_id,
                    "probe.txt",
                    "text/plain",
                    b"probe",
                    2,
                ),
            )))
            .await;
        assert_refused(rpc, result, HIDDEN);
    })
}

fn complete_upload_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let ticket = harness.new_ticket().await;
        let bytes = crate::support::attachments::png_bytes(2);
        let started = harness
            .app
            .attachments
            .clone()
            .create_upload(
                harness
                    .app
                    .as_admin(crate::support::attachments::upload_request(
                        &ticket,
                        "a.png",
                        "image/png",
                        &bytes,
                    )),
            )
            .await
            .expect("an upload starts")
            .into_inner();
        assert!(
            crate::support::attachments::put(&started, bytes)
                .await
                .status()
                .is_success()
        );
        let id = started.attachment.unwrap().id;
        (
            call(
                Method::POST,
                format!("/v1/attachments/{id}:complete"),
                admin,
                Some(json!({})),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/attachments/{unknown}:complete"),
                admin,
                Some(json!({})),
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn complete_upload_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .attachments
            .clone()
            .complete_upload(attacker.request(v1::CompleteUploadRequest {
                id: target.attachment.id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN);
    })
}

fn get_attachment_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = crate::support::attachments::ready_attachment(&harness.app)
            .await
            .id;
        (
            call(Method::GET, format!("/v1/attachments/{id}"), admin, None),
            None,
            call(
                Method::GET,
                format!("/v1/attachments/{unknown}"),
                admin,
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_attachment_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .attachments
            .clone()
            .get_attachment(attacker.request(v1::GetAttachmentRequest {
                id: target.attachment.id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN);
    })
}

fn list_attachments_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let ticket = crate::support::attachments::ready_attachment(&harness.app)
            .await
            .ticket_id;
        let path = format!("/v1/tickets/{ticket}/attachments");
        (
            call(Method::GET, &path, admin, None),
            None,
            call(Method::GET, &path, None, None),
            StatusCode::UNAUTHORIZED,
        )
    })
}

fn list_attachments_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let ticket_id = target.ticket.id.clone();
        let result = app
            .attachments
            .clone()
            .list_attachments(attacker.request(v1::ListAttachmentsRequest {
                ticket_id: ticket_id.clone(),
                ..Default::default()
            }))
            .await;
        assert_refused(rpc, result, HIDDEN);
    })
}

fn delete_attachment_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = crate::support::attachments::ready_attachment(&harness.app)
            .await
            .id;
        (
            call(Method::DELETE, format!("/v1/attachments/{id}"), admin, None),
            None,
            call(
                Method::DELETE,
                format!("/v1/attachments/{unknown}"),
                admin,
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn delete_attachment_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .attachments
            .clone()
            .delete_attachment(attacker.request(v1::DeleteAttachmentRequest {
                id: target.attachment.id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN);
    })
}

fn get_download_url_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = crate::support::attachments::ready_attachment(&harness.app)
            .await
            .id;
        (
            call(
                Method::GET,
                format!("/v1/attachments/{id}:downloadUrl"),
                admin,
                None,
            ),
            None,
            call(
                Method::GET,
                format!("/v1/attachments/{unknown}:downloadUrl"),
                admin,
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_download_url_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .attachments
            .clone()
            .get_download_url(attacker.request(v1::GetDownloadUrlRequest {
                id: target.attachment.id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN);
    })
}
