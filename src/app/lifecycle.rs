//! The service's lifecycle once it is wired: serve until a signal, a failed server or a background
//! task that died for good; then report NOT_SERVING at once (held, so nothing reports SERVING
//! again), keep serving for the shutdown delay while load balancers and clients notice, then stop
//! listening and drain the in-flight RPCs and the background tasks within the drain timeout; last,
//! flush the traces of the RPCs that ran (when traces are on).
//! `startup.rs` builds what this runs.

use std::net::SocketAddr;

use crate::configuration::ServerSettings;
use crate::jobs::runner::RunningJobs;
use crate::telemetry::health::{Health, Held};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// Who holds health NOT_SERVING from the signal on.
const SHUTTING_DOWN: &str = "shutdown";

/// Serves `server` (already bound at `local_addr`, stopping when `drain` is cancelled) until
/// `shutdown` resolves, the server fails, or a task of `jobs` dies for good; then drains. A
/// task's death is the error answered, so the process exits non-zero.
pub async fn serve_until_stopped(
    server: impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static,
    local_addr: SocketAddr,
    mut jobs: RunningJobs,
    health: Health,
    drain: CancellationToken,
    settings: &ServerSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut server = tokio::spawn(server);
    tracing::info!(address = %local_addr, "serving gRPC");

    let mut died = None;
    tokio::select! {
        result = &mut server => {
            jobs.shutdown(settings.shutdown_drain_timeout).await;
            return result.context("the server task panicked")?.context("the server failed");
        }
        () = shutdown => {}
        failure = jobs.failed() => {
            tracing::error!(%failure, "a background task died for good: shutting down");
            died = Some(failure);
        }
    }

    tracing::info!(
        delay = ?settings.shutdown_delay,
        "shutting down: NOT_SERVING now, serving on for the shutdown delay, then draining"
    );
    // At once, and held: the dependency probe still runs and must not report SERVING again.
    // Envoy and clients with health checking stop sending calls here within the delay
    // (docs/deployment.md, "Draining").
    health.hold(SHUTTING_DOWN, Held::Everything).await;
    tokio::time::sleep(settings.shutdown_delay).await;
    // The listener closes (a new connection is refused, so it is retried elsewhere), open
    // connections get GOAWAY, and the RPCs in flight finish; the background tasks finish what
    // they hold meanwhile. Both within the drain timeout.
    drain.cancel();
    let (unclean, served) = tokio::join!(
        jobs.shutdown(settings.shutdown_drain_timeout),
        tokio::time::timeout(settings.shutdown_drain_timeout, &mut server)
    );
    if !unclean.is_empty() {
        tracing::error!(tasks = ?unclean, "background tasks did not stop cleanly");
    }
    match served {
        Ok(result) => result
            .context("the server task panicked")?
            .context("the server failed while draining")?,
        Err(_) => {
            tracing::warn!(
                timeout = ?settings.shutdown_drain_timeout,
                "drain timeout passed: abandoning the RPCs still running"
            );
            server.abort();
        }
    }
    // The last RPCs have answered: their spans go to the collector before the process ends.
    crate::app::telemetry::flush_traces().await;
    if let Some(failure) = died {
        tracing::info!("stopped after a background task died");
        return Err(failure.into());
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
