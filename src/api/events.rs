//! `supportdesk.v1.EventService`: the account's events as a server stream (WatchEvents).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::scope;
use crate::domain::{EventCursor, parse_event_public_id, parse_event_types};
use crate::errors::{AppError, AppResult, FieldViolations};
use crate::service::events::{EventFeed, FeedMessage, WatchStart};
use crate::wire::proto::v1;

pub struct EventApi {
    feed: EventFeed,
}

impl EventApi {
    pub fn new(feed: EventFeed) -> Self {
        Self { feed }
    }
}

#[tonic::async_trait]
impl v1::event_service_server::EventService for EventApi {
    type WatchEventsStream = WatchStream;

    async fn watch_events(
        &self,
        mut request: Request<v1::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let scope = scope(&mut request)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let cursor = match message.cursor.as_str() {
            "" => None,
            raw => violations.check("cursor", EventCursor::parse(raw)),
        };
        let after_event = match message.after_event_id.as_str() {
            "" => None,
            raw => violations.check("after_event_id", parse_event_public_id(raw)),
        };
        let types = violations.check("event_types", parse_event_types(&message.event_types));
        if !violations.is_empty() {
            return Err(AppError::InvalidArgument(violations).into());
        }
        let start = match (cursor, after_event) {
            (Some(cursor), _) => WatchStart::Cursor(cursor),
            (None, Some(event)) => WatchStart::AfterEvent(event),
            (None, None) => WatchStart::Now,
        };
        let watch = self
            .feed
            .watch(
                &scope,
                start,
                types.unwrap_or_default(),
                message.end_when_caught_up,
            )
            .await?;
        let mut response = Response::new(WatchStream {
            messages: watch.messages,
            interrupted: Some(watch.interrupted),
            ended: false,
        });
        // Over REST the stream is one JSON object a line.
        response.metadata_mut().insert(
            crate::wire::headers::HTTP_CONTENT_TYPE_HEADER,
            tonic::metadata::MetadataValue::from_static("application/x-ndjson"),
        );
        Ok(response)
    }
}

/// The messages of one stream, as the wire has them; a caller who lost the right to read it
/// gets the reason next, not the messages still waiting.
pub struct WatchStream {
    messages: mpsc::Receiver<AppResult<FeedMessage>>,
    /// `None` once the stream's task has ended without interrupting it.
    interrupted: Option<oneshot::Receiver<AppError>>,
    ended: bool,
}

impl Stream for WatchStream {
    type Item = Result<v1::WatchEventsResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(interrupted) = &mut this.interrupted
            && let Poll::Ready(lost) = Pin::new(interrupted).poll(cx)
        {
            this.interrupted = None;
            if let Ok(lost) = lost {
                this.ended = true;
                return Poll::Ready(Some(Err(lost.into())));
            }
        }
        let Some(message) = ready!(this.messages.poll_recv(cx)) else {
            // The task ended: an interruption told just before counts.
            this.ended = true;
            return Poll::Ready(
                this.interrupted
                    .take()
                    .and_then(|mut told| told.try_recv().ok())
                    .map(|lost| Err(lost.into())),
            );
        };
        Poll::Ready(Some(match message {
            Ok(FeedMessage::Event(event, cursor)) => Ok(v1::WatchEventsResponse {
                event: Some(v1::Event::from(event.as_ref())),
                cursor: cursor.to_string(),
            }),
            Ok(FeedMessage::Heartbeat(cursor)) => Ok(v1::WatchEventsResponse {
                event: None,
                cursor: cursor.to_string(),
            }),
            Err(error) => Err(error.into()),
        }))
    }
}
