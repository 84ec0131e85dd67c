//! The optional `/metrics` listener (`METRICS_LISTEN_ADDR`): answers `GET /metrics` with the
//! OpenMetrics text of the instance's [`Metrics`], or the classic Prometheus text to a scraper
//! that asks for `text/plain`. Only the rendering is here; what is measured is
//! `crate::telemetry::metrics`.
//!
//! The listener is bounded so that nothing a client does to it reaches the rest of the process:
//! at most [`MAX_CONNECTIONS`] connections at once (further ones wait in the kernel's backlog,
//! costing no descriptor of ours), a request's headers within [`HEADER_READ_TIMEOUT`] (which
//! also bounds the wait for the next request on a kept-alive connection), and a connection on
//! which no byte moves either way for [`IDLE_TIMEOUT`] (an answer its client does not read) is
//! closed. Unbounded, half-sent requests used to hold a descriptor each until the process had
//! none left and the gRPC port stopped accepting.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::telemetry::metrics::Metrics;

/// The most connections the listener holds at once: a few scrapers (Prometheus, its HA twin)
/// and a person with curl, with room to spare, and a bound far below the process's descriptors.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a client has to send a request's headers, counted from the first byte it is
/// awaited (on a kept-alive connection, from the end of the answer before): a scraper sends
/// them at once.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection may go with no byte read or written before it is closed: the answer
/// is rendered in milliseconds, so only a client that stopped reading it waits this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The content type of `GET /metrics`.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The bound metrics listener, before it serves.
#[derive(Debug)]
pub struct MetricsEndpoint {
    listener: TcpListener,
}

impl MetricsEndpoint {
    /// Binds `address` (port 0 picks a free port), or nothing when metrics are off.
    pub async fn bind(address: Option<SocketAddr>) -> anyhow::Result<Option<Self>> {
        let Some(address) = address else {
            return Ok(None);
        };
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for metrics on {address}"))?;
        Ok(Some(Self { listener }))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers `GET /metrics` with `metrics` until `stop`. Borrows the listener, so that the job
    /// runner can serve it again after a restart.
    pub async fn serve(&self, metrics: Metrics, stop: CancellationToken) {
        let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            // A place first, then the connection: past the cap, clients wait in the backlog.
            let (place, stream) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = async {
                    let place = Arc::clone(&places).acquire_owned().await;
                    (place, self.listener.accept().await)
                } => match accepted {
                    (Ok(place), Ok((stream, _))) => (place, stream),
                    (Err(_closed), _) => return,
                    (_, Err(error)) => {
                        tracing::warn!(%error, "metrics listener: accept failed");
                        continue;
                    }
                },
            };
            let metrics = metrics.clone();
            let answer = service_fn(move |request| {
                let response = respond(&metrics, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(async move {
                let _place = place;
                let stream = Watched::new(stream);
                let (accepted, activity) = (stream.accepted, Arc::clone(&stream.last_active));
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), answer);
                tokio::select! {
                    ended = connection => {
                        if let Err(error) = ended {
                            tracing::debug!(%error, "metrics connection ended with an error");
                        }
                    }
                    () = idle(accepted, &activity) => {
                        tracing::debug!("metrics connection closed: idle for {IDLE_TIMEOUT:?}");
                    }
                }
            });
        }
    }
}

/// Returns once no byte has moved for [`IDLE_TIMEOUT`] on the connection accepted at `accepted`
/// whose activity `last_active` notes.
async fn idle(accepted: Instant, last_active: &AtomicU64) {
    loop {
        let last = accepted + Duration::from_millis(last_active.load(Ordering::Relaxed));
        let deadline = last + IDLE_TIMEOUT;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// A connection that notes when a byte last moved (milliseconds since it was accepted).
struct Watched {
    stream: TcpStream,
    accepted: Instant,
    last_active: Arc<AtomicU64>,
}

impl Watched {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            accepted: Instant::now(),
            last_active: Arc::new(AtomicU64::new(0)),
        }
    }

    fn moved(&self) {
        let since = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active.store(since, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.moved();
        }
        polled
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.moved();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

fn respond<B>(metrics: &Metrics, request: &Request<B>) -> Response<Full<Bytes>> {
    let (status, content_type, body) =
        if request.method() == Method::GET && request.uri().path() == "/metrics" {
            if wants_classic_text(request) {
                (
                    StatusCode::OK,
                    CLASSIC_TEXT,
                    classic_text(&metrics.render()),
                )
            } else {
                (StatusCode::OK, OPENMETRICS, metrics.render())
            }
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "only GET /metrics is served here\n".to_owned(),
            )
        };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

// ---- the classic text format ----

/// The content type of the classic Prometheus text format (0.0.4).
const CLASSIC_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// True when the scraper accepts `text/plain` but not OpenMetrics (promtool, older scrapers).
/// Without an `Accept` header, or with `*/*`, OpenMetrics is served.
fn wants_classic_text<B>(request: &Request<B>) -> bool {
    let accept = request
        .headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    accept.contains("text/plain") && !accept.contains("application/openmetrics-text")
}

/// The OpenMetrics text `openmetrics` in the classic text format: a counter's HELP and TYPE
/// name its samples' `_total` name, and the `# UNIT` and `# EOF` lines (which the classic
/// format does not have) are left out. Samples are the same in both formats.
fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, after) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {after}"))
        });
        match renamed {
            Some(renamed) => text.push_str(&renamed),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::telemetry::metrics::RpcName;

    use super::*;

    #[test]
    fn the_classic_text_names_counters_by_their_total_and_has_no_unit_or_eof() {
        let metrics = Metrics::default();
        metrics.rate_limit().allowed.increment();
        let rpc = RpcName {
            path: "/supportdesk.v1.TicketService/GetTicket",
            index: None,
        };
        metrics.rpcs().answered(rpc, 0, Duration::ZERO);
        let text = classic_text(&metrics.render());
        assert!(text.contains("# TYPE supportdesk_rate_limit_decisions_total counter\n"));
        assert!(text.contains("# HELP supportdesk_rate_limit_decisions_total Rate-limit"));
        assert!(text.contains("supportdesk_rate_limit_decisions_total{outcome=\"allowed\"} 1\n"));
        assert!(text.contains("# TYPE supportdesk_rpc_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE supportdesk_rate_limit_fail_open gauge\n"));
        assert!(!text.contains("# UNIT"));
        assert!(!text.contains("# EOF"));
    }
}
