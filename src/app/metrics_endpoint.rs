//! The optional `/metrics` listener (`METRICS_LISTEN_ADDR`): answers `GET /metrics` with the
//! OpenMetrics text of the instance's [`Metrics`], or the classic Prometheus text to a scraper
//! that asks for `text/plain`. Only the rendering is here; what is measured is
//! `crate::telemetry::metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::telemetry::metrics::Metrics;

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
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
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
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), answer);
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "metrics connection ended with an error");
                }
            });
        }
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
