//! Attachments: uploads by outcome and their bytes, objects deleted from storage.

use prometheus_client::registry::Registry;

use super::instruments::{Counter, Gauge, counter, counters_by, gauge};

/// What attachments did (docs/attachments.md): uploads by outcome and their bytes, objects
/// deleted from storage.
#[derive(Debug)]
pub struct AttachmentCounters {
    /// Uploads started (`started`), completed (`completed`), refused at completion because the
    /// object differed (`mismatch`) or was missing (`missing`).
    pub uploads: [Counter; 4],
    /// Bytes of the objects read back at completion: completed, refused.
    pub bytes: [Counter; 2],
    /// Objects deleted from storage by the sweeper, and deletions that failed (retried later).
    pub deletions: [Counter; 2],
    /// Uploads never completed that the sweeper removed.
    pub abandoned: Counter,
    /// Messages UploadAttachment received: each carries a piece of its file.
    pub direct_messages: Counter,
    /// The largest piece of a direct upload's file held at once, in bytes, since start.
    pub direct_largest_piece: Gauge,
    /// The most pieces one direct upload held at once (from their arrival until the store's
    /// connection let go of them), since start.
    pub direct_pieces_held: Gauge,
    /// The most bytes of its file one direct upload held at once, since start.
    pub direct_bytes_held: Gauge,
}

/// Indexes of [`AttachmentCounters::uploads`].
pub const UPLOAD_STARTED: usize = 0;
pub const UPLOAD_COMPLETED: usize = 1;
pub const UPLOAD_MISMATCH: usize = 2;
pub const UPLOAD_MISSING: usize = 3;

impl AttachmentCounters {
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            uploads: counters_by(
                registry,
                "supportdesk_attachment_uploads",
                "Attachment uploads by outcome: started, completed, refused at completion (mismatch, missing).",
                "outcome",
                ["started", "completed", "mismatch", "missing"],
            ),
            bytes: counters_by(
                registry,
                "supportdesk_attachment_upload_bytes",
                "Bytes of uploaded objects read back at completion, by outcome (completed, refused).",
                "outcome",
                ["completed", "refused"],
            ),
            deletions: counters_by(
                registry,
                "supportdesk_attachment_object_deletions",
                "Objects the sweeper deleted from storage (deleted), or failed to (failed; retried).",
                "outcome",
                ["deleted", "failed"],
            ),
            abandoned: counter(
                registry,
                "supportdesk_attachment_abandoned_uploads",
                "Uploads never completed that the sweeper removed with their objects.",
            ),
            direct_messages: counter(
                registry,
                "supportdesk_attachment_direct_upload_messages",
                "Messages UploadAttachment received, each carrying a piece of its file.",
            ),
            direct_largest_piece: gauge(
                registry,
                "supportdesk_attachment_direct_upload_largest_piece_bytes",
                "The largest piece of a direct upload's file held, in bytes, since start.",
            ),
            direct_pieces_held: gauge(
                registry,
                "supportdesk_attachment_direct_upload_pieces_held_max",
                "The most pieces of its file one direct upload held at once, since start.",
            ),
            direct_bytes_held: gauge(
                registry,
                "supportdesk_attachment_direct_upload_bytes_held_max",
                "The most bytes of its file one direct upload held at once, since start.",
            ),
        }
    }
}
