//! `supportdesk.v1.AttachmentService`.

use bytes::Bytes;
use tokio_stream::StreamExt;
use tonic::{Code, Request, Response, Status, Streaming};

use super::{KeyedRequest, ListPages, answer, created, scope, stored_as, timestamp};
use crate::domain::{
    Attachment, AttachmentContentType, AttachmentId, CommentId, Filename, InvalidValue,
    PageTokenKeys, Sha256Digest, TicketId,
};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::service::attachments::DIRECT_UPLOAD_PHASES;
use crate::service::{Attachments, DirectUpload, FilePieces, NewUpload, StartedUpload};
use crate::wire::proto::v1;

pub struct AttachmentApi {
    attachments: Attachments,
    idempotency: IdempotencyPolicy,
    pages: PageTokenKeys,
    /// The largest request message the server decodes for this service ([`message_limit`]).
    message_limit: usize,
}

impl AttachmentApi {
    pub fn new(
        attachments: Attachments,
        idempotency: IdempotencyPolicy,
        pages: PageTokenKeys,
        message_limit: usize,
    ) -> Self {
        Self {
            attachments,
            idempotency,
            pages,
            message_limit,
        }
    }
}

/// The most a piece of a REST body can be as Envoy's transcoder passes it on: it sends a
/// streamed body in pieces of at most 1 MiB (`MaxStreamedPieceSize`), the first with the path
/// and query bindings, which Envoy's 32 KiB header limit bounds.
pub const ENVOY_PIECE_BYTES: usize = 1024 * 1024 + 64 * 1024;

/// The largest request message AttachmentService decodes: `MAX_REQUEST_BYTES`, and never less
/// than a piece of a streamed REST upload ([`ENVOY_PIECE_BYTES`]).
pub fn message_limit(max_request_bytes: usize) -> usize {
    max_request_bytes.max(ENVOY_PIECE_BYTES)
}

/// What a failure of UploadAttachment's stream is: tonic's refusal of a message over the limit
/// (OUT_OF_RANGE, nothing else of ours answers it) is REQUEST_TOO_LARGE naming the limit, the
/// codec's refusal of a message that does not decode is malformed, anything else (the stream
/// broke) is not the client's final answer.
fn stream_error(status: &Status, limit: usize) -> AppError {
    if status.code() == Code::OutOfRange {
        AppError::MessageTooLarge { limit }
    } else if status.code() == Code::InvalidArgument {
        AppError::MalformedMessage {
            field: None,
            problem: status.message().to_owned(),
        }
    } else {
        AppError::internal(anyhow::anyhow!(
            "the request's stream broke: {}",
            status.message()
        ))
    }
}

/// The answer of UploadAttachment (201 with the attachment's location), fresh or replayed.
fn ready_response(attachment: &Attachment) -> Response<v1::Attachment> {
    let location = format!("/v1/attachments/{}", attachment.id);
    created(
        Response::new(v1::Attachment::from(attachment.clone())),
        &location,
    )
}

