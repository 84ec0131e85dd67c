//! `supportdesk.v1.AttachmentService`.

use tonic::{Request, Response, Status};

use super::{
    IdempotencyRequest, ListPages, answer, created, optional_timestamp, request_context, stored_as,
    timestamp,
};
use crate::domain::{
    Actor, Attachment, AttachmentContentType, AttachmentId, AttachmentState, CommentId, Filename,
    InvalidValue, PageTokenKeys, Sha256Digest, TicketId,
};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::service::attachments::DIRECT_UPLOAD_PHASES;
use crate::service::{Attachments, DirectUpload, NewUpload, StartedUpload};
use crate::wire::proto::v1;

pub struct AttachmentApi {
    attachments: Attachments,
    idempotency: IdempotencyPolicy,
    pages: PageTokenKeys,
}

impl AttachmentApi {
    pub fn new(
        attachments: Attachments,
        idempotency: IdempotencyPolicy,
        pages: PageTokenKeys,
    ) -> Self {
        Self {
            attachments,
            idempotency,
            pages,
        }
    }
}

/// The answer of UploadAttachment (201 with the attachment's location), fresh or replayed.
fn ready_response(attachment: &Attachment) -> Response<v1::Attachment> {
    let location = format!("/v1/attachments/{}", attachment.id);
    created(Response::new(to_wire(attachment.clone())), &location)
}

/// The answer of CreateUpload (201 with the attachment's location), fresh or replayed.
fn started_response(started: &StartedUpload) -> Response<v1::CreateUploadResponse> {
    let location = format!("/v1/attachments/{}", started.attachment.id);
    created(
        Response::new(v1::CreateUploadResponse {
            attachment: Some(to_wire(started.attachment.clone())),
            upload_url: started.upload.url.to_string(),
            upload_headers: started.upload.headers.iter().cloned().collect(),
            expire_time: Some(timestamp(started.upload.expires_at)),
        }),
        &location,
    )
}

fn attachment_id(raw: &str) -> Result<AttachmentId, AppError> {
    AttachmentId::parse(raw).map_err(|problem| AppError::invalid_field("id", &problem))
}

/// An optional comment id: empty is none.
fn optional_comment(violations: &mut FieldViolations, raw: &str) -> Option<Option<CommentId>> {
    match raw.trim() {
        "" => Some(None),
        raw => violations
            .check("comment_id", CommentId::parse(raw))
            .map(Some),
    }
}

#[tonic::async_trait]
impl v1::attachment_service_server::AttachmentService for AttachmentApi {
    async fn create_upload(
        &self,
        request: Request<v1::CreateUploadRequest>,
    ) -> Result<Response<v1::CreateUploadResponse>, Status> {
        let (caller, budget) = request_context(&request)?;
        let idempotency = IdempotencyRequest::of(&request, Some(&caller), &self.idempotency)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let ticket_id = violations.check("ticket_id", TicketId::parse(&message.ticket_id));
        let comment_id = optional_comment(&mut violations, &message.comment_id);
        let filename = violations.check("filename", Filename::parse(&message.filename));
        let content_type = violations.check(
            "content_type",
            AttachmentContentType::parse(&message.content_type),
        );
        let size_bytes = violations.check(
            "size_bytes",
            u64::try_from(message.size_bytes)
                .ok()
                .filter(|size| *size > 0)
                .ok_or_else(|| InvalidValue::new("must be the file's size in bytes (at least 1)")),
        );
        let sha256 = violations.check("sha256", Sha256Digest::parse(&message.sha256));
        let (
            Some(ticket_id),
            Some(comment_id),
            Some(filename),
            Some(content_type),
            Some(size_bytes),
            Some(sha256),
        ) = (
            ticket_id,
            comment_id,
            filename,
            content_type,
            size_bytes,
            sha256,
        )
        else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let store = stored_as(&started_response);
        let outcome = self
            .attachments
            .create_upload(
                &caller,
                NewUpload {
                    ticket_id,
                    comment_id,
                    filename,
                    content_type,
                    size_bytes,
                    sha256,
                },
                budget,
                idempotency.for_service(&store).as_ref(),
            )
            .await?;
        answer(outcome, &started_response)
    }

