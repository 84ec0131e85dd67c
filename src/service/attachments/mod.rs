//! Attachments (docs/attachments.md): starting an upload, checking and completing it, reading,
//! listing and deleting attachments, download URLs, and the sweeper's pass.
//!
//! Customers attach files to their own tickets and see only those, never the files of internal
//! notes. File bytes go between the client and object storage through presigned URLs; the service
//! itself only reads an uploaded object back to check it, streams a small direct upload on to
//! the store (checking it as it passes), and deletes objects. Every storage call
//! sits between transactions: no pooled connection is held while waiting on the store.

mod direct_upload;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use diesel_async::AsyncPgConnection;
use tokio::time::Instant;
use tokio_stream::Stream;
use uuid::Uuid;

use crate::auth::Caller;
use crate::configuration::AttachmentSettings;
use crate::db::models::comment::actor_columns;
use crate::db::models::{
    AttachmentRow, CommentRow, NewAttachment, StorageDeletionRow, TicketRow, Viewer,
};
use crate::db::{self, PgPool};
use crate::domain::{
    AccountId, Attachment, AttachmentContentType, AttachmentId, AttachmentState, CommentId,
    Filename, InvalidValue, PageCursor, PageSize, Sha256Digest, TicketId, UploadDifference,
    sniff_matches,
};
use crate::errors::{AppError, AppResult, PreconditionViolation, Reason, Resource};
use crate::idempotency::{self, KeyedWrite, Outcome};
use crate::providers::storage::{Deletion, ObjectStorage, PresignedRequest, UploadTerms};
use crate::scope::RequestScope;
use crate::service::{Page, paginate, rows_to_fetch};
use crate::telemetry::metrics::{
    Metrics, UPLOAD_COMPLETED, UPLOAD_MISMATCH, UPLOAD_MISSING, UPLOAD_STARTED,
};

/// What a client declares when it starts an upload.
pub use direct_upload::{
    DIRECT_UPLOAD_PHASES, MAX_PIECES_HELD, STORE_WRITER_BYTES, STORE_WRITER_PIECES, max_pieces_held,
};

/// What a client declares when it starts an upload.
#[derive(Debug)]
pub struct NewUpload {
    pub ticket_id: TicketId,
    pub comment_id: Option<CommentId>,
    pub filename: Filename,
    pub content_type: AttachmentContentType,
    pub size_bytes: u64,
    pub sha256: Sha256Digest,
}

/// A started upload: the pending attachment and the request to upload its file with.
#[derive(Clone, Debug)]
pub struct StartedUpload {
    pub attachment: Attachment,
    pub upload: PresignedRequest,
}

/// A small file sent in the request itself, as its first message declares it.
#[derive(Debug)]
pub struct DirectUpload {
    pub ticket_id: TicketId,
    pub comment_id: Option<CommentId>,
    pub filename: Filename,
    pub content_type: AttachmentContentType,
    pub size_bytes: u64,
    pub sha256: Sha256Digest,
}

/// The file of a direct upload as it arrives: its pieces, in order. An `Err` ends it (the
/// request's stream broke, or a message was refused before its piece was taken).
pub type FilePieces = Pin<Box<dyn Stream<Item = AppResult<Bytes>> + Send>>;

/// What one pass of the sweeper did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Abandoned uploads deleted (their objects queued).
    pub abandoned: usize,
    /// Objects deleted from storage.
    pub deleted: usize,
    /// Objects whose deletion failed (left queued for a later pass).
    pub failed: usize,
}

/// What is left of `deadline`, at least a moment (a transaction needs some time to commit).
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100))
}

/// The most abandoned uploads one pass deletes, and the most objects it deletes from storage.
const SWEEP_BATCH: i64 = 100;
/// How long a leased deletion waits before another pass takes it again (doubling per attempt).
const DELETION_LEASE: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Attachments {
    pool: PgPool,
    storage: Option<Arc<ObjectStorage>>,
    settings: AttachmentSettings,
    metrics: Metrics,
}

