//! Long-running operations and ticket imports (docs/operations.md): the workers that run them,
//! their lease, and the limits of an import.

use std::time::Duration;

use super::reader::Reader;

#[derive(Clone, Debug)]
pub struct OperationSettings {
    /// `OPERATION_WORKERS`: how many operations this instance runs at once; 0 runs none (the
    /// operations wait for another instance's workers).
    pub workers: u32,
    /// `OPERATION_LEASE_MS`: how long a worker holds an operation without committing a batch;
    /// a crashed instance's operations are taken over once their lease has run out.
    pub lease: Duration,
    /// `OPERATION_POLL_INTERVAL_MS`: how often an idle worker looks for work started on another
    /// instance (one started here wakes the workers at once).
    pub poll_interval: Duration,
    /// `IMPORT_MAX_INLINE_BYTES`: the largest file ImportTickets accepts inline (also bounded by
    /// `MAX_REQUEST_BYTES` over gRPC and by Envoy's 1 MiB body limit over REST).
    pub import_max_inline_bytes: usize,
    /// `IMPORT_BATCH_ROWS`: how many rows one batch (one transaction, one checkpoint) settles.
    pub import_batch_rows: u32,
    /// `IMPORT_MAX_CONCURRENT`: how many imports of one account may be queued or running at once.
    pub import_max_concurrent: u32,
    /// `IMPORT_MAX_ROW_ERRORS`: how many refused rows an import's result lists.
    pub import_max_row_errors: u32,
}

impl Reader<'_> {
    pub(super) fn operations(&mut self) -> OperationSettings {
        let settings = OperationSettings {
            workers: self.parsed("OPERATION_WORKERS", 2),
            lease: self.millis("OPERATION_LEASE_MS", 30_000),
            poll_interval: self.millis("OPERATION_POLL_INTERVAL_MS", 1_000),
            import_max_inline_bytes: self.parsed("IMPORT_MAX_INLINE_BYTES", 1_000_000),
            import_batch_rows: self.parsed("IMPORT_BATCH_ROWS", 1_000),
            import_max_concurrent: self.parsed("IMPORT_MAX_CONCURRENT", 2),
            import_max_row_errors: self.parsed("IMPORT_MAX_ROW_ERRORS", 100),
        };
        self.positive("IMPORT_BATCH_ROWS", settings.import_batch_rows);
        self.positive("IMPORT_MAX_CONCURRENT", settings.import_max_concurrent);
        self.positive(
            "IMPORT_MAX_INLINE_BYTES",
            u32::try_from(settings.import_max_inline_bytes).unwrap_or(u32::MAX),
        );
        settings
    }
}
