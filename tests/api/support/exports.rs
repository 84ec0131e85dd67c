//! A tenant that exports slowly: an account of its own with thousands of tickets, running ten
//! ExportTickets streams through Envoy at once, each read through a 16 KiB HTTP/2 window about a
//! kilobyte at a time (issue 67: what one account did to the shared database pool). A stream
//! refused (RESOURCE_EXHAUSTED `STREAM_LIMIT`: the export caps) or ended is started again after a
//! second, as a client bent on exporting does. Every stream is recorded (when it began, how it
//! ended, how much it read), so a test can check the tenant was only told documented answers,
//! and compare the other tenants' calls with and without it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use prost::Message;
use supportdesk::errors::{ERROR_DOMAIN, Reason};
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use super::{TestDatabase, TestUser, details, with_token};

/// How many streams the tenant runs at once.
pub(crate) const STREAMS: usize = 10;

/// How many tickets the tenant exports: far more than Envoy's and the client's windows and the
/// service's batches hold together, so that a slow reader holds its export for the whole run.
const TICKETS: i64 = 20_000;

/// What a refused or ended stream waits before it starts again.
const AGAIN_AFTER: Duration = Duration::from_secs(1);

/// One stream of the tenant, as it saw it.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct ExportAttempt {
    /// When it was started and how long it ran, in ms from the load's start.
    pub(crate) sent_ms: u64,
    pub(crate) took_ms: u64,
    pub(crate) stream: usize,
    /// The gRPC code it ended with (`Ok`: it was still running when the tenant stopped it, or
    /// it completed).
    pub(crate) code: String,
    pub(crate) reason: Option<String>,
    pub(crate) message: String,
    /// Whether its ErrorInfo reason is one of this service's, in its domain.
    pub(crate) documented: bool,
    /// No status came: the client's transport ended it (a stream reset mid-answer).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) cut: bool,
    /// How many tickets, and bytes of them, it read.
    pub(crate) tickets: u64,
    pub(crate) bytes: u64,
}

/// The tenant's streams, running until [`SlowExports::stop`].
pub(crate) struct SlowExports {
    stop: CancellationToken,
    streams: Vec<JoinHandle<Vec<ExportAttempt>>>,
    /// Streams that have read their first ticket and not ended yet, and the most at once.
    running: Arc<Counts>,
}

/// How many streams run now, and the most that ran at once.
#[derive(Default)]
struct Counts {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// Who exports, and how slowly.
#[derive(Clone)]
pub(crate) struct Exporter {
    /// Envoy's address (`http://127.0.0.1:port`).
    pub(crate) envoy: String,
    pub(crate) user: TestUser,
    /// How long the reader waits after each kilobyte it reads.
    pub(crate) pace: Duration,
}

impl Exporter {
    /// Gives `user`'s account its tickets to export, straight into PostgreSQL (creating them one
    /// call at a time would only slow the run; they raise no notification or event).
    pub(crate) async fn with_tickets(
        database: &TestDatabase,
        envoy: String,
        user: TestUser,
        pace: Duration,
    ) -> Self {
        let mut conn = database.connect().await;
        diesel::sql_query(
            "INSERT INTO tickets (id, account_id, subject, description, priority, status, \
             requester_id) SELECT gen_random_uuid(), $1, $2 || ' ' || n, \
             'Exported slowly, a kilobyte at a time', 'normal', 'new', $3 \
             FROM generate_series(1, $4) n",
        )
        .bind::<SqlUuid, _>(user.account_id.as_uuid())
        .bind::<Text, _>("exported")
        .bind::<SqlUuid, _>(user.id.as_uuid())
        .bind::<BigInt, _>(TICKETS)
        .execute(&mut conn)
        .await
        .expect("the exporter's tickets inserted");
        Self { envoy, user, pace }
    }

    /// Starts its [`STREAMS`] streams, their times counted from `epoch` (the load's).
    pub(crate) fn start(&self, epoch: Instant) -> SlowExports {
        let stop = CancellationToken::new();
        let running = Arc::new(Counts::default());
        let streams = (0..STREAMS)
            .map(|stream| {
                tokio::spawn(export_again_and_again(
                    self.clone(),
                    stream,
                    epoch,
                    stop.clone(),
                    running.clone(),
                ))
            })
            .collect();
        SlowExports {
            stop,
            streams,
            running,
        }
    }
}

impl SlowExports {
    /// How many of its streams are exporting now (admitted, a ticket read, not ended).
    pub(crate) fn running(&self) -> usize {
        AtomicUsize::load(&self.running.now, Ordering::SeqCst)
    }