    async fn upload_attachment(
        &self,
        request: Request<v1::UploadAttachmentRequest>,
    ) -> Result<Response<v1::Attachment>, Status> {
        let (caller, budget) = request_context(&request)?;
        let idempotency = IdempotencyRequest::of(&request, Some(&caller), &self.idempotency)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let ticket_id = violations.check("ticket_id", TicketId::parse(&message.ticket_id));
        let comment_id = optional_comment(&mut violations, &message.comment_id);
        let filename = violations.check("filename", Filename::parse(&message.filename));
        let file = message.file.unwrap_or_default();
        let content_type = violations.check(
            "file.content_type",
            AttachmentContentType::parse(&file.content_type),
        );
        let declared_sha256 = match message.sha256.trim() {
            "" => Some(None),
            raw => violations
                .check("sha256", Sha256Digest::parse(raw))
                .map(Some),
        };
        let (
            Some(ticket_id),
            Some(comment_id),
            Some(filename),
            Some(content_type),
            Some(declared_sha256),
        ) = (
            ticket_id,
            comment_id,
            filename,
            content_type,
            declared_sha256,
        )
        else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let store = stored_as(&ready_response);
        let outcome = self
            .attachments
            .upload_direct(
                &caller,
                DirectUpload {
                    ticket_id,
                    comment_id,
                    filename,
                    content_type,
                    declared_sha256,
                    bytes: file.data.into(),
                },
                budget,
                idempotency
                    .for_phased_service(&store, DIRECT_UPLOAD_PHASES)
                    .as_ref(),
            )
            .await?;
        answer(outcome, &ready_response)
    }

    async fn complete_upload(
        &self,
        request: Request<v1::CompleteUploadRequest>,
    ) -> Result<Response<v1::Attachment>, Status> {
        let (caller, budget) = request_context(&request)?;
        let id = attachment_id(&request.get_ref().id)?;
        let attachment = self
            .attachments
            .complete_upload(&caller, id, budget)
            .await?;
        Ok(Response::new(to_wire(attachment)))
    }

    async fn get_attachment(
        &self,
        request: Request<v1::GetAttachmentRequest>,
    ) -> Result<Response<v1::Attachment>, Status> {
        let (caller, _) = request_context(&request)?;
        let id = attachment_id(&request.get_ref().id)?;
        Ok(Response::new(to_wire(
            self.attachments.get(&caller, id).await?,
        )))
    }

    async fn list_attachments(
        &self,
        request: Request<v1::ListAttachmentsRequest>,
    ) -> Result<Response<v1::ListAttachmentsResponse>, Status> {
        let (caller, _) = request_context(&request)?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let ticket_id = violations.check("ticket_id", TicketId::parse(&message.ticket_id));
        let comment_id = optional_comment(&mut violations, &message.comment_id);
        let (Some(ticket_id), Some(comment_id)) = (ticket_id, comment_id) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let list = match comment_id {
            Some(comment) => format!("attachments:{ticket_id}:{comment}"),
            None => format!("attachments:{ticket_id}"),
        };
        let pages = ListPages::new(&self.pages, &caller, &list);
        let (page_size, after) = pages.request(message.page_size, &message.page_token)?;
        let page = self
            .attachments
            .list(&caller, ticket_id, comment_id, page_size, after)
            .await?;
        Ok(Response::new(v1::ListAttachmentsResponse {
            attachments: page.items.into_iter().map(to_wire).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn delete_attachment(
        &self,
        request: Request<v1::DeleteAttachmentRequest>,
    ) -> Result<Response<v1::DeleteAttachmentResponse>, Status> {
        let (caller, budget) = request_context(&request)?;
        let id = attachment_id(&request.get_ref().id)?;
        self.attachments.delete(&caller, id, budget).await?;
        Ok(Response::new(v1::DeleteAttachmentResponse {}))
    }

    async fn get_download_url(
        &self,
        request: Request<v1::GetDownloadUrlRequest>,
    ) -> Result<Response<v1::GetDownloadUrlResponse>, Status> {
        let (caller, _) = request_context(&request)?;
        let id = attachment_id(&request.get_ref().id)?;
        let download = self.attachments.download_url(&caller, id).await?;
        Ok(Response::new(v1::GetDownloadUrlResponse {
            download_url: download.url.to_string(),
            expire_time: Some(timestamp(download.expires_at)),
        }))
    }
}

fn to_wire(attachment: Attachment) -> v1::Attachment {
    v1::Attachment {
        id: attachment.id.to_string(),
        ticket_id: attachment.ticket_id.to_string(),
        comment_id: attachment
            .comment_id
            .map(|comment| comment.to_string())
            .unwrap_or_default(),
        filename: attachment.filename.as_str().to_owned(),
        content_type: attachment.content_type.as_str().to_owned(),
        size_bytes: i64::try_from(attachment.size_bytes).unwrap_or(i64::MAX),
        sha256: attachment.sha256.to_string(),
        state: match attachment.state {
            AttachmentState::Pending => v1::AttachmentState::Pending,
            AttachmentState::Ready => v1::AttachmentState::Ready,
        }
        .into(),
        uploader_id: match attachment.uploader {
            Actor::User(user) => user.to_string(),
            Actor::ApiKey(_) => String::new(),
        },
        create_time: Some(timestamp(attachment.created_at)),
        complete_time: optional_timestamp(attachment.completed_at),
    }
}