/// The answer of CreateUpload (201 with the attachment's location), fresh or replayed.
fn started_response(started: &StartedUpload) -> Response<v1::CreateUploadResponse> {
    let location = format!("/v1/attachments/{}", started.attachment.id);
    created(
        Response::new(v1::CreateUploadResponse {
            attachment: Some(v1::Attachment::from(started.attachment.clone())),
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
    match raw {
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
        mut request: Request<v1::CreateUploadRequest>,
    ) -> Result<Response<v1::CreateUploadResponse>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
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
                &keyed.write(&store),
                NewUpload {
                    ticket_id,
                    comment_id,
                    filename,
                    content_type,
                    size_bytes,
                    sha256,
                },
            )
            .await?;
        answer(outcome, &started_response)
    }

    async fn upload_attachment(
        &self,
        mut request: Request<Streaming<v1::UploadAttachmentRequest>>,
    ) -> Result<Response<v1::Attachment>, Status> {
        let scope = scope(&mut request)?;
        let mut stream = request.into_inner();
        let mut first = stream
            .message()
            .await
            .map_err(|status| stream_error(&status, self.message_limit))?
            .unwrap_or_default();
        let mut file = first.file.take().unwrap_or_default();
        let first_piece = Bytes::from(std::mem::take(&mut file.data));
        // The declaration, without the file's bytes: Envoy cuts a REST body into pieces as it
        // arrives, so the first piece of the same file differs between a request and its retry.
        first.file = Some(crate::wire::proto::google::api::HttpBody {
            content_type: file.content_type.clone(),
            ..Default::default()
        });
        let keyed = KeyedRequest::with_scope(scope, &first, &self.idempotency)?;
        let message = first;
        let mut violations = FieldViolations::new();
        let ticket_id = violations.check("ticket_id", TicketId::parse(&message.ticket_id));
        let comment_id = optional_comment(&mut violations, &message.comment_id);
        let filename = violations.check("filename", Filename::parse(&message.filename));
        let content_type = violations.check(
            "file.content_type",
            AttachmentContentType::parse(&file.content_type),
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
        let limit = self.message_limit;
        let following = stream.map(move |message| match message {
            Ok(message) => Ok(Bytes::from(message.file.unwrap_or_default().data)),
            Err(status) => Err(stream_error(&status, limit)),
        });
        let pieces: FilePieces = Box::pin(tokio_stream::once(Ok(first_piece)).chain(following));
        let store = stored_as(&ready_response);
        let outcome = self
            .attachments
            .upload_direct(
                &keyed.phased_write(&store, DIRECT_UPLOAD_PHASES),
                DirectUpload {
                    ticket_id,
                    comment_id,
                    filename,
                    content_type,
                    size_bytes,
                    sha256,
                },
                pieces,
            )
            .await?;
        answer(outcome, &ready_response)
    }

    async fn complete_upload(
        &self,
        mut request: Request<v1::CompleteUploadRequest>,
    ) -> Result<Response<v1::Attachment>, Status> {
        let scope = scope(&mut request)?;
        let id = attachment_id(&request.get_ref().id)?;
        let attachment = self.attachments.complete_upload(&scope, id).await?;
        Ok(Response::new(v1::Attachment::from(attachment)))
    }

    async fn get_attachment(
        &self,
        mut request: Request<v1::GetAttachmentRequest>,
    ) -> Result<Response<v1::Attachment>, Status> {
        let scope = scope(&mut request)?;
        let id = attachment_id(&request.get_ref().id)?;
        Ok(Response::new(v1::Attachment::from(
            self.attachments.get(&scope, id).await?,
        )))
    }

    async fn list_attachments(
        &self,
        mut request: Request<v1::ListAttachmentsRequest>,
    ) -> Result<Response<v1::ListAttachmentsResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let ticket_id = violations.check("ticket_id", TicketId::parse(&message.ticket_id));
        let comment_id = optional_comment(&mut violations, &message.comment_id);
        let list = ticket_id
            .zip(comment_id)
            .map(|(ticket_id, comment_id)| match comment_id {
                Some(comment) => format!("attachments:{ticket_id}:{comment}"),
                None => format!("attachments:{ticket_id}"),
            });
        let page = ListPages::checked(
            &self.pages,
            caller,
            list.as_deref(),
            &mut violations,
            message.page_size,
            &message.page_token,
        );
        let (Some(ticket_id), Some(comment_id), Some((pages, page_size, after))) =
            (ticket_id, comment_id, page)
        else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let page = self
            .attachments
            .list(&scope, ticket_id, comment_id, page_size, after)
            .await?;
        Ok(Response::new(v1::ListAttachmentsResponse {
            attachments: page.items.into_iter().map(v1::Attachment::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn delete_attachment(
        &self,
        mut request: Request<v1::DeleteAttachmentRequest>,
    ) -> Result<Response<v1::DeleteAttachmentResponse>, Status> {
        let scope = scope(&mut request)?;
        let id = attachment_id(&request.get_ref().id)?;
        self.attachments.delete(&scope, id).await?;
        Ok(Response::new(v1::DeleteAttachmentResponse {}))
    }

    async fn get_download_url(
        &self,
        mut request: Request<v1::GetDownloadUrlRequest>,
    ) -> Result<Response<v1::GetDownloadUrlResponse>, Status> {
        let scope = scope(&mut request)?;
        let id = attachment_id(&request.get_ref().id)?;
        let download = self.attachments.download_url(&scope, id).await?;
        Ok(Response::new(v1::GetDownloadUrlResponse {
            download_url: download.url.to_string(),
            expire_time: Some(timestamp(download.expires_at)),
        }))
    }
}
