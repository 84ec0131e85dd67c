//! Attachments (docs/attachments.md): starting an upload, checking and completing it, reading,
//! listing and deleting attachments, download URLs, and the sweeper's pass.
//!
//! Customers attach files to their own tickets and see only those, never the files of internal
//! notes. File bytes go between the client and object storage through presigned URLs; the service
//! itself only reads an uploaded object back to check it, streams a small direct upload on to
//! the store (checking it as it passes), and deletes objects. Every storage call
//! sits between transactions: no pooled connection is held while waiting on the store.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt};
use uuid::Uuid;

use super::{Page, paginate, rows_to_fetch};
use crate::app::metrics::{
    Metrics, UPLOAD_COMPLETED, UPLOAD_MISMATCH, UPLOAD_MISSING, UPLOAD_STARTED,
};
use crate::auth::Caller;
use crate::configuration::AttachmentSettings;
use crate::db::models::comment::actor_columns;
use crate::db::models::{AttachmentRow, NewAttachment, StorageDeletion, TicketRow, Viewer};
use crate::db::schema::ticket_comments;
use crate::db::{self, PgPool};
use crate::domain::{
    AccountId, Attachment, AttachmentContentType, AttachmentId, AttachmentState, CommentId,
    Filename, InvalidValue, PageCursor, PageSize, Sha256Digest, TicketId, UploadDifference,
    sniff_matches,
};
use crate::errors::{AppError, AppResult, PreconditionViolation, Reason, Resource};
use crate::idempotency::{self, Claimed, Idempotent, Outcome, RecoveryPoint, StoredResponse};
use crate::storage::{ObjectStorage, PresignedRequest, SNIFF_BYTES, UploadTerms};

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

/// The most pieces the store connection's writer (hyper 1's HTTP/1.1 write queue) holds: it
/// takes another piece of the body while it holds fewer than this many.
pub const STORE_WRITER_PIECES: usize = 16;
/// ... and while fewer than this many of its bytes are not yet written (8 KiB + 100 × 4 KiB,
/// hyper's `DEFAULT_MAX_BUFFER_SIZE`): a store that stops reading leaves it holding at least
/// this much, plus at most one piece it took just under the limit and one partly written.
pub const STORE_WRITER_BYTES: usize = 8192 + 4096 * 100;

/// The most pieces of its file a direct upload holds at once when no piece is larger than
/// `piece_bytes` (at least 1): the one being checked and handed on, those waiting in the channel
/// to the store ([`crate::storage::PIECES_IN_FLIGHT`]), and what the store connection's writer
/// has taken and not yet written ([`STORE_WRITER_PIECES`], [`STORE_WRITER_BYTES`]). A store
/// that stops reading leaves an upload of equal pieces holding this many or one fewer (the
/// writer's first piece partly written or not): the test measures it.
pub const fn max_pieces_held(piece_bytes: usize) -> usize {
    let under_the_limit = 1 + (STORE_WRITER_BYTES - 1) / piece_bytes;
    let writer = if under_the_limit + 1 < STORE_WRITER_PIECES {
        under_the_limit + 1
    } else {
        STORE_WRITER_PIECES
    };
    1 + crate::storage::PIECES_IN_FLIGHT + writer
}

/// The most pieces of its file a direct upload holds at once, whatever their size (tiny pieces:
/// the writer's count is the limit).
pub const MAX_PIECES_HELD: usize = max_pieces_held(1);

/// The recovery point of a direct upload whose pending attachment is recorded (phase 1): a retry
/// with its key stores the file and finishes it.
const DIRECT_UPLOAD_RECORDED: &str = "attachment_recorded";
/// The recovery points of UploadAttachment (its idempotency key's phases).
pub const DIRECT_UPLOAD_PHASES: &[&str] = &[DIRECT_UPLOAD_RECORDED];