    /// The most of its streams that were exporting at once.
    pub(crate) fn most_running(&self) -> usize {
        AtomicUsize::load(&self.running.most, Ordering::SeqCst)
    }

    /// Ends every stream (the client goes away) and returns what each did.
    pub(crate) async fn stop(self) -> Vec<ExportAttempt> {
        self.stop.cancel();
        let mut attempts = Vec::new();
        for stream in self.streams {
            attempts.extend(stream.await.expect("an export stream panicked"));
        }
        attempts.sort_by_key(|attempt| attempt.sent_ms);
        attempts
    }
}

/// One stream of the tenant: exports, reading slowly, until stopped; started again after
/// [`AGAIN_AFTER`] whenever it is refused or ends.
async fn export_again_and_again(
    exporter: Exporter,
    stream: usize,
    epoch: Instant,
    stop: CancellationToken,
    running: Arc<Counts>,
) -> Vec<ExportAttempt> {
    let mut attempts = Vec::new();
    while !stop.is_cancelled() {
        let sent = epoch.elapsed();
        let mut attempt = ExportAttempt {
            sent_ms: millis(sent),
            took_ms: 0,
            stream,
            code: "Ok".to_owned(),
            reason: None,
            message: String::new(),
            documented: true,
            cut: false,
            tickets: 0,
            bytes: 0,
        };
        let ended = tokio::select! {
            () = stop.cancelled() => None,
            ended = export_slowly(&exporter, &mut attempt, &running) => ended,
        };
        if let Some(status) = ended {
            let info = details(&status).error_info().cloned();
            attempt.code = format!("{:?}", status.code());
            attempt.message = status.message().to_owned();
            attempt.documented = info.as_ref().is_some_and(|info| {
                info.domain == ERROR_DOMAIN && Reason::parse(&info.reason).is_some()
            });
            attempt.reason = info.map(|info| info.reason);
            attempt.cut = std::error::Error::source(&status).is_some();
        }
        attempt.took_ms = millis(epoch.elapsed()) - attempt.sent_ms;
        attempts.push(attempt);
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(AGAIN_AFTER) => {}
        }
    }
    attempts
}

/// One export, read a kilobyte at a time with a pause after each, until it ends: its status
/// (`None`: it completed). Counts itself in `running` while it exports.
async fn export_slowly(
    exporter: &Exporter,
    attempt: &mut ExportAttempt,
    running: &Counts,
) -> Option<tonic::Status> {
    // A connection of its own, with the windows of a slow client: 16 KiB.
    let channel = match Endpoint::from_shared(exporter.envoy.clone())
        .expect("Envoy's address")
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await
    {
        Ok(channel) => channel,
        Err(error) => return Some(tonic::Status::unavailable(format!("connect: {error}"))),
    };
    let started = TicketServiceClient::new(channel)
        .export_tickets(with_token(
            &exporter.user.access_token,
            v1::ExportTicketsRequest {
                order_by: "create_time asc".to_owned(),
                ..Default::default()
            },
        ))
        .await;
    let mut tickets = match started {
        Ok(answer) => answer.into_inner(),
        Err(status) => return Some(status),
    };
    let mut counted = None;
    let mut since_pause = 0;
    loop {
        match tickets.message().await {
            Ok(Some(ticket)) => {
                counted.get_or_insert_with(|| Running::count(running));
                attempt.tickets += 1;
                let bytes = ticket.encoded_len() as u64;
                attempt.bytes += bytes;
                since_pause += bytes;
                if since_pause >= 1024 {
                    since_pause = 0;
                    tokio::time::sleep(exporter.pace).await;
                }
            }
            Ok(None) => return None,
            Err(status) => return Some(status),
        }
    }
}

/// A stream counted as running, until it ends or is dropped (the tenant stopped it).
struct Running<'a>(&'a Counts);

impl<'a> Running<'a> {
    fn count(counts: &'a Counts) -> Self {
        let now = counts.now.fetch_add(1, Ordering::SeqCst) + 1;
        counts.most.fetch_max(now, Ordering::SeqCst);
        Self(counts)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
