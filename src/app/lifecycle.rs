//! The service's lifecycle once it is wired: serve until a signal, a failed server or a background
//! task that died for good; then report NOT_SERVING, give load balancers the shutdown delay,
//! drain in-flight RPCs within their timeout, and stop the background tasks first so that nothing
//! reports SERVING again; last, flush the traces of the RPCs that ran (when traces are on).
//! `startup.rs` builds what this runs.

use std::net::SocketAddr;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::configuration::ServerSettings;
use crate::jobs::runner::RunningJobs;
use crate::telemetry::health::Health;

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
        "shutting down: reporting NOT_SERVING, then draining in-flight RPCs"
    );
    // The tasks stop first: a probe still running could report SERVING again.
    let unclean = jobs.shutdown(settings.shutdown_drain_timeout).await;
    if !unclean.is_empty() {
        tracing::error!(tasks = ?unclean, "background tasks did not stop cleanly");
    }
    health.set_all(ServingStatus::NotServing).await;
    tokio::time::sleep(settings.shutdown_delay).await;
    drain.cancel();
    match tokio::time::timeout(settings.shutdown_drain_timeout, &mut server).await {
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
