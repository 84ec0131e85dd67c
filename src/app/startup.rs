//! Builds the running service and runs it, in the manner of zero2prod's `startup.rs`:
//! [`Application::build`] (or [`Application::builder`], for what a test adds) constructs every
//! part — pools, the method table, the domain services (`services.rs`), the API servers behind
//! the middleware stack (`servers.rs`), health and its gates (`health.rs`), the job runner with
//! every background task declared (`tasks.rs`, from `crate::jobs`) — and binds the listener (port
//! 0 in tests picks a free port). [`Application::run_until_stopped`] only serves: it starts the
//! tasks and serves until its shutdown future resolves or a task dies for good, then drains
//! (`lifecycle.rs`), and returns the error naming a task that died.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::app::lifecycle;
use crate::app::metrics_endpoint::MetricsEndpoint;
use crate::app::servers::{self, ApiRouter};
use crate::app::services::Services;
use crate::app::{health, tasks};
use crate::configuration::{ServerSettings, Settings};
use crate::db::{self, PgPool};
use crate::jobs::{JobRunner, Task};
use crate::providers::webhook_client::{DialAsAdmitted, DialSeam};
use crate::redis::connection::{self, Redis};
use crate::redis::ticket_cache;
use crate::telemetry::health::Health;
use crate::wire::methods::MethodTable;

/// The service, built and bound, not serving yet.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    server_settings: ServerSettings,
    database: PgPool,
    redis: Redis,
    router: ApiRouter,
    health: Health,
    jobs: JobRunner,
    /// Cancelled when the instance drains: the server stops listening and long-lived streams end.
    drain: CancellationToken,
    wake_payment_event_workers: Arc<Notify>,
}

/// What is given to [`Application`] before it is built, besides its settings: tests add
/// background tasks and replace the dial seam here, so nothing can be set after the build and be
/// silently ignored.
pub struct ApplicationBuilder {
    settings: Settings,
    extra_tasks: Vec<Task>,
    dial_seam: Arc<dyn DialSeam>,
}

impl ApplicationBuilder {
    /// Adds a background task, supervised by the job runner like the service's own (its name
    /// must differ from theirs: docs/architecture.md, "Background tasks").
    pub fn with_task(mut self, task: Task) -> Self {
        self.extra_tasks.push(task);
        self
    }

    /// Replaces the last check before a webhook delivery dials an address: tests put one there
    /// that records every address and refuses any outside 127.0.0.0/8, so that a broken address
    /// policy fails the test instead of reaching the network.
    pub fn with_dial_seam(mut self, seam: Arc<dyn DialSeam>) -> Self {
        self.dial_seam = seam;
        self
    }

    /// Constructs every part and binds the listener; the pools connect lazily.
    pub async fn build(self) -> anyhow::Result<Application> {
        let Self {
            settings,
            extra_tasks,
            dial_seam,
        } = self;
        let methods = MethodTable::get().context("the method table cannot be read")?;
        let database = db::build_pool(&settings.database, settings.server.request_timeout);
        let redis = connection::build_pool(&settings.redis)?;
        let scripts: Vec<&redis::Script> = [
            crate::rate_limit::scripts().as_slice(),
            crate::auth::principals::scripts().as_slice(),
            crate::auth::sessions::scripts().as_slice(),
            ticket_cache::scripts().as_slice(),
        ]
        .concat();
        // Bounded: the service starts (NOT_SERVING) while Redis is down.
        let _ = tokio::time::timeout(
            settings.redis.connect_timeout * 2,
            redis.load_scripts(&scripts),
        )
        .await;
        let listener = TcpListener::bind(settings.server.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen_addr))?;
        let local_addr = listener.local_addr()?;
        let metrics_endpoint = MetricsEndpoint::bind(settings.server.metrics_listen_addr).await?;
        let metrics_addr = metrics_endpoint
            .as_ref()
            .and_then(|endpoint| endpoint.local_addr().ok());

        let drain = CancellationToken::new();
        let services = Services::build(&settings, &database, &redis, &drain)?;
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let (router, served) =
            servers::api_router(&services, health_service, methods, &settings.server)?;
        let health = health::build(reporter, &served, &services).await;
        let mut jobs = JobRunner::new(health.clone(), services.metrics.clone());
        let service_tasks = tasks::service_tasks(
            &settings,
            &services,
            &database,
            &redis,
            &health,
            metrics_endpoint,
            dial_seam,
        )?;
        for task in service_tasks.into_iter().chain(extra_tasks) {
            jobs.add(task);
        }
        Ok(Application {
            listener,
            local_addr,
            metrics_addr,
            server_settings: settings.server,
            database,
            redis,
            router,
            health,
            jobs,
            drain,
            wake_payment_event_workers: services.wake_payment_event_workers,
        })
    }
}

impl Application {
    /// The builder of an application on `settings`, for adding to it before it is built.
    pub fn builder(settings: Settings) -> ApplicationBuilder {
        ApplicationBuilder {
            settings,
            extra_tasks: Vec::new(),
            dial_seam: Arc::new(DialAsAdmitted),
        }
    }

    /// Constructs every part and binds the listener; the pools connect lazily.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::builder(settings).build().await
    }

    /// Where `GET /metrics` is served, when `METRICS_LISTEN_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What wakes the webhook workers: notified once for each new event stored and each dead
    /// event re-driven.
    pub fn webhook_wake(&self) -> Arc<Notify> {
        self.wake_payment_event_workers.clone()
    }

    /// Starts the background tasks and serves until `shutdown` resolves, then drains and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let jobs = self.jobs.start()?;
        let server = self.router.serve_with_incoming_shutdown(
            // `Server::tcp_nodelay` applies only to listeners tonic binds itself: without this,
            // Nagle's algorithm holds each response's last frame until the client's delayed ACK,
            // 40 ms on Linux.
            TcpIncoming::from(self.listener).with_nodelay(Some(true)),
            self.drain.clone().cancelled_owned(),
        );
        let stopped = lifecycle::serve_until_stopped(
            server,
            self.local_addr,
            jobs,
            self.health,
            self.drain,
            &self.server_settings,
            shutdown,
        )
        .await;
        // The pools close only once nothing can use them any more.
        drop(self.database);
        drop(self.redis);
        stopped
    }
}
