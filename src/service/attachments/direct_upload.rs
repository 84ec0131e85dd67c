//! Direct uploads: a small file sent in the request itself, streamed on to the store as it
//! arrives and checked piece by piece on the way (its size, its first bytes, its SHA-256), with
//! the memory it holds bounded and counted; with an idempotency key, resumed or replayed in
//! phases.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;

use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt};
use uuid::Uuid;

use super::{Attachments, DirectUpload, FilePieces, NewUpload, mismatch, remaining};
use crate::db::models::{AttachmentRow, StorageDeletionRow, Viewer};
use crate::db::{self};
use crate::domain::{
    Attachment, AttachmentContentType, AttachmentId, AttachmentState, InvalidValue,
    UploadDifference, sniff_matches,
};
use crate::errors::{AppError, AppResult, Resource};
use crate::idempotency::{
    self, Claimed, Idempotent, KeyedWrite, Outcome, RecoveryPoint, StoredResponse,
};
use crate::providers::storage::{ObjectStorage, SNIFF_BYTES};
use crate::telemetry::metrics::{Metrics, UPLOAD_MISMATCH, UPLOAD_STARTED};

/// The most pieces the store connection's writer (hyper 1's HTTP/1.1 write queue) holds: it
/// takes another piece of the body while it holds fewer than this many.
pub const STORE_WRITER_PIECES: usize = 16;
/// ... and while fewer than this many of its bytes are not yet written (8 KiB + 100 × 4 KiB,
/// hyper's `DEFAULT_MAX_BUFFER_SIZE`): a store that stops reading leaves it holding at least
/// this much, plus at most one piece it took just under the limit and one partly written.
pub const STORE_WRITER_BYTES: usize = 8192 + 4096 * 100;

/// The most pieces of its file a direct upload holds at once when no piece is larger than
/// `piece_bytes` (at least 1): the one being checked and handed on, those waiting in the channel
/// to the store ([`crate::providers::storage::PIECES_IN_FLIGHT`]), and what the store connection's writer
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
    1 + crate::providers::storage::PIECES_IN_FLIGHT + writer
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

impl Attachments {
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
        write: &KeyedWrite<'_, Attachment>,
        upload: DirectUpload,
        mut pieces: FilePieces,
    ) -> AppResult<Outcome<Attachment>> {
        let caller = write.caller()?;
        let budget = write.remaining();
        let deadline = write.scope.deadline();
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
        let Some(idempotent) = write.idempotent() else {
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
            .await?;
            let Some(ready) = ready else {
                // Deleted while its file streamed: the object stored now is nobody's.
                self.forget_unheld_object(storage, &pending.object_key, deadline)
                    .await;
                return Err(AppError::not_found(Resource::Attachment, pending.id));
            };
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
        .await;
        drop(connection);
        if stored_now && matches!(ready, Err(AppError::NotFound { .. })) {
            // Deleted while its file streamed (by its owner, or discarded by a concurrent retry
            // with the key whose file was refused): the object stored now is nobody's.
            self.forget_unheld_object(storage, &pending.object_key, deadline)
                .await;
        }
        let ready = ready?;
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
    /// entry with it. A delete that fails stays queued for the sweeper. An attachment no longer
    /// pending was finished (or deleted) by a concurrent retry with the same key: it, its object
    /// and the key's stored answer are left as they are, and only this request is refused.
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
        let discarded = db::transaction(
            &mut connection,
            db::Limits::within(remaining(deadline)),
            async |conn| {
                let discarded =
                    AttachmentRow::discard_pending(conn, pending.account_id, pending.id).await?;
                if discarded && let Some((idempotent, key_id)) = key {
                    idempotent.failed(conn, key_id, refusal).await?;
                }
                Ok::<_, AppError>(discarded)
            },
        )
        .await?;
        drop(connection);
        if !discarded {
            tracing::info!(attachment_id = %pending.id,
                "a refused retry's attachment was finished or deleted meanwhile; left as it is");
            return Ok(());
        }
        self.delete_queued_object(storage, &pending.object_key, deadline)
            .await
    }

    /// Queues an object no attachment holds any longer and deletes it at once (one that an
    /// attachment holds again is left to it).
    async fn forget_unheld_object(&self, storage: &ObjectStorage, key: &str, deadline: Instant) {
        let queued = db::with_connection(&self.pool, async |conn| {
            StorageDeletionRow::queue_unheld(conn, key).await
        })
        .await;
        match queued {
            Ok(true) => {
                if let Err(error) = self.delete_queued_object(storage, key, deadline).await {
                    tracing::warn!(%error, %key, "forgetting an unheld object failed; queued");
                }
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, %key, "an object no attachment holds could not be queued for deletion");
            }
        }
    }

    /// Deletes a queued object now, and its queue entry once the store has; one the store does
    /// not delete stays queued for the sweeper.
    async fn delete_queued_object(
        &self,
        storage: &ObjectStorage,
        key: &str,
        deadline: Instant,
    ) -> AppResult<()> {
        match storage.delete(key, deadline).await {
            Ok(()) => {
                db::with_connection(&self.pool, async |conn| {
                    StorageDeletionRow::done(conn, key).await
                })
                .await
            }
            Err(error) => {
                tracing::warn!(%error, %key, "deleting an object at once failed; queued for the sweeper");
                Ok(())
            }
        }
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