/// What phase 1 of a direct upload with an idempotency key found or did.
enum Recorded {
    /// The key's stored answer.
    Replay(StoredResponse),
    /// Refused (a final error), and the refusal stored on the key.
    Refused(AppError),
    /// The key claimed (`key_id`) and the pending attachment recorded now.
    Fresh {
        key_id: Uuid,
        attachment: Attachment,
    },
    /// An earlier request with the key recorded this attachment and stopped before its answer.
    Resume {
        key_id: Uuid,
        attachment: AttachmentId,
    },
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
        caller: &Caller,
        upload: NewUpload,
        budget: Duration,
        idempotent: Option<&Idempotent<'_, StartedUpload>>,
    ) -> AppResult<Outcome<StartedUpload>> {
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
        let outcome = idempotency::transaction(
            &self.pool,
            budget,
            idempotent,
            idempotency::as_is,
            async |conn| {
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
            },
        )
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

    /// Stores a small file sent in the request itself, streaming it to the store as it arrives,
    /// and answers its attachment READY. In three phases, none holding a connection across the
    /// store's call: (1) the pending attachment recorded (with a key: claimed in the same
    /// transaction, the attachment its recovery point), (2) the file streamed to the store and
    /// checked as it passes, (3) the attachment marked ready (with a key: its answer stored).
    ///
    /// A file that fails a check (more or fewer bytes than declared, first bytes not of its
    /// type, another SHA-256) is refused as soon as the check can tell: the stream stops, the
    /// object is deleted and the pending attachment with it (with a key: the refusal stored on
    /// it, in the same transaction), so nothing of it is kept. A retry with the key after (1)
    /// only (the store failed, the client went away) resumes at (2) with the same attachment and
    /// object key, so it stores one object; after (3) it replays the answer without reading the
    /// file. A store that fails leaves the attachment pending (a retry with the key finishes it;
    /// otherwise swept).
    pub async fn upload_direct(
        &self,
        caller: &Caller,
        upload: DirectUpload,
        mut pieces: FilePieces,
        budget: Duration,
        idempotent: Option<&Idempotent<'_, Attachment>>,
    ) -> AppResult<Outcome<Attachment>> {
        let deadline = Instant::now() + budget;
        let storage = self.reachable_storage()?;
        let limit = self.settings.direct_max_bytes.min(self.settings.max_bytes);
        if upload.size_bytes == 0 || upload.size_bytes > limit {
            return Err(AppError::invalid_field(
                "size_bytes",
                &InvalidValue::new(format!(
                    "must be the file's size, 1 to {limit} bytes (larger files: CreateUpload)"
                )),
            ));
        }
        let size_bytes = upload.size_bytes;
        let declared = NewUpload {
            ticket_id: upload.ticket_id,
            comment_id: upload.comment_id,
            filename: upload.filename,
            content_type: upload.content_type,
            size_bytes,
            sha256: upload.sha256,
        };

        // Phase 1: the pending attachment recorded (with a key: the key claimed with it).
        let Some(idempotent) = idempotent else {
            let pending = db::pooled_transaction(&self.pool, budget, async |conn| {
                self.insert_pending(conn, caller, &declared).await
            })
            .await?;
            self.metrics.attachments().uploads[UPLOAD_STARTED].increment();
            if let Err(error) = self
                .stream_direct(storage, &pending, &mut pieces, deadline)
                .await
            {
                if error.is_final() {
                    self.discard_refused(storage, &pending, None, &error, deadline)
                        .await?;
                }
                return Err(error);
            }
            let ready = db::with_connection(&self.pool, async |conn| {
                AttachmentRow::mark_ready(conn, caller.account_id, pending.id).await
            })
            .await?
            .ok_or_else(|| AppError::not_found(Resource::Attachment, pending.id))?;
            self.count_completed(size_bytes);
            return Ok(Outcome::Done(ready));
        };
        let recorded = {
            let mut connection = db::connection(&self.pool).await?;
            db::transaction(
                &mut connection,
                idempotency::claiming_limits(budget, Some(idempotent)),
                async |conn| {
                    let key_id = match idempotent.claim(conn).await? {
                        Claimed::Fresh(id) => id,
                        Claimed::Replay(stored) => return Ok(Recorded::Replay(stored)),
                        Claimed::Resume { id, recovery_point } => {
                            return Ok(Recorded::Resume {
                                key_id: id,
                                attachment: AttachmentId::from_uuid(recovery_point.resource),
                            });
                        }
                    };
                    // A savepoint: a refusal undoes the insert but keeps the claim, to store it.
                    let inserted: AppResult<Attachment> = db::savepoint(&mut *conn, async |conn| {
                        self.insert_pending(conn, caller, &declared).await
                    })
                    .await;
                    match inserted {
                        Ok(attachment) => {
                            let point = RecoveryPoint {
                                phase: DIRECT_UPLOAD_RECORDED,
                                resource: attachment.id.as_uuid(),
                            };
                            idempotent.reach(conn, key_id, &point).await?;
                            Ok(Recorded::Fresh { key_id, attachment })
                        }
                        Err(error) if error.is_final() => {
                            idempotent.failed(conn, key_id, &error).await?;
                            Ok(Recorded::Refused(error))
                        }
                        Err(error) => Err(error),
                    }
                },
            )
            .await?
        };
        let (key_id, pending) = match recorded {
            Recorded::Replay(stored) => return Ok(Outcome::Replay(stored)),
            Recorded::Refused(error) => return Ok(Outcome::Failed(error)),
            Recorded::Fresh { key_id, attachment } => {
                self.metrics.attachments().uploads[UPLOAD_STARTED].increment();
                (key_id, attachment)
            }
            Recorded::Resume { key_id, attachment } => {
                let found = db::with_connection(&self.pool, async |conn| {
                    AttachmentRow::find_visible(
                        conn,
                        caller.account_id,
                        Viewer::Account,
                        attachment,
                    )
                    .await
                })
                .await?
                // Deleted, or swept after its upload was abandoned: a retry cannot finish it.
                .ok_or_else(|| AppError::not_found(Resource::Attachment, attachment))?;
                (key_id, found)
            }
        };

        // Phase 2: the file streamed to the store under the attachment's key (a resumed retry
        // stores the same declared bytes under the same key: still one object).
        let stored_now = pending.state == AttachmentState::Pending;
        if stored_now
            && let Err(error) = self
                .stream_direct(storage, &pending, &mut pieces, deadline)
                .await
        {
            if !error.is_final() {
                return Err(error);
            }
            self.discard_refused(
                storage,
                &pending,
                Some((idempotent, key_id)),
                &error,
                deadline,
            )
            .await?;
            return Ok(Outcome::Failed(error));
        }

        // Phase 3: ready, and the answer stored on the key.
        let id = pending.id;
        let mut connection = db::connection(&self.pool).await?;
        let ready = db::transaction(
            &mut connection,
            db::Limits::within(remaining(deadline)),
            async |conn| {
                let ready = match AttachmentRow::mark_ready(conn, caller.account_id, id).await? {
                    Some(ready) => ready,
                    None => {
                        AttachmentRow::find_visible(conn, caller.account_id, Viewer::Account, id)
                            .await?
                            .ok_or_else(|| AppError::not_found(Resource::Attachment, id))?
                    }
                };
                idempotent.succeeded(conn, key_id, &ready).await?;
                Ok::<_, AppError>(ready)
            },
        )
        .await?;
        drop(connection);
        if stored_now {
            self.count_completed(size_bytes);
        }
        Ok(Outcome::Done(ready))
    }

    /// Phase 2 of a direct upload: the file streamed to the store as the pending attachment's
    /// object, checked piece by piece on its way ([`FileCheck`]), all within `deadline`. Once
    /// the store has the declared bytes the request's stream must end without another byte.
    async fn stream_direct(
        &self,
        storage: &ObjectStorage,
        pending: &Attachment,
        pieces: &mut FilePieces,
        deadline: Instant,
    ) -> AppResult<()> {
        let mut check = FileCheck::new(pending, &self.metrics);
        let mut checked = CheckedPieces {
            pieces,
            check: &mut check,
            ended: false,
            until_declared: true,
        };
        let streamed = async {
            storage
                .put_streamed(
                    &pending.object_key,
                    pending.content_type.as_str(),
                    pending.filename.as_str(),
                    pending.size_bytes,
                    &mut checked,
                )
                .await??;
            // Only once the store has answered: a byte too many found now deletes an object
            // the store has finished writing, never one it is still writing.
            checked.until_declared = false;
            while let Some(piece) = checked.next().await {
                piece?;
            }
            Ok::<_, AppError>(())
        };
        // A client too slow for the deadline is no failure of the store's: dropping the call
        // records nothing on its breaker.
        tokio::time::timeout_at(deadline, streamed)
            .await
            .unwrap_or(Err(AppError::DeadlineExceeded))
    }

    /// After a direct upload's file was refused: the pending attachment deleted and its object
    /// queued for deletion in one statement (with a key: the refusal stored on it in the same
    /// transaction), then the object deleted at once when the store answers (a file cut short
    /// left none; one refused for bytes past its end may have been stored whole), and its queue
    /// entry with it. A delete that fails stays queued for the sweeper.
    async fn discard_refused(
        &self,
        storage: &ObjectStorage,
        pending: &Attachment,
        key: Option<(&Idempotent<'_, Attachment>, Uuid)>,
        refusal: &AppError,
        deadline: Instant,
    ) -> AppResult<()> {
        self.metrics.attachments().uploads[UPLOAD_MISMATCH].increment();
        let mut connection = db::connection(&self.pool).await?;
        db::transaction(
            &mut connection,
            db::Limits::within(remaining(deadline)),
            async |conn| {
                AttachmentRow::delete_and_queue_object(conn, pending.account_id, pending.id)
                    .await?;
                if let Some((idempotent, key_id)) = key {
                    idempotent.failed(conn, key_id, refusal).await?;
                }
                Ok::<_, AppError>(())
            },
        )
        .await?;
        drop(connection);
        match storage.delete(&pending.object_key, deadline).await {
            Ok(()) => {
                db::with_connection(&self.pool, async |conn| {
                    StorageDeletion::done(conn, &pending.object_key).await
                })
                .await
            }
            Err(error) => {
                tracing::warn!(%error, key = %pending.object_key, "deleting a refused direct upload failed; queued");
                Ok(())
            }
        }
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
        caller: &Caller,
        id: AttachmentId,
        budget: Duration,
    ) -> AppResult<Attachment> {
        let deadline = Instant::now() + budget;
        let attachment = self.get(caller, id).await?;
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
            if let Err(error) = storage.delete(&attachment.object_key, deadline).await {
                tracing::warn!(%error, key = %attachment.object_key, "deleting a refused upload failed; queued");
                db::with_connection(&self.pool, async |conn| {
                    StorageDeletion::queue(conn, &attachment.object_key).await
                })
                .await?;
            }
            return Err(mismatch(
                &format!("attachments/{id}"),
                &differences,
                "it was deleted: upload it again",
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
            None => self.get(caller, id).await,
        }
    }

    /// One attachment the caller may see, pending or ready.
    pub async fn get(&self, caller: &Caller, id: AttachmentId) -> AppResult<Attachment> {
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
        caller: &Caller,
        ticket_id: TicketId,
        comment_id: Option<CommentId>,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<Attachment>> {
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
    pub async fn delete(
        &self,
        caller: &Caller,
        id: AttachmentId,
        budget: Duration,
    ) -> AppResult<()> {
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
            if AttachmentRow::delete_and_queue_object(conn, account, id).await? {
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
        caller: &Caller,
        id: AttachmentId,
    ) -> AppResult<PresignedRequest> {
        let attachment = self.get(caller, id).await?;
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
            StorageDeletion::lease_due(conn, SWEEP_BATCH, DELETION_LEASE).await
        })
        .await?;
        for key in keys {
            let deadline = Instant::now() + DELETION_LEASE;
            match storage.delete(&key, deadline).await {
                Ok(()) => {
                    db::with_connection(&self.pool, async |conn| {
                        StorageDeletion::done(conn, &key).await
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

/// The checks a direct upload's file passes piece by piece, as it streams to the store: no more
/// bytes than declared (refused at the first byte too many), then, as soon as they can tell,
/// the first bytes of its type (once [`SNIFF_BYTES`] arrived, or the whole file) and its
/// SHA-256 (once the declared size arrived, before that last piece goes on: a refused file never
/// reaches the store whole); at the end, no fewer bytes than declared. It also counts what the
/// upload holds in memory for the metrics.
struct FileCheck {
    size_bytes: u64,
    sha256: [u8; 32],
    content_type: AttachmentContentType,
    received: u64,
    hasher: Sha256,
    head: Vec<u8>,
    sniffed: bool,
    held: Arc<HeldPieces>,
    metrics: Metrics,
}

impl FileCheck {
    fn new(pending: &Attachment, metrics: &Metrics) -> Self {
        Self {
            size_bytes: pending.size_bytes,
            sha256: *pending.sha256.as_bytes(),
            content_type: pending.content_type.clone(),
            received: 0,
            hasher: Sha256::new(),
            head: Vec::with_capacity(SNIFF_BYTES),
            sniffed: false,
            held: Arc::new(HeldPieces {
                pieces: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                metrics: metrics.clone(),
            }),
            metrics: metrics.clone(),
        }
    }

    /// Checks the next piece; answers it (counted as held until the store's connection lets go
    /// of it) or why the file is refused.
    fn pass(&mut self, piece: Bytes) -> AppResult<Bytes> {
        let counters = self.metrics.attachments();
        counters.direct_messages.increment();
        counters.direct_largest_piece.raise_to(piece.len() as u64);
        let piece = self.held.track(piece);
        let received = self.received + piece.len() as u64;
        if received > self.size_bytes {
            return Err(AppError::invalid_field(
                "file.data",
                &InvalidValue::new(format!(
                    "is longer than the {} bytes size_bytes declares",
                    self.size_bytes
                )),
            ));
        }
        self.received = received;
        self.hasher.update(&piece);
        if self.head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - self.head.len()).min(piece.len());
            self.head.extend_from_slice(&piece[..take]);
        }
        let complete = received == self.size_bytes;
        let mut differences = Vec::new();
        if complete {
            let sha256: [u8; 32] = self.hasher.clone().finalize().into();
            if sha256 != self.sha256 {
                differences.push(UploadDifference::Checksum);
            }
        }
        if !self.sniffed && (complete || self.head.len() == SNIFF_BYTES) {
            self.sniffed = true;
            if !sniff_matches(&self.content_type, &self.head) {
                differences.push(UploadDifference::Content {
                    declared: self.content_type.as_str().to_owned(),
                });
            }
        }
        if differences.is_empty() {
            Ok(piece)
        } else {
            Err(mismatch("uploads", &differences, "nothing was stored"))
        }
    }

    /// The request's stream ended: refused when it brought fewer bytes than declared.
    fn finish(&self) -> AppResult<()> {
        if self.received < self.size_bytes {
            return Err(AppError::invalid_field(
                "file.data",
                &InvalidValue::new(format!(
                    "ended after {} of the {} bytes size_bytes declares",
                    self.received, self.size_bytes
                )),
            ));
        }
        Ok(())
    }
}

/// A direct upload's pieces as they pass [`FileCheck`]: the first refusal ends the stream, and
/// its end is checked too. `until_declared`: it ends once the declared size has passed, without
/// reading on (the store's body is complete; what follows is read once it has answered).
struct CheckedPieces<'a> {
    pieces: &'a mut FilePieces,
    check: &'a mut FileCheck,
    ended: bool,
    until_declared: bool,
}

impl Stream for CheckedPieces<'_> {
    type Item = AppResult<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended || this.until_declared && this.check.received == this.check.size_bytes {
            return Poll::Ready(None);
        }
        let next = match ready!(this.pieces.as_mut().poll_next(cx)) {
            Some(Ok(piece)) => this.check.pass(piece),
            Some(Err(error)) => Err(error),
            None => {
                this.ended = true;
                return Poll::Ready(this.check.finish().err().map(Err));
            }
        };
        this.ended = next.is_err();
        Poll::Ready(Some(next))
    }
}

/// What one direct upload holds of its file: pieces from their arrival until the last holder
/// (the check, the channel to the store, the store connection's writer) drops them.
struct HeldPieces {
    pieces: AtomicU64,
    bytes: AtomicU64,
    metrics: Metrics,
}

impl HeldPieces {
    /// `piece`, counted as held until its last reference is dropped (no copy).
    fn track(self: &Arc<Self>, piece: Bytes) -> Bytes {
        let length = piece.len() as u64;
        let pieces = self.pieces.fetch_add(1, Ordering::Relaxed) + 1;
        let bytes = self.bytes.fetch_add(length, Ordering::Relaxed) + length;
        let counters = self.metrics.attachments();
        counters.direct_pieces_held.raise_to(pieces);
        counters.direct_bytes_held.raise_to(bytes);
        Bytes::from_owner(HeldPiece {
            piece,
            held: Arc::clone(self),
        })
    }
}

/// One held piece: its drop is the piece's release.
struct HeldPiece {
    piece: Bytes,
    held: Arc<HeldPieces>,
}

impl AsRef<[u8]> for HeldPiece {
    fn as_ref(&self) -> &[u8] {
        &self.piece
    }
}

impl Drop for HeldPiece {
    fn drop(&mut self) {
        self.held.pieces.fetch_sub(1, Ordering::Relaxed);
        self.held
            .bytes
            .fetch_sub(self.piece.len() as u64, Ordering::Relaxed);
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
    let public: Option<bool> = ticket_comments::table
        .filter(ticket_comments::account_id.eq(account.as_uuid()))
        .filter(ticket_comments::ticket_id.eq(ticket.as_uuid()))
        .filter(ticket_comments::id.eq(comment.as_uuid()))
        .select(ticket_comments::public)
        .first(conn)
        .await
        .optional()?;
    match public {
        Some(true) => Ok(false),
        Some(false) if caller.role().works_tickets() => Ok(true),
        Some(false) | None => Err(AppError::invalid_field(
            "comment_id",
            &InvalidValue::new("names no comment of this ticket"),
        )),
    }
}