impl Attachments {
    pub fn new(
        pool: PgPool,
        storage: Option<Arc<ObjectStorage>>,
        settings: AttachmentSettings,
    ) -> Self {
        Self {
            pool,
            storage,
            settings,
            metrics: Metrics::default(),
        }
    }

    /// The same, counting into `metrics` (docs/metrics.md).
    pub fn counting_into(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    pub fn storage(&self) -> Option<&Arc<ObjectStorage>> {
        self.storage.as_ref()
    }

    /// The store, if configured and its breaker closed: while it is open (or half-open, until
    /// the probe confirms the store is back) work that needs it is refused at once, nothing
    /// recorded, rather than at the end of the request's deadline.
    fn reachable_storage(&self) -> AppResult<&ObjectStorage> {
        let storage = self.storage.as_deref().ok_or_else(not_configured)?;
        match storage.refusing_for() {
            None => Ok(storage),
            Some(retry_after) => Err(AppError::StorageBreakerOpen { retry_after }),
        }
    }

    /// Records a pending attachment and presigns the upload of its file. Customers on their own
    /// tickets and public comments only; the ticket's attachments are counted under its lock.
    /// With an idempotency key the key is claimed in the same transaction and the started upload
    /// (its URL included) stored on it: a retry answers the same attachment and URL.
    pub async fn create_upload(
        &self,
        write: &KeyedWrite<'_, StartedUpload>,
        upload: NewUpload,
    ) -> AppResult<Outcome<StartedUpload>> {
        let caller = write.caller()?;
        let storage = self.reachable_storage()?;
        if upload.size_bytes == 0 || upload.size_bytes > self.settings.max_bytes {
            return Err(AppError::invalid_field(
                "size_bytes",
                &InvalidValue::new(format!(
                    "must be between 1 and {} bytes",
                    self.settings.max_bytes
                )),
            ));
        }
        let outcome =
            idempotency::transaction(&self.pool, write, idempotency::as_is, async |conn| {
                let attachment = self.insert_pending(conn, caller, &upload).await?;
                // Presigning is local (no call to the store): it belongs with the row, so the
                // key stores the URL the client is answered.
                let upload = storage.presign_upload(
                    &attachment.object_key,
                    &UploadTerms {
                        content_type: attachment.content_type.as_str(),
                        size_bytes: attachment.size_bytes,
                        sha256: *attachment.sha256.as_bytes(),
                    },
                    attachment.filename.as_str(),
                    self.settings.upload_url_ttl,
                );
                Ok(StartedUpload { attachment, upload })
            })
            .await?;
        if let Outcome::Done(_) = &outcome {
            self.metrics.attachments().uploads[UPLOAD_STARTED].increment();
        }
        Ok(outcome)
    }

    /// Inserts a pending attachment of `upload` in the caller's transaction, under the ticket's
    /// lock, counting the ticket's attachments; a customer only on their own tickets and public
    /// comments.
    async fn insert_pending(
        &self,
        conn: &mut AsyncPgConnection,
        caller: &Caller,
        upload: &NewUpload,
    ) -> AppResult<Attachment> {
        let account = caller.account_id;
        let object_key = format!("{account}/{:032x}", rand::random::<u128>());
        let expires_at = chrono::Utc::now() + self.settings.upload_url_ttl;
        let max_per_ticket = i64::from(self.settings.max_per_ticket);
        TicketRow::find_for_update(conn, account, caller.restricted_to_user(), upload.ticket_id)
            .await?
            .ok_or_else(|| AppError::not_found(Resource::Ticket, upload.ticket_id))?;
        let internal = match upload.comment_id {
            None => false,
            Some(comment) => {
                comment_is_internal(conn, account, upload.ticket_id, comment, caller).await?
            }
        };
        if AttachmentRow::count_for_ticket(conn, account, upload.ticket_id).await? >= max_per_ticket
        {
            return Err(AppError::FailedPrecondition {
                reason: Reason::AttachmentLimit,
                message: format!("the ticket already has {max_per_ticket} attachments"),
                violations: vec![PreconditionViolation {
                    kind: "ATTACHMENT_COUNT".to_owned(),
                    subject: format!("tickets/{}", upload.ticket_id),
                    description: format!(
                        "at most {max_per_ticket} attachments per ticket; delete one first"
                    ),
                }],
            });
        }
        let (uploader_user_id, uploader_api_key_id) = actor_columns(caller.actor());
        NewAttachment {
            id: Uuid::now_v7(),
            account_id: account.as_uuid(),
            ticket_id: upload.ticket_id.as_uuid(),
            comment_id: upload.comment_id.map(|comment| comment.as_uuid()),
            internal,
            uploader_user_id,
            uploader_api_key_id,
            filename: upload.filename.as_str(),
            content_type: upload.content_type.as_str(),
            size_bytes: i64::try_from(upload.size_bytes).unwrap_or(i64::MAX),
            sha256: upload.sha256.as_bytes(),
            object_key: &object_key,
            upload_expires_at: expires_at,
        }
        .insert(conn)
        .await
    }

    fn count_completed(&self, size_bytes: u64) {
        let counters = self.metrics.attachments();
        counters.uploads[UPLOAD_COMPLETED].increment();
        counters.bytes[0].add(size_bytes);
    }

    /// Checks the uploaded object against what was declared and makes the attachment READY; a
    /// READY one is answered as it is. An object that differs is deleted (or queued for
    /// deletion) and the attachment stays PENDING.
    pub async fn complete_upload(
        &self,
        scope: &RequestScope,
        id: AttachmentId,
    ) -> AppResult<Attachment> {
        let caller = scope.caller()?;
        let deadline = scope.deadline();
        let attachment = self.get(scope, id).await?;
        if attachment.state == AttachmentState::Ready {
            return Ok(attachment);
        }
        let storage = self.reachable_storage()?;
        let Some(stored) = storage
            .inspect(&attachment.object_key, self.settings.max_bytes, deadline)
            .await?
        else {
            self.metrics.attachments().uploads[UPLOAD_MISSING].increment();
            return Err(AppError::FailedPrecondition {
                reason: Reason::UploadIncomplete,
                message: "no file was uploaded for this attachment".to_owned(),
                violations: vec![PreconditionViolation {
                    kind: "UPLOAD_MISSING".to_owned(),
                    subject: format!("attachments/{id}"),
                    description: "PUT the file to the upload URL first".to_owned(),
                }],
            });
        };
        let mut differences = Vec::new();
        if stored.size_bytes != attachment.size_bytes {
            differences.push(UploadDifference::Size {
                declared: attachment.size_bytes,
                stored: stored.size_bytes,
            });
        }
        let stored_type = stored
            .content_type
            .as_deref()
            .map(|value| {
                value
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if stored_type != attachment.content_type.as_str() {
            differences.push(UploadDifference::ContentType {
                declared: attachment.content_type.as_str().to_owned(),
                stored: if stored_type.is_empty() {
                    "untyped".to_owned()
                } else {
                    stored_type
                },
            });
        }
        if stored.size_bytes == attachment.size_bytes
            && stored.sha256 != *attachment.sha256.as_bytes()
        {
            differences.push(UploadDifference::Checksum);
        }
        if !sniff_matches(&attachment.content_type, &stored.head) {
            differences.push(UploadDifference::Content {
                declared: attachment.content_type.as_str().to_owned(),
            });
        }
        let counters = self.metrics.attachments();
        if !differences.is_empty() {
            counters.uploads[UPLOAD_MISMATCH].increment();
            counters.bytes[1].add(stored.size_bytes);
            // Not queued for the sweeper when the store fails the delete: the attachment still
            // holds this key, and the client's next PUT to its URL writes the same object, which
            // a queued deletion would take from a completed attachment. What the attachment's
            // key holds goes with it (overwritten by that PUT, or deleted with the attachment,
            // abandoned or not). The delete is conditional on the object checked: a corrected
            // PUT that landed since (and a concurrent CompleteUpload that made it READY) keeps
            // its bytes.
            let deleted = storage
                .delete_matching(&attachment.object_key, stored.etag.as_deref(), deadline)
                .await;
            let outcome = match deleted {
                Ok(Deletion::Deleted) => "it was deleted: upload it again",
                Ok(Deletion::ChangedSince) => {
                    "it was replaced while it was checked, and the new file was kept: complete \
                     the upload again"
                }
                Err(error) => {
                    tracing::warn!(%error, key = %attachment.object_key, "deleting a refused upload failed; it goes with the attachment");
                    "it was deleted: upload it again"
                }
            };
            return Err(mismatch(
                &format!("attachments/{id}"),
                &differences,
                outcome,
            ));
        }
        let ready = db::with_connection(&self.pool, async |conn| {
            AttachmentRow::mark_ready(conn, caller.account_id, id).await
        })
        .await?;
        match ready {
            Some(ready) => {
                counters.uploads[UPLOAD_COMPLETED].increment();
                counters.bytes[0].add(stored.size_bytes);
                Ok(ready)
            }
            // Completed (or deleted) by a concurrent request meanwhile.
            None => self.get(scope, id).await,
        }
    }

    /// One attachment the caller may see, pending or ready.
    pub async fn get(&self, scope: &RequestScope, id: AttachmentId) -> AppResult<Attachment> {
        let caller = scope.caller()?;
        db::with_connection(&self.pool, async |conn| {
            AttachmentRow::find_visible(conn, caller.account_id, viewer(caller), id).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::Attachment, id))
    }

    /// A page of the ready attachments of a ticket the caller may see (or of one of its
    /// comments), oldest first; customers never see those of internal notes.
    pub async fn list(
        &self,
        scope: &RequestScope,
        ticket_id: TicketId,
        comment_id: Option<CommentId>,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<Attachment>> {
        let caller = scope.caller()?;
        let rows = db::with_connection(&self.pool, async |conn| {
            TicketRow::find(
                conn,
                caller.account_id,
                caller.restricted_to_user(),
                ticket_id,
            )
            .await?
            .ok_or_else(|| AppError::not_found(Resource::Ticket, ticket_id))?;
            AttachmentRow::list(
                conn,
                caller.account_id,
                ticket_id,
                comment_id,
                caller.role().works_tickets(),
                after,
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        Ok(paginate(rows, page_size, |attachment| {
            PageCursor::at(attachment.created_at, attachment.id.as_uuid())
        }))
    }

    /// Deletes an attachment now and queues its object's deletion in the same statement.
    /// Agents and admins; a customer only what they uploaded.
    pub async fn delete(&self, scope: &RequestScope, id: AttachmentId) -> AppResult<()> {
        let caller = scope.caller()?;
        let budget = scope.remaining();
        let account = caller.account_id;
        db::pooled_transaction(&self.pool, budget, async |conn| {
            let attachment = AttachmentRow::find_visible(conn, account, viewer(caller), id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Attachment, id))?;
            if caller.restricted_to_user().is_some() && attachment.uploader != caller.actor() {
                return Err(AppError::PermissionDenied {
                    reason: Reason::RoleRequired,
                    message: "customers delete only the files they uploaded".to_owned(),
                });
            }
            if AttachmentRow::delete_and_queue_object(
                conn,
                account,
                id,
                Some(self.settings.abandon_grace),
            )
            .await?
            {
                Ok(())
            } else {
                Err(AppError::not_found(Resource::Attachment, id))
            }
        })
        .await
    }

    /// A presigned download of a ready attachment.
    pub async fn download_url(
        &self,
        scope: &RequestScope,
        id: AttachmentId,
    ) -> AppResult<PresignedRequest> {
        let attachment = self.get(scope, id).await?;
        let storage = self.reachable_storage()?;
        if attachment.state != AttachmentState::Ready {
            return Err(AppError::FailedPrecondition {
                reason: Reason::UploadIncomplete,
                message: "the attachment's upload is not completed".to_owned(),
                violations: vec![PreconditionViolation {
                    kind: "ATTACHMENT_STATE".to_owned(),
                    subject: format!("attachments/{id}"),
                    description: "complete the upload first (CompleteUpload)".to_owned(),
                }],
            });
        }
        Ok(storage.presign_download(
            &attachment.object_key,
            attachment.filename.as_str(),
            attachment.content_type.as_str(),
            self.settings.download_url_ttl,
        ))
    }

    /// One pass of the sweeper: deletes the uploads abandoned past their grace (queueing their
    /// objects), then deletes due objects from storage, forgetting each once the store confirms.
    pub async fn sweep(&self) -> AppResult<SweepReport> {
        let grace = self.settings.abandon_grace;
        let mut report = SweepReport {
            abandoned: db::with_connection(&self.pool, async |conn| {
                AttachmentRow::sweep_abandoned(conn, grace, SWEEP_BATCH).await
            })
            .await?,
            ..SweepReport::default()
        };
        self.metrics
            .attachments()
            .abandoned
            .add(u64::try_from(report.abandoned).unwrap_or(u64::MAX));
        let Some(storage) = &self.storage else {
            return Ok(report);
        };
        let keys = db::with_connection(&self.pool, async |conn| {
            StorageDeletionRow::lease_due(conn, SWEEP_BATCH, DELETION_LEASE).await
        })
        .await?;
        for key in keys {
            let deadline = Instant::now() + DELETION_LEASE;
            match storage.delete(&key, deadline).await {
                Ok(()) => {
                    db::with_connection(&self.pool, async |conn| {
                        StorageDeletionRow::done(conn, &key).await
                    })
                    .await?;
                    report.deleted += 1;
                    self.metrics.attachments().deletions[0].increment();
                }
                Err(error) => {
                    tracing::warn!(%error, %key, "deleting an object failed; it stays queued");
                    report.failed += 1;
                    self.metrics.attachments().deletions[1].increment();
                }
            }
        }
        Ok(report)
    }
}
/// Who the caller is as a viewer of attachments.
fn viewer(caller: &Caller) -> Viewer {
    match caller.restricted_to_user() {
        Some(user) => Viewer::Customer(user),
        None => Viewer::Account,
    }
}

/// UPLOAD_MISMATCH for `differences` of the file at `subject`; `outcome` says what became of it.
fn mismatch(subject: &str, differences: &[UploadDifference], outcome: &str) -> AppError {
    let fields: Vec<&str> = differences.iter().map(UploadDifference::field).collect();
    AppError::FailedPrecondition {
        reason: Reason::UploadMismatch,
        message: format!(
            "the uploaded file differs from what was declared ({}); {outcome}",
            fields.join(", ")
        ),
        violations: differences
            .iter()
            .map(|difference| PreconditionViolation {
                kind: format!("UPLOAD_{}", difference.field().to_ascii_uppercase()),
                subject: subject.to_owned(),
                description: difference.description(),
            })
            .collect(),
    }
}

fn not_configured() -> AppError {
    AppError::FailedPrecondition {
        reason: Reason::AttachmentsNotConfigured,
        message: "attachments are not configured on this deployment (no object storage)".to_owned(),
        violations: Vec::new(),
    }
}

/// Whether `comment` of `ticket` is an internal note; a comment the caller may not see (a
/// customer and an internal note) or that is not the ticket's is refused as the field's value.
async fn comment_is_internal(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    ticket: TicketId,
    comment: CommentId,
    caller: &Caller,
) -> AppResult<bool> {
    let public =
        CommentRow::is_public(conn, account.as_uuid(), ticket.as_uuid(), comment.as_uuid()).await?;
    match public {
        Some(true) => Ok(false),
        Some(false) if caller.role().works_tickets() => Ok(true),
        Some(false) | None => Err(AppError::invalid_field(
            "comment_id",
            &InvalidValue::new("names no comment of this ticket"),
        )),
    }
}
