//! The stream of ExportTickets as the client receives it (docs/export-and-search.md).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use chrono::SecondsFormat;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tonic::Status;

use super::read_mask::masked;
use crate::domain::{ReadMask, Ticket, TicketOrder, TicketOrderField};
use crate::errors::{AppError, AppResult};
use crate::service::{Export, ExportBatch, ExportInterruption};
use crate::wire::proto::v1;

/// The tickets of an export as the client receives them: each batch from the service's channel
/// taken only once the previous one was sent, each ticket masked; a channel that closes without
/// the service's `Finished` ends the stream with DEADLINE_EXCEEDED (the export outlived
/// `EXPORT_MAX_DURATION_SECS`), never as a complete export. An interruption (the drain, the
/// caller's loss of standing) is answered before any ticket still waiting: after the drain,
/// UNAVAILABLE `INSTANCE_DRAINING` with where to resume after the last ticket sent.
pub struct ExportStream {
    batches: mpsc::Receiver<AppResult<ExportBatch>>,
    /// `None` once the service's task has ended without interrupting the export.
    interrupted: Option<oneshot::Receiver<ExportInterruption>>,
    pending: std::vec::IntoIter<Ticket>,
    mask: ReadMask,
    order: TicketOrder,
    /// How many tickets were handed to the transport, and the last of them.
    sent: u64,
    last: Option<chrono::DateTime<chrono::Utc>>,
    ended: bool,
}

impl ExportStream {
    pub fn new(export: Export, mask: ReadMask, order: TicketOrder) -> Self {
        Self {
            batches: export.batches,
            interrupted: Some(export.interrupted),
            pending: Vec::new().into_iter(),
            mask,
            order,
            sent: 0,
            last: None,
            ended: false,
        }
    }

    /// What the client is told of an interruption.
    fn interruption(&self, why: ExportInterruption) -> AppError {
        match why {
            ExportInterruption::Lost(error) => error,
            ExportInterruption::Draining => AppError::ExportDrained {
                exported: self.sent,
                resume: self.resume_point(),
            },
        }
    }

    /// The request fields that start a new export just where this one was ended: in creation
    /// order, from the last ticket sent's creation time, that ticket included (`createdAfter`
    /// is inclusive and `createdBefore` exclusive, so the time is moved a microsecond past it
    /// for a newest-first export), so that a ticket created in the same microsecond is not
    /// skipped; the client drops the ids it already has. In update order a ticket moves when
    /// it changes, so no position in it survives a new snapshot: none (start again).
    fn resume_point(&self) -> Vec<(&'static str, String)> {
        let Some(last) = self.last else {
            return Vec::new();
        };
        let rfc3339 =
            |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(SecondsFormat::Micros, true);
        match (self.order.field, self.order.descending) {
            (TicketOrderField::Created, false) => vec![("createdAfter", rfc3339(last))],
            (TicketOrderField::Created, true) => vec![(
                "createdBefore",
                rfc3339(last + chrono::Duration::microseconds(1)),
            )],
            (TicketOrderField::Updated, _) => Vec::new(),
        }
    }
}

impl Stream for ExportStream {
    type Item = Result<v1::Ticket, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(interrupted) = &mut this.interrupted
            && let Poll::Ready(why) = Pin::new(interrupted).poll(cx)
        {
            this.interrupted = None;
            if let Ok(why) = why {
                this.ended = true;
                return Poll::Ready(Some(Err(this.interruption(why).into())));
            }
        }
        loop {
            if let Some(ticket) = this.pending.next() {
                this.sent += 1;
                this.last = Some(ticket.created_at);
                return Poll::Ready(Some(Ok(masked(v1::Ticket::from(ticket), &this.mask))));
            }
            match ready!(this.batches.poll_recv(cx)) {
                Some(Ok(ExportBatch::Tickets(batch))) => this.pending = batch.into_iter(),
                Some(Ok(ExportBatch::Finished)) => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Some(Err(error)) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(error.into())));
                }
                None => {
                    // The task ended without `Finished`: its limit, or an interruption told
                    // just before the channel closed.
                    this.ended = true;
                    let error = match this.interrupted.take().map(|mut told| told.try_recv()) {
                        Some(Ok(why)) => this.interruption(why),
                        Some(Err(_)) | None => AppError::DeadlineExceeded,
                    };
                    return Poll::Ready(Some(Err(error.into())));
                }
            }
        }
    }
}
